"""The kill -9 benchmark's check finds what a crash could lose: an acknowledged decision
missing from the log, a torn line, an acknowledged event missing from the ledger."""

from __future__ import annotations

from pathlib import Path

from benchmarks.kill9_bench import Tally, check, log_offsets
from nextbest.decisions.ledger import Ledger, validate_event


def test_the_check_counts_lost_decisions_torn_lines_and_lost_events(tmp_path: Path) -> None:
    log_dir = tmp_path / "decisions"
    log_dir.mkdir()
    older = log_dir / "decisions-2026-12-05.jsonl"
    older.write_bytes(b'{"decision_id": "before-the-run"}\n')
    offsets = log_offsets(log_dir)
    with older.open("ab") as f:
        f.write(b'{"decision_id": "d1"}\n{"decision_id": "d2"}\n')
    # a line cut by a crash, then the next process's lines after it
    (log_dir / "decisions-2026-12-06.jsonl").write_bytes(
        b'{"decision_id": "d3"}\n{"decision_id": "d4", "cus\n{"decision_id": "d5"}\n{"dec'
    )
    ledger = Ledger(tmp_path / "ledger.db")
    for eid in ("run-1", "run-2", "other-1"):
        ledger.append(validate_event("C1", "complaint", None, {}, eid))
    tally = Tally()
    tally.decisions["workers"] |= {"d1", "d2", "d3"}
    tally.decisions["process_group"] |= {"d4", "d5", "before-the-run"}
    tally.events["workers"] |= {"run-1"}
    tally.events["process_group"] |= {"run-3"}
    out = check(tally, log_dir, offsets, tmp_path / "ledger.db", "run")
    d, e = out["decisions"], out["events"]
    assert d["acknowledged"] == 6 and d["found"] == 4
    assert d["lost"] == 2  # d4 (torn) and one logged before the run started
    assert d["torn_lines"] == 2  # a cut line, and a last line without its newline
    assert out["rounds"]["workers"]["decisions_lost"] == 0
    assert out["rounds"]["process_group"]["decisions_lost"] == 2
    assert e["acknowledged"] == 2 and e["found_exactly_once"] == 1 and e["lost"] == 1
    assert e["stored_not_acknowledged"] == 1  # run-2: stored, its answer never came
