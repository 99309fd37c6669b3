"""The learning loop on a generated world: decide -> outcomes -> retrain from the log.

A world of ``--customers`` persons (generated, resolved, features built, a champion
trained on the campaign history: ``benchmarks/world.py``) is decided for in ``--rounds``
rounds two weeks apart before its as-of time, every customer once per round on e-mail,
by the batch job with the current champion and the policy's exploration (``--exploration``,
Thompson sampling by default), each decision logged. Outcomes are drawn from the truth
(``nextbest.demo.notebook_support.outcomes_from_truth``: the true response probability and
value of what was done). After each round the model is retrained from the log so far and
the campaign history (``training.from_log.train_from_log``, the promotion gate deciding
whether it becomes champion).

Per round: the true incremental value per treated customer of what was done
(``p_a v_a - cost_a - p_0 v_0`` from the truth), the same for the history-only model (the
first champion deciding the same customers with the same draws, not logged), the lift
estimated from the log (treated minus holdout net revenue, 95 % interval); and for the model
retrained after the round, its off-policy value on that round's log (IPS, SNIPS, DR with
95 % intervals, ``nextbest.measurement.model_candidate``) beside its true value on the same
decisions (the truth's ``p v`` of what it would have chosen).

    nice -n 5 .venv/bin/python benchmarks/learning_loop_bench.py --customers 5000 --rounds 4

Writes ``benchmarks/results/learning_loop.json`` and ``docs/learning_loop.png``.
"""

from __future__ import annotations

import argparse
import logging
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from benchmarks.common import ROOT, write_result

log = logging.getLogger("learning_loop")

SPACING = timedelta(days=14)
WINDOW = timedelta(days=12)  # outcomes land within 12 days: inside their own round
CHANNEL = "email"


def loop_settings(home: Path, customers: int, seed: int, exploration: str) -> Any:
    """The world's settings with a policy whose exploration is ``exploration``."""
    from benchmarks.world import ensure_world, world_settings
    from nextbest.core.settings import get_settings
    from nextbest.customers.as_of import resolve_as_of

    settings = ensure_world(home, customers, seed)
    base = world_settings(home, customers, seed)
    policy = yaml.safe_load(Path(base.policy).read_text(encoding="utf-8"))
    policy.setdefault("exploration", {})["method"] = exploration
    path = home / f"policy_{exploration}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    as_of = resolve_as_of(settings).time
    return get_settings(
        home=home,
        customers=customers,
        seed=seed,
        learners=["t_learner", "s_learner"],
        policy=path,
        as_of=as_of,
    )


def logged_cost(decisions: pd.DataFrame) -> np.ndarray:
    """The logged cost of each decision's chosen action (0 for no action)."""
    cost = np.zeros(len(decisions))
    for i, (chosen, ranked) in enumerate(
        zip(decisions["chosen_action"], decisions["ranked"], strict=True)
    ):
        for e in ranked if isinstance(ranked, list | np.ndarray) else []:
            if e["action_id"] == chosen:
                cost[i] = float(e.get("cost") or 0.0)
    return cost


def true_incremental(
    settings: Any, customers: list[str], actions: np.ndarray, cost: np.ndarray
) -> np.ndarray:
    """Truth's ``p_a v_a - cost_a - p_0 v_0`` of each customer's action (0: no action)."""
    from nextbest.core.vocabulary import NO_ACTION
    from nextbest.demo.notebook_support import truth_expectations

    p, v = truth_expectations(settings, customers, list(actions))
    p0, v0 = truth_expectations(settings, customers, [NO_ACTION] * len(customers))
    incr = p * v - cost - p0 * v0
    return np.where(actions == NO_ACTION, 0.0, incr)


def history_model_choices(settings: Any, model: Any, when: Any, out: Path) -> pd.DataFrame:
    """What the history-only model decides for every customer at ``when`` (not logged)."""
    from nextbest.batch.run import decide_customers
    from nextbest.decisions.runtime import load_runtime

    decide_customers(settings, CHANNEL, when, out, runtime=load_runtime(settings, model=model))
    return pd.read_parquet(out, columns=["customer_id", "group", "chosen_action"])


def run_round(settings: Any, r: int, when: Any, first_model: Any, work: Path) -> dict[str, Any]:
    """Decide with the champion at ``when``, draw outcomes, measure against the truth."""
    from nextbest.batch.run import decide_customers
    from nextbest.decisions.runtime import load_runtime
    from nextbest.demo.notebook_support import outcomes_from_truth
    from nextbest.measurement.attribution import attribute_outcomes, read_decisions
    from nextbest.measurement.lift import diff_in_means

    runtime = load_runtime(settings)
    t0 = time.perf_counter()
    decide_customers(
        settings, CHANNEL, when, work / f"round{r}.parquet", runtime=runtime, log_decisions=True
    )
    decisions = read_decisions(settings.decision_log_dir, when, when + SPACING)
    outcomes = outcomes_from_truth(settings, decisions, settings.seed + r, WINDOW)
    d = attribute_outcomes(decisions, outcomes, WINDOW)
    treated = d["group"].to_numpy() == "decided"
    cost = logged_cost(d)
    chosen = d["chosen_action"].astype(str).to_numpy()
    customers = d["customer_id"].astype(str).tolist()
    incr = true_incremental(settings, customers, chosen, cost)
    net = d["revenue"].to_numpy(dtype=float) - cost
    lift = diff_in_means(net[treated], net[~treated])
    base = history_model_choices(settings, first_model, when, work / f"history{r}.parquet")
    base = base.set_index("customer_id").reindex(customers)
    base_actions = base["chosen_action"].astype(str).to_numpy()
    base_cost = np.array(
        [_catalog_cost(runtime, a) if a != "no_action" else 0.0 for a in base_actions]
    )
    base_incr = true_incremental(settings, customers, base_actions, base_cost)
    return {
        "round": r,
        "decided_at": when.isoformat(),
        "model_version": str(runtime.plan.model_version),
        "decisions": len(d),
        "treated": int(treated.sum()),
        "explored": int(d["explored"].astype(bool).sum()),
        "contacted": int((chosen[treated] != "no_action").sum()),
        "true_incremental_per_treated": float(np.nanmean(incr[treated])),
        "history_model_true_incremental_per_treated": float(np.nanmean(base_incr[treated])),
        "lift_estimate": lift["lift"],
        "lift_ci_low": lift["ci_low"],
        "lift_ci_high": lift["ci_high"],
        "lift_covers_truth": bool(
            lift["ci_low"] <= float(np.nanmean(incr[treated])) <= lift["ci_high"]
        ),
        "seconds_decide_and_measure": round(time.perf_counter() - t0, 1),
        "_outcomes": outcomes,
        "_decisions": d,
    }


def _catalog_cost(runtime: Any, action: str) -> float:
    by_id = {a.id: a for a in runtime.catalog.actions}
    return float(by_id[action].cost_on(CHANNEL))


def retrain_and_value(
    settings: Any, outcomes_path: Path, since: Any, until: Any, d_round: pd.DataFrame
) -> dict[str, Any]:
    """Retrain from the log so far (with the history), then value the new model on the
    round's log by IPS, SNIPS and DR against its true value on the same decisions."""
    from nextbest.demo.notebook_support import truth_expectations
    from nextbest.measurement.attribution import attributed_log
    from nextbest.measurement.model_candidate import evaluate_model_on_log
    from training.from_log import train_from_log

    t0 = time.perf_counter()
    decisions = attributed_log(settings.decision_log_dir, outcomes_path, WINDOW, since, until)
    result, exposures = train_from_log(settings, decisions, window=WINDOW, with_history=True)
    seconds_train = time.perf_counter() - t0
    uri = f"models:/{settings.model_name}/{result.model_version}"
    ev = evaluate_model_on_log(settings, uri, d_round, "revenue", against=None)
    treated = d_round.loc[d_round["group"] != "holdout"].reset_index(drop=True)
    p, v = truth_expectations(
        settings, treated["customer_id"].astype(str).tolist(), list(ev.candidate.choices)
    )
    truth = float(np.nanmean(p * v))
    est = {
        r.estimator: {
            "value": r.value,
            "se": r.se,
            "ci_low": r.ci_low,
            "ci_high": r.ci_high,
            "covers_truth": bool(r.ci_low <= truth <= r.ci_high),
        }
        for r in ev.values.itertuples()
        if r.estimator in ("ips", "snips", "dr")
    }
    return {
        "new_version": result.model_version,
        "alias": result.alias,
        "promotion_reason": result.reason,
        "learner": result.learner,
        "log_decisions": exposures.decisions,
        "log_clipped_share": exposures.clipped_share,
        "propensity_floor": exposures.propensity_floor,
        "ope_true_revenue_per_decision": truth,
        "ope": est,
        "seconds_train": round(seconds_train, 1),
    }


def figure(rounds: list[dict[str, Any]], path: Path) -> None:
    """True incremental value per round (loop and history-only model) with the log's lift
    estimate, and each retrained model's off-policy estimates against its truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    r = [x["round"] for x in rounds]
    a.plot(r, [x["true_incremental_per_treated"] for x in rounds], "o-", label="loop: truth")
    a.plot(
        r,
        [x["history_model_true_incremental_per_treated"] for x in rounds],
        "s--",
        label="history-only model: truth",
    )
    est = np.array([x["lift_estimate"] for x in rounds])
    lo = est - np.array([x["lift_ci_low"] for x in rounds])
    hi = np.array([x["lift_ci_high"] for x in rounds]) - est
    a.errorbar(r, est, yerr=[lo, hi], fmt="x", capsize=4, label="loop: estimate from log (95 %)")
    a.set_xlabel("round")
    a.set_ylabel("incremental value per treated customer")
    a.set_xticks(r)
    a.legend(fontsize=8)
    a.set_title("decide -> outcomes -> retrain from the log")
    with_ope = [x for x in rounds if x.get("retrained")]
    for k, name in enumerate(("ips", "snips", "dr")):
        xs = np.array([x["round"] for x in with_ope]) + (k - 1) * 0.12
        e = [x["retrained"]["ope"][name] for x in with_ope]
        v = np.array([z["value"] for z in e])
        b.errorbar(
            xs,
            v,
            yerr=[v - [z["ci_low"] for z in e], [z["ci_high"] for z in e] - v],
            fmt="o",
            capsize=3,
            label=name.upper(),
        )
    b.plot(
        [x["round"] for x in with_ope],
        [x["retrained"]["ope_true_revenue_per_decision"] for x in with_ope],
        "k*",
        markersize=12,
        label="truth",
    )
    b.set_xlabel("round whose log values the model retrained after it")
    b.set_ylabel("revenue per treated decision")
    b.set_xticks([x["round"] for x in with_ope])
    b.legend(fontsize=8)
    b.set_title("off-policy estimate vs truth")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/nextbest-learnloop"))
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--exploration", choices=("thompson", "epsilon"), default="thompson")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs" / "learning_loop.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in ("feast", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from nextbest.models.registry import load_model_by_alias

    t_start = time.perf_counter()
    settings = loop_settings(args.home, args.customers, args.seed, args.exploration)
    t_world = time.perf_counter() - t_start
    first_model, first_version = load_model_by_alias(settings)
    as_of = pd.Timestamp(settings.as_of)
    times = [as_of - SPACING * (args.rounds - r) for r in range(args.rounds)]
    work = args.home / "loop"
    work.mkdir(parents=True, exist_ok=True)
    outcomes_path = work / "outcomes.parquet"
    all_outcomes: list[pd.DataFrame] = []
    rounds: list[dict[str, Any]] = []
    for r, when in enumerate(times):
        row = run_round(settings, r, when.to_pydatetime(), first_model, work)
        all_outcomes.append(row.pop("_outcomes"))
        d_round = row.pop("_decisions")
        pd.concat(all_outcomes, ignore_index=True).to_parquet(outcomes_path, index=False)
        if r < args.rounds - 1:
            row["retrained"] = retrain_and_value(
                settings, outcomes_path, times[0], when + SPACING, d_round
            )
        rounds.append(row)
        log.info("round %d: %s", r, {k: v for k, v in row.items() if k != "retrained"})
    first, last = rounds[0], rounds[-1]
    truth = [x["true_incremental_per_treated"] for x in rounds]
    payload = {
        "customers": args.customers,
        "seed": args.seed,
        "rounds": args.rounds,
        "exploration": args.exploration,
        "channel": CHANNEL,
        "spacing_days": SPACING.days,
        "window_days": WINDOW.days,
        "first_champion": first_version,
        "rise_per_round": [b - a for a, b in zip(truth[:-1], truth[1:], strict=True)],
        "rise_first_to_last": last["true_incremental_per_treated"]
        - first["true_incremental_per_treated"],
        "loop_minus_history_model_last_round": last["true_incremental_per_treated"]
        - last["history_model_true_incremental_per_treated"],
        "per_round": rounds,
        "seconds": {"world": round(t_world, 1), "total": round(time.perf_counter() - t_start, 1)},
    }
    path = write_result("learning_loop", payload)
    figure(rounds, args.figure)
    print(f"wrote {path} and {args.figure}")


if __name__ == "__main__":
    main()
