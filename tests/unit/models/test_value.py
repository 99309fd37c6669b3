"""The expected incremental value the engine ranks by and training evaluates with."""

from __future__ import annotations

import numpy as np

from nextbest.models.value import incremental_value


def test_without_a_control_value_a_response_is_worth_the_same_with_and_without_the_action() -> None:
    p0 = np.array([0.1, 0.5])
    pt = np.array([[0.3, 0.1], [0.5, 0.9]])
    value = np.array([10.0, 20.0])
    got = incremental_value(p0, pt, value, np.array([1.0, 2.0]), lever=2.0)
    want = np.array([[(0.2 * 10 - 1) * 2, (0.0 * 20 - 2) * 2], [(0.0 - 1) * 2, (0.4 * 20 - 2) * 2]])
    np.testing.assert_allclose(got, want)


def test_a_control_value_prices_the_response_without_the_action_where_it_is_known() -> None:
    p0 = np.array([0.2, 0.2])
    pt = np.array([[0.4], [0.4]])
    got = incremental_value(p0, pt, np.array([10.0]), 1.0, control_value=np.array([5.0, np.nan]))
    # row 0: 0.4 * 10 - 0.2 * 5 - 1; row 1 (NaN): (0.4 - 0.2) * 10 - 1
    np.testing.assert_allclose(got[:, 0], [2.0, 1.0])
