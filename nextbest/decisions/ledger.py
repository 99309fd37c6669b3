"""The event ledger: every accepted customer event, durable, once, in event time.

An event (case opened or closed, complaint, purchase, consent change, contact, identify;
and the one product-level event, a stock change, stored under :data:`NO_CUSTOMER`) is checked
completely by :func:`validate_event` before anything is written, then appended by
:meth:`Ledger.append` to one SQLite file under the home (WAL, ``synchronous=FULL``: on
disk before the caller answers). The caller's ``event_id`` is the idempotency key: a
repeat with the same content is acknowledged and not stored again; the same id with
other content is a :class:`ConflictError`. Appends run in ``BEGIN IMMEDIATE``
transactions, so any number of threads and processes append without losing one.

Nothing is read-modified-written: state is derived from the events when a decision needs
it, by :func:`derive` in :mod:`nextbest.decisions.ledger_state`, by event time and relative to the
decision time, so arrival order does not matter and windowed counts age out.

The file also holds the outcome of each ``identify`` event (table ``identity_links``,
written in the event's own transaction; :mod:`nextbest.decisions.identity_links` reads and decides
it). An identify event stores the salted identifier key, never the raw value.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from nextbest.core.action_ids import normalise_action_id
from nextbest.core.vocabulary import EVENT_TYPES, ID_TYPES, PRODUCT_EVENT_TYPES
from nextbest.customers.feature_schema import CatalogTerms
from nextbest.customers.id_map import ALL, SAFETY, IdMapFile
from nextbest.decisions.decision_log import looks_like_email

#: Event types the ledger accepts, with the payload fields each may carry.
PAYLOAD_FIELDS: dict[str, frozenset[str]] = {
    "service_case_opened": frozenset({"case_id"}),
    "service_case_closed": frozenset({"case_id"}),
    "complaint": frozenset({"case_id"}),
    "purchase": frozenset({"amount", "category", "product_id"}),
    "consent_changed": frozenset({"purpose", "channel", "granted", "legal_basis"}),
    "contact": frozenset({"channel", "action_id", "decision_id", "outcome"}),
    "stock_changed": frozenset({"product_id", "units"}),
    # the salted key of nextbest.customers.normalise.identifier_key, never the raw value
    "identify": frozenset({"id_type", "id_key"}),
}
#: What the customer did with an offer made in a contact (the agent console records it);
#: every one is a contact: caps and cooldowns count it.
CONTACT_OUTCOMES: tuple[str, ...] = ("offered", "accepted", "declined", "not_now")

#: The payload fields a behaviour event (one the catalog declares) may carry.
BEHAVIOUR_FIELDS: frozenset[str] = frozenset({"product_id", "category"})
#: The product-level stock event: the units of one catalog product from its event time on.
STOCK_EVENT = "stock_changed"
#: Event types that apply to every side of a split id (with consent withdrawals).
SPLIT_SAFE_TYPES: frozenset[str] = frozenset(
    {"service_case_opened", "service_case_closed", "complaint"}
)
#: The ``customer_id`` stored with product-level events (they belong to no customer).
NO_CUSTOMER = ""
#: The event that attaches an identifier to a known customer (nextbest.decisions.identity_links).
IDENTIFY_EVENT = "identify"
#: Identifier types an identify event may attach: those the identity lookup knows, but the
#: unified customer id (which names a customer, not one of its identifiers).
LINKABLE_ID_TYPES: tuple[str, ...] = tuple(t for t in ID_TYPES if t != "customer_id")
#: An identifier key as stored: ``<id_type>:`` and 32 hex digits of the salted hash.
_ID_KEY = re.compile(r"^([a-z_]+):[0-9a-f]{32}$")
assert set(PAYLOAD_FIELDS) == set(EVENT_TYPES), "every event type needs its payload fields"

#: How far ahead of the time received an event may be dated (clocks differ a little).
MAX_FUTURE_S = 300.0
#: The earliest event time accepted (older facts belong in a source export).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
#: The largest purchase amount accepted.
MAX_AMOUNT = 1e9
#: The largest stock level accepted.
MAX_UNITS = 1e12
#: Identifiers (event, case, decision ids, source, actor): printable, no spaces, bounded.
TOKEN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,127}$"
_TOKEN = re.compile(TOKEN_PATTERN)
#: The longest text an event field holds.
TEXT_MAX = 128
_TEXT_MAX = TEXT_MAX
_LINKABLE = frozenset(LINKABLE_ID_TYPES)
#: The epoch-seconds range a numeric timestamp is read in (before the window check).
EPOCH_BOUND = 1e12


class EventError(ValueError):
    """An event that cannot be accepted as sent; the message starts with the field name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConflictError(EventError):
    """An ``event_id`` already in the ledger with different content."""


@dataclass(frozen=True)
class Vocabulary:
    """What an event may name: the catalog's channels, purposes, products, categories and
    actions (none unless given, see :meth:`from_terms`)."""

    channels: frozenset[str] = frozenset()
    purposes: frozenset[str] = frozenset()
    products: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    #: The catalog's behaviour events (event types of their own, BEHAVIOUR_FIELDS).
    behaviour: frozenset[str] = frozenset()

    def types(self) -> tuple[str, ...]:
        """Every event type accepted: the built-in ones, then the behaviour events."""
        return (*EVENT_TYPES, *sorted(self.behaviour))

    @classmethod
    def from_terms(cls, terms: CatalogTerms) -> Vocabulary:
        """The vocabulary of a catalog's channels, purposes, products, categories and
        actions."""
        return cls(
            channels=frozenset(terms.channels),
            purposes=frozenset(terms.purposes),
            products=frozenset(terms.products),
            categories=frozenset(terms.categories),
            actions=frozenset(terms.action_ids),
            behaviour=frozenset(b.name for b in terms.behaviour),
        )


@dataclass(frozen=True)
class LedgerEvent:
    """One validated event as stored: times are epoch seconds (UTC)."""

    event_id: str
    customer_id: str
    type: str
    event_time: float
    payload: Mapping[str, Any] = field(default_factory=dict)
    source: str = "api"
    actor: str = "anonymous"
    received_time: float = 0.0
    #: Whether the caller dated the event (else it is dated when received).
    dated: bool = True
    #: Position in the ledger (0 until stored).
    seq: int = 0

    def digest(self) -> str:
        """What makes two sends the same event: customer, type, payload and the caller's
        time (an undated event's time is when it arrived, which a retry cannot repeat)."""
        body = orjson.dumps(
            [self.customer_id, self.type, self.event_time if self.dated else None, self.payload],
            option=orjson.OPT_SORT_KEYS,
        )
        return hashlib.sha256(body).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready fields (times as ISO 8601 UTC)."""
        return {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "type": self.type,
            "event_time": _iso(self.event_time),
            "received_time": _iso(self.received_time),
            "source": self.source,
            "actor": self.actor,
            "payload": dict(self.payload),
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


# --- validation -----------------------------------------------------------------------------


def _token(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise EventError(name, "must be 1-128 characters: letters, digits and _.:@/+=- (no spaces)")
    # An identifier is stored as sent: one shaped like an e-mail address is refused rather
    # than kept (a phone number cannot start one, and digits alone are ordinary ids).
    if looks_like_email(value):
        raise EventError(name, "looks like an e-mail address; personal data is refused")
    return value


def _finite(name: str, value: Any, low: float, high: float) -> float:
    # bool is an int in Python; a flag is not an amount
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(name, "must be a number")
    try:
        x = float(value)
    except OverflowError:  # an integer beyond a float
        raise EventError(name, f"must be between {low:g} and {high:g}") from None
    if not math.isfinite(x) or not low <= x <= high:
        raise EventError(name, f"must be a finite number between {low:g} and {high:g}")
    return x


def _one_of(name: str, value: Any, allowed: frozenset[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise EventError(name, f"must be one of {', '.join(sorted(allowed))}")
    return value


def _action_id(value: Any) -> Any:
    """An action id as the caller writes it, normalised like the catalog's
    (``MORTGAGE_REMORT`` is ``mortgage_remort``); anything else as it came."""
    return normalise_action_id(value) if isinstance(value, str) else value


def event_time(timestamp: Any, received: float) -> tuple[float, bool]:
    """Epoch seconds of a caller's timestamp (ISO 8601 text or epoch seconds; ``None``:
    when received) and whether it was given; outside the sane window raises."""
    if timestamp is None:
        return received, False
    if isinstance(timestamp, str):
        if len(timestamp) > 64:
            raise EventError("timestamp", "must be ISO 8601 text or epoch seconds")
        try:
            dt = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            raise EventError("timestamp", "must be ISO 8601 text or epoch seconds") from None
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        t = dt.timestamp()
    else:
        t = _finite("timestamp", timestamp, -EPOCH_BOUND, EPOCH_BOUND)
    if not EARLIEST.timestamp() <= t <= received + MAX_FUTURE_S:
        raise EventError(
            "timestamp",
            f"must lie between {EARLIEST.date().isoformat()} and {MAX_FUTURE_S:g} s after now",
        )
    return t, True


def validate_payload(
    event_type: str, payload: Any, vocab: Vocabulary = Vocabulary()
) -> dict[str, Any]:
    """The payload of ``event_type`` checked field by field, normalised (floats, no
    missing optional fields); any problem raises :class:`EventError` naming the field."""
    behaviour = event_type in vocab.behaviour
    if event_type not in PAYLOAD_FIELDS and not behaviour:
        raise EventError("type", f"must be one of {', '.join(vocab.types())}")
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise EventError("payload", "must be an object")
    allowed = BEHAVIOUR_FIELDS if behaviour else PAYLOAD_FIELDS[event_type]
    unknown = sorted(set(payload) - allowed)
    if unknown:
        fields = ", ".join(sorted(allowed))
        raise EventError(f"payload.{unknown[0]}", f"not a field of {event_type} ({fields})")
    out: dict[str, Any] = {}

    def optional(name: str, check: Any) -> None:
        if payload.get(name) is not None:
            out[name] = check(f"payload.{name}", payload[name])

    if behaviour:
        optional("product_id", lambda n, v: _one_of(n, v, vocab.products))
        optional("category", lambda n, v: _one_of(n, v, vocab.categories))
    elif event_type in ("service_case_opened", "service_case_closed", "complaint"):
        optional("case_id", _token)
    elif event_type == "purchase":
        out["amount"] = _finite("payload.amount", payload.get("amount", 0.0), 0.0, MAX_AMOUNT)
        optional("category", lambda n, v: _one_of(n, v, vocab.categories))
        optional("product_id", lambda n, v: _one_of(n, v, vocab.products))
    elif event_type == "consent_changed":
        out["purpose"] = _one_of("payload.purpose", payload.get("purpose"), vocab.purposes)
        out["channel"] = _one_of("payload.channel", payload.get("channel"), vocab.channels)
        if not isinstance(payload.get("granted"), bool):
            raise EventError("payload.granted", "must be true or false")
        out["granted"] = payload["granted"]
        optional("legal_basis", _token)
    elif event_type == IDENTIFY_EVENT:
        out["id_type"] = _one_of("payload.id_type", payload.get("id_type"), _LINKABLE)
        key = payload.get("id_key")
        match = _ID_KEY.match(key) if isinstance(key, str) else None
        if match is None or match.group(1) != out["id_type"]:
            # the raw value never reaches the ledger: callers hash it first
            raise EventError(
                "payload.id_key",
                "must be the salted identifier key of id_type (nextbest.decisions.identity_links)",
            )
        out["id_key"] = key
    elif event_type == STOCK_EVENT:
        out["product_id"] = _one_of("payload.product_id", payload.get("product_id"), vocab.products)
        if payload.get("units") is None:
            raise EventError("payload.units", "is required: the units in stock (>= 0)")
        out["units"] = _finite("payload.units", payload["units"], 0.0, MAX_UNITS)
    else:  # contact
        out["channel"] = _one_of("payload.channel", payload.get("channel"), vocab.channels)
        optional("action_id", lambda n, v: _one_of(n, _action_id(v), vocab.actions))
        optional("decision_id", _token)
        optional("outcome", lambda n, v: _one_of(n, v, frozenset(CONTACT_OUTCOMES)))
    return out


def validate_event(
    customer_id: str,
    event_type: Any,
    timestamp: Any = None,
    payload: Any = None,
    event_id: Any = None,
    source: Any = None,
    actor: str = "anonymous",
    vocab: Vocabulary = Vocabulary(),
    received: float | None = None,
) -> LedgerEvent:
    """Every field of an event checked, before anything is written.

    ``customer_id`` is the resolved (unified) customer (:data:`NO_CUSTOMER` for the
    product-level event types of ``PRODUCT_EVENT_TYPES``); ``actor`` the authenticated caller.
    An omitted ``event_id`` gets a fresh one (so the event is not idempotent: callers that
    retry send their own); an omitted timestamp dates the event when received.
    """
    if not isinstance(event_type, str) or (
        event_type not in PAYLOAD_FIELDS and event_type not in vocab.behaviour
    ):
        raise EventError("type", f"must be one of {', '.join(vocab.types())}")
    if (event_type in PRODUCT_EVENT_TYPES) != (customer_id == NO_CUSTOMER):
        raise EventError(
            "customer",
            f"{event_type} is about a product: send it without a customer"
            if event_type in PRODUCT_EVENT_TYPES
            else f"required for {event_type}",
        )
    received = datetime.now(UTC).timestamp() if received is None else received
    eid = uuid.uuid4().hex if event_id is None else _token("event_id", event_id)
    src = "api" if source is None else _token("source", source)
    t, dated = event_time(timestamp, received)
    clean = validate_payload(event_type, payload, vocab)
    return LedgerEvent(
        event_id=eid,
        customer_id=str(customer_id),
        type=event_type,
        event_time=t,
        payload=clean,
        source=src,
        actor=str(actor)[:_TEXT_MAX],
        received_time=received,
        dated=dated,
    )


# --- storage --------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    type TEXT NOT NULL,
    event_time REAL NOT NULL,
    received_time REAL NOT NULL,
    source TEXT NOT NULL,
    actor TEXT NOT NULL,
    dated INTEGER NOT NULL,
    payload TEXT NOT NULL,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_customer ON events (customer_id, event_time);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, seq);
CREATE TABLE IF NOT EXISTS builds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    built_at REAL NOT NULL,
    watermark INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS identity_links (
    event_id TEXT PRIMARY KEY,
    identifier TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    owner_id TEXT,
    owner_source TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS identity_links_by_identifier
    ON identity_links (identifier) WHERE status = 'linked';
"""
_COLUMNS = (
    "seq, event_id, customer_id, type, event_time, received_time, source, actor, dated, payload"
)


def _row_event(row: Sequence[Any]) -> LedgerEvent:
    seq, eid, cid, typ, t, rt, src, actor, dated, payload = row
    return LedgerEvent(
        event_id=eid,
        customer_id=cid,
        type=typ,
        event_time=t,
        payload=orjson.loads(payload),
        source=src,
        actor=actor,
        received_time=rt,
        dated=bool(dated),
        seq=seq,
    )


@dataclass(frozen=True)
class Appended:
    """The outcome of an append: the stored event, and whether this call stored it
    (False: the same event was already in the ledger)."""

    event: LedgerEvent
    applied: bool


def follows_split(event: LedgerEvent) -> bool:
    """Whether an event recorded under an id that was split applies to every side: a
    consent withdrawal, a case or a complaint (over-applying them only holds marketing
    back; a grant, a purchase or a contact stays with the side that kept the id)."""
    if event.type == "consent_changed":
        return not event.payload.get("granted", False)
    return event.type in SPLIT_SAFE_TYPES


class Ledger:
    """The append-only event ledger in one SQLite file (one connection per thread).

    Events stay under the customer id they were recorded with; every read goes through
    the id map of the same home (:class:`nextbest.customers.id_map.IdMapFile` of the ledger's
    folder, or ``ids``), so the events of a customer's earlier ids are that customer's
    now (docs/identity.md, "Stable customer ids").
    """

    def __init__(
        self, path: str | Path, timeout: float = 30.0, ids: IdMapFile | None = None
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.ids = ids if ids is not None else IdMapFile(self.path.parent)
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # autocommit (isolation_level None): transactions are the explicit BEGIN IMMEDIATE
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit syncs the WAL, so an acknowledged event survives a crash
        conn.execute("PRAGMA synchronous=FULL")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit), for the tables kept beside the events in
        the ledger file (:mod:`nextbest.decisions.identity_links` reads its table through it)."""
        return self._conn()

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def check(self) -> None:
        """Raise ``sqlite3.Error`` if the ledger cannot take a write now: takes the write
        lock (waiting at most the busy timeout) and releases it, writing nothing."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")

    def append(
        self,
        event: LedgerEvent,
        within: Callable[[sqlite3.Connection, LedgerEvent], None] | None = None,
    ) -> Appended:
        """Store ``event`` durably, once: a repeat of its ``event_id`` with the same content
        is acknowledged (``applied=False``), with other content raises :class:`ConflictError`.

        The check and the insert are one ``BEGIN IMMEDIATE`` transaction, which SQLite
        serialises across threads and processes. ``within`` (the identify links) runs in
        that transaction after the insert, with the stored event, only when this call
        stores it; if it raises, nothing is stored. An identify event needs it (its outcome
        is stored with it: :meth:`nextbest.decisions.identity_links.IdentityLinks.append`).
        """
        if event.type == IDENTIFY_EVENT and within is None:
            raise ValueError("identify events are appended by nextbest.decisions.identity_links")
        conn = self._conn()
        digest = event.digest()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                f"SELECT {_COLUMNS}, digest FROM events WHERE event_id = ?", (event.event_id,)
            ).fetchone()
            if row is None:
                cur = conn.execute(
                    "INSERT INTO events (event_id, customer_id, type, event_time, received_time,"
                    " source, actor, dated, payload, digest) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        event.event_id,
                        event.customer_id,
                        event.type,
                        event.event_time,
                        event.received_time,
                        event.source,
                        event.actor,
                        int(event.dated),
                        orjson.dumps(dict(event.payload), option=orjson.OPT_SORT_KEYS).decode(),
                        digest,
                    ),
                )
                stored = LedgerEvent(**{**event.__dict__, "seq": int(cur.lastrowid or 0)})
                if within is not None:
                    within(conn, stored)
                conn.execute("COMMIT")
                return Appended(stored, applied=True)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        existing = _row_event(row[:-1])
        if row[-1] != digest:
            raise ConflictError(
                "event_id",
                f"{event.event_id!r} was already used for a different event (sent again with "
                "other content)",
            )
        return Appended(existing, applied=False)

    def events_for(
        self,
        customer_ids: Iterable[str],
        types: Sequence[str] | None = None,
        upto_seq: int | None = None,
    ) -> dict[str, list[LedgerEvent]]:
        """Every stored event of these customers, by customer, in ledger order: one query
        on the customer index, however many customers (their ids travel as one JSON
        array, so SQLite's bound-parameter limit does not split it). ``types`` limits the
        event types; ``upto_seq`` the ledger positions (a reader that wants one state
        across several calls passes :meth:`last_seq` taken once)."""
        asked = sorted({str(c) for c in customer_ids if c})
        out: dict[str, list[LedgerEvent]] = {}
        if not asked:
            return out
        id_map = self.ids.get()
        routes = id_map.expand(asked) if id_map else None
        ids = sorted(routes) if routes is not None else asked
        # INDEXED BY: SQLite refuses the query rather than scan the whole ledger.
        sql = (
            f"SELECT {_COLUMNS} FROM events INDEXED BY events_by_customer "
            "WHERE customer_id IN (SELECT value FROM json_each(?))"
        )
        params: list[Any] = [orjson.dumps(ids).decode()]
        if types is not None:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params += list(types)
        if upto_seq is not None:
            sql += " AND seq <= ?"
            params.append(int(upto_seq))
        rows = self._conn().execute(sql + " ORDER BY seq", params)
        if routes is None:
            for row in rows:
                out.setdefault(row[2], []).append(_row_event(row))
            return out
        for row in rows:
            event = _row_event(row)
            for cid, scope in routes[row[2]]:
                if scope == ALL or follows_split(event):
                    out.setdefault(cid, []).append(event)
        return out

    def events_of_type(self, event_type: str, after_seq: int = 0) -> list[LedgerEvent]:
        """Every stored event of one type after ``after_seq``, in ledger order (for builds)."""
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM events WHERE type = ? AND seq > ? ORDER BY seq",
            (event_type, after_seq),
        )
        return [_row_event(r) for r in rows]

    def events_after(self, after_seq: int, limit: int = 1000) -> list[LedgerEvent]:
        """Up to ``limit`` stored events after ``after_seq``, in ledger order (the triggers
        worker reads the ledger this way; positions are given under the write lock, so a
        reader never sees a later position before an earlier one)."""
        rows = self._conn().execute(
            f"SELECT {_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [_row_event(r) for r in rows]

    def last_seq(self) -> int:
        """The position of the newest stored event (0: empty)."""
        row = self._conn().execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def record_build(self, watermark: int, built_at: float | None = None) -> None:
        """Note that a feature build read every event up to ``watermark``."""
        t = datetime.now(UTC).timestamp() if built_at is None else built_at
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO builds (built_at, watermark) VALUES (?, ?)", (t, watermark))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def build_watermark(self) -> int:
        """The newest event position the last feature build read (0: none)."""
        row = (
            self._conn()
            .execute("SELECT watermark FROM builds ORDER BY seq DESC LIMIT 1")
            .fetchone()
        )
        return int(row[0]) if row else 0

    def count(self) -> int:
        """How many events are stored."""
        return int(self._conn().execute("SELECT count(*) FROM events").fetchone()[0])

    def stored_ids(self, customer_ids: Sequence[str]) -> list[str]:
        """The ids events of ``customer_ids`` may be stored under: their own and every
        earlier id wholly theirs (merged in; a split's safety links are not)."""
        id_map = self.ids.get()
        out = dict.fromkeys(customer_ids)
        for cid in customer_ids:
            out.update(dict.fromkeys(k for k, s in id_map.aliases(cid).items() if s == ALL))
        return list(out)

    def count_of(self, customer_ids: Sequence[str]) -> int:
        """How many events of ``customer_ids`` (and their earlier ids) are stored."""
        customer_ids = self.stored_ids(customer_ids)
        marks = ",".join("?" * len(customer_ids))
        sql = f"SELECT count(*) FROM events WHERE customer_id IN ({marks})"
        return int(self._conn().execute(sql, list(customer_ids)).fetchone()[0])

    def erase_customers(self, customer_ids: Sequence[str]) -> int:
        """Delete every event of ``customer_ids`` and of their earlier ids (erasure);
        returns how many.

        Their identify links go with their events, and a review entry of another
        customer's identify event loses the erased customer's id (``owner_source``
        ``erased``). The freed pages are overwritten (``secure_delete``) and the
        write-ahead log is checkpointed and truncated, so the events leave the files, not
        only the tables.
        """
        if not customer_ids:
            return 0
        customer_ids = self.stored_ids(customer_ids)
        marks = ",".join("?" * len(customer_ids))
        unowned = (
            "UPDATE identity_links SET owner_id = NULL, owner_source = 'erased' "
            f"WHERE owner_id IN ({marks})"
        )
        return self._delete(
            f"customer_id IN ({marks})", list(customer_ids), (unowned, list(customer_ids))
        )

    def drop_before(
        self, cutoff: float, keep_types: Sequence[str] = ("consent_changed", IDENTIFY_EVENT)
    ) -> int:
        """Delete events dated before ``cutoff`` (epoch seconds), except those of
        ``keep_types`` (consent changes: proof of consent; identify events: identifiers
        of the customer, as the exports' account records are kept); returns how many."""
        marks = ",".join("?" * len(keep_types))
        return self._delete(f"event_time < ? AND type NOT IN ({marks})", [cutoff, *keep_types])

    def _delete(
        self, where: str, params: list[Any], also: tuple[str, list[Any]] | None = None
    ) -> int:
        conn = self._conn()
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(f"DELETE FROM events WHERE {where}", params).rowcount
            # an identify link lives as long as its event
            conn.execute(
                "DELETE FROM identity_links WHERE event_id NOT IN (SELECT event_id FROM events)"
            )
            if also is not None:
                conn.execute(*also)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(n)


def consent_records(ledger: Ledger) -> tuple[list[dict[str, Any]], int]:
    """Every consent change in the ledger as source records for a feature build
    (``customer_id``, ``purpose``, ``channel``, ``granted``, ``ts`` as epoch seconds), and
    the position of the newest event read (to record with :meth:`Ledger.record_build`)."""
    watermark = ledger.last_seq()
    id_map = ledger.ids.get()
    records = []
    for e in ledger.events_of_type("consent_changed"):
        if e.seq > watermark:
            continue
        # Through the id map: under each customer the stored id belongs to now.
        for cid, scope in id_map.targets(e.customer_id) if id_map else [(e.customer_id, ALL)]:
            if scope == ALL or follows_split(e):
                records.append(
                    {
                        "customer_id": cid,
                        "purpose": e.payload["purpose"],
                        "channel": e.payload["channel"],
                        "granted": e.payload["granted"],
                        "ts": e.event_time,
                    }
                )
    return records, watermark


_CARRIED = {ALL: "merged", SAFETY: "split"}


def consent_history(ledger: Ledger, customer_id: str) -> list[dict[str, Any]]:
    """A customer's consent changes in the ledger, oldest first by event time, each with
    its purpose, channel, granted, legal basis, source and actor, and the id it was
    recorded under (an earlier id of the customer's, or this one)."""
    events = ledger.events_for([customer_id], types=("consent_changed",)).get(customer_id, [])
    events.sort(key=lambda e: (e.event_time, e.seq))
    scopes = ledger.ids.get().aliases(customer_id)
    return [
        {
            "event_id": e.event_id,
            "event_time": _iso(e.event_time),
            "received_time": _iso(e.received_time),
            "purpose": e.payload["purpose"],
            "channel": e.payload["channel"],
            "granted": e.payload["granted"],
            "legal_basis": e.payload.get("legal_basis"),
            "source": e.source,
            "actor": e.actor,
            "recorded_under": e.customer_id,
            # "merged": an earlier id of this customer; "split": an id split between
            # this customer and another, whose withdrawal holds on both sides.
            "carried": _CARRIED[scopes[e.customer_id]] if e.customer_id != customer_id else None,
        }
        for e in events
    ]
