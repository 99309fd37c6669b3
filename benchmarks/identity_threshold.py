"""Choose the match-weight threshold on labelled data (the procedure of docs/identity.md).

Usage: ``python -m benchmarks.identity_threshold [--grid 0 12]``.

Tuning sets: FEBRL 1 and generated data (2,000 persons, seed 7). Held out: FEBRL 2 and
generated data (2,000 persons, seed 1234). For every whole match weight on the grid the
full resolver runs (model, guard and merge) on each tuning set; among the weights whose
pairwise precision is at least 0.995 on every tuning set, the one with the highest
worst-set F1 wins (ties: the higher weight, the safer). The grid starts at weight 0
(probability 0.5): below it the model itself holds a pair more likely two people. The
held-out sets are then scored at the chosen weight only. Figures go to
``benchmarks/results/identity_threshold.json``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchmarks import febrl
from benchmarks.common import write_result
from nextbest.customers.identity import ResolutionSettings, resolve_records

PRECISION_FLOOR = 0.995
PERSONS = 2_000
TUNING = (("febrl1", None), ("generated", 7))
HELD_OUT = (("febrl2", None), ("generated", 1234))


def _labelled(name: str, seed: int | None, work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    if name.startswith("febrl"):
        return febrl.load(name)
    from nextbest.customers.sources.identity_records import load_canonical_records
    from nextbest.demo.generate import generate

    raw = work / f"generated_{seed}"
    generate(PERSONS, int(seed), raw)
    return load_canonical_records(raw), pd.read_parquet(raw / "truth" / "records.parquet")


def _score(records: pd.DataFrame, truth: pd.DataFrame, settings: ResolutionSettings) -> dict:
    result = resolve_records(records, settings)
    m = result.assignments.merge(truth[["record_id", "person_id"]], on="record_id")
    q = febrl.pairwise_quality(m["customer_id"].to_numpy(), m["person_id"].to_numpy())
    return {k: round(v, 5) for k, v in q.items()}


def choose(curves: dict[str, dict[float, dict]]) -> float:
    """The weight with the best worst-set F1 among those meeting the precision floor."""
    weights = sorted(next(iter(curves.values())))
    ok = [w for w in weights if all(c[w]["precision"] >= PRECISION_FLOOR for c in curves.values())]
    if not ok:
        raise RuntimeError(f"no weight on the grid reaches precision {PRECISION_FLOOR}")
    return max(ok, key=lambda w: (min(c[w]["f1"] for c in curves.values()), w))


def main() -> None:
    """Run the grid on the tuning sets, choose, score the held-out sets, save."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grid", type=int, nargs=2, default=(0, 12))
    args = parser.parse_args()
    base = ResolutionSettings()
    grid = [float(w) for w in range(args.grid[0], args.grid[1] + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        curves: dict[str, dict[float, dict]] = {}
        for name, seed in TUNING:
            records, truth = _labelled(name, seed, Path(tmp))
            key = f"{name}" + (f"_seed{seed}" if seed is not None else "")
            curves[key] = {}
            for w in grid:
                curves[key][w] = _score(records, truth, replace(base, match_weight_threshold=w))
                print(key, w, curves[key][w], flush=True)
        chosen = choose(curves)
        held: dict[str, dict] = {}
        for name, seed in HELD_OUT:
            records, truth = _labelled(name, seed, Path(tmp))
            key = f"{name}" + (f"_seed{seed}" if seed is not None else "")
            held[key] = _score(records, truth, replace(base, match_weight_threshold=chosen))
            print("held out", key, held[key], flush=True)
    path = write_result(
        "identity_threshold",
        {
            "procedure": __doc__.split("\n\n")[2].replace("\n", " "),
            "chosen_match_weight_threshold": chosen,
            "tuning_curves": {k: {str(w): q for w, q in c.items()} for k, c in curves.items()},
            "held_out_at_chosen": held,
        },
    )
    print(f"chosen match weight threshold {chosen}; wrote {path}")


if __name__ == "__main__":
    main()
