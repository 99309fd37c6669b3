"""Propensities: the per-arm assignment probabilities the X and DR learners weigh by, logged per-
row probabilities and inverse-propensity fitting weights."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

_PROPENSITY_CLIP = 0.01


def _propensity_matrix(
    propensity: Mapping[Hashable, float] | str,
    classes: list[Hashable],
    treatment: np.ndarray,
    X: np.ndarray,
    model_factory: Any,
) -> tuple[Any, np.ndarray]:
    """Returns (fitted state, ``[n, K]`` propensities) for the given propensity spec."""
    if isinstance(propensity, Mapping):
        missing = [a for a in classes if a not in propensity]
        if missing:
            raise ValueError(f"propensity has no probability for arms {missing}")
        p = np.array([float(propensity[a]) for a in classes])
        return p, np.broadcast_to(p, (len(X), len(classes)))
    if propensity == "empirical":
        p = np.array([np.mean(treatment == a) for a in classes])
        return p, np.broadcast_to(p, (len(X), len(classes)))
    if propensity == "model":
        codes = np.array([classes.index(t) for t in treatment.tolist()])
        model = model_factory().fit(X, codes)
        return model, np.clip(model.predict_proba(X), _PROPENSITY_CLIP, 1.0)
    raise ValueError(f"propensity must be a mapping, 'empirical' or 'model', got {propensity!r}")


def logged_propensity(
    design_propensity: float | Mapping[Hashable, float] | np.ndarray, treatment: np.ndarray
) -> np.ndarray:
    """Per-row probability of the logged arm from a scalar, an arm -> probability
    mapping, or an array already holding one probability per row."""
    treatment = np.asarray(treatment)
    if isinstance(design_propensity, Mapping):
        missing = set(np.unique(treatment).tolist()) - set(design_propensity)
        if missing:
            raise ValueError(f"design_propensity has no probability for arms {missing}")
        return np.array([float(design_propensity[a]) for a in treatment.tolist()])
    p = np.asarray(design_propensity, dtype=float)
    if p.ndim == 0:
        return np.full(len(treatment), float(p))
    if p.shape != treatment.shape:
        raise ValueError(f"design_propensity has shape {p.shape}, treatment {treatment.shape}")
    return p


def inverse_propensity_weights(propensity: np.ndarray) -> np.ndarray:
    """Per-row fitting weights ``1 / p`` of each row's own assignment probability, scaled
    to mean 1 (so LightGBM's ``min_child_weight`` and regularisation keep their meaning).

    Exposures of campaigns that gave an arm a low probability stand for more customers
    than those of campaigns that gave it a high one: weighting each row by its own
    probability fits the arm's outcome model on the population, not on whichever
    campaigns assigned the arm most often. Raises on a probability outside (0, 1].
    """
    p = np.asarray(propensity, dtype=np.float64)
    bad = ~np.isfinite(p) | (p <= 0.0) | (p > 1.0)
    if bad.any():
        raise ValueError(
            f"propensity: {int(bad.sum())} rows outside (0, 1] (first at row "
            f"{int(np.flatnonzero(bad)[0])})"
        )
    w = 1.0 / p
    return w / w.mean() if len(w) else w
