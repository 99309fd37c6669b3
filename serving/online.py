"""LightGBM estimators made lean for one-row online scoring (see :func:`lean_lightgbm`).

The online decision path itself lives in :mod:`serving.decider` (the decider),
:mod:`serving.events` (events to feature rows), :mod:`serving.batching` (micro-batches),
:mod:`serving.requests` and :mod:`serving.responses`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def lean_lightgbm(model: Any) -> int:
    """Make every LightGBM estimator inside ``model`` predict through its booster, one thread.

    A decision scores one row through ~17 LightGBM calls (one per arm and per value arm);
    the scikit-learn wrapper adds ~0.3 ms of parameter copying and validation per call, and
    the OpenMP thread pool it asks for stalls on a busy 2-core machine. The booster gives
    the same numbers (same trees, same iterations); returns how many estimators changed.
    """
    import lightgbm

    seen: set[int] = set()
    changed = 0

    def lean(est: Any) -> None:
        booster = est.booster_
        est.set_params(n_jobs=1)
        if isinstance(est, lightgbm.LGBMClassifier) and est.n_classes_ == 2:

            def predict_proba(X: Any, *args: Any, **kwargs: Any) -> np.ndarray:
                if args or kwargs:
                    return type(est).predict_proba(est, X, *args, **kwargs)
                p = booster.predict(np.asarray(X, dtype=np.float64), num_threads=1)
                return np.column_stack([1.0 - p, p])

            est.predict_proba = predict_proba
        elif isinstance(est, lightgbm.LGBMRegressor):

            def predict(X: Any, *args: Any, **kwargs: Any) -> np.ndarray:
                if args or kwargs:
                    return type(est).predict(est, X, *args, **kwargs)
                return booster.predict(np.asarray(X, dtype=np.float64), num_threads=1)

            est.predict = predict

    def walk(obj: Any, depth: int = 0) -> None:
        nonlocal changed
        if id(obj) in seen or depth > 8:
            return
        seen.add(id(obj))
        if isinstance(obj, lightgbm.LGBMModel):
            if getattr(obj, "fitted_", False) or hasattr(obj, "_Booster"):
                lean(obj)
                changed += 1
            return
        if isinstance(obj, list | tuple):
            for x in obj:
                walk(x, depth + 1)
        elif isinstance(obj, dict):
            for x in obj.values():
                walk(x, depth + 1)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type | np.ndarray):
            for x in vars(obj).values():
                walk(x, depth + 1)

    walk(model)
    return changed
