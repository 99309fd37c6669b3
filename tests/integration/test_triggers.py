"""Triggers end to end over real HTTP: events posted to the served service, the triggers
worker (`nextbest triggers run`, a process of its own) deciding at send time, and a local
webhook receiver on 127.0.0.1 that answers 500 to each decision's first attempt.

One run serves every test of the module: the worker is killed with SIGKILL while
deliveries are queued and triggers pending, and started again; every property is then
checked on what the receiver, the trigger store, the ledger and the decision log hold.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from devtools.process import Server
from devtools.webhook import Receiver, start_receiver
from nextbest.core.settings import PROJECT_ROOT
from nextbest.decisions.ledger import Ledger
from nextbest.decisions.trigger_rules import in_holdout
from nextbest.decisions.trigger_store import TriggerStore
from tests.conftest import World

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "it-secret"
#: Channels without quiet hours in config/policy.yaml: the test's triggers send on them
#: whatever the hour. The quiet trigger sends on sms only, in a time zone where it is night.
CHANNELS = ["email", "app", "web"]
TRIGGERS = f"""
version: "it"
triggers:
  - id: loan_interest
    event: {{type: eligibility_check, count: 3, within: 1h}}
    channels: {CHANNELS}
    expires: 5m
  - id: cart
    event: {{type: add_to_cart}}
    delay: 3s
    cancel_on: [purchase, stock_changed]
    channels: {CHANNELS}
    expires: 5m
  - id: closed
    event: {{type: service_case_closed}}
    delay: 10s  # long enough that the kill -9 finds F's triggers still waiting
    channels: {CHANNELS}
    expires: 5m
  - id: quiet
    event: {{type: calculator_check}}
    channels: [sms]
    expires: 5m
  - id: stop
    event: {{type: complaint}}
    do: cancel_pending
journeys:
  - id: welcome
    entry: {{type: page_view}}
    exit_on: [purchase]
    holdout: 0.5
    steps:
      - {{id: hello, after: 0s, channels: {CHANNELS}, expires: 5m}}
      - {{id: later, after: 4s, channels: {CHANNELS}, expires: 5m}}
"""


def night_zone(now: datetime) -> str:
    """A fixed-offset zone where it is between 23:00 and 05:00 now (sms is quiet from
    21:00 to 08:00 in the policy)."""
    for offset in range(-12, 15):
        if (now.hour + offset) % 24 in (23, 0, 1, 2, 3, 4):
            # Etc/GMT-N is N hours ahead of UTC (the sign is POSIX's).
            return f"Etc/GMT{-offset:+d}" if offset else "UTC"
    raise AssertionError("no zone")


@dataclass
class Run:
    """What one run left behind."""

    store: TriggerStore
    receiver: Receiver
    ledger: Ledger
    log: dict[str, dict[str, Any]]
    who: dict[str, Any]
    worker_log: str


def _post(service: Server, cid: str | None, typ: str, eid: str, **payload: Any) -> dict:
    body: dict[str, Any] = {"type": typ, "event_id": eid, "payload": payload}
    if cid is not None:
        body["customer"] = {"id": cid}
    r = httpx.post(f"{service.url}/events", json=body, headers=service.headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _actionable(world: World, service: Server, n: int) -> list[str]:
    """Customers of the world's second half with marketing consent somewhere whom a
    /decide now offers something on one of the channels."""
    df = pd.read_parquet(world.settings.features_dir / "customer_consent.parquet")
    df = df.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    cols = [f"consent_marketing_{c}" for c in CHANNELS]
    ids = sorted(df.loc[df[cols].max(axis=1) == 1, "customer_id"])
    found: list[str] = []
    for cid in ids[len(ids) // 2 :][:300]:
        for ch in CHANNELS:
            body = {"customer": {"id": cid}, "channel": ch, "k": 1}
            r = httpx.post(f"{service.url}/decide", json=body, headers=service.headers, timeout=30)
            if r.status_code == 200 and r.json()["actions"]:
                found.append(cid)
                break
        if len(found) == n:
            return found
    pytest.fail(f"only {len(found)} customers are offered anything now")


def _start_worker(world: World, receiver: Receiver, triggers: Path, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "NEXTBEST_HOME": str(world.home),
        "NEXTBEST_TRIGGERS_FILE": str(triggers),
        "NEXTBEST_WEBHOOKS": f'["{receiver.url}"]',
        "NEXTBEST_WEBHOOK_SECRET": SECRET,
        "NEXTBEST_OUTBOX_BACKOFF_SECONDS": "1.5",
        "NEXTBEST_TRIGGERS_POLL_SECONDS": "0.2",
        "PYTHONWARNINGS": "ignore",
        # LightGBM scores as the compiled trees do (the service checks them bit for bit);
        # skipping their compilation halves the worker's start.
        "NEXTBEST_ONLINE_COMPILED_TREES": "0",
        "NEXTBEST_DEFAULT_TIME_ZONE": night_zone(datetime.now(UTC)),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nextbest", "triggers", "run"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"the worker exited ({proc.returncode}):\n{log.read_text()}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
    return proc.wait(timeout=30)


@pytest.fixture(scope="module")
def run(world: World, service: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("triggers")
    triggers = tmp / "triggers.yaml"
    triggers.write_text(TRIGGERS)
    log = tmp / "worker.log"
    receiver = start_receiver(SECRET.encode(), fail_first=1)
    store = TriggerStore(world.settings.triggers_db_path)
    a, d, f1, f2, f3 = _actionable(world, service, 5)
    ids = pd.read_parquet(world.settings.features_dir / "customer_profile.parquet")["customer_id"]
    rest = sorted(set(ids) - {a, d, f1, f2, f3})
    b, e, q = rest[-3:]
    # J: entrants of the welcome journey, one held out, one not, one who converts at once
    held = [c for c in rest[:-3] if in_holdout("welcome", c, 0.5)]
    kept = [c for c in rest[:-3] if not in_holdout("welcome", c, 0.5)]
    j_held, j_kept, j_exit = held[0], kept[0], kept[1]
    proc = _start_worker(world, receiver, triggers, log)
    try:
        _wait(lambda: store.cursor() is not None, "the worker's start", proc, log)
        # A: three eligibility checks within the hour fire loan_interest once; the third
        # is sent twice.
        for i in range(3):
            _post(service, a, "eligibility_check", f"it-a-check-{i}")
        dup = _post(service, a, "eligibility_check", "it-a-check-2")
        assert dup["applied"] is False
        # B: added to cart, then a purchase before the 3 s delay: cancelled.
        _post(service, b, "add_to_cart", "it-b-cart", product_id="phone_premium")
        _post(service, b, "purchase", "it-b-buy", amount=1.0)
        # J: page views enter the journey; a purchase right after leaves it.
        for cid in (j_held, j_kept, j_exit):
            _post(service, cid, "page_view", f"it-j-view-{cid}")
        _post(service, j_exit, "purchase", "it-j-buy", amount=3.0)
        # Q: a calculator check fires a trigger on sms, quiet now: it waits for the window.
        _post(service, q, "calculator_check", "it-q-calc")
        # D: a case closed, then marketing consent withdrawn everywhere before the send.
        _post(service, d, "service_case_closed", "it-d-closed")
        for ch in CHANNELS:
            _post(
                service,
                d,
                "consent_changed",
                f"it-d-{ch}",
                purpose="marketing",
                channel=ch,
                granted=False,
            )
        # E: a case closed, then a complaint: every pending marketing trigger cancelled.
        _post(service, e, "service_case_closed", "it-e-closed")
        _post(service, e, "complaint", "it-e-complaint")
        # F: three cases closed; the worker is killed while they wait.
        for cid in (f1, f2, f3):
            _post(service, cid, "service_case_closed", f"it-f-closed-{cid}")

        def first_attempt_failed() -> bool:
            return any(r.attempts >= 1 and r.status == "queued" for r in store.outbox())

        _wait(first_attempt_failed, "a failed first delivery", proc, log)
        pending = [r for r in store.rows(status="pending") if r.customer_id in (f1, f2, f3)]
        assert _stop(proc, signal.SIGKILL) == -signal.SIGKILL
        proc = _start_worker(world, receiver, triggers, log)
        _post(service, a, "eligibility_check", "it-a-check-2")  # the duplicate, again

        def settled() -> bool:
            waiting = [r for r in store.rows(status="pending") if r.trigger_id != "quiet"]
            quiet = [r for r in store.rows(q) if r.reason]  # postponed, with its reason
            return bool(quiet) and not waiting and not store.outbox("queued")

        _wait(settled, "every trigger sent and delivered", proc, log)
        assert _stop(proc) == 0
        yield Run(
            store,
            receiver,
            Ledger(world.settings.ledger_path),
            _decisions(world.settings.decision_log_dir),
            {
                "a": a,
                "b": b,
                "d": d,
                "e": e,
                "q": q,
                "f": (f1, f2, f3),
                "f_pending": pending,
                "j_held": j_held,
                "j_kept": j_kept,
                "j_exit": j_exit,
            },
            log.read_text(),
        )
    finally:
        _stop(proc, signal.SIGKILL)
        receiver.stop()


def _decisions(directory: Path) -> dict[str, dict[str, Any]]:
    """Every decision-log record, by decision id, as written."""
    out = {}
    for f in sorted(Path(directory).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            out[rec["decision_id"]] = rec
    return out


def _rows(run: Run, cid: str) -> list:
    return run.store.rows(customer_id=cid)


def test_event_to_trigger_to_decision_to_delivery(run: Run) -> None:
    (row,) = [r for r in _rows(run, run.who["a"]) if r.trigger_id == "loan_interest"]
    assert row.status == "sent" and row.event_id == "it-a-check-2"
    (out,) = [o for o in run.store.outbox() if o.customer_id == run.who["a"]]
    assert out.status == "delivered" and out.decision_id == row.decision_id
    got = [r for r in run.receiver.requests if r.decision_id == row.decision_id and r.status == 200]
    assert len(got) == 1 and got[0].signed
    body = got[0].body
    assert body["customer_id"] == run.who["a"] and body["trigger_id"] == "loan_interest"
    assert body["action_id"] == out.action_id and body["channel"] in CHANNELS
    # the decision is in the decision log with its trigger, made after the third check
    rec = run.log[row.decision_id]
    assert rec["trigger"]["id"] == "loan_interest" and rec["chosen_action"] == out.action_id
    # the delivery is the customer's contact in the ledger, so caps count it
    contacts = [ev for ev in run.ledger.events_for([run.who["a"]], types=["contact"])[run.who["a"]]]
    assert [c.event_id for c in contacts] == [f"delivered:{row.decision_id}"]
    assert contacts[0].payload["action_id"] == out.action_id


def test_duplicate_event_fires_once(run: Run) -> None:
    keys = [r.key for r in _rows(run, run.who["a"]) if r.trigger_id == "loan_interest"]
    assert keys == ["loan_interest:it-a-check-2"]


def test_500_then_200_retried_and_delivered_once_per_decision(run: Run) -> None:
    delivered = {o.decision_id for o in run.store.outbox("delivered")}
    accepted = run.receiver.accepted()
    mine = {d: n for d, n in accepted.items() if d in delivered}
    assert mine and set(mine.values()) == {1}
    for d in mine:
        assert run.receiver.attempts(d) >= 2  # a 500 first, then the 200
    assert all(o.attempts >= 2 for o in run.store.outbox("delivered"))


def test_cancel_on_purchase(run: Run) -> None:
    (row,) = _rows(run, run.who["b"])
    assert row.status == "cancelled" and "purchase it-b-buy" in (row.reason or "")
    assert not [o for o in run.store.outbox() if o.customer_id == run.who["b"]]


def test_quiet_hours_delay_the_send(run: Run) -> None:
    from nextbest.decisions.policy import load_policy

    (row,) = _rows(run, run.who["q"])
    assert row.status == "pending" and "quiet hours" in (row.reason or "")
    windows = load_policy(PROJECT_ROOT / "config" / "policy.yaml").send_windows
    zone = night_zone(datetime.fromtimestamp(row.fired_at, UTC))
    opens = windows.next_send_time("sms", zone, datetime.fromtimestamp(row.fired_at, UTC))
    assert abs(row.due - opens.timestamp()) < 3600 and row.due > row.fired_at + 3600
    assert not [o for o in run.store.outbox() if o.customer_id == run.who["q"]]


def test_complaint_cancels_pending_marketing(run: Run) -> None:
    (row,) = _rows(run, run.who["e"])
    assert row.status == "cancelled" and "stop" in (row.reason or "")


def test_consent_withdrawn_between_trigger_and_send_stops_it(run: Run) -> None:
    (row,) = _rows(run, run.who["d"])
    assert row.status == "no_send" and row.decision_id
    assert not [o for o in run.store.outbox() if o.customer_id == run.who["d"]]
    rec = run.log[row.decision_id]
    assert rec["chosen_action"] == "no_action"
    assert "NO_CONSENT" in {e["reason"] for e in rec["excluded"]}


def test_kill9_with_triggers_pending_each_delivered_once(run: Run) -> None:
    assert run.who["f_pending"], "the worker was killed before the F triggers waited"
    assert "delivery of decision" in run.worker_log  # the first attempt failed (500)
    accepted = run.receiver.accepted()
    for cid in run.who["f"]:
        rows = _rows(run, cid)
        assert len(rows) == 1 and rows[0].status in ("sent", "no_send")
        if rows[0].status == "sent":
            assert accepted[rows[0].decision_id] == 1
    sent = [r for cid in run.who["f"] for r in _rows(run, cid) if r.status == "sent"]
    assert sent, "none of the customers offered something was sent anything"
    # every id the receiver took is one the outbox delivered, each exactly once
    assert set(accepted) == {o.decision_id for o in run.store.outbox("delivered")}


def test_journey_holdout_logged_and_exit_on_conversion(run: Run) -> None:
    held = _rows(run, run.who["j_held"])
    assert [r.trigger_id for r in held] == ["welcome.hello", "welcome.later"]
    assert {r.status for r in held} == {"holdout"}
    for r in held:  # decided and logged in the holdout group, never sent
        rec = run.log[r.decision_id]
        assert rec["group"] == "holdout" and rec["journey"] == "welcome"
        assert rec["chosen_action"] == "no_action"
    assert not [o for o in run.store.outbox() if o.customer_id == run.who["j_held"]]
    kept = _rows(run, run.who["j_kept"])
    assert {r.status for r in kept} <= {"sent", "no_send"} and len(kept) == 2
    for r in kept:
        assert run.log[r.decision_id]["group"] in ("decided", "holdout")
    later = [r for r in _rows(run, run.who["j_exit"]) if r.trigger_id == "welcome.later"]
    assert later[0].status == "cancelled" and "it-j-buy" in (later[0].reason or "")
