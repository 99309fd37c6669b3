"""The whole benchmark suite: online over HTTP (with the naive baseline), in-process,
batch decisions, the pipeline and allocation under limits. ``nextbest bench`` calls
:func:`run_suite`.

Each part also runs alone (``python benchmarks/<name>_bench.py``) and writes its own
``benchmarks/results/<name>.json``; the suite adds ``suite.json`` with every part folded in.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, ROOT, write_result

PARTS = ("http", "inprocess", "batch", "pipeline", "allocation")


@dataclass
class SuiteConfig:
    """Sizes of one suite run (the defaults are the full run of the issue)."""

    home: Path = Path("/tmp/bench_world")
    customers: int = 20_000
    sequential: int = 2_000
    duration: float = 30.0
    connections: int = 16
    repeats: int = 300
    batch_customers: int = 1_000_000
    batch_spark: bool = True
    pipeline_sizes: list[int] = field(default_factory=lambda: [100_000])
    allocation_customers: int = 100_000
    parts: tuple[str, ...] = PARTS
    results_dir: Path = RESULTS


def run_batch(customers: int, spark: bool, results_dir: Path) -> dict[str, Any]:
    """The batch engineer's ``batch_bench.py`` in a child process; its JSON folded in."""
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "batch_bench.py"),
        "--customers",
        str(customers),
    ]
    if not spark:
        cmd.append("--no-spark")
    subprocess.run(cmd, cwd=ROOT, check=True)
    src = ROOT / "benchmarks" / "results" / "batch.json"
    data = json.loads(src.read_text())
    if results_dir.resolve() != src.parent.resolve():
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / "batch.json").write_text(src.read_text())
    return data


def run_suite(cfg: SuiteConfig) -> dict[str, Any]:
    """Run the selected parts in order; returns (and writes) every figure."""
    from benchmarks import http_bench, inprocess_bench, pipeline_bench

    out: dict[str, Any] = {"config": {k: str(v) for k, v in vars(cfg).items()}, "parts": {}}
    if "http" in cfg.parts:
        out["parts"]["http"] = http_bench.run(
            cfg.home,
            cfg.customers,
            cfg.sequential,
            min(200, cfg.sequential),
            cfg.duration,
            cfg.connections,
            results_dir=cfg.results_dir,
        )
    if "inprocess" in cfg.parts:
        out["parts"]["inprocess"] = inprocess_bench.run(
            cfg.home, cfg.customers, cfg.repeats, results_dir=cfg.results_dir
        )
    if "batch" in cfg.parts:
        out["parts"]["batch"] = run_batch(cfg.batch_customers, cfg.batch_spark, cfg.results_dir)
    if "pipeline" in cfg.parts:
        out["parts"]["pipeline"] = pipeline_bench.run(
            cfg.pipeline_sizes, results_dir=cfg.results_dir
        )
    if "allocation" in cfg.parts:
        from benchmarks import allocation_bench

        out["parts"]["allocation"] = allocation_bench.run(
            cfg.allocation_customers, results_dir=cfg.results_dir
        )
    write_result("suite", out, results_dir=cfg.results_dir)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: the same options as ``nextbest bench``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, default=Path("/tmp/bench_world"))
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--pipeline-size", type=int, action="append")
    p.add_argument("--batch-customers", type=int, default=1_000_000)
    p.add_argument("--no-spark", action="store_true")
    a = p.parse_args(argv)
    run_suite(
        SuiteConfig(
            home=a.home,
            customers=a.customers,
            parts=tuple(a.parts.split(",")),
            pipeline_sizes=a.pipeline_size or [100_000],
            batch_customers=a.batch_customers,
            batch_spark=not a.no_spark,
        )
    )


if __name__ == "__main__":
    main()
