"""The offline pipeline at scale: generation, identity resolution, feature build and
materialisation, and training, each in its own child process so that each step's peak
memory (max RSS) is its own.

Run: ``.venv/bin/python benchmarks/pipeline_bench.py --customers 100000 [--customers 1000000]``;
writes ``benchmarks/results/pipeline.json`` (one entry per size, wall seconds and peak
GiB per step). Worlds are built under ``--workdir`` and removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, print_table, write_result

STEPS = ("generate", "resolve", "features", "train")


def _run_step(step: str, home: Path, customers: int, seed: int) -> dict[str, float]:
    """One pipeline step in this process (the child side); wall seconds of its parts
    where the step reports them (features: build, apply, materialize)."""
    from benchmarks.world import world_settings

    settings = world_settings(home, customers, seed)
    if step == "generate":
        from nextbest.demo.generate import generate

        generate(customers, seed, settings.raw_dir, as_of=settings.as_of)
    elif step == "resolve":
        from nextbest.customers.identity_io import resolve_generated

        resolve_generated(settings.raw_dir, settings.unified_dir)
    elif step == "features":
        from nextbest.pipeline import build_features

        return build_features(settings)["seconds"]
    elif step == "train":
        from training.train import train

        train(settings)
    else:
        raise ValueError(f"unknown step {step!r}; one of {STEPS}")
    return {}


def step(step: str, home: Path, customers: int, seed: int = 42) -> dict[str, Any]:
    """Run one step in a child process; wall seconds and the child's peak RSS."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.pipeline_bench",
            "_step",
            step,
            str(home),
            str(customers),
            str(seed),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline step {step} failed:\n{proc.stderr[-4000:]}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    out: dict[str, Any] = {
        "wall_s": round(wall, 1),
        "peak_gib": round(child["max_rss_kib"] / 2**20, 2),
    }
    if child.get("children_max_rss_kib"):
        out["workers_peak_gib"] = round(child["children_max_rss_kib"] / 2**20, 2)
    if "cpu_s" in child:
        out["cpu_s"] = round(child["cpu_s"] + child.get("children_cpu_s", 0.0), 1)
    if child.get("parts_s"):
        out["parts_s"] = child["parts_s"]
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def run(
    sizes: list[int],
    workdir: Path | None = None,
    keep: bool = False,
    seed: int = 42,
    results_dir: Path | None = None,
) -> dict[str, Any]:
    """Each step at each size; write pipeline.json.

    The file is rewritten after every step, so a run stopped during a long step (train at
    1,000,000) still keeps the steps it finished.
    """
    out: dict[str, Any] = {"sizes": {"customers": sizes, "seed": seed}, "runs": {}}
    base = Path(workdir or tempfile.mkdtemp(prefix="nextbest_pipeline_"))
    kw = {"results_dir": results_dir} if results_dir else {}
    for n in sizes:
        home = base / f"world_{n}"
        if home.exists():
            shutil.rmtree(home)
        home.mkdir(parents=True)
        runs = out["runs"].setdefault(str(n), {})
        for s in STEPS:
            runs[s] = step(s, home, n, seed)
            write_result("pipeline", out, **kw)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    rows = [
        (f"{int(n):,}", s, r["wall_s"], r["peak_gib"])
        for n, steps in out["runs"].items()
        for s, r in steps.items()
    ]
    print_table(
        "Pipeline: wall time and peak memory per step",
        rows,
        ("customers", "step", "wall s", "peak GiB"),
    )
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_step":
        parts = _run_step(argv[1], Path(argv[2]), int(argv[3]), int(argv[4]))
        me = resource.getrusage(resource.RUSAGE_SELF)
        # worker processes the step forked (feature snapshots): their CPU and the
        # largest one's peak, reported beside the step's own
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        print(
            json.dumps(
                {
                    "max_rss_kib": me.ru_maxrss,
                    "children_max_rss_kib": kids.ru_maxrss,
                    "cpu_s": round(me.ru_utime + me.ru_stime, 1),
                    "children_cpu_s": round(kids.ru_utime + kids.ru_stime, 1),
                    "parts_s": parts,
                }
            )
        )
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, action="append")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--results-dir", type=Path, help="where pipeline.json goes")
    a = p.parse_args(argv)
    run(a.customers or [100_000], a.workdir, a.keep, results_dir=a.results_dir)


if __name__ == "__main__":
    main()
