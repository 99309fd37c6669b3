"""One decision across channels: the best action x channel pair, the others explained.

The engine decides one channel at a time, each under its own rules (consent, caps, quiet
hours, eligibility per channel). :func:`choose_channel` takes the records of one customer
on several channels, decided at the same time, and keeps the channel whose chosen action
is worth the most (its top expected incremental value); ties go to the channel asked
first. The kept record gains ``channels``: every other channel asked, with what it would
have chosen and why it lost (``LOWER_VALUE``, ``QUIET_HOURS``, or the channel's own
reason: ``NO_ELIGIBLE_ACTION``, ``HOLDOUT``...). When no channel chooses an action, the
first channel asked answers no action, with the others' reasons beside it.

The same function serves ``/decide`` and batch scoring, so both pick alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nextbest.core.vocabulary import NO_ACTION
from nextbest.decisions.reasons import Reason

LOWER_VALUE = "LOWER_VALUE"
_QUIET = Reason.QUIET_HOURS.name


def channel_value(record: Mapping[str, Any]) -> float | None:
    """What a channel's decision is worth: the top expected incremental value of its
    ranking when it chose an action, else None."""
    if record.get("chosen_action") in (None, NO_ACTION) or record.get("group") == "holdout":
        return None
    ranked = record.get("ranked") or []
    return float(ranked[0]["score"]) if ranked else None


def best_channels(values: np.ndarray) -> np.ndarray:
    """[n] index of the winning channel per row of ``values`` ([n, m]: each channel's
    worth in the order asked, NaN where it chooses nothing): the largest, ties to the
    first asked; 0 (the first asked) where every channel is NaN. The one rule of
    :func:`choose_channel` and batch scoring across channels."""
    v = np.where(np.isnan(values), -np.inf, values)
    return np.asarray(np.argmax(v, axis=1))  # argmax keeps the first of equal maxima


def _quiet(record: Mapping[str, Any]) -> bool:
    return any(e.get("reason") == _QUIET for e in record.get("excluded", ()))


def choose_channel(records: Mapping[str, dict[str, Any]], asked: Sequence[str]) -> dict[str, Any]:
    """The record of the best channel among ``records`` (channel -> one customer's
    decision-log record, all of ``asked``), with ``channels`` listing the others and
    their reasons, and ``channels_asked``."""
    values = {c: channel_value(records[c]) for c in asked}
    row = np.array([[np.nan if values[c] is None else values[c] for c in asked]])
    winner = asked[int(best_channels(row)[0])]
    best = values[winner]
    others = []
    for c in asked:
        if c == winner:
            continue
        rec = records[c]
        if values[c] is not None:
            reason = LOWER_VALUE
            text = (
                f"{rec['chosen_action']} on {c} is worth {values[c]:.2f}, below "
                f"{best:.2f} on {winner}."
            )
        elif _quiet(rec) and rec.get("group") != "holdout":
            reason, text = _QUIET, f"{c} is inside the customer's quiet hours."
        else:
            reason, text = rec.get("reason"), rec.get("reason_text")
        others.append(
            {
                "channel": c,
                "chosen_action": rec.get("chosen_action"),
                "score": values[c],
                "reason": reason,
                "text": text,
            }
        )
    return {**records[winner], "channels_asked": list(asked), "channels": others}
