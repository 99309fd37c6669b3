"""The request models of the service's APIs, with their limits (they become the OpenAPI spec).

BentoML builds each API's input model from the method's signature; the models here are
the typed parts of those signatures. Their limits come from the rules they mirror (the
ledger's tokens, amounts and time window), so the spec states what the service enforces;
the ledger still checks every event itself (it has other callers). Errors of these models
never carry the input value (``hide_input_in_errors``): the value can be personal data.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from nextbest.core.vocabulary import ID_TYPES
from nextbest.decisions.identity_links import MAX_VALUE_LENGTH
from nextbest.decisions.ledger import (
    CONTACT_OUTCOMES,
    EPOCH_BOUND,
    LINKABLE_ID_TYPES,
    MAX_AMOUNT,
    MAX_UNITS,
    TEXT_MAX,
    TOKEN_PATTERN,
)

IdType = Literal[ID_TYPES]  # type: ignore[valid-type]
LinkableIdType = Literal[LINKABLE_ID_TYPES]  # type: ignore[valid-type]
ContactOutcome = Literal[CONTACT_OUTCOMES]  # type: ignore[valid-type]

#: The longest identifier value a caller may send (a customer's, or an identify event's).
MAX_ID_LENGTH = MAX_VALUE_LENGTH

Token = Annotated[str, Field(max_length=TEXT_MAX, pattern=TOKEN_PATTERN)]
Text = Annotated[str, Field(min_length=1, max_length=TEXT_MAX)]


_TIMESTAMP_TEXT_MAX = 64


def _timestamp(value: Any) -> str | float | None:
    """ISO 8601 text (bounded) or finite epoch seconds (a flag is not a time); the ledger
    reads the text and checks the time window."""
    if value is None or (isinstance(value, str) and len(value) <= _TIMESTAMP_TEXT_MAX):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value) and -EPOCH_BOUND <= value <= EPOCH_BOUND:
            return float(value)
    raise ValueError(
        f"must be ISO 8601 text (at most {_TIMESTAMP_TEXT_MAX} characters) or epoch seconds "
        f"within ±{EPOCH_BOUND:g}"
    )


#: ISO 8601 text or epoch seconds; the ledger also requires 2000-01-01 .. now + 5 minutes.
#: One validator, so an error names ``timestamp`` alone (a union would name its branches).
Timestamp = Annotated[
    str | float | None,
    PlainValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": _TIMESTAMP_TEXT_MAX, "description": "ISO 8601"},
                {
                    "type": "number",
                    "minimum": -EPOCH_BOUND,
                    "maximum": EPOCH_BOUND,
                    "description": "epoch seconds",
                },
                {"type": "null"},
            ]
        }
    ),
]


class _Quiet(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)


class Customer(_Quiet):
    """How the caller identifies the customer; raw values never reach the decision log."""

    id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, description="The identifier value.")
    id_type: IdType = Field("customer_id", description="What kind of identifier ``id`` is.")


class EventPayload(_Quiet):
    """What an event carries; which fields each event type takes is in docs/events.md
    (service cases: case_id; purchase: amount, category, product_id; consent_changed:
    purpose, channel, granted, legal_basis; contact: channel, action_id, decision_id, outcome;
    stock_changed: product_id, units; identify: id_type, id_value)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    case_id: Token | None = None
    amount: float | None = Field(
        None, ge=0, le=MAX_AMOUNT, allow_inf_nan=False, strict=True, description="Purchase amount."
    )
    category: Text | None = Field(None, description="A catalog product category.")
    product_id: Text | None = Field(None, description="A catalog product id.")
    purpose: Text | None = Field(
        None, description="A catalog purpose (the enum is set from the catalog)."
    )
    channel: Text | None = Field(
        None, description="A catalog channel (the enum is set from the catalog)."
    )
    granted: bool | None = Field(None, strict=True)
    legal_basis: Token | None = None
    action_id: Text | None = Field(None, description="A catalog action id.")
    decision_id: Token | None = None
    outcome: ContactOutcome | None = Field(
        None, description="contact: what the customer did with the offer (a contact either way)."
    )
    units: float | None = Field(
        None,
        ge=0,
        le=MAX_UNITS,
        allow_inf_nan=False,
        strict=True,
        description="Units in stock (stock_changed).",
    )
    id_type: LinkableIdType | None = Field(
        None, description="identify: the type of the identifier to attach to the customer."
    )
    id_value: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="identify: the identifier's value; normalised and kept only as its salted "
        "hash, as the identity lookup keeps it.",
    )


class ConsentLookup(_Quiet):
    """``POST /customers/lookup/consent``: whose consent history, by any identifier. The
    identifier travels in the body so that an e-mail address or a phone number never sits
    in a URL (which access logs and proxies keep)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    customer: Customer


class ForgetRequest(_Quiet):
    """``POST /admin/forget``: whom to erase, and why."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    customer: Customer
    reason: str = Field(min_length=1, max_length=500, description="Why (kept in the audit log).")
    actor: str = Field(
        "admin-api", min_length=1, max_length=128, description="Who asks (kept in the audit log)."
    )
