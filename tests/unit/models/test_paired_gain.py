"""The promotion rule: a candidate beats the incumbent only by more than the noise."""

from __future__ import annotations

import numpy as np
import pytest

from nextbest.models.ope_estimators import DR, IPS, paired_gain
from tests.params import SEED


def test_paired_gain_is_the_mean_and_se_of_the_row_differences():
    rng = np.random.default_rng(SEED)
    a = rng.normal(1.0, 1.0, 400)
    b = a - 0.05 + rng.normal(0.0, 0.2, 400)
    g = paired_gain(a, b)
    d = a - b
    assert g.gain == pytest.approx(d.mean())
    assert g.se == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)))
    assert g.lower == pytest.approx(d.mean() - 1.6448536269514722 * g.se)
    assert g.beats == (g.lower > 0)
    assert g.candidate == pytest.approx(a.mean()) and g.incumbent == pytest.approx(b.mean())


def test_a_gain_within_the_noise_does_not_promote_and_a_clear_one_does():
    rng = np.random.default_rng(SEED)
    base = rng.normal(0.0, 1.0, 2000)
    noisy = base + rng.normal(0.0, 1.0, 2000) + 0.01  # a point gain, lost in the noise
    clear = base + rng.normal(0.0, 0.1, 2000) + 0.05
    assert not paired_gain(noisy, base).beats
    assert paired_gain(clear, base).beats
    assert not paired_gain(base, base).beats  # a tie keeps the incumbent
    with pytest.raises(ValueError, match="paired terms"):
        paired_gain(base, base[:-1])


def test_terms_average_to_the_estimates():
    rng = np.random.default_rng(SEED)
    n, k = 500, 3
    action = rng.integers(0, k, n)
    p = np.full(n, 1 / k)
    y = rng.random(n)
    dist = np.eye(k)[rng.integers(0, k, n)]
    q = rng.random((n, k))
    assert IPS().terms(y, action, p, dist).mean() == pytest.approx(
        IPS().estimate(y, action, p, dist).value
    )
    assert DR().terms(y, action, p, dist, q).mean() == pytest.approx(
        DR().estimate(y, action, p, dist, q).value
    )
    # IPS terms by hand: the reward over the propensity where the policy took the logged action
    by_hand = np.where(dist[np.arange(n), action] == 1, y / p, 0.0)
    np.testing.assert_allclose(IPS().terms(y, action, p, dist), by_hand)
