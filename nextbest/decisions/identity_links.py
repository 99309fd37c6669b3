"""Identify links: identifiers attached to a known customer while the service runs.

An ``identify`` event (``POST /events``) says that a customer also has an identifier, as
when a customer logs into the app with a new e-mail address. Its value is normalised and
hashed into the identity lookup's key (:func:`identify_payload`, with
:func:`nextbest.customers.normalise.identifier_key` and the ``identifier_salt`` setting) before the
event is validated, so the ledger holds the key, never the raw value. Appending the event
(:meth:`IdentityLinks.append`) records its outcome in the ledger's ``identity_links``
table in the event's own transaction:

- ``linked``: nobody had the identifier; from now on it resolves to the customer;
- ``known``: it already resolves to this customer (identity lookup or an earlier link);
- ``review``: it resolves to another customer. It is not linked (a merge of two customers
  is a human decision); the entry waits in :meth:`IdentityLinks.reviews`
  (``nextbest identity review``).

Identifiers resolve in one order (:func:`resolve_key`): the identity lookup of the last
features build first, then the identify links. A link is one indexed read, made only for
identifiers the lookup does not know. Every read of the customer a stored link or review
names goes through :meth:`IdentityLinks._linked_customer`, which follows the id map
(:mod:`nextbest.customers.id_map`): a link made under an id a merge has retired reaches the
customer the person is now.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from nextbest.customers.normalise import identifier_key
from nextbest.decisions.ledger import (
    IDENTIFY_EVENT,
    LINKABLE_ID_TYPES,
    Appended,
    EventError,
    Ledger,
    LedgerEvent,
)

__all__ = [
    "IDENTIFY_EVENT",
    "LINKABLE_ID_TYPES",
    "IdentityLinks",
    "LinkOutcome",
    "identify_payload",
    "mask_key",
    "resolve_key",
]

#: The payload fields a caller sends with an identify event.
CALLER_FIELDS = frozenset({"id_type", "id_value"})
#: The longest identifier value accepted (as for a request's customer identifier).
MAX_VALUE_LENGTH = 256
#: Hex digits of the key shown where an identifier is listed (history, review).
_SHOWN = 8
#: Where a review entry's owner was found.
IDENTITY_LOOKUP = "identity_lookup"
ERASED = "erased"


def identify_payload(payload: Any, salt: str) -> dict[str, str]:
    """The stored payload of an identify event sent as ``{"id_type", "id_value"}``:
    ``{"id_type", "id_key"}``, the value normalised and hashed as the identity lookup's
    keys are. Anything wrong raises :class:`EventError` naming the field (never quoting
    the value)."""
    if not isinstance(payload, Mapping):
        raise EventError("payload", "must be an object")
    unknown = sorted(set(payload) - CALLER_FIELDS)
    if unknown:
        fields = ", ".join(sorted(CALLER_FIELDS))
        raise EventError(f"payload.{unknown[0]}", f"not a field of {IDENTIFY_EVENT} ({fields})")
    id_type = payload.get("id_type")
    if not isinstance(id_type, str) or id_type not in LINKABLE_ID_TYPES:
        raise EventError("payload.id_type", f"must be one of {', '.join(LINKABLE_ID_TYPES)}")
    value = payload.get("id_value")
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_VALUE_LENGTH:
        raise EventError("payload.id_value", f"must be text of 1-{MAX_VALUE_LENGTH} characters")
    try:
        key = identifier_key(id_type, value, salt)
    except ValueError:
        raise EventError("payload.id_value", f"is not a valid {id_type}") from None
    return {"id_type": id_type, "id_key": key}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def mask_key(key: str) -> str:
    """An identifier key as listed: its type and the first hex digits of its hash."""
    id_type, _, digest = key.partition(":")
    return f"{id_type}:{digest[:_SHOWN]}…"


def resolve_key(
    key: str, lookup: Callable[[str], str | None], linked: Callable[[str], str | None]
) -> str | None:
    """The customer an identifier key belongs to: the identity lookup's (``lookup``: the
    last features build), else the identify link's (``linked``:
    :meth:`IdentityLinks.customer_of`); a customer id is never linked, so it is looked
    up only. None: nobody has it."""
    cid = lookup(key)
    if cid is None and not key.startswith("customer_id:"):
        cid = linked(key)
    return cid


@dataclass(frozen=True)
class LinkOutcome:
    """What an identify event did: ``linked``, ``known`` or ``review`` (with the customer
    the identifier belongs to and where that was found)."""

    status: str
    owner_id: str | None = None
    owner_source: str | None = None

    def answer(self) -> dict[str, str]:
        """The fields an ``/events`` answer adds (the owner is not told to the caller)."""
        out = {"status": self.status}
        if self.status == "review":
            out["reason"] = (
                "the identifier belongs to another customer: not linked, recorded for "
                "review (nextbest identity review)"
            )
        elif self.status == "known":
            out["reason"] = "the identifier already belongs to this customer"
        return out


class IdentityLinks:
    """The identify links kept in the ledger file, and their review entries."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _linked_customer(self, stored_id: str) -> str:
        """The customer a stored link or review entry points to now: the id map of the
        ledger's home, followed through merges (a split leaves the link with the side that
        kept the id). Every read of a stored customer id here goes through this."""
        id_map = self.ledger.ids.get()
        return id_map.current(stored_id) if id_map else stored_id

    def customer_of(self, key: str) -> str | None:
        """The customer an identify link attaches ``key`` to (one indexed read), or None."""
        row = (
            self.ledger.connection()
            .execute(
                "SELECT customer_id FROM identity_links WHERE identifier = ? AND status = 'linked'",
                (key,),
            )
            .fetchone()
        )
        return None if row is None else self._linked_customer(row[0])

    def append(self, event: LedgerEvent, lookup_owner: str | None) -> tuple[Appended, LinkOutcome]:
        """Append a validated identify event and record its outcome in the same
        transaction (a repeat of the event answers its first outcome).

        ``lookup_owner``: the customer the identity lookup gives the event's identifier
        (None: unknown to it); earlier links are read inside the transaction, so of two
        concurrent events naming one identifier for different customers one is linked
        and the other reviewed.
        """
        if event.type != IDENTIFY_EVENT:
            raise ValueError(f"not an {IDENTIFY_EVENT} event: {event.type}")

        def record(conn: sqlite3.Connection, stored: LedgerEvent) -> None:
            outcome = self._decide(conn, stored, lookup_owner)
            conn.execute(
                "INSERT INTO identity_links (event_id, identifier, customer_id, status,"
                " owner_id, owner_source) VALUES (?,?,?,?,?,?)",
                (
                    stored.event_id,
                    stored.payload["id_key"],
                    stored.customer_id,
                    outcome.status,
                    outcome.owner_id,
                    outcome.owner_source,
                ),
            )

        appended = self.ledger.append(event, within=record)
        return appended, self.outcome(appended.event.event_id)

    def _decide(
        self, conn: sqlite3.Connection, event: LedgerEvent, lookup_owner: str | None
    ) -> LinkOutcome:
        """The outcome of ``event``, in :func:`resolve_key`'s order: lookup, then links."""
        cid = event.customer_id
        if lookup_owner is not None:
            if lookup_owner == cid:
                return LinkOutcome("known")
            return LinkOutcome("review", lookup_owner, IDENTITY_LOOKUP)
        row = conn.execute(
            "SELECT customer_id, event_id FROM identity_links"
            " WHERE identifier = ? AND status = 'linked'",
            (event.payload["id_key"],),
        ).fetchone()
        if row is None:
            return LinkOutcome("linked")
        owner = self._linked_customer(row[0])
        if owner == cid:
            return LinkOutcome("known")
        return LinkOutcome("review", owner, f"{IDENTIFY_EVENT}:{row[1]}")

    def outcome(self, event_id: str) -> LinkOutcome:
        """The recorded outcome of a stored identify event."""
        row = (
            self.ledger.connection()
            .execute(
                "SELECT status, owner_id, owner_source FROM identity_links WHERE event_id = ?",
                (event_id,),
            )
            .fetchone()
        )
        if row is None:
            raise KeyError(event_id)
        owner = None if row[1] is None else self._linked_customer(row[1])
        return LinkOutcome(row[0], owner, row[2])

    def history(self, customer_id: str) -> list[dict[str, Any]]:
        """A customer's identify events, oldest first by event time, each with its
        outcome; identifiers masked (:func:`mask_key`)."""
        events = self.ledger.events_for([customer_id], types=(IDENTIFY_EVENT,))
        found = sorted(events.get(customer_id, []), key=lambda e: (e.event_time, e.seq))
        if not found:
            return []
        ids = orjson.dumps([e.event_id for e in found]).decode()
        rows = self.ledger.connection().execute(
            "SELECT event_id, status FROM identity_links"
            " WHERE event_id IN (SELECT value FROM json_each(?))",
            (ids,),
        )
        status = dict(rows.fetchall())
        out = []
        for e in found:
            out.append(
                {
                    "event_id": e.event_id,
                    "event_time": _iso(e.event_time),
                    "received_time": _iso(e.received_time),
                    "id_type": e.payload["id_type"],
                    "identifier": mask_key(e.payload["id_key"]),
                    "status": status.get(e.event_id),
                    "source": e.source,
                    "actor": e.actor,
                }
            )
        return out

    def reviews(self) -> list[dict[str, Any]]:
        """Every identify event recorded for review, in ledger order: who claimed the
        identifier (masked), whom it belongs to and where that was found."""
        rows = self.ledger.connection().execute(
            "SELECT l.event_id, l.identifier, l.customer_id, l.owner_id, l.owner_source,"
            " e.event_time, e.received_time, e.source, e.actor"
            " FROM identity_links AS l JOIN events AS e ON e.event_id = l.event_id"
            " WHERE l.status = 'review' ORDER BY e.seq"
        )
        out = []
        for eid, key, cid, owner, where, t, rt, source, actor in rows.fetchall():
            out.append(
                {
                    "event_id": eid,
                    "event_time": _iso(t),
                    "received_time": _iso(rt),
                    "id_type": key.partition(":")[0],
                    "identifier": mask_key(key),
                    "customer_id": self._linked_customer(cid),
                    "owner_id": None if owner is None else self._linked_customer(owner),
                    "owner_source": where,
                    "source": source,
                    "actor": actor,
                }
            )
        return out
