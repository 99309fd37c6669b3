"""Thompson sampling: exploration by the posterior of each action's incremental value.

Each option's incremental value is taken as Gaussian around the model's estimate
``(p_t v_t - p_c v_c - cost) * lever``, with the spread of two response rates each
estimated from ``observations`` customers (the policy's ``thompson_observations``):

    sd = |lever| * sqrt(p_t (1 - p_t) v_t^2 + p_c (1 - p_c) v_c^2) / sqrt(observations)

(``v_c`` is the control value, the action's value where the model has none). ``no_action``
is worth exactly 0. For every decision ``samples`` (the policy's ``thompson_samples``)
draws of all options are made; the share of draws in which an option is the best is its
probability, and the decision takes the best option of one of the draws picked uniformly.
So the logged propensity (the chosen option's share) is exactly the probability of the
choice given the draws, at least ``1 / samples``, and the options' probabilities sum to 1;
as an estimate of the posterior probability of being best its standard error is at most
``0.5 / sqrt(samples)`` (0.031 at the default 256).

Every number comes from the customer's hash and the decision's seed through splitmix64
(:mod:`nextbest.decisions.draws`), as epsilon's draw does: batch and online give the same
decision for the same customer, snapshot and time bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextbest.decisions.draws import mix64, unit_interval

#: Rows drawn at once: ``rows x samples x options`` floats stay under ~64 MB.
CHUNK_CELLS = 8_000_000
_SECOND = np.uint64(0xD6E8FEB86659FD93)


@dataclass(frozen=True)
class ThompsonDraw:
    """Probabilities ``[n, Cc + 1]`` of the channel's options (no action last) and the
    option picked ``[n]`` (local column; ``Cc`` = no action)."""

    probs: np.ndarray
    pick: np.ndarray


def posterior_sd(
    p_control: np.ndarray,
    control_value: np.ndarray | None,
    p_treated: np.ndarray,
    value: np.ndarray,
    lever: np.ndarray | float,
    observations: float,
) -> np.ndarray:
    """``[n, Cc]`` posterior standard deviation of each action's incremental value."""
    pt = np.nan_to_num(np.asarray(p_treated, dtype=np.float64))
    v = np.nan_to_num(np.asarray(value, dtype=np.float64))
    pc = np.nan_to_num(np.asarray(p_control, dtype=np.float64))[:, None]
    v0 = v
    if control_value is not None:
        cv = np.asarray(control_value, dtype=np.float64)[:, None]
        v0 = np.where(np.isfinite(cv), cv, v)
    var = (pt * (1 - pt) * v**2 + pc * (1 - pc) * v0**2) / float(observations)
    return np.abs(np.asarray(lever, dtype=np.float64)) * np.sqrt(np.maximum(var, 0.0))


def _normals(keys: np.ndarray) -> np.ndarray:
    """Standard normal draws (Box-Muller) from uint64 ``keys``, one per key."""
    u1 = unit_interval(mix64(keys))
    u2 = unit_interval(mix64(keys ^ _SECOND))
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def draw(
    x: np.ndarray,
    mean: np.ndarray,
    sd: np.ndarray,
    options: np.ndarray,
    samples: int,
) -> ThompsonDraw:
    """Thompson draws for ``n`` decisions.

    ``x`` [n] uint64 is each decision's mixed hash and seed; ``mean`` and ``sd`` [n, Cc]
    the posterior of each action's incremental value; ``options`` [n, Cc] bool the
    actions that may be picked (no action always may).
    """
    n, cc = mean.shape
    probs = np.zeros((n, cc + 1))
    pick = np.full(n, cc, dtype=np.int64)
    if n == 0:
        return ThompsonDraw(probs, pick)
    s = int(samples)
    cell = (np.arange(s * cc, dtype=np.uint64) + np.uint64(1)).reshape(s, cc)
    step = max(1, CHUNK_CELLS // max(1, s * (cc + 1)))
    u_pick = unit_interval(mix64(mix64(x) ^ _SECOND))
    which = np.minimum((u_pick * s).astype(np.int64), s - 1)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        keys = x[lo:hi, None, None] ^ (cell[None] * np.uint64(0x9E3779B97F4A7C15))
        z = _normals(keys) if cc else np.zeros((hi - lo, s, 0))
        m = np.where(options[lo:hi], np.nan_to_num(mean[lo:hi]), -np.inf)[:, None, :]
        values = m + np.nan_to_num(sd[lo:hi])[:, None, :] * z
        values = np.concatenate([values, np.zeros((hi - lo, s, 1))], axis=2)
        best = values.argmax(axis=2)  # [rows, s]; ties go to the first column
        rows = np.arange(hi - lo)
        counts = np.zeros((hi - lo, cc + 1))
        np.add.at(counts, (np.repeat(rows, s), best.reshape(-1)), 1.0)
        probs[lo:hi] = counts / s
        pick[lo:hi] = best[rows, which[lo:hi]]
    return ThompsonDraw(probs, pick)
