"""LightGBM trees evaluated by a numba kernel that shares tree paths across treatment arms.

The S-learner scores each customer under control and under every arm: LightGBM walks all
trees once per arm (9 walks for 8 arms), although an arm only changes the walk at a node
that splits on that arm's one-hot column, and most paths meet none. This kernel walks each
tree once with every one-hot column at 0 (the control design) and, at the first node on that
path where arm ``j``'s column at 1 would branch the other way, follows arm ``j`` down the
other side only; arms that never branch off take the control path's leaf. The value model
(one-hot per arm, no control block) gets the same walk. For 8 arms that is ~3.5x less CPU
than LightGBM on the champion of the benchmark world.

Bit-identical by construction of the same arithmetic: the node test is LightGBM's
``Tree::NumericalDecision`` (missing types None/Zero/NaN, default direction, ``<=`` on the
double threshold), inputs pass LightGBM's dense-row filter (``|x| <= 1e-35f`` reads as 0),
tree outputs are summed in tree order from 0.0 as ``GBDT::PredictRaw`` does, and the
binary objective's sigmoid is ``1 / (1 + exp(-x))`` through the C library's ``exp``.
:class:`~nextbest.models.scoring.StackedScorer` still compares a sample of every call's rows with
LightGBM and falls back to LightGBM for good on any difference, so a model or a machine
where this does not hold costs speed, never a different number.

Only what is trained here compiles: numerical splits, one output per row, ``binary`` with
``sigmoid:1`` or plain ``regression``; anything else raises :class:`NotCompilable`.
numba is optional: without it :func:`available` is False and LightGBM scores.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

try:  # optional: batch decisions is faster with it, nothing needs it
    import numba

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - numba is in the lock file's extras
    _HAVE_NUMBA = False

#: LightGBM's kZeroThreshold (a float constant, widened to double as in its comparisons).
ZERO_THRESHOLD = float(np.float32(1e-35))
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


class NotCompilable(ValueError):
    """The booster uses something the kernel does not evaluate (categorical splits, ...)."""


def available() -> bool:
    """Whether numba is importable, so boosters can be compiled."""
    return _HAVE_NUMBA


if _HAVE_NUMBA:

    @numba.njit(inline="always", cache=True)
    def _next(v, k, thr, dleft, mtype, left, right):  # type: ignore[no-untyped-def]
        # LightGBM Tree::NumericalDecision.
        mt = mtype[k]
        if np.isnan(v) and mt != 2:
            v = 0.0
        if (mt == 1 and v >= -ZERO_THRESHOLD and v <= ZERO_THRESHOLD) or (mt == 2 and np.isnan(v)):
            return left[k] if dleft[k] else right[k]
        return left[k] if v <= thr[k] else right[k]

    @numba.njit(inline="always", cache=True)
    def _feature(X, i, f):  # type: ignore[no-untyped-def]
        # LightGBM reads |v| <= kZeroThreshold as 0 before the decision (NaN passes).
        v = X[i, f]
        if abs(v) <= ZERO_THRESHOLD:
            return 0.0
        return v

    @numba.njit(nogil=True, cache=True)
    def _predict(X, n_base, n_arms, feat, thr, dleft, mtype, left, right, leafv, roots, sig, out):  # type: ignore[no-untyped-def]  # noqa: E501
        # out[i, 0]: every one-hot column 0; out[i, 1 + j]: column n_base + j at 1.
        n = X.shape[0]
        dev = np.empty(max(n_arms, 1), np.int64)
        has = np.zeros(max(n_arms, 1), np.bool_)
        for i in range(n):
            for c in range(n_arms + 1):
                out[i, c] = 0.0
            for t in range(roots.shape[0]):
                k = roots[t]
                for j in range(n_arms):
                    has[j] = False
                while k >= 0:
                    f = feat[k]
                    if f < n_base:
                        k = _next(_feature(X, i, f), k, thr, dleft, mtype, left, right)
                    else:
                        k0 = _next(0.0, k, thr, dleft, mtype, left, right)
                        j = f - n_base
                        if j < n_arms and not has[j]:
                            k1 = _next(1.0, k, thr, dleft, mtype, left, right)
                            if k1 != k0:
                                has[j] = True
                                dev[j] = k1
                        k = k0
                base = leafv[-k - 1]
                out[i, 0] += base
                for j in range(n_arms):
                    if not has[j]:
                        out[i, 1 + j] += base
                        continue
                    k = dev[j]
                    while k >= 0:
                        f = feat[k]
                        if f < n_base:
                            v = _feature(X, i, f)
                        else:
                            v = 1.0 if f - n_base == j else 0.0
                        k = _next(v, k, thr, dleft, mtype, left, right)
                    out[i, 1 + j] += leafv[-k - 1]
            if sig:
                for c in range(n_arms + 1):
                    out[i, c] = 1.0 / (1.0 + np.exp(-out[i, c]))
        return out


def _flatten(booster: Any, model: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """Node arrays of every tree used by ``Booster.predict`` (children: node index, or
    ``-(leaf + 1)``) and the root of each tree; ``model`` is ``booster.dump_model()``."""
    if model.get("num_tree_per_iteration", 1) != 1 or model.get("num_class", 1) != 1:
        raise NotCompilable("one output per row expected")
    trees = model["tree_info"]
    best = int(booster.best_iteration)
    if best > 0:
        trees = trees[:best]
    feats: list[int] = []
    thr: list[float] = []
    dleft: list[bool] = []
    mtype: list[int] = []
    left: list[int] = []
    right: list[int] = []
    leaves: list[float] = []
    roots: list[int] = []

    def node(n: dict[str, Any]) -> int:
        if "split_feature" not in n:
            leaves.append(float(n["leaf_value"]))
            return -len(leaves)
        if n.get("decision_type") != "<=" or n.get("missing_type") not in _MISSING:
            raise NotCompilable(f"split {n.get('decision_type')!r} is not numerical")
        i = len(feats)
        feats.append(int(n["split_feature"]))
        thr.append(float(n["threshold"]))
        dleft.append(bool(n["default_left"]))
        mtype.append(_MISSING[n["missing_type"]])
        left.append(0)
        right.append(0)
        left[i] = node(n["left_child"])
        right[i] = node(n["right_child"])
        return i

    for tree in trees:
        if tree.get("is_linear"):
            raise NotCompilable("linear trees")
        roots.append(node(tree["tree_structure"]))
    return (
        np.array(feats, dtype=np.int64),
        np.array(thr, dtype=np.float64),
        np.array(dleft, dtype=np.bool_),
        np.array(mtype, dtype=np.int8),
        np.array(left, dtype=np.int64),
        np.array(right, dtype=np.int64),
        np.array(leaves, dtype=np.float64),
        np.array(roots, dtype=np.int64),
    )


def _sigmoid(model: dict[str, Any]) -> bool:
    """True for ``binary`` with ``sigmoid:1``, False for plain regression; else raises
    (``model`` is ``booster.dump_model()``)."""
    objective = str(model.get("objective", "")).split()
    if objective == ["binary", "sigmoid:1"]:
        return True
    if objective == ["regression"]:
        return False
    raise NotCompilable(f"objective {' '.join(objective)!r} is not compiled")


class CompiledBooster:
    """One LightGBM booster's trees for :func:`_predict`, with ``n_arms`` one-hot arm
    columns after the first ``n_base`` features (0 arms: a plain model of ``n_base``).

    :meth:`predict` gives ``[m, n_arms + 1]``: column 0 with every arm column at 0 (the
    control design), column ``1 + j`` with arm ``j``'s column at 1, transformed as
    ``Booster.predict`` does. ``num_threads`` row slices run at once (the kernel releases
    the GIL).
    """

    def __init__(self, booster: Any, n_base: int, n_arms: int = 0, num_threads: int = 1) -> None:
        if not _HAVE_NUMBA:
            raise NotCompilable("numba is not installed")
        if int(booster.num_feature()) != n_base + n_arms:
            raise NotCompilable(
                f"booster has {booster.num_feature()} features, not {n_base} + {n_arms} arms"
            )
        self.n_base, self.n_arms = int(n_base), int(n_arms)
        self.num_threads = max(int(num_threads), 1)
        # One dump: the JSON of a large booster is slow to build, and a service worker
        # compiles three boosters at start-up.
        model = booster.dump_model()
        self._sigmoid = _sigmoid(model)
        self._nodes = _flatten(booster, model)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for ``X`` ([m, n_base] float64): ``[m, n_arms + 1]`` float64."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_base:
            raise ValueError(f"X must be [m, {self.n_base}], got {X.shape}")
        out = np.empty((len(X), self.n_arms + 1), dtype=np.float64)
        args = (self.n_base, self.n_arms, *self._nodes, self._sigmoid)
        parts = min(self.num_threads, max(len(X) // 1024, 1))
        if parts == 1:
            _predict(X, *args, out)
            return out
        bounds = np.linspace(0, len(X), parts + 1).astype(int)
        with ThreadPoolExecutor(parts) as pool:
            jobs = [
                pool.submit(_predict, X[a:b], *args, out[a:b])
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            ]
            for job in jobs:
                job.result()
        return out


def probe_rows(boosters: list[CompiledBooster], n_rows: int = 256, seed: int = 0) -> np.ndarray:
    """``[n_rows, n_base]`` rows that take every kind of branch of ``boosters``' trees.

    Each value is drawn from its feature's split thresholds of every booster, the next
    doubles on either side of them, 0, values LightGBM reads as 0 (+-1e-36) and NaN, so a
    row set exercises the node test at its edges (``<=`` exactly on a threshold, missing
    types, default directions) where an evaluator that is not LightGBM's would differ.
    Deterministic for a seed: a start-up check compares these rows' scores with LightGBM.
    """
    if not boosters:
        raise ValueError("no boosters to probe")
    n_base = boosters[0].n_base
    edges = np.array([0.0, 1e-36, -1e-36, np.nan])
    by_feature: list[list[np.ndarray]] = [[edges] for _ in range(n_base)]
    for b in boosters:
        feat, thr = b._nodes[0], b._nodes[1]
        for f in range(n_base):
            t = thr[feat == f]
            if len(t):
                by_feature[f].append(
                    np.concatenate([t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)])
                )
    rng = np.random.default_rng(seed)
    X = np.empty((n_rows, n_base))
    for f in range(n_base):
        values = np.unique(np.concatenate(by_feature[f]))  # NaN kept once, at the end
        X[:, f] = values[rng.integers(len(values), size=n_rows)]
    return X
