"""An ensemble averaging the predicted outcomes of several learners."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone


class EnsembleLearner(BaseEstimator):
    """Averages the predicted outcomes of several learners (all must share ``control``).

    ``learners`` is a list of ``(name, unfitted learner)``; each is cloned and fitted on the
    same data. ``weights`` defaults to equal weights.
    """

    def __init__(
        self,
        learners: Sequence[tuple[str, BaseEstimator]] = (),
        weights: Sequence[float] | None = None,
    ) -> None:
        self.learners = learners
        self.weights = weights

    @property
    def control(self) -> Hashable:
        """The control arm shared by the members."""
        return self.learners[0][1].control

    def fit(self, X: Any, treatment: Any, y: Any, sample_weight: Any = None) -> EnsembleLearner:
        """Fit a clone of every member on the same data."""
        if not self.learners:
            raise ValueError("EnsembleLearner needs at least one learner")
        controls = {repr(est.control) for _, est in self.learners}
        if len(controls) > 1:
            raise ValueError(f"ensemble members disagree on the control arm: {controls}")
        self.fitted_ = [
            (name, clone(est).fit(X, treatment, y, sample_weight)) for name, est in self.learners
        ]
        first = self.fitted_[0][1]
        self.arms_ = first.arms_
        self.classes_ = first.classes_
        self.binary_ = first.binary_
        self.feature_names_in_ = first.feature_names_in_
        self.categories_ = first.categories_
        self.n_features_in_ = first.n_features_in_
        w = np.ones(len(self.learners)) if self.weights is None else np.asarray(self.weights)
        self.weights_ = w / w.sum()
        return self

    def predict_outcomes(self, X: Any) -> np.ndarray:
        """Weighted mean of the members' ``[n, 1 + A]`` predicted outcomes."""
        return sum(
            w * est.predict_outcomes(X)
            for w, (_, est) in zip(self.weights_, self.fitted_, strict=True)
        )

    def predict_uplift(self, X: Any) -> np.ndarray:
        """``[n, A]``: outcome under each arm minus under control."""
        q = self.predict_outcomes(X)
        return q[:, 1:] - q[:, [0]]

    def feature_importances(self) -> pd.Series:
        """Members' gain importances, each normalised to sum 1, then weighted."""
        parts = []
        for w, (_, est) in zip(self.weights_, self.fitted_, strict=True):
            imp = est.feature_importances()
            parts.append(w * imp / max(imp.sum(), 1e-12))
        return pd.concat(parts, axis=1).sum(axis=1).sort_values(ascending=False)
