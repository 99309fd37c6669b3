"""What every learner shares: feature encoding, the design layout of arm columns, heads, and the
base class with its parameters and LightGBM factory."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.calibration import CalibratedClassifierCV

# --- feature encoding ------------------------------------------------------------------------


def _is_categorical(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or s.dtype == object
        or (pd.api.types.is_string_dtype(s.dtype))
    )


class _FeatureEncoder:
    """Turns a DataFrame or array into a float64 matrix with ordinal-coded categoricals."""

    def fit(self, X: Any) -> _FeatureEncoder:
        df = _as_frame(X)
        self.feature_names_ = [str(c) for c in df.columns]
        self.categories_: dict[str, list[Any]] = {}
        for c in df.columns:
            if _is_categorical(df[c]):
                if isinstance(df[c].dtype, pd.CategoricalDtype):
                    cats = list(df[c].cat.categories)
                else:
                    cats = sorted(df[c].dropna().astype(str).unique().tolist())
                self.categories_[str(c)] = cats
        self.categorical_indices_ = [
            i for i, c in enumerate(self.feature_names_) if c in self.categories_
        ]
        return self

    def transform(self, X: Any) -> np.ndarray:
        if isinstance(X, np.ndarray) and X.dtype.kind in "fiub" and not self.categories_:
            if X.ndim != 2 or X.shape[1] != len(self.feature_names_):
                raise ValueError(
                    f"X has {X.shape[-1]} columns, the learner was fitted on "
                    f"{len(self.feature_names_)}"
                )
            return X.astype(np.float64, copy=False)
        df = _as_frame(X, self.feature_names_)
        missing = [c for c in self.feature_names_ if c not in df.columns]
        if missing:
            raise ValueError(f"X lacks the fitted feature columns: {missing}")
        out = np.empty((len(df), len(self.feature_names_)), dtype=np.float64)
        for i, c in enumerate(self.feature_names_):
            col = df[c]
            if c in self.categories_:
                cats = self.categories_[c]
                values = col.astype(object).where(col.notna(), None)
                values = values.map(lambda v: None if v is None else str(v))
                codes = pd.Categorical(values, categories=[str(v) for v in cats]).codes
                out[:, i] = np.where(codes < 0, np.nan, codes)
            else:
                try:
                    out[:, i] = pd.to_numeric(col).to_numpy(dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"feature column {c!r} is not numeric: {exc}") from exc
        return out


def _as_frame(X: Any, names: Sequence[str] | None = None) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        df = X.copy()
        df.columns = [str(c) for c in df.columns]
        return df
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-dimensional, got shape {arr.shape}")
    cols = list(names) if names is not None and len(names) == arr.shape[1] else None
    return pd.DataFrame(arr, columns=cols or [f"x{i}" for i in range(arr.shape[1])])


# --- design layout and heads -----------------------------------------------------------------

#: The arm columns of an estimator that scores ``X`` as it is: one output, nothing appended.
NO_ARM_COLUMNS = np.zeros((1, 0))


def with_arm_columns(X: np.ndarray, arm_columns: np.ndarray) -> np.ndarray:
    """``[K * m, F + A]``: block ``k`` is ``X`` ``[m, F]`` beside the row ``arm_columns[k]``.

    The one design layout of the models that take the arm as input columns (the S-learner
    and the value model): fitting, scoring per arm and scoring all arms in one call stack
    the same blocks. Without arm columns ``X`` itself is returned.
    """
    k, a = arm_columns.shape
    if a == 0 and k == 1:
        return X
    m, f = X.shape
    D = np.empty((k, m, f + a))
    D[:, :, :f] = X[None, :, :]
    D[:, :, f:] = arm_columns[:, None, :]
    return D.reshape(k * m, f + a)


def predict_estimator(model: BaseEstimator, X: np.ndarray) -> np.ndarray:
    """``[m]``: the positive-class probability of a classifier, else the prediction."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return model.predict(X)


@dataclass(frozen=True)
class Head:
    """A fitted estimator with the outputs it gives: output column ``k`` is the estimator
    on ``X`` beside ``arm_columns[k]`` (``[K, A]``; :data:`NO_ARM_COLUMNS` for ``X`` alone).

    Learners whose outcomes are their heads' outputs side by side expose them through
    ``outcome_heads()``, so a scorer can evaluate the same estimators another way (all arms
    in one LightGBM call, compiled trees) without knowing the learner's type.
    """

    estimator: BaseEstimator
    arm_columns: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``[m, K]`` through the estimator's own predict, one call per output column."""
        return np.column_stack(
            [
                predict_estimator(self.estimator, with_arm_columns(X, self.arm_columns[k : k + 1]))
                for k in range(len(self.arm_columns))
            ]
        )


# --- the shared base -------------------------------------------------------------------------


class _UpliftBase(BaseEstimator):
    """Shared parameters, encoding and LightGBM factory; not used directly."""

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
    ) -> None:
        self.control = control
        self.outcome = outcome
        self.calibration = calibration
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.lgbm_params = lgbm_params
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- helpers used by subclasses --

    def _lgbm_kwargs(self, seed_offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "reg_lambda": self.reg_lambda,
            "subsample": self.subsample,
            "subsample_freq": 1 if self.subsample < 1 else 0,
            "colsample_bytree": self.colsample_bytree,
            "random_state": None if self.random_state is None else self.random_state + seed_offset,
            "n_jobs": self.n_jobs,
            "verbose": -1,
        }
        params.update(self.lgbm_params or {})
        return params

    def _outcome_model(self, seed_offset: int = 0) -> BaseEstimator:
        kwargs = self._lgbm_kwargs(seed_offset)
        if not self.binary_:
            return lgb.LGBMRegressor(**kwargs)
        model = lgb.LGBMClassifier(**kwargs)
        if self.calibration is None:
            return model
        if self.calibration not in ("sigmoid", "isotonic"):
            raise ValueError(
                f"calibration must be None, 'sigmoid' or 'isotonic', got {self.calibration!r}"
            )
        return CalibratedClassifierCV(model, method=self.calibration, cv=3)

    def _effect_model(self, seed_offset: int = 0) -> BaseEstimator:
        return lgb.LGBMRegressor(**self._lgbm_kwargs(seed_offset))

    def _fit_model(
        self,
        model: BaseEstimator,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray | None,
    ) -> BaseEstimator:
        fit_kw: dict[str, Any] = {}
        if self.encoder_.categorical_indices_:
            fit_kw["categorical_feature"] = self._categorical_indices(X.shape[1])
        if sample_weight is not None:
            fit_kw["sample_weight"] = sample_weight
        # CalibratedClassifierCV forwards the extra fit params to each LightGBM fold.
        return model.fit(X, y, **fit_kw)

    def _categorical_indices(self, n_columns: int) -> list[int]:
        return [i for i in self.encoder_.categorical_indices_ if i < n_columns]

    def _prepare_fit(
        self, X: Any, treatment: Any, y: Any, sample_weight: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        treatment = np.asarray(treatment)
        y = np.asarray(y, dtype=np.float64)
        n = len(y)
        if len(treatment) != n:
            raise ValueError(f"treatment has {len(treatment)} rows, y has {n}")
        if np.isnan(y).any():
            raise ValueError("y holds missing values")
        labels = sorted(np.unique(treatment).tolist(), key=str)
        if self.control not in labels:
            raise ValueError(f"control arm {self.control!r} does not occur in treatment {labels}")
        arms = [a for a in labels if a != self.control]
        if not arms:
            raise ValueError(f"treatment holds only the control arm {self.control!r}")
        self.arms_ = arms
        self.classes_ = [self.control, *arms]
        if self.outcome == "auto":
            self.binary_ = bool(np.isin(y, (0.0, 1.0)).all())
        elif self.outcome in ("binary", "continuous"):
            self.binary_ = self.outcome == "binary"
        else:
            raise ValueError(
                f"outcome must be 'auto', 'binary' or 'continuous', got {self.outcome!r}"
            )
        self.encoder_ = _FeatureEncoder().fit(X)
        self.feature_names_in_ = np.asarray(self.encoder_.feature_names_, dtype=object)
        self.categories_ = self.encoder_.categories_
        self.n_features_in_ = len(self.encoder_.feature_names_)
        Xe = self.encoder_.transform(X)
        if len(Xe) != n:
            raise ValueError(f"X has {len(Xe)} rows, y has {n}")
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        return Xe, treatment, y, sw

    def _transform(self, X: Any) -> np.ndarray:
        if not hasattr(self, "encoder_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet; call fit first")
        return self.encoder_.transform(X)

    def outcome_heads(self) -> list[Head] | None:
        """The heads whose outputs side by side are :meth:`predict_outcomes` on encoded
        features, or None when the outcomes are computed otherwise."""
        return None

    def predict_outcomes(self, X: Any) -> np.ndarray:
        """``[n, 1 + A]`` predicted outcome under control then each arm."""
        heads = self.outcome_heads()
        if heads is None:  # pragma: no cover - learners without heads override this
            raise NotImplementedError
        Xe = self._transform(X)
        return np.hstack([h.predict(Xe) for h in heads])

    def predict_uplift(self, X: Any) -> np.ndarray:
        """``[n, A]``: predicted outcome under each arm minus under control."""
        q = self.predict_outcomes(X)
        return q[:, 1:] - q[:, [0]]

    def feature_importances(self) -> pd.Series:
        """Split-gain importance summed over the LightGBM models, indexed by feature name."""
        total = np.zeros(self.n_features_in_)
        for model in self._models():
            booster = _booster(model)
            if booster is None:
                continue
            gain = booster.feature_importance(importance_type="gain")
            total += gain[: self.n_features_in_]
        return pd.Series(total, index=list(self.feature_names_in_)).sort_values(ascending=False)

    def _models(self) -> list[BaseEstimator]:
        return []


def _booster(model: BaseEstimator) -> lgb.Booster | None:
    if isinstance(model, CalibratedClassifierCV):
        return model.calibrated_classifiers_[0].estimator.booster_
    return getattr(model, "booster_", None)
