"""The S-learner: one outcome model on the features and one column per treatment arm."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from nextbest.models.learners.base import (
    Head,
    _UpliftBase,
)


class SLearner(_UpliftBase):
    """One outcome model on the features plus a one-hot column per treatment arm.

    With ``monotone_treatment=True`` the arm columns are constrained to a non-negative
    effect (LightGBM monotone constraints), which suits campaigns whose contact cannot
    lower the response and regularises the learnt uplift.
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
        monotone_treatment: bool = False,
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
        )
        self.monotone_treatment = monotone_treatment

    def _arm_columns(self) -> np.ndarray:
        """``[1 + A, A]``: no arm column set for control, arm ``j``'s column for arm ``j``."""
        A = len(self.arms_)
        return np.vstack([np.zeros((1, A)), np.eye(A)])

    def _lgbm_kwargs(self, seed_offset: int = 0) -> dict[str, Any]:
        params = super()._lgbm_kwargs(seed_offset)
        if self.monotone_treatment and hasattr(self, "arms_"):
            params["monotone_constraints"] = [0] * self.n_features_in_ + [1] * len(self.arms_)
        return params

    def fit(self, X: Any, treatment: Any, y: Any, sample_weight: Any = None) -> SLearner:
        """Fit the single model on ``[X, onehot(arm)]``."""
        Xe, t, y, sw = self._prepare_fit(X, treatment, y, sample_weight)
        idx = np.array([self.classes_.index(a) for a in t.tolist()])
        design = np.hstack([Xe, self._arm_columns()[idx]])
        self.model_ = self._fit_model(self._outcome_model(), design, y, sw)
        return self

    def outcome_heads(self) -> list[Head] | None:
        """The one model, under control and under each arm."""
        return [Head(self.model_, self._arm_columns())]

    def _models(self) -> list[BaseEstimator]:
        return [self.model_]
