"""The bulk SQLite materialisation writes exactly what Feast's own materialisation writes:
the same table rows, the same online features through the SDK, the same materialisation
intervals in the registry, and either path on top of the other changes nothing."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nextbest.customers.feast_store import apply, feature_store, lookup_customer, materialize
from nextbest.customers.feature_schema import all_feature_names
from nextbest.customers.normalise import identifier_key
from nextbest.customers.sources.identity_records import load_canonical_records
from tests.conftest import World, demo_terms
from tests.params import SEED

pytestmark = [pytest.mark.slow, pytest.mark.integration]

_COLUMNS = "entity_key, feature_name, value, value_text, vector_value, event_ts, created_ts"


def _home(world: World, root: Path) -> Any:
    from nextbest.core.settings import get_settings

    for sub in ("raw", "unified", "features"):
        shutil.copytree(world.home / sub, root / sub)
    return get_settings(home=root, as_of=world.settings.as_of)


def _tables(settings: Any) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(settings.feast_dir / "online.db")
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            t: conn.execute(
                f'SELECT {_COLUMNS} FROM "{t}" ORDER BY entity_key, feature_name'
            ).fetchall()
            for t in sorted(names)
        }
    finally:
        conn.close()


def _intervals(settings: Any) -> dict[str, list]:
    store = feature_store(settings)
    return {fv.name: fv.materialization_intervals for fv in store.list_feature_views()}


@pytest.fixture(scope="module")
def stores(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """The same world materialised by Feast's local engine and by the bulk engine."""
    feast_home = _home(world, tmp_path_factory.mktemp("feast_engine"))
    bulk_home = _home(world, tmp_path_factory.mktemp("bulk_engine"))
    for settings, bulk in ((feast_home, False), (bulk_home, True)):
        apply(settings, demo_terms())
        materialize(settings, end=settings.as_of, bulk=bulk)
    return feast_home, bulk_home


def test_bulk_rows_are_byte_identical_to_feasts(stores: tuple[Any, Any]) -> None:
    feast_home, bulk_home = stores
    want, got = _tables(feast_home), _tables(bulk_home)
    assert want.keys() == got.keys()
    assert len(want) == 9  # eight customer views (behaviour events too) and the identity lookup
    for table, rows in want.items():
        assert rows, table
        assert got[table] == rows, table


def test_sdk_reads_the_same_features_after_either_path(
    world: World, stores: tuple[Any, Any]
) -> None:
    from nextbest.customers.feast_store import online_features

    feast_home, bulk_home = stores
    ids = pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
    cids = [*ids.drop_duplicates().sample(200, random_state=SEED).tolist(), "no-such-customer"]
    names = all_feature_names(demo_terms())
    ts = world.settings.as_of.timestamp()
    want = online_features(feature_store(feast_home, bulk=False), cids, ts, names)
    got = online_features(feature_store(bulk_home), cids, ts, names)
    same = (want == got) | (np.isnan(want) & np.isnan(got))
    assert same.all()
    assert np.isfinite(got[:-1]).mean() > 0.5  # values are really there

    recs = load_canonical_records(world.settings.raw_dir).dropna(subset=["email"])
    keys = [
        identifier_key("email", e, world.settings.identifier_salt) for e in recs["email"].head(50)
    ]
    fs_a, fs_b = feature_store(feast_home, bulk=False), feature_store(bulk_home)
    looked_up = [lookup_customer(fs_b, k) for k in keys]
    assert looked_up == [lookup_customer(fs_a, k) for k in keys]
    assert any(looked_up)


def test_fast_reader_reads_the_same_features_after_either_path(
    world: World, stores: tuple[Any, Any]
) -> None:
    """The serving path's direct SQLite reader, on Feast's rows and on the bulk rows:
    the same matrix and the same identity lookups."""
    from nextbest.customers.fast_features import FastOnlineFeatures

    feast_home, bulk_home = stores
    ids = pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
    cids = [*ids.drop_duplicates().sample(300, random_state=SEED + 1).tolist(), "nobody"]
    names = all_feature_names(demo_terms())
    ts = world.settings.as_of.timestamp()
    want_reader = FastOnlineFeatures(feature_store(feast_home, bulk=False), names)
    got_reader = FastOnlineFeatures(feature_store(bulk_home), names)
    want, got = want_reader.features(cids, ts), got_reader.features(cids, ts)
    assert ((want == got) | (np.isnan(want) & np.isnan(got))).all()
    assert np.isfinite(got[:-1]).mean() > 0.5
    recs = load_canonical_records(world.settings.raw_dir).dropna(subset=["email"])
    keys = [
        identifier_key("email", e, world.settings.identifier_salt)
        for e in recs["email"].drop_duplicates().head(80)
    ]
    found = [got_reader.lookup(k) for k in keys]
    assert found == [want_reader.lookup(k) for k in keys]
    assert sum(c is not None for c in found) > 40


def test_registry_records_the_same_materialisation_intervals(stores: tuple[Any, Any]) -> None:
    feast_home, bulk_home = stores
    want = _intervals(feast_home)
    assert want == _intervals(bulk_home)
    assert all(len(v) == 1 for v in want.values())


def test_either_path_on_top_of_the_other_changes_nothing(world: World, tmp_path: Path) -> None:
    """Re-materialising upserts: the bulk path over Feast's rows and Feast's over the
    bulk rows leave the same tables, and materialize-incremental still runs."""
    a = _home(world, tmp_path / "a")
    b = _home(world, tmp_path / "b")
    apply(a, demo_terms())
    apply(b, demo_terms())
    materialize(a, end=a.as_of, bulk=False)
    materialize(b, end=b.as_of, bulk=True)
    first = _tables(a)
    materialize(a, end=a.as_of, bulk=True)
    materialize(b, end=b.as_of, bulk=False)
    assert _tables(a) == first
    assert _tables(b) == first
    store = feature_store(b)
    store.materialize_incremental(end_date=b.as_of + timedelta(days=1))
    assert _tables(b) == first
    end = pd.Timestamp(b.as_of + timedelta(days=1))
    end = end.tz_localize("UTC") if end.tzinfo is None else end
    for name, intervals in _intervals(b).items():
        assert max(pd.Timestamp(e) for _, e in intervals) == end, name


def _schema(settings: Any) -> list[tuple]:
    conn = sqlite3.connect(settings.feast_dir / "online.db")
    try:
        return conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()


def test_the_bulk_load_leaves_feasts_tables_and_indexes(stores: tuple[Any, Any]) -> None:
    """The same tables and indexes (names and statements) as Feast's own path, and SQLite
    finds the database and every index intact."""
    feast_home, bulk_home = stores
    want = _schema(feast_home)
    assert sum(1 for t, *_ in want if t == "index") >= 8
    assert _schema(bulk_home) == want
    conn = sqlite3.connect(bulk_home.feast_dir / "online.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def test_a_failed_bulk_load_rolls_back_rows_and_index(tmp_path: Path) -> None:
    from nextbest.customers.feast_bulk import bulk_load

    conn = sqlite3.connect(tmp_path / "t.db")
    conn.execute("CREATE TABLE t (k BLOB, f TEXT, v BLOB, PRIMARY KEY(k, f))")
    conn.execute("CREATE INDEX t_ek ON t (k)")
    conn.commit()
    before = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    with pytest.raises(RuntimeError, match="boom"), bulk_load(conn, "t"):
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(b"a", "x", b"1"), (b"b", "x", b"2")])
        raise RuntimeError("boom")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == before
    with bulk_load(conn, "t"):
        conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(b"a", "x", b"1"), (b"b", "x", b"2")])
    assert conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == before
    assert conn.execute(
        "SELECT count(*) FROM t INDEXED BY t_ek WHERE k = ?", (b"b",)
    ).fetchone() == (1,)
    conn.close()


def test_a_view_failing_after_written_chunks_rolls_back_and_drops_the_cell_tables(
    tmp_path: Path,
) -> None:
    """A failure after some chunks reached SQLite (here: the next chunk has the wrong
    number of features) leaves the online table as it was, its indexes in place and
    no temporary tables behind."""
    import pyarrow as pa
    from feast.value_type import ValueType

    from nextbest.customers.feast_bulk import (
        bulk_load,
        cell_tables,
        encode_chunk,
        entity_keys,
        expand_sql,
        write_chunk,
    )

    conn = sqlite3.connect(tmp_path / "online.db")
    conn.execute(
        'CREATE TABLE "t" (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT, '
        "vector_value BLOB, event_ts timestamp, created_ts timestamp, "
        "PRIMARY KEY(entity_key, feature_name))"
    )
    conn.execute('CREATE INDEX "t_ek" ON "t" (entity_key)')
    conn.commit()
    before = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    ts = pd.Timestamp("2026-11-01")
    table = pa.table({"a": np.arange(50.0), "b": np.arange(50.0) * 2, "ts": [ts] * 50})
    keys = sorted(entity_keys("customer_id", [f"C{i:03d}" for i in range(50)], 3))
    kinds = [("a", ValueType.DOUBLE), ("b", ValueType.DOUBLE)]
    good = encode_chunk(table, keys, kinds, "ts", None)
    bad = encode_chunk(table, keys, kinds[:1], "ts", None)
    with (
        pytest.raises(ValueError, match="features"),
        cell_tables(conn, ["a", "b"]) as features,
        bulk_load(conn, "t"),
    ):
        write_chunk(conn, expand_sql("t"), good, features)
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (100,)
        write_chunk(conn, expand_sql("t"), bad, features)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall() == before
    assert conn.execute("SELECT count(*) FROM temp.sqlite_master").fetchone() == (0,)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
