"""The benchmarks that need no shared world run end to end at a tiny size and write
figures that make sense.

Not a timing test: it only checks that the scripts keep working and record what they
claim (figures present, counts right, no errors). The benchmarks that start servers on
the session's world or read its stores are in ``tests/integration/test_benchmarks.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import allocation_bench, pipeline_bench

pytestmark = pytest.mark.slow


def test_pipeline_bench_reports_every_step(tmp_path: Path) -> None:
    out = pipeline_bench.run([300], workdir=tmp_path / "w", results_dir=tmp_path)
    steps = out["runs"]["300"]
    assert set(steps) == set(pipeline_bench.STEPS)
    assert all(s["wall_s"] > 0 and s["peak_gib"] > 0 for s in steps.values())
    assert not (tmp_path / "w" / "world_300").exists()  # cleaned up


def test_the_committed_benchmark_catalog_is_the_one_batch_bench_writes(tmp_path: Path) -> None:
    # http_bench and http_ab read the committed file; batch_bench writes its own copy into
    # its home from config/catalog.yaml, so the two must not drift apart.
    from benchmarks import batch_bench

    written = batch_bench.write_catalog(tmp_path / "catalog.yaml")
    assert written.read_text() == batch_bench.CATALOG.read_text()


def test_allocation_bench_respects_its_limits_and_beats_greedy(tmp_path: Path) -> None:
    out = allocation_bench.run(3000, results_dir=tmp_path)
    assert (tmp_path / "allocation.json").exists()
    assert out["actions"] == 20
    for limit in out["limits"]:
        assert limit["solver_used"] <= limit["capacity"]
        assert limit["greedy_used"] <= limit["capacity"]
    assert out["solver"]["value"] <= out["solver"]["lp_bound"]
    assert out["solver"]["gap_to_lp_bound"] < 0.01
    assert out["greedy_ranking"]["value"] <= out["solver"]["value"]
