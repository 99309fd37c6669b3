"""The decision model: every per-action response and value model in one object.

It implements the serving engine's ``ResponseModel`` protocol (``predict_arms``) and is
logged to MLflow as one pyfunc model whose ``predict`` returns, per row, the response
probability under control and under each arm and the value of a response per arm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor

from nextbest.core.vocabulary import NO_ACTION
from nextbest.models.learners import NO_ARM_COLUMNS, Head
from nextbest.models.scoring import Scorer


class ValueModel:
    """Expected revenue of a response, per arm: LightGBM on responders with the arm one-hot.

    Follows the scikit-learn contract: ``fit(X, treatment, y)`` learns from rows with
    ``y > 0`` only. It exposes its fitted models as heads (:meth:`value_head`,
    :meth:`control_head`) and its fallbacks as ``arm_means_`` and ``control_mean_``;
    :class:`nextbest.models.scoring.Scorer` turns them into values.
    """

    def __init__(
        self,
        arms: list[str] | None = None,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        random_state: int = 0,
    ) -> None:
        self.arms = arms
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state

    def _regressor(self) -> LGBMRegressor:
        return LGBMRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            random_state=self.random_state,
            verbose=-1,
            n_jobs=2,
        )

    def _arm_columns(self) -> np.ndarray:
        """``[A, A]``: arm ``j``'s one-hot column set for arm ``j`` (no control block)."""
        return np.eye(len(self.arms_))

    def fit(self, X: np.ndarray, treatment: np.ndarray, y: np.ndarray) -> ValueModel:
        """Fit on treated responders (revenue ``y > 0``)."""
        treatment = np.asarray(treatment).astype(str)
        self.arms_ = list(self.arms) if self.arms else sorted(set(treatment) - {NO_ACTION})
        index = {a: i for i, a in enumerate(self.arms_)}
        mask = (np.asarray(y) > 0) & np.isin(treatment, self.arms_)
        self.fallback_ = float(np.mean(y[mask])) if mask.any() else 0.0
        self.arm_means_ = np.array(
            [
                float(np.mean(y[mask & (treatment == a)]))
                if (mask & (treatment == a)).any()
                else self.fallback_
                for a in self.arms_
            ]
        )
        control = (np.asarray(y) > 0) & (treatment == NO_ACTION)
        self.control_mean_ = float(np.mean(y[control])) if control.any() else self.fallback_
        self.control_model_: LGBMRegressor | None = None
        if control.sum() >= 50:
            self.control_model_ = self._regressor().fit(
                np.asarray(X, dtype=np.float64)[control], y[control]
            )
        self.model_: LGBMRegressor | None = None
        if mask.sum() >= 50:
            arm_index = np.array([index[a] for a in treatment[mask]])
            design = np.hstack(
                [np.asarray(X, dtype=np.float64)[mask], self._arm_columns()[arm_index]]
            )
            self.model_ = self._regressor().fit(design, y[mask])
        return self

    def value_head(self) -> Head | None:
        """The responders' model under each arm, or None (too few responders: the
        scorer answers :attr:`arm_means_`)."""
        return None if self.model_ is None else Head(self.model_, self._arm_columns())

    def control_head(self) -> Head | None:
        """The control responders' model, or None (the scorer answers ``control_mean_``)."""
        model = getattr(self, "control_model_", None)
        return None if model is None else Head(model, NO_ARM_COLUMNS)


@dataclass
class DecisionModel:
    """Response learner + value model with the feature order they were fitted on."""

    response: Any  # fitted multi-treatment learner: predict_outcomes(X) -> [n, 1 + A]
    value: ValueModel
    feature_names: list[str]
    learner_name: str
    version: str = "unregistered"
    catalog_version: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def arm_ids(self) -> list[str]:
        """Treatment arms in column order (control excluded)."""
        return list(self.response.arms_)

    def predict_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p_control [n], p_treated [n, A], value_if_response [n, A])``."""
        return Scorer(self).predict_arms(X)

    def predict_control_value(self, X: np.ndarray) -> np.ndarray:
        """What a response is worth without any action, ``[n]`` (the engine's ``v_c``)."""
        return Scorer(self).predict_control_value(X)

    def predict_frame(self, X: np.ndarray) -> pd.DataFrame:
        """The pyfunc output: ``p_no_action``, ``p_<arm>``, ``value_<arm>``, ``value_no_action``."""
        p0, pt, v = self.predict_arms(X)
        cols: dict[str, np.ndarray] = {f"p_{NO_ACTION}": p0}
        for j, a in enumerate(self.arm_ids):
            cols[f"p_{a}"] = pt[:, j]
        for j, a in enumerate(self.arm_ids):
            cols[f"value_{a}"] = v[:, j]
        cols[f"value_{NO_ACTION}"] = self.predict_control_value(X)
        return pd.DataFrame(cols)


def pyfunc_class() -> type:
    """The MLflow ``PythonModel`` that serves a pickled :class:`DecisionModel`.

    Built lazily so importing this module does not import MLflow.
    """
    # lazy: mlflow takes seconds to import
    import mlflow.pyfunc

    class DecisionModelPyfunc(mlflow.pyfunc.PythonModel):
        """Loads ``decision_model.pkl`` and returns probabilities (never labels)."""

        def load_context(self, context: Any) -> None:
            self.model = joblib.load(context.artifacts["decision_model"])

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: Any = None
        ) -> pd.DataFrame:
            missing = [f for f in self.model.feature_names if f not in model_input]
            if missing:
                raise ValueError(f"model input lacks features: {missing}")
            X = model_input[self.model.feature_names].to_numpy(dtype=np.float64)
            return self.model.predict_frame(X)

        def unwrap(self) -> DecisionModel:
            """The underlying :class:`DecisionModel` for the fast numpy path."""
            return self.model

    return DecisionModelPyfunc
