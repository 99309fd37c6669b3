"""Customer events to updated feature rows, pushed to Feast so the next decision sees them.

What each event type does is one table, :data:`EVENT_RULES`: the pushable feature views
it updates, in order, and per view the columns it changes and how. Column names are
patterns resolved against the feature schema (:func:`customers.feature_schema.view_specs`)
once, when the :class:`EventHandler` is built: ``{field}`` is a payload field's value and
``*`` every window the schema has (``txn_count_*d`` is ``txn_count_7d``, ...,
``txn_count_365d``). A rule naming a view that is not pushable, or a column the schema does
not have, fails at start-up.
"""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import product
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.vocabulary import CHANNELS, PURPOSES
from customers.feature_schema import ViewSpec
from serving.requests import EVENT_TYPES, CustomerRef, RequestError, request_time

#: How a change sets its columns: ``count`` adds one, ``uncount`` takes one away (not
#: below zero), ``amount`` adds the payload's amount, ``time`` sets the event time (epoch
#: seconds), ``granted`` sets the payload's consent flag (0/1), ``one`` sets 1.
How = Literal["count", "uncount", "amount", "time", "granted", "one"]


@dataclass(frozen=True)
class Field:
    """A payload field that names columns (the ``{name}`` of a pattern).

    A required field must be one of ``values`` (else a 400 naming them). An optional one
    may be missing (the changes naming it are skipped); a value that names no column is a
    400 saying ``unknown <noun>``, or is ignored when ``noun`` is None.
    """

    name: str
    values: tuple[str, ...] = ()
    required: bool = True
    noun: str | None = None


@dataclass(frozen=True)
class Change:
    """Columns of a view's row an event changes, and how."""

    pattern: str
    how: How


@dataclass(frozen=True)
class ViewRule:
    """What an event does to one pushable view: its changes, in order."""

    view: str
    changes: tuple[Change, ...]


FIELDS: dict[str, Field] = {
    "channel": Field("channel", CHANNELS),
    "purpose": Field("purpose", PURPOSES),
    "action_id": Field("action_id", required=False, noun="action"),
    "category": Field("category", required=False),
    "product_id": Field("product_id", required=False, noun="product"),
}

#: Event type -> the views it updates, in order (a view whose changes all name a missing
#: optional field is neither read nor pushed).
EVENT_RULES: dict[str, tuple[ViewRule, ...]] = {
    "service_case_opened": (ViewRule("customer_service", (Change("open_cases", "count"),)),),
    "service_case_closed": (ViewRule("customer_service", (Change("open_cases", "uncount"),)),),
    "complaint": (
        ViewRule(
            "customer_service",
            (Change("complaints_90d", "count"), Change("last_complaint_ts", "time")),
        ),
    ),
    "consent_changed": (
        ViewRule("customer_consent", (Change("consent_{purpose}_{channel}", "granted"),)),
    ),
    "contact": (
        ViewRule(
            "customer_contacts",
            (
                Change("contacts_{channel}_*d", "count"),
                Change("contacts_total_7d", "count"),
                Change("last_shown_ts_{action_id}", "time"),
            ),
        ),
    ),
    "purchase": (
        ViewRule(
            "customer_transactions",
            (
                Change("txn_count_*d", "count"),
                Change("txn_amount_*d", "amount"),
                Change("last_purchase_ts", "time"),
                Change("spend_365d_{category}", "amount"),
            ),
        ),
        ViewRule("customer_holdings", (Change("holds_{product_id}", "one"),)),
    ),
}


def _fields(pattern: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(pattern) if name]


def _columns(pattern: str, names: list[str]) -> tuple[str, ...]:
    """The view columns a pattern with its fields filled in names (``*`` = digits)."""
    rx = re.compile(
        "".join(r"\d+" if p == "*" else re.escape(p) for p in re.split(r"(\*)", pattern))
    )
    return tuple(n for n in names if rx.fullmatch(n))


@dataclass(frozen=True)
class _ResolvedChange:
    change: Change
    fields: tuple[Field, ...]
    #: The filled-in pattern -> its columns, for every value the schema has columns for.
    columns: Mapping[str, tuple[str, ...]]


def _resolve(change: Change, spec: ViewSpec) -> _ResolvedChange:
    """Every filled-in pattern of ``change`` and its columns in ``spec``; a required field's
    value without a column is a schema mismatch, raised at start-up."""
    names = [f.name for f in spec.features]
    fields = tuple(FIELDS[n] for n in _fields(change.pattern))
    columns: dict[str, tuple[str, ...]] = {}
    required = [f for f in fields if f.required]
    optional = [f for f in fields if not f.required]
    for values in product(*(f.values for f in required)):
        known = dict(zip((f.name for f in required), values, strict=True))
        if not optional:
            filled = change.pattern.format(**known)
            columns[filled] = _columns(filled, names)
            if not columns[filled]:
                raise ValueError(f"{spec.name} has no column {filled!r}")
            continue
        # An optional field's values are those the schema has a column for.
        wild = {f.name: "\0" for f in optional}
        parts = change.pattern.format(**known, **wild).split("\0")
        rx = re.compile("(.+)".join(re.escape(p) for p in parts))
        columns.update({n: (n,) for n in names if rx.fullmatch(n)})
    return _ResolvedChange(change, fields, columns)


def event_table(
    specs: tuple[ViewSpec, ...],
) -> dict[str, tuple[tuple[ViewSpec, tuple[_ResolvedChange, ...]], ...]]:
    """:data:`EVENT_RULES` resolved against the feature schema (views must be pushable)."""
    by_name = {v.name: v for v in specs}
    table = {}
    for event_type in EVENT_TYPES:
        steps = []
        for rule in EVENT_RULES[event_type]:
            spec = by_name[rule.view]
            if not spec.pushable:
                raise ValueError(f"event {event_type!r} updates {rule.view}, which is not pushable")
            steps.append((spec, tuple(_resolve(c, spec) for c in rule.changes)))
        table[event_type] = tuple(steps)
    return table


def _check_required(fields: list[Field], payload: Mapping[str, Any]) -> None:
    for f in fields:
        if payload.get(f.name) not in f.values:
            raise RequestError(
                f"payload.{f.name}: {payload.get(f.name)!r} is not one of {f.values}"
            )


class EventHandler:
    """Events for the online service: read the current rows, change them, push them."""

    def __init__(
        self,
        store: Any,
        resolve: Callable[[CustomerRef], str | None],
        specs: tuple[ViewSpec, ...],
        push_offline: bool = False,
    ) -> None:
        self.store = store
        self.resolve = resolve
        self.push_offline = push_offline
        self.table = event_table(specs)
        # Events read, modify and push whole feature rows: one at a time, or two concurrent
        # events for one customer could lose an update.
        self._lock = threading.Lock()

    def apply(
        self,
        customer: CustomerRef,
        event_type: str,
        timestamp: datetime | str | float | None,
        payload: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Turn an event into updated feature rows and push them online (and offline)."""
        with self._lock:
            return self._apply(customer, event_type, timestamp, payload)

    def _apply(
        self,
        customer: CustomerRef,
        event_type: str,
        timestamp: datetime | str | float | None,
        payload: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if event_type not in EVENT_TYPES:
            raise RequestError(f"type: {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
        payload = dict(payload or {})
        steps = self.table[event_type]
        cid = self.resolve(customer)
        if cid is None:
            raise RequestError("customer: identifier does not resolve to a known customer")
        ts = request_time(timestamp)
        changes = [c for _, view_changes in steps for c in view_changes]
        fields = {f.name: f for c in changes for f in c.fields}
        _check_required([f for f in fields.values() if f.required], payload)
        hows = {c.change.how for c in changes}
        if "granted" in hows and not isinstance(payload.get("granted"), bool):
            raise RequestError("payload.granted: must be true or false")
        amount = 0.0
        if "amount" in hows:
            amount = float(payload.get("amount", 0.0))
            if amount < 0:
                raise RequestError("payload.amount: must be >= 0")
        values = {"time": ts.timestamp(), "amount": amount, "granted": payload.get("granted")}
        updated: list[str] = []
        for spec, changes in steps:
            todo = self._columns(changes, payload)
            if not todo:
                continue
            row = self._current_row(spec, cid)
            for how, columns in todo:
                for col in columns:
                    row[col] = _changed(how, row.get(col), values)
            self._push(spec, cid, row, ts)
            updated.append(spec.name)
        return {
            "customer_id": cid,
            "type": event_type,
            "updated_views": updated,
            "timestamp": ts.isoformat(),
        }

    @staticmethod
    def _columns(
        changes: tuple[_ResolvedChange, ...], payload: Mapping[str, Any]
    ) -> list[tuple[How, tuple[str, ...]]]:
        """The columns each change sets for this payload (400 for an unknown optional value)."""
        out: list[tuple[How, tuple[str, ...]]] = []
        for c in changes:
            optional = [f for f in c.fields if not f.required]
            if any(payload.get(f.name) is None for f in optional):
                continue
            filled = c.change.pattern.format(**{f.name: payload[f.name] for f in c.fields})
            columns = c.columns.get(filled)
            if columns is None:
                nouns = [f for f in optional if f.noun]
                if not nouns:
                    continue
                f = nouns[0]
                raise RequestError(f"payload.{f.name}: unknown {f.noun} {payload[f.name]!r}")
            out.append((c.change.how, columns))
        return out

    def _current_row(self, spec: ViewSpec, customer_id: str) -> dict[str, Any]:
        names = spec.feature_names
        resp = self.store.get_online_features(
            features=[f"{spec.name}:{n}" for n in names],
            entity_rows=[{"customer_id": customer_id}],
        ).to_dict()
        return {n: (resp.get(n) or [None])[0] for n in names}

    def _push(self, spec: ViewSpec, customer_id: str, row: dict[str, Any], ts: datetime) -> None:
        from customers.feast_store import push_rows

        row[spec.as_of_feature.name] = ts.timestamp()
        data = {"customer_id": [customer_id], "event_timestamp": [pd.Timestamp(ts)]}
        for f in spec.all_features:
            v = row.get(f.name)
            v = 0 if v is None or (isinstance(v, float) and np.isnan(v)) else v
            data[f.name] = [int(v) if f.kind == "int" else float(v)]
        df = pd.DataFrame(data)
        df["event_timestamp"] = df["event_timestamp"].astype("datetime64[us, UTC]")
        push_rows(self.store, spec.name, df, offline=self.push_offline)


def _changed(how: How, old: Any, values: Mapping[str, Any]) -> Any:
    """A column's new value (a missing or zero old value counts as 0)."""
    if how == "count":
        return (old or 0) + 1
    if how == "uncount":
        return max((old or 0) - 1, 0)
    if how == "amount":
        return (old or 0) + values["amount"]
    if how == "time":
        return values["time"]
    if how == "granted":
        return int(values["granted"])
    return 1
