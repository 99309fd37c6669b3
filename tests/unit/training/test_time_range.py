"""Training refuses exposures that the feature snapshots do not cover, and a matrix whose
every window is empty, with one message saying what to change."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from nextbest.customers.features import snapshot_times
from training.dataset import (
    TimeRangeError,
    check_exposures_in_snapshots,
    check_windowed_features,
)

AS_OF = pd.Timestamp(datetime(2026, 11, 1, tzinfo=UTC))


def _exposures(*days: str) -> pd.DataFrame:
    return pd.DataFrame({"event_timestamp": pd.to_datetime(list(days), utc=True)})


def _snapshots(months: int, as_of: pd.Timestamp = AS_OF) -> tuple[pd.Timestamp, pd.Timestamp]:
    times = snapshot_times(as_of.to_pydatetime(), months)
    return times[0], times[-1]


def test_exposures_inside_the_snapshots_pass() -> None:
    check_exposures_in_snapshots(_exposures("2026-05-01", "2026-11-01"), *_snapshots(7))


@pytest.mark.parametrize("as_of", [AS_OF, pd.Timestamp("2026-10-17 09:00", tz="UTC")])
def test_exposures_before_the_first_snapshot_name_the_months_that_cover_them(
    as_of: pd.Timestamp,
) -> None:
    first_exposure = "2025-05-04 10:00"
    with pytest.raises(TimeRangeError) as err:
        check_exposures_in_snapshots(
            _exposures(first_exposure, "2026-09-01 00:00"), *_snapshots(7, as_of)
        )
    message = str(err.value)
    assert "1 of 2 training exposures" in message and "Nothing was trained" in message
    months = int(message.split("NEXTBEST_SNAPSHOT_MONTHS=")[1].split(" ")[0])
    # the months named cover the first exposure, one fewer would not
    check_exposures_in_snapshots(_exposures(first_exposure), *_snapshots(months, as_of))
    with pytest.raises(TimeRangeError):
        check_exposures_in_snapshots(_exposures(first_exposure), *_snapshots(months - 1, as_of))


def test_exposures_after_the_as_of_time_point_at_the_as_of_setting() -> None:
    with pytest.raises(TimeRangeError, match="unset NEXTBEST_AS_OF"):
        check_exposures_in_snapshots(_exposures("2026-06-01", "2026-11-02"), *_snapshots(7))


def _frame(values: dict[str, list[float]]) -> pd.DataFrame:
    n = len(next(iter(values.values())))
    ts = pd.date_range("2026-06-01", periods=n, tz="UTC")
    return pd.DataFrame({"event_timestamp": ts, **values})


def test_all_windowed_features_zero_is_refused() -> None:
    frame = _frame({"txn_count_30d": [0.0, 0.0], "views_30d_cards": [0.0, np.nan], "age": [40, 50]})
    with pytest.raises(TimeRangeError, match="every windowed feature"):
        check_windowed_features(frame, ["txn_count_30d", "views_30d_cards", "age"])


def test_one_event_in_a_window_or_absent_tables_pass() -> None:
    some = _frame({"txn_count_30d": [0.0, 1.0], "contacts_email_7d": [0.0, 0.0]})
    check_windowed_features(some, ["txn_count_30d", "contacts_email_7d"])
    # the tables of every windowed feature are absent: null, not zero
    absent = _frame({"txn_count_30d": [np.nan, np.nan], "tenure_days": [0.0, 0.0]})
    check_windowed_features(absent, ["txn_count_30d", "tenure_days"])


def test_an_as_of_setting_is_named_when_the_exposures_predate_the_snapshots() -> None:
    with pytest.raises(TimeRangeError, match="NEXTBEST_AS_OF .* is set to 2026-11-01"):
        check_exposures_in_snapshots(
            _exposures("2025-05-04 10:00"), *_snapshots(7), AS_OF.to_pydatetime()
        )
