"""Erasure and retention in the ledger and the decision log, on tiny data: the person's
rows leave the files, everyone else's stay, consent outlives retention, and a decision
logged after a rewrite is not lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from nextbest.core.errors import InputError
from nextbest.core.settings import get_settings
from nextbest.decisions.decision_log import DecisionLog, drop_older, erase_customers, read_log
from nextbest.decisions.group_commit import GroupCommitLog
from nextbest.decisions.ledger import Ledger, Vocabulary, validate_event
from nextbest.decisions.privacy import apply_retention, forget, read_audit
from tests.conftest import demo_terms

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DAY = 86_400.0


def _event(cid: str, type_: str, payload: dict, days_ago: float):
    t = NOW.timestamp() - days_ago * DAY
    vocab = Vocabulary.from_terms(demo_terms())
    return validate_event(cid, type_, t, payload, received=NOW.timestamp(), vocab=vocab)


def _ledger(path: Path) -> Ledger:
    ledger = Ledger(path)
    for cid in ("Cerase0001", "Ckeep00002"):
        ledger.append(_event(cid, "purchase", {"amount": 5.0}, 400))
        ledger.append(_event(cid, "complaint", {"case_id": f"case-{cid}"}, 2))
        consent = {"purpose": "marketing", "channel": "email", "granted": True}
        ledger.append(_event(cid, "consent_changed", consent, 400))
    return ledger


def test_ledger_erasure_removes_the_customer_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = _ledger(path)
    assert ledger.erase_customers(["Cerase0001"]) == 3
    assert ledger.count_of(["Cerase0001"]) == 0 and ledger.count_of(["Ckeep00002"]) == 3
    ledger.close()
    for f in tmp_path.iterdir():  # the database, its write-ahead log, ...
        assert b"Cerase0001" not in f.read_bytes(), f.name
    assert b"Ckeep00002" in path.read_bytes()


def test_ledger_retention_keeps_consent(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path / "ledger.db")
    cutoff = (NOW - timedelta(days=365)).timestamp()
    assert ledger.drop_before(cutoff) == 2  # the two old purchases
    left = {e.type for c in ("Cerase0001", "Ckeep00002") for e in ledger.events_for([c])[c]}
    assert left == {"complaint", "consent_changed"}


def _record(cid: str, decided: datetime, n: int) -> dict:
    return {"decision_id": f"d{n}", "decided_at": decided.isoformat(), "customer_id": cid}


def test_decision_log_erasure_rewrites_and_the_writer_follows(tmp_path: Path) -> None:
    log = GroupCommitLog(tmp_path)
    day1, day2 = NOW - timedelta(days=1), NOW
    log.append([_record("Cerase0001", day1, 1), _record("Ckeep00002", day1, 2)])
    log.append([_record("Cerase0001", day2, 3), _record("Ckeep00002", day2, 4)])
    assert erase_customers(tmp_path, ["Cerase0001"]) == 2
    # The writer still holds the replaced file open: its next line must reach the new one.
    log.append([_record("Ckeep00002", day2, 5)])
    assert list(read_log(tmp_path)["decision_id"]) == ["d2", "d4", "d5"]
    assert not any(b"Cerase0001" in p.read_bytes() for p in tmp_path.iterdir())


def test_retention_keeps_a_back_dated_batch_and_drops_what_is_old(tmp_path: Path) -> None:
    old_day, back_dated_day = NOW - timedelta(days=40), NOW - timedelta(days=60)
    # Written 40 days ago, about that day: genuinely old.
    DecisionLog(tmp_path, clock=lambda: old_day).append(
        [_record("C1", old_day, 1), _record("C2", back_dated_day, 2)]
    )
    # Written today as of 60 and 40 days ago (score --as-of ... --log-decisions).
    GroupCommitLog(tmp_path, clock=lambda: NOW).append(
        [_record("C3", back_dated_day, 3), _record("C4", old_day, 4)]
    )
    # A line of a log written before the log stamped its lines: aged by its decision.
    legacy = tmp_path / f"decisions-{old_day.date().isoformat()}.jsonl"
    with legacy.open("a") as fh:
        fh.write(orjson.dumps(_record("C5", old_day, 5)).decode() + "\n")
    # Decided in the future (as of a later day), written long ago: kept until that day.
    ahead = NOW + timedelta(days=3)
    DecisionLog(tmp_path, clock=lambda: old_day).append([_record("C6", ahead, 6)])
    lines = [
        orjson.loads(x) for p in tmp_path.glob("*.jsonl") for x in p.read_bytes().split(b"\n") if x
    ]
    assert {r["decision_id"]: r.get("logged_at") for r in lines}["d3"] == NOW.isoformat()

    cutoff = (NOW - timedelta(days=30)).date()
    assert drop_older(tmp_path, cutoff) == (0, 3)  # d1, d2, d5; every day file keeps one
    assert list(read_log(tmp_path)["decision_id"]) == ["d3", "d4", "d6"]
    # The next run finds nothing more; once the batch's write day ages out, it goes.
    assert drop_older(tmp_path, cutoff) == (0, 0)
    assert drop_older(tmp_path, (NOW + timedelta(days=1)).date()) == (2, 2)
    assert list(read_log(tmp_path)["decision_id"]) == ["d6"]


def test_retention_apply_deletes_what_is_older_and_audits(tmp_path: Path) -> None:
    import pandas as pd

    settings = get_settings(
        home=tmp_path,
        retention_decision_log_days=30,
        retention_ledger_days=365,
        retention_raw_days=365,
    )
    _ledger(settings.ledger_path).close()
    old = NOW - timedelta(days=40)
    GroupCommitLog(settings.decision_log_dir, clock=lambda: old).append([_record("C1", old, 1)])
    GroupCommitLog(settings.decision_log_dir, clock=lambda: NOW).append(
        [_record("C1", NOW, 2), _record("C1", old, 3)]  # the last one back-dated
    )
    settings.raw_dir.mkdir()
    times = pd.to_datetime([NOW - timedelta(days=400), NOW - timedelta(days=3)], utc=True)
    pd.DataFrame({"basket_id": ["b1", "b2"], "ts": times}).to_parquet(
        settings.raw_dir / "pos_baskets.parquet"
    )
    pd.DataFrame({"id_value": ["x", "y"], "ts": times}).to_parquet(
        settings.raw_dir / "consent.parquet"
    )
    report = apply_retention(settings, "tester", now=NOW)
    assert report.removed["decision_log"] == 1 and report.removed["ledger"] == 2
    assert list(read_log(settings.decision_log_dir)["decision_id"]) == ["d3", "d2"]
    assert report.removed["raw/pos_baskets"] == 1 and "raw/consent" not in report.removed
    assert list(pd.read_parquet(settings.raw_dir / "pos_baskets.parquet")["basket_id"]) == ["b2"]
    assert len(pd.read_parquet(settings.raw_dir / "consent.parquet")) == 2
    entry = read_audit(settings)[-1]
    assert entry["action"] == "retention" and entry["actor"] == "tester"
    assert entry["settings"]["ledger_days"] == 365


def test_a_reason_may_name_a_date(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path)
    with pytest.raises(InputError, match="no identity lookup"):
        forget(settings, "jane@example.com", "email", "request of 2026-12-06", "tester")


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("", "reason: required"),
        ("asked by jane.doe@example.com", "reason: must not hold an e-mail"),
        ("called from 07700-900123", "reason: must not hold"),
        ("x" * 501, "reason: at most 500"),
    ],
)
def test_forget_refuses_a_bad_reason_before_anything(
    tmp_path: Path, reason: str, message: str
) -> None:
    settings = get_settings(home=tmp_path)
    with pytest.raises(InputError, match=message):
        forget(settings, "jane@example.com", "email", reason, "tester")
    assert list(tmp_path.iterdir()) == []
