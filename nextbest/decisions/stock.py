"""Stock that moves: the stock table, ``stock_changed`` events and the request context.

Stock is product-level state, not a customer's. Its level for a decision comes from, in
order of precedence:

1. the request context's ``stock`` object (product id -> units), where the policy says so
   (``suppression.context_stock``), for that one decision;
2. the newest of the stock table and the ledger's ``stock_changed`` events of the
   product: the newest event *by event time* wins whatever the arrival order, and the
   table counts as of its file's modification time (an event dated after the file was
   written overrides the table's figure; a table written after the event overrides it).

:class:`LiveStock` keeps the merged levels as one array aligned with
``Plan.stock_products`` and refreshes them at most once per ``refresh_s`` (one stat of
the table file, re-read only when its modification time changed; one indexed ledger
query for the stock events stored since the last refresh), so ``/decide`` reads an
array, not a file or the ledger.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nextbest.decisions.catalog import ConfigError
from nextbest.decisions.ledger import STOCK_EVENT, Ledger
from nextbest.decisions.runtime import load_stock

log = logging.getLogger(__name__)

#: Seconds between two refreshes of the table and the ledger's stock events.
REFRESH_S = 1.0
#: The request-context key of per-decision stock levels.
CONTEXT_KEY = "stock"


class StockContextError(ValueError):
    """A request's ``context.stock`` that cannot be used; the message names the field."""


class LiveStock:
    """Stock levels of ``products`` from the table at ``path`` and the ledger's events."""

    def __init__(
        self,
        path: Path,
        ledger: Ledger | None,
        products: Sequence[str],
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.ledger = ledger
        self.products = list(products)
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pos = {p: j for j, p in enumerate(self.products)}
        self._mtime_ns: int | None = None
        self._table: dict[str, float] = {}
        self._table_time = -math.inf
        # newest event per product: (event time, ledger position, units)
        self._events: dict[str, tuple[float, int, float]] = {}
        self._seq = 0
        self._checked = -math.inf
        self._vector = np.full(len(self.products), np.nan)
        self._read_table(initial=True)
        self._read_events()
        self._merge()

    def vector(self) -> np.ndarray:
        """Units per product (NaN: unknown), refreshed if ``refresh_s`` has passed."""
        if self._clock() - self._checked >= self.refresh_s:
            with self._lock:
                if self._clock() - self._checked >= self.refresh_s:
                    changed = self._read_table() | self._read_events()
                    if changed:
                        self._merge()
                    self._checked = self._clock()
        return self._vector

    def _read_table(self, initial: bool = False) -> bool:
        """Re-read the table if its modification time changed; whether anything changed."""
        try:
            mtime_ns: int | None = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime_ns = None
        if mtime_ns == self._mtime_ns and not initial:
            return False
        try:
            table = load_stock(self.path) if mtime_ns is not None else {}
        except ConfigError:
            if initial:
                raise
            # a file caught mid-write or broken: keep the last good table, try again later
            log.warning("stock table %s unreadable; keeping the previous levels", self.path)
            return False
        self._mtime_ns, self._table = mtime_ns, table
        self._table_time = -math.inf if mtime_ns is None else mtime_ns / 1e9
        if not initial:
            log.info("stock table %s re-read (%d products)", self.path, len(table))
        return True

    def _read_events(self) -> bool:
        """Fold the stock events stored since the last read in; whether any arrived."""
        if self.ledger is None:
            return False
        events = self.ledger.events_of_type(STOCK_EVENT, after_seq=self._seq)
        for e in events:
            product = str(e.payload["product_id"])
            key = (e.event_time, e.seq, float(e.payload["units"]))
            if product not in self._events or key[:2] > self._events[product][:2]:
                self._events[product] = key
            self._seq = max(self._seq, e.seq)
        return bool(events)

    def _merge(self) -> None:
        out = np.full(len(self.products), np.nan)
        for p, j in self._pos.items():
            level = self._table.get(p, np.nan)
            event = self._events.get(p)
            if event is not None and (np.isnan(level) or event[0] >= self._table_time):
                level = event[2]
            out[j] = level
        self._vector = out


def context_stock(
    context: Mapping[str, Any] | None, products: frozenset[str]
) -> dict[str, float] | None:
    """The ``stock`` object of a request context checked (catalog product ids -> finite
    units >= 0), or None when the context has none. Raises :class:`StockContextError`
    naming the field."""
    if not context or CONTEXT_KEY not in context:
        return None
    value = context[CONTEXT_KEY]
    if not isinstance(value, Mapping):
        raise StockContextError("context.stock: must be an object of product id -> units")
    out: dict[str, float] = {}
    for product, units in value.items():
        if not isinstance(product, str) or product not in products:
            raise StockContextError(
                f"context.stock: {str(product)[:64]!r} is not a catalog product"
            )
        field = f"context.stock.{product}"
        if isinstance(units, bool) or not isinstance(units, int | float):
            raise StockContextError(f"{field}: must be a number")
        if not math.isfinite(float(units)) or units < 0:
            raise StockContextError(f"{field}: must be a finite number >= 0")
        out[product] = float(units)
    return out


def with_context(
    base: np.ndarray, products: Sequence[str], overrides: Mapping[str, float] | None
) -> np.ndarray:
    """``base`` (aligned with ``products``) with the context's levels put over it."""
    if not overrides:
        return base
    out = base.copy()
    for j, p in enumerate(products):
        if p in overrides:
            out[j] = overrides[p]
    return out
