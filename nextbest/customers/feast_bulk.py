"""A Feast batch engine that materialises into the SQLite online store in bulk.

Feast 0.67's SQLite online store writes one ``INSERT ... ON CONFLICT`` per (entity,
feature) through ``conn.execute``, after turning every value into a ``ValueProto`` in
Python: at 100,000 customers that is 9.2 million statements and ~10 minutes, at 1,000,000
over an hour. :class:`BulkSqliteComputeEngine` is Feast's local compute engine with one
step replaced for SQLite stores: it reads the latest row per entity with Feast's own
``pull_latest_from_table_or_query`` (the rows Feast's materialisation keeps: same
``[start, end]`` bounds, newest event timestamp, then newest created timestamp), encodes
whole columns at once into fixed-width byte cells (numpy), binds a chunk's cells as a few
large blobs and lets one ``INSERT ... SELECT`` per chunk cut them into Feast's rows and
upsert them inside SQLite (Feast's own ``ON CONFLICT`` statement). Feast hands it every
view at once (``supports_batch``), so the next view is read while one is written.
Everything else stays Feast's: ``FeatureStore.materialize`` and
``materialize_incremental`` call it through the provider and record the materialisation
intervals in the registry as usual; other online stores (Redis) and any view this engine
does not handle fall back to the local engine unchanged.

The rows are byte-identical to Feast's (entity key, ``ValueProto`` bytes, ``value_text``,
``event_ts``, ``created_ts``); ``tests/integration/test_feast_bulk.py`` compares the
tables and ``get_online_features`` after both paths on the same world.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.infra.common.materialization_job import (
    MaterializationJobStatus,
    MaterializationTask,
)
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from feast.value_type import ValueType

log = logging.getLogger(__name__)

#: The ``batch_engine`` type that selects this engine in a Feast ``RepoConfig``.
ENGINE_TYPE = "nextbest.customers.feast_bulk.BulkSqliteComputeEngine"

# Entities per executemany chunk: bounds the Python row tuples held at once
# (~15 features per entity, so ~1.5 million rows).
_CHUNK = 100_000
# SQLite page cache during a bulk load, in KiB (negative: PRAGMA cache_size's unit).
_BULK_CACHE_KIB = -512 * 1024
# ValueProto field tag of double_val: field 5, wire type 1 (fixed 64-bit).
_DOUBLE_TAG = 0x29


class BulkSqliteComputeEngineConfig(FeastConfigBaseModel):
    """Configuration of :class:`BulkSqliteComputeEngine` (nothing beyond its type)."""

    type: Literal["nextbest.customers.feast_bulk.BulkSqliteComputeEngine"] = ENGINE_TYPE


@dataclass(frozen=True)
class Latest:
    """A view's newest row per entity and the entities' serialised keys, in key order."""

    table: pa.Table
    keys: np.ndarray  # object array of bytes


class BulkSqliteComputeEngine(LocalComputeEngine):
    """Feast's local compute engine with a bulk write into SQLite online stores."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("type", None)
        super().__init__(**kwargs)

    @property
    def supports_batch(self) -> bool:
        """Feast hands every view to one :meth:`materialize` call, so the next view's
        rows are read while this one is written."""
        return True

    def materialize(
        self,
        registry: BaseRegistry,
        tasks: MaterializationTask | list[MaterializationTask],
        **kwargs: Any,
    ) -> list[LocalMaterializationJob]:
        """One job per task, in order. The newest rows of the next bulk view are read
        (DuckDB, which releases the GIL) in a background thread while SQLite writes the
        current one; writes stay one view at a time, each in its own transaction."""
        tasks = [tasks] if isinstance(tasks, MaterializationTask) else list(tasks)
        bulk = [i for i, t in enumerate(tasks) if self._bulk(t)]
        jobs: list[LocalMaterializationJob] = []
        with ThreadPoolExecutor(1) as reader:

            def read(i: int) -> Future[Latest | None]:
                t = tasks[i]
                return reader.submit(self._latest, t.feature_view, t.start_time, t.end_time)

            ahead = {bulk[0]: read(bulk[0])} if bulk else {}
            for i, task in enumerate(tasks):
                if i not in ahead:
                    jobs.append(super()._materialize_one(registry, task, **kwargs))
                    continue
                pending = ahead.pop(i)
                later = [j for j in bulk if j > i]
                if later:
                    ahead[later[0]] = read(later[0])
                jobs.append(self._bulk_job(task, pending.result))
        return jobs

    def _bulk(self, task: MaterializationTask) -> bool:
        reason = unsupported_reason(self.repo_config, task.feature_view)
        if reason:
            log.info(
                "materialising %s through Feast's local engine: %s", task.feature_view.name, reason
            )
        return reason is None

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs: Any
    ) -> LocalMaterializationJob:
        if not self._bulk(task):
            return super()._materialize_one(registry, task, **kwargs)
        fv = task.feature_view
        return self._bulk_job(task, lambda: self._latest(fv, task.start_time, task.end_time))

    def _bulk_job(
        self, task: MaterializationTask, latest: Callable[[], Latest | None]
    ) -> LocalMaterializationJob:
        """Write ``latest()``'s rows of ``task``'s view; a failure becomes the job's error
        (the provider re-raises it)."""
        fv = task.feature_view
        job_id = f"{fv.name}-{task.start_time}-{task.end_time}"
        try:
            rows = latest()
            n = 0 if rows is None else self._write(fv, rows)
            log.info("bulk-materialised %d %s rows", n, fv.name)
            return LocalMaterializationJob(job_id=job_id, status=MaterializationJobStatus.SUCCEEDED)
        except Exception as e:
            return LocalMaterializationJob(
                job_id=job_id, status=MaterializationJobStatus.ERROR, error=e
            )

    def _latest(self, fv: Any, start: datetime, end: datetime) -> Latest | None:
        """The newest row per entity in ``[start, end]`` (Feast's own query) and the
        entities' serialised keys, both in key order; None if there are no rows."""
        source = fv.batch_source
        join_key = fv.entity_columns[0].name
        features = [f.name for f in fv.features]
        table = self.offline_store.pull_latest_from_table_or_query(
            config=self.repo_config,
            data_source=source,
            join_key_columns=[join_key],
            feature_name_columns=features,
            timestamp_field=source.timestamp_field,
            created_timestamp_column=source.created_timestamp_column or None,
            start_date=start,
            end_date=end,
        ).to_arrow()
        if table.num_rows == 0:
            return None
        version = int(self.repo_config.entity_key_serialization_version)
        # object, not numpy bytes: "S" arrays drop trailing NUL bytes of a key
        keys = np.array(
            entity_keys(join_key, table.column(join_key).to_pylist(), version), dtype=object
        )
        # Rows in entity-key order make every B-tree insert (the table's primary key and
        # Feast's entity_key index) an append instead of a random page visit.
        order = np.argsort(keys, kind="stable")
        return Latest(table.take(pa.array(order)), keys[order])

    def _write(self, fv: Any, latest: Latest) -> int:
        """Upsert ``latest``'s rows into ``fv``'s online table; rows written."""
        source = fv.batch_source
        table, keys = latest.table, latest.keys
        kinds = [(f.name, f.dtype.to_value_type()) for f in fv.features]
        conn = self.online_store._get_conn(self.repo_config)
        table_name = online_table(self.repo_config, fv)

        def encoded(offset: int) -> CellChunk:
            return encode_chunk(
                table.slice(offset, _CHUNK),
                keys[offset : offset + _CHUNK].tolist(),
                kinds,
                source.timestamp_field,
                source.created_timestamp_column or None,
            )

        # The next chunk is encoded (numpy, mostly without the GIL) in a second thread
        # while SQLite expands and inserts this one; chunks are written in order, one at
        # a time, in the same transaction.
        offsets = range(0, table.num_rows, _CHUNK)
        with (
            cell_tables(conn, [name for name, _ in kinds]) as features,
            bulk_load(conn, table_name),
            ThreadPoolExecutor(1) as pool,
        ):
            sql = expand_sql(table_name)
            pending = pool.submit(encoded, offsets[0])
            for i in range(len(offsets)):
                chunk = pending.result()
                if i + 1 < len(offsets):
                    pending = pool.submit(encoded, offsets[i + 1])
                write_chunk(conn, sql, chunk, features)
                del chunk
        return table.num_rows * len(kinds)


def online_table(config: Any, fv: Any) -> str:
    """Name of ``fv``'s table in Feast's SQLite online store."""
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.online_stores.sqlite import _table_id

    return _table_id(config.project, fv, config.registry.enable_online_feature_view_versioning)


@contextmanager
def bulk_load(conn: sqlite3.Connection, table: str) -> Iterator[None]:
    """One transaction around a view's upserts into ``table``, with a larger page cache.

    Feast's indexes (the primary key's and its ``entity_key`` index) stay in place and are
    maintained row by row: the rows arrive in entity-key order, so every insert into them
    is an append, which costs less CPU than dropping the ``entity_key`` index and building
    it again after the rows (that sorts every key; benchmarks/README.md). A failure rolls the
    whole load back. The larger page cache keeps the B-trees' pages in memory; it is the
    connection's setting and is put back afterwards.
    """
    if conn.in_transaction:
        conn.commit()
    cache = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size = {_BULK_CACHE_KIB}")
    conn.execute("BEGIN")
    try:
        yield
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.execute(f"PRAGMA cache_size = {int(cache)}")


def unsupported_reason(config: Any, fv: Any) -> str | None:
    """Why this engine leaves ``fv`` to Feast's local engine, or None if it handles it."""
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig

    store = config.online_store
    if not isinstance(store, SqliteOnlineStoreConfig):
        return f"online store {getattr(store, 'type', store)!r} is not sqlite"
    if getattr(store, "vector_enabled", False) or getattr(
        store, "enable_openai_compatible_store", False
    ):
        return "vector or value_num columns"
    if getattr(config.registry, "enable_online_feature_view_versioning", False):
        return "versioned online tables"
    if not getattr(fv, "online", False):
        return "not an online view"
    if getattr(fv, "offline", False):
        return "the view also writes offline"
    # Transformations and aggregations run in Feast's DAG; this engine only copies rows.
    if getattr(fv, "aggregations", None) or getattr(fv, "feature_transformation", None):
        return "aggregations or transformations"
    source = fv.batch_source
    if source is None or getattr(source, "field_mapping", None):
        return "no batch source or a field mapping"
    entities = fv.entity_columns
    if len(entities) != 1 or entities[0].dtype.to_value_type() != ValueType.STRING:
        return "not exactly one string join key"
    kinds = {f.dtype.to_value_type() for f in fv.features}
    if not kinds <= {ValueType.DOUBLE, ValueType.INT64, ValueType.STRING}:
        return f"feature types {sorted(k.name for k in kinds)}"
    return None


def entity_keys(join_key: str, values: list[str], version: int) -> list[bytes]:
    """Feast's serialised entity keys for one string join key (``serialize_entity_key``)."""
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.key_encoding_utils import serialize_entity_key_prefix

    if version < 3:
        raise ValueError("entity key serialisation versions below 3 are not supported")
    # v3: number of keys, then per key (type, length, name), then per value
    # (type, length, bytes); the name part is the key prefix Feast scans by.
    head = serialize_entity_key_prefix([join_key], version) + struct.pack(
        "<I", ValueType.STRING.value
    )
    out = []
    for v in values:
        b = v.encode("utf8")
        out.append(head + struct.pack("<I", len(b)) + b)
    return out


@dataclass(frozen=True)
class Cells:
    """One column's Feast values as fixed-width byte matrices.

    Row ``i`` holds value ``i``'s ``ValueProto`` bytes in ``value[i, :value_len[i]]`` and
    its ``value_text`` in ``text[i, :text_len[i]]`` (UTF-8); ``text_len`` is -1 where
    Feast stores no text (its nulls).
    """

    value: np.ndarray  # (n, width) uint8
    value_len: np.ndarray  # (n,) int64
    text: np.ndarray  # (n, width) uint8
    text_len: np.ndarray  # (n,) int64


def _matrix(items: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings as rows of a zero-padded uint8 matrix, and their lengths."""
    lens = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    width = max(int(lens.max()) if len(lens) else 0, 1)
    buf = b"".join(b.ljust(width, b"\0") for b in items)
    return np.frombuffer(buf, dtype=np.uint8).reshape(len(items), width), lens


def double_cells(values: np.ndarray) -> Cells:
    """``ValueProto(double_val=x)`` bytes and Feast's ``value_text`` (``str(x)``) per value.

    NaN is Feast's null: an empty ``ValueProto`` (``b""``) and no text. The bytes are the
    tag and the value's 8 little-endian bytes, built for the whole column at once.
    """
    values = np.ascontiguousarray(values, dtype="<f8")
    n = len(values)
    value = np.empty((n, 9), dtype=np.uint8)
    value[:, 0] = _DOUBLE_TAG
    value[:, 1:] = values.view(np.uint8).reshape(n, 8)
    nan = np.isnan(values)
    value_len = np.where(nan, 0, 9).astype(np.int64)
    # Texts through the unique values: features repeat a lot (counts, flags, 0.0).
    # Unique by bit pattern, not by value: -0.0 == 0.0, but Feast writes "-0.0".
    bits, inverse = np.unique(values.view(np.int64), return_inverse=True)
    texts, text_lens = _matrix([str(x).encode() for x in bits.view(np.float64).tolist()])
    text_len = np.where(nan, -1, text_lens[inverse])
    return Cells(value, value_len, texts[inverse], text_len)


def unique_cells(values: np.ndarray, value_type: ValueType) -> Cells:
    """:class:`Cells` of any supported type by Feast's own converters, once per distinct
    value (nulls: ``b""`` and no text, as Feast writes them)."""
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.type_map import python_values_to_proto_values

    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    protos = python_values_to_proto_values(np.asarray(uniq), value_type)
    blobs = [p.SerializeToString() for p in protos]
    texts = [extract_text_and_num(p, False)[0] for p in protos]
    value, value_lens = _matrix([*blobs, b""])
    null_text = [t is None for t in texts] + [True]
    text, text_lens = _matrix([b"" if t is None else str(t).encode() for t in texts] + [b""])
    text_lens = np.where(null_text, -1, text_lens)
    codes = np.where(codes < 0, len(blobs), codes)
    return Cells(value[codes], value_lens[codes], text[codes], text_lens[codes])


def _epoch_seconds(column: pa.ChunkedArray) -> np.ndarray:
    """Feast's stored ``event_ts``/``created_ts`` integers for a timestamp column.

    Feast converts each value to a naive UTC ``datetime`` and SQLite's registered adapter
    stores ``int(dt.timestamp())``, which reads the naive value in local time; so do we,
    through Feast's own functions, once per distinct timestamp.
    """
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.online_stores.sqlite import adapt_datetime_epoch
    from feast.utils import _coerce_datetime, to_naive_utc

    stamps = pd.to_datetime(column.to_numpy(zero_copy_only=False))
    codes, uniq = pd.factorize(stamps)
    ints = np.array([adapt_datetime_epoch(to_naive_utc(_coerce_datetime(t))) for t in uniq])
    return ints[codes]


@dataclass(frozen=True)
class CellChunk:
    """A chunk of entities ready for :func:`write_chunk`.

    Entity ``i``'s feature ``j`` (declaration order) is cell ``c = i * n_features + j``:
    its value bytes are ``value[c * value_width :][: value_len]`` and its text
    ``text[c * text_width :][: text_len]``; each length is ``digits`` ASCII digits at
    ``c * digits`` of ``value_lens`` / ``text_lens``, and ``null`` (all nines) marks
    a null text. Entity ``i``'s key is ``keys[i * key_width :][: key_len]`` (lengths as
    ``key_digits`` digits in ``key_lens``) and its ``[event_ts, created_ts]`` is item
    ``i`` of the JSON array ``stamps``.
    """

    n_entities: int
    keys: bytes
    key_width: int
    key_lens: bytes
    key_digits: int
    stamps: str
    n_features: int
    value: bytes
    value_width: int
    value_lens: bytes
    text: bytes
    text_width: int
    text_lens: bytes
    digits: int

    @property
    def null(self) -> int:
        """The text length that stands for a null text."""
        return 10**self.digits - 1


def _digits(lens: np.ndarray, digits: int) -> bytes:
    """Non-negative integers as fixed-width ASCII decimal, concatenated."""
    powers = 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)
    return ((lens[:, None] // powers) % 10 + 48).astype(np.uint8).tobytes()


def _interleave(parts: list[np.ndarray]) -> tuple[bytes, int]:
    """Per-feature (n, w_j) byte matrices as one entity-major buffer of cells of the
    widest width: entity 0's features, then entity 1's, ..."""
    width = max(p.shape[1] for p in parts)
    out = np.zeros((parts[0].shape[0], len(parts), width), dtype=np.uint8)
    for j, p in enumerate(parts):
        out[:, j, : p.shape[1]] = p
    return out.tobytes(), width


def encode_chunk(
    table: pa.Table,
    keys: list[bytes],
    features: list[tuple[str, ValueType]],
    timestamp_field: str,
    created_timestamp_column: str | None,
) -> CellChunk:
    """:class:`CellChunk` of ``table`` (whose serialised entity keys are ``keys``)."""
    event_ts = _epoch_seconds(table.column(timestamp_field)).tolist()
    if created_timestamp_column:
        created: list[Any] = _epoch_seconds(table.column(created_timestamp_column)).tolist()
    else:
        created = [None] * table.num_rows
    cells = []
    for name, kind in features:
        # Feast reads each column with to_numpy(zero_copy_only=False) too (nulls -> NaN
        # for doubles, None for strings).
        values = table.column(name).to_numpy(zero_copy_only=False)
        if kind == ValueType.DOUBLE:
            cells.append(double_cells(values.astype(np.float64)))
        else:
            cells.append(unique_cells(values, kind))
    value, value_width = _interleave([c.value for c in cells])
    text, text_width = _interleave([c.text for c in cells])
    value_len = np.stack([c.value_len for c in cells], axis=1).ravel()
    text_len = np.stack([c.text_len for c in cells], axis=1).ravel()
    longest = max(int(value_len.max()), int(text_len.max()))
    digits = len(str(longest + 1))
    null = 10**digits - 1
    key_matrix, key_len = _matrix(keys)
    key_digits = len(str(int(key_len.max()) if len(keys) else 0))
    return CellChunk(
        n_entities=len(keys),
        keys=key_matrix.tobytes(),
        key_width=key_matrix.shape[1],
        key_lens=_digits(key_len, key_digits),
        key_digits=key_digits,
        stamps=json.dumps(list(zip(event_ts, created, strict=True))),
        n_features=len(features),
        value=value,
        value_width=value_width,
        value_lens=_digits(value_len, digits),
        text=text,
        text_width=text_width,
        text_lens=_digits(np.where(text_len < 0, null, text_len), digits),
        digits=digits,
    )


@contextmanager
def cell_tables(conn: sqlite3.Connection, features: list[str]) -> Iterator[list[str]]:
    """Temporary tables :func:`expand_sql` reads, in memory for the load: the chunk's
    entities and the features (``j`` is the declaration position) in name order, the
    order of the primary key ``(entity_key, feature_name)``; dropped afterwards. Enter
    it outside a transaction (SQLite changes ``temp_store`` only there)."""
    if conn.in_transaction:
        conn.commit()
    store = conn.execute("PRAGMA temp_store").fetchone()[0]
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("CREATE TEMP TABLE nb_entities (c INTEGER PRIMARY KEY, k, ets, cts)")
    conn.execute("CREATE TEMP TABLE nb_features (j INTEGER, name TEXT)")
    try:
        order = sorted(range(len(features)), key=lambda j: features[j])
        conn.executemany(
            "INSERT INTO temp.nb_features VALUES (?, ?)", [(j, features[j]) for j in order]
        )
        conn.commit()
        yield features
    finally:
        conn.execute("DROP TABLE IF EXISTS temp.nb_entities")
        conn.execute("DROP TABLE IF EXISTS temp.nb_features")
        if not conn.in_transaction:
            conn.execute(f"PRAGMA temp_store = {int(store)}")


def expand_sql(table: str) -> str:
    """One ``INSERT ... SELECT`` that turns a :class:`CellChunk` into Feast's rows and
    upserts them as ``SqliteOnlineStore.online_write_batch`` does (``ON CONFLICT(entity_key,
    feature_name) DO UPDATE`` of value, value_text, event_ts, created_ts).

    The cells are bound as a few large blobs and cut with ``substr`` (on a BLOB it works
    on bytes, in constant time) inside SQLite, so Python binds a handful of parameters
    per chunk instead of two per (entity, feature) row: binding was most of the
    materialisation's CPU. Parameters: ``?1`` value bytes, ``?2`` value width, ``?3``
    value lengths, ``?4`` text bytes, ``?5`` text width, ``?6`` text lengths, ``?7``
    digits per length, ``?8`` the null text length. Per row SQLite evaluates as few
    functions as it can (they are most of the statement's cost once the rows arrive in
    key order): the entity carries its first cell, and a null text is ``substr`` with
    the NULL length that ``nullif`` makes of the null marker (a ``CASE`` would read the
    text length twice).
    """
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.online_stores.sqlite import _quote_id

    cell = "(e.c + f.j)"
    text_len = f"nullif(CAST(substr(?6, {cell} * ?7 + 1, ?7) AS INTEGER), ?8)"
    return (
        f"INSERT INTO {_quote_id(table)} "
        "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
        "SELECT e.k, f.name, "
        f"substr(?1, {cell} * ?2 + 1, CAST(substr(?3, {cell} * ?7 + 1, ?7) AS INTEGER)), "
        f"CAST(substr(?4, {cell} * ?5 + 1, {text_len}) AS TEXT), "
        "e.ets, e.cts "
        # CROSS JOIN keeps the entities (in key order) as the outer loop: rows arrive in
        # primary-key order and every B-tree insert is an append.
        "FROM temp.nb_entities AS e CROSS JOIN temp.nb_features AS f "
        "WHERE true "
        "ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
        "value = excluded.value, value_text = excluded.value_text, "
        "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
    )


def write_chunk(conn: sqlite3.Connection, sql: str, chunk: CellChunk, features: list[str]) -> None:
    """Upsert ``chunk``'s rows with :func:`expand_sql`'s statement ``sql``."""
    if chunk.n_features != len(features):
        raise ValueError(f"chunk has {chunk.n_features} features, tables {len(features)}")
    conn.execute("DELETE FROM temp.nb_entities")
    # One statement for the chunk's entities, not an executemany: that releases and
    # re-takes the GIL per row, and with the encoder and the next view's reader busy in
    # other threads each re-take waits.
    conn.execute(
        "INSERT INTO temp.nb_entities (c, k, ets, cts) "
        "SELECT e.key * ?1, "
        "substr(?2, e.key * ?3 + 1, CAST(substr(?4, e.key * ?5 + 1, ?5) AS INTEGER)), "
        "json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]') "
        "FROM json_each(?6) AS e",
        (
            chunk.n_features,
            chunk.keys,
            chunk.key_width,
            chunk.key_lens,
            chunk.key_digits,
            chunk.stamps,
        ),
    )
    if chunk.n_entities:
        got = conn.execute("SELECT count(*) FROM temp.nb_entities").fetchone()[0]
        if got != chunk.n_entities:
            raise RuntimeError(f"{got} entities staged for a chunk of {chunk.n_entities}")
    conn.execute(
        sql,
        (
            chunk.value,
            chunk.value_width,
            chunk.value_lens,
            chunk.text,
            chunk.text_width,
            chunk.text_lens,
            chunk.digits,
            chunk.null,
        ),
    )
