"""The decision log's size check: refuse, naming what is short, before anything is fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.from_log import LogTooSmallError, check_log_size


def exposures(counts: dict[str, int], responders: int = 3) -> pd.DataFrame:
    arms = np.concatenate([[a] * n for a, n in counts.items()])
    responded = np.concatenate(
        [[1] * min(responders, n) + [0] * (n - min(responders, n)) for n in counts.values()]
    )
    return pd.DataFrame({"action_id": arms, "responded": responded})


def test_a_log_with_every_arm_passes():
    check_log_size(exposures({"no_action": 200, "a": 30, "b": 25}), ["a", "b"], 255)


@pytest.mark.parametrize(
    ("counts", "responders", "log_rows", "message"),
    [
        ({"no_action": 100, "a": 30, "b": 25}, 3, 155, "155 logged decisions, at least 200"),
        ({"no_action": 300, "a": 30, "b": 5}, 3, 335, "fewer than 20 exposures (b: 5)"),
        ({"no_action": 300, "a": 30}, 3, 330, "(b: 0)"),
        ({"no_action": 300, "a": 30, "b": 25}, 0, 355, "without a single response"),
    ],
)
def test_a_short_log_is_refused_naming_what_is_short(counts, responders, log_rows, message):
    with pytest.raises(LogTooSmallError) as err:
        check_log_size(exposures(counts, responders), ["a", "b"], log_rows)
    assert message in str(err.value)
    assert "--with-history" in str(err.value)
    assert "Nothing was trained or registered" in str(err.value)
