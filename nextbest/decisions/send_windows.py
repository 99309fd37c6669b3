"""Send windows: the quiet hours of each channel, in the customer's time zone.

The policy's ``send_windows`` says, per channel, the local hours in which nothing is sent
(``sms: {start: "21:00", end: "08:00"}``: from 21:00 until 08:00 the next morning). A
decision inside a channel's quiet hours excludes the channel with its reason; the trigger
code waits for :func:`next_send_time`. Local times are read in the customer's time zone
(IANA name, e.g. ``Europe/Berlin``) with daylight saving applied by :mod:`zoneinfo`: a
window's end that falls in a spring-forward gap is read as the instant after the gap.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

#: A local time of day as the policy writes it: ``HH:MM``, 24-hour clock.
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_CLOCK = re.compile(CLOCK_PATTERN)
Clock = Annotated[str, StringConstraints(pattern=CLOCK_PATTERN)]


def _clock(text: str) -> time:
    if not _CLOCK.match(text):
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    h, m = text.split(":")
    return time(int(h), int(m))


class QuietHours(BaseModel):
    """Local hours in which a channel sends nothing: from ``start`` until ``end``; an end
    before the start runs past midnight (21:00 to 08:00)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: Clock = Field(description="Local time quiet hours begin (HH:MM).", examples=["21:00"])
    end: Clock = Field(
        description="Local time they end (HH:MM, exclusive; before start: the next day).",
        examples=["08:00"],
    )

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: quiet hours would be empty")
        return self

    def contains(self, local: time) -> bool:
        """Whether the local time of day lies inside the quiet hours."""
        s, e = _clock(self.start), _clock(self.end)
        return s <= local < e if s < e else local >= s or local < e


@lru_cache(maxsize=512)
def time_zone(name: str) -> tzinfo:
    """The IANA time zone ``name`` (``Europe/Berlin``, ``UTC``); an unknown name raises
    ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not a known IANA time zone") from exc


def _aware(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now


def in_quiet_hours(quiet: QuietHours | None, tz: str | tzinfo, now: datetime) -> bool:
    """Whether ``now`` (naive: UTC) lies inside ``quiet`` in time zone ``tz``; no quiet
    hours: never."""
    if quiet is None:
        return False
    zone = time_zone(tz) if isinstance(tz, str) else tz
    return quiet.contains(_aware(now).astimezone(zone).time().replace(second=0, microsecond=0))


def quiet_until(quiet: QuietHours | None, tz: str | tzinfo, now: datetime) -> datetime:
    """The first instant at or after ``now`` outside ``quiet`` in ``tz`` (UTC): ``now``
    itself when it is outside, else the local ``end`` of the quiet hours it is in."""
    now = _aware(now).astimezone(UTC)
    if not in_quiet_hours(quiet, tz, now):
        return now
    assert quiet is not None
    zone = time_zone(tz) if isinstance(tz, str) else tz
    local = now.astimezone(zone)
    end = _clock(quiet.end)
    day = local.date() if local.time() < end else local.date() + timedelta(days=1)
    # A wall-clock time in a spring-forward gap converts to the instant after the gap.
    candidate = datetime.combine(day, end, tzinfo=zone).astimezone(UTC)
    return max(candidate, now)


class SendWindows(BaseModel):
    """Quiet hours per channel (the policy's ``send_windows``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quiet_hours: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$")], QuietHours
    ] = Field(
        default_factory=dict,
        description="Channel -> local hours in which it sends nothing, in the customer's "
        "time zone (the decision's time_zone, else NEXTBEST_DEFAULT_TIME_ZONE).",
        examples=[{"sms": {"start": "21:00", "end": "08:00"}}],
    )

    def is_quiet(self, channel: str, tz: str | tzinfo, now: datetime) -> bool:
        """Whether ``channel`` is inside its quiet hours at ``now`` in ``tz``."""
        return in_quiet_hours(self.quiet_hours.get(channel), tz, now)

    def next_send_time(self, channel: str, tz: str | tzinfo, now: datetime) -> datetime:
        """The first instant at or after ``now`` (UTC) at which ``channel`` may send to a
        customer in ``tz``."""
        return quiet_until(self.quiet_hours.get(channel), tz, now)


def next_send_time(channel: str, tz: str | tzinfo, now: datetime, windows: SendWindows) -> datetime:
    """The first instant at or after ``now`` (UTC) at which ``channel`` may send to a
    customer in time zone ``tz`` under ``windows`` (the policy's ``send_windows``):
    ``now`` outside quiet hours, else the local end of the quiet hours."""
    return windows.next_send_time(channel, tz, now)
