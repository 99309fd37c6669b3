"""The event ledger: validation before writing, idempotent durable appends, appends from
many processes, and state derived in event time."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from nextbest.decisions.ledger import (
    ConflictError,
    EventError,
    Ledger,
    LedgerEvent,
    Vocabulary,
    consent_history,
    validate_event,
)
from nextbest.decisions.ledger_state import apply_ledger, apply_overrides, derive
from tests.conftest import demo_terms

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()
DAY = 86_400.0
VOCAB = Vocabulary.from_terms(demo_terms())


def ev(type_: str, payload: dict, t: float, event_id: str | None = None, **kw) -> LedgerEvent:
    return validate_event(
        "C1",
        type_,
        t,
        payload,
        event_id=event_id,
        received=kw.pop("received", NOW),
        vocab=VOCAB,
        **kw,
    )


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "timestamp", "payload", "field"),
    [
        ("teleport", None, {}, "type"),
        ("purchase", None, {"amount": "12"}, "payload.amount"),
        ("purchase", None, {"amount": None}, "payload.amount"),
        ("purchase", None, {"amount": float("nan")}, "payload.amount"),
        ("purchase", None, {"amount": 1e20}, "payload.amount"),
        ("purchase", None, {"amount": 2**70}, "payload.amount"),
        ("purchase", None, {"amount": -1}, "payload.amount"),
        ("purchase", None, {"amount": True}, "payload.amount"),
        ("purchase", None, {"amount": 5, "product_id": "spaceship"}, "payload.product_id"),
        ("purchase", None, {"amount": 5, "colour": "red"}, "payload.colour"),
        (
            "consent_changed",
            None,
            {"purpose": "marketing", "channel": "fax", "granted": False},
            "payload.channel",
        ),
        (
            "consent_changed",
            None,
            {"purpose": "spam", "channel": "email", "granted": False},
            "payload.purpose",
        ),
        (
            "consent_changed",
            None,
            {"purpose": "marketing", "channel": "email", "granted": "no"},
            "payload.granted",
        ),
        ("contact", None, {"channel": "email", "action_id": "nope"}, "payload.action_id"),
        ("contact", None, {"channel": "email", "decision_id": "has space"}, "payload.decision_id"),
        ("complaint", "yesterday", {}, "timestamp"),
        ("complaint", "9999-01-01T00:00:00Z", {}, "timestamp"),
        ("complaint", "1677-09-22T00:00:00Z", {}, "timestamp"),
        ("complaint", float("inf"), {}, "timestamp"),
        ("complaint", None, [1, 2], "payload"),
    ],
)
def test_every_malformed_field_is_refused_by_name(type_, timestamp, payload, field) -> None:
    with pytest.raises(EventError) as err:
        validate_event("C1", type_, timestamp, payload, received=NOW, vocab=VOCAB)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}:")


def test_bad_event_id_source_refused() -> None:
    for kw, field in (({"event_id": "x" * 200}, "event_id"), ({"source": ""}, "source")):
        with pytest.raises(EventError) as err:
            validate_event("C1", "complaint", None, {}, received=NOW, **kw)
        assert err.value.field == field


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"event_id": "ann.lee@example.com"}, "event_id"),
        ({"source": "crm@example.net"}, "source"),
        ({"payload": {"case_id": "bo@example.org"}}, "payload.case_id"),
    ],
)
def test_identifiers_shaped_like_personal_data_are_refused(kw: dict, field: str) -> None:
    with pytest.raises(EventError, match="personal data is refused") as err:
        validate_event("C1", "complaint", None, **{"payload": {}, **kw}, received=NOW)
    assert err.value.field == field
    # ordinary identifiers, numeric ones included, pass
    validate_event(
        "C1", "complaint", None, {"case_id": "20261201"}, event_id="crm:4711", received=NOW
    )


def test_valid_event_is_normalised() -> None:
    e = validate_event(
        "C1", "purchase", "2026-11-30T10:00:00Z", {"amount": 12}, event_id="e-1", received=NOW
    )
    assert e.payload == {"amount": 12.0}
    assert e.event_time == datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()
    assert e.dated and e.source == "api"


# --- storage --------------------------------------------------------------------------------


def test_append_is_idempotent_and_conflicts_are_refused(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    e = ev("contact", {"channel": "email"}, NOW - 60, event_id="c-1")
    first, again = ledger.append(e), ledger.append(e)
    assert first.applied and not again.applied
    assert again.event.seq == first.event.seq
    assert ledger.count() == 1
    with pytest.raises(ConflictError):
        ledger.append(ev("contact", {"channel": "sms"}, NOW - 60, event_id="c-1"))
    assert ledger.count() == 1
    # an undated retry (dated when received) is the same event
    undated = validate_event("C1", "complaint", None, {}, event_id="u-1", received=NOW)
    retry = validate_event("C1", "complaint", None, {}, event_id="u-1", received=NOW + 5)
    assert ledger.append(undated).applied and not ledger.append(retry).applied
    # settings a durable file: WAL and synchronous FULL on the connection that writes
    conn = ledger._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def _append_many(path: str, worker: int, n: int, repeat: bool) -> None:
    ledger = Ledger(path)
    for i in range(n):
        e = validate_event(
            "C1",
            "contact",
            NOW - i,
            {"channel": "email"},
            event_id=f"w{worker}-{i}",
            received=NOW,
            vocab=VOCAB,
        )
        ledger.append(e)
        if repeat:  # every event sent twice: applied once
            ledger.append(e)


def test_many_processes_append_every_event_exactly_once(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.db")
    Ledger(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, w, 25, w % 2 == 0)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ledger = Ledger(path)
    events = ledger.events_for(["C1"])["C1"]
    assert len(events) == 100
    assert len({e.event_id for e in events}) == 100
    X = np.zeros((1, 2))
    apply_overrides(X, ["contacts_email_7d", "contacts_total_7d"], ["C1"], {"C1": events}, NOW)
    assert X.tolist() == [[100.0, 100.0]]


def test_consent_history_lists_changes_in_event_time_with_source_and_actor(tmp_path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    cell = {"purpose": "marketing", "channel": "email"}
    ledger.append(ev("consent_changed", {**cell, "granted": False}, NOW - 60, "w", actor="agent7"))
    ledger.append(ev("consent_changed", {**cell, "granted": True}, NOW - DAY, "g", source="crm"))
    history = consent_history(ledger, "C1")
    assert [(h["event_id"], h["granted"], h["source"], h["actor"]) for h in history] == [
        ("g", True, "crm", "anonymous"),
        ("w", False, "api", "agent7"),
    ]


def test_a_refused_event_writes_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    with pytest.raises(EventError):
        ledger.append(ev("purchase", {"amount": float("nan")}, NOW))
    assert ledger.count() == 0
    assert sqlite3.connect(tmp_path / "ledger.db").execute(
        "SELECT count(*) FROM events"
    ).fetchone() == (0,)


# --- state in event time --------------------------------------------------------------------


def _consent(granted: bool, t: float, eid: str, seq: int) -> LedgerEvent:
    e = ev(
        "consent_changed", {"purpose": "marketing", "channel": "email", "granted": granted}, t, eid
    )
    return LedgerEvent(**{**e.__dict__, "seq": seq})


def test_newest_consent_wins_whatever_the_arrival_order() -> None:
    withdrawal = _consent(False, NOW - 3600, "w", seq=1)
    older_grant = _consent(True, NOW - DAY, "g", seq=2)  # arrives after, dated before
    snapshot = {"consent_marketing_email": 1.0, "customer_consent_as_of_ts": NOW - 30 * DAY}
    for order in ([withdrawal, older_grant], [older_grant, withdrawal]):
        assert derive(order, NOW, snapshot)["consent_marketing_email"] == 0.0


def test_consent_the_snapshot_knows_newer_keeps_the_snapshot() -> None:
    snapshot = {"consent_marketing_email": 1.0, "customer_consent_as_of_ts": NOW - DAY}
    read_by_build = _consent(False, NOW - 2 * DAY, "w", seq=1)
    assert "consent_marketing_email" not in derive([read_by_build], NOW, snapshot, watermark=1)
    # not yet read by a build: a late withdrawal applies (the safe reading), a grant waits
    assert derive([read_by_build], NOW, snapshot, watermark=0)["consent_marketing_email"] == 0.0
    late_grant = _consent(True, NOW - 2 * DAY, "g", seq=2)
    snapshot0 = {**snapshot, "consent_marketing_email": 0.0}
    assert "consent_marketing_email" not in derive([late_grant], NOW, snapshot0, watermark=0)
    # a consent dated after the decision is not in force yet
    future = _consent(False, NOW + 60, "f", seq=3)
    assert derive([future], NOW, snapshot) == {}


def test_a_case_is_open_if_its_newest_open_is_after_its_newest_close() -> None:
    opened = ev("service_case_opened", {"case_id": "k1"}, NOW - 7200, "o")
    closed = ev("service_case_closed", {"case_id": "k1"}, NOW - 3600, "c")
    snap = {"open_cases": 0.0, "customer_service_as_of_ts": NOW - 30 * DAY}
    # the close arrived first: the case is closed, the snapshot's count stands
    assert derive([closed, opened], NOW, snap).get("open_cases", 0.0) == 0.0
    reopened = ev("service_case_opened", {"case_id": "k1"}, NOW - 60, "r")
    assert derive([closed, reopened, opened], NOW, snap)["open_cases"] == 1.0
    # a close of a case the snapshot holds open closes it, once
    snap1 = {"open_cases": 1.0, "customer_service_as_of_ts": NOW - 30 * DAY}
    other = ev("service_case_closed", {"case_id": "crm-9"}, NOW - 60, "x")
    assert derive([other, other], NOW, snap1)["open_cases"] == 0.0


def test_windowed_counts_age_out_at_decision_time() -> None:
    eight_days = ev(
        "contact", {"channel": "email", "action_id": "email_phone_upgrade"}, NOW - 8 * DAY, "a"
    )
    today = ev("contact", {"channel": "sms"}, NOW - 3600, "b")
    out = derive([eight_days, today], NOW, {})
    assert "contacts_email_7d" not in out  # an 8-day-old contact does not count over 7 days
    assert out["contacts_email_30d"] == 1.0
    assert out["contacts_sms_7d"] == 1.0 and out["contacts_total_7d"] == 1.0
    assert out["days_since_shown_email_phone_upgrade"] == pytest.approx(8.0)
    later = derive([eight_days, today], NOW + 30 * DAY, {})
    assert "contacts_email_30d" not in later and "contacts_sms_7d" not in later
    complaint = ev("complaint", {}, NOW - 10 * DAY, "k")
    assert derive([complaint], NOW, {"complaints_90d": 2.0})["complaints_90d"] == 3.0
    assert "complaints_90d" not in derive([complaint], NOW + 85 * DAY, {})


def test_purchases_and_delivered_decisions() -> None:
    buy = ev(
        "purchase",
        {"amount": 40.0, "category": "phones", "product_id": "phone_premium"},
        NOW - 2 * DAY,
        "p",
    )
    out = derive([buy], NOW, {"txn_count_30d": 2.0, "txn_amount_30d": 10.0})
    assert out["txn_count_7d"] == 1.0 and out["txn_count_30d"] == 3.0
    assert out["txn_amount_30d"] == 50.0 and out["holds_phone_premium"] == 1.0
    assert out["spend_365d_phones"] == 40.0
    # the same decision reported delivered twice (two event ids) counts once
    d1 = ev("contact", {"channel": "email", "decision_id": "d-1"}, NOW - 60, "x1")
    d2 = ev("contact", {"channel": "email", "decision_id": "d-1"}, NOW - 30, "x2")
    assert derive([d1, d2], NOW, {})["contacts_email_7d"] == 1.0


def test_overrides_write_only_rows_with_events() -> None:
    names = ["contacts_email_7d", "consent_marketing_email", "customer_consent_as_of_ts"]
    X = np.array([[2.0, 1.0, NOW - 40 * DAY], [0.0, 1.0, NOW - 40 * DAY]])
    before = X.copy()
    events = {"C1": [_consent(False, NOW - 60, "w", seq=1)]}
    assert apply_overrides(X, names, ["C1", "C2"], events, NOW) == 1
    assert X[0].tolist() == [2.0, 0.0, NOW - 40 * DAY]
    assert X[1].tolist() == before[1].tolist()


def test_events_for_reads_any_number_of_customers_in_one_indexed_query(tmp_path: Path) -> None:
    """A batch chunk's customers (more than SQLite's bound-parameter limit) are read with
    one query on the customer index; ``upto_seq`` cuts the ledger at a position, so a job
    that started before later appends does not see them."""
    ledger = Ledger(tmp_path / "ledger.db")
    ids = [f"C{i:05d}" for i in range(1_500)]
    for i, cid in enumerate(ids[::3]):
        e = validate_event(
            cid, "contact", NOW - i, {"channel": "email"}, f"e{i}", received=NOW, vocab=VOCAB
        )
        ledger.append(e)
    cut = ledger.last_seq()
    late = validate_event(ids[0], "complaint", NOW, {}, "late", received=NOW)
    ledger.append(late)
    statements: list[str] = []
    ledger._conn().set_trace_callback(statements.append)
    got = ledger.events_for([*ids, "C_nobody", None], upto_seq=cut)
    ledger._conn().set_trace_callback(None)
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1
    assert sorted(got) == ids[::3]
    assert all(len(v) == 1 and v[0].type == "contact" for v in got.values())
    assert [e.event_id for e in ledger.events_for([ids[0]])[ids[0]]] == ["e0", "late"]
    plan = ledger._conn().execute(
        "EXPLAIN QUERY PLAN SELECT seq FROM events INDEXED BY events_by_customer "
        "WHERE customer_id IN (SELECT value FROM json_each(?)) AND seq <= ?",
        ('["C1"]', cut),
    )
    assert any("events_by_customer" in row[-1] for row in plan)


def test_apply_ledger_reads_the_customers_events_and_the_build_watermark(tmp_path: Path) -> None:
    """The one function every decision path applies: a withdrawal dated before the
    snapshot's consent records applies while the build has not read it, not after."""
    names = ["consent_marketing_email", "customer_consent_as_of_ts"]
    ledger = Ledger(tmp_path / "ledger.db")
    cell = {"purpose": "marketing", "channel": "email", "granted": False}
    withdrawal = validate_event(
        "C1", "consent_changed", NOW - 50 * DAY, cell, "w", received=NOW, vocab=VOCAB
    )
    ledger.append(withdrawal)
    fresh = np.array([[1.0, NOW - 40 * DAY], [1.0, NOW - 40 * DAY]])
    X = fresh.copy()
    assert apply_ledger(X, names, ["C1", "C2"], ledger, NOW) == 1
    assert X[:, 0].tolist() == [0.0, 1.0]
    ledger.record_build(ledger.last_seq())  # the build merged it into the snapshot
    X = fresh.copy()
    apply_ledger(X, names, ["C1", "C2"], ledger, NOW)
    assert X[:, 0].tolist() == [1.0, 1.0]
    X = fresh.copy()  # a cut before the event: nothing to apply
    assert apply_ledger(X, names, ["C1"], ledger, NOW, upto_seq=0) == 0


# --- events follow the person through the id map ----------------------------------------------


def _under(cid: str, type_: str, payload: dict, event_id: str) -> LedgerEvent:
    return validate_event(
        cid, type_, NOW - DAY, payload, event_id=event_id, received=NOW, vocab=VOCAB
    )


def test_events_under_earlier_ids_follow_merges_and_splits(tmp_path: Path) -> None:
    from nextbest.customers.id_map import stabilise
    from nextbest.decisions.ledger import consent_records

    records = np.array(["r1", "r2", "r3", "r4"], dtype=object)
    first = stabilise(tmp_path, records, np.array([0, 1, 2, 2]), now=1.0).customer_ids
    a, b, c = first[0], first[1], first[3]
    ledger = Ledger(tmp_path / "ledger.db")
    withdraw = {"purpose": "marketing", "channel": "email", "granted": False}
    grant = {"purpose": "marketing", "channel": "sms", "granted": True}
    ledger.append(_under(b, "consent_changed", withdraw, "w-b"))
    ledger.append(_under(c, "consent_changed", withdraw, "w-c"))
    ledger.append(_under(c, "consent_changed", grant, "g-c"))
    ledger.append(_under(c, "complaint", {"case_id": "K1"}, "k-c"))
    ledger.append(_under(c, "purchase", {"amount": 5.0}, "p-c"))

    # r1+r2 merge (a kept), r3|r4 split (r3 keeps c, r4 gets a new id).
    now = stabilise(tmp_path, records, np.array([0, 0, 1, 2]), now=2.0).customer_ids
    assert now[0] == now[1] == a and now[2] == c and now[3] not in set(first)
    d = now[3]
    got = {k: {e.event_id for e in v} for k, v in ledger.events_for([a, c, d]).items()}
    assert got[a] == {"w-b"}  # the merged id's withdrawal is a's now
    assert got[c] == {"w-c", "g-c", "k-c", "p-c"}  # the side that kept the id: everything
    assert got[d] == {"w-c", "k-c"}  # the other side: the withdrawal and the complaint only
    history = consent_history(ledger, a)
    assert [(h["event_id"], h["recorded_under"], h["carried"]) for h in history] == [
        ("w-b", b, "merged")
    ]
    assert [h["carried"] for h in consent_history(ledger, d)] == ["split"]
    built = {(r["customer_id"], r["channel"], r["granted"]) for r in consent_records(ledger)[0]}
    assert built == {
        (a, "email", False),
        (c, "email", False),
        (d, "email", False),
        (c, "sms", True),
    }
    assert ledger.count_of([a]) == 1 and ledger.erase_customers([a]) == 1
    assert ledger.count_of([b]) == 0
