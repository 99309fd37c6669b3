"""The decision model's scores: one set of rules over a choice of predictor backends.

A decision scores each customer under control and under every arm and values a response
per arm. :class:`Scorer` holds the rules, once: response outcomes clipped to [0, 1],
values floored at 0 with the per-arm responder means when the value model has no trees,
the control value floored at 0 with the control mean (NaN for a value model fitted before
control values existed). The learners and the value model expose their fitted estimators
as :class:`~nextbest.models.learners.Head` objects (estimator plus design layout), so the scorer
never asks which learner it holds. The backend, chosen at construction, only changes how
the heads are evaluated:

* ``"estimators"``: the learner's own ``predict_outcomes`` and each head's scikit-learn
  predict, one call per arm (any learner; what
  :class:`~nextbest.models.decision_model.DecisionModel` uses, so training evaluates exactly this);
* ``"lightgbm"``: every head's design rows stacked into one matrix and scored by one
  ``LGBM_BoosterPredictForMat`` call with a parameter string built once, skipping the
  scikit-learn wrapper's per-call work (an S-learner with 8 arms: 17 calls become 3);
* ``"compiled"``: :mod:`nextbest.models.compiled_trees`, which walks the arms' shared tree paths
  once, checked against ``"lightgbm"`` bit for bit.

LightGBM scores every row on its own (the same trees summed in the same order), so the
numbers are bit-identical across backends; ``tests/unit/models/test_scoring.py`` proves
it. The stacked backends need every head to be a plain LightGBM model;
:meth:`Scorer.from_model` returns None for a model that is not.
"""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np

from nextbest.models.learners import Head, with_arm_columns

log = logging.getLogger(__name__)

# LightGBM C API constants (c_api.h).
_DTYPE_FLOAT64 = 1
_PREDICT_NORMAL = 0

Backend = Literal["estimators", "lightgbm", "compiled"]


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
        # lazy: lightgbm is needed only to score through LightGBM
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
    # lazy: lightgbm is needed only to score through LightGBM
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


class _HeadPredictor(Protocol):
    def predict(self, X: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class _LearnerOutcomes:
    """The response learner's own ``predict_outcomes`` (any learner)."""

    response: Any

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.response.predict_outcomes(X), dtype=np.float64)


@dataclass(frozen=True)
class _StackedHead:
    """A head's design blocks stacked into one matrix, one LightGBM call."""

    booster: BoosterPredictor
    arm_columns: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        k = len(self.arm_columns)
        return self.booster.predict(with_arm_columns(X, self.arm_columns)).reshape(k, len(X)).T


@dataclass(frozen=True)
class _CompiledHead:
    """A head through the compiled trees: the kernel's columns for the head's arm rows."""

    booster: Any  # nextbest.models.compiled_trees.CompiledBooster
    columns: slice | np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(X)[:, self.columns]


@dataclass(frozen=True)
class _Predictors:
    """One backend's predictors: outcome heads side by side, value head, control head
    (None where the model has no trees and the rules answer a mean)."""

    outcomes: list[_HeadPredictor]
    value: _HeadPredictor | None
    control: _HeadPredictor | None

    def all(self) -> list[_HeadPredictor]:
        return [*self.outcomes, *(h for h in (self.value, self.control) if h is not None)]


def _compiled_columns(arm_columns: np.ndarray) -> slice | np.ndarray:
    """The kernel's output column per arm row (0: no arm column set, 1 + j: column j)."""
    rows = np.asarray(arm_columns)
    if rows.shape[1] == 0:
        return slice(0, 1) if len(rows) == 1 else np.zeros(len(rows), dtype=np.int64)
    ones = rows == 1.0
    if not ((rows == 0.0) | ones).all() or (ones.sum(axis=1) > 1).any():
        raise ValueError("arm columns are not one-hot rows; not compiled")
    columns = np.where(ones.any(axis=1), ones.argmax(axis=1) + 1, 0)
    if (np.diff(columns) == 1).all():  # a view, not a copy (S-learner, value model)
        return slice(int(columns[0]), int(columns[-1]) + 1)
    return columns


class Scorer:
    """``predict_arms`` and ``predict_control_value`` of a decision model, on one backend.

    Implements the engine's ``ResponseModel`` protocol and forwards every other attribute
    to the wrapped model, so it can stand in for the model in a compiled plan.
    ``num_threads`` is LightGBM's thread count per call (1 online; batch chunks use more).
    ``seconds`` adds up the wall time spent inside the two predict methods, so a batch job
    can report scoring apart from the rules.

    ``backend="compiled"`` scores through the compiled trees when numba is installed and
    every booster compiles (else ``"lightgbm"``, logged). Every call then also scores a
    sample of its rows (:attr:`CHECK_ROWS`) through LightGBM and requires equal bits; on
    any difference it logs an error, returns LightGBM's numbers and stays on LightGBM.
    ``compiled`` tells which path is in use. ``check_rows`` sets how many rows of every
    compiled call are re-scored. Online calls score one to a few dozen rows, where one
    more LightGBM call costs more than the compiled trees save, so the service passes 0
    and checks once at start-up instead with :meth:`verify` on :func:`probe_rows
    <nextbest.models.compiled_trees.probe_rows>` (every threshold's edges).
    """

    #: Rows of every compiled call re-scored by LightGBM and compared bit for bit.
    CHECK_ROWS = 32

    def __init__(
        self,
        model: Any,
        backend: Backend = "estimators",
        num_threads: int = 1,
        check_rows: int | None = None,
    ) -> None:
        if backend not in ("estimators", "lightgbm", "compiled"):
            raise ValueError(f"backend must be estimators, lightgbm or compiled, got {backend!r}")
        self.model = model
        self.num_threads = max(int(num_threads), 1)
        self.check_rows = self.CHECK_ROWS if check_rows is None else max(int(check_rows), 0)
        self.seconds = 0.0
        self.checked_rows = 0
        self._value = model.value
        self._n_features = len(model.feature_names)
        self._lightgbm: _Predictors | None = None
        self._compiled: _Predictors | None = None
        if backend == "estimators":
            self._predictors = _Predictors(
                [_LearnerOutcomes(model.response)],
                self._value.value_head(),
                self._value.control_head(),
            )
            return
        self._lightgbm = self._stacked(model)
        self._predictors = self._lightgbm
        if backend == "compiled":
            self._compiled = self._compile()
            if self._compiled is not None:
                self._predictors = self._compiled

    # --- building the backends ---------------------------------------------------------

    def _stacked(self, model: Any) -> _Predictors:
        """The LightGBM predictors of every head; ValueError when a head is not plain
        LightGBM or the learner does not expose its heads."""
        if getattr(model.response, "categories_", None):
            raise ValueError("categorical features go through the encoder; not stacked")
        heads = getattr(model.response, "outcome_heads", lambda: None)()
        if heads is None:
            raise ValueError(f"{type(model.response).__name__} does not expose outcome heads")

        def stacked(head: Head | None, role: str) -> _StackedHead | None:
            if head is None:
                return None
            booster = _plain_lgbm(head.estimator, self.num_threads)
            if booster is None:
                raise ValueError(f"{role} model is not a plain LightGBM model")
            return _StackedHead(booster, head.arm_columns)

        outcomes = [stacked(h, "outcome") for h in heads]
        return _Predictors(
            [h for h in outcomes if h is not None],
            stacked(self._value.value_head(), "value"),
            stacked(self._value.control_head(), "control value"),
        )

    def _compile(self) -> _Predictors | None:
        """The compiled predictors, or None (logged) when numba or a booster cannot."""
        # lazy: compiled_trees imports numba (heavy), needed only for compiled trees
        from nextbest.models import compiled_trees as ct

        if not ct.available():
            log.info("numba not installed: scoring through LightGBM")
            return None
        assert self._lightgbm is not None
        f, n = self._n_features, self.num_threads

        def compiled(head: _StackedHead | None) -> _CompiledHead | None:
            if head is None:
                return None
            columns = _compiled_columns(head.arm_columns)
            n_arms = head.arm_columns.shape[1]
            return _CompiledHead(ct.CompiledBooster(head.booster._booster, f, n_arms, n), columns)

        try:
            out = _Predictors(
                [h for h in map(compiled, self._lightgbm.outcomes) if h is not None],
                compiled(self._lightgbm.value),  # type: ignore[arg-type]
                compiled(self._lightgbm.control),  # type: ignore[arg-type]
            )
        except (ct.NotCompilable, ValueError) as exc:
            log.info("model %s scored through LightGBM: %s", self.version, exc)
            return None
        # numba compiles the kernel on its first call: pay it here, not in the first chunk.
        probe = np.zeros((1, f))
        for head in out.all():
            head.predict(probe)
        return out

    @classmethod
    def from_model(
        cls,
        model: Any,
        num_threads: int = 1,
        compiled: bool = False,
        check_rows: int | None = None,
    ) -> Scorer | None:
        """The LightGBM (or, with ``compiled``, compiled-trees) scorer of ``model``, or
        None when its heads are not all plain LightGBM models."""
        if isinstance(model, Scorer):
            model = model.model
        backend: Backend = "compiled" if compiled else "lightgbm"
        try:
            return cls(model, backend, num_threads, check_rows)
        except (AttributeError, TypeError, ValueError) as exc:
            log.info("model %s scored per arm: %s", getattr(model, "version", "?"), exc)
            return None

    # --- the compiled path's checks ----------------------------------------------------

    @property
    def compiled(self) -> bool:
        """Whether calls score through the compiled trees."""
        return self._compiled is not None

    def _check_rows(self, m: int) -> np.ndarray:
        """Rows of an ``m``-row call that LightGBM re-scores: spread over the call."""
        return np.unique(np.linspace(0, m - 1, min(m, self.check_rows)).astype(np.int64))

    def _fall_back(self, what: str) -> None:
        log.error(
            "compiled trees of model %s differ from LightGBM in %s; LightGBM from now on",
            self.version,
            what,
        )
        self._compiled = None
        assert self._lightgbm is not None
        self._predictors = self._lightgbm

    def verify(self, X: np.ndarray | None = None) -> bool:
        """Score ``X`` (default: :func:`~nextbest.models.compiled_trees.probe_rows` of the compiled
        boosters) both ways and require equal bits; on a difference log an error and stay
        on LightGBM for good. Returns whether the compiled trees are (still) in use.
        """
        if self._compiled is None or self._lightgbm is None:
            return False
        if X is None:
            # lazy: compiled_trees imports numba (heavy), needed only for compiled trees
            from nextbest.models.compiled_trees import probe_rows

            X = probe_rows([h.booster for h in self._compiled.all()])  # type: ignore[attr-defined]
        X = np.ascontiguousarray(X, dtype=np.float64)
        if not _same(self._arms(self._compiled, X), self._arms(self._lightgbm, X)):
            self._fall_back(f"predict_arms on {len(X)} start-up rows")
            return False
        if not _same(self._control(self._compiled, X), self._control(self._lightgbm, X)):
            self._fall_back(f"predict_control_value on {len(X)} start-up rows")
            return False
        self.checked_rows += len(X)
        return True

    def _checked(self, what: str, X: np.ndarray, got: Any, score: Any) -> Any:
        """``got`` (compiled, all rows of ``X``) when a sample of its rows equals LightGBM's
        ``score``, else LightGBM's answer for all rows (and LightGBM for good)."""
        if self._compiled is None or not self.check_rows or not len(X):
            return got
        assert self._lightgbm is not None
        rows = self._check_rows(len(X))
        want = score(self._lightgbm, X[rows])
        self.checked_rows += len(rows)
        sample = tuple(g[rows] for g in got) if isinstance(got, tuple) else got[rows]
        if _same(sample, want):
            return got
        self._fall_back(what)
        return score(self._lightgbm, X)

    # --- the rules -----------------------------------------------------------------------

    def _arms(self, p: _Predictors, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outcomes ``[m, 1 + A]`` (control first) clipped to [0, 1], values ``[m, A]``
        floored at 0 (the per-arm responder means without a value model)."""
        parts = [h.predict(X) for h in p.outcomes]
        outcomes = np.clip(parts[0] if len(parts) == 1 else np.hstack(parts), 0, 1)
        if p.value is None:
            return outcomes, np.tile(self._value.arm_means_, (len(X), 1))
        return outcomes, np.maximum(p.value.predict(X), 0.0)

    def _control(self, p: _Predictors, X: np.ndarray) -> np.ndarray:
        """The control value ``[m]`` floored at 0 (the control mean without a model; NaN
        for a value model fitted before control values existed)."""
        if not hasattr(self._value, "control_mean_"):
            return np.full(len(X), np.nan)
        if p.control is None:
            return np.full(len(X), self._value.control_mean_)
        return np.maximum(p.control.predict(X)[:, 0], 0.0)

    def predict_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p_control [n], p_treated [n, A], value_if_response [n, A])``."""
        t0 = time.perf_counter()
        X = self._rows(X)
        got = self._arms(self._predictors, X)
        outcomes, values = self._checked("predict_arms", X, got, self._arms)
        self.seconds += time.perf_counter() - t0
        return outcomes[:, 0], outcomes[:, 1:], values

    def predict_control_value(self, X: np.ndarray) -> np.ndarray:
        """What a response is worth without any action, ``[n]`` (the engine's ``v_c``)."""
        t0 = time.perf_counter()
        X = self._rows(X)
        out = self._control(self._predictors, X)
        if self._compiled is not None and self._compiled.control is not None:
            out = self._checked("predict_control_value", X, out, self._control)
        self.seconds += time.perf_counter() - t0
        return out

    def _rows(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self._n_features:
            raise ValueError(f"X must be [n, {self._n_features}], got shape {X.shape}")
        if self._compiled is not None:
            X = np.ascontiguousarray(X)
        return X

    # --- standing in for the model -------------------------------------------------------

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


def _same(a: Any, b: Any) -> bool:
    """Equal bits (NaN equal to NaN) for arrays or tuples of arrays."""
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(np.array_equal(a, b, equal_nan=True))


#: The name serving and batch know the LightGBM/compiled scorer by.
StackedScorer = Scorer


def stacked_plan(plan: Any, num_threads: int = 1, compiled: bool = False) -> Any:
    """``plan`` with its model replaced by the model's LightGBM scorer (``num_threads`` per
    call; the compiled trees when ``compiled``), or ``plan`` itself when the model's heads
    are not all plain LightGBM models.

    The scores are bit-identical either way; only the work behind them changes.
    """
    scorer = Scorer.from_model(plan.model, num_threads, compiled)
    return plan if scorer is None else replace(plan, model=scorer)
