"""The integer-code source loader gives exactly what the string-id path gives.

``build_feature_tables`` maps native ids straight to customer codes
(:func:`customers.features.load_coded_sources`); the string path
(``_encode(load_sources(...))``) is the reference: same customers, same event rows in the
same order, same values, and therefore byte-identical feature tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from customers.features import (
    _SECS,
    SourceData,
    _encode,
    _fmax,
    _last_masked,
    _last_ts,
    _view_rows,
    build_feature_tables,
    load_coded_sources,
    load_sources,
    snapshot_times,
    view_names,
)
from customers.identity import resolve_generated
from demo.generate import generate
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


@pytest.mark.parametrize("workers", [1, 2])
def test_feature_tables_are_byte_identical_to_the_string_path(
    world: tuple[Path, Path], tmp_path: Path, workers: int
) -> None:
    """In this process and in forked snapshot workers: the tables of the string path."""
    raw, unified = world
    out = tmp_path / "coded"
    paths = build_feature_tables(raw, unified, out, AS_OF, months=3, workers=workers)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths.values())
    strings = load_sources(raw, unified)
    coded = _encode(strings)
    ids = pd.Index(strings.customers["customer_id"], name="customer_id")
    times = snapshot_times(AS_OF, 3)
    for name in view_names():
        want = pd.concat([_view_rows(coded, ids, t)[name] for t in times], ignore_index=True)
        want["event_timestamp"] = want["event_timestamp"].astype("datetime64[us, UTC]")
        got = pq.read_table(paths[name]).to_pandas()
        assert len(got) == len(ids) * len(times), name
        assert pq.ParquetFile(paths[name]).num_row_groups == len(times), name
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)


def _events(rng: np.random.Generator, n: int, customers: int) -> pd.DataFrame:
    ts = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 365 * 86_400, n), unit="s"
    )
    df = pd.DataFrame({"customer_id": rng.integers(0, customers, n).astype(np.int64), "ts": ts})
    df["ts" + _SECS] = (df["ts"] - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    return df


@pytest.mark.parametrize("n_a, n_b", [(5_000, 800), (0, 300), (300, 0), (0, 0)])
def test_masked_latest_times_equal_last_ts_of_the_concatenated_rows(n_a: int, n_b: int) -> None:
    rng = np.random.default_rng(SEED)
    a, b = _events(rng, n_a, 500), _events(rng, n_b, 700)
    if n_a:
        a.loc[a.index[::7], "ts" + _SECS] = np.nan  # a NaT's epoch is NaN
    t = pd.Timestamp("2025-07-01", tz="UTC")
    mask = (a["ts"] < t).to_numpy()
    got_a = _last_masked(a, mask)
    pd.testing.assert_series_equal(got_a, _last_ts(a, t))
    both = ["customer_id", "ts", "ts" + _SECS]
    want = _last_ts(pd.concat([a[both], b.loc[b["ts"] < t, both]]), t)
    got = _fmax(got_a, _last_ts(b, t))
    pd.testing.assert_series_equal(got, want)
    if n_a and n_b:
        assert np.isfinite(got).sum() > 400


def test_forked_and_serial_builds_write_identical_files(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    """Snapshot workers change who computes a snapshot, not a byte of any file."""
    raw, unified = world
    serial = build_feature_tables(raw, unified, tmp_path / "serial", AS_OF, months=4, workers=1)
    forked = build_feature_tables(raw, unified, tmp_path / "forked", AS_OF, months=4, workers=2)
    for name, path in serial.items():
        assert path.read_bytes() == forked[name].read_bytes(), name


def test_a_failing_snapshot_worker_fails_the_build_and_leaves_no_scratch(
    world: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import customers.features as features

    raw, unified = world
    real = features._view_rows

    def broken(src: SourceData, ids: pd.Index, t: pd.Timestamp) -> dict[str, pd.DataFrame]:
        if t.month == AS_OF.month:  # the last snapshot, built in a worker
            raise RuntimeError("snapshot failed")
        return real(src, ids, t)

    monkeypatch.setattr(features, "_view_rows", broken)
    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="snapshot failed"):
        build_feature_tables(raw, unified, out, AS_OF, months=3, workers=2)
    assert not (out / ".snapshots").exists()


def test_coded_identifier_table_equals_the_string_one_on_the_hard_cases() -> None:
    """Shared identifiers (dropped), one identifier named twice by the same customer
    (kept once), identifiers that do not normalise, unresolved records, missing values."""
    import pyarrow as pa

    from customers.features import _identifier_table, _identifier_table_coded
    from customers.normalise import identifier_keys

    ids = pd.Index(["C1", "C2", "C3"], dtype=object)
    codes = np.array([0, 1, 0, -1, 2, 1, 2], dtype=np.int64)
    records = pa.table(
        {
            "email": ["a@x.com", "a@x.com", "b@x.com", "c@x.com", None, "B@X.com", "not-an-email"],
            "phone": [None, "+44 20 7946 0000", None, None, "+44 20 7946 0001", None, None],
            "crm_id": ["K1", None, "K1", "K9", "K3", "K2", None],
        }
    )
    want = _identifier_table(
        records.to_pandas().assign(customer_id=[ids[c] if c >= 0 else None for c in codes]),
        identifier_keys,
    )
    got, got_codes = _identifier_table_coded(records, codes, ids, identifier_keys)
    pd.testing.assert_frame_equal(got, want)
    assert list(ids[got_codes]) == list(want["customer_id"])
    # a@x.com is claimed by C1 and C2; b@x.com by C1 and (as B@X.com) by C2
    assert not want["identifier"].str.startswith("email:").any()
    assert want["identifier"].str.startswith("crm_id:").sum() == 3
