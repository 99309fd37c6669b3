import numpy as np
import pytest
from sklift import metrics as sk

from nextbest.models.evaluation import (
    calibration_table,
    evaluate_policies,
    expected_calibration_error,
    qini_auc_score,
    response_metrics,
    uplift_at_k,
    uplift_auc_score,
)
from nextbest.models.ope_estimators import DR, IPS, SNIPS
from tests.params import SECOND_SEED, SEED


@pytest.mark.parametrize("seed", [SEED, SECOND_SEED])
def test_uplift_metrics_equal_sklift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3_000
    t = rng.integers(0, 2, n)
    score = rng.normal(size=n)
    y = rng.binomial(1, 0.2 + 0.2 * t * (score > 0))
    score[:200] = np.round(score[:200])  # ties must be handled the same way
    assert qini_auc_score(y, score, t) == pytest.approx(
        sk.qini_auc_score(y, score, t, negative_effect=True), abs=1e-12
    )
    assert qini_auc_score(y, score, t, negative_effect=False) == pytest.approx(
        sk.qini_auc_score(y, score, t, negative_effect=False), abs=1e-12
    )
    assert uplift_auc_score(y, score, t) == pytest.approx(
        sk.uplift_auc_score(y, score, t), abs=1e-12
    )
    assert uplift_at_k(y, score, t, k=0.3) == pytest.approx(
        sk.uplift_at_k(y, score, t, strategy="overall", k=0.3), abs=1e-12
    )
    # an informative score beats a random one
    assert qini_auc_score(y, score, t) > qini_auc_score(y, rng.normal(size=n), t) + 0.04


def test_calibration_and_response_metrics() -> None:
    rng = np.random.default_rng(SEED)
    p = rng.uniform(0.05, 0.6, 20_000)
    y = rng.binomial(1, p)
    table = calibration_table(y, p, n_bins=10)
    assert table["n"].sum() == len(y)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p * 1.5, 0, 1)) > 0.05
    m = response_metrics(y, p)
    assert 0.6 < m["auc"] < 0.8 and m["log_loss"] > 0


def test_policy_values_are_unbiased_on_a_randomised_log() -> None:
    rng = np.random.default_rng(SEED)
    n = 60_000
    labels = np.array(["c", "a", "b"], dtype=object)
    truth = np.column_stack([np.full(n, 0.1), rng.uniform(0.0, 0.4, n), np.full(n, 0.2)])
    logged = labels[rng.integers(0, 3, n)]
    col = {"c": 0, "a": 1, "b": 2}
    y = rng.binomial(1, truth[np.arange(n), [col[a] for a in logged]]).astype(float)
    policy = np.where(truth[:, 1] > 0.2, "a", "b").astype(object)
    true_value = np.where(truth[:, 1] > 0.2, truth[:, 1], 0.2).mean()
    ips = IPS().evaluate(policy, logged, y, 1 / 3)
    assert abs(ips.value - true_value) < 4 * ips.se
    snips = SNIPS().evaluate(policy, logged, y, 1 / 3)
    assert abs(snips.value - true_value) < 4 * snips.se
    dr = DR().evaluate(policy, logged, y, 1 / 3, ["c", "a", "b"], truth)
    assert abs(dr.value - true_value) < 4 * dr.se
    assert dr.se < ips.se  # a good direct method reduces the variance

    table = evaluate_policies(logged, y, 1 / 3, ["a", "b"], "c", truth, truth=truth, seed=SEED)
    assert set(table["policy"]) == {
        "no_action",
        "best_single_arm",
        "random_arm",
        "response_ranking",
        "model",
    }
    by = table.set_index("policy")
    assert by.loc["model", "regret"] == pytest.approx(0.0, abs=1e-12)
    assert (table["regret"] >= -1e-12).all()
    assert by.loc["no_action", "share_treated"] == 0
    assert by.loc["model", "ips"] > by.loc["no_action", "ips"]


def test_paired_gain_is_the_difference_with_a_smaller_se() -> None:
    rng = np.random.default_rng(SEED)
    n = 30_000
    labels = np.array(["c", "a", "b"], dtype=object)
    logged = labels[rng.integers(0, 3, n)]
    # arm "b" is better only on the tenth of rows where x is set
    x = rng.random(n) < 0.1
    p = np.where(logged == "c", 0.1, np.where(logged == "a", 0.2, np.where(x, 0.4, 0.15)))
    y = rng.binomial(1, p).astype(float)
    policy = np.where(x, "b", "a").astype(object)
    everyone_a = np.full(n, "a", dtype=object)
    gain = IPS().compare(policy, everyone_a, logged, y, 1 / 3)
    a = IPS().evaluate(policy, logged, y, 1 / 3)
    b = IPS().evaluate(everyone_a, logged, y, 1 / 3)
    assert gain.value == pytest.approx(a.value - b.value)
    # the rows where both policies agree cancel, so the paired SE is far below either SE
    assert gain.se < 0.7 * min(a.se, b.se)
    assert abs(gain.value - 0.1 * (0.4 - 0.2)) < 4 * gain.se
    same = IPS().compare(everyone_a, everyone_a, logged, y, 1 / 3)
    assert same.value == 0.0 and same.se == 0.0


def test_policy_value_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="propensities"):
        IPS().evaluate(np.array(["a"]), np.array(["a"]), np.array([1.0]), 0.0)
    with pytest.raises(ValueError, match="length"):
        IPS().evaluate(np.array(["a", "b"]), np.array(["a"]), np.array([1.0]), 0.5)
