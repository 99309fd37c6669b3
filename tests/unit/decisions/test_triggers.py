"""The trigger file, what ledger events fire and cancel, and the durable store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nextbest.core.vocabulary import EVENT_TYPES
from nextbest.decisions.catalog import ConfigError, load_catalog
from nextbest.decisions.ledger import NO_CUSTOMER, Ledger, Vocabulary, validate_event
from nextbest.decisions.trigger_rules import (
    in_holdout,
    inactive,
    ledger_last_activity,
    match,
    scan_fires,
    unmet,
)
from nextbest.decisions.trigger_store import TriggerStore
from nextbest.decisions.triggers import load_triggers, parse_duration

ROOT = Path(__file__).resolve().parents[3]
CATALOG = load_catalog(ROOT / "config" / "catalog.yaml")
VOCAB = Vocabulary.from_terms(CATALOG.terms())

SPEC = """
version: "t"
triggers:
  - id: buy3
    event: {type: purchase, count: 3, within: 7d}
    channels: [email, call_center]
    expires: 10m
  - id: case_done
    event: {type: service_case_closed}
    delay: 2h
    cancel_on: [purchase, stock_changed]
    channels: [push]
  - id: stop
    event: {type: complaint}
    do: cancel_pending
journeys:
  - id: onboard
    entry: {type: identify}
    exit_on: [purchase]
    holdout: 0.5
    steps:
      - {id: welcome, after: 0d, channels: [email]}
      - {id: offer, after: 7d, channels: [email]}
"""


def _spec(tmp_path: Path, text: str = SPEC):
    p = tmp_path / "triggers.yaml"
    p.write_text(text)
    return load_triggers(p, EVENT_TYPES, CATALOG.channel_ids, CATALOG.purposes)


def _event(cid: str, typ: str, t: float, eid: str, **payload):
    return validate_event(cid, typ, t, payload, eid, vocab=VOCAB, received=t)


def test_shipped_file_and_durations() -> None:
    spec = load_triggers(ROOT / "config" / "triggers.yaml", VOCAB.types(), CATALOG.channel_ids)
    assert {"loan_interest", "cart", "winback", "onboarding.tip"} <= set(spec.all_ids())
    # the behaviour events are the catalog's: without them the file names unknown types
    with pytest.raises(ConfigError, match=r"\(id 'loan_interest'\): field 'event.type'"):
        load_triggers(ROOT / "config" / "triggers.yaml", EVENT_TYPES)
    assert parse_duration("10m") == 600 and parse_duration("2h") == 7200
    assert parse_duration("45d") == 45 * 86400 and parse_duration(90) == 90
    for bad in ("10 weeks", "-1s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            SPEC.replace("channels: [push]", "channels: [fax]"),
            "(id 'case_done'): field 'channels[0]'",
        ),
        (SPEC.replace("type: purchase, count", "type: pageview, count"), "field 'event.type'"),
        (SPEC.replace("within: 7d", "within: 7 weeks"), "(id 'buy3'): field 'event.within'"),
        (SPEC.replace(", within: 7d", ""), "(id 'buy3')"),
        (SPEC.replace("    event: {type: complaint}\n", ""), "(id 'stop')"),
        (SPEC.replace("do: cancel_pending", "do: shout"), "(id 'stop'): field 'do'"),
        (SPEC.replace("- {id: offer", "- {id: welcome"), "(id 'onboard'): field 'steps[1].id'"),
        (SPEC.replace("  - id: stop", "  - id: buy3"), "field 'id': repeats"),
        # YAML reads a bare `on` key as true: the schema's key is `event`, and says so.
        (SPEC.replace("event: {type: purchase", "on: {type: purchase"), "(id 'buy3')"),
    ],
)
def test_errors_name_file_trigger_and_field(tmp_path: Path, text: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        _spec(tmp_path, text)
    assert str(tmp_path / "triggers.yaml") in str(err.value) and where in str(err.value)


def test_unknown_feature_in_condition(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    when = "expires: 10m\n    when: [{feature: shoe_size, op: '>', value: 1}]"
    p.write_text(SPEC.replace("expires: 10m", when))
    with pytest.raises(ConfigError, match=r"\(id 'buy3'\): field 'when\[0\].feature'"):
        load_triggers(p, features=["open_cases"])


def test_count_within_window_duplicate_and_cancels(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    ledger = Ledger(tmp_path / "ledger.db")
    store = TriggerStore(tmp_path / "triggers.db")
    day = 86400.0
    t0 = 1_750_000_000.0
    events = [
        _event("C1", "purchase", t0 - 8 * day, "p0", amount=5),  # outside the 7 days
        _event("C1", "purchase", t0 - 2 * day, "p1", amount=5),
        _event("C1", "purchase", t0, "p2", amount=5),
    ]
    stored = [ledger.append(e).event for e in events]
    m = match(spec, stored, ledger, store.has_pending)
    assert [f.trigger_id for f in m.fires] == []  # two within 7 days, not three
    third = ledger.append(_event("C1", "purchase", t0 + 60, "p3", amount=5)).event
    m = match(spec, [third], ledger, store.has_pending)
    assert [(f.trigger_id, f.key) for f in m.fires] == [("buy3", "buy3:p3")]
    assert store.apply(m.fires, m.cancels, third.seq, t0) == (1, 0)
    # the same event read again (a crash before the cursor moved) fires nothing new
    assert store.apply(m.fires, m.cancels, third.seq, t0) == (0, 0)
    # a fourth purchase while buy3 waits does not fire it again
    fourth = ledger.append(_event("C1", "purchase", t0 + 120, "p4", amount=5)).event
    assert match(spec, [fourth], ledger, store.has_pending).fires == []

    # case_done: a purchase dated before the case closed does not cancel; one after does
    closed = ledger.append(_event("C2", "service_case_closed", t0, "c1")).event
    m = match(spec, [closed], ledger, store.has_pending)
    store.apply(m.fires, m.cancels, closed.seq, t0)
    (row,) = store.rows("C2")
    assert row.due == t0 + 7200 and row.status == "pending"
    early = ledger.append(_event("C2", "purchase", t0 - 10, "c2", amount=1)).event
    m = match(spec, [early], ledger, store.has_pending)
    assert store.apply(m.fires, m.cancels, early.seq, t0)[1] == 0
    late = ledger.append(_event("C2", "purchase", t0 + 10, "c3", amount=1)).event
    m = match(spec, [late], ledger, store.has_pending)
    assert store.apply(m.fires, m.cancels, late.seq, t0)[1] == 1
    assert store.rows("C2")[0].status == "cancelled"
    assert "purchase c3" in (store.rows("C2")[0].reason or "")

    # a complaint cancels every pending marketing row of the customer (buy3 of C1)
    complaint = ledger.append(_event("C1", "complaint", t0 + 300, "k1")).event
    m = match(spec, [complaint], ledger, store.has_pending)
    store.apply(m.fires, m.cancels, complaint.seq, t0)
    assert {r.status for r in store.rows("C1")} == {"cancelled"}
    assert store.cursor() == complaint.seq


def test_sell_out_cancels_rows_naming_the_product(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    ledger = Ledger(tmp_path / "ledger.db")
    store = TriggerStore(tmp_path / "triggers.db")
    t0 = 1_750_000_000.0
    a = ledger.append(_event("C3", "service_case_closed", t0, "a1")).event
    m = match(spec, [a], ledger, store.has_pending)
    # the row names the product of its firing event (a cart's); here set directly
    fire = m.fires[0].__class__(**{**m.fires[0].__dict__, "product_id": "phone_premium"})
    store.apply([fire], [], a.seq, t0)
    item = "phone_premium"
    restock = _event(NO_CUSTOMER, "stock_changed", t0 + 5, "s0", product_id=item, units=3)
    sold_out = _event(NO_CUSTOMER, "stock_changed", t0 + 9, "s1", product_id=item, units=0)
    for e in (restock, sold_out):
        e = ledger.append(e).event
        m = match(spec, [e], ledger, store.has_pending)
        store.apply(m.fires, m.cancels, e.seq, t0)
        if e.event_id == "s0":
            assert store.rows("C3")[0].status == "pending"
    assert store.rows("C3")[0].status == "cancelled"


def test_journey_entry_once_holdout_stable_and_exit(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert spec.journeys[0].holdout == 0.5
    draws = [in_holdout("onboard", f"C{i}", 0.5) for i in range(2000)]
    assert 0.45 < np.mean(draws) < 0.55 and draws == [
        in_holdout("onboard", f"C{i}", 0.5) for i in range(2000)
    ]
    ledger = Ledger(tmp_path / "ledger.db")
    store = TriggerStore(tmp_path / "triggers.db")
    t0 = 1_750_000_000.0
    payload = {"id_type": "email", "id_key": "email:" + "a" * 32}
    for i in range(2):  # a second entry event does not enter twice
        e = validate_event("C9", "identify", t0 + i, payload, f"i{i}", vocab=VOCAB, received=t0)
        ledger.connection().execute(
            "INSERT INTO events (event_id, customer_id, type, event_time, received_time, source,"
            " actor, dated, payload, digest) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (e.event_id, "C9", "identify", e.event_time, t0, "api", "a", 1, "{}", "d"),
        )
    events = ledger.events_after(0)
    m = match(spec, events, ledger, store.has_pending)
    store.apply(m.fires, m.cancels, events[-1].seq, t0)
    rows = store.rows("C9")
    assert [r.trigger_id for r in rows] == ["onboard.welcome", "onboard.offer"]
    assert rows[1].due == t0 + 7 * 86400
    assert {r.holdout for r in rows} == {in_holdout("onboard", "C9", 0.5)}
    buy = ledger.append(_event("C9", "purchase", t0 + 60, "b1", amount=1)).event
    m = match(spec, [buy], ledger, store.has_pending)
    store.apply(m.fires, m.cancels, buy.seq, t0)
    assert {r.status for r in store.rows("C9")} == {"cancelled"}


def test_inactivity_scan_conditions_and_outbox_states(tmp_path: Path) -> None:
    spec = load_triggers(ROOT / "config" / "triggers.yaml")
    winback = next(t for t in spec.triggers if t.id == "winback")
    day, now = 86400.0, 1_750_000_000.0
    ids = np.array(["A", "B", "C", "D"], dtype=object)
    last = np.array([now - 50 * day, now - 10 * day, 0.0, now - 60 * day])
    who, when = inactive(ids, last, {"D": now - day}, now, 45 * day)
    assert who.tolist() == ["A"]  # B recent, C never active, D active in the ledger
    fires = scan_fires(winback, who, when, now)
    assert [f.key for f in fires] == [f"winback:A:{int(now - 50 * day)}"]
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.append(_event("D", "purchase", now - day, "d1", amount=1))
    offer = "email_phone_upgrade"
    ledger.append(_event("D", "contact", now, "d2", channel="email", action_id=offer))
    assert ledger_last_activity(ledger) == {"D": now - day}  # a contact is not activity

    tip = next(s for s in spec.journeys[0].steps if s.id == "tip")
    index = {"app_open_count_7d": 0}
    assert unmet(tip.when, np.array([0.0]), index) is None
    assert "app_open_count_7d == 0 not met (value 2)" in unmet(tip.when, np.array([2.0]), index)
    assert unmet(tip.when, np.array([np.nan]), index) is not None

    store = TriggerStore(tmp_path / "triggers.db")
    store.scanned("winback", fires, now)
    assert store.scanned("winback", fires, now) == 0 and store.scan_last_run("winback") == now
    (row,) = store.due(now)
    hooks = ["http://a", "http://b"]
    assert store.send(row, "dec-1", "email", "email_phone_upgrade", b"{}", hooks, now)
    assert not store.send(row, "dec-2", "email", "email_phone_upgrade", b"{}", ["http://a"], now)
    rows = store.outbox_due(now)
    assert {(r.decision_id, r.webhook) for r in rows} == {
        ("dec-1", "http://a"),
        ("dec-1", "http://b"),
    }
    store.failed(rows[0], "HTTP 500", None)
    store.delivered(rows[1], now)
    assert [r.status for r in store.outbox("dead")] == ["dead"]
    assert store.retry(None, now + 1) == 1 and store.outbox("dead") == []
    assert store.outbox_due(now + 1)[0].attempts == 0


def test_postpone_moves_due_and_expiry_of_a_pending_row_only(tmp_path: Path) -> None:
    from nextbest.decisions.trigger_store import Fire

    store = TriggerStore(tmp_path / "triggers.db")
    now = 1_750_000_000.0
    store.scanned("t", [Fire("t:1", "t", "marketing", "C1", now, now, now + 60)], now)
    (row,) = store.due(now)
    assert store.postpone(row.id, now + 3600, now + 3660, now)
    assert store.due(now + 3599) == []
    (moved,) = store.due(now + 3600)
    assert moved.expires == now + 3660 and "waits until" in (moved.reason or "")
    store.close_row(row.id, "cancelled", "test", now)
    assert not store.postpone(row.id, now + 7200, now + 7260, now)
