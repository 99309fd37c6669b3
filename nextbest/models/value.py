"""Expected incremental value: the one formula the engine ranks actions by and training
evaluates its policy with."""

from __future__ import annotations

import numpy as np

__all__ = ["incremental_value"]


def incremental_value(
    p_control: np.ndarray,
    p_treated: np.ndarray,
    value: np.ndarray,
    cost: np.ndarray | float,
    lever: np.ndarray | float = 1.0,
    control_value: np.ndarray | None = None,
) -> np.ndarray:
    """Expected incremental value of each action: ``(p_t * v_t - p_c * v_c - cost) * lever``.

    ``p_control`` is ``[n]``, ``control_value`` ``[n]`` or ``[n, C]``; the rest broadcast to
    ``[n, C]``. Without ``control_value`` (or where it is NaN) a response is worth the same
    with and without the action, which is ``(uplift * value - cost) * lever``.
    """
    pc = np.asarray(p_control, dtype=np.float64)[:, None]
    gain = (np.asarray(p_treated) - pc) * value
    if control_value is not None:
        v0 = np.asarray(control_value, dtype=np.float64)
        v0 = v0[:, None] if v0.ndim == 1 else v0
        gain = np.where(np.isfinite(v0), np.asarray(p_treated) * value - pc * v0, gain)
    return (gain - cost) * lever
