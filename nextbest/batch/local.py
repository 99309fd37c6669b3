"""Batch scoring in one process: the local backend of :func:`nextbest.batch.run.decide_customers`.

The feature matrix comes from :mod:`nextbest.batch.io` (DuckDB point-in-time selection, held whole);
``decide()`` runs chunk by chunk. Decisions come from :func:`nextbest.decisions.engine.decide`, the
function the online service calls, so batch and online answers for the same customer and
feature snapshot are identical. The model scores through
:class:`nextbest.models.scoring.StackedScorer` as online, with ``model_threads`` threads since a
chunk holds many thousand rows, and through its compiled trees
(:mod:`nextbest.models.compiled_trees`: the arms share tree paths) when numba is installed; every
chunk re-scores a sample through LightGBM and must match it bit for bit, or the job goes on
with LightGBM. Either way the numbers are the online service's. The output is one parquet
file written chunk by chunk; when the policy's limits apply to the channel, every chunk is
decided first, the allocation (:mod:`nextbest.decisions.capacity`) runs over all of them,
and then they are written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from nextbest.batch.io import (
    LedgerCut,
    ProgressFn,
    apply_ledger_chunk,
    decisions_table,
    file_metadata,
    iter_feature_chunks,
    output_schema,
)
from nextbest.core.settings import Settings
from nextbest.customers.feature_schema import CatalogTerms
from nextbest.decisions.allocation import Allocation
from nextbest.decisions.budgets import LimitCounters
from nextbest.decisions.capacity import LimitRows, allocate_decisions, limit_rows
from nextbest.decisions.decision_log import DecisionLog
from nextbest.decisions.engine import DecisionContext, Plan, decide
from nextbest.decisions.ledger import Ledger
from nextbest.decisions.outcome import Decisions
from nextbest.models.scoring import StackedScorer


def scorer_name(model: Any) -> str:
    """What scored a local job's chunks, for the summary."""
    if not isinstance(model, StackedScorer):
        return "model"
    if model.compiled:
        return f"compiled trees ({model.checked_rows} rows checked against LightGBM)"
    return "lightgbm"


def batch_limits(settings: Settings, plan: Plan, ctx: DecisionContext) -> LimitRows | None:
    """The policy's limits on the job's channel with what is left of each: a per-run limit
    whole, a per-day or total limit less what the online counters (the ledger's) have
    used of its period at the job's as-of time. None when no limit applies."""
    rows = limit_rows(plan, ctx.channel)
    if not rows.limits:
        return None
    kept = [lim for lim in rows.limits if lim.per != "run"]
    if not kept or not settings.ledger_path.exists():
        return rows
    used = LimitCounters(Ledger(settings.ledger_path)).used(kept, ctx.now)
    return limit_rows(plan, ctx.channel, used=used)


def allocation_summary(limits: LimitRows, result: Allocation) -> dict[str, Any]:
    """What the run's summary says of an allocation: each limit's capacity and use, the
    total expected incremental value, its LP bound and the gap."""
    return {
        "limits": [
            {
                "id": lim.id,
                "per": lim.per,
                "unit": lim.unit,
                "capacity": float(limits.capacity[k]),
                "used": float(result.used[k]),
            }
            for k, lim in enumerate(limits.limits)
        ],
        "value": result.value,
        "lp_bound": result.lp_bound,
        "gap": result.gap,
        "seconds": round(result.seconds, 3),
    }


def _decided_chunks(
    chunks: Iterator[tuple[np.ndarray, np.ndarray]],
    plan: Plan,
    ctx: DecisionContext,
    ledger: Ledger | None,
    cut: LedgerCut | None,
    index: dict[str, int],
    timings: dict[str, float],
) -> Iterator[tuple[Decisions, int]]:
    """Each chunk's decisions, with the ledger's state applied first (and how many of its
    customers the ledger changed)."""
    t = time.perf_counter()
    for cids, X in chunks:
        t0 = time.perf_counter()
        timings["chunk_ids"] += t0 - t
        changed = 0
        if ledger is not None and cut is not None:
            changed = apply_ledger_chunk(
                X, plan.feature_names, cids, ledger, cut, ctx.now, index, plan.terms
            )
        t1 = time.perf_counter()
        timings["ledger"] += t1 - t0
        d = decide(X, cids, plan, ctx)
        timings["decide"] += time.perf_counter() - t1
        yield d, changed
        t = time.perf_counter()


def local_score(
    settings: Settings,
    plan: Plan,
    ctx: DecisionContext,
    out: Path,
    ids: list[str] | None,
    log_decisions: bool,
    progress: ProgressFn | None,
    terms: CatalogTerms,
    ledger_cut: LedgerCut | None = None,
    counts: dict[str, int] | None = None,
    allocation: dict[str, Any] | None = None,
) -> dict[str, float]:
    """The in-process job (``engine="local"``): stream feature chunks, apply the ledger's
    state to each (``ledger_cut``; none when None), decide, append to one parquet file.
    Returns seconds per step; ``counts["ledger_customers"]`` gets the number of customers
    whose features the ledger changed; ``allocation`` (when given) the summary of the
    allocation under the policy's limits, when any applies.

    ``decide`` is split into ``scoring`` (inside the model, when it is a stacked scorer
    that counts its time) and ``rules`` (everything else of the engine).
    """
    timings = {"features": 0.0, "select_join": 0.0, "gather": 0.0}
    timings |= {"chunk_ids": 0.0, "decide": 0.0, "scoring": 0.0, "rules": 0.0}
    timings |= {"write": 0.0, "log": 0.0, "ledger": 0.0}
    changed = 0
    scorer = plan.model if isinstance(plan.model, StackedScorer) else None
    scored_before = scorer.seconds if scorer is not None else 0.0
    schema = output_schema(plan, ctx.channel, ctx.k).with_metadata(file_metadata(plan, ctx))
    decision_log = DecisionLog(settings.decision_log_dir) if log_decisions else None
    ledger = Ledger(ledger_cut.path) if ledger_cut is not None else None
    index = {n: j for j, n in enumerate(plan.feature_names)}
    t_query = time.perf_counter()
    total, chunks = iter_feature_chunks(
        settings.features_dir, ids, ctx.now, settings.chunk_size, timings, terms=terms
    )
    # The whole point-in-time selection, join and row gather run here; ``features`` is
    # their total (select_join + gather + request-time features).
    timings["features"] += time.perf_counter() - t_query
    done = 0
    limits = batch_limits(settings, plan, ctx)
    decided = _decided_chunks(chunks, plan, ctx, ledger, ledger_cut, index, timings)
    if limits is not None and limits.limits:
        # A limit binds across customers: decide for all, allocate, then write.
        held = list(decided)
        t_alloc = time.perf_counter()
        result = allocate_decisions([d for d, _ in held], limits)
        timings["allocation"] = time.perf_counter() - t_alloc
        if result is not None and allocation is not None:
            allocation.update(allocation_summary(limits, result))
        decided = iter(held)
    tmp = out.with_name(out.name + ".tmp")
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for d, n_changed in decided:
            changed += n_changed
            t2 = time.perf_counter()
            writer.write_table(decisions_table(d, schema))
            t3 = time.perf_counter()
            timings["write"] += t3 - t2
            if decision_log is not None:
                # Deterministic ids: re-running the same batch does not invent new decisions.
                decision_log.append(d.records(deterministic_ids=True))
                timings["log"] += time.perf_counter() - t3
            done += d.n
            if progress:
                progress(done, total)
    tmp.replace(out)  # readers never see a half-written file
    if ledger is not None:
        ledger.close()
    if counts is not None:
        counts["ledger_customers"] = changed
    if scorer is not None:
        timings["scoring"] = scorer.seconds - scored_before
        timings["rules"] = timings["decide"] - timings["scoring"]
    return timings
