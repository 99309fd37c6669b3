"""Batch scoring benchmark: N customers x 20 actions on one channel, from offline feature
tables to a written decisions file, on the local (DuckDB + numpy) and the Spark path.

The feature tables are synthesised directly (random but valid values per
``customers.feature_schema``, ``--snapshots`` monthly rows per customer and view), because
generating and resolving 1,000,000 persons and building their features takes far longer
than the scoring being measured. The model is a numpy stub implementing the
ResponseModel protocol (a logistic in a few features), so the figures measure the job
(point-in-time selection, join, rules, arbitration, output), not LightGBM.

Run: ``.venv/bin/python benchmarks/batch_bench.py [--customers 1000000] [--no-spark]
[--spark-customers N] [--reuse]``; writes ``benchmarks/results/batch.json``. ``--reuse`` keeps
feature tables synthesised earlier with the same size (a marker file records it). The
machine is shared, so the 1-minute load average is recorded before and after each path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from customers.feature_schema import model_feature_names, view_specs  # noqa: E402
from customers.generate import ACTIONS, PRODUCTS  # noqa: E402

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
CATALOG = ROOT / "benchmarks" / "config" / "catalog_20_email.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "batch.json"


class StubModel:
    """ResponseModel stub: p = sigmoid(a + b * views + c * tenure), per arm offsets."""

    def __init__(self, arm_ids: list[str]) -> None:
        self.arm_ids = list(arm_ids)
        self.feature_names = model_feature_names()
        self.version = "bench-stub"
        self._views = self.feature_names.index("views_30d_phones")
        self._tenure = self.feature_names.index("tenure_days")

    def predict_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = -3.0 + 0.1 * np.nan_to_num(X[:, self._views]) + 1e-4 * np.nan_to_num(X[:, self._tenure])
        p0 = 1.0 / (1.0 + np.exp(-z))
        off = 0.1 + 0.05 * np.arange(len(self.arm_ids))
        pt = 1.0 / (1.0 + np.exp(-(z[:, None] + off[None, :])))
        return p0, pt, np.zeros_like(pt)


def write_catalog(path: Path = CATALOG) -> Path:
    """20 email actions sharing the 8 campaign arms' models via ``response_model``."""
    products = [p.product_id for p in PRODUCTS]
    kinds = ["upsell", "cross_sell", "retention", "info"]
    actions = []
    for i in range(20):
        arm = ACTIONS[i % len(ACTIONS)].action_id
        actions.append(
            {
                "id": f"bench_offer_{i:02d}",
                "name": f"Benchmark offer {i}",
                "channels": ["email"],
                "purpose": "marketing",
                "kind": kinds[i % len(kinds)],
                "product": products[i % len(products)],
                "value": 20.0 + 5 * i,
                "cost": 0.05,
                "cooldown_days": 7 + i % 14,
                "needs_stock": i % 3 == 0,
                "response_model": arm,
                "eligibility": [{"feature": "tenure_days", "op": "ge", "value": 30 * (i % 4)}],
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Benchmark catalog: 20 email actions sharing the 8 model arms (batch_bench.py).\n"
    path.write_text(header + yaml.safe_dump({"version": "bench-20", "actions": actions}))
    return path


def _column(name: str, kind: str, n: int, rng: np.random.Generator, t: float) -> np.ndarray:
    if name.startswith("consent_"):
        return (rng.random(n) < 0.6).astype(np.int64)
    if name.startswith("holds_"):
        return (rng.random(n) < 0.1).astype(np.int64)
    if name.endswith("_ts"):  # epoch seconds in the past year, 0 = never for a third
        ts = t - rng.integers(0, 365 * 86_400, n)
        return np.where(rng.random(n) < 0.33, 0.0, ts).astype(np.float64)
    if name == "open_cases" or name.startswith("contacts_"):
        return (rng.random(n) < 0.05).astype(np.int64) * rng.integers(1, 3, n)
    if kind == "int":
        return rng.integers(0, 4, n).astype(np.int64)
    return np.round(rng.gamma(2.0, 50.0, n), 1)


def synth_features(out_dir: Path, n: int, snapshots: int, seed: int = 0) -> float:
    """Write every view's parquet with ``snapshots`` monthly rows per customer; seconds."""
    import pandas as pd

    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = pa.array(np.char.add("C", np.arange(n).astype("U9")).astype(object), type=pa.string())
    end = pd.Timestamp(AS_OF)
    times = [end - pd.DateOffset(months=i) for i in range(snapshots)][::-1]
    for spec in view_specs():
        schema = pa.schema(
            [("customer_id", pa.string()), ("event_timestamp", pa.timestamp("us", tz="UTC"))]
            + [(f.name, pa.int64() if f.kind == "int" else pa.float64()) for f in spec.all_features]
        )
        # One random draw per view, re-used with a shift per snapshot: values vary over time
        # without paying for a fresh draw of every snapshot.
        base = {f.name: _column(f.name, f.kind, n, rng, end.timestamp()) for f in spec.all_features}
        with pq.ParquetWriter(out_dir / f"{spec.name}.parquet", schema, compression="zstd") as w:
            for s, t in enumerate(times):
                roll = (s * 7919) % n
                cols = [
                    ids,
                    pa.array(
                        np.full(n, t.value // 1000, dtype="datetime64[us]"),
                        type=pa.timestamp("us", tz="UTC"),
                    ),
                ]
                for f in spec.all_features:
                    v = np.roll(base[f.name], roll)
                    if f.name == spec.as_of_feature.name:
                        v = np.full(n, t.timestamp() - 1.0)
                    elif f.name.endswith("_ts"):
                        v = np.where(v > 0, np.minimum(v, t.timestamp() - 1.0), 0.0)
                    cols.append(pa.array(v))
                w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=250_000)
    return time.perf_counter() - t0


def peak_rss_mib() -> dict[str, float]:
    """Peak resident memory (ru_maxrss, KiB on Linux) of this process and its children."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self": round(own, 1), "children": round(kids, 1), "max": round(max(own, kids), 1)}


def load_average() -> dict[str, float]:
    """1, 5 and 15-minute load averages (the machine is shared; 2 cores)."""
    one, five, fifteen = os.getloadavg()
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)}


def _synthesise(features_dir: Path, customers: int, snapshots: int, reuse: bool) -> float | None:
    """Synthesise the tables unless ``reuse`` and a marker says they have this size;
    seconds taken, or None when reused."""
    marker = features_dir / "_bench_size.json"
    size = {"customers": customers, "snapshots": snapshots}
    if reuse and marker.exists() and json.loads(marker.read_text()) == size:
        return None
    marker.unlink(missing_ok=True)
    seconds = synth_features(features_dir, customers, snapshots)
    marker.write_text(json.dumps(size))
    return seconds


def _steps(timings: dict[str, float], wall: float) -> dict[str, float]:
    """Seconds per step of the local job; ``other`` is wall time no step accounts for."""
    steps = ["setup", "snapshot_time", "features", "chunk_ids", "decide", "write", "log"]
    steps.append("summary")
    out = {s: timings.get(s, 0.0) for s in steps}
    out["other"] = round(wall - sum(out.values()), 3)
    return out


def run(
    customers: int,
    snapshots: int,
    spark: bool,
    home: Path,
    reuse: bool = False,
    local: bool = True,
) -> dict:
    """Synthesise features, score locally and/or on Spark and return the figures."""
    from nextbest.settings import get_settings
    from serving.batch import count_output, score_customers
    from serving.runtime import load_runtime

    settings = get_settings(home=home, catalog=write_catalog(), chunk_size=100_000)
    synth_s = _synthesise(settings.features_dir, customers, snapshots, reuse)
    runtime = load_runtime(settings, model=StubModel([a.action_id for a in ACTIONS]))
    n_actions = len(runtime.plan.channels["email"].action_idx)
    result: dict = {
        "machine": {"python": platform.python_version(), "cores": 2, "numpy": np.__version__},
        "customers": customers,
        "actions_on_channel": n_actions,
        "features": len(runtime.plan.feature_names),
        "snapshots_per_view": snapshots,
        "feature_rows_per_view": customers * snapshots,
        "feature_tables": "synthesised directly (random, schema-valid), not from generate",
        "model": StubModel.__doc__,
        "synthesise_s": None if synth_s is None else round(synth_s, 1),
        "tables_reused": synth_s is None,
        "rss_after_synth_mib": peak_rss_mib(),
    }
    local_out = home / "decisions.parquet"
    if local:
        result["local"] = _run_local(settings, runtime, customers, local_out)
    if spark:
        load_before = load_average()
        t = time.perf_counter()
        sp = score_customers(
            settings, "email", AS_OF, home / "spark_out", runtime=runtime, engine="spark"
        )
        wall = time.perf_counter() - t
        # Compared with the local file written from the same tables (this run or --reuse).
        ref = count_output(local_out) if local_out.exists() else None
        same = ref is not None and ref["customers"] == sp.customers
        result["spark"] = {
            "master": "local[2]",
            "customers": customers,
            "wall_s": round(wall, 2),
            "decisions_per_s": round(customers / wall),
            "timings_s": sp.timings_s,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "peak_rss_mib": peak_rss_mib(),
            "note": "ru_maxrss counts only exited children: the Spark JVM (driver 2g) and its "
            "Python workers are still running, so their memory is not in these figures",
            "same_counts_as_local": same
            and sp.chosen == ref["chosen"]  # type: ignore[index]
            and sp.excluded == ref["excluded"],  # type: ignore[index]
        }
        print(json.dumps(result["spark"], indent=2))
    return result


def _run_local(settings: object, runtime: object, customers: int, out: Path) -> dict:
    """Score on the local path and return its figures."""
    from serving.batch import score_customers

    load_before = load_average()
    t = time.perf_counter()
    local = score_customers(settings, "email", AS_OF, out, runtime=runtime)  # type: ignore[arg-type]
    wall = time.perf_counter() - t
    figures = {
        "customers": customers,
        "wall_s": round(wall, 2),
        "decisions_per_s": round(customers / wall),
        "timings_s": local.timings_s,
        "steps_s": _steps(local.timings_s, wall),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "target": {"wall_s": 60, "peak_rss_mib": 4096},
        "meets_target": wall <= 60 and peak_rss_mib()["self"] <= 4096,
        "peak_rss_mib": peak_rss_mib(),
        "output_mib": round(out.stat().st_size / 2**20, 1),
        "chosen": local.chosen,
    }
    print(json.dumps(figures, indent=2))
    return figures


def main() -> None:
    """Parse options, run, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--snapshots", type=int, default=13)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--no-local", action="store_true", help="run only the Spark path")
    parser.add_argument("--home", type=Path, default=Path("/tmp/nextbest-batch-bench"))
    parser.add_argument("--reuse", action="store_true", help="keep same-size tables")
    args = parser.parse_args()
    result = run(
        args.customers, args.snapshots, not args.no_spark, args.home, args.reuse, not args.no_local
    )
    # A path not run this time keeps its figures from the previous file (each section
    # names its own customer count and load average).
    if RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        for path in ("local", "spark"):
            if path not in result and path in previous:
                result[path] = previous[path]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
