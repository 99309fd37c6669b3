"""Off-policy evaluation: what a candidate policy would have earned on the logged decisions.

The logging policy is epsilon-greedy over the eligible actions and ``no_action``, and every
record carries the probability with which its chosen action was picked, so the estimators
are the textbook ones of :mod:`nextbest.models.ope_estimators` (IPS, self-normalised IPS,
doubly robust), with the logged score parts (``p_treated * value`` ...) or any
direct-method estimate supplied per (decision, action) as DR's reward model.

A candidate is an array of action ids (a deterministic policy), a probability matrix over
``actions`` (a stochastic one), or a callable mapping the decision frame to either. Holdout
decisions are left out by default: the candidate governs the decided group only, and the
holdout's ``no_action`` with propensity 1 carries no information about other actions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml

from nextbest.core.vocabulary import NO_ACTION
from nextbest.customers.id_map import IdMap
from nextbest.measurement.attribution import attribute_outcomes, read_decisions, read_outcomes
from nextbest.measurement.lift import Z95
from nextbest.models.ope_estimators import DR, IPS, SNIPS, OffPolicyEstimator, bandit_inputs

logger = logging.getLogger(__name__)

__all__ = [
    "Candidate",
    "Reward",
    "candidate_from_scores",
    "eligible_mask",
    "evaluate_candidate",
    "evaluate_policy_file",
    "load_candidate_levers",
    "logged_reward_model",
    "off_policy_value",
    "rerank_logged",
    "reward_values",
]

Reward = Literal["responded", "revenue", "net_value"]
#: A candidate: action ids [n], a probability matrix [n, K], or a callable producing either.
Candidate = np.ndarray | Sequence[str] | Callable[[pd.DataFrame], np.ndarray]


def off_policy_value(
    logged_actions: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    candidate: np.ndarray | Sequence[str],
    actions: Sequence[str] | None = None,
    q_hat: np.ndarray | None = None,
    z: float = Z95,
) -> pd.DataFrame:
    """IPS, SNIPS and (with ``q_hat``) DR estimates of a candidate's value per decision.

    ``logged_actions`` [n] are the logged choices, ``propensity`` [n] their logging
    probabilities, ``reward`` [n] the attributed outcome; ``candidate`` is action ids [n]
    or a probability matrix [n, K] over ``actions``; ``q_hat`` [n, K] the reward model's
    prediction for each of ``actions``. ``actions`` defaults to the sorted union of logged
    and candidate ids. Returns one row per estimator with ``estimator, value, se, ci_low,
    ci_high, n, match_rate, effective_n``.
    """
    a_log = np.asarray(logged_actions, dtype=object)
    n = len(a_log)
    if actions is None:
        cand = np.asarray(candidate)
        extra = cand.tolist() if cand.ndim == 1 else []
        actions = sorted(set(a_log.tolist()) | set(extra))
    action, probs = bandit_inputs(candidate, a_log, list(actions))
    p = np.asarray(propensity, dtype=float)
    y = np.asarray(reward, dtype=float)
    estimators: list[OffPolicyEstimator] = [IPS(), SNIPS()]
    if q_hat is not None:
        estimators.append(DR())
    estimates = {e.name: e.estimate(y, action, p, probs, q_hat) for e in estimators}
    matched = probs[np.arange(n), action]
    w = matched / p
    out = []
    for name, est in estimates.items():
        low, high = est.interval(z)
        out.append(
            {
                "estimator": name,
                "value": est.value,
                "se": est.se,
                "ci_low": low,
                "ci_high": high,
                "n": n,
                "match_rate": float((matched > 0).mean()),
                "effective_n": float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0,
            }
        )
    return pd.DataFrame(out)


def _long_ranked(decisions: pd.DataFrame) -> pd.DataFrame:
    """The ranked lists as one row per (decision position, action) with the score parts."""
    parts = ("p_treated", "p_control", "value")
    for i, lst in enumerate(decisions["ranked"].tolist()):
        for e in lst if isinstance(lst, list | np.ndarray) else []:
            missing = [k for k in parts if k not in e]
            if missing:
                did = decisions["decision_id"].iloc[i] if "decision_id" in decisions else i
                raise ValueError(
                    f"decision {did}: ranked entry '{e.get('action_id')}' lacks the score "
                    f"parts {missing}"
                )
    recs = [
        (
            i,
            e["action_id"],
            e["p_treated"],
            e["p_control"],
            e["value"],
            e.get("cost", 0.0),
            e.get("lever", 1.0),
        )
        for i, lst in enumerate(decisions["ranked"].tolist())
        if isinstance(lst, list | np.ndarray)
        for e in lst
        if e["action_id"] != NO_ACTION
    ]
    cols = ["row", "action_id", "p_treated", "p_control", "value", "cost", "lever"]
    long = pd.DataFrame(recs, columns=cols)
    defaults = {"p_treated": 0.0, "p_control": 0.0, "value": 0.0, "cost": 0.0, "lever": 1.0}
    for c, default in defaults.items():
        long[c] = pd.to_numeric(long[c], errors="coerce").fillna(default).astype(float)
    return long


def rerank_logged(decisions: pd.DataFrame, levers: Mapping[str, float]) -> np.ndarray:
    """What the engine would choose with other business levers, from the logged score parts.

    Each ranked action's score is ``((p_treated - p_control) * value - cost) * lever`` with
    the lever from ``levers`` (the logged one for actions not listed); the best action
    wins when its score is positive, ``no_action`` otherwise (as the engine's
    arbitration does). Only actions the log ranked (the eligible ones) can be chosen.
    """
    bad = {k: v for k, v in levers.items() if not (isinstance(v, int | float) and v > 0)}
    if bad:
        raise ValueError(f"levers must be positive numbers, got {bad}")
    n = len(decisions)
    chosen = np.full(n, NO_ACTION, dtype=object)
    long = _long_ranked(decisions)
    if long.empty:
        return chosen
    lever = long["action_id"].map(dict(levers)).fillna(long["lever"]).to_numpy(dtype=float)
    score = (
        (long["p_treated"].to_numpy() - long["p_control"].to_numpy()) * long["value"].to_numpy()
        - long["cost"].to_numpy()
    ) * lever
    long["score"] = score
    best = long.loc[long.groupby("row")["score"].idxmax()]
    best = best[best["score"] > 0]
    chosen[best["row"].to_numpy()] = best["action_id"].to_numpy()
    return chosen


def logged_reward_model(
    decisions: pd.DataFrame, actions: Sequence[str], reward: Reward = "revenue"
) -> np.ndarray:
    """A direct-method reward model ``[n, K]`` from the logged score parts.

    For an action: ``p_treated`` (responded), ``p_treated * value`` (revenue) or
    ``p_treated * value - cost`` (net_value). For ``no_action`` and actions the log did not
    rank: the organic response ``p_control`` of the best-ranked action, times its value for
    the money rewards (the customer buys the product of interest without being contacted).
    """
    n = len(decisions)
    col = {a: k for k, a in enumerate(actions)}
    long = _long_ranked(decisions)
    base = np.zeros(n)
    q = np.full((n, len(actions)), np.nan)
    if not long.empty:
        long["incr"] = (long["p_treated"] - long["p_control"]) * long["value"] - long["cost"]
        top = long.loc[long.groupby("row")["incr"].idxmax()]
        organic = top["p_control"].to_numpy()
        if reward != "responded":
            organic = organic * top["value"].to_numpy()
        base[top["row"].to_numpy()] = organic
        if reward == "responded":
            qa = long["p_treated"].to_numpy()
        else:
            qa = (long["p_treated"] * long["value"]).to_numpy()
            if reward == "net_value":
                qa = qa - long["cost"].to_numpy()
        known = long["action_id"].isin(col).to_numpy()
        q[long["row"].to_numpy()[known], long["action_id"][known].map(col).to_numpy()] = qa[known]
    fill = np.broadcast_to(base[:, None], q.shape)
    return np.where(np.isnan(q), fill, q)


def reward_values(decisions: pd.DataFrame, reward: Reward) -> np.ndarray:
    """The reward of each attributed decision: ``responded``, ``revenue`` or ``net_value``
    (revenue minus the logged cost of the chosen action)."""
    return _reward_values(decisions, reward)


def _reward_values(decisions: pd.DataFrame, reward: Reward) -> np.ndarray:
    if reward not in ("responded", "revenue", "net_value"):
        raise ValueError(f"reward must be responded, revenue or net_value, got {reward!r}")
    missing = [c for c in ("responded", "revenue") if c not in decisions]
    if missing:
        raise ValueError(f"decisions: missing {missing}; attribute outcomes first")
    if reward == "responded":
        return decisions["responded"].to_numpy(dtype=float)
    y = decisions["revenue"].to_numpy(dtype=float)
    if reward == "net_value":
        # The logged cost of the chosen action is paid whether or not the customer responds.
        cost = np.zeros(len(decisions))
        chosen = decisions["chosen_action"].to_numpy()
        for i, lst in enumerate(decisions["ranked"].tolist()):
            for e in lst if isinstance(lst, list | np.ndarray) else []:
                if e["action_id"] == chosen[i]:
                    cost[i] = float(e.get("cost", 0.0) or 0.0)
        y = y - cost
    return y


def evaluate_candidate(
    decisions: pd.DataFrame,
    candidate: Candidate,
    reward: Reward = "revenue",
    q_hat: np.ndarray | None = None,
    actions: Sequence[str] | None = None,
    include_holdout: bool = False,
) -> pd.DataFrame:
    """IPS, SNIPS and DR value of ``candidate`` on attributed log decisions, and the logging
    policy's own on-policy mean for comparison (``estimator == "logged"``).

    ``decisions`` is the raw log (with ``ranked``) after ``attribute_outcomes``. Without
    ``q_hat`` the DR reward model is :func:`logged_reward_model`.
    """
    d = decisions
    if not include_holdout:
        d = d.loc[d["group"].to_numpy() != "holdout"].reset_index(drop=True)
    if d.empty:
        raise ValueError("no treated decisions in the log to evaluate the candidate on")
    cand = candidate(d) if callable(candidate) else candidate
    cand_arr = np.asarray(cand)
    if actions is None:
        ranked_ids = {
            e["action_id"]
            for lst in d["ranked"].tolist()
            if isinstance(lst, list | np.ndarray)
            for e in lst
        }
        ids = set(d["chosen_action"].tolist()) | ranked_ids | {NO_ACTION}
        if cand_arr.ndim == 1:
            ids |= set(cand_arr.tolist())
        actions = sorted(ids)
    y = _reward_values(d, reward)
    if q_hat is None:
        q_hat = logged_reward_model(d, actions, reward)
    res = off_policy_value(
        d["chosen_action"].to_numpy(),
        d["propensity"].to_numpy(dtype=float),
        y,
        cand_arr,
        actions=actions,
        q_hat=q_hat,
    )
    se = float(y.std(ddof=1) / np.sqrt(len(y))) if len(y) > 1 else float("nan")
    logged = {
        "estimator": "logged",
        "value": float(y.mean()),
        "se": se,
        "ci_low": float(y.mean()) - Z95 * se,
        "ci_high": float(y.mean()) + Z95 * se,
        "n": len(y),
        "match_rate": 1.0,
        "effective_n": float(len(y)),
    }
    return pd.concat([res, pd.DataFrame([logged])], ignore_index=True)


def load_candidate_levers(path: str | Path) -> dict[str, float]:
    """Business levers of a candidate policy from YAML.

    Accepts either ``levers: {action_id: lever}`` or an action catalog (``actions:`` list
    whose entries have ``id`` and optionally ``lever``). Errors name the file and entry.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"candidate policy file {p} does not exist")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a mapping with 'levers' or 'actions'")
    levers: dict[str, float] = {}
    if "levers" in raw:
        if not isinstance(raw["levers"], dict):
            raise ValueError(f"{p}: field 'levers' must map action ids to numbers")
        items = list(raw["levers"].items())
        where = "levers"
    elif "actions" in raw:
        items = []
        for i, a in enumerate(raw["actions"] or []):
            if not isinstance(a, dict) or "id" not in a:
                raise ValueError(f"{p}: entry 'actions[{i}]': field 'id' is required")
            items.append((a["id"], a.get("lever", 1.0)))
        where = "actions"
    else:
        raise ValueError(f"{p}: expected a field 'levers' or 'actions'")
    for key, value in items:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(
                f"{p}: entry '{where}.{key}': field 'lever' must be > 0, got {value!r}"
            )
        levers[str(key)] = float(value)
    return levers


def eligible_mask(decisions: pd.DataFrame, actions: Sequence[str]) -> np.ndarray:
    """Which of ``actions`` passed every rule for each logged decision, ``bool [n, K]``.

    Eligible means ranked, or excluded only for a non-positive value (``NEGATIVE_VALUE``):
    another model may score those positive. ``no_action`` is always eligible.
    """
    col = {a: k for k, a in enumerate(actions)}
    mask = np.zeros((len(decisions), len(actions)), dtype=bool)
    if NO_ACTION in col:
        mask[:, col[NO_ACTION]] = True
    ranked = decisions["ranked"].tolist() if "ranked" in decisions else []
    excluded = decisions["excluded"].tolist() if "excluded" in decisions else []
    for i, lst in enumerate(ranked):
        for e in lst if isinstance(lst, list | np.ndarray) else []:
            if e["action_id"] in col:
                mask[i, col[e["action_id"]]] = True
    for i, lst in enumerate(excluded):
        for e in lst if isinstance(lst, list | np.ndarray) else []:
            code = e.get("code") or e.get("reason")
            if code == "NEGATIVE_VALUE" and e["action_id"] in col:
                mask[i, col[e["action_id"]]] = True
    return mask


def candidate_from_scores(
    decisions: pd.DataFrame, scores: np.ndarray, actions: Sequence[str]
) -> np.ndarray:
    """A candidate model's choices: the best eligible action when its score is positive.

    ``scores`` [n, K] are the candidate's expected incremental values for ``actions``
    (``no_action`` may be among them; its score is ignored and taken as 0). This is the
    hook for evaluating a registered model: score the logged customers' features at their
    ``feature_snapshot_time`` with it, then pass the matrix here.
    """
    s = np.asarray(scores, dtype=float)
    if s.shape != (len(decisions), len(actions)):
        raise ValueError(f"scores have shape {s.shape}, expected {(len(decisions), len(actions))}")
    mask = eligible_mask(decisions, actions)
    ctrl = [k for k, a in enumerate(actions) if a == NO_ACTION]
    masked = np.where(mask, s, -np.inf)
    if ctrl:
        masked[:, ctrl] = -np.inf
    best = masked.argmax(axis=1)
    labels = np.asarray(list(actions), dtype=object)
    return np.where(masked[np.arange(len(s)), best] > 0, labels[best], NO_ACTION)


def evaluate_policy_file(
    candidate: str | Path,
    log_dir: str | Path,
    outcomes_path: str | Path,
    window: timedelta = timedelta(days=14),
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    reward: Reward = "revenue",
    id_map: IdMap | None = None,
) -> pd.DataFrame:
    """Off-policy value of a candidate policy YAML (levers, see :func:`load_candidate_levers`)
    on the logged decisions, re-ranked from their logged score parts.

    A registered model (``models:/...`` or ``runs:/...``) needs the features of each
    logged decision; score them with the model and use :func:`candidate_from_scores` with
    :func:`evaluate_candidate` instead.
    """
    text = str(candidate)
    if text.startswith(("models:/", "runs:/")):
        raise NotImplementedError(
            f"candidate {text}: evaluating a registered model needs the features at each "
            "decision's feature_snapshot_time; score them with the model and call "
            "nextbest.measurement.policy_evaluation.evaluate_candidate("
            "decisions, candidate_from_scores(...))"
        )
    levers = load_candidate_levers(text)
    decisions = attribute_outcomes(
        read_decisions(log_dir, since, until, id_map), read_outcomes(outcomes_path), window
    )
    if decisions.empty:
        raise ValueError(f"no decisions in {log_dir} for the selected period")
    return evaluate_candidate(decisions, lambda d: rerank_logged(d, levers), reward=reward)
