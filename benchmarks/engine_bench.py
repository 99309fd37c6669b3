"""Benchmark: ``nextbest.decisions.engine.decide`` for n customers x 20 catalog actions on one
channel.

Usage: ``python benchmarks/engine_bench.py [--large] [--repeat R]``; ``--check`` runs
nothing and exits 1, loudly, when ``engine.json`` is older than the code it measures (its
recorded source hash differs, :mod:`benchmarks.sources`).
The catalog is the default one plus 12 variants on email that share the 8 model arms
(20 actions on one channel); the model is a random stub implementing the ResponseModel
protocol (numpy only, ~a few microseconds), so the figures are the engine's own cost.
Measures decide() for n = 1, 10, 100, 10,000 (and 1,000,000 with ``--large``), plus
decide() + records() for n = 1, and writes ``benchmarks/results/engine.json`` with the
per-call cost of one customer as a ratio to the per-customer cost at 10,000
(``one_customer_x_per_row_at_10000``): the engine's fixed cost per call, comparable
across machines.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS as RESULTS_DIR
from benchmarks.common import ROOT, write_result
from benchmarks.sources import stale_results
from nextbest.decisions.catalog import Catalog, load_catalog
from nextbest.decisions.engine import DecisionContext, decide
from nextbest.decisions.policy import load_policy
from nextbest.decisions.rules import compile_plan

RESULTS = RESULTS_DIR / "engine.json"


class RandomModel:
    """Benchmark stub: random probabilities, deterministic per call size."""

    def __init__(self, arm_ids: list[str], feature_names: list[str]) -> None:
        self.arm_ids = arm_ids
        self.feature_names = feature_names
        self.version = "random-stub"
        self._rng = np.random.default_rng(0)

    def predict_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, a = X.shape[0], len(self.arm_ids)
        p_c = self._rng.random(n) * 0.05
        p_t = p_c[:, None] + self._rng.random((n, a)) * 0.08 - 0.02
        return p_c, p_t, np.zeros((n, a))


def twenty_action_catalog(base: Catalog) -> Catalog:
    """The default catalog plus 12 email variants borrowing the 8 arms' scores."""
    extra = []
    for i in range(12):
        src = base.actions[i % len(base.actions)]
        extra.append(
            src.model_copy(
                update={
                    "id": f"email_variant_{i}",
                    "name": f"Variant {i}",
                    "channels": ["email"],
                    "response_model": src.id,
                    "value": src.value * (0.8 + 0.05 * i),
                }
            )
        )
    return base.model_copy(
        update={"version": base.version + "-bench", "actions": [*base.actions, *extra]}
    )


def feature_names(catalog: Catalog, base: Catalog) -> list[str]:
    """Feature columns from the project's feature schema (the default catalog's), plus a
    cooldown column per added action."""
    from nextbest.customers.feature_schema import all_feature_names

    names = all_feature_names(base.terms())
    return names + [
        f"days_since_shown_{a}" for a in catalog.ids if f"days_since_shown_{a}" not in names
    ]


def random_features(names: list[str], n: int, rng: np.random.Generator) -> np.ndarray:
    """Plausible features: most consents given, few contacts, some holdings and cases."""
    X = np.empty((n, len(names)))
    for j, f in enumerate(names):
        if f.startswith("consent_"):
            X[:, j] = rng.random(n) < 0.8
        elif f.startswith("contacts_"):
            X[:, j] = rng.poisson(0.3, n)
        elif f.startswith("holds_"):
            X[:, j] = rng.random(n) < 0.1
        elif f == "open_cases":
            X[:, j] = rng.random(n) < 0.05
        elif f.startswith("days_since"):
            X[:, j] = np.where(rng.random(n) < 0.2, rng.integers(0, 60, n), 9999)
        else:
            X[:, j] = rng.gamma(2.0, 50.0, n)
    return X


def time_calls(fn, repeat: int) -> dict[str, float]:
    """Median, p99 and mean of ``repeat`` calls in milliseconds."""
    fn()  # warm-up
    t = np.empty(repeat)
    for i in range(repeat):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    t *= 1e3
    return {
        "p50_ms": float(np.median(t)),
        "p99_ms": float(np.percentile(t, 99)),
        "mean_ms": float(t.mean()),
        "calls": repeat,
    }


def run(large: bool = False, repeat: int = 2000) -> dict:
    """Run the benchmark and return the figures."""
    from nextbest.customers.feature_schema import model_feature_names

    base = load_catalog(ROOT / "config" / "catalog.yaml")
    catalog = twenty_action_catalog(base)
    policy = load_policy(ROOT / "config" / "policy.yaml", catalog.terms())
    names = feature_names(catalog, base)
    model = RandomModel(base.ids, model_feature_names(base.terms()))
    plan = compile_plan(catalog, policy, names, model)
    ctx = DecisionContext(channel="email", now=datetime.now(UTC), k=3, stock={"phone_premium": 100})
    rng = np.random.default_rng(0)
    sizes = [1, 10, 100, 10_000] + ([1_000_000] if large else [])
    out: dict = {
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "actions_on_channel": len(plan.channels["email"].action_idx),
        "features": len(names),
        "model": "random stub (numpy)",
        "decide": {},
    }
    for n in sizes:
        X = random_features(names, n, rng)
        ids = np.array([f"C{i:08d}" for i in range(n)], dtype=object)
        reps = max(3, min(repeat, int(20_000 / n)))
        stats = time_calls(lambda X=X, ids=ids: decide(X, ids, plan, ctx), reps)
        stats["per_row_us"] = stats["p50_ms"] * 1e3 / n
        out["decide"][str(n)] = stats
        print(f"decide n={n:>9,}: p50 {stats['p50_ms']:.3f} ms  p99 {stats['p99_ms']:.3f} ms")
    X1 = random_features(names, 1, rng)
    rec = time_calls(lambda: decide(X1, ["C00000001"], plan, ctx).records(), repeat)
    out["decide_and_records_n1"] = rec
    print(f"decide+records n=1: p50 {rec['p50_ms']:.3f} ms  p99 {rec['p99_ms']:.3f} ms")
    # the fixed cost of a call, in units of one customer's share of a large call
    one, many = out["decide"]["1"]["p50_ms"], out["decide"]["10000"]["per_row_us"] / 1e3
    out["one_customer_x_per_row_at_10000"] = round(one / many, 1)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"one customer = {out['one_customer_x_per_row_at_10000']}x a row of 10,000")
    return out


def check(results_dir: Path = RESULTS_DIR) -> str | None:
    """Why ``engine.json`` does not measure the current engine, or None if it does."""
    return stale_results(results_dir).get("engine")


def main(argv: list[str] | None = None) -> None:
    """Parse options, run, print and save ``benchmarks/results/engine.json``."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--large", action="store_true", help="also n = 1,000,000")
    ap.add_argument("--repeat", type=int, default=2000, help="calls per small size")
    ap.add_argument("--check", action="store_true", help="exit 1 if engine.json is stale")
    args = ap.parse_args(argv)
    if args.check:
        why = check()
        if why:
            sys.exit(f"STALE: {RESULTS} does not measure the current engine: {why}")
        print(f"{RESULTS} measures the current engine")
        return
    out = run(large=args.large, repeat=args.repeat)
    print(f"wrote {write_result('engine', out)}")


if __name__ == "__main__":
    main()
