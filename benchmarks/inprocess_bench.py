"""In-process decisions without HTTP: 1, 10 and 100 customers per call, time split by step.

Steps, timed separately on the same requests as the service runs them: identity lookup,
online features (the fast SQLite reader and, for comparison, the Feast SDK path), model
scoring (``predict_arms``), rules and arbitration (``decide`` with the scores given),
records, and the durable decision-log append (``write`` + ``fsync``). Also the full
``OnlineDecider.decide_and_log`` per request and the raw cost of a small ``write``+``fsync``
/ ``fdatasync`` on this disk.

Run: ``.venv/bin/python benchmarks/inprocess_bench.py --home /tmp/bench_world``;
writes ``benchmarks/results/inprocess.json`` (``--output NAME`` for another name).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CATALOG_20, percentiles, print_table, write_result
from benchmarks.world import ensure_world, sample_requests


def fsync_cost(n: int = 300) -> dict[str, Any]:
    """Latency of one small append + fsync / fdatasync / O_DSYNC write on the log's disk."""
    line = b'{"decision_id":"x","customer_id":"c","ranked":[]}' + b" " * 400 + b"\n"
    out = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_FSYNC_DIR")) as tmp:
        for name, flags, sync in (
            ("open_write_fsync_close", 0, os.fsync),
            ("write_fdatasync_open_fd", 0, os.fdatasync),
            ("write_o_dsync_open_fd", os.O_DSYNC, None),
        ):
            path = Path(tmp) / f"{name}.log"
            lat = []
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | flags, 0o640)
            for _ in range(n):
                t = time.perf_counter()
                if name.startswith("open_"):
                    f2 = os.open(path, os.O_WRONLY | os.O_APPEND, 0o640)
                    os.write(f2, line)
                    os.fsync(f2)
                    os.close(f2)
                else:
                    os.write(fd, line)
                    if sync:
                        sync(fd)
                lat.append((time.perf_counter() - t) * 1e3)
            os.close(fd)
            out[name] = percentiles(lat)
    return out


def run(
    home: Path,
    customers: int,
    repeats: int = 300,
    batches: tuple[int, ...] = (1, 10, 100),
    results_dir: Path | None = None,
    output: str = "inprocess",
) -> dict[str, Any]:
    """Time each step of the online path in process; write ``<output>.json``."""
    import numpy as np

    # The 20-action catalog is passed to the decider only: setting it in the environment
    # would leak into everything else this process runs (the smoke test runs in pytest).
    settings = ensure_world(home, customers)
    from nextbest.core.settings import get_settings
    from nextbest.customers.feast_store import lookup_customer, online_features
    from nextbest.customers.normalise import identifier_key
    from nextbest.decisions.engine import DecisionContext, decide
    from nextbest.decisions.group_commit import GroupCommitLog
    from serving.decider import OnlineDecider
    from serving.requests import CustomerRef, DecideRequest

    with tempfile.TemporaryDirectory() as tmp:
        decider = OnlineDecider(get_settings(home=home, catalog=CATALOG_20))
        # decisions of the benchmark go to a scratch log on the same disk, not the world's
        decider.log = GroupCommitLog(Path(tmp) / "decisions")
        fast, store, plan = decider.fast, decider.store, decider.plan
        bodies = sample_requests(settings, max(batches) * repeats)
        refs = [CustomerRef(b["customer"]["id"], b["customer"]["id_type"]) for b in bodies]
        now = datetime.now(UTC)
        ts = now.timestamp()
        steps: dict[str, dict[str, Any]] = {}
        for size in batches:
            n_calls = max(repeats // size, 5) if size > 1 else repeats
            t: dict[str, list[float]] = {
                k: []
                for k in (
                    "lookup",
                    "features",
                    "features_sdk",
                    "scoring",
                    "rules",
                    "records",
                    "log",
                    "total",
                )
            }
            for c in range(n_calls):
                chunk = refs[(c * size) % len(refs) :][:size] or refs[:size]
                t0 = time.perf_counter()
                keys = [identifier_key(r.id_type, r.id, settings.identifier_salt) for r in chunk]
                cids = [fast.lookup(k) if fast else lookup_customer(store, k) for k in keys]
                t1 = time.perf_counter()
                X = decider.features(cids, now)
                t2 = time.perf_counter()
                scores = plan.model.predict_arms(X[:, plan.model_cols])
                t3 = time.perf_counter()
                ctx = DecisionContext(
                    channel="email",
                    now=now,
                    k=3,
                    stock=decider.stock.vector(),
                    feature_snapshot_time=now,
                    request={},
                )
                d = decide(X, np.array(cids, dtype=object), plan, ctx, model_scores=scores)
                t4 = time.perf_counter()
                recs = d.records()
                t5 = time.perf_counter()
                decider.log.append(recs)
                t6 = time.perf_counter()
                known = [x for x in cids if x]
                if c < 30 and known:  # the SDK path is slow: a few calls suffice
                    s0 = time.perf_counter()
                    online_features(store, known, ts, decider.names)
                    t["features_sdk"].append((time.perf_counter() - s0) * 1e3)
                for k, a, b in (
                    ("lookup", t0, t1),
                    ("features", t1, t2),
                    ("scoring", t2, t3),
                    ("rules", t3, t4),
                    ("records", t4, t5),
                    ("log", t5, t6),
                    ("total", t0, t6),
                ):
                    t[k].append((b - a) * 1e3)
            steps[str(size)] = {k: percentiles(v) for k, v in t.items()}
        # the whole OnlineDecider.decide_and_log, one request at a time
        full = []
        for r in refs[:repeats]:
            a = time.perf_counter()
            decider.decide_and_log([DecideRequest(r, "email", 3)]).wait()
            full.append((time.perf_counter() - a) * 1e3)
    out = {
        "sizes": {
            "customers": customers,
            "catalog_actions": 20,
            "repeats": repeats,
            "fast_features": fast is not None,
        },
        "steps_ms_by_batch": steps,
        "online_decider_decide": percentiles(full),
        "fsync": fsync_cost(),
    }
    kw = {"results_dir": results_dir} if results_dir else {}
    write_result(output, out, **kw)
    rows = []
    for size, st in steps.items():
        rows.append(
            (
                size,
                *(
                    st[k]["p50_ms"]
                    for k in ("lookup", "features", "scoring", "rules", "records", "log", "total")
                ),
                st["features_sdk"].get("p50_ms", "-"),
            )
        )
    print_table(
        "In-process decide(): p50 ms per call by step",
        rows,
        (
            "customers/call",
            "lookup",
            "features",
            "scoring",
            "rules",
            "records",
            "log",
            "total",
            "features via SDK",
        ),
    )
    print_table(
        "Durable append of one small line",
        [(k, v["p50_ms"], v["p99_ms"]) for k, v in out["fsync"].items()]
        + [
            (
                "OnlineDecider.decide_and_log (all steps)",
                out["online_decider_decide"]["p50_ms"],
                out["online_decider_decide"]["p99_ms"],
            )
        ],
        ("what", "p50 ms", "p99 ms"),
    )
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, default=Path("/tmp/bench_world"))
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument(
        "--output",
        default="inprocess",
        help="result name: writes benchmarks/results/<output>.json (default inprocess)",
    )
    a = p.parse_args(argv)
    run(a.home, a.customers, a.repeats, output=a.output)


if __name__ == "__main__":
    main()
