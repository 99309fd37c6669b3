"""Online scoring of the decision model with one LightGBM call per booster.

A decision scores each customer under control and under every arm, and values a response
per arm: through :class:`models.decision_model.DecisionModel` that is one LightGBM call per arm of
the S-learner, one per arm of the value model and one for the control value (17 calls for
8 arms), each paying the scikit-learn wrapper's parameter handling and LightGBM's
predictor set-up (~0.2 ms apiece on this machine), while the trees themselves take a few
microseconds per row.

:class:`StackedScorer` stacks the arm designs of all rows into one matrix per booster and
calls ``LGBM_BoosterPredictForMat`` directly with a parameter string built once. LightGBM
scores every row on its own (the same trees summed in the same order), so each number is
bit-identical to the per-arm path; ``tests/unit/models/test_scoring.py`` proves it. Only
the model shapes trained here are stacked (S- or T-learner of plain LightGBM models, the
LightGBM value model); anything else keeps the model's own methods.
"""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import replace
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# LightGBM C API constants (c_api.h).
_DTYPE_FLOAT64 = 1
_PREDICT_NORMAL = 0


class BoosterPredictor:
    """``booster.predict(X)`` for float64 matrices, through the C API with no per-call set-up.

    Same iterations as ``Booster.predict`` with its defaults (the best iteration when early
    stopping set one, else all), normal (transformed) output. One thread by default: a
    decision scores a few dozen rows, far too few for a thread pool to pay off on a shared
    2-core machine; batch chunks of many thousand rows ask for more. Each row is scored on
    its own whatever the thread count, so the numbers do not depend on it.
    Pickles as its booster (the C handle is rebuilt), so a plan holding it can be broadcast.
    """

    def __init__(self, booster: Any, num_threads: int = 1) -> None:
        from lightgbm.basic import _LIB, _safe_call

        self._lib, self._safe_call = _LIB, _safe_call
        self._booster = booster  # keeps the handle alive
        self._handle = booster._handle
        self.num_feature = int(booster.num_feature())
        self._num_iteration = int(booster.best_iteration)
        self.num_threads = max(int(num_threads), 1)
        self._params = f"num_threads={self.num_threads}".encode()
        n_class = ctypes.c_int(0)
        _safe_call(_LIB.LGBM_BoosterGetNumClasses(self._handle, ctypes.byref(n_class)))
        if n_class.value != 1:
            raise ValueError(f"one output per row expected, booster has {n_class.value} classes")

    def __reduce__(self) -> tuple[Any, ...]:
        # The ctypes handle and library do not pickle; LightGBM's Booster does (model text).
        return (BoosterPredictor, (self._booster, self.num_threads))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for the rows of ``X`` ([m, num_feature] float64), ``[m]`` float64."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.num_feature:
            raise ValueError(f"X must be [m, {self.num_feature}], got {X.shape}")
        out = np.empty(X.shape[0], dtype=np.float64)
        n_out = ctypes.c_int64(0)
        self._safe_call(
            self._lib.LGBM_BoosterPredictForMat(
                self._handle,
                X.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(X.shape[0]),
                ctypes.c_int32(X.shape[1]),
                ctypes.c_int(1),  # row major
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(self._num_iteration),
                ctypes.c_char_p(self._params),
                ctypes.byref(n_out),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        )
        if n_out.value != X.shape[0]:
            raise ValueError(f"LightGBM returned {n_out.value} predictions for {X.shape[0]} rows")
        return out


def _plain_lgbm(est: Any, num_threads: int = 1) -> BoosterPredictor | None:
    """A predictor for a fitted binary LGBMClassifier or an LGBMRegressor, else None."""
    import lightgbm

    if isinstance(est, lightgbm.LGBMClassifier):
        if getattr(est, "n_classes_", None) != 2:
            return None
    elif not isinstance(est, lightgbm.LGBMRegressor):
        return None
    try:
        return BoosterPredictor(est.booster_, num_threads)
    except (AttributeError, ValueError):  # not fitted, or not one output per row
        return None


def _boosters(compiled: dict[str, Any]) -> list[Any]:
    """Every compiled booster of a :meth:`StackedScorer._compile` result."""
    return [
        *compiled.get("t", []),
        *(compiled[k] for k in ("s", "value", "control") if k in compiled),
    ]


class StackedScorer:
    """``predict_arms`` and ``predict_control_value`` of a decision model, stacked.

    Build it with :meth:`from_model`, which returns None for a model it cannot stack.
    Implements the engine's ``ResponseModel`` protocol and forwards every other attribute
    to the wrapped model, so it can stand in for the model in a compiled plan.
    ``num_threads`` is LightGBM's thread count per call (1 online; batch chunks use more).
    ``seconds`` adds up the wall time spent inside the two predict methods, so a batch job
    can report scoring apart from the rules.

    ``compiled=True`` (batch) scores through :mod:`models.compiled_trees` when numba is
    installed and every booster compiles: the arms share tree paths, ~3.5x less CPU. Every
    call then also scores a sample of its rows (:attr:`CHECK_ROWS`) through LightGBM and
    requires equal bits; on any difference it logs an error, returns LightGBM's numbers and
    stays on LightGBM. ``compiled`` tells which path is in use.

    ``check_rows`` sets how many rows of every compiled call are re-scored (default
    :attr:`CHECK_ROWS`). Online calls score one to a few dozen rows, where one more
    LightGBM call costs more than the compiled trees save, so the service passes 0 and
    checks once at start-up instead with :meth:`verify` on :func:`probe_rows
    <models.compiled_trees.probe_rows>` (every threshold's edges): on any difference it
    stays on LightGBM for good.
    """

    #: Rows of every compiled call re-scored by LightGBM and compared bit for bit.
    CHECK_ROWS = 32

    def __init__(
        self,
        model: Any,
        num_threads: int = 1,
        compiled: bool = False,
        check_rows: int | None = None,
    ) -> None:
        from models.learners import SLearner, TLearner

        self.model = model
        self.num_threads = max(int(num_threads), 1)
        self.check_rows = self.CHECK_ROWS if check_rows is None else max(int(check_rows), 0)
        self.seconds = 0.0
        self.checked_rows = 0
        response, value = model.response, model.value
        self._n_arms = len(model.arm_ids)
        self._n_features = len(model.feature_names)
        self._s_learner: BoosterPredictor | None = None
        self._t_learner: list[BoosterPredictor] | None = None
        if getattr(response, "categories_", None):
            raise ValueError("categorical features go through the encoder; not stacked")
        if type(response) is SLearner:
            self._s_learner = _plain_lgbm(response.model_, self.num_threads)
            if self._s_learner is None:
                raise ValueError("S-learner outcome model is not a plain LightGBM model")
        elif type(response) is TLearner:
            preds = [_plain_lgbm(m, self.num_threads) for m in response.models_]
            if any(p is None for p in preds) or len(preds) != self._n_arms + 1:
                raise ValueError("T-learner outcome models are not plain LightGBM models")
            self._t_learner = [p for p in preds if p is not None]
        else:
            raise ValueError(f"{type(response).__name__} is not stacked")
        self._value = value
        self._value_model = (
            None if value.model_ is None else _plain_lgbm(value.model_, self.num_threads)
        )
        if value.model_ is not None and self._value_model is None:
            raise ValueError("value model is not a plain LightGBM regressor")
        control = getattr(value, "control_model_", None)
        self._control_model = None if control is None else _plain_lgbm(control, self.num_threads)
        if control is not None and self._control_model is None:
            raise ValueError("control value model is not a plain LightGBM regressor")
        # Design blocks: row block k carries the one-hot of arm k - 1 (block 0: control) for
        # the S-learner, of arm k for the value model.
        eye = np.eye(self._n_arms)
        self._s_onehot = np.vstack([np.zeros((1, self._n_arms)), eye])
        self._v_onehot = eye
        self._compiled: dict[str, Any] | None = self._compile() if compiled else None

    @property
    def compiled(self) -> bool:
        """Whether calls score through the compiled trees (else LightGBM)."""
        return self._compiled is not None

    def _compile(self) -> dict[str, Any] | None:
        """Compiled boosters by role, or None (logged) when numba or a booster cannot."""
        from models import compiled_trees as ct

        if not ct.available():
            log.info("numba not installed: scoring through LightGBM")
            return None
        f, a, n = self._n_features, self._n_arms, self.num_threads
        try:
            out: dict[str, Any] = {}
            if self._s_learner is not None:
                out["s"] = ct.CompiledBooster(self._s_learner._booster, f, a, n)
            else:
                assert self._t_learner is not None
                out["t"] = [ct.CompiledBooster(p._booster, f, 0, n) for p in self._t_learner]
            if self._value_model is not None:
                out["value"] = ct.CompiledBooster(self._value_model._booster, f, a, n)
            if self._control_model is not None:
                out["control"] = ct.CompiledBooster(self._control_model._booster, f, 0, n)
        except ct.NotCompilable as exc:
            log.info("model %s scored through LightGBM: %s", self.version, exc)
            return None
        # numba compiles the kernel on its first call: pay it here, not in the first chunk.
        probe = np.zeros((1, f))
        for booster in _boosters(out):
            booster.predict(probe)
        return out

    def _check_rows(self, m: int) -> np.ndarray:
        """Rows of an ``m``-row call that LightGBM re-scores: spread over the call."""
        return np.unique(np.linspace(0, m - 1, min(m, self.check_rows)).astype(np.int64))

    def verify(self, X: np.ndarray | None = None) -> bool:
        """Score ``X`` (default: :func:`~models.compiled_trees.probe_rows` of the compiled
        boosters) both ways and require equal bits; on a difference log an error and stay
        on LightGBM for good. Returns whether the compiled trees are (still) in use.
        """
        if self._compiled is None:
            return False
        if X is None:
            from models.compiled_trees import probe_rows

            X = probe_rows(_boosters(self._compiled))
        X = np.ascontiguousarray(X, dtype=np.float64)
        outcomes, values = self._compiled_arms(X)
        want_o, want_v = self._lightgbm_arms(X)
        if not (
            np.array_equal(outcomes, want_o, equal_nan=True)
            and np.array_equal(values, want_v, equal_nan=True)
        ):
            self._fall_back(f"predict_arms on {len(X)} start-up rows")
            return False
        if "control" in self._compiled and self._control_model is not None:
            got = self._compiled["control"].predict(X)[:, 0]
            if not np.array_equal(got, self._control_model.predict(X), equal_nan=True):
                self._fall_back(f"predict_control_value on {len(X)} start-up rows")
                return False
        self.checked_rows += len(X)
        return True

    def _fall_back(self, what: str) -> None:
        log.error(
            "compiled trees of model %s differ from LightGBM in %s; LightGBM from now on",
            self.version,
            what,
        )
        self._compiled = None

    @classmethod
    def from_model(
        cls,
        model: Any,
        num_threads: int = 1,
        compiled: bool = False,
        check_rows: int | None = None,
    ) -> StackedScorer | None:
        """The stacked scorer of ``model``, or None when its shape is not one stacked here."""
        if isinstance(model, StackedScorer):
            model = model.model
        try:
            return cls(model, num_threads, compiled, check_rows)
        except (AttributeError, TypeError, ValueError) as exc:
            log.info("model %s scored per arm: %s", getattr(model, "version", "?"), exc)
            return None

    # The protocol's attributes come from the model itself.
    @property
    def feature_names(self) -> list[str]:
        """Model feature order."""
        return list(self.model.feature_names)

    @property
    def arm_ids(self) -> list[str]:
        """Treatment arms in column order."""
        return list(self.model.arm_ids)

    @property
    def version(self) -> str:
        """The wrapped model's version."""
        return str(self.model.version)

    def __getattr__(self, name: str) -> Any:
        # only called for attributes not found on the scorer: everything else of the model
        # (``__dict__`` is read directly: during unpickling ``model`` is not set yet)
        try:
            model = self.__dict__["model"]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(model, name)

    @staticmethod
    def _design(X: np.ndarray, onehot: np.ndarray) -> np.ndarray:
        """``[K * m, F + A]``: block k is ``X`` beside the one-hot row ``onehot[k]``."""
        m, f = X.shape
        k, a = onehot.shape
        D = np.empty((k, m, f + a))
        D[:, :, :f] = X[None, :, :]
        D[:, :, f:] = onehot[:, None, :]
        return D.reshape(k * m, f + a)

    def predict_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p_control [n], p_treated [n, A], value_if_response [n, A])``, as the model's."""
        t0 = time.perf_counter()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self._n_features:
            raise ValueError(f"X must be [n, {self._n_features}], got shape {X.shape}")
        outcomes, values = None, None
        if self._compiled is not None and len(X):
            outcomes, values = self._compiled_arms(X)
        if outcomes is not None and values is not None and self.check_rows:
            rows = self._check_rows(len(X))
            want = self._lightgbm_arms(X[rows])
            self.checked_rows += len(rows)
            if not (
                np.array_equal(outcomes[rows], want[0], equal_nan=True)
                and np.array_equal(values[rows], want[1], equal_nan=True)
            ):
                self._fall_back("predict_arms")
                outcomes = None
        if outcomes is None or values is None:
            outcomes, values = self._lightgbm_arms(X)
        self.seconds += time.perf_counter() - t0
        return outcomes[:, 0], outcomes[:, 1:], values

    def _lightgbm_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outcomes ``[m, A + 1]`` (control first, clipped) and values ``[m, A]``."""
        m = len(X)
        k = self._n_arms + 1
        if self._s_learner is not None:
            p = self._s_learner.predict(self._design(X, self._s_onehot))
            outcomes = p.reshape(k, m).T
        else:
            assert self._t_learner is not None
            outcomes = np.column_stack([b.predict(X) for b in self._t_learner])
        outcomes = np.clip(outcomes, 0, 1)
        if self._value_model is None:
            values = np.tile(self._value.arm_means_, (m, 1))
        else:
            v = self._value_model.predict(self._design(X, self._v_onehot))
            values = np.maximum(v.reshape(self._n_arms, m).T, 0.0)
        return outcomes, values

    def _compiled_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`_lightgbm_arms`, through the compiled trees (no design matrices)."""
        assert self._compiled is not None
        m = len(X)
        if "s" in self._compiled:
            outcomes = self._compiled["s"].predict(X)
        else:
            outcomes = np.column_stack([b.predict(X)[:, 0] for b in self._compiled["t"]])
        outcomes = np.clip(outcomes, 0, 1)
        if "value" in self._compiled:
            values = np.maximum(self._compiled["value"].predict(X)[:, 1:], 0.0)
        else:
            values = np.tile(self._value.arm_means_, (m, 1))
        return outcomes, values

    def predict_control_value(self, X: np.ndarray) -> np.ndarray:
        """What a response is worth without any action, ``[n]``, as the model's."""
        X = np.asarray(X, dtype=np.float64)
        if not hasattr(self._value, "control_mean_"):
            return np.full(len(X), np.nan)
        if self._control_model is None:
            return np.full(len(X), self._value.control_mean_)
        t0 = time.perf_counter()
        out = None
        if self._compiled is not None and "control" in self._compiled and len(X):
            X = np.ascontiguousarray(X, dtype=np.float64)
            out = np.maximum(self._compiled["control"].predict(X)[:, 0], 0.0)
            if self.check_rows:
                rows = self._check_rows(len(X))
                want = np.maximum(self._control_model.predict(X[rows]), 0.0)
                self.checked_rows += len(rows)
                if not np.array_equal(out[rows], want, equal_nan=True):
                    self._fall_back("predict_control_value")
                    out = None
        if out is None:
            out = np.maximum(self._control_model.predict(X), 0.0)
        self.seconds += time.perf_counter() - t0
        return out


def stacked_plan(plan: Any, num_threads: int = 1, compiled: bool = False) -> Any:
    """``plan`` with its model replaced by the model's :class:`StackedScorer` (LightGBM with
    ``num_threads`` per call; the compiled trees when ``compiled``), or ``plan`` itself when
    the model is not one stacked here.

    The scores are bit-identical either way; only the work behind them changes.
    """
    scorer = StackedScorer.from_model(plan.model, num_threads, compiled)
    return plan if scorer is None else replace(plan, model=scorer)
