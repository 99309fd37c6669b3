"""Durations written as configuration text: ``30m``, ``36h``, ``2d``, ``1w``.

One reading for every window and period the catalog and the policy declare (behaviour
feature windows, contact-cap windows), so ``36h`` means the same number of seconds
everywhere. A duration also has one canonical label, in the largest unit that divides
it exactly (``24h`` is ``1d``, ``36h`` stays ``36h``), which names the features a window
feeds, so two spellings of one window name one feature.
"""

from __future__ import annotations

import re

MINUTE = 60
HOUR = 3_600
DAY = 86_400
WEEK = 7 * DAY
#: Seconds per unit letter, largest first (the order :func:`duration_label` tries them).
UNITS: dict[str, int] = {"w": WEEK, "d": DAY, "h": HOUR, "m": MINUTE}
#: The text form: a whole number and one unit letter.
DURATION_PATTERN = r"^[1-9][0-9]{0,5}[mhdw]$"
_DURATION = re.compile(DURATION_PATTERN)
#: The longest duration anything may declare: ten years (no window or cap needs more).
MAX_SECONDS = 3_660 * DAY


def parse_duration(text: object) -> int:
    """Seconds of a duration written as a whole number and a unit (``m`` minutes, ``h``
    hours, ``d`` days, ``w`` weeks): ``36h`` is 129600. Anything else raises ValueError
    saying what is accepted."""
    if not isinstance(text, str) or not _DURATION.match(text.strip()):
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and a unit, m h d or w "
            "(e.g. 30m, 36h, 2d, 1w)"
        )
    t = text.strip()
    seconds = int(t[:-1]) * UNITS[t[-1]]
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than {MAX_SECONDS // DAY} days")
    return seconds


def duration_label(seconds: int) -> str:
    """The canonical text of a duration in whole seconds: the largest of d, h, m that
    divides it (weeks are written in days: ``7d``), e.g. 129600 -> ``36h``, 86400 -> ``1d``.
    Feature names use it, so two spellings of one window name one feature."""
    if seconds <= 0 or seconds % MINUTE:
        raise ValueError(f"a duration label needs whole minutes > 0, got {seconds} s")
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    raise AssertionError("unreachable: every whole minute divides by m")
