"""Quiet hours in the customer's time zone, and the next time a channel may send."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from nextbest.decisions.send_windows import (
    QuietHours,
    SendWindows,
    in_quiet_hours,
    next_send_time,
    time_zone,
)

WINDOWS = SendWindows(
    quiet_hours={
        "sms": QuietHours(start="21:00", end="08:00"),
        "email": QuietHours(start="12:00", end="13:30"),
    }
)


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)


def test_quiet_hours_past_midnight_in_local_time() -> None:
    # 20:30 UTC is 21:30 in Berlin in winter (quiet) and 20:30 in London (not yet).
    now = utc(2026, 12, 7, 20, 30)
    assert WINDOWS.is_quiet("sms", "Europe/Berlin", now)
    assert not WINDOWS.is_quiet("sms", "Europe/London", now)
    assert next_send_time("sms", "Europe/Berlin", now, WINDOWS) == utc(2026, 12, 8, 7, 0)
    assert next_send_time("sms", "Europe/London", now, WINDOWS) == now


def test_before_the_end_on_the_same_morning() -> None:
    now = utc(2026, 12, 8, 5, 59)  # 06:59 in Berlin: quiet until 08:00 local
    assert next_send_time("sms", "Europe/Berlin", now, WINDOWS) == utc(2026, 12, 8, 7, 0)
    assert not WINDOWS.is_quiet("sms", "Europe/Berlin", utc(2026, 12, 8, 7, 0))  # end exclusive


def test_a_window_inside_one_day_and_channels_without_quiet_hours() -> None:
    assert WINDOWS.is_quiet("email", "UTC", utc(2026, 6, 1, 12, 0))
    assert not WINDOWS.is_quiet("email", "UTC", utc(2026, 6, 1, 13, 30))
    assert next_send_time("email", "UTC", utc(2026, 6, 1, 13, 0), WINDOWS) == utc(
        2026, 6, 1, 13, 30
    )
    assert next_send_time("push", "Asia/Tokyo", utc(2026, 6, 1, 3), WINDOWS) == utc(2026, 6, 1, 3)


def test_daylight_saving_is_the_zones() -> None:
    # Summer: Berlin is UTC+2, so 08:00 local is 06:00 UTC.
    now = utc(2026, 7, 1, 23, 0)
    assert next_send_time("sms", "Europe/Berlin", now, WINDOWS) == utc(2026, 7, 2, 6, 0)
    # The night clocks go forward (29 March 2026): the morning's 08:00 is 06:00 UTC.
    assert next_send_time("sms", "Europe/Berlin", utc(2026, 3, 28, 22), WINDOWS) == utc(
        2026, 3, 29, 6, 0
    )
    # A next send time is never before now, and never inside quiet hours.
    for hour in range(24):
        t = utc(2026, 10, 25, hour, 17)  # the night clocks go back
        nxt = next_send_time("sms", "America/New_York", t, WINDOWS)
        assert nxt >= t and not in_quiet_hours(WINDOWS.quiet_hours["sms"], "America/New_York", nxt)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="IANA"):
        time_zone("Mars/Olympus")
    with pytest.raises(ValidationError, match="HH:MM|pattern"):
        QuietHours(start="25:00", end="08:00")
    with pytest.raises(ValidationError, match="empty"):
        QuietHours(start="08:00", end="08:00")
