"""Where one decision's time goes: per-stage clocks of this worker process.

Each stage of ``POST /decide`` adds its wall time (``time.perf_counter_ns``) and the
decisions it covered to two integers: two additions per stage, nothing allocated, so the
clocks are always on. A stage run once for a micro-batch (features, ledger, engine,
records, log) adds its time once with the batch's size; its mean per decision is then
the batch's cost shared out. ``queue`` is the wait of a micro-batch for its event-loop
turn (``serving/batching.py``); ``log`` runs from the append to the answer on the loop
(the sync, and under load the wait for the writer thread). ``total`` is the time inside
the service's own middlewares, from the key check to the last byte handed to the server
(with the waits for the loop no stage covers); what a client measures beyond it is
BentoML's outer middlewares, uvicorn and the network.

The admin-scoped ``GET /admin/stages`` answers :meth:`StageClocks.snapshot` of the worker
that serves it (with its pid): a benchmark reads every worker's and takes differences
(``benchmarks/http_bench.py``).
"""

from __future__ import annotations

import os
from time import perf_counter_ns
from typing import Any

#: The stages of one decision, in the order they run, then the total.
STAGES = (
    "auth",
    "parse",
    "queue",
    "resolve",
    "ledger",
    "features",
    "engine",
    "records",
    "log",
    "send",
    "total",
)

now_ns = perf_counter_ns


class StageClocks:
    """Nanoseconds and decisions per stage, added up since the worker started."""

    __slots__ = ("ns", "decisions")

    def __init__(self) -> None:
        self.ns = dict.fromkeys(STAGES, 0)
        self.decisions = dict.fromkeys(STAGES, 0)

    def add(self, stage: str, start_ns: int, decisions: int = 1) -> int:
        """Add the time since ``start_ns`` to ``stage``; returns now (the next start)."""
        end = perf_counter_ns()
        self.ns[stage] += end - start_ns
        self.decisions[stage] += decisions
        return end

    def snapshot(self) -> dict[str, Any]:
        """This worker's clocks: ``{"pid", "stages": {stage: {"ns", "decisions"}}}``."""
        return {
            "pid": os.getpid(),
            "stages": {s: {"ns": self.ns[s], "decisions": self.decisions[s]} for s in STAGES},
        }


#: The clocks of this process (a worker serves its requests on one event loop).
CLOCKS = StageClocks()


def per_decision_us(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean microseconds per decision of each stage between two sets of worker snapshots
    (matched by pid; a worker missing from ``before`` counts from zero)."""
    old = {s["pid"]: s["stages"] for s in before}
    ns = dict.fromkeys(STAGES, 0)
    n = dict.fromkeys(STAGES, 0)
    for snap in after:
        prev = old.get(snap["pid"], {})
        for stage, v in snap["stages"].items():
            p = prev.get(stage, {"ns": 0, "decisions": 0})
            ns[stage] += v["ns"] - p["ns"]
            n[stage] += v["decisions"] - p["decisions"]
    return {
        "mean_us": {s: round(ns[s] / n[s] / 1e3, 1) if n[s] else None for s in STAGES},
        "decisions": n["total"],
    }
