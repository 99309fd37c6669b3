"""Action ids as the business writes them, in the one form every layer uses.

A business names its offers its own way (``MORTGAGE_REMORT``, ``Card-Upgrade``). Every
place an action is named reads the name through :func:`normalise_action_id`: the
catalog's ids and ``response_model`` arms, the policy's entries keyed by action, the
``action_id`` of contact history and campaign exposures, and ``/events`` contacts. The
normalised id (trimmed, lower-cased, each run of spaces and hyphens one underscore) is
what names feature columns (``last_shown_ts_<id>``), model arms and the decision log, so
``MORTGAGE_REMORT``, ``Mortgage-Remort`` and ``mortgage_remort`` are one action.
"""

from __future__ import annotations

import re

#: A normalised action id: a letter, then lower-case letters, digits and underscores.
ACTION_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
#: The longest action id (it is part of feature column names).
ACTION_ID_MAX_LENGTH = 80
#: What an action id may look like as written (before normalisation), for JSON Schemas.
WRITTEN_ACTION_ID_PATTERN = r"^\s*[A-Za-z][A-Za-z0-9_ -]*\s*$"

_SEPARATORS = re.compile(r"[\s-]+")
_VALID = re.compile(ACTION_ID_PATTERN)


def normalise_action_id(value: str) -> str:
    """The one form of an action id: trimmed, lower-cased, each run of spaces and
    hyphens one underscore (``" Card-Upgrade "`` -> ``"card_upgrade"``). Not checked:
    see :func:`action_id`."""
    return _SEPARATORS.sub("_", value.strip().lower())


def action_id(value: object) -> str:
    """``value`` normalised, or a ``ValueError`` that names it when it cannot be an
    action id (not text, empty, or not a letter followed by letters, digits, spaces,
    hyphens and underscores, at most :data:`ACTION_ID_MAX_LENGTH` long)."""
    if not isinstance(value, str):
        raise ValueError(f"action id {value!r} is not text")
    out = normalise_action_id(value)
    if not _VALID.match(out) or len(out) > ACTION_ID_MAX_LENGTH:
        raise ValueError(
            f"action id {value!r} is not usable: it must start with a letter and hold only "
            f"letters, digits, underscores, hyphens and spaces, at most "
            f"{ACTION_ID_MAX_LENGTH} characters (normalised: {out!r})"
        )
    return out
