"""Stock that moves, over real HTTP (the session's ``bentoml serve``, two workers): a
``stock_changed`` to 0 takes an in-stock offer away and a later-dated restock brings it
back, an older event arriving late does not win, a malformed one is refused naming the
field, and a request's ``context.stock`` overrides the stock for that decision (the
default policy allows it)."""

from __future__ import annotations

import os
import time

import httpx
import pandas as pd
import pytest

from devtools.process import Server
from nextbest.decisions.stock import REFRESH_S
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]

OFFER, PRODUCT = "email_phone_upgrade", "phone_premium"


def _decide(service: Server, cid: str, context: dict | None = None) -> httpx.Response:
    body = {"customer": {"id": cid}, "channel": "email", "k": 5, "context": context or {}}
    return httpx.post(f"{service.url}/decide", json=body, headers=service.headers, timeout=30)


def _offered(service: Server, cid: str, context: dict | None = None) -> bool:
    r = _decide(service, cid, context)
    assert r.status_code == 200, r.text
    d = r.json()
    if any(a["action_id"] == OFFER for a in d["actions"]):
        return True
    codes = {e["action_id"]: e["reasons"][0]["code"] for e in d["excluded"]}
    assert codes.get(OFFER) == "OUT_OF_STOCK", d
    return False


def _stock(service: Server, units: object, at: float, eid: str) -> httpx.Response:
    body = {
        "type": "stock_changed",
        "timestamp": at,
        "payload": {"product_id": PRODUCT, "units": units},
        "event_id": eid,
    }
    return httpx.post(f"{service.url}/events", json=body, headers=service.headers, timeout=30)


def _settle() -> None:
    """Every worker refreshes its stock at most once per REFRESH_S: wait one interval."""
    time.sleep(REFRESH_S + 0.3)


@pytest.fixture(scope="module")
def customer(world: World, service: Server) -> str:
    """A treatment customer offered the phone upgrade (which needs stock) now."""
    latest = {}
    for view in ("customer_consent", "customer_holdings"):
        df = pd.read_parquet(world.settings.features_dir / f"{view}.parquet")
        latest[view] = (
            df.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
        ).set_index("customer_id")
    consent, holdings = latest["customer_consent"], latest["customer_holdings"]
    ok = consent.index[consent["consent_marketing_email"] == 1]
    ok = [c for c in ok if holdings.loc[c, f"holds_{PRODUCT}"] == 0]
    for cid in ok[len(ok) // 2 :][:200]:
        r = _decide(service, cid)
        if r.status_code == 200 and any(a["action_id"] == OFFER for a in r.json()["actions"]):
            return cid
    pytest.fail("no customer is offered the phone upgrade")


def test_stock_events_take_an_offer_away_and_bring_it_back_by_event_time(
    world: World, service: Server, customer: str
) -> None:
    # The table counts as of its file's time: the events are dated after it, before now.
    table_time = os.stat(world.settings.stock_path).st_mtime
    now = time.time()
    assert now - table_time > 2, "the stock table was written too recently to date events"

    def at(share: float) -> float:
        return table_time + share * (now - table_time)

    assert _stock(service, 0, at(0.5), "stock-out").status_code == 200
    _settle()
    assert not _offered(service, customer)
    assert _stock(service, 40, at(0.8), "stock-restock").status_code == 200
    _settle()
    assert _offered(service, customer)
    # an older sell-out arrives after the restock: the restock is newer and stays
    r = _stock(service, 0, at(0.65), "stock-late-old")
    assert r.status_code == 200 and r.json()["applied"] is True
    _settle()
    assert all(_offered(service, customer) for _ in range(4))  # either worker


def test_a_malformed_stock_event_is_refused_naming_the_field(service: Server) -> None:
    for units, field in ((-3, "payload.units"), ("many", "payload.units")):
        r = _stock(service, units, time.time(), f"bad-{units}")
        assert r.status_code == 400 and field in r.text, r.text
    body = {"type": "stock_changed", "customer": {"id": "c1"}, "payload": {}}
    r = httpx.post(f"{service.url}/events", json=body, headers=service.headers, timeout=30)
    assert r.status_code == 400 and "customer" in r.text, r.text


def test_context_stock_overrides_the_stock_for_one_decision(service: Server, customer: str) -> None:
    assert _offered(service, customer)
    assert not _offered(service, customer, {"stock": {PRODUCT: 0}})
    assert _offered(service, customer, {"stock": {PRODUCT: 3}})
    assert _offered(service, customer)  # the next decision without it: stock as before
    r = _decide(service, customer, {"stock": {PRODUCT: -1}})
    assert r.status_code == 400 and f"context.stock.{PRODUCT}" in r.text, r.text
