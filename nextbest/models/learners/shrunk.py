"""A learner whose per-customer uplift is shrunk towards each arm's average uplift."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone


class ShrunkUpliftLearner(BaseEstimator):
    """Shrinks a learner's per-customer uplift towards each arm's average uplift.

    ``predict_outcomes`` keeps the base learner's control column and returns, for arm
    ``k``, ``q_0(x) + shrinkage * u_k(x) + (1 - shrinkage) * mean_uplift_[k]``, where
    ``mean_uplift_`` is the base learner's mean predicted uplift over its training rows
    (its estimate of the arm's average effect). This is the usual empirical-Bayes move
    for noisy individual effects: with ``shrinkage`` below 1 a customer only moves away
    from the on-average best arm when the model is confident enough. For ``shrinkage``
    above 0 the ranking of customers per arm (hence Qini and AUUC) is unchanged; only the
    policy "arm with the highest predicted outcome" changes.
    """

    def __init__(self, learner: BaseEstimator | None = None, shrinkage: float = 1.0) -> None:
        self.learner = learner
        self.shrinkage = shrinkage

    @property
    def control(self) -> Hashable:
        """The base learner's control arm."""
        return self.learner.control

    def fit(self, X: Any, treatment: Any, y: Any, sample_weight: Any = None) -> ShrunkUpliftLearner:
        """Fit a clone of the base learner and record its mean predicted uplift per arm."""
        if self.learner is None:
            raise ValueError("ShrunkUpliftLearner needs a base learner")
        if not 0.0 <= float(self.shrinkage) <= 1.0:
            raise ValueError(f"shrinkage must lie in [0, 1], got {self.shrinkage!r}")
        fitted = clone(self.learner).fit(X, treatment, y, sample_weight)
        self._adopt(fitted, np.asarray(fitted.predict_uplift(X)).mean(axis=0))
        return self

    @classmethod
    def from_fitted(
        cls, fitted: BaseEstimator, mean_uplift: Any, shrinkage: float
    ) -> ShrunkUpliftLearner:
        """Shrink an already fitted learner towards ``mean_uplift`` (``[A]``, its average
        uplift estimate) without fitting anything."""
        if not 0.0 <= float(shrinkage) <= 1.0:
            raise ValueError(f"shrinkage must lie in [0, 1], got {shrinkage!r}")
        out = cls(fitted, shrinkage=shrinkage)
        out._adopt(fitted, np.asarray(mean_uplift, dtype=np.float64))
        return out

    def _adopt(self, fitted: BaseEstimator, mean_uplift: np.ndarray) -> None:
        if mean_uplift.shape != (len(fitted.arms_),):
            raise ValueError(
                f"mean_uplift has shape {mean_uplift.shape}, expected ({len(fitted.arms_)},)"
            )
        self.learner_ = fitted
        self.mean_uplift_ = mean_uplift
        for attr in ("arms_", "classes_", "binary_", "feature_names_in_", "categories_"):
            setattr(self, attr, getattr(fitted, attr))
        self.n_features_in_ = fitted.n_features_in_

    def predict_outcomes(self, X: Any) -> np.ndarray:
        """``[n, 1 + A]``: control as predicted, each arm with the shrunk uplift added."""
        if not hasattr(self, "learner_"):
            raise RuntimeError("ShrunkUpliftLearner is not fitted yet; call fit first")
        q = np.asarray(self.learner_.predict_outcomes(X), dtype=np.float64)
        return _shrink_outcomes(q, self.mean_uplift_, float(self.shrinkage))

    def predict_uplift(self, X: Any) -> np.ndarray:
        """``[n, A]``: the shrunk uplift of each arm against control."""
        q = self.predict_outcomes(X)
        return q[:, 1:] - q[:, [0]]

    def feature_importances(self) -> pd.Series:
        """The base learner's importances (shrinkage does not change which features count)."""
        return self.learner_.feature_importances()


def _shrink_outcomes(q: np.ndarray, mean_uplift: np.ndarray, shrinkage: float) -> np.ndarray:
    u = q[:, 1:] - q[:, [0]]
    shrunk = shrinkage * u + (1.0 - shrinkage) * np.asarray(mean_uplift)[None, :]
    return np.column_stack([q[:, 0], q[:, [0]] + shrunk])
