"""Holdout and exploration draws: salted hashes any system can reproduce.

The holdout is the first 8 bytes of sha256(salt + customer id); the exploration draw
mixes that hash with the seed of the decision's time bucket through splitmix64, so the
online service and the batch job draw the same numbers for the same customer and bucket.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from nextbest.decisions.outcome import DecisionContext
from nextbest.decisions.policy import Policy


def holdout_hash(salt: str | bytes, customer_ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """First 8 bytes (big-endian) of sha256(salt + customer_id) as uint64, per customer.

    The same recipe can be reproduced in SQL or Spark, so any system can tell who is in
    the holdout.
    """
    s = salt.encode() if isinstance(salt, str) else salt
    sha = hashlib.sha256
    buf = b"".join(
        sha(s + (c.encode() if isinstance(c, str) else str(c).encode())).digest()[:8]
        for c in customer_ids
    )
    return np.frombuffer(buf, dtype=">u8").astype(np.uint64)


def in_holdout(
    salt: str | bytes, customer_ids: Sequence[str] | np.ndarray, share: float
) -> np.ndarray:
    """Whether each customer is in the holdout: hash / 2**64 < share."""
    h = holdout_hash(salt, customer_ids)
    return unit_interval(h) < share


_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


_MASK64 = (1 << 64) - 1
#: Below this many values the finaliser runs on Python integers: numpy's per-call overhead
#: (eight uint64 ufuncs and an errstate) dominates for the online path's one row.
MIX64_PY_MAX = 8


def _mix64_int(v: int) -> int:
    """splitmix64 finaliser of one uint64 held in a Python int (mod 2**64, as numpy)."""
    v = (v + 0x9E3779B97F4A7C15) & _MASK64
    v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) & _MASK64
    return v ^ (v >> 31)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-mixed uint64 -> uint64 map (vectorised)."""
    if isinstance(x, np.ndarray) and x.ndim == 1 and len(x) <= MIX64_PY_MAX:
        return np.array([_mix64_int(v) for v in x.tolist()], dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = x + _GOLD
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def unit_interval(x: np.ndarray) -> np.ndarray:
    """uint64 -> float in [0, 1) using the top 53 bits."""
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def exploration_seed(policy: Policy, context: DecisionContext) -> np.uint64:
    """The uint64 seed of a decision's exploration draw (same in batch and online)."""
    seed = context.decision_seed
    if seed is None:
        seed = str(int(timestamp(context.now) // policy.exploration.bucket_seconds))
    return _seed_of(policy.exploration.salt, seed)


@functools.lru_cache(maxsize=64)
def _seed_of(salt: str, seed: str) -> np.uint64:
    # the online path asks for the same bucket's seed on every request
    d = hashlib.sha256(f"{salt}:{seed}".encode()).digest()[:8]
    return np.uint64(int.from_bytes(d, "big"))


def timestamp(now: datetime) -> float:
    """POSIX seconds of ``now``; a naive time is read as UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.timestamp()
