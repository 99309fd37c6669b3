"""Durations as the catalog and the policy write them."""

import pytest

from nextbest.core.durations import duration_label, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h", 3600), ("36h", 129_600), ("2d", 172_800), ("1w", 604_800)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "0h", "1.5h", "h", "10", "3y", "-1d", 5, None, "99999999d"])
def test_bad_durations_are_refused_naming_the_form(bad: object) -> None:
    with pytest.raises(ValueError, match="duration|longer than"):
        parse_duration(bad)


def test_labels_use_the_largest_exact_unit() -> None:
    assert duration_label(parse_duration("24h")) == "1d"
    assert duration_label(parse_duration("36h")) == "36h"
    assert duration_label(parse_duration("1w")) == "7d"
    assert duration_label(parse_duration("90m")) == "90m"
    with pytest.raises(ValueError):
        duration_label(90)
