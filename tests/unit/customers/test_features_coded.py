"""The integer-code source loader gives exactly what the string-id path gives.

``build_feature_tables`` maps native ids straight to customer codes
(:func:`customers.features.load_coded_sources`); the string path
(``_encode(load_sources(...))``) is the reference: same customers, same event rows in the
same order, same values, and therefore byte-identical feature tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from customers.features import (
    SourceData,
    _encode,
    _view_rows,
    build_feature_tables,
    load_coded_sources,
    load_sources,
    snapshot_times,
    view_names,
)
from customers.generate import generate
from customers.identity import resolve_generated
from tests.params import SEED, SMALL_CUSTOMERS

AS_OF = datetime(2025, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    home = tmp_path_factory.mktemp("coded")
    raw, unified = home / "raw", home / "unified"
    generate(SMALL_CUSTOMERS, SEED, raw, as_of=AS_OF)
    resolve_generated(raw, unified)
    return raw, unified


def _tables(src: SourceData) -> dict[str, pd.DataFrame]:
    return {
        name: getattr(src, name)
        for name in ("customers", "baskets", "activity", "cases", "holdings", "consent", "contacts")
    }


def test_coded_sources_equal_the_string_path(world: tuple[Path, Path]) -> None:
    raw, unified = world
    strings = load_sources(raw, unified)
    reference = _encode(strings)
    coded, ids = load_coded_sources(raw, unified)
    assert list(ids) == list(strings.customers["customer_id"])
    for name, want in _tables(reference).items():
        got = _tables(coded)[name]
        assert len(want) > 0, name
        pd.testing.assert_frame_equal(
            got.reset_index(drop=True), want.reset_index(drop=True), check_like=False, obj=name
        )
    pd.testing.assert_frame_equal(coded.identifiers, reference.identifiers)


def test_feature_tables_are_byte_identical_to_the_string_path(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    raw, unified = world
    paths = build_feature_tables(raw, unified, tmp_path / "coded", AS_OF, months=3)
    strings = load_sources(raw, unified)
    coded = _encode(strings)
    ids = pd.Index(strings.customers["customer_id"], name="customer_id")
    times = snapshot_times(AS_OF, 3)
    for name in view_names():
        want = pd.concat(
            [_view_rows(coded, ids, t)[name] for t in times], ignore_index=True
        )
        want["event_timestamp"] = want["event_timestamp"].astype("datetime64[us, UTC]")
        got = pq.read_table(paths[name]).to_pandas()
        assert len(got) == len(ids) * len(times), name
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)
