"""Learning from the product's own log, end to end on the session world.

The world's customers are batch-scored with ``log_decisions=True`` and outcomes drawn from
its truth (``ensure_demo_measurement``, shared with test_measurement_cli.py). Then:
``nextbest train --from-log`` trains and registers a model from that log (and refuses a
log too small, registering nothing), and ``nextbest evaluate-policy --candidate
models:/...`` values registered models on it. The champion that made the decisions,
re-scored on the offline features as of each decision, must choose what the log says it
chose; its IPS and SNIPS values are recomputed here from the raw JSON lines.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from nextbest.cli import app
from nextbest.core.settings import Settings, get_settings
from nextbest.demo.notebook_support import DemoMeasurement, ensure_demo_measurement
from tests.conftest import World
from tests.params import SEED

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@dataclass
class Home:
    """A private copy of the session world (with its demo log and outcomes) whose
    registry these tests may change, and its settings."""

    path: Path
    settings: Settings


@pytest.fixture(scope="module")
def demo(world: World) -> DemoMeasurement:
    return ensure_demo_measurement(world.settings)


@pytest.fixture(scope="module")
def home(
    world: World, demo: DemoMeasurement, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Home]:
    """The copy, made the CLI's home (the session world's champion stays as it is for
    the tests that serve it)."""
    path = tmp_path_factory.mktemp("learnloop") / "home"
    shutil.copytree(world.home, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEXTBEST_HOME", str(path))
        mp.setenv("NEXTBEST_SEED", str(SEED))
        mp.setenv("NEXTBEST_LEARNERS", json.dumps(["t_learner", "s_learner"]))
        mp.setenv("NEXTBEST_AS_OF", world.settings.as_of.isoformat())
        yield Home(path, get_settings())


def period(demo: DemoMeasurement) -> list[str]:
    """The demo period of the copy's log, its outcomes and attribution window."""
    return [
        "--outcomes",
        str(demo.outcomes_path),
        "--since",
        demo.since,
        "--until",
        demo.until,
        "--window-days",
        str(demo.window_days),
    ]


def versions(home: Home) -> list[int]:
    from nextbest.models.registry import configure_mlflow

    s = home.settings
    configure_mlflow(s)
    found = mlflow.MlflowClient().search_model_versions(f"name='{s.model_name}'")
    return sorted(int(v.version) for v in found)


def raw_decisions(demo: DemoMeasurement) -> pd.DataFrame:
    """The period's decisions from the JSON lines, each with its attributed revenue (a
    cross join per customer: the latest decision at or before the outcome)."""
    rows = [
        json.loads(line)
        for path in sorted(Path(demo.log_dir).rglob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    d = pd.DataFrame(rows)
    d["decided_at"] = pd.to_datetime(d["decided_at"], utc=True, format="ISO8601")
    d = d.loc[
        (d["decided_at"] >= pd.Timestamp(demo.since)) & (d["decided_at"] < pd.Timestamp(demo.until))
    ].reset_index(drop=True)
    o = pd.read_parquet(demo.outcomes_path).reset_index(names="outcome")
    o["ts"] = pd.to_datetime(o["ts"], utc=True)
    pairs = o.merge(d[["decision_id", "customer_id", "decided_at"]], on="customer_id")
    lag = pairs["ts"] - pairs["decided_at"]
    pairs = pairs.loc[(lag >= pd.Timedelta(0)) & (lag <= timedelta(days=demo.window_days))]
    best = pairs.sort_values("decided_at").groupby("outcome").tail(1)
    d["revenue"] = d["decision_id"].map(best.groupby("decision_id")["revenue"].sum()).fillna(0.0)
    d["greedy"] = [r[0]["action_id"] if len(r) else "no_action" for r in d["ranked"]]
    return d


def raw_treated(demo: DemoMeasurement) -> pd.DataFrame:
    """:func:`raw_decisions` of the decided group."""
    d = raw_decisions(demo)
    return d.loc[d["group"] == "decided"].reset_index(drop=True)


def test_train_from_log_refuses_a_log_too_small(home: Home, demo: DemoMeasurement) -> None:
    before = versions(home)
    # a window that ends an hour before the demo's first round holds no decision
    since = (pd.Timestamp(demo.since) - pd.Timedelta(days=1)).isoformat()
    until = (pd.Timestamp(demo.since) - pd.Timedelta(hours=1)).isoformat()
    args = ["train", "--from-log", "--outcomes", str(demo.outcomes_path), "--since", since]
    res = CliRunner().invoke(app, [*args, "--until", until, "--with-history"])
    assert res.exit_code == 2, res.output
    assert "0 logged decisions, at least 200" in res.output or "no decisions" in res.output
    assert "Nothing was trained or registered" in res.output or "no decisions" in res.output
    no_outcomes = CliRunner().invoke(app, ["train", "--from-log"])
    assert no_outcomes.exit_code == 2 and "--outcomes" in no_outcomes.output
    assert versions(home) == before


def test_train_from_log_with_history_registers_a_gated_model(
    home: Home, demo: DemoMeasurement
) -> None:
    before = versions(home)
    res = CliRunner().invoke(app, ["train", "--from-log", "--with-history", *period(demo)])
    assert res.exit_code == 0, res.output
    after = versions(home)
    assert len(after) == len(before) + 1
    client = mlflow.MlflowClient()
    mv = client.get_model_version(home.settings.model_name, str(after[-1]))
    params = client.get_run(mv.run_id).data.params
    assert params["training_source"] == "log+history"
    assert int(params["rows_history"]) > 0
    # Every logged decision of the period is an exposure (the holdout's too), and the clip
    # reported on the run is the share of logged propensities under the floor.
    raw = raw_decisions(demo)
    assert int(params["log_decisions"]) == len(raw)
    assert int(params["log_responded"]) == int((raw["revenue"] > 0).sum())
    floor = float(params["log_propensity_floor"])
    assert floor == 0.01
    assert float(params["log_clipped_share"]) == pytest.approx((raw["propensity"] < floor).mean())
    assert "clipped" in res.output
    reason = mv.tags["promotion_reason"]
    assert "by more than the noise" in reason and "lower bound" in reason


def test_evaluate_policy_values_a_registered_model_on_the_log(
    home: Home, world: World, demo: DemoMeasurement, tmp_path: Path
) -> None:
    champion = str(world.train_result.model_version)
    out = tmp_path / "ope.json"
    uri = f"models:/{home.settings.model_name}/{champion}"
    args = ["evaluate-policy", "--candidate", uri, *period(demo), "--json", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "offline store" in res.output
    got = json.loads(out.read_text())
    values = {r["estimator"]: r for r in got["values"]}
    raw = raw_treated(demo)
    assert got["decisions"] == len(raw)
    # The model that decided, re-scored on the same snapshot, takes the logged greedy
    # choice: IPS and SNIPS recomputed from the raw log with it as the candidate.
    w = (raw["chosen_action"] == raw["greedy"]).to_numpy() / raw["propensity"].to_numpy()
    y = raw["revenue"].to_numpy()
    assert values["ips"]["value"] == pytest.approx((w * y).mean(), rel=0.02)
    assert values["snips"]["value"] == pytest.approx((w * y).sum() / w.sum(), rel=0.02)
    assert values["ips"]["se"] > 0 and values["dr"]["se"] > 0
    assert values["ips"]["ci_low"] < values["ips"]["value"] < values["ips"]["ci_high"]
    # against itself (the champion alias may have moved: pair with its own version URI)
    gains = got["gains"]
    assert set(gains) == {"ips", "dr"}
    for g in gains.values():
        assert g["lower"] == pytest.approx(g["gain"] - 1.6448536269514722 * g["se"])
        assert g["beats"] == (g["lower"] > 0)


def test_evaluate_policy_promotes_only_beyond_the_noise(
    home: Home, world: World, demo: DemoMeasurement, tmp_path: Path
) -> None:
    from nextbest.models.registry import configure_mlflow

    s = home.settings
    configure_mlflow(s)
    client = mlflow.MlflowClient()
    champion = str(client.get_model_version_by_alias(s.model_name, "champion").version)
    same = f"models:/{s.model_name}/{champion}"
    res = CliRunner().invoke(
        app, ["evaluate-policy", "--candidate", same, *period(demo), "--promote"]
    )
    assert res.exit_code == 0, res.output
    assert "champion already" in res.output
    other = next(str(v) for v in reversed(versions(home)) if str(v) != champion)
    out = tmp_path / "gate.json"
    uri = f"models:/{s.model_name}/{other}"
    args = ["evaluate-policy", "--candidate", uri, *period(demo), "--promote", "--json", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    gain = json.loads(out.read_text())["gains"]["dr"]
    now = str(client.get_model_version_by_alias(s.model_name, "champion").version)
    # the rule: promoted exactly when the one-sided 95 % lower bound of the DR gain is > 0
    assert (now == other) == (gain["gain"] - 1.6448536269514722 * gain["se"] > 0)
    reason = client.get_model_version(s.model_name, other).tags["promotion_reason"]
    assert f"{gain['lower']:.5f}" in reason
    bad = CliRunner().invoke(
        app, ["evaluate-policy", "--candidate", "models:/nope/1", *period(demo)]
    )
    assert bad.exit_code == 2 and "models:/nope/1" in bad.output
