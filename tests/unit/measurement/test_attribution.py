"""Attribution: window, latest preceding decision, and agreement with a brute-force join."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from nextbest.measurement.attribution import attribute_outcomes, flatten_decisions
from tests.params import SEED

T0 = pd.Timestamp("2024-03-01T09:00:00Z")


def _decisions(rows: list[tuple[str, str, pd.Timestamp]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["decision_id", "customer_id", "decided_at"])


def test_latest_preceding_decision_within_window() -> None:
    decisions = _decisions(
        [
            ("d1", "c1", T0),
            ("d2", "c1", T0 + timedelta(days=2)),
            ("d3", "c2", T0),
        ]
    )
    outcomes = pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1", "c2", "c2", "c3"],
            "ts": [
                T0 + timedelta(days=1),  # d1: before d2 was made
                T0 + timedelta(days=3),  # d2: the latest preceding decision
                T0 - timedelta(hours=1),  # before any decision: dropped
                T0 + timedelta(days=20),  # outside the 14-day window: dropped
                T0 + timedelta(days=14),  # exactly at the edge: kept
                T0 + timedelta(days=1),  # customer without decisions: dropped
            ],
            "type": ["response", "purchase", "purchase", "purchase", "response", "purchase"],
            "revenue": [0.0, 50.0, 7.0, 99.0, 3.0, 1.0],
        }
    )
    out = attribute_outcomes(decisions, outcomes, timedelta(days=14)).set_index("decision_id")
    assert out.loc["d1", "responded"] == 1 and out.loc["d1", "revenue"] == 0.0
    assert out.loc["d2", "responded"] == 1 and out.loc["d2", "revenue"] == 50.0
    assert out.loc["d3", "responded"] == 1 and out.loc["d3", "revenue"] == 3.0
    narrow = attribute_outcomes(decisions, outcomes, timedelta(days=7)).set_index("decision_id")
    assert narrow.loc["d3", "responded"] == 0 and narrow.loc["d3", "revenue"] == 0.0


def test_matches_brute_force_join() -> None:
    rng = np.random.default_rng(SEED)
    n_dec, n_out, n_cust = 400, 600, 60
    decisions = _decisions(
        [
            (
                f"d{i}",
                f"c{rng.integers(n_cust)}",
                T0 + timedelta(hours=float(rng.uniform(0, 24 * 60))),
            )
            for i in range(n_dec)
        ]
    )
    outcomes = pd.DataFrame(
        {
            "customer_id": [f"c{k}" for k in rng.integers(n_cust, size=n_out)],
            "ts": [T0 + timedelta(hours=float(h)) for h in rng.uniform(-48, 24 * 70, size=n_out)],
            "type": "purchase",
            "revenue": rng.gamma(2.0, 20.0, size=n_out),
        }
    )
    window = timedelta(days=5)
    got = attribute_outcomes(decisions, outcomes, window).set_index("decision_id")

    expected_rev = {d: 0.0 for d in decisions["decision_id"]}
    expected_n = {d: 0 for d in decisions["decision_id"]}
    for o in outcomes.itertuples():
        cands = decisions[
            (decisions["customer_id"] == o.customer_id)
            & (decisions["decided_at"] <= o.ts)
            & (decisions["decided_at"] >= o.ts - window)
        ]
        if len(cands):
            best = cands.sort_values("decided_at").iloc[-1]["decision_id"]
            expected_rev[best] += o.revenue
            expected_n[best] += 1
    exp = pd.Series(expected_rev)
    np.testing.assert_allclose(got.loc[exp.index, "revenue"].to_numpy(), exp.to_numpy())
    exp_resp = (pd.Series(expected_n) > 0).astype(int)
    np.testing.assert_array_equal(got.loc[exp.index, "responded"].to_numpy(), exp_resp.to_numpy())
    assert exp_resp.sum() > 20  # the case is not vacuous


def test_flatten_takes_best_ranked_action() -> None:
    decisions = pd.DataFrame(
        {
            "decision_id": ["a", "b"],
            "decided_at": ["2024-03-01T09:00:00+00:00", "2024-03-02T09:00:00Z"],
            "customer_id": ["c1", "c2"],
            "channel": ["email", "sms"],
            "group": ["decided", "holdout"],
            "chosen_action": ["x", "no_action"],
            "propensity": [0.9, 1.0],
            "ranked": [
                [{"action_id": "y", "score": 0.5}, {"action_id": "x", "score": 2.0}],
                [],
            ],
        }
    )
    flat = flatten_decisions(decisions)
    assert flat["top_action"].tolist() == ["x", "no_action"]
    assert flat["top_score"].tolist() == [2.0, 0.0]
    assert str(flat["decided_at"].dt.tz) == "UTC"
