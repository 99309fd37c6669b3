"""The triggers worker: a plain loop over the ledger, the pending triggers and the outbox.

Each turn (:meth:`TriggerWorker.step`):

1. **Read** the ledger events after the stored cursor (:meth:`Ledger.events_after`), match
   them against the trigger file (:func:`nextbest.decisions.trigger_rules.match`) and store
   the fired and cancelled rows with the new cursor in one transaction;
2. **Scan**: run each scan trigger whose ``every`` has passed (inactive customers);
3. **Send** the due rows: the same decision path as ``/decide``
   (:meth:`serving.decider.OnlineDecider.decide_and_log`, every rule at *send* time over the
   online features with the ledger applied), the trigger's cap, send windows and
   conditions first; the best action x channel pair of its open channels (the rule of
   ``channels`` in ``/decide``) is logged to the decision log and queued in the outbox with
   the row marked sent (one transaction), or the row closes with the reason (no_send,
   holdout, expired), or waits for the first channel's quiet hours to end;
4. **Deliver** due outbox rows (:class:`serving.outbox.Outbox`).

It sleeps ``triggers_poll_seconds`` when a turn found nothing to do. One worker runs per
home (an exclusive lock on ``triggers.db.lock``). A first start reads from the ledger's
current end: history does not fire triggers.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nextbest.core.errors import DependencyUnavailable
from nextbest.core.settings import Settings
from nextbest.core.vocabulary import NO_ACTION
from nextbest.decisions.catalog import ConfigError
from nextbest.decisions.ledger import Vocabulary
from nextbest.decisions.runtime import StartupError
from nextbest.decisions.trigger_rules import (
    inactive,
    ledger_last_activity,
    match,
    scan_fires,
    unmet,
)
from nextbest.decisions.trigger_store import (
    EXPIRED,
    HOLDOUT,
    NO_SEND,
    PendingRow,
    TriggerStore,
)
from nextbest.decisions.triggers import Cap, Condition, TriggerFile, load_triggers
from serving.decider import OnlineDecider
from serving.events import event_vocabulary
from serving.outbox import Outbox
from serving.requests import CustomerRef, DecideRequest, RequestError

log = logging.getLogger(__name__)

#: Ledger events read per turn.
BATCH = 1000
#: The feature table that holds ``last_active_ts`` (the inactivity scan reads it).
BEHAVIOUR_TABLE = "customer_behaviour.parquet"


@dataclass(frozen=True)
class SendRule:
    """What a due row of one trigger or journey step is sent under."""

    channels: tuple[str, ...]
    when: tuple[Condition, ...] = ()
    cap: Cap | None = None


@dataclass
class Turn:
    """What one turn did (counts)."""

    read: int = 0
    fired: int = 0
    cancelled: int = 0
    scanned: int = 0
    decided: int = 0
    delivered: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def busy(self) -> bool:
        """Whether the turn did anything (else the worker sleeps)."""
        return bool(self.read or self.scanned or self.decided or self.delivered)


def send_rules(spec: TriggerFile) -> dict[str, SendRule]:
    """Trigger id (``<journey>.<step>`` for steps) -> how its rows are sent."""
    out = {
        t.id: SendRule(tuple(t.channels), tuple(t.when), t.cap) for t in spec.triggers if t.channels
    }
    for j in spec.journeys:
        for s in j.steps:
            out[f"{j.id}.{s.id}"] = SendRule(tuple(s.channels), tuple(s.when))
    return out


def load_spec(settings: Settings, decider: OnlineDecider) -> TriggerFile:
    """The trigger file, checked against what the running service knows."""
    catalog = decider.runtime.catalog
    return load_triggers(
        settings.triggers_file,
        event_types=Vocabulary.from_terms(catalog.terms()).types(),
        channels=catalog.channel_ids,
        purposes=catalog.purposes,
        features=decider.names,
    )


def _lock(path: Path) -> IO[str]:
    """Hold the home's worker lock (raises StartupError if another worker has it)."""
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise StartupError(
            f"another triggers worker runs over this home ({path} is locked); run one per home"
        ) from exc
    return handle


class TriggerWorker:
    """Triggers, sends and deliveries over one home (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        decider: OnlineDecider | None = None,
        spec: TriggerFile | None = None,
    ) -> None:
        if not settings.webhooks:
            raise StartupError("no webhooks configured (NEXTBEST_WEBHOOKS): nothing to deliver to")
        if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
            raise StartupError("NEXTBEST_WEBHOOK_SECRET is required to sign webhook deliveries")
        self._lock = _lock(settings.triggers_db_path.with_suffix(".db.lock"))
        self.settings = settings
        self.decider = decider or OnlineDecider(settings)
        try:
            self.spec = spec or load_spec(settings, self.decider)
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        self.rules = send_rules(self.spec)
        self.ledger = self.decider.ledger
        self.store = TriggerStore(settings.triggers_db_path, timeout=30.0)
        self.outbox = Outbox(
            self.store,
            self.ledger,
            event_vocabulary(self.decider.runtime.catalog),
            settings.webhook_secret.get_secret_value().encode(),
            timeout=settings.webhook_timeout_seconds,
            max_attempts=settings.outbox_max_attempts,
            backoff_s=settings.outbox_backoff_seconds,
            backoff_max_s=settings.outbox_backoff_max_seconds,
        )
        self._index = {n: j for j, n in enumerate(self.decider.names)}
        if self.store.cursor() is None:
            self.store.apply([], [], self.ledger.last_seq(), time.time())

    def close(self) -> None:
        """Sync the decision log and release the connections and the home's worker lock."""
        self.decider.log.close()
        self.outbox.close()
        self.store.close()
        self._lock.close()

    # --- one turn ---------------------------------------------------------------------------

    def step(self, now: float | None = None) -> Turn:
        """One turn: read, scan, send, deliver (see the module docstring)."""
        turn = Turn()
        self.read_ledger(turn)
        now = time.time() if now is None else now
        self.scan(now, turn)
        self.send_due(now, turn)
        turn.delivered = self.outbox.deliver_due(time.time())
        return turn

    def run(self, stop: threading.Event) -> None:
        """Turn until ``stop`` is set, sleeping when a turn found nothing to do."""
        log.info(
            "triggers worker: %d triggers, %d journeys, delivering to %d webhooks",
            len(self.spec.triggers),
            len(self.spec.journeys),
            len(self.settings.webhooks),
        )
        while not stop.is_set():
            try:
                busy = self.step().busy()
            except (DependencyUnavailable, *self.decider.store_errors) as exc:
                # a store is down: wait, try again
                log.warning("triggers worker: %s: %s", type(exc).__name__, exc)
                busy = False
            if not busy:
                stop.wait(self.settings.triggers_poll_seconds)

    def read_ledger(self, turn: Turn) -> None:
        """Match the events after the cursor; store what they fire and cancel."""
        cursor = self.store.cursor() or 0
        events = self.ledger.events_after(cursor, BATCH)
        if not events:
            return
        matched = match(self.spec, events, self.ledger, self.store.has_pending)
        turn.read = len(events)
        turn.fired, turn.cancelled = self.store.apply(
            matched.fires, matched.cancels, events[-1].seq, time.time()
        )

    # --- scans ------------------------------------------------------------------------------

    def scan(self, now: float, turn: Turn) -> None:
        """Run the scan triggers that are due."""
        for t in self.spec.triggers:
            if t.scan is None:
                continue
            last = self.store.scan_last_run(t.id)
            if last is not None and now - last < t.scan.every:
                continue
            ids, last_active = self.last_activity()
            who, when = inactive(
                ids, last_active, ledger_last_activity(self.ledger), now, t.scan.inactive_for
            )
            turn.scanned += self.store.scanned(t.id, scan_fires(t, who, when, now), now)

    def last_activity(self) -> tuple[np.ndarray, np.ndarray]:
        """Every customer and their ``last_active_ts`` in the newest feature snapshot."""
        return snapshot_last_active(self.settings.features_dir / BEHAVIOUR_TABLE)

    # --- sends ------------------------------------------------------------------------------

    def send_due(self, now: float, turn: Turn) -> None:
        """Decide and queue (or close) every due row."""
        for row in self.store.due(now):
            try:
                status = self.send(row, now)
            except (DependencyUnavailable, *self.decider.store_errors):
                raise  # a store is down: the row stays due, the turn is tried again
            except Exception as exc:  # one row's failure must not stop every other send
                log.exception("trigger row %s could not be sent", row.key)
                status = self._close(row, NO_SEND, f"error: {type(exc).__name__}", now)
            turn.decided += 1
            turn.outcomes[status] = turn.outcomes.get(status, 0) + 1

    def send(self, row: PendingRow, now: float) -> str:
        """Send one due row; returns the state it ends in."""
        rule = self.rules.get(row.trigger_id)
        if rule is None:
            return self._close(row, NO_SEND, "the trigger is no longer in the trigger file", now)
        if now > row.expires:
            return self._close(row, EXPIRED, "not sent before it expired", now)
        if rule.cap is not None:
            sent = self.store.sends_since(row.trigger_id, row.customer_id, now - rule.cap.per)
            if sent >= rule.cap.max:
                return self._close(
                    row, NO_SEND, f"cap: {sent} sends of {row.trigger_id} in its window", now
                )
        at = datetime.fromtimestamp(now, UTC)
        channels = self.open_channels(rule.channels, at)
        if not channels:
            return self._wait_for_window(row, rule.channels, at)
        if rule.when:
            X = self.decider.features([row.customer_id], at)
            why = unmet(rule.when, X[0], self._index)
            if why is not None:
                return self._close(row, NO_SEND, why, now)
        # One decision across the open channels, chosen as /decide chooses (channel_choice).
        ask = DecideRequest(CustomerRef(row.customer_id), None, 1, channels=tuple(channels))

        def amend(record: dict[str, Any]) -> None:
            record["trigger"] = {"id": row.trigger_id, "key": row.key}
            if row.journey_id is not None:
                record["journey"] = row.journey_id
            if row.holdout:
                hold_out(record)

        # Decided and logged as /decide is (on disk before the outbox row is written).
        (record,) = self.decider.decide_and_log([ask], at, amend=amend).wait()
        if isinstance(record, RequestError):
            return self._close(row, NO_SEND, f"cannot decide: {record}", now)
        if isinstance(record, Exception):  # the decision log down: the row waits for a turn
            raise record
        chosen = record.get("chosen_action")
        if row.holdout:
            return self._close(row, HOLDOUT, "journey holdout", now, record["decision_id"])
        if chosen in (None, NO_ACTION):
            why = f"{record.get('reason')}: {record.get('reason_text')}"
            return self._close(row, NO_SEND, why, now, record["decision_id"])
        body = delivery_body(record, row)
        if self.store.send(
            row, record["decision_id"], record["channel"], chosen, body, self.settings.webhooks, now
        ):
            return "sent"
        return "cancelled"

    def open_channels(self, channels: Sequence[str], at: datetime) -> list[str]:
        """The channels outside their quiet hours at ``at`` (the policy's send windows, in
        the default time zone: the decision names no time zone of the customer's)."""
        windows = self.decider.runtime.policy.send_windows
        tz = self.settings.default_time_zone
        return [ch for ch in channels if not windows.is_quiet(ch, tz, at)]

    def _wait_for_window(self, row: PendingRow, channels: Sequence[str], at: datetime) -> str:
        """Every channel is quiet: the row waits until the first one opens (its expiry
        moves with it)."""
        windows = self.decider.runtime.policy.send_windows
        tz = self.settings.default_time_zone
        opens = min(windows.next_send_time(ch, tz, at) for ch in channels).timestamp()
        self.store.postpone(row.id, opens, opens + (row.expires - row.due), at.timestamp())
        return "waiting"

    def _close(
        self, row: PendingRow, status: str, reason: str, now: float, decision_id: str | None = None
    ) -> str:
        self.store.close_row(row.id, status, reason, now, decision_id)
        return status


def hold_out(record: dict[str, Any]) -> None:
    """Turn a journey step's decision into its holdout record: nothing is sent, and the lift
    report counts it in the holdout group (its counterfactual ranking is kept)."""
    record["group"] = "holdout"
    record["chosen_action"] = NO_ACTION
    record["propensity"] = 1.0
    record["reason"] = "holdout"
    record["reason_text"] = f"held out of journey {record.get('journey')} at entry"


def delivery_body(record: Mapping[str, Any], row: PendingRow) -> bytes:
    """The webhook body of a sent decision (ids and the action; no personal data)."""
    return orjson.dumps(
        {
            "decision_id": record["decision_id"],
            "customer_id": record["customer_id"],
            "channel": record["channel"],
            "action_id": record["chosen_action"],
            "trigger_id": row.trigger_id,
            "journey_id": row.journey_id,
            "event_id": row.event_id,
            "decided_at": record.get("decided_at"),
            "group": record.get("group"),
            "propensity": record.get("propensity"),
            "reason": {"code": record.get("reason"), "text": record.get("reason_text")},
            "model_version": record.get("model_version"),
            "policy_version": record.get("policy_version"),
            "catalog_version": record.get("catalog_version"),
        },
        option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
    )


def snapshot_last_active(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Customer ids and ``last_active_ts`` at the newest snapshot of the behaviour feature
    table at ``path`` (columns read with pyarrow, rows filtered on the snapshot time: no
    pandas)."""
    table = pq.read_table(path, columns=["customer_id", "event_timestamp", "last_active_ts"])
    newest = pc.max(table["event_timestamp"])
    table = table.filter(pc.equal(table["event_timestamp"], newest))
    ids = np.asarray(table["customer_id"].to_numpy(zero_copy_only=False), dtype=object)
    last = table["last_active_ts"].to_numpy(zero_copy_only=False).astype(float)
    return ids, last
