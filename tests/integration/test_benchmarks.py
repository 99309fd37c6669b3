"""The benchmarks that run on the session's world end to end at a tiny size, and write
figures that make sense.

Not timing tests: they only check that the scripts keep working and record what they
claim (figures present, counts right, no errors). They start real servers (``bentoml
serve``, the naive baseline) or read the world's Feast stores and MLflow registry, so
they are integration tests; ``tests/unit/benchmarks/test_smoke.py`` keeps the ones that
need no shared world.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks import batch_bench, http_bench, inprocess_bench, kill9_bench
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _customers(world: World) -> int:
    return int(world.settings.customers)


def test_http_bench_measures_the_floor_and_both_services(world: World, tmp_path: Path) -> None:
    out = http_bench.run(
        world.home,
        _customers(world),
        n_seq=50,
        warmup=10,
        duration=3.0,
        connections=4,
        results_dir=tmp_path,
    )
    saved = json.loads((tmp_path / "http.json").read_text())
    assert saved["machine"]["cores"] >= 1 and saved["machine"]["versions"]["feast"]
    for name in ("floor", "nextbest", "naive"):
        seq, load = out["services"][name]["sequential"], out["services"][name]["load"]
        assert seq["n"] == 50 and seq["errors"] == 0
        assert 0 < seq["p50_ms"] <= seq["p99_ms"] <= seq["max_ms"]
        assert load["requests"] > 0 and load["errors"] == 0 and load["decisions_per_s"] > 0
        assert load["server_cpu_cores"] > 0
    assert out["ratios"]["throughput_ratio"] > 0
    floor = out["floor_ratios"]
    assert floor["sequential_p50_x_floor"] > 0 and floor["throughput_share_of_floor"] > 0
    assert set(floor["met"]) == set(http_bench.TARGETS)
    # the product's own clocks: every stage of the 50 sequential decisions, one worker
    stages = out["services"]["nextbest"]["sequential"]["stages"]
    assert stages["decisions"] == 50
    assert all(v is not None and v > 0 for v in stages["mean_us"].values())
    assert stages["unattributed_us"] >= 0
    assert out["services"]["nextbest"]["load"]["stages"]["decisions"] > 0


def test_inprocess_bench_splits_the_time(world: World, tmp_path: Path) -> None:
    out = inprocess_bench.run(
        world.home, _customers(world), repeats=20, batches=(1, 10), results_dir=tmp_path
    )
    assert (tmp_path / "inprocess.json").exists()
    assert out["sizes"]["fast_features"] is True
    for size in ("1", "10"):
        steps = out["steps_ms_by_batch"][size]
        parts = sum(
            steps[k]["mean_ms"]
            for k in ("lookup", "features", "scoring", "rules", "records", "log")
        )
        assert parts == pytest.approx(steps["total"]["mean_ms"], rel=0.05)
    assert out["online_decider_decide"]["n"] == 20


def test_batch_bench_scores_with_the_registry_champion(world: World, tmp_path: Path) -> None:
    out = batch_bench.run(
        customers=1_500,
        snapshots=2,
        spark=False,  # Spark's start-up alone is ~30 s; its parity is tested in test_parity
        home=tmp_path / "home",
        model_home=world.home,
        model_customers=_customers(world),
        chunk_size=500,
    )
    batch_bench.save(out, tmp_path / "batch.json")
    saved = json.loads((tmp_path / "batch.json").read_text())
    model = saved["model"]
    # The champion of the world's registry scored, through the stacked scorer.
    assert model["alias"] == "champion" and model["version"] and model["stacked_scorer"]
    assert model["tracking_uri"].endswith(str(world.home / "mlflow.db"))
    assert set(model["trees"]) >= {"value"} and model["arms"] > 1
    local = saved["local"]
    assert local["customers"] == 1_500 and local["model_version"] == model["model_version"]
    assert local["excluded_model_error"] == 0  # no row fell back for a failing model
    assert local["steps_s"]["scoring"] > 0 and local["steps_s"]["rules"] > 0
    assert local["cpu_s"] > 0 and local["peak_rss_mib"] > 0
    assert sum(local["chosen"].values()) == 1_500 and len(local["chosen"]) > 2
    # The Spark comparison: parts in another row order are the same decisions; a change
    # in one cell is found and named.
    decisions = tmp_path / "home" / "decisions.parquet"
    table = pq.read_table(decisions)
    parts = tmp_path / "parts"
    parts.mkdir()
    half = table.num_rows // 2
    pq.write_table(table.slice(half), parts / "part-0.parquet")
    pq.write_table(table.slice(0, half), parts / "part-1.parquet")
    assert batch_bench.same_decisions(decisions, parts)["identical"]
    col = table.column_names.index("propensity")
    changed = table.set_column(col, "propensity", pa.array([0.5] * table.num_rows))
    pq.write_table(changed, parts / "part-0.parquet")
    pq.write_table(changed.slice(0, 0), parts / "part-1.parquet")
    assert batch_bench.same_decisions(decisions, parts)["differing_columns"] == ["propensity"]


def test_kill9_bench_loses_no_acknowledged_decision_or_event(world: World, tmp_path: Path) -> None:
    """A short run (one kill -9 of the workers under ~10 s of load): every acknowledged
    decision is in the log with no torn line, every acknowledged event in the ledger once.

    On a private copy of the world: its load sends events for many customers, which later
    tests of the session (parity) would otherwise have to step around."""
    from nextbest.core.settings import get_settings
    from nextbest.customers.feast_store import feature_store

    home = tmp_path / "home"
    shutil.copytree(world.home, home)
    feature_store(get_settings(home=home))  # the copy's stores name only itself
    out = kill9_bench.run(
        home,
        _customers(world),
        kills=1,
        interval=8.0,
        clients=4,
        warmup=2.0,
        rounds=("workers",),
        results_dir=tmp_path,
    )
    saved = json.loads((tmp_path / "kill9.json").read_text())
    assert saved["machine"]["cores"] >= 1 and saved["load_average_after"]
    assert saved["kills"]["workers"][0]["killed"] >= 2  # both workers, while loaded
    d, e = out["decisions"], out["events"]
    assert d["acknowledged"] > 0 and e["acknowledged"] > 0
    assert d["found"] == d["acknowledged"] and d["lost"] == 0 and d["torn_lines"] == 0
    assert e["found_exactly_once"] == e["acknowledged"] and e["lost"] == 0
    assert e["stored_more_than_once"] == 0 and e["stored_not_acknowledged"] == 0
    assert out["events_left_unacknowledged_after_drain"] == 0 and out["met"]
