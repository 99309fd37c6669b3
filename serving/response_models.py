"""The typed answers of ``/decide`` and ``/events`` (what the served spec declares).

The service renders its answers straight from the decision-log record and the ledger's
stored event (``serving/responses.py``, ``serving/events.py``) for speed; these models
describe those bodies field by field for the OpenAPI document (``serving/openapi.py``),
and ``tests/unit/serving/test_response_models.py`` (engine records) and
``tests/integration/test_console.py`` (served answers) validate real answers against them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nextbest.core.vocabulary import DECISION_GROUPS


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reason(_Answer):
    """A stable reason code and the sentence an agent reads."""

    code: str | None = Field(description="Reason code, e.g. NO_CONSENT, CASE_OPEN.")
    text: str | None = Field(description="The reason in plain words.")


class RankedAction(_Answer):
    """An action worth taking, in rank order, with its score parts."""

    action_id: str = Field(description="A catalog action id.")
    rank: int | None = Field(description="1 for the best.")
    score: float = Field(description="Expected incremental value of offering it.")
    uplift: float = Field(description="Response probability if offered minus if not.")
    value: float = Field(description="Value of a response.")
    value_source: str | None = Field(
        None, description="Where the value comes from: catalog, learned, learned_x_margin_rate."
    )
    control_value: float | None = Field(description="Value of a response without it.")
    p_treated: float = Field(description="Response probability if offered.")
    p_control: float = Field(description="Response probability if not.")
    cost: float = Field(description="Cost of the contact on this channel.")
    lever: float = Field(description="The catalog's business multiplier.")
    reasons: list[str] = Field(
        description="Why it is here: in service mode first which mode applied, then the "
        "score in words."
    )


class ExcludedAction(_Answer):
    """An action of the channel that was not allowed, with the rule that excluded it."""

    action_id: str
    reasons: list[Reason]


class DeliveryEvent(_Answer):
    """The ``/events`` body that reports the chosen action as delivered."""

    customer: dict[str, str]
    type: Literal["contact"]
    event_id: str
    payload: dict[str, str]


class DecideResponse(_Answer):
    """The answer of ``POST /decide``."""

    decision_id: str = Field(description="Id of the logged decision.")
    customer_id: str | None = Field(description="The unified customer (none if unknown).")
    group: Literal[DECISION_GROUPS] = Field(  # type: ignore[valid-type]
        description="holdout: the measurement group; its answer lists no actions."
    )
    chosen_action: str | None = Field(description="The action to take now, or no_action.")
    propensity: float | None = Field(description="Probability this choice had (logged).")
    value_source: str | None = Field(
        None, description="Where the chosen action's value comes from (policy value source)."
    )
    actions: list[RankedAction] = Field(description="Ranked actions, best first.")
    excluded: list[ExcludedAction] = Field(description="The channel's actions not allowed.")
    reason: Reason = Field(description="Why this answer as a whole.")
    model_version: str | None
    policy_version: str | None
    catalog_version: str | None
    mode: Literal["marketing", "service"] = Field(description="The mode decided in.")
    report_delivery: DeliveryEvent | None = Field(
        description="Send this to /events (with a timestamp) once the action is delivered."
    )


class EventResponse(_Answer):
    """The answer of ``POST /events``: the stored event."""

    event_id: str = Field(description="The event's id (yours or a fresh one).")
    customer_id: str | None = Field(description="The unified customer (none for stock).")
    type: str = Field(description="The event type.")
    applied: bool = Field(description="False when this event id was already applied.")
    timestamp: str = Field(description="Event time, ISO 8601 UTC.")
    received: str = Field(description="When the service stored it, ISO 8601 UTC.")
    status: Literal["linked", "known", "review"] | None = Field(
        None, description="identify only: what happened to the identifier."
    )
    reason: str | None = Field(None, description="identify only: why it was not linked.")


#: (method, path) -> the model of its 200 answer.
RESPONSE_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("post", "/decide"): DecideResponse,
    ("post", "/events"): EventResponse,
}

#: (method, path) -> request body examples, by name.
REQUEST_EXAMPLES: dict[tuple[str, str], dict[str, dict]] = {
    ("post", "/decide"): {
        "email campaign": {
            "summary": "The best three e-mail actions for a customer known by e-mail",
            "value": {
                "customer": {"id": "you@example.com", "id_type": "email"},
                "channel": "email",
                "k": 3,
            },
        },
        "agent on the phone": {
            "summary": "A live call the customer started: service actions first",
            "value": {
                "customer": {"id": "+44 7700 900123", "id_type": "phone"},
                "channel": "call_center",
                "k": 5,
                "mode": "service",
            },
        },
    },
    ("post", "/events"): {
        "consent withdrawn": {
            "summary": "The customer withdraws marketing consent by e-mail",
            "value": {
                "customer": {"id": "C0123456789ab"},
                "type": "consent_changed",
                "event_id": "pc-81723",
                "timestamp": "2026-12-01T09:30:00Z",
                "payload": {"purpose": "marketing", "channel": "email", "granted": False},
            },
        },
        "case resolved": {
            "summary": "The agent resolved the customer's service case",
            "value": {
                "customer": {"id": "C0123456789ab"},
                "type": "service_case_closed",
                "event_id": "case-4411-closed",
            },
        },
    },
}
