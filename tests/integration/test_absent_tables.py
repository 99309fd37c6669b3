"""Absent optional tables give null features, never invented zeros, end to end: a bank
without online behaviour, a case system or a holdings export (the bank world's exports
with those tables left out of its sources file) builds feature tables whose features of
the absent tables are null, Feast serves them as null (the direct SQLite reader and the
SDK alike), and the training matrix holds NaN there; a table that is present but has no
rows for a customer still gives a real 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from nextbest.core.settings import Settings, get_settings
from nextbest.customers.as_of import resolve_as_of
from nextbest.customers.feature_schema import all_feature_names, model_feature_names, null_features
from nextbest.decisions.catalog import load_catalog
from tests.worlds.bank import write_bank

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ABSENT = ("behaviour_events", "service_cases", "holdings")


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from nextbest.pipeline import build_features, ingest, resolve

    root = tmp_path_factory.mktemp("lean-bank")
    world = write_bank(root / "exports", customers=300)
    spec = yaml.safe_load(world.sources.read_text())
    for table in ABSENT:
        del spec["tables"][table]
    sources = world.sources.with_name("sources-lean.yaml")
    sources.write_text(yaml.safe_dump(spec))
    settings = get_settings(
        home=root / "home",
        sources=sources,
        catalog=world.catalog,
        policy=world.policy,
        snapshot_months=7,
        feature_workers=1,
    )
    ingest(settings)
    resolve(settings)
    build_features(settings)
    return settings


def _null(settings: Settings) -> list[str]:
    return null_features(ABSENT, load_catalog(settings.catalog).terms())


def _latest(settings: Settings) -> pd.DataFrame:
    views = [
        pd.read_parquet(p)
        .sort_values("event_timestamp")
        .drop_duplicates("customer_id", keep="last")
        for p in sorted(settings.features_dir.glob("customer_*.parquet"))
    ]
    out = views[0].set_index("customer_id")
    for v in views[1:]:
        out = out.join(v.set_index("customer_id").drop(columns="event_timestamp"))
    return out


def test_the_features_of_absent_tables_are_null_in_the_tables(lean: Settings) -> None:
    null = _null(lean)
    assert {"open_cases", "config_views_7d", "loan_checks_7d"} <= set(null)
    assert any(f.startswith("holds_") for f in null)
    # complaints are still exported: their features are known, not null
    assert "complaints_90d" not in null and "last_complaint_ts" not in null
    latest = _latest(lean)
    assert latest[null].isna().all().all()
    # present tables: customers without rows there get a real 0
    for feature in ("complaints_90d", "txn_count_30d"):
        col = latest[feature]
        assert col.notna().all() and (col == 0).any() and (col > 0).any(), feature
    assert latest["contacts_email_30d"].notna().all()
    # an integer feature stays an integer column, with nulls
    holds = next(f for f in null if f.startswith("holds_"))
    assert str(pd.read_parquet(lean.features_dir / "customer_holdings.parquet")[holds].dtype) == (
        "Int64"
    )


def test_feast_serves_them_as_null_and_present_zeros_as_zeros(lean: Settings) -> None:
    from nextbest.customers.fast_features import FastOnlineFeatures
    from nextbest.customers.feast_store import feature_store, online_features

    terms = load_catalog(lean.catalog).terms()
    names = all_feature_names(terms)
    latest = _latest(lean)
    ids = list(latest.index[:25])
    store = feature_store(lean)
    now = resolve_as_of(lean).time.timestamp()
    sdk = online_features(store, ids, now, names)
    fast = FastOnlineFeatures(store, names).features(ids, now)
    np.testing.assert_array_equal(np.isnan(sdk), np.isnan(fast))
    col = {n: j for j, n in enumerate(names)}
    for f in _null(lean):
        assert np.isnan(sdk[:, col[f]]).all(), f
    zero = latest.loc[ids, "complaints_90d"].to_numpy() == 0
    assert zero.any()
    np.testing.assert_array_equal(sdk[zero, col["complaints_90d"]], 0.0)


def test_the_training_matrix_holds_nan_for_them(lean: Settings) -> None:
    from nextbest.customers.feast_store import FEATURE_SERVICE, feature_store
    from training.dataset import build_training_set, training_exposures

    terms = load_catalog(lean.catalog).terms()
    features = model_feature_names(terms)
    ts = build_training_set(
        feature_store(lean), training_exposures(lean), features, service=FEATURE_SERVICE
    )
    X = pd.DataFrame(ts.X, columns=features)
    null = [f for f in _null(lean) if f in features]
    assert null, "no model feature comes from the absent tables"
    assert X[null].isna().all().all()
    present = [f for f in features if f not in null and f != "age"]
    assert X[[f for f in present if f.startswith("txn_")]].notna().all().all()
