"""The trigger file: which events start a decision by themselves, and journeys.

A trigger turns a customer's events into a decision that is delivered without a request:
an event pattern (a type, seen ``count`` times ``within`` a window), or a scheduled scan
for customers inactive for a while; a condition over the customer's features at send
time; a delay; the events that cancel it while it waits; the channels to decide on; an
expiry; and a cap on how often it may send to one customer. A trigger with
``do: cancel_pending`` sends nothing: it cancels the customer's pending triggers of a
purpose (a complaint stops every pending marketing trigger).

A journey is a sequence of such steps from one entry event (welcome on day 0, a tip on
day 3 if not activated, an offer on day 7), left on a conversion event, with a holdout
drawn at entry.

:func:`load_triggers` reads and validates the YAML; every error names the file, the
trigger (or journey) and the field, and nothing is started on an error. Durations are
written ``<number><unit>`` with unit ``s``, ``m``, ``h`` or ``d`` (``90s``, ``10m``, ``2h``,
``45d``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from nextbest.decisions.catalog import ConfigError, describe_validation_error, read_yaml

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_ID = r"^[a-z][a-z0-9_]{0,63}$"
#: The comparisons a condition may make.
OPERATORS = ("==", "!=", "<", "<=", ">", ">=")
#: What ``do`` may ask of a fired trigger.
DO_DECIDE, DO_CANCEL = "decide", "cancel_pending"


def parse_duration(value: Any) -> float:
    """Seconds of a duration written ``<number><s|m|h|d>`` (a bare number is seconds)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 90s, 10m, 2h or 45d")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if m is None:
            raise ValueError(f"{value!r} is not a duration like 90s, 10m, 2h or 45d")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if not 0 <= seconds <= 3650 * 86400:
        raise ValueError("must be between 0 and 3650 days")
    return seconds


#: A duration in a file: ``<number><s|m|h|d>`` or a number of seconds; seconds in code.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[smhd]\s*$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration: <number><s|m|h|d> (90s, 10m, 2h, 45d) or seconds.",
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventPattern(_Strict):
    """The events that fire a trigger: ``count`` events of ``type`` within ``within``."""

    type: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="An event type /events accepts (the ledger's types and the catalog's "
        "behaviour events).",
        examples=["eligibility_check", "add_to_cart", "complaint"],
    )
    count: int = Field(
        1,
        ge=1,
        le=1000,
        description="How many events of the type, the firing one included, the customer "
        "must have within the window (by event time).",
        examples=[3],
    )
    within: Duration | None = Field(
        None,
        description="The window ending at the firing event's time that the count is over "
        "(required when count > 1).",
        examples=["7d"],
    )

    @model_validator(mode="after")
    def _window_for_counts(self) -> EventPattern:
        if self.count > 1 and self.within is None:
            raise ValueError("within: required when count > 1")
        return self


class Scan(_Strict):
    """A scheduled scan over every customer for those inactive for a while."""

    inactive_for: Duration = Field(
        gt=0,
        description="Fire for customers whose last activity (the features' last_active_ts "
        "and their newest customer event in the ledger) is at least this long ago.",
        examples=["45d"],
    )
    every: Duration = Field(
        86400.0,
        gt=0,
        description="How often the scan runs.",
        examples=["1d"],
    )


class Condition(_Strict):
    """One comparison over a customer feature, read as of send time (ledger applied)."""

    feature: str = Field(
        description="A feature the decision service reads (docs/data-dictionary.md).",
        examples=["open_cases"],
    )
    op: Literal["==", "!=", "<", "<=", ">", ">="] = Field(
        description="The comparison.", examples=["=="]
    )
    value: float = Field(description="The number the feature is compared with.", examples=[0])


class Cap(_Strict):
    """At most ``max`` sends of this trigger to one customer ``per`` window."""

    max: int = Field(ge=1, description="Sends allowed in the window.", examples=[1])
    per: Duration = Field(gt=0, description="The window, ending at send time.", examples=["7d"])


class Trigger(_Strict):
    """One trigger: a pattern or a scan, what to do, and the rules of its send."""

    id: str = Field(pattern=_ID, description="Unique id of the trigger.", examples=["cart"])
    purpose: str = Field(
        "marketing",
        description="The catalog purpose it sends under; a cancel_pending trigger cancels "
        "pending triggers of this purpose.",
        examples=["marketing"],
    )
    event: EventPattern | None = Field(
        None,
        description="The event pattern that fires it (or scan). The key is not `on`: YAML "
        "reads a bare on as true.",
        examples=[{"type": "add_to_cart"}],
    )
    scan: Scan | None = Field(
        None,
        description="A scheduled inactivity scan that fires it (or event).",
        examples=[{"inactive_for": "45d", "every": "1d"}],
    )
    do: Literal["decide", "cancel_pending"] = Field(
        DO_DECIDE,
        description="decide: run the decision at send time and deliver it; cancel_pending: "
        "cancel the customer's pending triggers of the purpose (nothing is sent).",
        examples=["decide"],
    )
    when: list[Condition] = Field(
        default_factory=list,
        description="Conditions over the customer's features at send time; all must hold, "
        "else no send (the reason is recorded).",
        examples=[[{"feature": "open_cases", "op": "==", "value": 0}]],
    )
    delay: Duration = Field(
        0.0,
        description="Wait this long after the firing event's time before deciding.",
        examples=["2h"],
    )
    cancel_on: list[str] = Field(
        default_factory=list,
        description="Event types that cancel it while it waits (the customer's, after the "
        "firing event; stock_changed with units 0 for the product the firing event names).",
        examples=[["purchase", "stock_changed"]],
    )
    channels: list[str] = Field(
        default_factory=list,
        description="Catalog channels to decide on; the best action x channel pair among "
        "them is sent (as /decide with channels).",
        examples=[["email", "call_center"]],
    )
    expires: Duration = Field(
        86400.0,
        gt=0,
        description="Not sent within this time after it became due (a worker that was down): "
        "expired, with its reason.",
        examples=["10m"],
    )
    cap: Cap | None = Field(
        None,
        description="At most this many sends per customer per window.",
        examples=[{"max": 1, "per": "7d"}],
    )

    @model_validator(mode="after")
    def _shape(self) -> Trigger:
        if (self.event is None) == (self.scan is None):
            raise ValueError("event, scan: give exactly one of them")
        if self.do == DO_DECIDE and not self.channels:
            raise ValueError("channels: a decide trigger needs at least one channel")
        if self.do == DO_CANCEL and self.scan is not None:
            raise ValueError("do: cancel_pending needs an event, not a scan")
        return self


class Step(_Strict):
    """One step of a journey, sent ``after`` its entry (a trigger of its own)."""

    id: str = Field(pattern=_ID, description="Unique id within the journey.", examples=["tip"])
    after: Duration = Field(description="Time after entry.", examples=["3d"])
    channels: list[str] = Field(
        min_length=1, description="Catalog channels to decide on.", examples=[["email"]]
    )
    when: list[Condition] = Field(
        default_factory=list,
        description="Conditions over features at send time (e.g. not activated yet).",
        examples=[[{"feature": "app_sessions_30d", "op": "==", "value": 0}]],
    )
    expires: Duration = Field(86400.0, gt=0, description="As a trigger's expires.", examples=["1d"])


class Journey(_Strict):
    """A declarative sequence of steps from one entry event, left on a conversion."""

    id: str = Field(pattern=_ID, description="Unique id of the journey.", examples=["onboarding"])
    purpose: str = Field(
        "marketing", description="The purpose its steps send under.", examples=["marketing"]
    )
    entry: EventPattern = Field(
        description="The event that enters a customer (once per customer).",
        examples=[{"type": "purchase"}],
    )
    exit_on: list[str] = Field(
        default_factory=list,
        description="Event types (conversion) after entry that cancel every pending step.",
        examples=[["purchase"]],
    )
    holdout: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of entrants kept out by a salted hash of customer and journey: "
        "their decisions are logged in the holdout group and nothing is sent, so the lift "
        "report measures the journey.",
        examples=[0.1],
    )
    steps: list[Step] = Field(min_length=1, description="The steps, each a trigger.")
    cancel_on: list[str] = Field(
        default_factory=list,
        description="Event types that cancel the pending steps as exit_on does.",
        examples=[["complaint"]],
    )


class TriggerFile(_Strict):
    """The trigger file (``NEXTBEST_TRIGGERS_FILE``)."""

    version: str = Field(description="Version of the file, for the record.", examples=["1"])
    triggers: list[Trigger] = Field(default_factory=list, description="The triggers.")
    journeys: list[Journey] = Field(default_factory=list, description="The journeys.")

    def all_ids(self) -> list[str]:
        """Every trigger id, and ``<journey>.<step>`` for journey steps."""
        return [t.id for t in self.triggers] + [
            f"{j.id}.{s.id}" for j in self.journeys for s in j.steps
        ]


def _problems(
    spec: TriggerFile,
    path: Path,
    event_types: Iterable[str] | None,
    channels: Iterable[str] | None,
    purposes: Iterable[str] | None,
    features: Iterable[str] | None,
) -> list[str]:
    types = set(event_types) if event_types is not None else None
    chans = set(channels) if channels is not None else None
    purps = set(purposes) if purposes is not None else None
    feats = set(features) if features is not None else None
    out: list[str] = []

    def check(entry: str, field: str, value: str, known: set[str] | None, what: str) -> None:
        if known is not None and value not in known:
            out.append(
                f"{path}: {entry}: field '{field}': unknown {what} {value!r} "
                f"(one of {', '.join(sorted(known))})"
            )

    seen: set[str] = set()
    for i, t in enumerate(spec.triggers):
        entry = f"triggers[{i}] (id '{t.id}')"
        if t.id in seen:
            out.append(f"{path}: {entry}: field 'id': repeats an earlier id")
        seen.add(t.id)
        check(entry, "purpose", t.purpose, purps, "purpose")
        if t.event is not None:
            check(entry, "event.type", t.event.type, types, "event type")
        for k, c in enumerate(t.cancel_on):
            check(entry, f"cancel_on[{k}]", c, types, "event type")
        for k, c in enumerate(t.channels):
            check(entry, f"channels[{k}]", c, chans, "channel")
        for k, c in enumerate(t.when):
            check(entry, f"when[{k}].feature", c.feature, feats, "feature")
    for i, j in enumerate(spec.journeys):
        entry = f"journeys[{i}] (id '{j.id}')"
        if j.id in seen:
            out.append(f"{path}: {entry}: field 'id': repeats a trigger or journey id")
        seen.add(j.id)
        check(entry, "purpose", j.purpose, purps, "purpose")
        check(entry, "entry.type", j.entry.type, types, "event type")
        for k, c in enumerate([*j.exit_on, *j.cancel_on]):
            name = f"exit_on[{k}]" if k < len(j.exit_on) else f"cancel_on[{k - len(j.exit_on)}]"
            check(entry, name, c, types, "event type")
        steps: set[str] = set()
        for s_i, s in enumerate(j.steps):
            if s.id in steps:
                out.append(f"{path}: {entry}: field 'steps[{s_i}].id': repeats an earlier step")
            steps.add(s.id)
            for k, c in enumerate(s.channels):
                check(entry, f"steps[{s_i}].channels[{k}]", c, chans, "channel")
            for k, c in enumerate(s.when):
                check(entry, f"steps[{s_i}].when[{k}].feature", c.feature, feats, "feature")
    return out


def load_triggers(
    path: str | Path,
    event_types: Iterable[str] | None = None,
    channels: Iterable[str] | None = None,
    purposes: Iterable[str] | None = None,
    features: Iterable[str] | None = None,
) -> TriggerFile:
    """Read and validate a trigger file; raises :class:`ConfigError` with one line per
    problem, each naming the file, the trigger or journey, and the field.

    The names it uses are checked against those given: the event types /events accepts,
    the catalog's channels and purposes, the service's features.
    """
    p = Path(path)
    raw = read_yaml(p)
    try:
        spec = TriggerFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe_validation_error(e, raw, p, ("triggers", "journeys"))) from e
    problems = _problems(spec, p, event_types, channels, purposes, features)
    if problems:
        raise ConfigError("\n".join(problems))
    return spec
