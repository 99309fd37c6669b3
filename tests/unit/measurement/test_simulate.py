"""The feedback-loop simulation on a truth where sure things have high response but no uplift."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from nextbest.measurement.attribution import attribute_outcomes
from nextbest.measurement.policy_evaluation import candidate_from_scores, evaluate_candidate
from nextbest.measurement.simulate import (
    simulate_log,
    simulate_policies,
    truth_actions,
    truth_scores,
)
from tests.params import SECOND_SEED, SEED, SMALL_CUSTOMERS

N_SIM = 10 * SMALL_CUSTOMERS


def _sure_things_truth(seed: int, n: int = N_SIM) -> pd.DataFrame:
    """Half sure things (respond at 0.6 whatever happens; the 'hot' action is theirs),
    half persuadables (0.02 without contact, 0.15 with the 'nudge' action)."""
    rng = np.random.default_rng(seed)
    sure = rng.random(n) < 0.5
    p0 = np.where(sure, 0.6, 0.02)
    return pd.DataFrame(
        {
            "person_id": [f"P{i:07d}" for i in range(n)],
            "p_no_action": p0,
            "p_hot": np.where(sure, 0.6, 0.03),
            "p_nudge": np.where(sure, 0.55, 0.15),
            "value_no_action": 100.0,
            "value_hot": 100.0,
            "value_nudge": 100.0,
        }
    )


@pytest.mark.slow
def test_uplift_beats_propensity_ranking_and_no_action() -> None:
    truth = _sure_things_truth(SECOND_SEED)  # not SEED: the draws would correlate
    costs = {"hot": 5.0, "nudge": 5.0}
    res = simulate_policies(
        truth, truth_scores(truth, costs), SEED, holdout_share=0.2, epsilon=0.05, costs=costs
    ).set_index("policy")
    true = res["true_incremental_value"]
    assert true["uplift"] > true["propensity"] + 1.0
    assert true["propensity"] >= true["no_action"] - 1.0  # ">= or about": sure things cost
    # Exact true values, computed independently of the simulator for the greedy part.
    sure = truth["p_no_action"].to_numpy() == 0.6
    greedy_uplift = np.where(sure, 0.0, (0.15 - 0.02) * 100 - 5.0).mean()
    assert abs(true["uplift"] - greedy_uplift) < 0.5  # exploration moves it a little
    # The log-based estimate sees the same ordering and covers the true value.
    for policy in ("uplift", "propensity", "no_action"):
        row = res.loc[policy]
        assert row["est_ci_low"] - 0.5 <= row["true_incremental_value"] <= row["est_ci_high"] + 0.5
    assert (
        res.loc["uplift", "est_incremental_value"] > res.loc["propensity", "est_incremental_value"]
    )
    assert res.loc["no_action", "share_contacted"] < 0.1
    assert res.loc["propensity", "share_contacted"] > 0.9


def test_log_records_and_propensities() -> None:
    truth = _sure_things_truth(SECOND_SEED, n=2_000)
    assert truth_actions(truth) == ["hot", "nudge"]
    scores = truth_scores(truth)["uplift"]
    eps = 0.3
    decisions, outcomes, _ = simulate_log(truth, scores, SEED, holdout_share=0.1, epsilon=eps)
    hold = decisions["group"] == "holdout"
    assert (decisions.loc[hold, "chosen_action"] == "no_action").all()
    assert (decisions.loc[hold, "propensity"] == 1.0).all()
    # Treated propensities are the epsilon-greedy ones: 1-eps+eps/3 for greedy, eps/3 else.
    treated = decisions.loc[~hold, "propensity"].to_numpy()
    np.testing.assert_allclose(
        np.sort(np.unique(treated.round(12))), np.sort([eps / 3, 1 - eps + eps / 3])
    )
    share_greedy = (treated > 0.5).mean()
    assert abs(share_greedy - (1 - eps + eps / 3)) < 0.03
    assert set(outcomes["customer_id"]) <= set(decisions["customer_id"])
    with pytest.raises(ValueError, match="shape"):
        simulate_log(truth, scores[:, :1], SEED)


def test_ope_on_a_simulated_log_recovers_the_uplift_policy_value() -> None:
    """Log under propensity ranking with exploration, then evaluate the uplift policy."""
    truth = _sure_things_truth(SECOND_SEED)
    costs = {"hot": 5.0, "nudge": 5.0}
    scores = truth_scores(truth, costs)
    decisions, outcomes, _ = simulate_log(
        truth, scores["propensity"], SEED, holdout_share=0.1, epsilon=0.3, costs=costs
    )
    attributed = attribute_outcomes(decisions, outcomes, timedelta(days=14))
    actions = ["hot", "nudge", "no_action"]
    treated = (attributed["group"] == "decided").to_numpy()
    uplift_scores = np.column_stack([scores["uplift"], np.zeros(len(truth))])[treated]
    res = evaluate_candidate(
        attributed,
        lambda d: candidate_from_scores(d, uplift_scores, actions),
        reward="net_value",
        actions=actions,
    ).set_index("estimator")
    # True expected net value per treated decision of the greedy uplift policy.
    t = truth[treated]
    p = t[["p_hot", "p_nudge"]].to_numpy()
    v = t[["value_hot", "value_nudge"]].to_numpy()
    gain = p * v - 5.0
    up = scores["uplift"][treated]
    best = up.argmax(axis=1)
    rows = np.arange(len(t))
    true_value = np.where(
        up[rows, best] > 0, gain[rows, best], t["p_no_action"] * t["value_no_action"]
    ).mean()
    for est in ("ips", "snips", "dr"):
        row = res.loc[est]
        assert abs(row["value"] - true_value) < 3 * row["se"], (est, row["value"], true_value)
    assert res.loc["dr", "se"] <= res.loc["ips", "se"]
