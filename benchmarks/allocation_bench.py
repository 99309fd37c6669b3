"""Benchmark: allocation under capacity and budget limits on 100,000 customers x 20 actions.

Usage: ``python benchmarks/allocation_bench.py [--customers N] [--seed S]``.
The scores are the engine's (``nextbest.decisions.engine.decide`` on the 20-action e-mail
catalog of ``engine_bench``, its random-stub model and plausible random features): the
expected incremental value of every eligible customer x action. Three limits bind: a
count on five actions (a channel's daily capacity), a money budget on the contact cost of
five others (each its own cost), and an inventory of units of two more. It records the
solver's total value, its bound (the LP relaxation's Lagrangian dual, an upper bound on
any allocation), the gap between them, the time, the greedy ranking's value under the
same limits, each limit's use, and the machine with its load average, in
``benchmarks/results/allocation.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS, ROOT, print_table, write_result


def scores(customers: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """([n, C] expected incremental value, NaN where the rules exclude the action or it is
    not worth it; the action ids; [C] contact cost) from the engine."""
    from benchmarks.engine_bench import (
        RandomModel,
        feature_names,
        random_features,
        twenty_action_catalog,
    )
    from nextbest.customers.feature_schema import model_feature_names
    from nextbest.decisions.catalog import load_catalog
    from nextbest.decisions.engine import DecisionContext, decide
    from nextbest.decisions.policy import load_policy
    from nextbest.decisions.rules import compile_plan

    base = load_catalog(ROOT / "config" / "catalog.yaml")
    catalog = twenty_on_email(twenty_action_catalog(base))
    policy = load_policy(ROOT / "config" / "policy.yaml", base.terms())
    names = feature_names(catalog, base)
    model = RandomModel(catalog.ids, model_feature_names(base.terms()))
    model._rng = np.random.default_rng(seed)
    plan = compile_plan(catalog, policy, names, model, channels=["email"], strict=False)
    X = random_features(names, customers, np.random.default_rng(seed))
    cids = np.array([f"C{i:012d}" for i in range(customers)], dtype=object)
    ctx = DecisionContext(channel="email", now=datetime(2025, 3, 1, tzinfo=UTC), k=3, stock=None)
    d = decide(X, cids, plan, ctx)
    cp = plan.channels["email"]
    S = np.where(d.codes == 0, d.score, np.nan)[:, cp.action_idx]
    S[d.holdout] = np.nan
    return S, [str(plan.action_ids[c]) for c in cp.action_idx], cp.cost


def twenty_on_email(catalog: Any) -> Any:
    """engine_bench's catalog with more e-mail variants, until 20 actions are on e-mail."""
    on_email = [a for a in catalog.actions if "email" in a.channels]
    extra = []
    for i in range(20 - len(on_email)):
        src = on_email[i % len(on_email)]
        extra.append(
            src.model_copy(
                update={
                    "id": f"email_extra_{i}",
                    "name": f"Extra {i}",
                    "response_model": src.arm,
                    "value": src.value * (0.7 + 0.1 * i),
                }
            )
        )
    return catalog.model_copy(update={"actions": [*catalog.actions, *extra]})


def limits(S: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Three limits sized to bind: each allows a fraction of what the customers' own best
    choices would use of it."""
    n, C = S.shape
    offered = np.isfinite(S)
    order = np.argsort(-offered.sum(axis=0), kind="stable")  # most often eligible first
    counted, budgeted, stocked = order[:5], order[5:10], order[10:12]
    W = np.zeros((3, C))
    W[0, counted] = 1.0
    W[1, budgeted] = np.maximum(cost[budgeted], 0.05) * np.linspace(1.0, 3.0, 5)
    W[2, stocked] = 1.0
    best = np.nanargmax(np.where(np.isfinite(S), S, -np.inf), axis=1)
    has = np.isfinite(S).any(axis=1)
    demand = W[:, best[has]].sum(axis=1)
    cap = np.floor(demand * np.array([0.3, 0.4, 0.25]))
    return W, cap, ["channel capacity (count)", "retention budget (cost)", "inventory (units)"]


def run(customers: int = 100_000, seed: int = 7, results_dir: Path = RESULTS) -> dict[str, Any]:
    """Run the benchmark and write its result file."""
    from nextbest.decisions.allocation import allocate, greedy

    t0 = time.perf_counter()
    S, ids, cost = scores(customers, seed)
    scoring_s = time.perf_counter() - t0
    W, cap, names = limits(S, cost)
    a = allocate(S, W, cap)
    g = greedy(S, W, cap)
    unlimited = float(np.nansum(np.nanmax(np.where(np.isfinite(S), S, 0.0), axis=1)))
    out = {
        "customers": customers,
        "actions": len(ids),
        "seed": seed,
        "engine_scoring_s": round(scoring_s, 3),
        "limits": [
            {
                "name": names[k],
                "capacity": float(cap[k]),
                "solver_used": float(a.used[k]),
                "greedy_used": float(g.used[k]),
                "binding": bool(a.used[k] >= 0.99 * cap[k]),
            }
            for k in range(len(cap))
        ],
        "solver": {
            "value": a.value,
            "lp_bound": a.lp_bound,
            "gap_to_lp_bound": a.gap,
            "seconds": round(a.seconds, 3),
            "customers_on_a_tie": a.fractional,
        },
        "greedy_ranking": {
            "value": g.value,
            "share_of_lp_bound": g.value / a.lp_bound,
            "seconds": round(g.seconds, 3),
        },
        "value_without_limits": unlimited,
        "solver_over_greedy": a.value / g.value if g.value else None,
        "targets": {
            "gap_below_1pct": a.gap < 0.01,
            "at_most_60s": a.seconds <= 60,
            "three_binding_limits": all(a.used >= 0.99 * cap),
        },
    }
    write_result("allocation", out, results_dir=results_dir)
    print_table(
        f"allocation: {customers:,} customers x {len(ids)} actions, 3 limits",
        [
            ("solver", f"{a.value:,.0f}", f"{a.gap:.2e}", f"{a.seconds:.1f}"),
            (
                "greedy ranking",
                f"{g.value:,.0f}",
                f"{1 - g.value / a.lp_bound:.2e}",
                f"{g.seconds:.1f}",
            ),
            ("LP bound", f"{a.lp_bound:,.0f}", "", ""),
        ],
        ("method", "total value", "gap to bound", "seconds"),
    )
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    run(a.customers, a.seed)


if __name__ == "__main__":
    main()
