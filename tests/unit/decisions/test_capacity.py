"""The policy's limits over a book of decisions (batch) and online counters: no limit is
exceeded, the reasons say when the limit and not the customer excluded an action."""

from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from nextbest.decisions.budgets import LimitCounters, allowance, reserve_decisions
from nextbest.decisions.capacity import allocate_decisions, limit_rows
from nextbest.decisions.catalog import ConfigError
from nextbest.decisions.engine import decide
from nextbest.decisions.ledger import Ledger
from nextbest.decisions.policy import Exploration, Limit, Policy, load_policy
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rules import compile_plan
from tests.params import SEED
from tests.unit.decisions.conftest import ROOT, ViewsModel, ctx, default_row, matrix
from tests.unit.decisions.test_engine import BUNDLE, UPGRADE, no_random

N = 60


def _limited(policy: Policy, *limits: Limit, epsilon: float = 0.0) -> Policy:
    base = no_random(policy)
    return base.model_copy(
        update={"limits": list(limits), "exploration": Exploration(epsilon=epsilon)}
    )


def _book(catalog, policy, names, n: int = N, seed: int = SEED):
    rng = np.random.default_rng(seed)
    rows = [{**default_row(names), "views_30d_phones": float(v)} for v in rng.uniform(1, 10, n)]
    X = matrix(names, rows)
    plan = compile_plan(catalog, policy, names, ViewsModel(catalog.ids))
    return plan, X, [f"C{i:07d}" for i in range(n)]


def test_batch_allocation_keeps_every_limit_and_says_capacity(catalog, policy, names):
    bundle_cap = Limit(id="bundle_stock", actions=[BUNDLE], per="run", max=7)
    email_cost = Limit(id="email_budget", channel="email", unit="cost", max=1.0, per="day")
    pol = _limited(policy, bundle_cap, email_cost)
    plan, X, ids = _book(catalog, pol, names)
    free = decide(X, ids, plan, ctx())
    assert (free.chosen_action == BUNDLE).sum() > 7  # the limit binds
    d = decide(X, ids, plan, ctx())
    rows = limit_rows(plan, "email")
    result = allocate_decisions([d], rows)
    assert result is not None
    # Within what rounding an LP vertex can lose: one best score per limit.
    best = np.nanmax(np.where(free.codes == Reason.ELIGIBLE, free.score, np.nan))
    assert result.value >= result.lp_bound - len(rows.limits) * best
    chosen = d.chosen_action
    assert (chosen == BUNDLE).sum() <= 7
    cp = plan.channels["email"]
    cost = dict(zip(plan.action_ids[cp.action_idx], cp.cost, strict=True))
    assert sum(cost.get(a, 0.0) for a in chosen) <= 1.0
    b = list(plan.action_ids).index(BUNDLE)
    capped = np.flatnonzero(d.codes[:, b] == Reason.CAPACITY)
    assert len(capped)  # the limit, not the customer, excluded it
    records = d.records()
    i = int(capped[0])
    excluded = {e["action_id"]: e for e in records[i]["excluded"]}
    assert excluded[BUNDLE]["reason"] == "CAPACITY"
    assert "bundle_stock" in excluded[BUNDLE]["sentence"]
    assert records[i]["reason"] in ("ALLOCATED", "CAPACITY")
    assert "limit" in records[i]["reason_text"]
    if records[i]["chosen_action"] != "no_action":
        assert records[i]["ranked"][0]["action_id"] == records[i]["chosen_action"]
    # Customers the limit left alone keep their own best choice.
    untouched = ~(d.codes == Reason.CAPACITY).any(axis=1)
    assert (d.chosen[untouched] == free.chosen[untouched]).all()
    # More value than the greedy ranking cut off at the limit.
    assert result.value >= _greedy_value(free, plan, 7)


def _greedy_value(free, plan, cap: int) -> float:
    b = list(plan.action_ids).index(BUNDLE)
    s = free.score[np.arange(free.n), np.maximum(free.chosen, 0)]
    s = np.where(free.chosen >= 0, s, 0.0)
    over = np.flatnonzero(free.chosen == b)[cap:]
    return float(s.sum() - s[over].sum())


def test_exploration_never_breaks_a_limit(catalog, policy, names):
    pol = _limited(
        policy, Limit(id="upgrade_cap", actions=[UPGRADE], per="run", max=3), epsilon=0.5
    )
    plan, X, ids = _book(catalog, pol, names, n=200)
    d = decide(X, ids, plan, ctx())
    allocate_decisions([d], limit_rows(plan, "email"))
    assert (d.chosen_action == UPGRADE).sum() <= 3
    assert ((d.propensity > 0) & (d.propensity <= 1)).all()


def test_online_counters_never_overspend_across_processes(tmp_path: Path):
    ledger_path = tmp_path / "ledger.sqlite"
    LimitCounters(Ledger(ledger_path))
    ctx_ = mp.get_context("spawn")
    with ctx_.Pool(3) as pool:
        won = sum(pool.map(_reserve_many, [str(ledger_path)] * 3))
    assert won == 37
    used = LimitCounters(Ledger(ledger_path)).used([_TOTAL], datetime.now(UTC))
    assert used == {"bundle_total": 37.0}


_TOTAL = Limit(id="bundle_total", actions=[BUNDLE], per="total", max=37)


def _reserve_many(path: str) -> int:
    counters = LimitCounters(Ledger(Path(path)))
    now = datetime.now(UTC)
    return sum(counters.reserve([_TOTAL], np.ones(1), now) is None for _ in range(30))


def test_a_days_budget_is_paced():
    limit = Limit(id="calls", max=800, per="day", pacing_slack=0.05)
    assert allowance(limit, datetime(2026, 1, 1, 0, 0, tzinfo=UTC)) == pytest.approx(40)
    assert allowance(limit, datetime(2026, 1, 1, 6, 0, tzinfo=UTC)) == pytest.approx(240)
    assert allowance(limit, datetime(2026, 1, 1, 23, 30, tzinfo=UTC)) == 800


def test_online_reservation_falls_back_down_the_ranking(catalog, policy, names, tmp_path):
    pol = _limited(
        policy, Limit(id="bundle_day", actions=[BUNDLE], per="day", max=2, pacing_slack=1)
    )
    plan, X, ids = _book(catalog, pol, names, n=12)
    counters = LimitCounters(Ledger(tmp_path / "ledger.sqlite"))
    rows = limit_rows(plan, "email", periods=("day", "total"))
    chosen = []
    for i in range(len(ids)):  # one request at a time, as the service sees them
        d = decide(X[i : i + 1], ids[i : i + 1], plan, ctx())
        reserve_decisions(d, rows, counters, ctx().now)
        chosen.append(d.chosen_action[0])
        if d.codes[0, list(plan.action_ids).index(BUNDLE)] == Reason.CAPACITY:
            record = d.records()[0]
            assert record["reason"] in ("ALLOCATED", "CAPACITY")
            assert "bundle_day" in record["reason_text"] and "{" not in record["reason_text"]
    assert chosen.count(BUNDLE) == 2
    assert counters.used(rows.limits, ctx().now) == {"bundle_day": 2.0}


def test_a_limit_naming_an_unknown_action_or_channel_is_refused(tmp_path, catalog):
    text = (ROOT / "config" / "policy.yaml").read_text()
    bad = tmp_path / "policy.yaml"
    bad.write_text(text + "\nlimits:\n  - {id: x, actions: [no_such_action], max: 5}\n")
    with pytest.raises(ConfigError, match="no_such_action"):
        load_policy(bad, catalog.terms())
    bad.write_text(text + "\nlimits:\n  - {id: x, channel: pigeon, max: 5}\n")
    with pytest.raises(ConfigError, match="pigeon"):
        load_policy(bad, catalog.terms())
    bad.write_text(text + "\nlimits:\n  - {id: x, max: 5}\n  - {id: x, max: 6}\n")
    with pytest.raises(ConfigError, match="duplicate"):
        load_policy(bad, catalog.terms())


def test_no_room_for_anything_says_which_limit(catalog, policy, names, tmp_path):
    only = [a.id for a in catalog.actions if "email" in a.channels]
    pol = _limited(policy, Limit(id="email_total", actions=only, per="total", max=0))
    plan, X, ids = _book(catalog, pol, names, n=1)
    counters = LimitCounters(Ledger(tmp_path / "ledger.sqlite"))
    d = decide(X, ids, plan, ctx())
    reserve_decisions(d, limit_rows(plan, "email", periods=("day", "total")), counters, ctx().now)
    record = d.records()[0]
    assert record["chosen_action"] == "no_action" and record["reason"] == "CAPACITY"
    assert "email_total" in record["reason_text"] and "{" not in record["reason_text"]
