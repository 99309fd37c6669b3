"""Pending triggers and the delivery outbox, durable in one SQLite file beside the ledger.

``triggers.db`` (WAL, ``synchronous=FULL``) holds

- ``cursor``: the ledger position the worker has read; it moves in the same transaction
  as the triggers that the events up to it fired and cancelled, so after a crash the
  events after it are read again and fire the same rows (each row's ``key`` is unique:
  ``<trigger>:<event_id>``, so a duplicate event, or one read twice, fires once);
- ``pending``: one row per fired trigger (or journey step), ``pending`` until it is due,
  then ``sent``, ``no_send`` (with the reason), ``holdout``, ``cancelled`` (with the
  cancelling event) or ``expired``;
- ``outbox``: one row per decision and webhook, ``queued`` until the webhook answers
  2xx (``delivered``) or the attempts run out (``dead``); ``nextbest outbox retry`` queues
  a dead row again;
- ``scans``: when each scan trigger last ran.

A pending row becomes ``sent`` and its outbox rows are inserted in one transaction, so a
decision is queued once per trigger; a delivery is marked only after the webhook's 2xx,
so it may be sent again after a crash (at least once), always under its ``decision_id``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    trigger_id TEXT NOT NULL,
    journey_id TEXT,
    purpose TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    event_id TEXT,
    product_id TEXT,
    fired_at REAL NOT NULL,
    due REAL NOT NULL,
    expires REAL NOT NULL,
    holdout INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    reason TEXT,
    decision_id TEXT,
    updated REAL
);
CREATE INDEX IF NOT EXISTS pending_due ON pending (status, due);
CREATE INDEX IF NOT EXISTS pending_customer ON pending (customer_id, status);
CREATE TABLE IF NOT EXISTS outbox (
    decision_id TEXT NOT NULL,
    webhook TEXT NOT NULL,
    pending_id INTEGER NOT NULL,
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    action_id TEXT NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    created REAL NOT NULL,
    delivered_at REAL,
    PRIMARY KEY (decision_id, webhook)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt);
CREATE TABLE IF NOT EXISTS scans (trigger_id TEXT PRIMARY KEY, last_run REAL NOT NULL);
"""

#: States of a pending row.
PENDING, SENT, NO_SEND, HOLDOUT, CANCELLED, EXPIRED = (
    "pending",
    "sent",
    "no_send",
    "holdout",
    "cancelled",
    "expired",
)
#: States of an outbox row.
QUEUED, DELIVERED, DEAD = "queued", "delivered", "dead"


@dataclass(frozen=True)
class Fire:
    """A trigger fired for a customer (to insert once by ``key``)."""

    key: str
    trigger_id: str
    purpose: str
    customer_id: str
    fired_at: float
    due: float
    expires: float
    event_id: str | None = None
    product_id: str | None = None
    journey_id: str | None = None
    holdout: bool = False


@dataclass(frozen=True)
class Cancel:
    """Cancel a customer's pending rows fired at or before ``before``, by trigger ids,
    purposes or journey (any that match), or every customer's rows of ``triggers`` that
    name ``product_id`` (a sell-out)."""

    reason: str
    before: float
    customer_id: str | None = None
    triggers: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    journeys: tuple[str, ...] = ()
    product_id: str | None = None


@dataclass(frozen=True)
class PendingRow:
    """A pending row as stored."""

    id: int
    key: str
    trigger_id: str
    journey_id: str | None
    purpose: str
    customer_id: str
    event_id: str | None
    product_id: str | None
    fired_at: float
    due: float
    expires: float
    holdout: bool
    status: str
    reason: str | None
    decision_id: str | None


@dataclass(frozen=True)
class OutboxRow:
    """An outbox row as stored."""

    decision_id: str
    webhook: str
    pending_id: int
    customer_id: str
    channel: str
    action_id: str
    body: bytes
    status: str
    attempts: int
    next_attempt: float
    last_error: str | None
    created: float
    delivered_at: float | None

    def as_dict(self) -> dict[str, Any]:
        """The row without its body, for listings."""
        out = {k: v for k, v in self.__dict__.items() if k != "body"}
        return out


_PENDING_COLS = (
    "id, key, trigger_id, journey_id, purpose, customer_id, event_id, product_id, fired_at, due,"
    " expires, holdout, status, reason, decision_id"
)
_OUTBOX_COLS = (
    "decision_id, webhook, pending_id, customer_id, channel, action_id, body, status, attempts,"
    " next_attempt, last_error, created, delivered_at"
)


def _insert(conn: sqlite3.Connection, fires: Iterable[Fire], now: float) -> int:
    """Insert fired rows, each once by its key; returns how many were new."""
    cur = conn.executemany(
        "INSERT OR IGNORE INTO pending (key, trigger_id, journey_id, purpose, customer_id,"
        " event_id, product_id, fired_at, due, expires, holdout, updated)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            (
                f.key,
                f.trigger_id,
                f.journey_id,
                f.purpose,
                f.customer_id,
                f.event_id,
                f.product_id,
                f.fired_at,
                f.due,
                f.expires,
                int(f.holdout),
                now,
            )
            for f in fires
        ),
    )
    return max(cur.rowcount, 0)


def _pending(row: Sequence[Any]) -> PendingRow:
    return PendingRow(*row[:11], bool(row[11]), *row[12:])


class TriggerStore:
    """The pending triggers, the outbox and the worker's ledger cursor (one SQLite file,
    one connection per thread)."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed row (a fired trigger, a queued delivery) survives a crash
        conn.execute("PRAGMA synchronous=FULL")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on error."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # --- the ledger cursor ------------------------------------------------------------------

    def cursor(self, name: str = "ledger") -> int | None:
        """The ledger position read so far (None: never started)."""
        row = self._conn().execute("SELECT seq FROM cursor WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def apply(
        self,
        fires: Iterable[Fire],
        cancels: Iterable[Cancel],
        seq: int,
        now: float,
        name: str = "ledger",
    ) -> tuple[int, int]:
        """Insert the fired rows (once per key), cancel what the events cancel and move the
        cursor to ``seq``, in one transaction. Returns (rows inserted, rows cancelled).

        Cancels apply after the inserts, so an event both firing a trigger and cancelling
        (a later step of the same batch) sees the row; a row is cancelled only by an event
        dated at or after its firing event.
        """
        cancelled = 0
        with self.transaction() as conn:
            inserted = _insert(conn, fires, now)
            for c in cancels:
                cancelled += self._cancel(conn, c, now)
            conn.execute(
                "INSERT INTO cursor (name, seq) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                (name, int(seq)),
            )
        return inserted, cancelled

    @staticmethod
    def _cancel(conn: sqlite3.Connection, c: Cancel, now: float) -> int:
        where = ["status = 'pending'", "fired_at <= ?"]
        params: list[Any] = [c.before]
        if c.customer_id is not None:
            where.append("customer_id = ?")
            params.append(c.customer_id)
        if c.product_id is not None:
            where.append("product_id = ?")
            params.append(c.product_id)
        anyof = []
        for col, values in (
            ("trigger_id", c.triggers),
            ("purpose", c.purposes),
            ("journey_id", c.journeys),
        ):
            if values:
                anyof.append(f"{col} IN ({','.join('?' * len(values))})")
                params.extend(values)
        if not anyof:
            return 0
        where.append("(" + " OR ".join(anyof) + ")")
        cur = conn.execute(
            f"UPDATE pending SET status = 'cancelled', reason = ?, updated = ? "
            f"WHERE {' AND '.join(where)}",
            [c.reason, now, *params],
        )
        return cur.rowcount

    # --- pending rows -----------------------------------------------------------------------

    def due(self, now: float, limit: int = 256) -> list[PendingRow]:
        """Pending rows due at ``now``, oldest due first."""
        rows = self._conn().execute(
            f"SELECT {_PENDING_COLS} FROM pending INDEXED BY pending_due "
            "WHERE status = 'pending' AND due <= ? ORDER BY due LIMIT ?",
            (now, limit),
        )
        return [_pending(r) for r in rows]

    def rows(self, customer_id: str | None = None, status: str | None = None) -> list[PendingRow]:
        """Pending rows (all states), optionally of one customer or state, in firing order."""
        sql, params = f"SELECT {_PENDING_COLS} FROM pending WHERE 1=1", []
        if customer_id is not None:
            sql += " AND customer_id = ?"
            params.append(customer_id)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        return [_pending(r) for r in self._conn().execute(sql + " ORDER BY id", params)]

    def sends_since(self, trigger_id: str, customer_id: str, since: float) -> int:
        """How many times a trigger sent to a customer since ``since`` (its cap)."""
        row = (
            self._conn()
            .execute(
                "SELECT count(*) FROM pending WHERE customer_id = ? AND trigger_id = ? "
                "AND status = 'sent' AND updated >= ?",
                (customer_id, trigger_id, since),
            )
            .fetchone()
        )
        return int(row[0])

    def has_pending(self, trigger_id: str, customer_id: str) -> bool:
        """Whether the customer has a row of the trigger still waiting."""
        row = (
            self._conn()
            .execute(
                "SELECT 1 FROM pending WHERE customer_id = ? AND trigger_id = ? "
                "AND status = 'pending' LIMIT 1",
                (customer_id, trigger_id),
            )
            .fetchone()
        )
        return row is not None

    def close_row(
        self, row_id: int, status: str, reason: str, now: float, decision_id: str | None = None
    ) -> bool:
        """Move a still-pending row to ``status`` with its reason (False: it was not
        pending any more, e.g. cancelled meanwhile)."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE pending SET status = ?, reason = ?, decision_id = ?, updated = ? "
                "WHERE id = ? AND status = 'pending'",
                (status, reason, decision_id, now, row_id),
            )
            return cur.rowcount == 1

    def postpone(self, row_id: int, due: float, expires: float, now: float) -> bool:
        """Move a pending row's due time (a send window not open yet); the reason says
        until when."""
        until = datetime.fromtimestamp(due, UTC).isoformat(timespec="seconds")
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE pending SET due = ?, expires = ?, reason = ?, updated = ? "
                "WHERE id = ? AND status = 'pending'",
                (due, expires, f"quiet hours on every channel: waits until {until}", now, row_id),
            )
            return cur.rowcount == 1

    def send(
        self,
        row: PendingRow,
        decision_id: str,
        channel: str,
        action_id: str,
        body: bytes,
        webhooks: Sequence[str],
        now: float,
    ) -> bool:
        """Mark the row sent and queue its delivery to every webhook, in one transaction
        (False, nothing queued: the row was not pending any more)."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE pending SET status = 'sent', reason = ?, decision_id = ?, updated = ? "
                "WHERE id = ? AND status = 'pending'",
                (f"{action_id} on {channel}", decision_id, now, row.id),
            )
            if cur.rowcount != 1:
                return False
            conn.executemany(
                "INSERT OR IGNORE INTO outbox (decision_id, webhook, pending_id, customer_id,"
                " channel, action_id, body, next_attempt, created) VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (decision_id, w, row.id, row.customer_id, channel, action_id, body, now, now)
                    for w in webhooks
                ],
            )
            return True

    # --- outbox -----------------------------------------------------------------------------

    def outbox_due(self, now: float, limit: int = 64) -> list[OutboxRow]:
        """Queued deliveries whose next attempt is due."""
        rows = self._conn().execute(
            f"SELECT {_OUTBOX_COLS} FROM outbox INDEXED BY outbox_due "
            "WHERE status = 'queued' AND next_attempt <= ? ORDER BY next_attempt LIMIT ?",
            (now, limit),
        )
        return [OutboxRow(*r) for r in rows]

    def outbox(self, status: str | None = None) -> list[OutboxRow]:
        """Every outbox row (or those in ``status``), oldest first."""
        sql, params = f"SELECT {_OUTBOX_COLS} FROM outbox", []
        if status is not None:
            sql += " WHERE status = ?"
            params.append(status)
        return [OutboxRow(*r) for r in self._conn().execute(sql + " ORDER BY created", params)]

    def delivered(self, row: OutboxRow, now: float) -> None:
        """The webhook took the delivery (2xx)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET status = 'delivered', attempts = attempts + 1,"
                " delivered_at = ?, last_error = NULL WHERE decision_id = ? AND webhook = ?",
                (now, row.decision_id, row.webhook),
            )

    def failed(self, row: OutboxRow, error: str, retry_at: float | None) -> None:
        """An attempt failed: try again at ``retry_at``, or dead-letter it (None)."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, status = ?,"
                " next_attempt = ? WHERE decision_id = ? AND webhook = ?",
                (
                    error[:500],
                    QUEUED if retry_at is not None else DEAD,
                    retry_at if retry_at is not None else row.next_attempt,
                    row.decision_id,
                    row.webhook,
                ),
            )

    def retry(self, decision_ids: Sequence[str] | None, now: float) -> int:
        """Queue dead deliveries again (all, or those of ``decision_ids``) with their
        attempts reset; returns how many."""
        sql = (
            "UPDATE outbox SET status = 'queued', attempts = 0, next_attempt = ? "
            "WHERE status = 'dead'"
        )
        params: list[Any] = [now]
        if decision_ids is not None:
            sql += " AND decision_id IN (SELECT value FROM json_each(?))"
            params.append(orjson.dumps(list(decision_ids)).decode())
        with self.transaction() as conn:
            return conn.execute(sql, params).rowcount

    # --- scans ------------------------------------------------------------------------------

    def scan_last_run(self, trigger_id: str) -> float | None:
        """When a scan trigger last ran (None: never)."""
        row = (
            self._conn()
            .execute("SELECT last_run FROM scans WHERE trigger_id = ?", (trigger_id,))
            .fetchone()
        )
        return None if row is None else float(row[0])

    def scanned(self, trigger_id: str, fires: Iterable[Fire], now: float) -> int:
        """Insert a scan's fired rows (once per key) and note the run, in one transaction."""
        with self.transaction() as conn:
            inserted = _insert(conn, fires, now)
            conn.execute(
                "INSERT INTO scans (trigger_id, last_run) VALUES (?, ?) "
                "ON CONFLICT(trigger_id) DO UPDATE SET last_run = excluded.last_run",
                (trigger_id, now),
            )
        return inserted
