"""Batch decisions on PySpark: the documented path when the customers do not fit one machine.

The job is the local one (:mod:`nextbest.batch.local`) spread over partitions, with the same
input and output layout (:mod:`nextbest.batch.io`; the backends never import each other): Spark
reads the same feature parquet files and keeps, per view, the latest row per customer at
or before ``as_of`` (within the view's TTL; ``max_by`` on the event time), joins the views
by ``customer_id``, and every partition applies the event ledger's state to each Arrow
batch (:func:`nextbest.batch.io.apply_ledger_chunk`, the job's one cut of the ledger, as the local
job does per chunk) and runs :func:`nextbest.decisions.engine.decide` with the broadcast plan (model
included) through ``mapInArrow``, yielding Arrow batches in the local job's output layout.
The ledger is a SQLite file: the executors open it by its path, so on a cluster it must be
on a file system they share. The same code runs in local mode in tests (``local[2]``) and
on a cluster (``settings.spark_master``, ``NEXTBEST_SPARK_MASTER``, or the active session).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from nextbest.batch.io import (
    BatchInputError,
    LedgerCut,
    apply_ledger_chunk,
    batch_to_matrix,
    decisions_table,
    output_schema,
    utc,
)
from nextbest.core.settings import PROJECT_ROOT, Settings
from nextbest.customers.feature_schema import CatalogTerms
from nextbest.decisions.engine import DecisionContext, Plan

log = logging.getLogger(__name__)


def spark_session(settings: Settings, app_name: str = "nextbest-batch") -> Any:
    """A quiet, small Spark session (UTC, 4 shuffle partitions, 2g driver) on
    ``settings.spark_master`` that can import the project in its Python workers (an
    active session is reused, as ``getOrCreate`` does)."""
    # lazy: pyspark (the spark extra) is optional and heavy
    from pyspark.sql import SparkSession

    # Workers are started from the driver's environment: same interpreter, project on path.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    path = os.environ.get("PYTHONPATH", "")
    if str(PROJECT_ROOT) not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), path) if p)
    spark = (
        SparkSession.builder.master(settings.spark_master_url())
        .appName(app_name)
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"])
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def spark_feature_frame(
    spark: Any,
    features_dir: Path,
    customer_ids: Sequence[str] | None,
    as_of: datetime,
    terms: CatalogTerms,
) -> Any:
    """Point-in-time features as a Spark DataFrame: ``customer_id`` then every view column
    in ``all_feature_names()`` order (as doubles, null where a customer has no row)."""
    from pyspark.sql import functions as F  # noqa: N812 - the Spark convention

    # imported where it runs: Spark ships this function to its executors
    from nextbest.customers.feature_schema import view_specs

    as_of = utc(as_of)
    views = []
    for spec in view_specs(terms):
        path = Path(features_dir) / f"{spec.name}.parquet"
        if not path.exists():
            views.append((spec, None))
            continue
        ts = F.col("event_timestamp")
        lo = F.lit(as_of) - F.expr(f"INTERVAL {int(spec.ttl_days)} DAYS")
        names = spec.feature_names
        # max_by is a hash aggregate with map-side partial aggregation; a row_number()
        # window would sort every snapshot row of every customer.
        latest = F.max_by(F.struct(*[F.col(c).cast("double").alias(c) for c in names]), ts)
        df = (
            spark.read.parquet(str(path))
            .where((ts <= F.lit(as_of)) & (ts > lo) & F.col("customer_id").isNotNull())
            .groupBy("customer_id")
            .agg(latest.alias("_latest"))
            .select("customer_id", *[F.col(f"_latest.{c}").alias(c) for c in names])
        )
        views.append((spec, df))
    present = [df for _, df in views if df is not None]
    if not present:
        raise BatchInputError(f"no feature tables under {features_dir}")
    if customer_ids is not None:
        universe = spark.createDataFrame(
            [(str(c), i) for i, c in enumerate(customer_ids)], "customer_id string, _ord long"
        )
    else:
        ids = present[0].select("customer_id")
        for df in present[1:]:
            ids = ids.unionByName(df.select("customer_id"))
        universe = ids.distinct().withColumn("_ord", F.lit(0))
    out = universe
    cols = []
    for spec, df in views:
        if df is None:
            out = out.select(
                "*", *[F.lit(None).cast("double").alias(c) for c in spec.feature_names]
            )
        else:
            out = out.join(df, on="customer_id", how="left")
        cols += spec.feature_names
    # No global sort: it would run the whole plan twice (range sampling) and consumers key
    # rows by customer_id anyway; the local job's file is sorted, the parts are not.
    return out.select("customer_id", *cols)


def _partition_decider(
    plan_bc: Any, ctx: DecisionContext, schema_bytes: bytes, ledger_cut: LedgerCut | None
) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The per-partition function: Arrow batches of features in, the ledger's state
    applied (``ledger_cut``; none when None), Arrow decisions out."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        # imported where it runs: Spark ships this function to its executors
        import pickle

        import numpy as np
        import pyarrow as pa

        from nextbest.decisions.engine import decide
        from nextbest.decisions.ledger import Ledger

        plan = pickle.loads(plan_bc.value)
        schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
        names = list(plan.feature_names)
        index = {n: j for j, n in enumerate(names)}
        request_ts = ctx.now.timestamp()
        ledger = Ledger(ledger_cut.path) if ledger_cut is not None else None
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                ids, X = batch_to_matrix(batch, len(names), request_ts, names)
                if ledger is not None and ledger_cut is not None:
                    apply_ledger_chunk(
                        X, names, ids, ledger, ledger_cut, ctx.now, index, plan.terms
                    )
                d = decide(X, np.asarray(ids, dtype=object), plan, ctx)
                yield from decisions_table(d, schema).to_batches()
        finally:
            if ledger is not None:
                ledger.close()

    return run


def spark_score(
    settings: Settings,
    plan: Plan,
    ctx: DecisionContext,
    out: Path,
    customer_ids: Sequence[str] | None = None,
    spark: Any | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    terms: CatalogTerms,
    ledger_cut: LedgerCut | None = None,
) -> Path:
    """Run the batch job on Spark and write ``out`` as a directory of parquet parts
    (``terms``: the catalog's, naming the feature columns; ``ledger_cut``: the events
    every partition applies, none when None)."""
    # lazy: pyspark (the spark extra) is optional and heavy
    from pyspark.sql.pandas.types import from_arrow_schema

    spark = spark or spark_session(settings)
    schema = output_schema(plan, ctx.channel, ctx.k)
    frame = spark_feature_frame(spark, settings.features_dir, customer_ids, ctx.now, terms)
    # Rows per Arrow batch handed to decide(): the job's chunk size bounds worker memory.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.chunk_size))
    from pyspark import cloudpickle

    # cloudpickle, not the broadcast's plain pickle: models defined in a notebook or a
    # script's __main__ travel by value.
    plan_bc = spark.sparkContext.broadcast(cloudpickle.dumps(plan))
    decider = _partition_decider(plan_bc, ctx, schema.serialize().to_pybytes(), ledger_cut)
    result = frame.mapInArrow(decider, from_arrow_schema(schema))
    result.write.mode("overwrite").parquet(str(out))
    plan_bc.unpersist()
    if progress:
        n = len(customer_ids) if customer_ids is not None else -1
        progress(n, n)
    log.info("spark batch decisions wrote %s", out)
    return Path(out)
