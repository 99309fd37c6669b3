"""Events through the ledger, over real HTTP (``bentoml serve``, two workers): event time
wins over arrival order, windows age out, every event counts exactly once under
concurrency and retries, a refused event changes nothing, and consent sent to the service
survives a features build."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest

from devtools.process import Server
from nextbest.decisions.ledger import Ledger
from nextbest.demo.generate import ACTIONS
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MARKETING = {a.action_id for a in ACTIONS if a.purpose == "marketing"}
EMAIL_MARKETING = {
    a.action_id for a in ACTIONS if a.purpose == "marketing" and a.channel == "email"
}


def _decide(service: Server, cid: str) -> dict:
    r = httpx.post(
        f"{service.url}/decide",
        headers=service.headers,
        json={"customer": {"id": cid}, "channel": "email"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _post_event(
    service: Server, cid: str, type_: str, payload: dict | None = None, **kw
) -> httpx.Response:
    body = {"customer": {"id": cid}, "type": type_, "payload": payload or {}, **kw}
    return httpx.post(f"{service.url}/events", headers=service.headers, json=body, timeout=60)


def _event(service: Server, cid: str, type_: str, payload: dict | None = None, **kw) -> dict:
    r = _post_event(service, cid, type_, payload, **kw)
    assert r.status_code == 200, r.text
    return r.json()


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def _codes(decision: dict) -> dict[str, str]:
    return {e["action_id"]: e["reasons"][0]["code"] for e in decision["excluded"]}


def _latest(world: World, view: str) -> pd.DataFrame:
    df = pd.read_parquet(world.settings.features_dir / f"{view}.parquet")
    return (
        df.sort_values("event_timestamp")
        .drop_duplicates("customer_id", keep="last")
        .set_index("customer_id")
    )


@pytest.fixture(scope="module")
def offered(world: World, service: Server) -> list[str]:
    """Customers offered email marketing now; taken from the end of the customer list, so
    other modules' event tests (which take from the start) do not touch them."""
    consent = _latest(world, "customer_consent")
    cases = _latest(world, "customer_service")
    contacts = _latest(world, "customer_contacts")
    ok = consent.index[
        (consent["consent_marketing_email"] == 1)
        & (cases.reindex(consent.index)["open_cases"] == 0)
        & (contacts.reindex(consent.index)["contacts_email_30d"] == 0)
    ]
    found = []
    for cid in reversed(list(ok)):
        d = _decide(service, cid)
        ranked_both = not EMAIL_MARKETING & set(_codes(d))
        if d["group"] == "decided" and d["chosen_action"] in EMAIL_MARKETING and ranked_both:
            found.append(cid)
        if len(found) >= 7:
            break
    assert len(found) >= 7, "too few customers with an email offer"
    return found


def test_newest_consent_wins_whatever_the_arrival_order(
    world: World, service: Server, offered: list[str]
) -> None:
    cid = offered[0]
    cell = {"purpose": "marketing", "channel": "email"}
    _event(
        service,
        cid,
        "consent_changed",
        {**cell, "granted": False},
        timestamp=_ago(hours=1),
        event_id=f"{cid}-withdraw",
        source="preference_centre",
    )
    # a grant dated a day earlier arrives after the withdrawal: it does not turn it back on
    _event(
        service,
        cid,
        "consent_changed",
        {**cell, "granted": True},
        timestamp=_ago(days=1),
        event_id=f"{cid}-old-grant",
        source="crm",
    )
    d = _decide(service, cid)
    assert d["chosen_action"] not in EMAIL_MARKETING
    assert {_codes(d)[a] for a in EMAIL_MARKETING} == {"NO_CONSENT"}
    r = httpx.get(f"{service.url}/customers/{cid}/consent", headers=service.headers, timeout=30)
    assert r.status_code == 200, r.text
    changes = r.json()["changes"]
    assert [(c["event_id"], c["granted"], c["source"]) for c in changes] == [
        (f"{cid}-old-grant", True, "crm"),
        (f"{cid}-withdraw", False, "preference_centre"),
    ]
    assert all(c["actor"] for c in changes)
    nobody = f"{service.url}/customers/nobody/consent"
    assert httpx.get(nobody, headers=service.headers, timeout=30).status_code == 404


def test_a_case_is_open_by_its_newest_open_and_close_in_event_time(
    service: Server, offered: list[str]
) -> None:
    cid = offered[1]
    # the close (an hour ago) arrives before the open (two hours ago): the case is closed
    _event(service, cid, "service_case_closed", {"case_id": "k1"}, timestamp=_ago(hours=1))
    _event(service, cid, "service_case_opened", {"case_id": "k1"}, timestamp=_ago(hours=2))
    assert _decide(service, cid)["chosen_action"] in EMAIL_MARKETING
    # reopened since: marketing pauses
    _event(service, cid, "service_case_opened", {"case_id": "k1"}, timestamp=_ago(minutes=1))
    d = _decide(service, cid)
    assert d["chosen_action"] not in MARKETING
    assert {_codes(d)[a] for a in EMAIL_MARKETING} == {"CASE_OPEN"}


def test_an_eight_day_old_contact_does_not_count_against_the_weekly_cap(
    service: Server, offered: list[str]
) -> None:
    cid = offered[2]
    _event(service, cid, "contact", {"channel": "email"}, timestamp=_ago(days=8))
    assert _decide(service, cid)["chosen_action"] in EMAIL_MARKETING
    _event(service, cid, "contact", {"channel": "email"}, timestamp=_ago(hours=1))
    d = _decide(service, cid)
    assert d["chosen_action"] == "no_action"
    assert {_codes(d)[a] for a in EMAIL_MARKETING} == {"CHANNEL_CAP"}


def test_concurrent_events_for_one_customer_are_each_applied_once(
    world: World, service: Server, offered: list[str]
) -> None:
    cid = offered[3]
    ids = [f"{cid}-purchase-{i}" for i in range(100)]
    when = _ago(hours=2)

    def send(eid: str) -> httpx.Response:
        return _post_event(service, cid, "purchase", {"amount": 1.0}, timestamp=when, event_id=eid)

    with ThreadPoolExecutor(20) as pool:
        first = list(pool.map(send, ids))
    assert [r.status_code for r in first] == [200] * 100, {
        r.text for r in first if r.status_code != 200
    }
    assert all(r.json()["applied"] for r in first)
    # every one sent again (a client retrying): acknowledged, not applied again
    with ThreadPoolExecutor(20) as pool:
        again = list(pool.map(send, ids))
    assert [r.status_code for r in again] == [200] * 100
    assert not any(r.json()["applied"] for r in again)
    stored = Ledger(world.settings.ledger_path).events_for([cid])[cid]
    assert sorted(e.event_id for e in stored) == sorted(ids)
    # the same id with other content is refused and changes nothing
    r = _post_event(service, cid, "purchase", {"amount": 2.0}, event_id=ids[0])
    assert r.status_code == 409, r.text
    assert len(Ledger(world.settings.ledger_path).events_for([cid])[cid]) == 100


@pytest.mark.parametrize(
    ("type_", "payload", "extra", "field"),
    [
        ("purchase", {"amount": "lots"}, {}, "payload.amount"),
        ("purchase", {"amount": None}, {}, "payload.amount"),
        ("purchase", {"amount": 1e20}, {}, "payload.amount"),
        ("purchase", {"amount": 5, "product_id": "spaceship"}, {}, "payload.product_id"),
        (
            "consent_changed",
            {"purpose": "marketing", "channel": "email", "granted": "no"},
            {},
            "payload.granted",
        ),
        ("contact", {"channel": "fax"}, {}, "payload.channel"),
        ("complaint", {}, {"timestamp": "9999-01-01T00:00:00Z"}, "timestamp"),
        ("complaint", {}, {"timestamp": "not a time"}, "timestamp"),
        ("complaint", {}, {"event_id": "has spaces"}, "event_id"),
    ],
)
def test_a_refused_event_is_a_4xx_naming_the_field_and_changes_nothing(
    world: World, service: Server, offered: list[str], type_, payload, extra, field
) -> None:
    cid = offered[4]
    ledger = Ledger(world.settings.ledger_path)
    before = ledger.count()
    r = _post_event(service, cid, type_, payload, **extra)
    assert r.status_code == 400, r.text
    assert field in r.text
    assert ledger.count() == before


def test_a_withdrawal_survives_features_build(
    world: World, service: Server, offered: list[str]
) -> None:
    """Dated before the snapshot time, so the build itself must read it from the ledger."""
    from nextbest.pipeline import build_features

    cid = offered[5]
    as_of = world.settings.as_of
    withdrawn_at = (as_of - timedelta(hours=1)).isoformat()
    _event(
        service,
        cid,
        "consent_changed",
        {"purpose": "marketing", "channel": "email", "granted": False},
        timestamp=withdrawn_at,
        event_id=f"{cid}-backdated-withdrawal",
    )
    assert _decide(service, cid)["chosen_action"] not in EMAIL_MARKETING
    build_features(world.settings)
    assert _latest(world, "customer_consent").loc[cid, "consent_marketing_email"] == 0
    d = _decide(service, cid)
    assert d["chosen_action"] not in EMAIL_MARKETING
    assert {_codes(d)[a] for a in EMAIL_MARKETING} == {"NO_CONSENT"}


def test_a_reported_delivery_counts_once_against_the_cap(
    service: Server, offered: list[str]
) -> None:
    cid = offered[6]
    d = _decide(service, cid)
    report = d["report_delivery"]
    assert report["payload"] == {
        "channel": "email",
        "action_id": d["chosen_action"],
        "decision_id": d["decision_id"],
    }
    # served but not reported: not a contact
    assert _decide(service, cid)["chosen_action"] in EMAIL_MARKETING
    body = {**report, "timestamp": _ago(minutes=5)}
    first = httpx.post(f"{service.url}/events", headers=service.headers, json=body, timeout=30)
    again = httpx.post(f"{service.url}/events", headers=service.headers, json=body, timeout=30)
    assert first.json()["applied"] and not again.json()["applied"]
    after = _decide(service, cid)
    assert after["chosen_action"] == "no_action" and after["report_delivery"] is None
    assert {_codes(after)[a] for a in EMAIL_MARKETING} <= {"CHANNEL_CAP", "COOLDOWN"}
