"""Off-policy estimators on a synthetic logged bandit with known logging propensities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.measurement.policy_evaluation import (
    evaluate_candidate,
    load_candidate_levers,
    off_policy_value,
    rerank_logged,
)
from tests.params import SECOND_SEED, SEED

ACTIONS = ["a1", "a2", "a3", "no_action"]
N_TYPES, N_LOG, EPSILON = 6, 20_000, 0.3


def _bandit(seed: int, n: int = N_LOG) -> dict[str, np.ndarray]:
    """Contexts of N_TYPES kinds, Bernoulli rewards with known means, epsilon-greedy logging
    around a deliberately poor greedy choice (so the candidate differs from the logger)."""
    rng = np.random.default_rng(SEED)  # the world is fixed; only the log varies with seed
    mu = rng.uniform(0.02, 0.30, size=(N_TYPES, len(ACTIONS)))
    logger_greedy = mu.argmin(axis=1)
    cand_best = mu.argmax(axis=1)
    rng = np.random.default_rng(seed)
    s = rng.integers(N_TYPES, size=n)
    explore = rng.random(n) < EPSILON
    a = np.where(explore, rng.integers(len(ACTIONS), size=n), logger_greedy[s])
    prop = EPSILON / len(ACTIONS) + np.where(a == logger_greedy[s], 1 - EPSILON, 0.0)
    y = (rng.random(n) < mu[s, a]).astype(float)
    labels = np.array(ACTIONS, dtype=object)
    return {
        "mu": mu,
        "s": s,
        "logged": labels[a],
        "prop": prop,
        "y": y,
        "candidate": labels[cand_best[s]],
        "true_value": float(mu[np.arange(N_TYPES), cand_best].mean()),
        "logger_probs": np.where(
            np.arange(len(ACTIONS))[None, :] == logger_greedy[s][:, None],
            1 - EPSILON + EPSILON / len(ACTIONS),
            EPSILON / len(ACTIONS),
        ),
    }


def test_estimators_recover_the_candidate_value_within_3_se() -> None:
    b = _bandit(SECOND_SEED)
    q_biased = b["mu"][b["s"]] + 0.05  # a wrong reward model: DR must still be right
    res = off_policy_value(
        b["logged"], b["prop"], b["y"], b["candidate"], actions=ACTIONS, q_hat=q_biased
    ).set_index("estimator")
    assert set(res.index) == {"ips", "snips", "dr"}
    for est in ("ips", "snips", "dr"):
        assert abs(res.loc[est, "value"] - b["true_value"]) < 3 * res.loc[est, "se"], est
    # The candidate is far from the logger, so the estimate is not the logged mean.
    assert abs(res.loc["ips", "value"] - b["y"].mean()) > 3 * res.loc["ips", "se"]
    exact = off_policy_value(
        b["logged"], b["prop"], b["y"], b["candidate"], actions=ACTIONS, q_hat=b["mu"][b["s"]]
    ).set_index("estimator")
    assert exact.loc["dr", "se"] < exact.loc["ips", "se"]


def test_ips_is_unbiased_across_seeds() -> None:
    estimates = {"ips": [], "dr": []}
    n_seeds = 30
    for k in range(n_seeds):
        b = _bandit(SEED + 1 + k, n=3_000)
        q = np.full((len(b["y"]), len(ACTIONS)), 0.1)  # a constant (wrong) reward model
        res = off_policy_value(
            b["logged"], b["prop"], b["y"], b["candidate"], actions=ACTIONS, q_hat=q
        ).set_index("estimator")
        for est in estimates:
            estimates[est].append(res.loc[est, "value"])
    truth = _bandit(SEED)["true_value"]
    for est, values in estimates.items():
        v = np.asarray(values)
        assert abs(v.mean() - truth) < 3 * v.std(ddof=1) / np.sqrt(n_seeds), est


def test_on_policy_candidate_reproduces_the_logged_mean() -> None:
    b = _bandit(SEED)
    res = off_policy_value(
        b["logged"], b["prop"], b["y"], b["logger_probs"], actions=ACTIONS
    ).set_index("estimator")
    np.testing.assert_allclose(res.loc["ips", "value"], b["y"].mean())
    np.testing.assert_allclose(res.loc["snips", "value"], b["y"].mean())
    np.testing.assert_allclose(res.loc["ips", "effective_n"], len(b["y"]))


def test_bad_inputs_are_named() -> None:
    b = _bandit(SEED, n=10)
    with pytest.raises(ValueError, match="propensities"):
        off_policy_value(b["logged"], np.zeros(10), b["y"], b["candidate"], actions=ACTIONS)
    with pytest.raises(ValueError, match="outside"):
        off_policy_value(b["logged"], b["prop"], b["y"], np.full(10, "zz"), actions=ACTIONS)


def _logged_decisions(seed: int, n: int) -> pd.DataFrame:
    """Raw decision records whose ranked lists carry score parts, as the engine logs them."""
    rng = np.random.default_rng(seed)
    p_c = rng.uniform(0.02, 0.1, size=n)
    ids = ["x", "y"]
    pt = p_c[:, None] + rng.uniform(0.0, 0.1, size=(n, 2))
    value = np.array([30.0, 50.0])
    cost = np.array([0.5, 1.0])
    score = (pt - p_c[:, None]) * value - cost
    ranked, chosen = [], []
    for i in range(n):
        order = [k for k in np.argsort(-score[i]) if score[i, k] > 0]
        ranked.append(
            [
                {
                    "action_id": ids[k],
                    "score": float(score[i, k]),
                    "p_treated": float(pt[i, k]),
                    "p_control": float(p_c[i]),
                    "value": float(value[k]),
                    "cost": float(cost[k]),
                    "lever": 1.0,
                }
                for k in order
            ]
        )
        chosen.append(ranked[-1][0]["action_id"] if order else "no_action")
    return pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "group": "decided",
            "chosen_action": chosen,
            "propensity": 1.0,
            "ranked": ranked,
            "responded": (rng.random(n) < 0.1).astype(int),
            "revenue": 0.0,
            "_score": list(score),
            "_parts": list(np.stack([pt - p_c[:, None], np.broadcast_to(value, (n, 2))], 1)),
        }
    )


def test_rerank_logged_matches_direct_scoring() -> None:
    d = _logged_decisions(SEED, 500)
    score = np.stack(d["_score"].to_numpy())
    pos = np.stack(
        [[len(r) > 0 and any(e["action_id"] == a for e in r) for a in "xy"] for r in d["ranked"]]
    )
    # Doubling y's lever doubles its (positive) score; unranked actions stay out.
    boosted = np.where(pos, score * np.array([1.0, 2.0]), -np.inf)
    expected = np.where(
        boosted.max(axis=1) > 0, np.array(["x", "y"])[boosted.argmax(axis=1)], "no_action"
    )
    got = rerank_logged(d, {"y": 2.0})
    np.testing.assert_array_equal(got, expected)
    assert (got != rerank_logged(d, {})).any()
    np.testing.assert_array_equal(rerank_logged(d, {}), d["chosen_action"].to_numpy())
    res = evaluate_candidate(d, lambda frame: rerank_logged(frame, {"y": 2.0}), reward="responded")
    assert set(res["estimator"]) == {"ips", "snips", "dr", "logged"}


def test_candidate_levers_from_yaml(tmp_path) -> None:
    good = tmp_path / "cand.yaml"
    good.write_text("levers:\n  x: 1.5\n  y: 0.5\n")
    assert load_candidate_levers(good) == {"x": 1.5, "y": 0.5}
    cat = tmp_path / "catalog.yaml"
    cat.write_text("version: 1\nactions:\n  - id: x\n    lever: 2\n  - id: y\n")
    assert load_candidate_levers(cat) == {"x": 2.0, "y": 1.0}
    bad = tmp_path / "bad.yaml"
    bad.write_text("levers:\n  x: -1\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*levers.x"):
        load_candidate_levers(bad)
