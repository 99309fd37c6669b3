"""Wall time of ``nextbest.customers.features.build_feature_tables`` alone (no Feast apply).

Run: ``.venv/bin/python benchmarks/features_bench.py --customers 100000 [--home DIR]``.
Generates and resolves a world under ``--home`` unless its sources are already there,
then times loading/mapping the sources and the whole build (13 monthly snapshots plus the
parquet writes). Figures go to ``benchmarks/results/features.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import print_table, write_result
from benchmarks.world import world_settings


def run(home: Path, customers: int, seed: int = 42) -> dict[str, Any]:
    """Time ``load_coded_sources`` and ``build_feature_tables`` on a world of ``customers``."""
    from nextbest.customers.as_of import resolve_as_of
    from nextbest.customers.features import build_feature_tables
    from nextbest.customers.identity_io import resolve_generated
    from nextbest.customers.sources.coded_exports import load_coded_sources
    from nextbest.decisions.catalog import load_catalog
    from nextbest.demo.generate import generate

    settings = world_settings(home, customers, seed)
    if not (settings.unified_dir / "identity.parquet").exists():
        generate(customers, seed, settings.raw_dir, as_of=settings.as_of)
        resolve_generated(settings.raw_dir, settings.unified_dir)
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    inputs = {"terms": load_catalog(settings.catalog).terms(), "salt": settings.identifier_salt}
    load_coded_sources(settings.raw_dir, settings.unified_dir, **inputs)
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        build_feature_tables(
            settings.raw_dir,
            settings.unified_dir,
            Path(out),
            resolve_as_of(settings).time,
            **inputs,
        )
        build_s = time.perf_counter() - t0
    return {
        "customers": customers,
        "load_sources_s": round(load_s, 2),
        "build_s": round(build_s, 2),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    """Parse options, run each size, print and save the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, action="append")
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    rows = []
    for n in args.customers or [100_000]:
        home = args.home or Path(tempfile.gettempdir()) / f"features_bench_{n}"
        rows.append(run(home, n, args.seed))
    path = write_result("features", {"runs": rows})
    print_table(
        "build_feature_tables",
        [(r["customers"], r["load_sources_s"], r["build_s"]) for r in rows],
        ("customers", "load_sources s", "build s"),
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
