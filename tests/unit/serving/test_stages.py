"""The per-stage clocks of /decide: what they add, and the mean per decision between reads."""

from __future__ import annotations

import time

from serving.stages import STAGES, StageClocks, now_ns, per_decision_us


def test_a_stage_adds_its_time_and_decisions_and_hands_on_the_next_start() -> None:
    clocks = StageClocks()
    start = now_ns()
    time.sleep(0.002)
    nxt = clocks.add("engine", start, decisions=4)
    assert clocks.decisions["engine"] == 4
    assert clocks.ns["engine"] == nxt - start >= 2_000_000
    assert all(clocks.ns[s] == 0 for s in STAGES if s != "engine")


def test_means_are_differences_between_reads_summed_over_workers() -> None:
    def snap(pid: int, ns: int, n: int) -> dict:
        return {"pid": pid, "stages": {s: {"ns": ns, "decisions": n} for s in STAGES}}

    before = [snap(1, 1_000_000, 10)]
    # worker 1 served 4 more decisions in 8 ms per stage; worker 2 is new (counts from 0)
    after = [snap(1, 9_000_000, 14), snap(2, 2_000_000, 1)]
    out = per_decision_us(before, after)
    assert out["decisions"] == 5
    assert out["mean_us"]["engine"] == 2000.0  # 10 ms over 5 decisions


def test_a_stage_without_decisions_has_no_mean() -> None:
    snap = StageClocks().snapshot()
    assert per_decision_us([snap], [snap])["mean_us"]["log"] is None
