"""What every benchmark records: the machine, library versions, load and the result file."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CATALOG_20 = ROOT / "benchmarks" / "config" / "catalog_20_email.yaml"
PACKAGES = ("feast", "bentoml", "mlflow", "lightgbm", "numpy", "pandas", "pyspark", "splink")

if str(ROOT) not in sys.path:  # each script also runs as ``python benchmarks/<name>.py``
    sys.path.insert(0, str(ROOT))


def machine() -> dict[str, Any]:
    """Cores, memory, Python and library versions, and the load average right now."""
    import psutil

    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def percentiles(ms: list[float] | np.ndarray) -> dict[str, float]:
    """p50, p95, p99, max and mean of latencies in milliseconds."""
    a = np.asarray(ms, dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


def write_result(name: str, payload: dict[str, Any], results_dir: Path = RESULTS) -> Path:
    """Write ``<results_dir>/<name>.json`` with the machine, a timestamp and the hash of
    the source it measures (:mod:`benchmarks.sources`) added."""
    results_dir.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": name,
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        **payload,
    }
    from benchmarks.sources import source_record

    source = source_record(name)
    if source is not None:
        out["source"] = source
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return path


def print_table(title: str, rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> None:
    """Print a small table with rich."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for h in header:
        t.add_column(str(h))
    for r in rows:
        t.add_row(*[f"{v:,.3f}" if isinstance(v, float) else str(v) for v in r])
    Console().print(t)
