"""The batch job's input and output, shared by its backends (:mod:`nextbest.batch.local`,
:mod:`nextbest.batch.spark`).

In: the feature snapshot, read straight from the feature tables (parquet) with the same
point-in-time semantics as Feast's offline store and what the online store holds after
``materialize(end=as_of)``: per view, the latest row per customer with
``event_timestamp <= as_of`` (and within the view's TTL), joined by ``customer_id``;
missing views read as NaN. Request-time features are then computed with
:func:`nextbest.customers.feature_schema.days_since` at ``as_of``, the function the Feast on-demand
view uses. DuckDB finds each customer's latest *row number* per view with a hash aggregate
over the id and time columns only and joins the views on those; the feature columns are
then read only from the row groups that hold a winning row. The feature matrix is held
whole (8 bytes x features x customers, ~0.8 GB at 1M).

The event ledger (:mod:`nextbest.decisions.ledger`): the job fixes one cut of it when it starts
(:func:`ledger_cut`: every event up to the newest position then, and the last feature
build's watermark), and each chunk or partition applies its customers' state at ``as_of``
with :func:`apply_ledger_chunk`, i.e. :func:`nextbest.decisions.ledger_state.apply_ledger`, the
function the online service applies per request, reading the ledger with one indexed
query per chunk. Events that arrive while the job runs are left to the next run, so
every chunk sees the same ledger.

Out: the decisions file's layout (one row per customer, top-k flattened, the exclusion
reason per action), and the run's summary (``<out>.summary.json``) counted from it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from nextbest.core.vocabulary import DECIDED, HOLDOUT
from nextbest.customers.feature_schema import (
    CatalogTerms,
    all_feature_names,
    days_since,
    request_time_features_of,
    view_specs,
)
from nextbest.decisions.engine import DecisionContext, Decisions, Plan
from nextbest.decisions.ledger import Ledger
from nextbest.decisions.ledger_state import apply_ledger
from nextbest.decisions.reasons import Reason

log = logging.getLogger(__name__)

#: Called after each chunk with (customers done, customers in total).
ProgressFn = Callable[[int, int], None]

_REASON_NAMES = [r.name for r in Reason]


class BatchInputError(ValueError):
    """The batch job's input (feature tables, customer list, channel) is unusable."""


# --------------------------------------------------------------------------------------
# the feature snapshot


def utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _view_paths(features_dir: Path, terms: CatalogTerms) -> dict[str, Path]:
    paths = {v.name: Path(features_dir) / f"{v.name}.parquet" for v in view_specs(terms)}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if len(missing) == len(paths):
        raise BatchInputError(
            f"no feature tables under {features_dir}; run `nextbest features build` first"
        )
    if missing:
        log.warning("feature tables missing, their features read as NaN: %s", missing)
    return {k: p for k, p in paths.items() if p.exists()}


def _connect(memory_limit: str = "2GB", threads: int = 2) -> Any:
    # lazy: duckdb is needed only by this query
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory_limit}'")
    con.execute(f"SET threads={int(threads)}")
    return con


def _parquet(path: Path) -> str:
    """``read_parquet('<path>')`` with the path quoted for SQL."""
    return "read_parquet('" + str(path).replace("'", "''") + "')"


def _ts_literal(ts: datetime) -> str:
    return f"TIMESTAMPTZ '{utc(ts).isoformat()}'"


def _window(ttl_days: int, as_of: datetime) -> str:
    t = _ts_literal(as_of)
    return f"event_timestamp <= {t} AND event_timestamp > {t} - INTERVAL {int(ttl_days)} DAY"


def _latest_rows_sql(path: Path, ttl_days: int, as_of: datetime, wanted: bool) -> str:
    """Per customer, the file row number of its latest row in the view's window.

    A hash aggregate over two narrow columns: no sort, and the feature columns are not
    read here (``arg_max`` breaks ties on the latest time arbitrarily).
    """
    src = _parquet(path).removesuffix(")") + ", file_row_number=true)"
    where = _window(ttl_days, as_of)
    if wanted:  # a semi-join first, so only the wanted customers are aggregated
        where += " AND customer_id IN (SELECT customer_id FROM u_ids)"
    return (
        f"SELECT customer_id, arg_max(file_row_number, event_timestamp) AS r FROM {src} "
        f"WHERE customer_id IS NOT NULL AND {where} GROUP BY customer_id"
    )


def _latest_rows(
    con: Any,
    paths: dict[str, Path],
    customer_ids: Sequence[str] | None,
    as_of: datetime,
    terms: CatalogTerms,
) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """The output customers (the given ones in their order, or everyone with a row in a
    view's window, sorted) and per present view the file row of each one's latest row
    (-1 when none)."""
    ttl = {v.name: v.ttl_days for v in view_specs(terms)}
    names = list(paths)
    if customer_ids is not None:
        wanted = pa.table(
            {
                "customer_id": pa.array([str(c) for c in customer_ids], type=pa.string()),
                "ord": pa.array(np.arange(len(customer_ids), dtype=np.int64)),
            }
        )
        con.register("wanted_ids", wanted)
        con.execute("CREATE TEMP TABLE u_ids AS SELECT DISTINCT customer_id FROM wanted_ids")
    for i, name in enumerate(names):
        sql = _latest_rows_sql(paths[name], ttl[name], as_of, customer_ids is not None)
        con.execute(f"CREATE TEMP TABLE v{i} AS {sql}")
    if customer_ids is None:
        union = " UNION ".join(f"SELECT customer_id FROM v{i}" for i in range(len(names)))
        con.execute(f"CREATE TEMP TABLE u_ids AS {union}")
        con.execute(
            "CREATE TEMP TABLE wanted_ids AS SELECT customer_id, "
            "row_number() OVER (ORDER BY customer_id) AS ord FROM u_ids"
        )
    # Joined by customer id on one row per customer and view; a given list keeps its
    # order (and its repeats) through ``ord``.
    cols = ", ".join(f"coalesce(v{i}.r, -1) AS r{i}" for i in range(len(names)))
    joins = " ".join(
        f"LEFT JOIN v{i} ON v{i}.customer_id = w.customer_id" for i in range(len(names))
    )
    table = con.sql(
        f"SELECT w.customer_id, {cols} FROM wanted_ids w {joins} ORDER BY w.ord"
    ).to_arrow_table()
    out_ids = table.column(0).combine_chunks()
    rows = {name: table.column(i + 1).to_numpy().astype(np.int64) for i, name in enumerate(names)}
    return out_ids, rows


def _gather_view(path: Path, names: list[str], rows: np.ndarray, X: np.ndarray) -> None:
    """Copy the columns ``names`` of file rows ``rows`` (one per row of ``X``, -1 = none,
    left NaN) into ``X``, reading only the row groups that hold one of them."""
    X[:] = np.nan
    have = np.flatnonzero(rows >= 0)
    if not len(have):
        return
    pf = pq.ParquetFile(path)
    counts = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
    order = have[np.argsort(rows[have], kind="stable")]
    sorted_rows = rows[order]
    bounds = np.searchsorted(sorted_rows, starts)
    for g in range(pf.num_row_groups):
        a, b = bounds[g], bounds[g + 1]
        if a == b:
            continue
        table = pf.read_row_group(g, columns=names).take(pa.array(sorted_rows[a:b] - starts[g]))
        block = np.empty((b - a, len(names)), dtype=np.float64)
        for j in range(len(names)):
            block[:, j] = pc.cast(table.column(j), pa.float64()).to_numpy()
        X[order[a:b]] = block


def point_in_time_features(
    features_dir: Path,
    customer_ids: Sequence[str] | None,
    as_of: datetime,
    timings: dict[str, float] | None = None,
    spare_columns: int = 0,
    *,
    terms: CatalogTerms,
) -> tuple[pa.Array, np.ndarray]:
    """Point-in-time view columns of ``customer_ids`` (everyone with a row in a view's
    window, sorted, when None) as of ``as_of``: ``(ids, X [n, view columns])`` in
    ``all_feature_names()`` order; NaN where a customer has no row in a view.

    Per view, the latest row per customer with ``as_of - ttl < event_timestamp <= as_of``.
    Two passes: DuckDB finds each customer's latest *file row* per view (a hash aggregate
    over ``customer_id`` and ``event_timestamp`` only) and joins the views on those; then
    only the row groups holding a latest row are read, and only the winning rows are
    taken. Memory: the output matrix plus DuckDB's aggregate (one row per customer).
    Seconds per step are added to ``timings`` (``select_join``, ``gather``) when given.
    ``spare_columns`` uninitialised columns are appended to ``X`` for the caller to fill.
    """
    t0 = time.perf_counter()
    as_of = utc(as_of)
    paths = _view_paths(Path(features_dir), terms)
    con = _connect()
    try:
        ids, rows = _latest_rows(con, paths, customer_ids, as_of, terms)
    finally:
        con.close()
    t1 = time.perf_counter()
    specs = view_specs(terms)
    widths = [len(spec.feature_names) for spec in specs]
    X = np.empty((len(ids), sum(widths) + int(spare_columns)), dtype=np.float64)
    first = 0
    for spec, width in zip(specs, widths, strict=True):
        block = X[:, first : first + width]
        if spec.name in rows:
            _gather_view(paths[spec.name], spec.feature_names, rows[spec.name], block)
        else:
            block[:] = np.nan
        first += width
    if timings is not None:
        timings["select_join"] = timings.get("select_join", 0.0) + t1 - t0
        timings["gather"] = timings.get("gather", 0.0) + time.perf_counter() - t1
    return ids, X


def feature_snapshot_time(features_dir: Path, as_of: datetime, terms: CatalogTerms) -> datetime:
    """The newest feature-row time at or before ``as_of`` over all views."""
    as_of = utc(as_of)
    con = _connect()
    try:
        newest: list[datetime] = []
        for path in _view_paths(features_dir, terms).values():
            rows = con.execute(
                f"SELECT max(event_timestamp) FROM {_parquet(path)} "
                f"WHERE event_timestamp <= {_ts_literal(as_of)}"
            ).fetchall()
            if rows and rows[0][0] is not None:
                newest.append(utc(rows[0][0]))
    finally:
        con.close()
    if not newest:
        raise BatchInputError(f"no feature rows at or before {as_of.isoformat()} in {features_dir}")
    return max(newest)


def add_request_time_features(
    X: np.ndarray, feature_names: Sequence[str], request_ts: float
) -> None:
    """Fill the request-time columns of ``X`` in place from their ``*_ts`` columns."""
    pos = {n: i for i, n in enumerate(feature_names)}
    for name, src in request_time_features_of(feature_names).items():
        X[:, pos[name]] = days_since(X[:, pos[src]], request_ts)


def batch_to_matrix(
    batch: pa.RecordBatch, n_features: int, request_ts: float, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(customer ids, X)`` of an Arrow batch of ``customer_id`` then the view columns,
    with the request-time features filled at ``request_ts``."""
    n = batch.num_rows
    X = np.empty((n, n_features), dtype=np.float64)
    for j in range(1, batch.num_columns):
        col = batch.column(j)
        X[:, j - 1] = col.to_numpy(zero_copy_only=False) if col.null_count else col.to_numpy()
    ids = batch.column(0).to_numpy(zero_copy_only=False).astype(object)
    add_request_time_features(X, names, request_ts)
    return ids, X


def _full_matrix(
    features_dir: Path,
    customer_ids: Sequence[str] | None,
    as_of: datetime,
    timings: dict[str, float] | None = None,
    *,
    terms: CatalogTerms,
) -> tuple[pa.Array, np.ndarray]:
    """Point-in-time view columns widened to ``all_feature_names()`` with the
    request-time features filled at ``as_of``."""
    names = all_feature_names(terms)
    stored = sum(len(spec.feature_names) for spec in view_specs(terms))
    # Allocated once at full width: widening a 1M-row matrix afterwards costs a copy.
    ids, X = point_in_time_features(
        features_dir, customer_ids, as_of, timings, len(names) - stored, terms=terms
    )
    add_request_time_features(X, names, utc(as_of).timestamp())
    return ids, X


def iter_feature_chunks(
    features_dir: Path,
    customer_ids: Sequence[str] | None,
    as_of: datetime,
    chunk_size: int = 100_000,
    timings: dict[str, float] | None = None,
    *,
    terms: CatalogTerms,
) -> tuple[int, Iterator[tuple[np.ndarray, np.ndarray]]]:
    """(number of customers, iterator of (customer ids, X [m, F])) in ``all_feature_names()``
    order, ``chunk_size`` customers at a time.

    The point-in-time selection and join run before this returns; the chunks are views
    of one matrix, so ``decide()``'s working memory stays bounded by the chunk size.
    Seconds per step go to ``timings`` when given (see :func:`point_in_time_features`).
    """
    ids, X = _full_matrix(Path(features_dir), customer_ids, as_of, timings, terms=terms)
    step = max(int(chunk_size), 1)

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for a in range(0, len(ids), step):
            part = ids.slice(a, step).to_numpy(zero_copy_only=False).astype(object)
            yield part, X[a : a + step]

    return len(ids), chunks()


def offline_feature_matrix(
    features_dir: Path, customer_ids: Sequence[str] | None, as_of: datetime, terms: CatalogTerms
) -> tuple[np.ndarray, np.ndarray, datetime]:
    """Point-in-time features of ``customer_ids`` (everyone when None) as of ``as_of``.

    Returns ``(customer_ids [n], X [n, F] in all_feature_names() order, snapshot_time)``;
    features a customer has no row for are NaN. Same semantics as Feast's offline
    point-in-time join and the online store after ``materialize(end=as_of)``.
    """
    snapshot = feature_snapshot_time(features_dir, as_of, terms)
    ids, X = _full_matrix(Path(features_dir), customer_ids, as_of, terms=terms)
    return ids.to_numpy(zero_copy_only=False).astype(object), X, snapshot


def read_customer_list(customer_ids: Sequence[str] | Path | None) -> list[str] | None:
    """The customer ids to score: the given ones, those of a file (parquet with a
    ``customer_id`` column, or one id a line), or None for everyone."""
    if customer_ids is None or not isinstance(customer_ids, str | Path):
        return None if customer_ids is None else [str(c) for c in customer_ids]
    path = Path(customer_ids)
    if not path.exists():
        raise BatchInputError(f"customer list not found: {path}")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        if "customer_id" not in table.column_names:
            raise BatchInputError(f"{path}: no column 'customer_id' (have {table.column_names})")
        return [str(c) for c in table["customer_id"].to_pylist() if c is not None]
    ids = [line.strip() for line in path.read_text().splitlines()]
    if ids and ids[0] == "customer_id":  # a one-column CSV with a header
        ids = ids[1:]
    return [c for c in ids if c]


# --------------------------------------------------------------------------------------
# the event ledger


@dataclass(frozen=True)
class LedgerCut:
    """The ledger as one batch job reads it: the events up to position ``upto_seq`` (the
    newest when the job started) and ``watermark``, the position the last feature build
    read. Small and picklable: Spark sends it to every partition."""

    path: Path
    upto_seq: int
    watermark: int


def ledger_cut(path: Path) -> LedgerCut | None:
    """The cut of the ledger at ``path`` a job reads now; None when it holds no event (a
    home that never received one has no ledger file, and none is created)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        ledger = Ledger(path)
        try:
            cut = LedgerCut(path, ledger.last_seq(), ledger.build_watermark())
        finally:
            ledger.close()
    except sqlite3.DatabaseError as exc:
        raise BatchInputError(f"event ledger {path}: not a readable ledger ({exc})") from exc
    return cut if cut.upto_seq > 0 else None


def apply_ledger_chunk(
    X: np.ndarray,
    names: Sequence[str],
    customer_ids: Sequence[str],
    ledger: Ledger,
    cut: LedgerCut,
    as_of: datetime,
    index: dict[str, int] | None = None,
    terms: CatalogTerms | None = None,
) -> int:
    """The ledger's state at ``as_of`` written over one chunk's feature rows in place
    (one indexed query for the chunk's customers); returns how many rows changed.
    ``terms``: the catalog's (which purposes are consented to once for all channels)."""
    return apply_ledger(
        X,
        names,
        customer_ids,
        ledger,
        utc(as_of).timestamp(),
        upto_seq=cut.upto_seq,
        watermark=cut.watermark,
        index=index,
        terms=terms,
    )


# --------------------------------------------------------------------------------------
# output layout


def output_schema(plan: Plan, channel: str, k: int) -> pa.Schema:
    """Columns of the decisions file: one row per customer, top-k flattened, and per
    action deliverable on ``channel`` the reason it was excluded (null when ranked)."""
    fields = [
        pa.field("customer_id", pa.string()),
        pa.field("group", pa.string()),
        pa.field("chosen_action", pa.string()),
        pa.field("propensity", pa.float64()),
        pa.field("explored", pa.bool_()),
        pa.field("reason", pa.string()),
        pa.field("p_control", pa.float64()),
    ]
    for r in range(1, k + 1):
        fields += [pa.field(f"rank_{r}_action", pa.string())]
        fields += [pa.field(f"rank_{r}_score", pa.float64())]
    for c in plan.channels[channel].action_idx:
        fields.append(pa.field(f"excluded_{plan.action_ids[c]}", pa.string()))
    return pa.schema(fields)


def _dict_strings(indices: np.ndarray, dictionary: Sequence[str], null: np.ndarray) -> pa.Array:
    """Strings from small integer codes without building Python objects per row."""
    idx = pa.array(np.where(null, 0, indices).astype(np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(idx, pa.array(list(dictionary))).dictionary_decode()


def decisions_table(d: Decisions, schema: pa.Schema) -> pa.Table:
    """One chunk of decisions in the output layout (vectorised, no per-row dicts)."""
    plan, n = d.plan, d.n
    cp = plan.channels[d.context.channel]
    ids_ctl = list(plan.action_ids_with_control)
    no_null = np.zeros(n, dtype=bool)
    chosen = np.where(d.chosen < 0, len(ids_ctl) - 1, d.chosen)
    cols: dict[str, pa.Array] = {
        "customer_id": pa.array(d.customer_ids, type=pa.string()),
        "group": _dict_strings(d.holdout.astype(np.int32), [DECIDED, HOLDOUT], no_null),
        "chosen_action": _dict_strings(chosen, ids_ctl, no_null),
        "propensity": pa.array(d.propensity),
        "explored": pa.array(d.explored),
        "reason": _dict_strings(d.row_reason.astype(np.int32), _REASON_NAMES, no_null),
        "p_control": pa.array(d.p_control),
    }
    rows = np.arange(n)
    for r in range(d.ranked.shape[1]):
        c = d.ranked[:, r]
        none = c < 0
        cols[f"rank_{r + 1}_action"] = _dict_strings(c, ids_ctl, none)
        cols[f"rank_{r + 1}_score"] = pa.array(np.where(none, np.nan, d.score[rows, c]), mask=none)
    for c in cp.action_idx:
        code = d.codes[:, c].astype(np.int32)
        cols[f"excluded_{plan.action_ids[c]}"] = _dict_strings(code, _REASON_NAMES, code == 0)
    return pa.table([cols[f.name] for f in schema], schema=schema)


def file_metadata(plan: Plan, ctx: DecisionContext) -> dict[str, str]:
    """The decisions file's metadata: channel, decision time, versions, feature snapshot."""
    return {
        "channel": ctx.channel,
        "decided_at": utc(ctx.now).isoformat(),
        "model_version": plan.model_version,
        "policy_version": plan.policy.version,
        "catalog_version": plan.catalog.version,
        "feature_snapshot_time": (
            utc(ctx.feature_snapshot_time).isoformat() if ctx.feature_snapshot_time else ""
        ),
    }


# --------------------------------------------------------------------------------------
# summary


@dataclass
class ScoreSummary:
    """What a batch run decided, counted from its output file."""

    out: str
    engine: str
    channel: str
    as_of: str
    feature_snapshot_time: str
    customers: int
    holdout: int
    explored: int
    chosen: dict[str, int]
    excluded: dict[str, dict[str, int]]
    model_version: str
    policy_version: str
    catalog_version: str
    timings_s: dict[str, float] = field(default_factory=dict)
    #: How the model scored: "compiled trees" (rows checked against LightGBM), "lightgbm"
    #: (the stacked scorer) or "model" (the model's own methods); empty on Spark.
    scorer: str = ""
    #: The ledger position the job read up to (0: no event in the ledger).
    ledger_position: int = 0
    #: Customers whose features the ledger's state changed (-1: not counted, on Spark).
    ledger_customers: int = 0
    #: The policy's limits on the channel, when any: each limit's capacity and use, the
    #: allocation's total value, its LP bound and the gap between them.
    allocation: dict[str, Any] | None = None

    @property
    def decisions_per_second(self) -> float:
        """Customers decided per second of total wall time."""
        total = self.timings_s.get("total", 0.0)
        return self.customers / total if total > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (with decisions per second)."""
        out = asdict(self)
        out["decisions_per_second"] = self.decisions_per_second
        return out


def summary_path(out: Path) -> Path:
    """``<out>.summary.json`` beside the decisions file."""
    out = Path(out)
    return out.with_name(out.name + ".summary.json")


def count_output(out: Path) -> dict[str, Any]:
    """Counts per chosen action, group and exclusion reason per action, read from the
    decisions file (or Spark's directory of parts) column by column."""
    dataset = ds.dataset(str(out), format="parquet")
    names = dataset.schema.names
    excl = [c for c in names if c.startswith("excluded_")]
    table = dataset.to_table(columns=["chosen_action", "group", "explored", *excl])

    def counts(col: pa.ChunkedArray) -> dict[str, int]:
        vc = pc.value_counts(col.drop_null() if col.null_count else col)
        pairs = zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)
        return dict(sorted(pairs))

    return {
        "customers": table.num_rows,
        "chosen": counts(table["chosen_action"]),
        "holdout": int(pc.sum(pc.equal(table["group"], "holdout")).as_py() or 0),
        "explored": int(pc.sum(pc.cast(table["explored"], pa.int64())).as_py() or 0),
        "excluded": {c.removeprefix("excluded_"): counts(table[c]) for c in excl},
        "metadata": {k.decode(): v.decode() for k, v in (dataset.schema.metadata or {}).items()},
    }


def write_summary(summary: ScoreSummary) -> Path:
    """Write ``<out>.summary.json`` and return its path."""
    path = summary_path(Path(summary.out))
    path.write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True))
    return path
