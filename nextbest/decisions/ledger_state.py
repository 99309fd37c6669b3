"""State from the event ledger at decision time: what a customer's events change in the
online feature values.

The online features are a snapshot built from the source exports (consent, cases,
contacts, baskets) up to the snapshot time; the ledger holds the events sent to the
service. :func:`derive` combines the two for one customer at decision time ``now``,
by event time, so arrival order does not matter:

- consent per purpose x channel: the ledger's newest event for the cell (dated at or
  before ``now``; for a purpose the catalog consents to once for all channels, the newest
  on any channel, for every channel's cell, :meth:`CatalogTerms.consent_columns`)
  replaces the snapshot's value when it is newer than every consent record the snapshot
  holds for this customer (``customer_consent_as_of_ts``). An older event that
  the last feature build has not read yet (a late arrival) applies only when it withdraws:
  until the next build merges it in event time, the safe reading wins. Events the build
  has read are in the snapshot already.
- cases: a case (``case_id``; events without one share the customer's default case) is open
  when its newest open is after its newest close. Cases opened in the ledger add to the
  snapshot's ``open_cases``; a ledger close of a case the ledger never saw opened closes
  one of the snapshot's, when it is newer than the snapshot's service data.
- behaviour events (the catalog's): their windowed features, merged with the export's
  history at the snapshot's cut (nextbest.decisions.behaviour); windows that start after
  the cut are re-counted from the ledger alone, for every row (:func:`apply_ledger`).
- windowed counts (contacts per channel over 7 and 30 days and in total over 7, complaints
  over 90, purchases and spend over 7/30/90/365) add the ledger's events inside the window
  ending at ``now``, so they age out; "last time" features take the newest event.
  Contacts reporting the same ``decision_id`` count once.

The snapshot's own counts end at the snapshot time (they are not re-windowed), and the
ledger and the exports are assumed to hold different facts: an event both sent to
``/events`` and present in an export counts twice (see docs/events.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nextbest.customers.feature_schema import (
    WINDOWS,
    CatalogTerms,
    days_since,
    request_time_features_of,
)
from nextbest.decisions.behaviour import age_snapshot, behaviour_features
from nextbest.decisions.ledger import Ledger, LedgerEvent

DAY = 86_400.0


def _value(snapshot: Mapping[str, float], name: str) -> float:
    v = snapshot.get(name)
    return 0.0 if v is None or math.isnan(v) else float(v)


def _in_window(t: float, now: float, days: int) -> bool:
    return now - days * DAY <= t <= now


def derive(
    events: Sequence[LedgerEvent],
    now: float,
    snapshot: Mapping[str, float],
    watermark: int = 0,
    terms: CatalogTerms | None = None,
) -> dict[str, float]:
    """The feature values ``events`` change for one customer at decision time ``now``
    (epoch seconds), given the snapshot's values (missing or NaN: 0) and the position of
    the last event the feature build read. Pure: the same inputs give the same output.
    ``terms`` (the catalog's) says which purposes are consented to once for all channels;
    without it every purpose is per channel.

    Request-time features (``days_since_*``) of every changed timestamp are included.
    """
    past = sorted((e for e in events if e.event_time <= now), key=lambda e: (e.event_time, e.seq))
    out: dict[str, float] = {}
    if not past:
        return out

    def add(name: str, x: float) -> None:
        out[name] = out.get(name, _value(snapshot, name)) + x

    def latest(name: str, t: float) -> None:
        if t > out.get(name, _value(snapshot, name)):
            out[name] = t

    scoped = terms.all_channel_purposes if terms is not None else ()
    consent: dict[tuple[str, str], LedgerEvent] = {}
    cases: dict[str, dict[str, float]] = {}
    delivered: set[str] = set()
    for e in past:  # oldest first: a later event of the same cell or case replaces
        p, t = e.payload, e.event_time
        if e.type == "consent_changed":
            # The cell the event decides: its channel, or every channel ("*").
            consent[(p["purpose"], "*" if p["purpose"] in scoped else p["channel"])] = e
        elif e.type in ("service_case_opened", "service_case_closed"):
            kind = "open" if e.type == "service_case_opened" else "close"
            cases.setdefault(p.get("case_id", ""), {})[kind] = t
        elif e.type == "complaint":
            if _in_window(t, now, 90):
                add("complaints_90d", 1)
            latest("last_complaint_ts", t)
        elif e.type == "contact":
            decision = p.get("decision_id")
            if decision is not None:
                if decision in delivered:
                    continue
                delivered.add(decision)
            ch = p["channel"]
            for w in (7, 30):
                if _in_window(t, now, w):
                    add(f"contacts_{ch}_{w}d", 1)
            if _in_window(t, now, 7):
                add("contacts_total_7d", 1)
            if p.get("action_id") is not None:
                latest(f"last_shown_ts_{p['action_id']}", t)
        elif e.type == "purchase":
            amount = p.get("amount", 0.0)
            for w in WINDOWS:
                if _in_window(t, now, w):
                    add(f"txn_count_{w}d", 1)
                    add(f"txn_amount_{w}d", amount)
            if p.get("category") is not None and _in_window(t, now, 365):
                add(f"spend_365d_{p['category']}", amount)
            latest("last_purchase_ts", t)
            if p.get("product_id") is not None:
                out[f"holds_{p['product_id']}"] = 1.0

    consent_as_of = _value(snapshot, "customer_consent_as_of_ts")
    for (purpose, _), e in consent.items():
        newer = e.event_time > consent_as_of
        late_withdrawal = e.seq > watermark and not e.payload["granted"]
        if newer or late_withdrawal:
            channel = e.payload["channel"]
            names = (
                terms.consent_columns(purpose, channel)
                if terms is not None
                else (f"consent_{purpose}_{channel}",)
            )
            for name in names:
                out[name] = float(e.payload["granted"])

    if cases:
        service_as_of = _value(snapshot, "customer_service_as_of_ts")
        opened = closed_elsewhere = 0
        for times in cases.values():
            if "open" in times:
                opened += times["open"] > times.get("close", -math.inf)
            elif times["close"] > service_as_of:
                closed_elsewhere += 1
        if opened or closed_elsewhere:
            out["open_cases"] = max(_value(snapshot, "open_cases") + opened - closed_elsewhere, 0)

    if terms is not None and terms.behaviour:
        out.update(behaviour_features(past, now, terms, snapshot))

    for derived, source in request_time_features_of(list(out)).items():
        out[derived] = float(days_since(out[source], now))
    return out


def apply_overrides(
    X: np.ndarray,
    names: Sequence[str],
    customer_ids: Sequence[str | None],
    events: Mapping[str, Sequence[LedgerEvent]],
    now: float,
    watermark: int = 0,
    index: Mapping[str, int] | None = None,
    terms: CatalogTerms | None = None,
) -> int:
    """Write the ledger's state into the feature matrix ``X`` (rows = ``customer_ids``,
    columns = ``names``) in place; returns how many rows changed. Rows of customers with
    no events are not touched. ``terms`` as in :func:`derive`."""
    index = index or {n: j for j, n in enumerate(names)}
    changed = 0
    for i, cid in enumerate(customer_ids):
        evs = events.get(cid) if cid else None
        if not evs:
            continue
        row = X[i]
        snapshot = _Row(row, index)
        for name, v in derive(evs, now, snapshot, watermark, terms).items():
            j = index.get(name)
            if j is not None:
                row[j] = v
        changed += 1
    return changed


def apply_ledger(
    X: np.ndarray,
    names: Sequence[str],
    customer_ids: Sequence[str | None],
    ledger: Ledger,
    now: float,
    *,
    events: Mapping[str, Sequence[LedgerEvent]] | None = None,
    upto_seq: int | None = None,
    watermark: int | None = None,
    index: Mapping[str, int] | None = None,
    terms: CatalogTerms | None = None,
) -> int:
    """The ledger's state at ``now`` written over the feature matrix ``X`` (rows =
    ``customer_ids``, columns = ``names``) in place, as every decision path applies it:
    the online service per request, batch scoring per chunk and partition. Returns how
    many rows changed.

    The customers' events are read with one indexed query (:meth:`Ledger.events_for`, up
    to position ``upto_seq``) unless ``events`` holds them already; ``watermark`` is the
    position the last feature build read (read from the ledger when None); ``terms`` (the
    catalog's) as in :func:`derive`.
    """
    if terms is not None and terms.behaviour:
        age_snapshot(X, index or {n: j for j, n in enumerate(names)}, now, terms)
    if events is None:
        events = ledger.events_for([c for c in customer_ids if c], upto_seq=upto_seq)
    if not events:
        return 0
    if watermark is None:
        watermark = ledger.build_watermark()
    return apply_overrides(X, names, customer_ids, events, now, watermark, index, terms)


class _Row(Mapping[str, float]):
    """A feature row read by name without copying it into a dict."""

    def __init__(self, row: np.ndarray, index: Mapping[str, int]) -> None:
        self._row, self._index = row, index

    def __getitem__(self, name: str) -> float:
        return float(self._row[self._index[name]])

    def get(self, name: str, default: Any = None) -> Any:
        j = self._index.get(name)
        return default if j is None else float(self._row[j])

    def __iter__(self) -> Any:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)
