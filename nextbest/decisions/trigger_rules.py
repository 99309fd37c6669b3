"""What new ledger events do to triggers: which fire, which pending ones they cancel; the
inactivity scan; the conditions and the journey holdout at send time.

Plain functions over the trigger file, ledger events and arrays; the worker
(:mod:`serving.trigger_worker`) stores what they return in
:class:`nextbest.decisions.trigger_store.TriggerStore`.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.decisions.ledger import NO_CUSTOMER, STOCK_EVENT, Ledger, LedgerEvent
from nextbest.decisions.trigger_store import Cancel, Fire
from nextbest.decisions.triggers import DO_CANCEL, Condition, Trigger, TriggerFile

#: Event types that are not the customer's own doing: they do not count as activity.
NOT_ACTIVITY = ("contact", "consent_changed", "identify", STOCK_EVENT)

_OPS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass
class Matched:
    """What a batch of events does: rows to fire and cancels to apply."""

    fires: list[Fire]
    cancels: list[Cancel]


def _count_reached(
    trigger_type: str, count: int, within: float | None, e: LedgerEvent, ledger: Ledger
) -> bool:
    """Whether the customer has ``count`` events of the type within the window ending at
    ``e``'s time (by event time, as stored up to ``e``)."""
    if count <= 1:
        return True
    seen = ledger.events_for([e.customer_id], types=[trigger_type], upto_seq=e.seq)
    times = np.array([x.event_time for x in seen.get(e.customer_id, [])], dtype=float)
    lo = e.event_time - float(within or 0.0)
    return int(((times >= lo) & (times <= e.event_time)).sum()) >= count


def _fire(t: Trigger, e: LedgerEvent) -> Fire:
    due = e.event_time + t.delay
    product = e.payload.get("product_id") if isinstance(e.payload, Mapping) else None
    return Fire(
        key=f"{t.id}:{e.event_id}",
        trigger_id=t.id,
        purpose=t.purpose,
        customer_id=e.customer_id,
        fired_at=e.event_time,
        due=due,
        expires=due + t.expires,
        event_id=e.event_id,
        product_id=product if isinstance(product, str) else None,
    )


def in_holdout(journey_id: str, customer_id: str, share: float) -> bool:
    """Whether a customer entering a journey is held out: a hash of both ids, uniform in
    [0, 1), below ``share`` (stable: the same customer is always on the same side)."""
    digest = hashlib.sha256(f"journey:{journey_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def match(
    spec: TriggerFile,
    events: Sequence[LedgerEvent],
    ledger: Ledger,
    has_pending: Callable[[str, str], bool],
) -> Matched:
    """The rows a batch of new ledger events fires and the cancels it makes.

    A trigger fires once per event id (its row's key), and not while the customer has a
    row of it still pending. ``has_pending(trigger_id, customer_id)`` answers from the
    store; rows fired earlier in the batch count too.
    """
    fires: list[Fire] = []
    cancels: list[Cancel] = []
    fired: set[tuple[str, str]] = set()
    for e in events:
        if e.customer_id == NO_CUSTOMER:
            cancels.extend(_product_cancels(spec, e))
            continue
        for t in spec.triggers:
            if e.type in t.cancel_on:
                cancels.append(
                    Cancel(
                        f"cancelled by {e.type} {e.event_id}",
                        e.event_time,
                        customer_id=e.customer_id,
                        triggers=(t.id,),
                    )
                )
            if t.event is None or t.event.type != e.type:
                continue
            if not _count_reached(e.type, t.event.count, t.event.within, e, ledger):
                continue
            if t.do == DO_CANCEL:
                cancels.append(
                    Cancel(
                        f"cancelled by {t.id} ({e.type} {e.event_id})",
                        e.event_time,
                        customer_id=e.customer_id,
                        purposes=(t.purpose,),
                    )
                )
                continue
            pair = (t.id, e.customer_id)
            if pair in fired or has_pending(*pair):
                continue
            fired.add(pair)
            fires.append(_fire(t, e))
        for j in spec.journeys:
            if e.type in j.exit_on or e.type in j.cancel_on:
                cancels.append(
                    Cancel(
                        f"left the journey on {e.type} {e.event_id}",
                        e.event_time,
                        customer_id=e.customer_id,
                        journeys=(j.id,),
                    )
                )
            if e.type != j.entry.type or not _count_reached(
                e.type, j.entry.count, j.entry.within, e, ledger
            ):
                continue
            held = in_holdout(j.id, e.customer_id, j.holdout)
            for s in j.steps:
                due = e.event_time + s.after
                fires.append(
                    Fire(
                        key=f"{j.id}.{s.id}:{e.customer_id}",  # once per customer
                        trigger_id=f"{j.id}.{s.id}",
                        purpose=j.purpose,
                        customer_id=e.customer_id,
                        fired_at=e.event_time,
                        due=due,
                        expires=due + s.expires,
                        event_id=e.event_id,
                        journey_id=j.id,
                        holdout=held,
                    )
                )
    return Matched(fires, cancels)


def _product_cancels(spec: TriggerFile, e: LedgerEvent) -> list[Cancel]:
    """A sell-out (stock_changed to 0 units) cancels every customer's pending rows of the
    triggers that cancel on it and name the product."""
    if e.type != STOCK_EVENT or float(e.payload.get("units", 1)) > 0:
        return []
    ids = tuple(t.id for t in spec.triggers if STOCK_EVENT in t.cancel_on)
    if not ids:
        return []
    return [
        Cancel(
            f"cancelled by sell-out of {e.payload.get('product_id')} {e.event_id}",
            e.event_time,
            triggers=ids,
            product_id=str(e.payload.get("product_id")),
        )
    ]


def unmet(conditions: Iterable[Condition], row: np.ndarray, index: Mapping[str, int]) -> str | None:
    """The first condition a customer's feature row fails, in words (None: all hold).

    A missing value (NaN: an unknown customer or feature) fails every comparison."""
    for c in conditions:
        value = float(row[index[c.feature]])
        if np.isnan(value) or not _OPS[c.op](value, c.value):
            return f"condition {c.feature} {c.op} {c.value:g} not met (value {value:g})"
    return None


def inactive(
    customer_ids: np.ndarray,
    last_active: np.ndarray,
    ledger_last: Mapping[str, float],
    now: float,
    inactive_for: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The customers inactive for ``inactive_for`` at ``now`` and their last activity: the
    later of the features' ``last_active_ts`` (0 = never) and their newest own event in the
    ledger. Customers never active at all are left out (nothing to win back)."""
    last = np.nan_to_num(np.asarray(last_active, dtype=float), nan=0.0)
    if ledger_last:
        # one hash join in Arrow: the position of each ledger customer among the ids
        at = pc.index_in(pa.array(list(ledger_last), pa.string()), value_set=pa.array(customer_ids))
        pos = at.to_numpy(zero_copy_only=False)
        times = np.fromiter(ledger_last.values(), dtype=float, count=len(ledger_last))
        known = ~np.isnan(pos.astype(float))
        np.maximum.at(last, pos[known].astype(np.int64), times[known])
    hit = (last > 0) & (last <= now - inactive_for)
    return customer_ids[hit], last[hit]


def scan_fires(t: Trigger, customer_ids: np.ndarray, last: np.ndarray, now: float) -> list[Fire]:
    """Rows of a scan trigger: one per customer and spell of inactivity (the key holds the
    last activity time, so the same spell fires once, a new one again)."""
    return [
        Fire(
            key=f"{t.id}:{cid}:{int(ts)}",
            trigger_id=t.id,
            purpose=t.purpose,
            customer_id=str(cid),
            fired_at=now,
            due=now + t.delay,
            expires=now + t.delay + t.expires,
        )
        for cid, ts in zip(customer_ids.tolist(), last.tolist(), strict=True)
    ]


def ledger_last_activity(ledger: Ledger) -> dict[str, float]:
    """Each customer's newest own event time in the ledger (one grouped query)."""
    rows = ledger.connection().execute(
        "SELECT customer_id, max(event_time) FROM events WHERE customer_id != ? "
        f"AND type NOT IN ({','.join('?' * len(NOT_ACTIVITY))}) GROUP BY customer_id",
        (NO_CUSTOMER, *NOT_ACTIVITY),
    )
    return {str(c): float(t) for c, t in rows}
