"""Off-policy value of a registered model on the decision log (``evaluate-policy
--candidate models:/...``), and its paired comparison with the champion.

The log does not carry the customers' features (only the score parts of the model that
decided), so each logged decision is re-scored with the candidate on the features read
from the offline store as of the decision's ``feature_snapshot_time`` (what the decision
saw; its ``decided_at`` when absent), through the model's feature service and the
training set's point-in-time join. The candidate then chooses, per decision, the best of
the actions the log shows were eligible
(:func:`nextbest.measurement.policy_evaluation.eligible_mask`) when its expected
incremental value is positive, ``no_action`` otherwise; IPS, SNIPS and DR (with the
candidate's own reward model) value that choice on the logged propensities.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nextbest.core.errors import InputError
from nextbest.core.settings import Settings
from nextbest.core.vocabulary import NO_ACTION
from nextbest.customers.feast_store import FEATURE_SERVICE, feature_store
from nextbest.decisions.catalog import load_catalog
from nextbest.measurement.policy_evaluation import (
    Reward,
    candidate_from_scores,
    evaluate_candidate,
    reward_values,
)
from nextbest.models.ope_estimators import DR, IPS, PairedGain, bandit_inputs, paired_gain
from nextbest.models.registry import configure_mlflow
from nextbest.models.value import incremental_value
from training.dataset import build_training_set

log = logging.getLogger(__name__)

#: Where the features of the re-scored decisions came from (the log carries none).
FEATURES_FROM_OFFLINE = "offline store, as of each decision's feature_snapshot_time"


@dataclass
class ModelCandidate:
    """A registered model's choices on the logged decisions and its reward model."""

    uri: str
    version: str
    choices: np.ndarray
    q_hat: np.ndarray
    actions: list[str]
    features_source: str


def is_model_uri(text: str) -> bool:
    """Whether ``text`` names an MLflow model (``models:/`` or ``runs:/``)."""
    return text.startswith(("models:/", "runs:/"))


def load_model(settings: Settings, uri: str) -> tuple[Any, str]:
    """The :class:`~nextbest.models.decision_model.DecisionModel` behind ``uri``
    (``models:/name/N``, ``models:/name@alias`` or ``runs:/...``) and its version label.

    Raises :class:`~nextbest.core.errors.InputError` naming the URI when MLflow cannot
    load it or it is not a decision model."""
    import mlflow

    configure_mlflow(settings)
    try:
        pyfunc = mlflow.pyfunc.load_model(uri)
        model = pyfunc.unwrap_python_model().unwrap()
    except Exception as exc:  # MLflow raises several types for a bad URI
        raise InputError(
            f"candidate {uri}: cannot be loaded from {settings.tracking_uri} ({exc})"
        ) from None
    if not hasattr(model, "predict_arms"):
        raise InputError(f"candidate {uri}: not a nextbest decision model")
    return model, uri.rsplit("/", 1)[-1].lstrip("@")


def decision_features(
    settings: Settings, decisions: pd.DataFrame, feature_names: list[str], store: Any = None
) -> np.ndarray:
    """``[n, F]`` features of the logged decisions' customers from the offline store, as of
    each decision's ``feature_snapshot_time`` (``decided_at`` when absent), point in time."""
    seen = decisions["decided_at"]
    if "feature_snapshot_time" in decisions:
        snap = pd.to_datetime(decisions["feature_snapshot_time"], utc=True, format="ISO8601")
        seen = snap.where(snap.notna(), seen)
    ts = pd.to_datetime(seen, utc=True).astype("datetime64[us, UTC]")
    width = len(str(len(decisions)))
    entity_df = pd.DataFrame(
        {
            # zero-padded positions: the join sorts by this id, which keeps the log's order
            "exposure_id": [f"{i:0{width}d}" for i in range(len(decisions))],
            "customer_id": decisions["customer_id"].astype(str).to_numpy(),
            "event_timestamp": ts.to_numpy(),
            # the request time of the on-demand durations: when it was decided
            "request_ts": _seconds(decisions["decided_at"]),
            "action_id": decisions["chosen_action"].astype(str).to_numpy(),
            "assignment_probability": decisions["propensity"].astype(float).to_numpy(),
            "responded": np.zeros(len(decisions), dtype=int),
            "revenue": np.zeros(len(decisions)),
        }
    )
    entity_df["event_timestamp"] = entity_df["event_timestamp"].astype("datetime64[us, UTC]")
    ts_set = build_training_set(
        store or feature_store(settings), entity_df, feature_names, service=FEATURE_SERVICE
    )
    return ts_set.X


def model_scores(
    model: Any, X: np.ndarray, decisions: pd.DataFrame, catalog: Any, actions: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The model's expected incremental value ``[n, K]`` of each of ``actions`` (the engine's
    formula with each action's cost on the decision's channel and its lever, a response
    valued at the model's value where positive, else the catalog's) and its
    expected revenue ``[n, K]`` (``p_t * v``; ``no_action``: ``p_c * v_c``), the DR
    reward model."""
    p0, pt, v = model.predict_arms(X)
    v0 = np.asarray(model.predict_control_value(X), dtype=np.float64)
    arm_pos = {a: j for j, a in enumerate(model.arm_ids)}
    by_id = {a.id: a for a in catalog.actions}
    channels = decisions["channel"].astype(str).to_numpy()
    n = len(X)
    scores = np.zeros((n, len(actions)))
    q = np.zeros((n, len(actions)))
    organic = p0 * np.where(np.isfinite(v0), v0, model.value.fallback_)
    for k, a in enumerate(actions):
        if a == NO_ACTION:
            q[:, k] = organic
            continue
        action = by_id.get(a)
        if action is None or action.arm not in arm_pos:
            raise InputError(f"candidate model scores no arm for action {a!r} of the log")
        j = arm_pos[action.arm]
        cost = np.array([action.cost_on(c) for c in channels])
        # the engine's value of a response: the model's where positive, else the catalog's
        value = np.where(v[:, j] > 0, v[:, j], float(action.value))
        scores[:, k] = incremental_value(
            p0, pt[:, j : j + 1], value[:, None], cost[:, None], action.lever, v0
        )[:, 0]
        q[:, k] = pt[:, j] * value
    return scores, q


def score_candidate(
    settings: Settings,
    uri: str,
    decisions: pd.DataFrame,
    store: Any = None,
    model: Any = None,
) -> ModelCandidate:
    """Re-score the treated logged ``decisions`` with the model at ``uri`` (or ``model``,
    already loaded) and take its choices (see the module docs)."""
    version = uri.rsplit("/", 1)[-1]
    if model is None:
        model, version = load_model(settings, uri)
    catalog = load_catalog(settings.catalog)
    actions = _actions(decisions)
    X = decision_features(settings, decisions, list(model.feature_names), store)
    scores, q = model_scores(model, X, decisions, catalog, actions)
    choices = candidate_from_scores(decisions, scores, actions)
    return ModelCandidate(uri, version, choices, q, actions, FEATURES_FROM_OFFLINE)


def _actions(decisions: pd.DataFrame) -> list[str]:
    ranked = {
        e["action_id"]
        for lst in decisions["ranked"].tolist()
        if isinstance(lst, list | np.ndarray)
        for e in lst
    }
    return sorted(set(decisions["chosen_action"].astype(str)) | ranked | {NO_ACTION})


def treated(decisions: pd.DataFrame) -> pd.DataFrame:
    """The decided group's decisions (the holdout's carry no information on actions)."""
    d = decisions.loc[decisions["group"].to_numpy() != "holdout"].reset_index(drop=True)
    if d.empty:
        raise InputError("no treated decisions in the log to evaluate the candidate on")
    return d


def evaluate_model(
    decisions: pd.DataFrame, candidate: ModelCandidate, reward: Reward = "revenue"
) -> pd.DataFrame:
    """IPS, SNIPS and DR (the candidate's reward model) of the candidate's choices on the
    treated ``decisions`` (attributed), and the logging policy's own mean."""
    q = candidate.q_hat
    if reward == "responded":
        raise InputError("a model candidate is valued in money: reward revenue or net_value")
    if reward == "net_value":
        q = q - _costs(decisions, candidate.actions)
    return evaluate_candidate(
        decisions, candidate.choices, reward=reward, q_hat=q, actions=candidate.actions
    )


def _costs(decisions: pd.DataFrame, actions: list[str]) -> np.ndarray:
    """The logged cost of each action per decision (0 where not ranked, and no action)."""
    col = {a: k for k, a in enumerate(actions)}
    out = np.zeros((len(decisions), len(actions)))
    for i, lst in enumerate(decisions["ranked"].tolist()):
        for e in lst if isinstance(lst, list | np.ndarray) else []:
            if e["action_id"] in col:
                out[i, col[e["action_id"]]] = float(e.get("cost", 0.0) or 0.0)
    return out


def compare_models(
    decisions: pd.DataFrame,
    candidate: ModelCandidate,
    incumbent: ModelCandidate,
    reward: np.ndarray,
) -> dict[str, PairedGain]:
    """The candidate's gain over the incumbent on the same treated decisions, paired
    row by row: by IPS and by DR (each policy with its own reward model)."""
    logged = decisions["chosen_action"].astype(str).to_numpy()
    p = decisions["propensity"].to_numpy(dtype=float)
    actions = candidate.actions
    a, dist_c = bandit_inputs(candidate.choices, logged, actions)
    _, dist_i = bandit_inputs(incumbent.choices, logged, actions)
    out = {"ips": paired_gain(IPS().terms(reward, a, p, dist_c), IPS().terms(reward, a, p, dist_i))}
    out["dr"] = paired_gain(
        DR().terms(reward, a, p, dist_c, candidate.q_hat),
        DR().terms(reward, a, p, dist_i, incumbent.q_hat),
    )
    return out


@dataclass
class ModelEvaluation:
    """A registered model's value on the log, and its gain over the incumbent."""

    candidate: ModelCandidate
    values: pd.DataFrame
    incumbent: ModelCandidate | None
    gains: dict[str, PairedGain]
    decisions: int


def evaluate_model_on_log(
    settings: Settings,
    uri: str,
    decisions: pd.DataFrame,
    reward: Reward = "revenue",
    against: str | None = "champion",
    store: Any = None,
) -> ModelEvaluation:
    """Value the model at ``uri`` on the attributed log ``decisions`` (IPS, SNIPS, DR with
    SEs) and, unless ``against`` is None, its paired gain over the model holding that
    alias (skipped, with a warning, when no model holds it)."""
    d = treated(decisions)
    cand = score_candidate(settings, uri, d, store)
    values = evaluate_model(d, cand, reward)
    incumbent, gains = None, {}
    if against:
        inc_uri = f"models:/{settings.model_name}@{against}"
        try:
            incumbent = score_candidate(settings, inc_uri, d, store)
        except InputError as exc:
            log.warning("no incumbent to compare with: %s", exc)
        else:
            y = reward_values(d, reward)
            if reward == "net_value":
                costs = _costs(d, cand.actions)
                cand = _with_q(cand, cand.q_hat - costs)
                incumbent = _with_q(incumbent, incumbent.q_hat - costs)
            gains = compare_models(d, cand, incumbent, y)
    return ModelEvaluation(cand, values, incumbent, gains, len(d))


def _with_q(c: ModelCandidate, q: np.ndarray) -> ModelCandidate:
    return ModelCandidate(c.uri, c.version, c.choices, q, c.actions, c.features_source)


def _seconds(times: pd.Series) -> np.ndarray:
    """POSIX seconds of UTC timestamps."""
    t = pd.to_datetime(times, utc=True).astype("datetime64[us, UTC]")
    return t.astype("int64").to_numpy() / 1e6
