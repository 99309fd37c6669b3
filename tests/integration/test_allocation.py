"""The policy's limits on the session world: batch scoring allocates under them and a
served service (both workers) never exceeds them under concurrent requests."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest

from devtools.process import start_server, stop_server
from tests.conftest import World

pytestmark = pytest.mark.slow


def _policy_with(world: World, tmp_path: Path, limits: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(Path(world.settings.policy).read_text() + "\nlimits:\n" + limits)
    return path


@pytest.fixture(scope="module")
def free_email(world: World, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The email decisions without limits."""
    from nextbest.batch.run import decide_customers

    out = tmp_path_factory.mktemp("free") / "email.parquet"
    decide_customers(world.settings, "email", None, out)
    return pd.read_parquet(out)


def test_batch_allocation_keeps_the_limits(world: World, free_email, tmp_path: Path) -> None:
    from nextbest.batch.io import BatchInputError
    from nextbest.batch.run import decide_customers
    from nextbest.decisions.catalog import load_catalog

    counts = free_email["chosen_action"].value_counts().drop("no_action")
    top, n_top = counts.index[0], int(counts.iloc[0])
    assert n_top >= 4
    cap = n_top // 2
    catalog = load_catalog(world.settings.catalog)
    cost = {a.id: a.cost_on("email") for a in catalog.actions if "email" in a.channels}
    spent = sum(cost[a] * n for a, n in counts.items())
    budget = round(spent * 0.6, 2)
    policy = _policy_with(
        world,
        tmp_path,
        f"  - {{id: top_run, actions: [{top}], per: run, max: {cap}}}\n"
        f"  - {{id: email_budget, channel: email, unit: cost, per: day, max: {budget}}}\n",
    )
    settings = world.settings.model_copy(update={"policy": policy})
    out = tmp_path / "email.parquet"
    summary = decide_customers(settings, "email", None, out)
    got = pd.read_parquet(out)
    chosen = got["chosen_action"]
    assert (chosen == top).sum() <= cap
    assert sum(cost.get(a, 0.0) for a in chosen) <= budget
    assert summary.allocation is not None
    for limit in summary.allocation["limits"]:
        assert limit["used"] <= limit["capacity"]
    assert summary.allocation["gap"] < 0.05
    assert (got[f"excluded_{top}"] == "CAPACITY").any()  # the limit, not the customer
    assert got["reason"].isin(["CAPACITY", "ALLOCATED"]).any()
    assert (got.loc[got["group"] == "holdout", "chosen_action"] == "no_action").all()
    with pytest.raises(BatchInputError, match="local engine"):
        decide_customers(settings, "email", None, tmp_path / "spark", engine="spark")


def test_served_limits_hold_under_concurrent_requests(
    world: World, free_email, tmp_path: Path
) -> None:
    treated = free_email[free_email["group"] == "decided"]
    counts = treated["chosen_action"].value_counts().drop("no_action")
    top = counts.index[0]
    wanted = list(treated.loc[treated["chosen_action"] == top, "customer_id"])[:40]
    cap = max(2, len(wanted) // 4)
    home = tmp_path / "home"
    shutil.copytree(world.home, home, ignore=shutil.ignore_patterns("decisions"))
    policy = _policy_with(
        world, tmp_path, f"  - {{id: top_total, actions: [{top}], per: total, max: {cap}}}\n"
    )
    server = start_server(
        "serving.service:NextBest",
        home,
        tmp_path / "serve.log",
        env={"NEXTBEST_POLICY": str(policy)},
    )
    try:

        def ask(cid: str) -> dict:
            r = httpx.post(
                f"{server.url}/decide",
                json={"customer": {"id": cid}, "channel": "email", "k": 3},
                headers=server.headers,
                timeout=60,
            )
            assert r.status_code == 200, r.text
            return r.json()

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(ask, wanted * 2))  # each customer twice, all at once
    finally:
        stop_server(server.proc)
    got = [a["chosen_action"] for a in answers]
    assert 1 <= got.count(top) <= cap
    limited = [a for a in answers if a["reason"]["code"] in ("CAPACITY", "ALLOCATED")]
    assert limited and all("top_total" in a["reason"]["text"] for a in limited)
    for a in limited:
        codes = {e["action_id"]: e["reasons"][0]["code"] for e in a["excluded"]}
        assert codes.get(top) == "CAPACITY"
    # The counter in the ledger says what the answers say.
    from nextbest.decisions.budgets import LimitCounters
    from nextbest.decisions.ledger import Ledger
    from nextbest.decisions.policy import Limit

    limit = Limit(id="top_total", actions=[top], per="total", max=cap)
    used = LimitCounters(Ledger(home / "ledger.db")).used([limit], pd.Timestamp.now("UTC"))
    assert used["top_total"] == got.count(top)
