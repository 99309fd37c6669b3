"""The T-learner: one outcome model per arm, control included."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator

from nextbest.models.learners.base import (
    NO_ARM_COLUMNS,
    Head,
    _UpliftBase,
)


class TLearner(_UpliftBase):
    """One outcome model per arm (control included), each fitted on that arm's rows."""

    def fit(self, X: Any, treatment: Any, y: Any, sample_weight: Any = None) -> TLearner:
        """Fit one LightGBM model per arm."""
        Xe, t, y, sw = self._prepare_fit(X, treatment, y, sample_weight)
        self.models_ = []
        for k, arm in enumerate(self.classes_):
            m = t == arm
            model = self._fit_model(
                self._outcome_model(k), Xe[m], y[m], None if sw is None else sw[m]
            )
            self.models_.append(model)
        return self

    def outcome_heads(self) -> list[Head] | None:
        """One head per arm (control first), each on the features alone."""
        return [Head(m, NO_ARM_COLUMNS) for m in self.models_]

    def _models(self) -> list[BaseEstimator]:
        return list(self.models_)
