"""The group-commit decision log: every append is on disk when it returns, syncs are shared."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nextbest.decisions.decision_log import PersonalDataError, read_log
from nextbest.decisions.group_commit import GroupCommitLog

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _record(i: int) -> dict:
    return {
        "decision_id": f"d{i}",
        "decided_at": NOW.isoformat(),
        "customer_id": f"C{i:07d}",
        "channel": "email",
        "propensity": 1.0,
        "ranked": [],
        "excluded": [],
        "feature_snapshot_time": NOW.isoformat(),
    }


def _lines(directory: Path) -> list[dict]:
    return [json.loads(x) for f in sorted(directory.glob("*.jsonl")) for x in f.open()]


def test_concurrent_appends_are_all_written_once_and_share_syncs(tmp_path: Path) -> None:
    log = GroupCommitLog(tmp_path)
    done: list[str] = []

    def worker(start: int) -> None:
        for i in range(start, start + 50):
            assert log.append([_record(i)]) == 1
            # on disk when append returns: the line is in the file already
            assert f'"d{i}"' in log.path_for(NOW.date()).read_text()
            done.append(f"d{i}")

    threads = [threading.Thread(target=worker, args=(k * 50,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [r["decision_id"] for r in _lines(tmp_path)]
    assert sorted(ids) == sorted(done) and len(ids) == 300 == len(set(ids))
    assert log.appends == 300 and 1 <= log.syncs <= 300
    assert len(read_log(tmp_path)) == 300


def test_append_async_resolves_once_the_lines_are_on_disk(tmp_path: Path) -> None:
    log = GroupCommitLog(tmp_path)

    async def many() -> list[int]:
        futs = [asyncio.wrap_future(log.append_async([_record(i)])) for i in range(40)]
        return await asyncio.gather(*futs)

    assert asyncio.run(many()) == [1] * 40
    assert len(_lines(tmp_path)) == 40
    assert log.syncs < 40  # queued while a sync ran: they shared the next one


def test_personal_data_is_refused_before_anything_is_queued(tmp_path: Path) -> None:
    log = GroupCommitLog(tmp_path)
    bad = {**_record(1), "customer_id": "someone@example.com"}
    with pytest.raises(PersonalDataError):
        log.append_async([bad])
    assert log.append([]) == 0
    assert not _lines(tmp_path)


def _break_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fdatasync of the log fails (until ``monkeypatch.undo()``)."""

    def broken(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr("nextbest.decisions.group_commit.os.fdatasync", broken)


def test_a_failed_sync_reaches_every_appender_of_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = GroupCommitLog(tmp_path)
    _break_sync(monkeypatch)
    futs = [log.append_async([_record(i)]) for i in range(5)]
    for f in futs:
        with pytest.raises(OSError, match="I/O error"):
            f.result(timeout=10)
    monkeypatch.undo()
    assert log.append([_record(9)]) == 1  # the writer keeps going after a failure


def test_append_inline_syncs_in_the_calling_thread_when_the_writer_is_idle(
    tmp_path: Path,
) -> None:
    log = GroupCommitLog(tmp_path)
    for i in range(5):
        fut = log.append_inline([_record(i), _record(100 + i)])
        assert fut.done() and fut.result() == 2  # on disk before it returned
        assert f'"d{100 + i}"' in log.path_for(NOW.date()).read_text()
    assert log.inline_syncs == 5 == log.syncs and log._writer is None  # no thread needed
    assert log.append_inline([]).result() == 0
    assert len(_lines(tmp_path)) == 10


def test_append_inline_beside_the_writer_loses_and_mixes_no_line(tmp_path: Path) -> None:
    log = GroupCommitLog(tmp_path)
    results: list[int] = []

    def queued(start: int) -> None:
        futs = [log.append_async([_record(i)]) for i in range(start, start + 60)]
        results.extend(f.result(timeout=30) for f in futs)

    def inline(start: int) -> None:
        for i in range(start, start + 60):
            results.append(log.append_inline([_record(i)]).result(timeout=30))

    threads = [threading.Thread(target=queued, args=(k * 60,)) for k in range(3)]
    threads += [threading.Thread(target=inline, args=(k * 60,)) for k in range(3, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [r["decision_id"] for r in _lines(tmp_path)]  # every line parses: none mixed
    assert sorted(ids) == sorted(f"d{i}" for i in range(360))
    assert results == [1] * 360 and log.appends == 360 and log.inline_syncs <= 180


def test_append_inline_queues_while_the_writer_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    log = GroupCommitLog(tmp_path)
    syncing, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def slow(fd: int) -> None:
        if threading.current_thread().name == "decision-log-writer":
            syncing.set()
            assert release.wait(10)
        real(fd)

    monkeypatch.setattr("nextbest.decisions.group_commit.os.fdatasync", slow)
    first = log.append_async([_record(1)])
    assert syncing.wait(10)  # the writer is inside its sync
    second = log.append_inline([_record(2)])
    assert not second.done()  # queued behind it, not written beside it
    release.set()
    assert first.result(timeout=10) == 1 and second.result(timeout=10) == 1
    assert log.inline_syncs == 0 and log.syncs == 2
    monkeypatch.undo()
    assert log.append_inline([_record(3)]).done() and log.inline_syncs == 1  # idle again
    assert sorted(r["decision_id"] for r in _lines(tmp_path)) == ["d1", "d2", "d3"]


def test_a_failed_inline_sync_fails_its_future_and_the_log_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = GroupCommitLog(tmp_path)
    _break_sync(monkeypatch)
    with pytest.raises(OSError, match="I/O error"):
        log.append_inline([_record(1)]).result(timeout=10)
    monkeypatch.undo()
    assert log.append_inline([_record(2)]).result(timeout=10) == 1
    assert log.append([_record(3)]) == 1  # and the writer thread still works
    with pytest.raises(PersonalDataError):
        log.append_inline([{**_record(4), "customer_id": "someone@example.com"}])
