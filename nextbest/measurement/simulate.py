"""A simulation of the feedback loop on generated data with a known truth.

For customers whose true response probabilities are known (``DIR/truth/response.parquet``:
``person_id, p_no_action, p_<action>, value_<action>``) a policy decides from a score
matrix, with the product's holdout and epsilon-greedy exploration; outcomes are drawn
from the truth; the decisions go to a decision log and the outcomes to an outcome table;
and the lift report's own functions estimate the lift from them. Comparing the estimate
with the true expected incremental value shows whether the measurement loop sees what a
policy really does.

The default comparison (:func:`truth_scores`) is the uplift policy (rank by
``uplift * value - cost``), propensity ranking (rank by ``p_treated``) and no action.
Everything runs from a truth table and score matrices, so no trained model is needed; the
entry point for the README is :func:`simulate_from_truth`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest.core.vocabulary import DECIDED, HOLDOUT, NO_ACTION
from nextbest.decisions.decision_log import DecisionLog
from nextbest.measurement.attribution import attribute_outcomes, flatten_decisions
from nextbest.measurement.lift import diff_in_means
from training.truth_evaluation import true_response

logger = logging.getLogger(__name__)

__all__ = [
    "simulate_from_truth",
    "simulate_log",
    "simulate_policies",
    "truth_actions",
    "truth_scores",
]

_START = datetime(2024, 1, 1, tzinfo=UTC)
_WINDOW = timedelta(days=14)


def truth_actions(truth_response: pd.DataFrame) -> list[str]:
    """The action ids of a truth table (``p_<action>`` columns other than ``p_no_action``),
    in column order: the column order of every score matrix."""
    acts = [c[2:] for c in truth_response.columns if c.startswith("p_") and c != f"p_{NO_ACTION}"]
    missing = [f"value_{a}" for a in acts if f"value_{a}" not in truth_response]
    if not acts or f"p_{NO_ACTION}" not in truth_response or missing:
        raise ValueError(
            "truth response table needs p_no_action, p_<action> and value_<action> columns"
            + (f"; missing {missing}" if missing else "")
        )
    return acts


def _truth_arrays(
    truth: pd.DataFrame, actions: list[str], costs: Mapping[str, float] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(p0 [n], v0 [n], p [n, A], v [n, A], cost [A]) from the truth table."""
    p = truth[[f"p_{a}" for a in actions]].to_numpy(dtype=float)
    v = truth[[f"value_{a}" for a in actions]].to_numpy(dtype=float)
    p0 = truth[f"p_{NO_ACTION}"].to_numpy(dtype=float)
    # Without a value for the organic response, the customer is taken to buy the same
    # products without contact, so no-action revenue is valued at the mean action value.
    v0 = (
        truth[f"value_{NO_ACTION}"].to_numpy(dtype=float)
        if f"value_{NO_ACTION}" in truth
        else v.mean(axis=1)
    )
    cost = np.array([float((costs or {}).get(a, 0.0)) for a in actions])
    return p0, v0, p, v, cost


def truth_scores(
    truth_response: pd.DataFrame,
    costs: Mapping[str, float] | None = None,
    noise_sd: float = 0.0,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Score matrices of the three reference policies, from the truth (optionally noised).

    ``uplift``: ``(p_a - p_no_action) * value_a - cost_a``; ``propensity``: ``p_a`` (always
    positive, so someone is always contacted); ``no_action``: all ``-1``. ``noise_sd``
    adds Gaussian noise to the probabilities, standing in for model error.
    """
    actions = truth_actions(truth_response)
    p0, _, p, v, cost = _truth_arrays(truth_response, actions, costs)
    if noise_sd > 0:
        rng = np.random.default_rng(seed)
        p = np.clip(p + rng.normal(0.0, noise_sd, p.shape), 0.0, 1.0)
        p0 = np.clip(p0 + rng.normal(0.0, noise_sd, p0.shape), 0.0, 1.0)
    return {
        "uplift": (p - p0[:, None]) * v - cost,
        "propensity": p,
        NO_ACTION: np.full(p.shape, -1.0),
    }


def simulate_log(
    truth_response: pd.DataFrame,
    scores: np.ndarray,
    seed: int,
    holdout_share: float = 0.1,
    epsilon: float = 0.05,
    costs: Mapping[str, float] | None = None,
    channel: str = "email",
    policy_version: str = "simulated",
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """One policy's decisions and outcomes: ``(decisions, outcomes, true_incremental)``.

    ``decisions`` are decision-log records (the engine's fields; ``ranked`` holds the
    positive-score actions, best first); ``outcomes`` are ``customer_id, ts, type,
    revenue``; ``true_incremental`` [n] is each customer's true expected incremental value
    of what was done (``p_a v_a - cost_a - p_0 v_0``; 0 for no action and the holdout).
    The seed fixes holdout, exploration and outcome draws, so policies compared with the
    same seed face the same customers and the same luck (common random numbers).
    """
    if not 0 <= holdout_share < 1 or not 0 <= epsilon <= 1:
        raise ValueError("holdout_share must be in [0, 1) and epsilon in [0, 1]")
    actions = truth_actions(truth_response)
    p0, v0, p, v, cost = _truth_arrays(truth_response, actions, costs)
    n, n_act = p.shape
    s = np.asarray(scores, dtype=float)
    if s.shape != (n, n_act):
        raise ValueError(f"scores have shape {s.shape}, expected {(n, n_act)} ({actions})")
    rng = np.random.default_rng(seed)
    holdout = rng.random(n) < holdout_share
    explored = ~holdout & (rng.random(n) < epsilon)
    pick = rng.integers(0, n_act + 1, size=n)  # n_act means no action
    u_response = rng.random(n)
    offset_s = rng.uniform(0, 86_400 * 7, size=n)
    delay_s = rng.uniform(0, _WINDOW.total_seconds() * 0.9, size=n)
    revenue_noise = rng.lognormal(-0.045, 0.3, size=n)

    best = s.argmax(axis=1)
    greedy = np.where(s[np.arange(n), best] > 0, best, n_act)
    chosen = np.where(holdout, n_act, np.where(explored, pick, greedy))
    propensity = np.where(
        holdout, 1.0, epsilon / (n_act + 1) + np.where(chosen == greedy, 1.0 - epsilon, 0.0)
    )
    p_all = np.column_stack([p, p0])
    v_all = np.column_stack([v, v0])
    c_all = np.append(cost, 0.0)
    rows = np.arange(n)
    responded = u_response < p_all[rows, chosen]
    true_incr = p_all[rows, chosen] * v_all[rows, chosen] - c_all[chosen] - p0 * v0

    ids = truth_response["person_id"].astype(str).to_numpy()
    decided = pd.Timestamp(_START) + pd.to_timedelta(offset_s, unit="s")
    labels = np.array([*actions, NO_ACTION], dtype=object)
    order = np.argsort(-s, axis=1, kind="stable")
    records: list[dict[str, Any]] = []
    for i in range(n):
        ranked = [
            {
                "action_id": actions[k],
                "rank": r + 1,
                "score": float(s[i, k]),
                # The simulated model's score parts are the truth's, so logs re-rank exactly.
                "p_treated": float(p[i, k]),
                "p_control": float(p0[i]),
                "uplift": float(p[i, k] - p0[i]),
                "value": float(v[i, k]),
                "cost": float(cost[k]),
                "lever": 1.0,
            }
            for r, k in enumerate(k for k in order[i] if s[i, k] > 0)
        ]
        records.append(
            {
                "decision_id": f"{policy_version}-{i}",
                "decided_at": decided[i].isoformat(),
                "customer_id": ids[i],
                "channel": channel,
                "group": HOLDOUT if holdout[i] else DECIDED,
                "chosen_action": labels[chosen[i]],
                "propensity": float(propensity[i]),
                "explored": bool(explored[i]),
                "ranked": ranked,
                "excluded": [],
                "model_version": "truth",
                "policy_version": policy_version,
                "catalog_version": "simulated",
                "feature_snapshot_time": None,
            }
        )
    decisions = pd.DataFrame(records)
    hit = np.flatnonzero(responded)
    outcomes = pd.DataFrame(
        {
            "customer_id": ids[hit],
            "ts": decided[hit] + pd.to_timedelta(delay_s[hit], unit="s"),
            "type": "purchase",
            "revenue": v_all[hit, chosen[hit]] * revenue_noise[hit],
        }
    )
    return decisions, outcomes, np.where(holdout, 0.0, true_incr)


def simulate_policies(
    truth_response: pd.DataFrame,
    scores: Mapping[str, np.ndarray],
    seed: int,
    holdout_share: float = 0.1,
    epsilon: float = 0.05,
    costs: Mapping[str, float] | None = None,
    log_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Run each policy's feedback loop and compare true and estimated incremental value.

    ``scores`` maps a policy name to its score matrix [n customers, A actions] in the
    column order of :func:`truth_actions` (a policy contacts with the best action when its
    score is positive). Per policy the result has ``share_contacted`` (treated customers
    who got an action), ``true_incremental_value`` (mean true expected incremental value
    per treated customer), and the estimate from the log: ``est_incremental_value`` (net
    revenue per treated decision minus revenue per holdout decision) with ``est_se``,
    ``est_ci_low``, ``est_ci_high``, plus the true and estimated response lift. With
    ``log_dir``, each policy's log goes to ``log_dir/<policy>/`` (``DecisionLog``) and its
    outcomes to ``log_dir/<policy>/outcomes.parquet``, ready for ``nextbest report``.
    """
    actions = truth_actions(truth_response)
    p0, _, p, _, cost = _truth_arrays(truth_response, actions, costs)
    rows = []
    for name, s in scores.items():
        decisions, outcomes, true_incr = simulate_log(
            truth_response, s, seed, holdout_share, epsilon, costs, policy_version=name
        )
        if log_dir is not None:
            _write_log(Path(log_dir) / name, decisions, outcomes)
        flat = flatten_decisions(attribute_outcomes(decisions, outcomes, _WINDOW))
        chosen = flat["chosen_action"].to_numpy()
        treated = flat["group"].to_numpy() == DECIDED
        cost_of = dict(zip(actions, cost, strict=True))
        net = flat["revenue"].to_numpy() - np.array([cost_of.get(a, 0.0) for a in chosen])
        est = diff_in_means(net[treated], net[~treated])
        resp = diff_in_means(
            flat["responded"].to_numpy()[treated], flat["responded"].to_numpy()[~treated]
        )
        col = {a: k for k, a in enumerate(actions)}
        idx = np.array([col.get(a, -1) for a in chosen])
        p_chosen = np.where(idx >= 0, p[np.arange(len(p)), np.maximum(idx, 0)], p0)
        rows.append(
            {
                "policy": name,
                "n_customers": len(flat),
                "n_decided": int(treated.sum()),
                "n_holdout": int((~treated).sum()),
                "share_contacted": float((chosen[treated] != NO_ACTION).mean()),
                "true_incremental_value": float(true_incr[treated].mean()),
                "est_incremental_value": est["lift"],
                "est_se": est["se"],
                "est_ci_low": est["ci_low"],
                "est_ci_high": est["ci_high"],
                "true_response_lift": float((p_chosen - p0)[treated].mean()),
                "est_response_lift": resp["lift"],
                "est_response_se": resp["se"],
            }
        )
        logger.info("simulated policy %s: %s", name, rows[-1])
    return pd.DataFrame(rows)


def _write_log(directory: Path, decisions: pd.DataFrame, outcomes: pd.DataFrame) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    DecisionLog(directory, fsync=False).append(decisions.to_dict(orient="records"))
    outcomes.to_parquet(directory / "outcomes.parquet", index=False)


def simulate_from_truth(
    data_dir: str | Path,
    seed: int,
    n_customers: int | None = None,
    holdout_share: float = 0.1,
    epsilon: float = 0.05,
    noise_sd: float = 0.0,
    costs: Mapping[str, float] | None = None,
    log_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Simulate uplift vs propensity ranking vs no action on ``data_dir/truth/response.parquet``
    (as written by ``nextbest generate``); optionally on a random subset of customers."""
    truth = true_response(Path(data_dir))
    if n_customers is not None and n_customers < len(truth):
        truth = truth.sample(n=n_customers, random_state=seed).reset_index(drop=True)
    scores = truth_scores(truth, costs=costs, noise_sd=noise_sd, seed=seed)
    return simulate_policies(truth, scores, seed, holdout_share, epsilon, costs, log_dir)
