"""Canonical identity records from the exports, without ever looking at the truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from nextbest.customers.sources.identity_records import (
    CANONICAL_COLUMNS,
    SOURCE_FILES,
    load_canonical_records,
)
from nextbest.demo.generate import generate
from tests.params import SEED, SMALL_CUSTOMERS


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate(SMALL_CUSTOMERS, SEED, out)
    return out


@pytest.fixture(scope="module")
def canonical(raw: Path) -> pd.DataFrame:
    return load_canonical_records(raw)


def test_columns_follow_the_contract(canonical: pd.DataFrame) -> None:
    assert list(canonical.columns) == [
        "record_id",
        "source",
        "email",
        "phone",
        "crm_id",
        "loyalty_id",
        "app_account_id",
        "device_id",
        "first_name",
        "last_name",
        "date_of_birth",
        "street",
        "city",
        "postcode",
    ]
    assert tuple(canonical.columns) == CANONICAL_COLUMNS
    for col in CANONICAL_COLUMNS:
        values = canonical[col].dropna()
        assert values.map(type).eq(str).all(), col
    assert set(canonical.source) == set(SOURCE_FILES)


def test_one_record_per_identity_record_of_the_truth(raw: Path, canonical: pd.DataFrame) -> None:
    truth = pd.read_parquet(raw / "truth" / "records.parquet")
    assert canonical.record_id.is_unique
    assert set(canonical.record_id) == set(truth.record_id)
    native = canonical.record_id.str.split(":", n=1).str[1]
    id_col = {
        "crm": "crm_id",
        "loyalty": "loyalty_id",
        "app": "app_account_id",
        "web": "device_id",
    }
    for source, col in id_col.items():
        rows = canonical.source == source
        assert (canonical.loc[rows, col] == native[rows]).all(), source


def test_values_are_raw_as_exported(raw: Path, canonical: pd.DataFrame) -> None:
    crm = pd.read_parquet(raw / "crm_accounts.parquet")
    loaded = canonical[canonical.source == "crm"].set_index("crm_id")
    exported = crm.set_index("crm_id").loc[loaded.index]
    for col in ("email", "phone", "first_name", "postcode"):
        pd.testing.assert_series_equal(loaded[col], exported[col], check_names=False)
    assert (exported.email.dropna() != exported.email.dropna().str.strip().str.lower()).any()


def test_web_records_are_the_devices_that_logged_in(raw: Path, canonical: pd.DataFrame) -> None:
    web = canonical[canonical.source == "web"]
    events = pd.read_parquet(raw / "web_events.parquet", columns=["device_id", "app_account_id"])
    logins = events.dropna().drop_duplicates()
    assert logins.device_id.is_unique
    # Every web record is a device that logged in, with the account it logged in with.
    assert web.app_account_id.notna().all()
    linked = web.set_index("device_id").app_account_id
    assert linked.sort_index().equals(logins.set_index("device_id").app_account_id.sort_index())
    # Anonymous cookies (never logged in) exist in the events but are no identity record.
    anonymous = set(events.device_id) - set(logins.device_id)
    assert len(anonymous) > len(web)
    assert anonymous.isdisjoint(set(web.device_id))


def test_loading_never_reads_the_truth(raw: Path, tmp_path: Path) -> None:
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    shutil.rmtree(copy / "truth")
    loaded = load_canonical_records(copy)
    assert len(loaded) == len(load_canonical_records(raw))


def test_missing_export_is_named(raw: Path, tmp_path: Path) -> None:
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    (copy / "loyalty_members.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="loyalty_members.parquet"):
        load_canonical_records(copy)
