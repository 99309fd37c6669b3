"""Multi-treatment uplift learners with LightGBM base models (scikit-learn contract).

Every learner takes its parameters in ``__init__``, learns in
``fit(X, treatment, y, sample_weight=None)`` and exposes fitted attributes ending in ``_``:

* ``arms_``: the treatment arms in sorted order, control excluded;
* ``classes_``: ``[control, *arms_]``, the column order of :meth:`predict_outcomes`;
* ``feature_names_in_``, ``categories_`` (per categorical column), ``binary_``.

``predict_outcomes(X)`` returns ``[n, 1 + A]``: the predicted outcome (a calibrated
response probability for a binary outcome, the expected value for a continuous one) under
control, then under each arm. ``predict_uplift(X)`` returns ``[n, A]``: outcome under each
arm minus outcome under control.

``X`` may be a numpy array (numeric) or a DataFrame; string, object, bool-free category
columns are ordinal-encoded with the categories stored in the fitted learner and passed to
LightGBM as categorical features, so unseen categories at predict time become missing.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold

__all__ = [
    "NO_ARM_COLUMNS",
    "DRLearner",
    "EnsembleLearner",
    "Head",
    "SLearner",
    "TLearner",
    "XLearner",
    "default_candidates",
    "ShrunkUpliftLearner",
    "inverse_propensity_weights",
    "logged_propensity",
    "with_arm_columns",
]

logger = logging.getLogger(__name__)

_PROPENSITY_CLIP = 0.01


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


# --- learners -----------------------------------------------------------------------------------


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


# --- candidates and logged propensities (the choice: training/selection.py) ------------------


def default_candidates(control: Hashable, random_state: int = 0) -> dict[str, BaseEstimator]:
    """The standard candidate set: T, S (plain and regularised), X and DR learners."""
    common = {"control": control, "random_state": random_state}
    return {
        "t_learner": TLearner(**common),
        "s_learner": SLearner(**common),
        "s_learner_reg": SLearner(
            num_leaves=15, min_child_samples=100, reg_lambda=5.0, n_estimators=300, **common
        ),
        "x_learner": XLearner(**common),
        "dr_learner": DRLearner(min_child_samples=100, reg_lambda=5.0, **common),
    }


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
