"""Benchmark: generate the synthetic customer data at a given size.

Usage: ``python benchmarks/generate_bench.py [N_PERSONS] [--out DIR] [--seed S]``
(default 1,000,000 persons into a temporary folder). Prints wall time and peak RSS and
writes ``benchmarks/results/generate.json`` with the machine, sizes and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa

from nextbest.demo.generate import generate

RESULTS = Path(__file__).resolve().parent / "results" / "generate.json"


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet"))


def run(n_persons: int, seed: int, out: Path | None) -> dict:
    """Generate once and return the measured figures."""
    out_dir = out or Path(tempfile.mkdtemp(prefix="nextbest-gen-"))
    try:
        start = time.perf_counter()
        summary = generate(n_persons, seed, out_dir)
        wall = time.perf_counter() - start
        size = _dir_bytes(out_dir)
    finally:
        if out is None:
            shutil.rmtree(out_dir, ignore_errors=True)
    # ru_maxrss is in KiB on Linux.
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "benchmark": "generate",
        "n_persons": n_persons,
        "seed": seed,
        "wall_seconds": round(wall, 2),
        "persons_per_second": round(n_persons / wall),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "output_mb": round(size / 2**20, 1),
        "rows": summary.rows,
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "versions": {"numpy": np.__version__, "pyarrow": pa.__version__, "pandas": pd.__version__},
    }


def main() -> None:
    """Parse the command line, run once, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n_persons", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="keep the output here")
    args = parser.parse_args()
    result = run(args.n_persons, args.seed, args.out)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"generate {result['n_persons']:,} persons: {result['wall_seconds']} s wall, "
        f"peak RSS {result['peak_rss_mb']:,} MB, output {result['output_mb']:,} MB "
        f"-> {RESULTS}"
    )


if __name__ == "__main__":
    main()
