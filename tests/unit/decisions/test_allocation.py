"""The allocation solver against SciPy's exact LP (HiGHS) on small random instances:
never over a limit, never above the LP optimum, within its own reported gap, and better
than the greedy ranking when limits bind."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog

from nextbest.decisions.allocation import allocate, greedy
from tests.params import SEED


def _instance(seed: int, n: int = 400, C: int = 8):
    rng = np.random.default_rng(seed)
    S = rng.lognormal(0, 1, (n, C)) - 0.7
    S[rng.random((n, C)) < 0.3] = np.nan
    W = np.zeros((3, C))
    W[0, 0:3] = 1.0  # a channel's count
    W[1, 3:6] = rng.uniform(1, 5, 3)  # a budget in money
    W[2, 6] = 1.0  # inventory of one product
    cap = np.array([n * 0.05, n * 0.3, n * 0.02])
    return S, W, cap


def _exact_lp(S, W, cap) -> float:
    """The LP relaxation over every (customer, action) pair, solved whole by HiGHS."""
    n, C = S.shape
    ok = np.isfinite(S) & (S > 0)
    ii, cc = np.nonzero(ok)
    p = len(ii)
    A = np.zeros((n + len(cap), p))
    A[ii, np.arange(p)] = 1.0
    A[n:, :] = W[:, cc]
    res = linprog(-S[ii, cc], A_ub=A, b_ub=np.r_[np.ones(n), cap], bounds=(0, 1), method="highs")
    return -res.fun


@pytest.mark.parametrize("offset", range(4))
def test_within_the_lp_bound_and_never_over_a_limit(offset):
    S, W, cap = _instance(SEED + offset)
    a = allocate(S, W, cap)
    lp = _exact_lp(S, W, cap)
    assert (a.used <= cap).all()
    assert a.lp_bound >= lp - 1e-6 * lp  # an upper bound on the LP optimum
    assert a.lp_bound <= lp * (1 + 1e-5)  # and (nearly) the optimum itself
    assert a.value <= lp + 1e-6
    assert a.value >= lp * 0.99
    assert a.gap == pytest.approx(1 - a.value / a.lp_bound)
    # One action per customer, and only actions worth something.
    chosen = a.assigned >= 0
    assert (S[np.flatnonzero(chosen), a.assigned[chosen]] > 0).all()
    g = greedy(S, W, cap)
    assert (g.used <= cap).all()
    assert a.value >= g.value


def test_no_binding_limit_gives_every_customer_their_best():
    S, W, cap = _instance(SEED)
    a = allocate(S, W, cap * 1e6)
    best = np.where(np.isfinite(S) & (S > 0), S, 0).max(axis=1)
    assert a.value == pytest.approx(best.sum())
    assert a.gap == pytest.approx(0, abs=1e-9)


def test_zero_capacity_offers_nothing_limited():
    S, W, cap = _instance(SEED)
    a = allocate(S, W, np.zeros(3))
    limited = (W > 0).any(axis=0)
    assert not limited[a.assigned[a.assigned >= 0]].any()


def test_bad_limits_are_refused():
    S, W, cap = _instance(SEED)
    with pytest.raises(ValueError, match="weights"):
        allocate(S, -W, cap)
    with pytest.raises(ValueError, match="capacities"):
        allocate(S, W, np.array([1.0, np.nan, 1.0]))
