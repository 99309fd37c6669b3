"""The batch job's entry point: every customer's next best action on a channel, as of a
time, on a chosen backend.

:func:`decide_customers` checks the inputs, fixes the decision context (time, stock,
feature snapshot) and the cut of the event ledger every chunk applies, hands the job to a
backend (:mod:`nextbest.batch.local` in this process, or :mod:`nextbest.batch.spark` on PySpark) and
writes the summary counted from the output (:mod:`nextbest.batch.io`). The backends share only
:mod:`nextbest.batch.io` and never import each other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from nextbest.batch.io import (
    BatchInputError,
    ProgressFn,
    ScoreSummary,
    count_output,
    feature_snapshot_time,
    ledger_cut,
    read_customer_list,
    utc,
    write_summary,
)
from nextbest.batch.local import local_score, scorer_name
from nextbest.batch.spark import spark_score
from nextbest.core.settings import Settings
from nextbest.customers.as_of import resolve_as_of
from nextbest.customers.feature_schema import all_feature_names
from nextbest.decisions.capacity import limit_rows
from nextbest.decisions.engine import DecisionContext
from nextbest.decisions.runtime import load_runtime, stock_vector
from nextbest.models.scoring import stacked_plan

log = logging.getLogger(__name__)

Engine = Literal["local", "spark"]


def decide_customers(
    settings: Settings,
    channel: str,
    as_of: datetime | None,
    out: Path,
    customer_ids: Sequence[str] | Path | None = None,
    runtime: Any | None = None,
    k: int = 3,
    log_decisions: bool = False,
    progress: ProgressFn | None = None,
    engine: Engine = "local",
    model_threads: int = 2,
) -> ScoreSummary:
    """Decide for every customer (or the given ones, a list or a file of ids) on
    ``channel`` as of ``as_of`` (None: :func:`nextbest.customers.as_of.resolve_as_of`) and write
    the ranked decisions to ``out`` (parquet) and a summary to ``<out>.summary.json``.

    ``engine="local"`` runs the job in this process (:mod:`nextbest.batch.local`);
    ``engine="spark"`` runs the same job on PySpark (:mod:`nextbest.batch.spark`); ``out``
    is then a directory of parquet parts. ``model_threads`` is LightGBM's thread count per
    chunk on the local engine (Spark runs one per task: it parallelises over partitions).
    Over 100 lines on purpose: every input is checked, in order, before anything is
    written, then one backend runs; the checks read best as one list.
    """
    t0 = time.perf_counter()
    scorer = ""
    as_of = utc(as_of if as_of is not None else resolve_as_of(settings).time)
    ids = read_customer_list(customer_ids)
    runtime = runtime or load_runtime(settings)
    if channel not in runtime.plan.channels:
        raise BatchInputError(
            f"channel {channel!r} has no actions in the catalog; "
            f"have {', '.join(sorted(runtime.plan.channels))}"
        )
    if runtime.plan.feature_names != all_feature_names(runtime.terms):
        raise BatchInputError("the runtime's feature order is not all_feature_names()")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t_snap = time.perf_counter()
    snapshot = feature_snapshot_time(settings.features_dir, as_of, runtime.terms)
    snapshot_s = time.perf_counter() - t_snap
    ctx = DecisionContext(
        channel=channel,
        now=as_of,
        k=k,
        stock=stock_vector(runtime),
        feature_snapshot_time=snapshot,
    )
    # One cut of the event ledger for the whole job: every chunk and partition reads the
    # events stored when the job started.
    cut = ledger_cut(settings.ledger_path)
    ledger_counts = {"ledger_customers": 0}
    allocation: dict[str, Any] = {}
    timings: dict[str, float] = {"setup": time.perf_counter() - t0 - snapshot_s}
    timings["snapshot_time"] = snapshot_s
    if engine == "spark":
        if limit_rows(runtime.plan, channel).limits:
            raise BatchInputError(
                f"the policy's limits apply to channel {channel!r}: allocation under them "
                "runs on the local engine only (engine='local')"
            )
        t1 = time.perf_counter()
        spark_score(
            settings,
            stacked_plan(runtime.plan, 1, compiled=True),
            ctx,
            out,
            ids,
            progress=progress,
            terms=runtime.terms,
            ledger_cut=cut,
        )
        ledger_counts["ledger_customers"] = -1  # not collected from the partitions
        timings["spark_job"] = time.perf_counter() - t1
        if log_decisions:
            log.warning("--log-decisions is not supported on the spark engine; nothing logged")
    elif engine == "local":
        t1 = time.perf_counter()
        plan = stacked_plan(runtime.plan, model_threads, compiled=True)
        timings["model_setup"] = time.perf_counter() - t1  # flattening trees, numba compile
        timings.update(
            local_score(
                settings,
                plan,
                ctx,
                out,
                ids,
                log_decisions,
                progress,
                runtime.terms,
                ledger_cut=cut,
                counts=ledger_counts,
                allocation=allocation,
            )
        )
        scorer = scorer_name(plan.model)
    else:
        raise BatchInputError(f"engine must be 'local' or 'spark', got {engine!r}")
    t2 = time.perf_counter()
    counts = count_output(out)
    timings["summary"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    summary = ScoreSummary(
        out=str(out),
        engine=engine,
        channel=channel,
        as_of=as_of.isoformat(),
        feature_snapshot_time=snapshot.isoformat(),
        customers=counts["customers"],
        holdout=counts["holdout"],
        explored=counts["explored"],
        chosen=counts["chosen"],
        excluded=counts["excluded"],
        model_version=runtime.plan.model_version,
        policy_version=runtime.plan.policy.version,
        catalog_version=runtime.plan.catalog.version,
        timings_s={k_: round(v, 3) for k_, v in timings.items()},
        scorer=scorer,
        ledger_position=cut.upto_seq if cut is not None else 0,
        ledger_customers=ledger_counts["ledger_customers"] if cut is not None else 0,
        allocation=allocation or None,
    )
    write_summary(summary)
    log.info(
        "scored %d customers on %s in %.1f s (%.0f decisions/s)",
        summary.customers,
        channel,
        timings["total"],
        summary.decisions_per_second,
    )
    return summary
