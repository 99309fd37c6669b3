"""Online limits: the counters of the policy's per-day and total limits, kept in the event
ledger's SQLite file, and the pacing rule of a day's limits.

Every online decision that offers a limited action reserves its weight (1, or the
action's contact cost) in one ``BEGIN IMMEDIATE`` transaction: it reads the limit's use
in the current period, and adds to it only if the result stays within what the limit
allows now. SQLite serialises these transactions across threads, workers and processes,
so no limit is ever exceeded however many requests arrive at once. An offer counts when
it is decided (an answer promises the capacity), not when it is delivered.

Pacing (per-day limits): by a share ``f`` of the UTC day elapsed, at most
``max * min(1, f + pacing_slack)`` may be used, so a budget is not spent by the morning's
traffic. Per-run limits are batch only; total limits are not paced.

When a customer's best action is refused, the next ranked one is tried, and so on
(:func:`reserve_decisions`); the refused actions read ``CAPACITY`` with the limit's name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from nextbest.decisions.capacity import LimitRows, limit_names, rewrite
from nextbest.decisions.ledger import Ledger
from nextbest.decisions.outcome import Decisions
from nextbest.decisions.policy import Limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS limit_usage (
    limit_id TEXT NOT NULL,
    period TEXT NOT NULL,
    used REAL NOT NULL,
    PRIMARY KEY (limit_id, period)
);
"""
#: Periods the online counters keep (per-run limits belong to a batch run).
ONLINE_PERIODS = ("day", "total")


def period_key(limit: Limit, now: datetime) -> str:
    """The counter's period of ``limit`` at ``now``: the UTC day, or ``total``."""
    if limit.per == "day":
        return now.astimezone(UTC).date().isoformat()
    return limit.per


def allowance(limit: Limit, now: datetime) -> float:
    """What ``limit`` allows to be used by ``now``: paced over the UTC day for a per-day
    limit (``max * min(1, f + pacing_slack)``, ``f`` the share of the day elapsed)."""
    if limit.per != "day":
        return limit.max
    t = now.astimezone(UTC)
    f = (t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6) / 86_400
    return limit.max * min(1.0, f + limit.pacing_slack)


class LimitCounters:
    """The use of each limit per period, in the ledger's file (table ``limit_usage``)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.ledger.connection().executescript(_SCHEMA)

    def used(self, limits: Sequence[Limit], now: datetime) -> dict[str, float]:
        """Limit id -> what its current period has used."""
        conn = self.ledger.connection()
        out = {}
        for limit in limits:
            row = conn.execute(
                "SELECT used FROM limit_usage WHERE limit_id = ? AND period = ?",
                (limit.id, period_key(limit, now)),
            ).fetchone()
            out[limit.id] = float(row[0]) if row else 0.0
        return out

    def reserve(self, limits: Sequence[Limit], weights: np.ndarray, now: datetime) -> str | None:
        """Add ``weights[k]`` to each limit's use if every one stays within its allowance
        now; all or nothing, atomically. Returns None when reserved, else the id of the
        first limit that had no room (nothing is changed then)."""
        conn = self.ledger.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            updates = []
            for limit, w in zip(limits, weights.tolist(), strict=True):
                if w <= 0:
                    continue
                key = period_key(limit, now)
                row = conn.execute(
                    "SELECT used FROM limit_usage WHERE limit_id = ? AND period = ?",
                    (limit.id, key),
                ).fetchone()
                used = float(row[0]) if row else 0.0
                if used + w > allowance(limit, now):
                    conn.execute("ROLLBACK")
                    return limit.id
                updates.append((limit.id, key, used + w))
            conn.executemany(
                "INSERT INTO limit_usage (limit_id, period, used) VALUES (?, ?, ?) "
                "ON CONFLICT (limit_id, period) DO UPDATE SET used = excluded.used",
                updates,
            )
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return None


def reserve_decisions(
    d: Decisions, rows: LimitRows, counters: LimitCounters, now: datetime
) -> None:
    """Reserve each row's chosen action in the counters, falling back down its ranking
    when a limit has no room (an explored pick without room is no action), and rewrite
    ``d`` in place (:func:`nextbest.decisions.capacity.rewrite`)."""
    if not rows.limits:
        return
    cp = d.plan.channels[d.context.channel]
    local_of = np.full(len(d.plan.action_ids), -1)
    local_of[cp.action_idx] = np.arange(len(cp.action_idx))
    allocated = np.where(d.holdout, -1, d.chosen).astype(np.intp)
    keep_pick = np.ones(d.n, dtype=bool)
    for i in np.flatnonzero(~d.holdout & (d.chosen >= 0)).tolist():
        tries = [int(d.chosen[i])]
        if not d.explored[i]:
            tries += [int(c) for c in d.ranked[i] if c >= 0 and c != d.chosen[i]]
        allocated[i] = -1
        for c in tries:
            w = rows.weights[:, local_of[c]]
            if not (w > 0).any() or counters.reserve(rows.limits, w, now) is None:
                allocated[i] = c
                break
        if d.explored[i] and allocated[i] < 0:
            keep_pick[i] = False
    rewrite(d, allocated, keep_pick, limit_names(rows, cp, len(d.plan.action_ids)))
