"""Batch decisions benchmark: N customers x 20 actions on one channel, from offline feature
tables to a written decisions file, on the local (DuckDB + numpy + LightGBM) and the Spark
path, scored with the real champion model.

The model is the champion of an MLflow registry (``nextbest train``'s S- or T-learner and
value model, LightGBM), loaded by alias through ``nextbest.decisions.runtime.load_runtime`` exactly
as ``nextbest decide-batch`` loads it; the registry is that of a trained world (``--model-home``,
built and trained with the normal steps by ``benchmarks.world.ensure_world`` when none of
that size is there). Scoring goes through ``nextbest.batch.run.decide_customers``, so through the
engine and the stacked scorer the product uses.

Input, by default: feature tables synthesised directly (random but valid values per
``nextbest.customers.feature_schema``, ``--snapshots`` monthly rows per customer and view), because
generating, resolving and building the features of 1,000,000 persons takes far longer
than the scoring measured here. ``--features-world`` points the bench at the real offline
tables of an existing world instead (a world home, its ``features`` directory, or a
``FEATURES_DONE`` file listing paths); the figures then go to the ``*_real_features``
sections. Stock levels come from that world's (or the model world's) product export.

Run: ``.venv/bin/python benchmarks/batch_bench.py [--customers 1000000] [--no-spark]
[--reuse] [--model-home /tmp/bench_world] [--features-world PATH]``; writes
``benchmarks/results/batch.json``. ``--reuse`` keeps feature tables synthesised earlier
with the same size (a marker file records it). The machine is shared, so the load average
is recorded before and after each path, and CPU seconds beside wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nextbest.customers.feature_schema import CatalogTerms, view_specs  # noqa: E402
from nextbest.decisions.catalog import load_catalog  # noqa: E402

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
CATALOG = ROOT / "benchmarks" / "config" / "catalog_20_email.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "batch.json"
MODEL_HOME = Path("/tmp/bench_world")


def write_catalog(path: Path = CATALOG) -> Path:
    """20 email actions sharing the 8 campaign arms' models via ``response_model``, with
    the default catalog's categories and products."""
    base = yaml.safe_load((ROOT / "config" / "catalog.yaml").read_text())
    products = [p["id"] for p in base["products"]]
    # the campaign arms: actions with a model of their own (service actions borrow one)
    arms = [a["id"] for a in base["actions"] if not a.get("response_model")]
    kinds = ["upsell", "cross_sell", "retention", "info"]
    actions = []
    for i in range(20):
        arm = arms[i % len(arms)]
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
    body = {"version": "bench-20"} | {
        k: base[k] for k in ("channels", "purposes", "categories", "products")
    }
    path.write_text(header + yaml.safe_dump({**body, "actions": actions}, sort_keys=False))
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


def synth_features(
    out_dir: Path, n: int, snapshots: int, terms: CatalogTerms, seed: int = 0
) -> float:
    """Write every view's parquet with ``snapshots`` monthly rows per customer; seconds."""
    import pandas as pd

    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = pa.array(np.char.add("C", np.arange(n).astype("U9")).astype(object), type=pa.string())
    end = pd.Timestamp(AS_OF)
    times = [end - pd.DateOffset(months=i) for i in range(snapshots)][::-1]
    for spec in view_specs(terms):
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


def _tree_cpu_s() -> float:
    """CPU seconds (user + system) of this process, its exited children and its live
    descendants (the Spark JVM and its Python workers stay alive between jobs)."""
    import psutil

    own = resource.getrusage(resource.RUSAGE_SELF)
    gone = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + gone.ru_utime + gone.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:  # exited meanwhile
            pass
    return total


class TreeMemory:
    """Peak RSS of this process plus its live descendants, sampled every ``every`` s in a
    thread (ru_maxrss misses the Spark JVM and its workers: they do not exit). Once a
    second: psutil finds descendants by reading every process's ``/proc`` entry, which at
    5 Hz took ~8 % of the local job's profile samples."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        import psutil

        me = psutil.Process()
        rss = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                rss += child.memory_info().rss
            except psutil.Error:
                pass
        return rss / 2**20

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self._sample())
            self._stop.wait(self.every)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = round(max(self.peak_mib, self._sample()), 1)


def _synthesise(features_dir: Path, customers: int, snapshots: int, reuse: bool) -> float | None:
    """Synthesise the tables unless ``reuse`` and a marker says they have this size;
    seconds taken, or None when reused."""
    marker = features_dir / "_bench_size.json"
    size = {"customers": customers, "snapshots": snapshots}
    if reuse and marker.exists() and json.loads(marker.read_text()) == size:
        return None
    marker.unlink(missing_ok=True)
    seconds = synth_features(features_dir, customers, snapshots, load_catalog(CATALOG).terms())
    marker.write_text(json.dumps(size))
    return seconds


def features_dir_of(path: Path) -> Path:
    """The directory of offline feature tables named by ``path``: the directory itself, a
    world home (its ``features``), or a file (``FEATURES_DONE``) listing paths, one of
    which is either of those."""
    path = Path(path)
    views = view_specs(load_catalog(ROOT / "config" / "catalog.yaml").terms())
    candidates = [path, path / "features"]
    if path.is_file():
        for token in path.read_text().replace("=", " ").replace(":", " ").split():
            p = Path(token.strip("'\",")).expanduser()
            candidates += [p, p / "features", p.parent]
    for c in candidates:
        if c.is_dir() and any((c / f"{v.name}.parquet").exists() for v in views):
            return c
    raise SystemExit(f"no offline feature tables found from {path}")


def _world_home_of(features_dir: Path) -> Path:
    """The world home holding ``features_dir`` (its parent, where ``raw/`` lives)."""
    return features_dir.parent


def _copy_stock(src_world: Path, home: Path) -> bool:
    """Copy the world's product export (stock levels) into the bench home; False if none."""
    src = Path(src_world) / "raw" / "products.parquet"
    if not src.exists():
        return False
    (home / "raw").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, home / "raw" / "products.parquet")
    return True


def model_description(runtime: Any, tracking_uri: str) -> dict[str, Any]:
    """What scored: registry, version, learner and the LightGBM boosters' sizes."""
    from nextbest.models.scoring import StackedScorer

    model = runtime.model
    response, value = model.response, model.value
    boosters: dict[str, Any] = {}
    if getattr(response, "model_", None) is not None:
        boosters["response"] = response.model_.booster_.num_trees()
    elif getattr(response, "models_", None) is not None:
        boosters["response_per_arm"] = [m.booster_.num_trees() for m in response.models_]
    if getattr(value, "model_", None) is not None:
        boosters["value"] = value.model_.booster_.num_trees()
    if getattr(value, "control_model_", None) is not None:
        boosters["control_value"] = value.control_model_.booster_.num_trees()
    return {
        "kind": "champion from the MLflow registry (nextbest train), LightGBM",
        "tracking_uri": tracking_uri,
        "registered_model": runtime.settings.model_name,
        "alias": "champion",
        "version": runtime.model_version,
        "model_version": runtime.plan.model_version,
        "learner": getattr(model, "learner_name", type(response).__name__),
        "response_class": type(response).__name__,
        "arms": len(model.arm_ids),
        "model_features": len(model.feature_names),
        "trees": boosters,
        "stacked_scorer": StackedScorer.from_model(model) is not None,
    }


def _steps(timings: dict[str, float], wall: float) -> dict[str, float]:
    """Seconds per step of the local job; ``decide`` is ``scoring`` + ``rules``; ``other``
    is wall time no step accounts for."""
    steps = ["setup", "snapshot_time", "model_setup", "features", "chunk_ids", "scoring", "rules"]
    steps.append("write")
    steps += ["log", "summary"]
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
    model_home: Path = MODEL_HOME,
    model_customers: int = 20_000,
    features_world: Path | None = None,
    chunk_size: int = 50_000,
    model_threads: int = 2,
) -> dict:
    """Prepare the input, load the champion, score locally and/or on Spark; the figures.

    Without ``features_world`` the tables are synthesised for ``customers`` customers
    under ``home``; with it, the world's own offline tables are read (``customers`` is then
    whoever has features there).
    """
    from benchmarks.world import ensure_world
    from nextbest.core.settings import get_settings
    from nextbest.decisions.runtime import load_runtime

    t_model = time.perf_counter()
    model_settings = ensure_world(Path(model_home), model_customers)
    model_world_s = time.perf_counter() - t_model
    home = Path(home)
    suffix = ""
    if features_world is not None:
        suffix = "_real_features"
        real_dir = features_dir_of(Path(features_world))
        home = home / "real_features"
        home.mkdir(parents=True, exist_ok=True)
        link = home / "features"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(real_dir.resolve(), target_is_directory=True)
        stock_from = _world_home_of(real_dir)
        input_desc: dict[str, Any] = {
            "kind": "real offline feature tables of a generated, resolved world",
            "features_dir": str(real_dir.resolve()),
            "from": str(features_world),
        }
        synth_s = None
    else:
        stock_from = Path(model_home)
        input_desc = {
            "kind": "synthesised directly (random, schema-valid values per "
            "nextbest.customers.feature_schema), not from generate/resolve",
            "snapshots_per_view": snapshots,
            "feature_rows_per_view": customers * snapshots,
        }
    settings = get_settings(
        home=home,
        catalog=write_catalog(home / CATALOG.name),
        chunk_size=chunk_size,
        mlflow_tracking_uri=model_settings.tracking_uri,
    )
    if features_world is None:
        synth_s = _synthesise(settings.features_dir, customers, snapshots, reuse)
        input_desc["synthesise_s"] = None if synth_s is None else round(synth_s, 1)
        input_desc["tables_reused"] = synth_s is None
    input_desc["stock_from"] = (
        str(stock_from / "raw" / "products.parquet")
        if _copy_stock(stock_from, settings.root)
        else "none (missing stock counts as out of stock)"
    )
    t_load = time.perf_counter()
    runtime = load_runtime(settings)  # the champion by alias, as `nextbest decide-batch` loads it
    load_s = time.perf_counter() - t_load
    n_actions = len(runtime.plan.channels["email"].action_idx)
    result: dict = {
        "machine": {"python": platform.python_version(), "cores": os.cpu_count()},
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "actions_on_channel": n_actions,
        "features": len(runtime.plan.feature_names),
        "model": model_description(runtime, model_settings.tracking_uri),
        "model_world": {"home": str(model_home), "customers": model_customers},
        "model_world_s": round(model_world_s, 1),
        "model_load_s": round(load_s, 1),
        "input": input_desc,
        "chunk_size": chunk_size,
        "model_threads": model_threads,
        "rss_after_setup_mib": peak_rss_mib(),
    }
    local_out = settings.root / "decisions.parquet"
    # Each section names its own input and model: a later run of one path keeps the
    # other's section from the previous file.
    context = {"input": input_desc["kind"], "model_version": runtime.plan.model_version}
    if local:
        figures = _run_local(settings, runtime, local_out, model_threads)
        result["local" + suffix] = context | {"chunk_size": chunk_size} | figures
    if spark:
        result["spark" + suffix] = context | _run_spark(settings, runtime, local_out)
    return result


def _run_local(settings: Any, runtime: Any, out: Path, model_threads: int) -> dict:
    """Score on the local path and return its figures."""
    from nextbest.batch.run import decide_customers

    load_before = load_average()
    cpu0 = _tree_cpu_s()
    t = time.perf_counter()
    with TreeMemory() as mem:
        local = decide_customers(
            settings, "email", AS_OF, out, runtime=runtime, model_threads=model_threads
        )
    wall = time.perf_counter() - t
    cpu = _tree_cpu_s() - cpu0
    figures = {
        "customers": local.customers,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 1),
        "decisions_per_s": round(local.customers / wall),
        "timings_s": local.timings_s,
        "steps_s": _steps(local.timings_s, wall),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "target": {"wall_s": 60, "peak_rss_mib": 4096},
        "meets_target": wall <= 60 and mem.peak_mib <= 4096,
        "peak_rss_mib": mem.peak_mib,
        "ru_maxrss_mib": peak_rss_mib(),
        "output_mib": round(out.stat().st_size / 2**20, 1),
        "model_version": local.model_version,
        "scorer": local.scorer,
        "chosen": local.chosen,
        "excluded_model_error": sum(v.get("MODEL_ERROR", 0) for v in local.excluded.values()),
    }
    print(json.dumps(figures, indent=2))
    return figures


def same_decisions(local_out: Path, spark_out: Path) -> dict[str, Any]:
    """Whether Spark's parts hold exactly the local file's rows (sorted by customer id),
    column by column; the first differing columns when not."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    a = pq.read_table(local_out)
    b = ds.dataset(str(spark_out), format="parquet").to_table()
    if a.num_rows != b.num_rows:
        return {"identical": False, "rows": [a.num_rows, b.num_rows]}
    a = a.take(pc.sort_indices(a, sort_keys=[("customer_id", "ascending")]))
    b = b.take(pc.sort_indices(b, sort_keys=[("customer_id", "ascending")]))

    def same(x: pa.ChunkedArray, y: pa.ChunkedArray) -> bool:
        y = y.cast(x.type)
        if not pa.types.is_floating(x.type):
            return x.equals(y)
        # Arrow's equals has NaN != NaN (p_control is NaN where nothing was scored):
        # equal nulls, then equal values with NaN equal to NaN.
        nulls = x.is_null().to_numpy(zero_copy_only=False)
        if not np.array_equal(nulls, y.is_null().to_numpy(zero_copy_only=False)):
            return False
        xs = x.to_numpy(zero_copy_only=False)[~nulls]
        ys = y.to_numpy(zero_copy_only=False)[~nulls]
        return np.array_equal(xs, ys, equal_nan=True)

    differ = [c for c in a.column_names if not same(a[c], b[c])]
    return {"identical": not differ, "rows": a.num_rows, "differing_columns": differ[:10]}


def _run_spark(settings: Any, runtime: Any, local_out: Path) -> dict:
    """Score on the Spark path (local[2]) and compare with the local file."""
    from nextbest.batch.io import count_output
    from nextbest.batch.run import decide_customers
    from nextbest.batch.spark import spark_session

    spark_out = settings.root / "spark_out"
    t_start = time.perf_counter()
    spark_session(settings)  # JVM start-up timed apart from the job
    start_s = time.perf_counter() - t_start
    load_before = load_average()
    cpu0 = _tree_cpu_s()
    t = time.perf_counter()
    with TreeMemory() as mem:
        sp = decide_customers(settings, "email", AS_OF, spark_out, runtime=runtime, engine="spark")
    wall = time.perf_counter() - t
    cpu = _tree_cpu_s() - cpu0
    ref = count_output(local_out) if local_out.exists() else None
    figures = {
        "master": settings.spark_master,
        "customers": sp.customers,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 1),
        "cpu_note": "this process plus the live JVM and Python workers (psutil)",
        "session_start_s": round(start_s, 1),
        "decisions_per_s": round(sp.customers / wall),
        "timings_s": sp.timings_s,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "peak_rss_mib": mem.peak_mib,
        "peak_rss_note": "sampled every 1 s over this process, the JVM and its workers",
        "model_version": sp.model_version,
        "same_counts_as_local": ref is not None
        and ref["customers"] == sp.customers
        and sp.chosen == ref["chosen"]
        and sp.excluded == ref["excluded"],
        "same_decisions_as_local": same_decisions(local_out, spark_out)
        if local_out.exists()
        else None,
    }
    print(json.dumps(figures, indent=2))
    return figures


def main(argv: list[str] | None = None) -> None:
    """Parse options, run, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--snapshots", type=int, default=13)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--no-local", action="store_true", help="run only the Spark path")
    parser.add_argument("--home", type=Path, default=Path("/tmp/nextbest-batch-bench"))
    parser.add_argument("--reuse", action="store_true", help="keep same-size tables")
    parser.add_argument(
        "--model-home",
        type=Path,
        default=MODEL_HOME,
        help="world whose MLflow registry holds the champion (built and trained if absent)",
    )
    parser.add_argument("--model-customers", type=int, default=20_000)
    parser.add_argument(
        "--features-world",
        type=Path,
        help="score this world's real offline tables (home, features dir or FEATURES_DONE)",
    )
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--model-threads", type=int, default=2, help="LightGBM threads")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(
        args.customers,
        args.snapshots,
        not args.no_spark,
        args.home,
        args.reuse,
        not args.no_local,
        model_home=args.model_home,
        model_customers=args.model_customers,
        features_world=args.features_world,
        chunk_size=args.chunk_size,
        model_threads=args.model_threads,
    )
    save(result, args.results)


def save(result: dict, path: Path = RESULTS) -> None:
    """Write the figures; sections not run this time keep the previous file's (each names
    its own customers, input, model and load average)."""
    sections = ("local", "spark", "local_real_features", "spark_real_features")
    if path.exists():
        previous = json.loads(path.read_text())
        for name in sections:
            if name not in result and name in previous:
                result[name] = previous[name]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
