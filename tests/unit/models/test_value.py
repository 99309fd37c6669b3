"""The expected incremental value formula shared by the engine and training."""

from __future__ import annotations

import numpy as np

from nextbest.models.value import incremental_value


def test_without_control_value_it_is_uplift_times_value_minus_cost_times_lever() -> None:
    pc = np.array([0.1, 0.2])
    pt = np.array([[0.3, 0.1], [0.25, 0.5]])
    v = np.array([[100.0, 50.0], [10.0, 20.0]])
    got = incremental_value(pc, pt, v, cost=np.array([1.0, 2.0]), lever=np.array([1.0, 2.0]))
    expected = ((pt - pc[:, None]) * v - np.array([1.0, 2.0])) * np.array([1.0, 2.0])
    np.testing.assert_allclose(got, expected)


def test_control_value_prices_a_response_without_the_action_separately() -> None:
    pc = np.array([0.2, 0.2])
    pt = np.array([[0.2], [0.2]])  # no uplift at all
    v = np.array([[900.0], [900.0]])
    v0 = np.array([100.0, np.nan])  # second row: unknown -> uplift * value
    got = incremental_value(pc, pt, v, cost=1.0, control_value=v0)
    # A response to the offer is worth 900, one without it 100: 0.2*900 - 0.2*100 - 1.
    np.testing.assert_allclose(got[:, 0], [0.2 * 900 - 0.2 * 100 - 1.0, -1.0])
