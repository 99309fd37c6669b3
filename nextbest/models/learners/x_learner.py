"""The X-learner: T-learner outcomes, then per-arm effect models on imputed effects, blended by
propensity."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.base import BaseEstimator

from nextbest.models.learners.base import (
    Head,
    predict_estimator,
)
from nextbest.models.learners.propensity import (
    _PROPENSITY_CLIP,
    _propensity_matrix,
)
from nextbest.models.learners.t_learner import TLearner


class XLearner(TLearner):
    """X-learner (Künzel et al. 2019), one effect per arm against control.

    Stage 1 fits a T-learner. Stage 2 regresses imputed effects: ``y - mu_0(x)`` on the
    arm's rows and ``mu_k(x) - y`` on control rows, and blends the two effect models with
    ``g = e_k / (e_k + e_0)``. ``propensity`` is a mapping arm -> design probability (the
    known randomisation), ``"empirical"`` (arm shares in the training data, the default, the
    design of a randomised experiment) or ``"model"`` (a LightGBM classifier on X).
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
        self.propensity = propensity

    def _propensity_model(self) -> BaseEstimator:
        kwargs = self._lgbm_kwargs(97)
        kwargs["n_estimators"] = min(100, self.n_estimators)
        return lgb.LGBMClassifier(**kwargs)

    def _propensities(self, Xe: np.ndarray) -> np.ndarray:
        if isinstance(self.propensity_, np.ndarray):
            return np.broadcast_to(self.propensity_, (len(Xe), len(self.classes_)))
        return np.clip(self.propensity_.predict_proba(Xe), _PROPENSITY_CLIP, 1.0)

    def fit(self, X: Any, treatment: Any, y: Any, sample_weight: Any = None) -> XLearner:
        """Fit the stage-1 outcome models, the propensity and the stage-2 effect models."""
        super().fit(X, treatment, y, sample_weight)
        Xe = self._transform(X)
        t = np.asarray(treatment)
        y = np.asarray(y, dtype=np.float64)
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        self.propensity_, _ = _propensity_matrix(
            self.propensity, self.classes_, t, Xe, self._propensity_model
        )
        ctrl = t == self.control
        mu0_on_arm = {}
        self.effect_treated_, self.effect_control_ = [], []
        for k, arm in enumerate(self.arms_, start=1):
            m = t == arm
            mu0_on_arm[arm] = predict_estimator(self.models_[0], Xe[m])
            d_treated = y[m] - mu0_on_arm[arm]
            d_control = predict_estimator(self.models_[k], Xe[ctrl]) - y[ctrl]
            self.effect_treated_.append(
                self._fit_model(
                    self._effect_model(10 + k), Xe[m], d_treated, None if sw is None else sw[m]
                )
            )
            self.effect_control_.append(
                self._fit_model(
                    self._effect_model(20 + k),
                    Xe[ctrl],
                    d_control,
                    None if sw is None else sw[ctrl],
                )
            )
        return self

    def predict_uplift(self, X: Any) -> np.ndarray:
        """``[n, A]``: outcome under each arm minus under control (from the blended effects;
        for a binary outcome the implied probabilities are clipped to [0, 1] first)."""
        q = self.predict_outcomes(X)
        return q[:, 1:] - q[:, [0]]

    def _effects(self, Xe: np.ndarray) -> np.ndarray:
        """``[n, A]`` blended effect of each arm against control."""
        e = self._propensities(Xe)
        out = np.empty((len(Xe), len(self.arms_)))
        for j in range(len(self.arms_)):
            g = e[:, j + 1] / (e[:, j + 1] + e[:, 0])
            tau1 = self.effect_treated_[j].predict(Xe)
            tau0 = self.effect_control_[j].predict(Xe)
            out[:, j] = g * tau0 + (1 - g) * tau1
        return out

    def outcome_heads(self) -> list[Head] | None:
        """None: the arms' outcomes come from the effect models, not from heads."""
        return None

    def predict_outcomes(self, X: Any) -> np.ndarray:
        """``[n, 1 + A]``: the control model's prediction plus each arm's effect."""
        Xe = self._transform(X)
        mu0 = predict_estimator(self.models_[0], Xe)
        tau = self._effects(Xe)
        q = mu0[:, None] + tau
        if self.binary_:
            q = np.clip(q, 0.0, 1.0)
        return np.column_stack([mu0, q])

    def _models(self) -> list[BaseEstimator]:
        return [*self.models_, *self.effect_treated_, *self.effect_control_]
