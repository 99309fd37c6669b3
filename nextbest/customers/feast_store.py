"""The Feast feature store of nextbest, configured from settings.

:mod:`nextbest.customers.feast_definitions` builds the Feast objects; this module builds the
repository config from :class:`~nextbest.core.settings.Settings` (SQLite or Redis online store,
DuckDB offline store), applies the definitions, materialises, pushes events and reads
features online and point-in-time (the training set's join).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest.core.settings import Settings
from nextbest.customers.feast_bulk import ENGINE_TYPE
from nextbest.customers.feast_definitions import FEATURE_SERVICE, build_definitions
from nextbest.customers.feast_import import import_feast
from nextbest.customers.feature_schema import CatalogTerms

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_SERVICE",
    "apply",
    "bound_redis_retries",
    "feature_service",
    "feature_store",
    "features_dir_of",
    "historical_features",
    "lookup_customer",
    "materialize",
    "online_features",
    "push_rows",
    "redis_connection_string",
    "repo_config",
]


def repo_config(settings: Settings, bulk: bool = True) -> Any:
    """A Feast ``RepoConfig`` for the project's repository and the configured stores.

    With ``bulk`` (the default) materialisation runs through
    :class:`nextbest.customers.feast_bulk.BulkSqliteComputeEngine`, which writes SQLite online
    stores in bulk (the same rows) and leaves other stores to Feast's local engine;
    ``bulk=False`` is Feast's local engine throughout.
    """
    import_feast(settings)
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.repo_config import RepoConfig

    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    if settings.online_store == "redis":
        online: dict[str, Any] = {
            "type": "redis",
            "connection_string": redis_connection_string(settings),
        }
    else:
        online = {"type": "sqlite", "path": str(settings.feast_dir / "online.db")}
    return RepoConfig(
        project="nextbest",
        provider="local",
        registry=str(settings.feast_dir / "registry.db"),
        online_store=online,
        offline_store={"type": "duckdb"},
        entity_key_serialization_version=3,
        repo_path=settings.feature_repo,
        batch_engine={"type": ENGINE_TYPE} if bulk else "local",
    )


def redis_connection_string(settings: Settings) -> str:
    """Feast's Redis connection string with socket and connect timeouts of
    ``store_timeout_seconds`` (unless the configured string sets them): without them a hung
    Redis blocks a read for as long as the kernel keeps the connection."""
    conn = settings.redis_connection
    given = {part.split("=", 1)[0].strip() for part in conn.split(",") if "=" in part}
    for option in ("socket_timeout", "socket_connect_timeout"):
        if option not in given:
            conn += f",{option}={settings.store_timeout_seconds:g}"
    return conn


def bound_redis_retries(store: Any) -> None:
    """No retries on the Redis client of ``store`` (a no-op for other stores).

    redis-py retries a timed-out or refused command three times with exponential backoff
    by default, which turns a 1 s socket timeout into ten seconds or more; an online read
    must fail within its timeout instead (the service answers 503 and the caller retries).
    Feast builds its client lazily and offers no setting for this, so the client is built
    here through Feast's own store and given a plain ``Retry`` of none (redis-py's public
    ``set_retry``).
    """
    if getattr(store.config.online_store, "type", "") != "redis":
        return
    # lazy: redis is an optional extra
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    online = store._get_provider().online_store
    client = online._get_client(store.config.online_store)
    client.set_retry(Retry(NoBackoff(), 0))


def feature_store(settings: Settings, bulk: bool = True) -> Any:
    """An open ``FeatureStore`` on the configured registry and stores (``bulk``: see
    :func:`repo_config`); a registry written in another home is first moved to this one
    (:func:`relocate_registry`)."""
    import_feast(settings)
    # lazy: feast loads after import_feast, and only where a store is used
    from feast import FeatureStore

    config = repo_config(settings, bulk=bulk)
    relocate_registry(settings)
    return FeatureStore(config=config)


def relocate_registry(settings: Settings) -> int:
    """Point the file sources of the home's Feast registry at this home; returns the
    paths rewritten (0 when they already point here, or there is no registry).

    Feast records each file source's absolute path at ``feast apply`` (its DuckDB store
    reads a relative path against the working directory, not the repository), so a
    copied or moved home would read, and push into, the first home's feature tables. The
    home that applied them is found from the feature tables' folder; every string in the
    registry under that home, the sources' version history included, is rewritten to this
    home, under a lock and by an atomic replace, so a second process finds nothing to do.
    """
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.protos.feast.core.Registry_pb2 import Registry

    path = settings.feast_dir / "registry.db"
    if not path.exists():
        return 0
    registry = Registry()
    registry.ParseFromString(path.read_bytes())
    if _applied_home(registry, settings) is None:
        return 0  # the usual case: nothing written, no lock taken
    with open(settings.feast_dir / ".registry.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        registry.ParseFromString(path.read_bytes())  # another process may have moved it
        old = _applied_home(registry, settings)
        if old is None:
            return 0
        n = _rewrite_strings(registry, str(old), str(settings.root))
        n += _rewrite_history(registry, str(old), str(settings.root))
        tmp = path.with_name(".registry.db.moving")
        tmp.write_bytes(registry.SerializeToString())
        os.replace(tmp, path)
    log.info("Feast registry moved from %s to %s: %d paths rewritten", old, settings.root, n)
    return n


def _applied_home(registry: Any, settings: Settings) -> Path | None:
    """The home whose feature tables the registry's file sources name, if not this one."""
    for source in registry.data_sources:
        uri = source.file_options.uri
        if uri and Path(uri).parent.name == settings.features_dir.name:
            home = Path(uri).parent.parent
            return None if home == settings.root else home
    return None


def _rewrite_history(registry: Any, old: str, new: str) -> int:
    """:func:`_rewrite_strings` inside the serialised views of the registry's version
    history (kept as bytes, so the walk over fields does not reach them)."""
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.protos.feast.core.FeatureView_pb2 import FeatureView
    from feast.protos.feast.core.OnDemandFeatureView_pb2 import OnDemandFeatureView
    from feast.protos.feast.core.StreamFeatureView_pb2 import StreamFeatureView

    kinds = {
        "feature_view": FeatureView,
        "on_demand_feature_view": OnDemandFeatureView,
        "stream_feature_view": StreamFeatureView,
    }
    n = 0
    for record in registry.feature_view_version_history.records:
        kind = kinds.get(record.feature_view_type)
        if kind is None:
            continue
        view = kind()
        view.ParseFromString(record.feature_view_proto)
        if k := _rewrite_strings(view, old, new):
            record.feature_view_proto = view.SerializeToString()
            n += k
    return n


def _rewrite_strings(message: Any, old: str, new: str) -> int:
    """Replace the prefix ``old`` (a path) by ``new`` in every string of ``message``."""

    def moved(value: str) -> str | None:
        if value == old or value.startswith(old + "/"):
            return new + value[len(old) :]
        return None

    n = 0
    for field, value in message.ListFields():
        repeated = field.is_repeated
        if field.type == field.TYPE_MESSAGE:
            if repeated and field.message_type.GetOptions().map_entry:
                items = list(value.values())
                if items and not hasattr(items[0], "ListFields"):  # a map of scalars
                    for key in list(value):
                        if isinstance(value[key], str) and (m := moved(value[key])) is not None:
                            value[key], n = m, n + 1
                    continue
                for item in items:
                    n += _rewrite_strings(item, old, new)
            elif repeated:
                for item in value:
                    n += _rewrite_strings(item, old, new)
            else:
                n += _rewrite_strings(value, old, new)
        elif field.type == field.TYPE_STRING:
            if repeated:
                for i, item in enumerate(value):
                    if (m := moved(item)) is not None:
                        value[i], n = m, n + 1
            elif (m := moved(value)) is not None:
                setattr(message, field.name, m)
                n += 1
    return n


def apply(settings: Settings, terms: CatalogTerms) -> Any:
    """Register every entity, view, push source and feature service (columns named after
    the catalog ``terms``); returns the store."""
    objects = build_definitions(settings, terms).objects
    unique = {(type(o).__name__, o.name): o for o in objects}
    store = feature_store(settings)
    store.apply(list(unique.values()))
    log.info("applied %d Feast objects", len(unique))
    return store


def materialize(
    settings: Settings, end: datetime, start: datetime | None = None, bulk: bool = True
) -> None:
    """Load the latest feature values up to ``end`` into the online store.

    ``bulk``: see :func:`repo_config`; both paths write the same rows and record the
    same materialisation interval per view in the registry.
    """
    store = feature_store(settings, bulk=bulk)
    start = start or datetime(2000, 1, 1)
    store.materialize(start_date=start, end_date=end)


def online_features(
    store: Any,
    customer_ids: Sequence[str],
    request_ts: float,
    feature_names: Sequence[str],
    service: str = FEATURE_SERVICE,
) -> np.ndarray:
    """Features of ``customer_ids`` from the online store as a float matrix.

    Columns follow ``feature_names``; absent values are NaN (the engine treats a NaN
    consent or rule feature as "not allowed").
    """
    fs = store.get_feature_service(service)
    resp = store.get_online_features(
        features=fs,
        entity_rows=[{"customer_id": c, "request_ts": float(request_ts)} for c in customer_ids],
    ).to_dict()
    out = np.full((len(customer_ids), len(feature_names)), np.nan)
    for j, name in enumerate(feature_names):
        col = resp.get(name)
        if col is not None:
            out[:, j] = [np.nan if v is None else float(v) for v in col]
    return out


def feature_service(store: Any, service: str = FEATURE_SERVICE) -> Any:
    """The feature service ``service`` from the store's registry (Feast's own not-found
    errors when it was never applied)."""
    return store.get_feature_service(service)


def historical_features(
    store: Any,
    entity_df: pd.DataFrame,
    service: str = FEATURE_SERVICE,
    chunk_rows: int | None = None,
) -> pd.DataFrame:
    """The feature service's features joined point-in-time to ``entity_df`` (its
    ``customer_id`` and ``event_timestamp``), from the offline store.

    The join runs on ``chunk_rows`` rows at a time (``None``: all at once); each row
    depends only on its own customer and time, so the rows are the same either way.
    """
    fs = feature_service(store, service)
    step = max(len(entity_df) if not chunk_rows else int(chunk_rows), 1)
    frames = [
        store.get_historical_features(entity_df=entity_df.iloc[i : i + step], features=fs).to_df()
        for i in range(0, max(len(entity_df), 1), step)
    ]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def lookup_customer(store: Any, identifier_key: str) -> str | None:
    """The customer an identifier key belongs to, or None."""
    resp = store.get_online_features(
        features=["identity_lookup:customer_id"], entity_rows=[{"identifier": identifier_key}]
    ).to_dict()
    value = resp.get("customer_id", [None])[0]
    return value or None


def push_rows(store: Any, view: str, rows: pd.DataFrame, offline: bool = True) -> None:
    """Push whole feature rows of ``view`` online (and to the offline store)."""
    # lazy: feast loads after import_feast, and only where a store is used
    from feast.data_source import PushMode

    to = PushMode.ONLINE_AND_OFFLINE if offline else PushMode.ONLINE
    store.push(f"{view}_push", rows, to=to)


def features_dir_of(settings: Settings) -> Path:
    """Where the feature tables Feast reads are written."""
    return settings.features_dir
