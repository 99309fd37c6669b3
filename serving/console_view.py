"""What the agent console shows, built from the decider's own functions: the search by
any identifier, the unified record, the consent matrix and the service-mode decision.

Nothing here decides or applies a rule itself: a search resolves through
:meth:`serving.decider.OnlineDecider.resolve` (the product's normalisation and lookup),
the record's facts are the decision's own feature row (online features with the ledger's
state applied), the decision is :meth:`OnlineDecider.decide_and_log` in service mode
(logged like every decision), and outcomes are ledger events. Personal values are never
shown unmasked: the console shows ids, masked labels and facts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nextbest.core.vocabulary import ID_TYPES
from nextbest.customers.feature_schema import NEVER_DAYS
from nextbest.customers.identifier_index import IdentifierIndex
from nextbest.customers.normalise import identifier_key
from nextbest.decisions.ledger import consent_history
from serving.decider import OnlineDecider
from serving.requests import CustomerRef, RequestError
from serving.responses import response_from_record

#: The id types the search tries, in order, when the agent does not say which one it is.
AUTO_ORDER: tuple[str, ...] = (
    "customer_id",
    "crm_id",
    "loyalty_id",
    "app_account_id",
    "device_id",
    "phone",
)
_EMAILISH = re.compile(r"@")
_PHONEISH = re.compile(r"^[+()\d][\d\s().-]{5,}$")
#: Ledger events listed as recent behaviour, contacts and deliveries.
RECENT_EVENTS = 12


@dataclass
class SearchResult:
    """What a search found: one customer, several (masked candidates), or nobody."""

    customer_id: str | None = None
    candidates: list[tuple[str, str]] = field(default_factory=list)
    message: str = ""


def _types_to_try(id_type: str, value: str) -> Sequence[str]:
    if id_type != "auto":
        return (id_type,)
    if _EMAILISH.search(value):
        return ("email",)
    if _PHONEISH.match(value):
        return ("phone", *[t for t in AUTO_ORDER if t != "phone"])
    return AUTO_ORDER


def search(
    decider: OnlineDecider,
    index: Callable[[], IdentifierIndex | None],
    id_type: str,
    value: str,
) -> SearchResult:
    """Find the customer of an identifier (``id_type`` ``auto``: the types it may be).

    One customer: found. An identifier several customers hold (a shared household
    phone, which the lookup resolves to nobody) or a value that is one customer's crm id
    and another's loyalty id: their masked candidates. Nobody: a message saying so.
    """
    value = value.strip()
    if id_type != "auto" and id_type not in ID_TYPES:
        return SearchResult(message=f"Unknown identifier type {id_type!r}.")
    if not value:
        return SearchResult(message="Enter an identifier to search for.")
    found: dict[str, None] = {}
    shared: dict[str, None] = {}
    valid = False
    for kind in _types_to_try(id_type, value):
        try:
            key = identifier_key(kind, value, decider.settings.identifier_salt)
        except ValueError:
            continue
        valid = True
        try:
            cid = decider.resolve(CustomerRef(value, kind))
        except RequestError:
            continue
        if cid is not None:
            found[cid] = None
            continue
        idx = index()
        for other in idx.customers_of(key) if idx is not None else ():
            shared[other] = None
    if len(found) == 1 and not shared:
        return SearchResult(customer_id=next(iter(found)))
    candidates = list({**found, **shared})
    if candidates:
        idx = index()
        labels = idx.labels if idx is not None else {}
        return SearchResult(
            candidates=[(c, labels.get(c, "(masked)")) for c in candidates],
            message=f"This identifier belongs to {len(candidates)} customers: choose one.",
        )
    kind = "identifier" if id_type == "auto" else id_type.replace("_", " ")
    if not valid:
        return SearchResult(message=f"That is not a valid {kind}: nothing was searched.")
    return SearchResult(message=f"No customer has this {kind}.")


def _fact(row: dict[str, float], name: str) -> float | None:
    value = row.get(name)
    return None if value is None or math.isnan(value) else value


def _days(value: float | None) -> str:
    if value is None:
        return "none on record"
    return f"{value:.0f} days ago" if value < NEVER_DAYS else "none on record"


def record_view(
    decider: OnlineDecider, index: IdentifierIndex | None, customer_id: str, now: datetime
) -> dict[str, Any]:
    """The unified record of one customer, as of ``now``: profile facts, holdings,
    behaviour, service, contacts, the consent matrix and recent ledger events."""
    names = decider.names
    X = decider.features([customer_id], now)
    row = dict(zip(names, X[0].tolist(), strict=True))
    terms = decider.terms
    products = {p.id: p.name for p in decider.runtime.catalog.products}
    holdings = [products.get(p, p) for p in terms.products if (_fact(row, f"holds_{p}") or 0) > 0.5]
    behaviour = [
        (c, _fact(row, f"views_30d_{c}") or 0.0, _fact(row, f"spend_365d_{c}") or 0.0)
        for c in terms.categories
    ]
    contacts = [
        (c, _fact(row, f"contacts_{c}_7d"), _fact(row, f"contacts_{c}_30d")) for c in terms.channels
    ]
    shown = [
        (a.name, _days(_fact(row, f"days_since_shown_{a.id}")))
        for a in decider.runtime.catalog.actions
        if (_fact(row, f"days_since_shown_{a.id}") or 1e9) < NEVER_DAYS
    ]
    household = _household(decider, customer_id)
    return {
        "customer_id": customer_id,
        "label": index.labels.get(customer_id, "") if index else "",
        "systems": list(index.systems.get(customer_id, ())) if index else [],
        "household": household,
        "value_tier": _fact(row, "value_tier"),
        "tenure_days": _fact(row, "tenure_days"),
        "holdings": holdings,
        "behaviour": behaviour,
        "txn_count_90d": _fact(row, "txn_count_90d"),
        "txn_amount_90d": _fact(row, "txn_amount_90d"),
        "days_since_purchase": _days(_fact(row, "days_since_purchase")),
        "open_cases": int(_fact(row, "open_cases") or 0),
        "complaints_90d": int(_fact(row, "complaints_90d") or 0),
        "last_complaint": _days(_fact(row, "days_since_complaint")),
        "contacts": contacts,
        "shown": shown,
        "consent": consent_matrix(decider, index, customer_id, row),
        "events": recent_events(decider, customer_id),
        "ledger_open_cases": ledger_open_cases(decider, customer_id),
    }


def ledger_open_cases(decider: OnlineDecider, customer_id: str) -> list[str]:
    """Ids of the cases opened through the ledger and not closed there, newest first (the
    case the console's "Case resolved" closes first; the export's cases have no id here)."""
    kinds = ("service_case_opened", "service_case_closed")
    events = decider._guarded(
        lambda: decider.ledger.events_for([customer_id], types=kinds), decider.ledger_down
    ).get(customer_id, [])
    state: dict[str, tuple[float, bool]] = {}
    for e in sorted(events, key=lambda e: (e.event_time, e.seq)):
        state[e.payload.get("case_id", "")] = (e.event_time, e.type == kinds[0])
    open_ids = [(t, case) for case, (t, is_open) in state.items() if is_open and case]
    return [case for _, case in sorted(open_ids, reverse=True)]


def _household(decider: OnlineDecider, customer_id: str) -> dict[str, Any] | None:
    """The customer's household id and size from the identity output (None if none)."""
    path = decider.settings.unified_dir / "households.parquet"
    if not path.exists():
        return None
    table = pq.read_table(path, filters=[("customer_id", "=", customer_id)])
    if table.num_rows == 0:
        return None
    household = table.column("household_id")[0].as_py()
    members = pq.read_table(path, columns=["customer_id", "household_id"])
    mask = pc.equal(members.column("household_id"), household)
    others = [c for c in members.filter(mask).column("customer_id").to_pylist() if c != customer_id]
    return {"id": household, "size": 1 + len(others), "members": others[:8]}


def consent_matrix(
    decider: OnlineDecider, index: IdentifierIndex | None, customer_id: str, row: dict
) -> dict[str, Any]:
    """Purpose x channel: whether consent holds now (the decision's own feature: no record
    is no consent), and the latest entry behind it with its date, source and actor
    (the ledger's changes over the consent export's)."""
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for e in index.consent.get(customer_id, []) if index else []:
        entries[(e["purpose"], e["channel"])] = e  # the export is in time order
    history = decider._guarded(
        lambda: consent_history(decider.ledger, customer_id), decider.ledger_down
    )
    for e in history:
        entries[(e["purpose"], e["channel"])] = {
            "granted": e["granted"],
            "time": e["event_time"],
            "source": e["source"],
            "actor": e["actor"],
        }
    terms = decider.terms
    cells = {}
    for p in terms.purposes:
        for c in terms.channels:
            value = row.get(f"consent_{p}_{c}", np.nan)
            state = "none" if math.isnan(value) else ("yes" if value > 0.5 else "no")
            cells[(p, c)] = {"state": state, "entry": entries.get((p, c))}
    return {"purposes": list(terms.purposes), "channels": list(terms.channels), "cells": cells}


def recent_events(decider: OnlineDecider, customer_id: str) -> list[dict[str, Any]]:
    """The customer's latest ledger events (cases, complaints, purchases, consent,
    contacts and deliveries), newest first, without identifier values."""
    events = decider.ledger_events([customer_id]).get(customer_id, [])
    events = sorted(events, key=lambda e: (e.event_time, e.seq), reverse=True)[:RECENT_EVENTS]
    out = []
    for e in events:
        shown = {k: v for k, v in e.payload.items() if k in _SHOWN_PAYLOAD}
        out.append(
            {
                "time": datetime.fromtimestamp(e.event_time, UTC).strftime("%Y-%m-%d %H:%M"),
                "type": e.type,
                "detail": ", ".join(f"{k} {v}" for k, v in sorted(shown.items())),
                "source": e.source,
                "actor": e.actor,
            }
        )
    return out


#: Payload fields the console lists (never an identifier's key).
_SHOWN_PAYLOAD = frozenset(
    {
        "case_id",
        "amount",
        "category",
        "product_id",
        "purpose",
        "channel",
        "granted",
        "action_id",
        "outcome",
    }
)


def decision_view(record: dict[str, Any], decider: OnlineDecider) -> dict[str, Any]:
    """The service-mode decision as the console shows it: ranked actions with their
    sentences, and every excluded action with its reason."""
    names = {a.id: a for a in decider.runtime.catalog.actions}

    answer = response_from_record(record)
    ranked = [
        {
            "action_id": a["action_id"],
            "name": names[a["action_id"]].name if a["action_id"] in names else a["action_id"],
            "kind": names[a["action_id"]].kind if a["action_id"] in names else "",
            "reasons": a["reasons"],
        }
        for a in answer["actions"]
    ]
    excluded = [
        {
            "action_id": e["action_id"],
            "name": names[e["action_id"]].name if e["action_id"] in names else e["action_id"],
            "code": e["reasons"][0]["code"],
            "text": e["reasons"][0]["text"],
        }
        for e in answer["excluded"]
    ]
    return {
        "decision_id": answer["decision_id"],
        "group": answer["group"],
        "mode": answer["mode"],
        "reason": answer["reason"],
        "ranked": ranked,
        "excluded": excluded,
    }
