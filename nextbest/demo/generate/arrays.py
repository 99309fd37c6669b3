"""Small vectorised helpers every step shares: one random stream per step, id and string
arrays, weighted choices, time ordering, timestamps and sliding-window counts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.demo.generate.writer import _WRITE_ROWS


def _rng(seed: int, step: str) -> np.random.Generator:
    """An independent stream per step so that changing one step leaves the others alone."""
    return np.random.default_rng([seed, int.from_bytes(step.encode()[:8].ljust(8, b"\0"), "big")])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _unique_ids(rng: np.random.Generator, n: int, prefix: str, digits: int) -> pa.Array:
    """``n`` distinct ids ``prefix + digits`` in random order (no leading zeros, no padding)."""
    low = 10 ** (digits - 1)
    nums = low + rng.choice(9 * low, size=n, replace=False)
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(nums), pa.string()), "")


def _str_table(values: list[str]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _take(values: pa.Array, idx: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    """``values[idx]`` with optional nulls where ``null_mask`` is true."""
    indices = pa.array(idx.astype(np.int64), mask=null_mask)
    return pc.take(values, indices)


def _with_nulls(values: pa.Array, null_mask: np.ndarray) -> pa.Array:
    if not null_mask.any():
        return values
    return pc.if_else(pa.array(null_mask), pa.scalar(None, values.type), values)


def _choose(rng: np.random.Generator, n: int, probs: list[float]) -> np.ndarray:
    """Variant index per row with the given probabilities."""
    cum = np.cumsum(np.asarray(probs, dtype=np.float64))
    cum /= cum[-1]
    return np.searchsorted(cum, rng.random(n), side="right").astype(np.int8)


def _sample_rows(weights: np.ndarray, owner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row, drawn from the row owner's weight vector (chunked to bound memory)."""
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1).astype(np.float32)
    cum[:, -1] = 1.0
    out = np.empty(owner.size, dtype=np.int8)
    for start in range(0, owner.size, _WRITE_ROWS):
        stop = min(start + _WRITE_ROWS, owner.size)
        u = rng.random(stop - start, dtype=np.float32)
        out[start:stop] = (u[:, None] >= cum[owner[start:stop]]).sum(axis=1)
    return np.minimum(out, weights.shape[1] - 1)


def _time_order(t: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Indices sorting by ``(t, tie)``: one argsort of a combined key, faster than lexsort."""
    if t.size == 0:
        return np.arange(0)
    span = int(tie.max()) + 1
    key = (t.astype(np.int64) - int(t.min())) * span + tie.astype(np.int64)
    return np.argsort(key, kind="stable")


def _timestamps(us: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(us.astype(np.int64), type=pa.timestamp("us", tz="UTC"), mask=null_mask)


def _window_count(
    keys: np.ndarray, group: np.ndarray, t: np.ndarray, window_s: int, shift: int = 32
) -> np.ndarray:
    """Events of ``group`` in ``[t - window, t)``; ``keys`` are sorted ``group << shift | time``."""
    hi = (group.astype(np.int64) << shift) | t.astype(np.int64)
    lo = (group.astype(np.int64) << shift) | np.maximum(t.astype(np.int64) - window_s, 0)
    return np.searchsorted(keys, hi, side="left") - np.searchsorted(keys, lo, side="left")
