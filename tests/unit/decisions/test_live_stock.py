"""Stock that moves: the table re-read when its file changes, ``stock_changed`` events
(newest by event time wins, whatever the arrival order), the table against the events by
time, refreshes at most once per interval, and the request context's stock checked."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.decisions.ledger import NO_CUSTOMER, EventError, Ledger, Vocabulary, validate_event
from nextbest.decisions.stock import LiveStock, StockContextError, context_stock, with_context

PRODUCTS = ["phone", "tablet", "watch"]
VOCAB = Vocabulary(products=frozenset(PRODUCTS))
T0 = 1_767_225_600.0  # 2026-01-01


class Clock:
    """A settable monotonic clock (the refresh interval is what is tested)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _table(path: Path, levels: dict[str, int], mtime: float) -> None:
    pd.DataFrame({"product_id": list(levels), "stock": list(levels.values())}).to_parquet(path)
    os.utime(path, (mtime, mtime))


def _stock_event(ledger: Ledger, eid: str, product: str, units: float, t: float) -> None:
    event = validate_event(
        NO_CUSTOMER,
        "stock_changed",
        t,
        {"product_id": product, "units": units},
        event_id=eid,
        vocab=VOCAB,
        received=t + 60,
    )
    ledger.append(event)


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, Ledger, Clock]:
    path = tmp_path / "stock.parquet"
    _table(path, {"phone": 5, "tablet": 0}, mtime=T0)
    return path, Ledger(tmp_path / "ledger.db"), Clock()


def test_newest_event_by_event_time_wins_whatever_the_arrival_order(parts) -> None:
    path, ledger, clock = parts
    stock = LiveStock(path, ledger, PRODUCTS, clock=clock)
    np.testing.assert_array_equal(stock.vector(), [5.0, 0.0, np.nan])
    _stock_event(ledger, "out", "phone", 0, T0 + 100)
    _stock_event(ledger, "restock", "phone", 12, T0 + 300)
    _stock_event(ledger, "late-old", "phone", 0, T0 + 200)  # arrives last, dated between
    _stock_event(ledger, "watch", "watch", 3, T0 - 50)  # not in the table: the event counts
    assert stock.vector()[0] == 5.0  # within the refresh interval: the cached levels
    clock.t = 1.0
    np.testing.assert_array_equal(stock.vector(), [12.0, 0.0, 3.0])


def test_the_table_is_re_read_when_it_changes_and_counts_as_of_its_file_time(parts) -> None:
    path, ledger, clock = parts
    stock = LiveStock(path, ledger, PRODUCTS, clock=clock)
    _stock_event(ledger, "tablet-in", "tablet", 7, T0 + 100)
    clock.t = 1.0
    assert stock.vector()[1] == 7.0  # the event is newer than the table
    _table(path, {"phone": 9, "tablet": 2}, mtime=T0 + 500)  # a newer table
    clock.t = 1.5
    assert stock.vector()[0] == 5.0  # not checked again within the interval
    clock.t = 2.0
    np.testing.assert_array_equal(stock.vector()[:2], [9.0, 2.0])
    _table(path, {"phone": 9, "tablet": 2, "watch": 1}, mtime=T0 + 500.5)
    path.write_bytes(b"not parquet")  # broken mid-write: the last good table stays
    clock.t = 3.0
    np.testing.assert_array_equal(stock.vector()[:2], [9.0, 2.0])
    path.unlink()  # no table: only the events are known
    clock.t = 4.0
    np.testing.assert_array_equal(stock.vector(), [np.nan, 7.0, np.nan])


def test_a_stock_event_is_checked_field_by_field() -> None:
    def send(payload: dict, customer: str = NO_CUSTOMER) -> None:
        validate_event(customer, "stock_changed", T0, payload, vocab=VOCAB, received=T0)

    with pytest.raises(EventError, match=r"^payload\.product_id: must be one of"):
        send({"product_id": "sofa", "units": 1})
    for bad in (-1, float("nan"), float("inf"), "3", True):
        with pytest.raises(EventError, match=r"^payload\.units: must be"):
            send({"product_id": "phone", "units": bad})
    with pytest.raises(EventError, match=r"^payload\.units: is required"):
        send({"product_id": "phone"})
    with pytest.raises(EventError, match=r"^customer: stock_changed is about a product"):
        send({"product_id": "phone", "units": 1}, customer="c1")
    with pytest.raises(EventError, match=r"^customer: required for purchase"):
        validate_event(NO_CUSTOMER, "purchase", T0, {"amount": 1.0}, vocab=VOCAB, received=T0)


def test_context_stock_is_checked_and_overrides_only_the_products_it_names() -> None:
    products = frozenset(PRODUCTS)
    assert context_stock(None, products) is None
    assert context_stock({"placement": "home"}, products) is None
    levels = context_stock({"stock": {"phone": 0, "watch": 2.5}}, products)
    assert levels == {"phone": 0.0, "watch": 2.5}
    base = np.array([5.0, 0.0, np.nan])
    np.testing.assert_array_equal(with_context(base, PRODUCTS, levels), [0.0, 0.0, 2.5])
    np.testing.assert_array_equal(base, [5.0, 0.0, np.nan])  # the shared levels untouched
    for bad, field in (
        ({"stock": [1]}, r"context\.stock: must be an object"),
        ({"stock": {"sofa": 1}}, r"context\.stock: 'sofa' is not a catalog product"),
        ({"stock": {"phone": -1}}, r"context\.stock\.phone: must be a finite number >= 0"),
        ({"stock": {"phone": "many"}}, r"context\.stock\.phone: must be a number"),
    ):
        with pytest.raises(StockContextError, match=field):
            context_stock(bad, products)
