"""The group-commit decision log: every append is on disk when it returns, syncs are shared."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving.decision_log import PersonalDataError, read_log
from serving.online import GroupCommitLog

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


def test_a_failed_sync_reaches_every_appender_of_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = GroupCommitLog(tmp_path)

    def broken(fd: int) -> None:
        raise OSError(5, "I/O error")

    monkeypatch.setattr("serving.online.os.fdatasync", broken)
    futs = [log.append_async([_record(i)]) for i in range(5)]
    for f in futs:
        with pytest.raises(OSError, match="I/O error"):
            f.result(timeout=10)
    monkeypatch.undo()
    assert log.append([_record(9)]) == 1  # the writer keeps going after a failure
