"""Benchmark: generate the synthetic customer data at a given size.

Usage: ``python benchmarks/generate_bench.py [N_PERSONS] [--out DIR] [--seed S]``
(default 1,000,000 persons into a temporary folder). Prints wall time and peak RSS and
writes ``benchmarks/results/generate.json`` with the machine, sizes, versions, load
average before and after, and the hash of the generator's source.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyarrow as pa

from benchmarks.common import write_result
from nextbest.demo.generate import generate


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.parquet"))


def run(n_persons: int, seed: int, out: Path | None) -> dict:
    """Generate once and return the measured figures."""
    out_dir = out or Path(tempfile.mkdtemp(prefix="nextbest-gen-"))
    load_before = [round(x, 2) for x in os.getloadavg()]
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
        "n_persons": n_persons,
        "seed": seed,
        "wall_seconds": round(wall, 2),
        "persons_per_second": round(n_persons / wall),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "output_mb": round(size / 2**20, 1),
        "rows": summary.rows,
        "pyarrow": pa.__version__,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    """Parse the command line, run once, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n_persons", nargs="?", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="keep the output here")
    args = parser.parse_args()
    result = run(args.n_persons, args.seed, args.out)
    path = write_result("generate", result)
    print(
        f"generate {result['n_persons']:,} persons: {result['wall_seconds']} s wall, "
        f"peak RSS {result['peak_rss_mb']:,} MB, output {result['output_mb']:,} MB "
        f"-> {path}"
    )


if __name__ == "__main__":
    main()
