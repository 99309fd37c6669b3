"""The outbox over real HTTP to a local receiver: signature, retries with back-off,
dead-letter, retry by id, and the contact each delivery records in the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.webhook import start_receiver
from nextbest.decisions.catalog import load_catalog
from nextbest.decisions.ledger import Ledger, Vocabulary
from nextbest.decisions.trigger_store import Fire, TriggerStore
from serving.outbox import Outbox, backoff, sign, verify

ROOT = Path(__file__).resolve().parents[3]
SECRET = b"test-secret"
NOW = 1_750_000_000.0


def _setup(tmp_path: Path, hooks: list[str], max_attempts: int = 3):
    ledger = Ledger(tmp_path / "ledger.db")
    store = TriggerStore(tmp_path / "triggers.db")
    vocab = Vocabulary.from_terms(load_catalog(ROOT / "config" / "catalog.yaml").terms())
    outbox = Outbox(
        store,
        ledger,
        vocab,
        SECRET,
        timeout=2.0,
        max_attempts=max_attempts,
        backoff_s=1.0,
        backoff_max_s=3.0,
    )
    fire = Fire("t:e1", "t", "marketing", "C1", NOW, NOW, NOW + 60, event_id="e1")
    store.scanned("t", [fire], NOW)
    (row,) = store.due(NOW)
    body = b'{"decision_id":"d-1","action_id":"email_phone_upgrade"}'
    assert store.send(row, "d-1", "email", "email_phone_upgrade", body, hooks, NOW)
    return ledger, store, outbox


def test_signature_and_backoff() -> None:
    assert verify(SECRET, b"{}", sign(SECRET, b"{}"))
    assert not verify(SECRET, b"{ }", sign(SECRET, b"{}"))
    assert not verify(b"other", b"{}", sign(SECRET, b"{}"))
    assert [backoff(n, 1.0, 5.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_500_then_200_retried_and_recorded_once(tmp_path: Path) -> None:
    rec = start_receiver(SECRET, fail_first=1)
    try:
        ledger, store, outbox = _setup(tmp_path, [rec.url])
        assert outbox.deliver_due(NOW) == 1
        (row,) = store.outbox()
        assert (row.status, row.attempts, row.last_error) == ("queued", 1, "HTTP 500")
        assert row.next_attempt == NOW + 1.0
        assert outbox.deliver_due(NOW + 0.5) == 0  # not before its back-off
        assert outbox.deliver_due(NOW + 1.0) == 1
        (row,) = store.outbox()
        assert (row.status, row.attempts) == ("delivered", 2)
        assert rec.accepted() == {"d-1": 1} and rec.attempts("d-1") == 2
        assert all(r.signed for r in rec.requests)
        assert rec.requests[-1].body["decision_id"] == "d-1"
        (contact,) = ledger.events_for(["C1"])["C1"]
        assert contact.event_id == "delivered:d-1" and contact.event_time == NOW
        assert dict(contact.payload) == {
            "action_id": "email_phone_upgrade",
            "channel": "email",
            "decision_id": "d-1",
        }
        # delivering again (a crash before it was marked) records the contact once
        outbox.record_contact(row)
        assert ledger.count() == 1
    finally:
        rec.stop()


@pytest.mark.parametrize("wrong_secret", [False, True])
def test_dead_letter_after_max_attempts_and_retry(tmp_path: Path, wrong_secret: bool) -> None:
    rec = start_receiver(b"other" if wrong_secret else SECRET, fail_first=99)
    try:
        ledger, store, outbox = _setup(tmp_path, [rec.url], max_attempts=3)
        t = NOW
        for _ in range(3):
            outbox.deliver_due(t)
            t += 10
        (row,) = store.outbox()
        assert (row.status, row.attempts) == ("dead", 3)
        assert row.last_error == ("HTTP 401" if wrong_secret else "HTTP 500")
        assert outbox.deliver_due(t) == 0 and ledger.count() == 0
        assert store.retry(["no-such-id"], t) == 0
        assert store.retry(["d-1"], t) == 1
        rec.fail_first = 0
        rec.secret = SECRET
        assert outbox.deliver_due(t) == 1
        assert store.outbox()[0].status == "delivered" and ledger.count() == 1
    finally:
        rec.stop()


def test_refused_connection_is_an_attempt(tmp_path: Path) -> None:
    from devtools.process import free_port

    _, store, outbox = _setup(tmp_path, [f"http://127.0.0.1:{free_port()}/hook"])
    outbox.deliver_due(NOW)
    (row,) = store.outbox()
    assert row.status == "queued" and row.attempts == 1 and row.last_error == "ConnectError"
