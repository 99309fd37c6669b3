"""Training exposures from the product's own decision log (``nextbest train --from-log``).

Every logged decision is an exposure: the decided group's greedy and exploration choices
and the holdout's ``no_action`` (propensity 1), each with the probability the engine
logged for its chosen action. Outcomes come attributed to decisions by the measurement
package's rule (the caller reads them with
:func:`nextbest.measurement.attribution.attributed_log`: the latest decision of the
customer at or before the outcome, within the window; training sits below measurement).
The customer's features are read from the offline store as of the decision's
``feature_snapshot_time`` (the snapshot the decision saw; its ``decided_at`` when absent),
through the same feature service and point-in-time join as the campaign history.

A logged action is trained under its response-model arm. The fitting weight is the
inverse of the logged propensity, clipped below at ``propensity_floor`` (so no exposure
weighs more than ``1 / propensity_floor`` times a greedy one): the clip and the share of
exposures it touched are reported and logged to MLflow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nextbest.core.errors import InputError
from nextbest.core.settings import Settings
from nextbest.core.vocabulary import NO_ACTION
from nextbest.decisions.catalog import load_catalog
from training.dataset import training_exposures
from training.train import train

if TYPE_CHECKING:
    from training.train import TrainResult

log = logging.getLogger(__name__)

#: Default floor of the logged propensity used for weighting (weights at most 100).
PROPENSITY_FLOOR = 0.01
#: Fewest exposures per arm (``no_action`` included) a model can be fitted and checked on.
MIN_PER_ARM = 20
#: Fewest attributed decisions the log must hold.
MIN_DECISIONS = 200


class LogTooSmallError(InputError):
    """The decision log holds too few exposures to fit every arm of the model."""


@dataclass
class LogExposures:
    """Exposures from the decision log, keyed like the campaign history's, and how the
    weights were clipped."""

    entity_df: pd.DataFrame
    propensity_floor: float
    clipped_share: float
    decisions: int
    responded: int

    def params(self) -> dict[str, float | int]:
        """What the run logs to MLflow about the log's exposures."""
        return {
            "log_decisions": self.decisions,
            "log_responded": self.responded,
            "log_propensity_floor": self.propensity_floor,
            "log_clipped_share": self.clipped_share,
        }


def decision_arms(settings: Settings) -> dict[str, str]:
    """Response-model arm of each catalog action id (``no_action`` maps to itself)."""
    catalog = load_catalog(settings.catalog)
    return {NO_ACTION: NO_ACTION, **{a.id: a.arm for a in catalog.actions}}


def log_exposures(
    settings: Settings,
    decisions: pd.DataFrame,
    propensity_floor: float = PROPENSITY_FLOOR,
) -> LogExposures:
    """The log's ``decisions`` (with ``responded`` and ``revenue`` attributed:
    :func:`nextbest.measurement.attribution.attributed_log`) as training exposures.

    Raises :class:`~nextbest.core.errors.InputError` naming the problem, before anything
    is fitted: no decisions, a propensity outside (0, 1], an action the catalog does not
    know, or a floor outside (0, 1].
    """
    if not 0.0 < propensity_floor <= 1.0:
        raise InputError(f"propensity floor must be in (0, 1], got {propensity_floor}")
    missing = [c for c in ("responded", "revenue") if c not in decisions]
    if missing:
        raise InputError(f"decisions: missing {missing}; attribute the outcomes first")
    if decisions.empty:
        raise LogTooSmallError("no decisions in the decision log for the selected period")
    arms = decision_arms(settings)
    chosen = decisions["chosen_action"].astype(str)
    unknown = sorted(set(chosen) - set(arms))
    if unknown:
        raise InputError(
            f"decision log: actions {unknown[:5]} are not in the catalog "
            f"{settings.catalog}; train with the catalog the decisions were made with"
        )
    p = pd.to_numeric(decisions["propensity"], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(p) | (p <= 0.0) | (p > 1.0)
    if bad.any():
        first = decisions["decision_id"].iloc[int(np.flatnonzero(bad)[0])]
        raise InputError(
            f"decision log: {int(bad.sum())} decisions have a propensity outside "
            f"(0, 1] (first: decision {first})"
        )
    clipped = p < propensity_floor
    seen = decisions["decided_at"]
    if "feature_snapshot_time" in decisions:
        snap = pd.to_datetime(decisions["feature_snapshot_time"], utc=True, format="ISO8601")
        seen = snap.where(snap.notna(), seen)
    ts = pd.to_datetime(seen, utc=True).astype("datetime64[us, UTC]")
    entity_df = pd.DataFrame(
        {
            "exposure_id": "log:" + decisions["decision_id"].astype(str),
            "customer_id": decisions["customer_id"].astype(str).to_numpy(),
            "event_timestamp": ts.to_numpy(),
            # the request time of the on-demand durations: when it was decided
            "request_ts": _seconds(decisions["decided_at"]),
            "action_id": chosen.map(arms).to_numpy(),
            "assignment_probability": np.maximum(p, propensity_floor),
            "responded": decisions["responded"].astype(int).to_numpy(),
            "revenue": decisions["revenue"].astype(float).to_numpy(),
        }
    )
    entity_df["event_timestamp"] = entity_df["event_timestamp"].astype("datetime64[us, UTC]")
    share = float(clipped.mean())
    log.info(
        "decision log: %d decisions, %d with an outcome; propensity floor %.4g clips %.1f%%",
        len(entity_df),
        int(entity_df["responded"].sum()),
        propensity_floor,
        100 * share,
    )
    return LogExposures(
        entity_df, propensity_floor, share, len(entity_df), int(entity_df["responded"].sum())
    )


def check_log_size(
    entity_df: pd.DataFrame,
    arms: list[str],
    log_rows: int,
    min_decisions: int = MIN_DECISIONS,
    min_per_arm: int = MIN_PER_ARM,
    with_history: bool = False,
) -> None:
    """Raise :class:`LogTooSmallError` when the log holds fewer than ``min_decisions``
    (``log_rows``) or the exposures (``entity_df``, the log's and any history's) cannot
    fit every arm the catalog scores with: fewer than ``min_per_arm`` of an arm
    (``no_action`` included), or an arm without a single response."""
    counts = entity_df["action_id"].value_counts()
    responses = entity_df.groupby("action_id")["responded"].sum()
    short = {a: int(counts.get(a, 0)) for a in [NO_ACTION, *arms] if counts.get(a, 0) < min_per_arm}
    silent = [a for a in [NO_ACTION, *arms] if a not in short and responses.get(a, 0) == 0]
    problems = []
    if log_rows < min_decisions:
        problems.append(f"{log_rows} logged decisions, at least {min_decisions} are needed")
    if short:
        listed = ", ".join(f"{a}: {n}" for a, n in sorted(short.items()))
        problems.append(f"arms with fewer than {min_per_arm} exposures ({listed})")
    if silent:
        problems.append(f"arms without a single response ({', '.join(sorted(silent))})")
    if problems:
        hint = (
            "decide for longer or with more exploration"
            if with_history
            else "add the campaign history (--with-history), decide for longer or with more "
            "exploration"
        )
        raise LogTooSmallError(
            f"the decision log is too small to train on: {'; '.join(problems)}. A model must "
            f"score every arm the catalog uses; {hint}. Nothing was trained or registered."
        )


def train_from_log(
    settings: Settings,
    decisions: pd.DataFrame,
    *,
    window: timedelta = timedelta(days=14),
    with_history: bool = False,
    propensity_floor: float = PROPENSITY_FLOOR,
    min_decisions: int = MIN_DECISIONS,
    min_per_arm: int = MIN_PER_ARM,
    store: object | None = None,
) -> tuple[TrainResult, LogExposures]:
    """Train, register and gate a model on the log's attributed ``decisions`` (``window``:
    the attribution window they were attributed with, logged) and, with ``with_history``,
    the campaign history's exposures: the same learners, selection, evaluation, MLflow
    run and promotion gate as ``nextbest train``, with the clip logged on the run.

    Raises :class:`LogTooSmallError` (nothing fitted or registered) when the exposures
    cannot fit every arm the catalog scores with."""
    exposures = log_exposures(settings, decisions, propensity_floor)
    entity_df = exposures.entity_df
    if with_history:
        entity_df = pd.concat([training_exposures(settings), entity_df], ignore_index=True)
    arms = sorted(set(decision_arms(settings).values()) - {NO_ACTION})
    check_log_size(entity_df, arms, exposures.decisions, min_decisions, min_per_arm, with_history)
    params = {
        **exposures.params(),
        "training_source": "log+history" if with_history else "log",
        "log_window_days": window.total_seconds() / 86400,
        "rows_history": len(entity_df) - exposures.decisions,
    }
    return train(settings, store, exposures=entity_df, run_params=params), exposures


def _seconds(times: pd.Series) -> np.ndarray:
    """POSIX seconds of UTC timestamps."""
    t = pd.to_datetime(times, utc=True).astype("datetime64[us, UTC]")
    return t.astype("int64").to_numpy() / 1e6
