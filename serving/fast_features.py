"""Online features read straight from Feast's SQLite online store.

The Feast SDK path (``get_online_features`` on the ``nba_v1`` feature service with its
python-mode on-demand view) costs several milliseconds per call, almost all of it in
request planning, proto conversion and the on-demand transform. The data itself is a
handful of indexed rows, so this reader keeps one SQLite connection per thread, one
prepared ``UNION ALL`` statement over every view of the feature service, a precomputed
(view, feature) -> column map and a cache of decoded values, and computes the
request-time features with :func:`customers.feature_schema.days_since`, the very function
the on-demand view calls.

Semantics equal the SDK path (``tests/integration/test_fast_features.py`` compares both):
Feast's online read applies no TTL, a missing row or feature is NaN, and a request-time
feature whose source timestamp is missing is ``NEVER_DAYS``. Events pushed through the
SDK are committed by Feast before ``push`` returns, so the next read sees them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from customers.feature_schema import REQUEST_TIME_FEATURES, days_since

log = logging.getLogger(__name__)

#: Decoded values kept per reader; feature values repeat a lot (0, small counts, flags).
_CACHE_LIMIT = 200_000


def _entity_key(join_key: str, value: str, version: int) -> bytes:
    """Feast's serialised entity key for one string join key."""
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key = EntityKey(join_keys=[join_key], entity_values=[Value(string_val=value)])
    return serialize_entity_key(key, entity_key_serialization_version=version)


class FastOnlineFeatures:
    """Read the ``nba_v1`` features and the identity lookup from a Feast SQLite store.

    Build it once from an open ``FeatureStore`` (for the registry and config); it then
    reads the SQLite file directly. Thread-safe: one connection per thread.
    """

    def __init__(self, store: Any, feature_names: Sequence[str], service: str = "nba_v1") -> None:
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
        rt_sources = {src: name for name, src in REQUEST_TIME_FEATURES.items()}
        for vi, (_, names) in enumerate(views):
            for n in names:
                if n in col:
                    self._col[(vi, n)] = col[n]
            for src in rt_sources:
                # the on-demand view reads its sources whether or not they are served
                self._src[(vi, src)] = src
        self._rt = [
            (col[name], src)
            for name, src in REQUEST_TIME_FEATURES.items()
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

    # --- plumbing ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.exists():
                raise FileNotFoundError(f"Feast SQLite online store not found: {self.path}")
            # Autocommit: no read transaction stays open, so rows Feast commits are seen
            # by the very next query.
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
        return conn

    def _decode(self, blob: bytes) -> float:
        v = self._cache.get(blob)
        if v is None:
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
        from feast.protos.feast.types.Value_pb2 import Value

        key = _entity_key("identifier", identifier_key, self.version)
        row = self._conn().execute(self._identity_sql, (key,)).fetchone()
        if row is None:
            return None
        proto = Value()
        proto.ParseFromString(row[0])
        return proto.string_val or None

    def features(self, customer_ids: Sequence[str], request_ts: float) -> np.ndarray:
        """Features in ``feature_names`` order; equal to ``online_features`` of the SDK."""
        out = np.full((len(customer_ids), len(self.names)), np.nan)
        conn = self._conn()
        col, src, decode = self._col, self._src, self._decode
        for i, cid in enumerate(customer_ids):
            key = _entity_key("customer_id", cid, self.version)
            row = out[i]
            ts: dict[str, float] = {}
            for vi, name, blob in conn.execute(self._sql, (key,) * self._n_views):
                j = col.get((vi, name))
                s = src.get((vi, name))
                if j is None and s is None:
                    continue
                v = decode(blob)
                if j is not None:
                    row[j] = v
                if s is not None:
                    ts[s] = v
            if self._rt:
                stamps = np.array([ts.get(s, np.nan) for s in self._rt_src])
                row[self._rt_cols] = days_since(stamps, request_ts)
        return out
