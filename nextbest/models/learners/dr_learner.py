"""The DR-learner: per-arm effect models on doubly robust pseudo-outcomes."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import StratifiedKFold

from nextbest.models.learners.base import (
    predict_estimator,
)
from nextbest.models.learners.propensity import (
    _propensity_matrix,
)
from nextbest.models.learners.x_learner import XLearner


class DRLearner(XLearner):
    """Doubly robust learner (Kennedy 2023): regress the AIPW pseudo-outcome per arm.

    Outcome models are cross-fitted on ``n_folds`` folds so each row's pseudo-outcome
    ``mu_k - mu_0 + 1{T=k}(y - mu_k)/e_k - 1{T=0}(y - mu_0)/e_0`` uses models that did not
    see it; the final outcome models (for the control column) are refitted on all rows.
    """

    def __init__(
        self,
        control: Hashable = 0,
        outcome: str = "auto",
        calibration: str | None = None,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 31,
        min_child_samples: int = 20,
        reg_lambda: float = 0.0,
        subsample: float = 1.0,
        colsample_bytree: float = 1.0,
        lgbm_params: Mapping[str, Any] | None = None,
        random_state: int | None = 0,
        n_jobs: int = 2,
        propensity: Mapping[Hashable, float] | str = "empirical",
        n_folds: int = 2,
    ) -> None:
        super().__init__(
            control=control,
            outcome=outcome,
            calibration=calibration,
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            min_child_samples=min_child_samples,
            reg_lambda=reg_lambda,
            subsample=subsample,
            colsample_bytree=colsample_bytree,
            lgbm_params=lgbm_params,
            random_state=random_state,
            n_jobs=n_jobs,
            propensity=propensity,
        )
        self.n_folds = n_folds

    def fit(self, X: Any, treatment: Any, y: Any, sample_weight: Any = None) -> DRLearner:
        """Cross-fit outcome models, build pseudo-outcomes, fit one effect model per arm."""
        Xe, t, y, sw = self._prepare_fit(X, treatment, y, sample_weight)
        K = len(self.classes_)
        t_idx = np.array([self.classes_.index(a) for a in t.tolist()])
        mu = np.zeros((len(y), K))
        folds = StratifiedKFold(self.n_folds, shuffle=True, random_state=self.random_state)
        for train, held in folds.split(Xe, t_idx):
            for k in range(K):
                m = train[t_idx[train] == k]
                model = self._fit_model(
                    self._outcome_model(k), Xe[m], y[m], None if sw is None else sw[m]
                )
                mu[held, k] = predict_estimator(model, Xe[held])
        self.propensity_, e = _propensity_matrix(
            self.propensity, self.classes_, t, Xe, self._propensity_model
        )
        e = np.asarray(e)
        self.models_ = [
            self._fit_model(
                self._outcome_model(k),
                Xe[t_idx == k],
                y[t_idx == k],
                None if sw is None else sw[t_idx == k],
            )
            for k in range(K)
        ]
        self.effect_models_ = []
        rows = np.arange(len(y))
        resid = y - mu[rows, t_idx]
        for k in range(1, K):
            psi = (
                mu[:, k]
                - mu[:, 0]
                + (t_idx == k) * resid / e[:, k]
                - (t_idx == 0) * resid / e[:, 0]
            )
            self.effect_models_.append(self._fit_model(self._effect_model(30 + k), Xe, psi, sw))
        return self

    def _effects(self, Xe: np.ndarray) -> np.ndarray:
        """``[n, A]`` effect of each arm against control from the pseudo-outcome models."""
        return np.column_stack([m.predict(Xe) for m in self.effect_models_])

    def _models(self) -> list[BaseEstimator]:
        return [*self.models_, *self.effect_models_]
