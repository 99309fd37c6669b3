"""Reason codes of the decision engine and the sentences a call-centre agent reads.

The engine works with small integers (one per customer x action); this module maps each
integer to a stable code string and a plain-language sentence template. The integer order
is also the order of precedence: when several rules exclude an action, the engine reports
the one that comes first here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import IntEnum

logger = logging.getLogger(__name__)


class Reason(IntEnum):
    """Why an action was (not) offered; lower values take precedence."""

    ELIGIBLE = 0
    UNKNOWN_CUSTOMER = 1
    NOT_ON_CHANNEL = 2
    NOT_IN_PLACEMENT = 3
    OUT_OF_DATES = 4
    NO_CONSENT = 5
    NOT_ELIGIBLE = 6
    CASE_OPEN = 7
    RECENT_COMPLAINT = 8
    ALREADY_HOLDS = 9
    OUT_OF_STOCK = 10
    COOLDOWN = 11
    CHANNEL_CAP = 12
    TOTAL_CAP = 13
    MISSING_FEATURES = 14
    MODEL_ERROR = 15
    NEGATIVE_VALUE = 16
    HOLDOUT = 17
    NO_ELIGIBLE_ACTION = 18
    EXPLORATION = 19
    BEST_VALUE = 20
    #: Appended (the names are indexed by value): a per-row check of the call, applied
    #: only to actions no rule excluded.
    QUIET_HOURS = 21


#: How a channel without a declared phrase reads inside a sentence: neutral, since nothing
#: is known about it ("... consented to marketing by email"). The catalog's ``channels:``
#: entries declare better wording ({id: branch, phrase: "in a branch"}), compiled once into
#: ``Plan.channel_phrases``.
FALLBACK_CHANNEL_PHRASE = "by {channel}"

OP_PHRASES: dict[str, str] = {
    "eq": "equal to",
    "ne": "different from",
    "lt": "below",
    "le": "at most",
    "gt": "above",
    "ge": "at least",
    "in": "one of",
    "not_in": "none of",
}

#: Sentence templates; fields are filled by :func:`sentence`.
SENTENCES: dict[Reason, str] = {
    Reason.ELIGIBLE: "{action} is allowed for this customer.",
    Reason.UNKNOWN_CUSTOMER: "The customer could not be identified, so no offer is made.",
    Reason.NOT_ON_CHANNEL: "{action} is not offered {channel_phrase}.",
    Reason.NOT_IN_PLACEMENT: "{action} is not shown in the {placement} placement.",
    Reason.OUT_OF_DATES: "{action} is not running at this time.",
    Reason.NO_CONSENT: "Customer has not consented to {purpose} {channel_phrase}.",
    Reason.NOT_ELIGIBLE: (
        "{action} requires {feature} to be {op_phrase} {threshold}; the customer has {observed}."
    ),
    Reason.CASE_OPEN: "Customer has an open service case, so {purpose} offers are paused.",
    Reason.RECENT_COMPLAINT: (
        "Customer complained {observed} days ago; no {kind} offers within {threshold} days "
        "of a complaint."
    ),
    Reason.ALREADY_HOLDS: "Customer already holds {product}, so {action} is not offered.",
    Reason.OUT_OF_STOCK: "{product} is out of stock, so {action} is not offered.",
    Reason.COOLDOWN: "{action} was shown {observed} days ago; it rests for {threshold} days.",
    Reason.CHANNEL_CAP: (
        "Customer was contacted {observed} times {channel_phrase} in the last {days} days; "
        "the limit is {threshold}."
    ),
    Reason.TOTAL_CAP: (
        "Customer was contacted {observed} times on all channels in the last {days} days; "
        "the limit is {threshold}."
    ),
    Reason.MISSING_FEATURES: "Data needed to check {action} is missing ({feature}).",
    Reason.MODEL_ERROR: "The response model could not score this customer, so no offer is made.",
    Reason.NEGATIVE_VALUE: (
        "{action} is not expected to add value for this customer "
        "(expected incremental value {score})."
    ),
    Reason.HOLDOUT: "Customer is in the measurement holdout group and receives no offer.",
    Reason.NO_ELIGIBLE_ACTION: "No offer is allowed for this customer right now.",
    Reason.EXPLORATION: "{action} was picked at random to keep learning what works.",
    Reason.BEST_VALUE: "{action} has the highest expected incremental value ({score}).",
    Reason.QUIET_HOURS: (
        "Nothing is sent {channel_phrase} during the customer's quiet hours (local time)."
    ),
}


#: Sentences of the rules a policy or catalog declares beside the defaults, by reason and
#: the ``rule`` field of the check (nextbest/decisions/rule_families.py): each says which rule
#: excluded the action.
RULE_SENTENCES: dict[tuple[Reason, str], str] = {
    (Reason.NO_CONSENT, "consent_scope.all_channels"): (
        "Customer has not consented to {purpose}; consent to {purpose} is recorded once "
        "for all channels."
    ),
    (Reason.CASE_OPEN, "case_pause.actions"): (
        "Customer has an open service case, and {action} pauses while a case is open."
    ),
    (Reason.RECENT_COMPLAINT, "complaint_block.actions"): (
        "Customer complained {observed} days ago; {action} is not offered within "
        "{threshold} days of a complaint."
    ),
    (Reason.ALREADY_HOLDS, "suppress_if_holds"): (
        "Customer holds {held}; {action} is not offered to holders of {held}."
    ),
}


class _Blank(dict):
    """Format mapping that leaves unknown fields readable instead of raising."""

    def __missing__(self, key: str) -> str:
        return "unknown"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "no value"
        return f"{value:.2f}" if abs(value - round(value)) > 1e-9 else f"{value:.0f}"
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


#: Row-level wording where it differs from the per-action one.
ROW_SENTENCES: dict[Reason, str] = {
    Reason.NEGATIVE_VALUE: (
        "No allowed offer is expected to add value for this customer, so no action is best."
    ),
    Reason.MISSING_FEATURES: "Data needed to check the offers is missing, so no offer is made.",
}


def code(reason: int) -> str:
    """The stable code string of a reason integer (e.g. ``NO_CONSENT``)."""
    return Reason(int(reason)).name


def channel_phrase(channel: str, channel_phrases: Mapping[str, str] | None = None) -> str:
    """How ``channel`` reads inside a sentence: its phrase in ``channel_phrases`` (the
    catalog's), else the neutral :data:`FALLBACK_CHANNEL_PHRASE`."""
    phrase = (channel_phrases or {}).get(channel)
    return phrase if phrase is not None else FALLBACK_CHANNEL_PHRASE.format(channel=channel)


def sentence(
    reason: int,
    fields: Mapping[str, object] | None = None,
    channel_phrases: Mapping[str, str] | None = None,
) -> str:
    """Fill the sentence template of ``reason`` with the action, feature and values given.

    ``channel_phrases`` (channel id -> phrase, the catalog's) words the channel; without
    it, or for a channel it lacks, the channel reads "by <channel>". A ``rule`` field picks
    the declared rule's own sentence (:data:`RULE_SENTENCES`). Unknown fields read as
    "unknown" so a missing detail never breaks a decision record.
    """
    r = Reason(int(reason))
    rule = (fields or {}).get("rule")
    template = RULE_SENTENCES.get((r, rule), SENTENCES[r]) if rule else SENTENCES[r]
    values = _Blank({k: _fmt(v) for k, v in (fields or {}).items()})
    if "channel" in values and "channel_phrase" not in values:
        values["channel_phrase"] = channel_phrase(values["channel"], channel_phrases)
    if "op" in values and "op_phrase" not in values:
        values["op_phrase"] = OP_PHRASES.get(values["op"], values["op"])
    # format_map looks fields up in ``values`` itself, so _Blank's __missing__ still
    # applies; it is several times cheaper than building a string.Formatter per sentence.
    return template.format_map(values)


def row_sentence(
    reason: int,
    fields: Mapping[str, object] | None = None,
    channel_phrases: Mapping[str, str] | None = None,
) -> str:
    """Sentence explaining a whole decision (the chosen action, or why there is none);
    ``channel_phrases`` as in :func:`sentence`."""
    r = Reason(int(reason))
    if r in ROW_SENTENCES:
        return ROW_SENTENCES[r]
    return sentence(r, fields, channel_phrases)
