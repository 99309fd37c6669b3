"""Lift with Welch intervals on a log with a known effect, exclusions and drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from nextbest.measurement.lift import (
    decision_drift,
    diff_in_means,
    exclusion_counts,
    lift_by,
    lift_tables,
)
from tests.params import SEED

N_ROWS = 50_000
P_TREATED_A, P_HOLDOUT_A, P_B = 0.12, 0.08, 0.05


def _known_effect_log(seed: int) -> pd.DataFrame:
    """Action A lifts response from 0.08 to 0.12; action B has no effect."""
    rng = np.random.default_rng(seed)
    top = rng.choice(["A", "B"], size=N_ROWS)
    group = np.where(rng.random(N_ROWS) < 0.5, "decided", "holdout")
    p = np.where(top == "B", P_B, np.where(group == "decided", P_TREATED_A, P_HOLDOUT_A))
    responded = (rng.random(N_ROWS) < p).astype(int)
    return pd.DataFrame(
        {
            "top_action": top,
            "group": group,
            "channel": rng.choice(["email", "sms"], size=N_ROWS),
            "value_tier": rng.integers(0, 4, size=N_ROWS),
            "responded": responded,
            "revenue": responded * 40.0,
        }
    )


def test_known_effect_is_covered_by_the_interval() -> None:
    flat = _known_effect_log(SEED)
    table = lift_by(flat, "top_action", "responded").set_index("segment")
    a, b = table.loc["A"], table.loc["B"]
    assert a["ci_low"] <= P_TREATED_A - P_HOLDOUT_A <= a["ci_high"]
    assert a["ci_low"] > 0
    assert b["ci_low"] <= 0 <= b["ci_high"]
    # Value per customer scales with the fixed revenue per response.
    rev = lift_by(flat, "top_action", "revenue").set_index("segment").loc["A"]
    np.testing.assert_allclose(rev["lift"], 40.0 * a["lift"])


def test_welch_se_matches_scipy() -> None:
    rng = np.random.default_rng(SEED)
    t, c = rng.gamma(2.0, 3.0, size=700), rng.gamma(2.0, 2.5, size=300)
    res = diff_in_means(t, c)
    welch = stats.ttest_ind(t, c, equal_var=False)
    np.testing.assert_allclose(res["lift"] / res["se"], welch.statistic)
    np.testing.assert_allclose(res["lift"], t.mean() - c.mean())


def test_lift_tables_cover_every_breakdown() -> None:
    flat = _known_effect_log(SEED)
    tables = lift_tables(flat)
    assert set(tables) == {"overall", "action", "channel", "value_tier"}
    tiers = tables["value_tier"]
    assert sorted(tiers.loc[tiers["metric"] == "responded", "segment"]) == [0, 1, 2, 3]
    overall = tables["overall"].set_index("metric").loc["responded"]
    treated = flat.loc[flat["group"] == "decided", "responded"].mean()
    holdout = flat.loc[flat["group"] == "holdout", "responded"].mean()
    np.testing.assert_allclose(overall["lift"], treated - holdout)
    assert overall["n_decided"] + overall["n_holdout"] == N_ROWS


def test_exclusion_counts_and_drift() -> None:
    decisions = pd.DataFrame(
        {
            "excluded": [
                [{"action_id": "A", "reason": "NO_CONSENT"}],
                [
                    {"action_id": "A", "reason": "NO_CONSENT"},
                    {"action_id": "B", "code": "COOLDOWN"},
                ],
                [],
            ],
            "decided_at": pd.to_datetime(
                ["2024-03-01T10:00Z", "2024-03-01T23:00Z", "2024-03-02T01:00Z"], utc=True
            ),
            "chosen_action": ["A", "no_action", "A"],
            "top_score": [1.0, 3.0, 5.0],
        }
    )
    ex = exclusion_counts(decisions).set_index(["action_id", "code"])
    assert ex.loc[("A", "NO_CONSENT"), "count"] == 2
    assert ex.loc[("B", "COOLDOWN"), "count"] == 1
    np.testing.assert_allclose(ex.loc[("A", "NO_CONSENT"), "share"], 2 / 3)
    shares, scores = decision_drift(decisions)
    assert shares.loc[pd.Timestamp("2024-03-01", tz="UTC"), "A"] == 0.5
    assert shares.loc[pd.Timestamp("2024-03-02", tz="UTC"), "A"] == 1.0
    assert scores["mean_top_score"].tolist() == [2.0, 5.0]
