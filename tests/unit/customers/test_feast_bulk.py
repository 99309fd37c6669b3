"""The bulk encoders produce Feast's own bytes and texts, value by value, and the SQL
that cuts the cells apart writes exactly those rows."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.type_map import python_values_to_proto_values
from feast.value_type import ValueType

from nextbest.customers.feast_bulk import (
    Cells,
    cell_tables,
    double_cells,
    encode_chunk,
    entity_keys,
    expand_sql,
    unique_cells,
    write_chunk,
)

_DDL = (
    'CREATE TABLE "t" (entity_key BLOB, feature_name TEXT, value BLOB, value_text TEXT, '
    "vector_value BLOB, event_ts timestamp, created_ts timestamp, "
    "PRIMARY KEY(entity_key, feature_name))"
)


def _feast(values: np.ndarray, kind: ValueType) -> tuple[list[bytes], list[str | None]]:
    protos = python_values_to_proto_values(values, kind)
    return [p.SerializeToString() for p in protos], [
        extract_text_and_num(p, False)[0] for p in protos
    ]


def _decoded(cells: Cells) -> tuple[list[bytes], list[str | None]]:
    blobs = [bytes(row[:n]) for row, n in zip(cells.value, cells.value_len, strict=True)]
    texts = [
        None if n < 0 else bytes(row[:n]).decode()
        for row, n in zip(cells.text, cells.text_len, strict=True)
    ]
    return blobs, texts


_DOUBLES = np.array(
    [0.0, -0.0, 1.0, -2.5, 1e-310, 1e300, np.inf, -np.inf, np.nan, 451.10542824074076, 2.0]
)
_INTS = np.array([0, 1, -1, 2**40, -(2**62), 1, 0], dtype=np.int64)
_STRINGS = np.array(["C1", None, "", "é", "C1", "x" * 300], dtype=object)


def test_double_cells_match_feasts_value_protos_and_texts() -> None:
    assert _decoded(double_cells(_DOUBLES)) == _feast(_DOUBLES, ValueType.DOUBLE)


def test_int_and_string_cells_match_feast_including_nulls() -> None:
    assert _decoded(unique_cells(_INTS, ValueType.INT64)) == _feast(_INTS, ValueType.INT64)
    want = _feast(_STRINGS, ValueType.STRING)
    assert _decoded(unique_cells(_STRINGS, ValueType.STRING)) == want
    assert want[0][1] == b""  # None is Feast's null


@pytest.mark.parametrize("value", ["C5640de6091af", "", "x" * 300, "ünï\x00"])
def test_entity_keys_match_serialize_entity_key(value: str) -> None:
    key = EntityKey(join_keys=["customer_id"], entity_values=[Value(string_val=value)])
    want = serialize_entity_key(key, entity_key_serialization_version=3)
    assert entity_keys("customer_id", [value], 3) == [want]


def _rows(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT entity_key, feature_name, value, value_text, typeof(value), typeof(value_text),"
        " event_ts, created_ts FROM t ORDER BY entity_key, feature_name"
    ).fetchall()


def _chunk_rows(table: pa.Table, ids: list[str], kinds: list[tuple[str, ValueType]]) -> list:
    """What Feast's per-row write stores for ``table``: one row per (entity, feature)."""
    keys = entity_keys("customer_id", ids, 3)
    ts = int(pd.Timestamp("2026-11-01").timestamp())
    rows = []
    for name, kind in kinds:
        values = table.column(name).to_numpy(zero_copy_only=False)
        blobs, texts = _feast(values, kind)
        for k, b, x in zip(keys, blobs, texts, strict=True):
            rows.append((k, name, b, x, "blob", "null" if x is None else "text", ts, None))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def test_written_chunks_are_feasts_rows_and_later_chunks_upsert() -> None:
    """Mixed types, widths and nulls through encode_chunk, the cell tables and the
    INSERT ... SELECT: the rows Feast's converters give, typed as Feast stores them; a
    second write of the same entities replaces their values as Feast's upsert does."""
    n = 257
    rng = np.random.default_rng(3)
    ids = [f"C{i:05d}" + "é" * (i % 3) for i in range(n)]
    doubles = rng.normal(size=n)
    doubles[::5] = np.nan
    strings = np.array([None if i % 7 == 0 else "v" * (i % 40) for i in range(n)], dtype=object)
    kinds = [("zeta", ValueType.DOUBLE), ("alpha", ValueType.INT64), ("mid", ValueType.STRING)]
    ts = pd.Timestamp("2026-11-01")

    def table(d: np.ndarray, ints: np.ndarray, s: np.ndarray) -> pa.Table:
        return pa.table({"zeta": d, "alpha": ints, "mid": pa.array(s, pa.string()), "ts": [ts] * n})

    first = table(doubles, rng.integers(-(2**40), 2**40, n), strings)
    second = table(doubles * 2, rng.integers(0, 5, n), strings[::-1].copy())
    conn = sqlite3.connect(":memory:")
    conn.execute(_DDL)
    keys = entity_keys("customer_id", ids, 3)
    order = np.argsort(np.array(keys, dtype=object), kind="stable")
    names = [name for name, _ in kinds]
    for t in (first, second):
        t_sorted = t.take(pa.array(order))
        sorted_keys = [keys[i] for i in order]
        with cell_tables(conn, names) as features:
            for offset in (0, 100, 200):  # several chunks, the last one short
                chunk = encode_chunk(
                    t_sorted.slice(offset, 100),
                    sorted_keys[offset : offset + 100],
                    kinds,
                    "ts",
                    None,
                )
                write_chunk(conn, expand_sql("t"), chunk, features)
            conn.commit()
        assert _rows(conn) == _chunk_rows(t, ids, kinds)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (n * len(kinds),)
    # the cell tables are gone again
    assert conn.execute("SELECT count(*) FROM temp.sqlite_master").fetchone() == (0,)
