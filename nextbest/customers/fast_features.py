"""Online features read straight from Feast's SQLite online store.

The Feast SDK path (``get_online_features`` on the ``nba_v1`` feature service with its
python-mode on-demand view) costs several milliseconds per call, almost all of it in
request planning, proto conversion and the on-demand transform. The data itself is a
handful of indexed rows, so this reader keeps one SQLite connection per thread, one
prepared ``UNION ALL`` statement over every view of the feature service, a precomputed
(view, feature) -> column map and a cache of decoded values, and computes the
request-time features with :func:`nextbest.customers.feature_schema.days_since`, the very function
the on-demand view calls.

Semantics equal the SDK path (``tests/integration/test_fast_features.py`` compares both):
Feast's online read applies no TTL, a missing row or feature is NaN, and a request-time
feature whose source timestamp is missing is ``NEVER_DAYS``. Events pushed through the
SDK are committed by Feast before ``push`` returns, so the next read sees them.
"""

from __future__ import annotations

import logging
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nextbest.customers.feature_schema import days_since, request_time_features_of

log = logging.getLogger(__name__)

#: Decoded values kept per reader; feature values repeat a lot (0, small counts, flags).
_CACHE_LIMIT = 200_000
#: How much of the SQLite file each connection maps into memory.
_MMAP_BYTES = 4 << 30
#: How often (seconds) a reader compares the file at its path with the one it reads.
_LOOK_SECONDS = 1.0
#: Row layouts kept per reader (customers differ only in which views hold a row for them).
_LAYOUT_LIMIT = 10_000


def _entity_key(join_key: str, value: str, version: int) -> bytes:
    """Feast's serialised entity key for one string join key."""
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])
    return serialize_entity_key(key, entity_key_serialization_version=version)


class _KeyEncoder:
    """Feast's entity key of one string join key, without building protos per call.

    Feast's encoding of a single string key is a fixed prefix (key count, the join key,
    the value type) then the value's length and UTF-8 bytes. The prefix is taken from
    Feast itself, and the layout is checked against Feast on probe values at start-up;
    should a Feast version encode differently, every key goes through Feast.
    """

    def __init__(self, join_key: str, version: int) -> None:
        self.join_key, self.version = join_key, version
        empty = _entity_key(join_key, "", version)
        self._prefix: bytes | None = empty[:-4] if empty.endswith(b"\0\0\0\0") else None
        for probe in ("C0000001", "é@x.example", "x" * 300):
            if self._prefix is None or self(probe) != _entity_key(join_key, probe, version):
                self._prefix = None
                break

    def __call__(self, value: str) -> bytes:
        if self._prefix is None:
            return _entity_key(self.join_key, value, self.version)
        raw = value.encode("utf-8")
        return self._prefix + len(raw).to_bytes(4, "little") + raw


class FastOnlineFeatures:
    """Read the ``nba_v1`` features and the identity lookup from a Feast SQLite store.

    Build it once from an open ``FeatureStore`` (for the registry and config); it then
    reads the SQLite file directly. Thread-safe: one connection per thread.
    """

    def __init__(
        self,
        store: Any,
        feature_names: Sequence[str],
        service: str = "nba_v1",
        timeout: float = 2.0,
    ) -> None:
        # lazy: feast loads after import_feast, and only where a store is used
        from feast.infra.online_stores.helpers import compute_table_id

        config = store.config
        if getattr(config.online_store, "type", "sqlite") != "sqlite":
            raise ValueError(
                f"FastOnlineFeatures reads SQLite online stores only, not "
                f"{config.online_store.type!r}"
            )
        path = Path(config.online_store.path)
        if not path.is_absolute():
            path = Path(config.repo_path or ".") / path
        self.path = path
        #: Busy timeout and time limit of every query (seconds).
        self.timeout = float(timeout)
        # Bumped when the file is found replaced or a read fails: every thread then opens
        # a fresh connection on its next read instead of keeping a broken or stale one.
        self._generation = 0
        self._inode: int | None = None
        self._looked = time.monotonic()  # when the file's identity was last compared
        self.version = int(config.entity_key_serialization_version)
        self.names = list(feature_names)
        col = {n: j for j, n in enumerate(self.names)}
        versioning = bool(getattr(config.registry, "enable_online_feature_view_versioning", False))

        fs = store.get_feature_service(service)
        views: list[tuple[str, list[str]]] = []
        odfv_names: set[str] = set()
        for proj in fs.feature_view_projections:
            names = [f.name for f in proj.features]
            try:
                store.get_feature_view(proj.name)
            except Exception:  # not a batch view: the on-demand view
                odfv_names.update(names)
                continue
            views.append((proj.name, names))
        self._views = views
        # (view index, feature name) -> output column, for served features only.
        self._col: dict[tuple[int, str], int] = {}
        # Source timestamps the request-time features need, wherever they are stored.
        self._src: dict[tuple[int, str], str] = {}
        # The request-time features the stored columns define (the on-demand view's rule).
        durations = request_time_features_of(n for _, names in views for n in names)
        rt_sources = {src: name for name, src in durations.items()}
        for vi, (_, names) in enumerate(views):
            for n in names:
                if n in col:
                    self._col[(vi, n)] = col[n]
            for src in rt_sources:
                # the on-demand view reads its sources whether or not they are served
                self._src[(vi, src)] = src
        self._rt = [
            (col[name], src)
            for name, src in durations.items()
            if name in odfv_names and name in col
        ]
        self._rt_cols = np.array([j for j, _ in self._rt], dtype=np.intp)
        self._rt_src = [s for _, s in self._rt]
        tables = [
            compute_table_id(config.project, store.get_feature_view(v), versioning)
            for v, _ in views
        ]
        self._sql = " UNION ALL ".join(
            f'SELECT {i}, feature_name, value FROM "{t}" WHERE entity_key = ?'
            for i, t in enumerate(tables)
        )
        self._n_views = len(tables)
        self._identity_sql = (
            f'SELECT value FROM "{config.project}_identity_lookup" '
            "WHERE entity_key = ? AND feature_name = 'customer_id'"
        )
        self._local = threading.local()
        self._cache: dict[bytes, float] = {}
        # (views, names) of a customer's rows -> where their values go; a handful of
        # layouts (which views a customer has rows in) cover every customer.
        self._layouts: dict[tuple[tuple[int, ...], tuple[str, ...]], _Layout] = {}
        self._customer_key = _KeyEncoder("customer_id", self.version)
        self._identifier_key = _KeyEncoder("identifier", self.version)

    # --- plumbing ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and time.monotonic() - self._looked > _LOOK_SECONDS:
            self._notice_replaced()
        if conn is not None and self._local.generation != self._generation:
            self._drop()
            conn = None
        if conn is None:
            generation = self._generation
            try:
                inode = self.path.stat().st_ino
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"Feast SQLite online store not found: {self.path}"
                ) from None
            # Autocommit: no read transaction stays open, so rows Feast commits are seen
            # by the very next query.
            conn = sqlite3.connect(
                str(self.path),
                isolation_level=None,
                check_same_thread=False,
                timeout=self.timeout,
            )
            try:
                conn.execute("PRAGMA query_only = 1")
                # Random customers touch random pages of a file far larger than SQLite's
                # default 2 MiB page cache: mapping the file reads them from the OS page
                # cache without a pread per page (still coherent with Feast's writes).
                conn.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
            except sqlite3.Error:
                conn.close()
                raise
            # A query past its deadline is interrupted (raises sqlite3.OperationalError).
            conn.set_progress_handler(self._past_deadline, 10_000)
            if self._inode is not None and inode != self._inode:
                self._generation += 1  # another file than the other threads read: reopen
                generation = self._generation
            self._local.conn, self._local.generation = conn, generation
            self._inode = inode
        return conn

    def _query(self, conn: sqlite3.Connection, sql: str, params: tuple[bytes, ...]) -> list[Any]:
        """The rows of one query, interrupted past ``timeout`` seconds."""
        self._local.deadline = time.monotonic() + self.timeout
        return conn.execute(sql, params).fetchall()

    def _past_deadline(self) -> int:
        return int(time.monotonic() > self._local.deadline)

    def _drop(self) -> None:
        """Close this thread's connection; the next read opens a new one."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def reset(self) -> None:
        """Forget every thread's connection (after a failed read): each opens a new one on
        its next read, so the reader recovers once the file is readable again."""
        self._generation += 1
        self._drop()

    def _notice_replaced(self) -> None:
        """Reopen every connection when the file at ``path`` is another one than they read
        (a rebuilt store swapped in, or the file removed): open connections would go on
        reading the old file."""
        self._looked = time.monotonic()
        try:
            inode: int | None = self.path.stat().st_ino
        except FileNotFoundError:
            inode = None
        if self._inode is not None and inode != self._inode:
            log.warning("online store file %s replaced: reopening its connections", self.path)
            self.reset()

    def check(self) -> None:
        """Raise if the store cannot be read now: one indexed read of the file at ``path``."""
        self._notice_replaced()
        self.lookup("")

    def _decode(self, blob: bytes) -> float:
        v = self._cache.get(blob)
        if v is None:
            # lazy: feast loads after import_feast, and only where a store is used
            from feast.protos.feast.types.Value_pb2 import Value

            proto = Value()
            proto.ParseFromString(blob)
            kind = proto.WhichOneof("val")
            raw = None if kind is None or kind == "null_val" else getattr(proto, kind)
            v = np.nan if raw is None else float(raw)
            if len(self._cache) < _CACHE_LIMIT:
                self._cache[blob] = v
        return v

    # --- reads --------------------------------------------------------------------------

    def lookup(self, identifier_key: str) -> str | None:
        """The customer an identifier key belongs to, or None (as ``lookup_customer``)."""
        # lazy: feast loads after import_feast, and only where a store is used
        from feast.protos.feast.types.Value_pb2 import Value

        key = self._identifier_key(identifier_key)
        rows = self._query(self._conn(), self._identity_sql, (key,))
        if not rows:
            return None
        proto = Value()
        proto.ParseFromString(rows[0][0])
        return proto.string_val or None

    def features(self, customer_ids: Sequence[str], request_ts: float) -> np.ndarray:
        """Features in ``feature_names`` order; equal to ``online_features`` of the SDK."""
        out = np.full((len(customer_ids), len(self.names)), np.nan)
        # Source timestamps of the request-time features, one row per customer; a missing
        # one stays NaN and reads as NEVER_DAYS, as in the on-demand view. ``days_since``
        # is elementwise, so one call for the batch gives each row what its own call would.
        stamps = np.full((len(customer_ids), len(self._rt)), np.nan)
        conn = self._conn()
        cache, decode = self._cache, self._decode
        for i, cid in enumerate(customer_ids):
            key = self._customer_key(cid)
            rows = self._query(conn, self._sql, (key,) * self._n_views)
            if not rows:
                continue
            views, names, blobs = zip(*rows, strict=True)
            layout = self._layout(views, names)
            values = np.array(
                [v if (v := cache.get(b)) is not None else decode(b) for b in layout.pick(blobs)]
            )
            out[i, layout.cols] = values[layout.take]
            if self._rt:
                stamps[i, layout.rt_slots] = values[layout.rt_take]
        if self._rt and len(customer_ids):
            out[:, self._rt_cols] = days_since(stamps, request_ts)
        return out

    def _layout(self, views: tuple[int, ...], names: tuple[str, ...]) -> _Layout:
        """Where each fetched value goes, for this sequence of (view, feature) rows."""
        key = (views, names)
        layout = self._layouts.get(key)
        if layout is not None:
            return layout
        cols, take = [], []
        last_row: dict[str, int] = {}  # source timestamp -> its row; a later row wins
        for r, (vi, name) in enumerate(zip(views, names, strict=True)):
            j = self._col.get((vi, name))
            if j is not None:
                cols.append(j)
                take.append(r)
            s = self._src.get((vi, name))
            if s is not None:
                last_row[s] = r
        rt_slots = [k for k, s in enumerate(self._rt_src) if s in last_row]
        rt_rows = [last_row[self._rt_src[k]] for k in rt_slots]
        # Only the rows read are decoded (a view may hold values that are not numbers).
        need = sorted(set(take) | set(rt_rows))
        at = {r: p for p, r in enumerate(need)}
        layout = _Layout(
            pick=operator.itemgetter(*need)
            if len(need) > 1
            else (lambda b, r=tuple(need): [b[x] for x in r]),
            cols=np.array(cols, dtype=np.intp),
            take=np.array([at[r] for r in take], dtype=np.intp),
            rt_slots=np.array(rt_slots, dtype=np.intp),
            rt_take=np.array([at[r] for r in rt_rows], dtype=np.intp),
        )
        if len(self._layouts) < _LAYOUT_LIMIT:
            self._layouts[key] = layout
        return layout


@dataclass(frozen=True)
class _Layout:
    """Where the values of one fetched row sequence go in the feature row."""

    pick: Callable[[Sequence[bytes]], Sequence[bytes]]  # the blobs to decode, in order
    cols: np.ndarray  # output column of each served value ...
    take: np.ndarray  # ... and its position among the picked values
    rt_slots: np.ndarray  # request-time source slot of each fetched timestamp ...
    rt_take: np.ndarray  # ... and its position among the picked values
