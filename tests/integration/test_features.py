"""Feast over the unified record: point-in-time joins, leakage refusal, identifier lookup,
and the same features from the SQLite and Redis online stores."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from devtools.process import free_port
from nextbest.customers.feature_schema import all_feature_names, model_feature_names, view_specs
from tests.conftest import World, demo_terms

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_training_rows_never_see_features_from_after_their_exposure(world: World) -> None:
    from nextbest.customers.feast_store import feature_store
    from training.dataset import build_training_set, exposures_entity_df

    s = world.settings
    entity = exposures_entity_df(s.raw_dir, s.unified_dir).head(1500)
    ts = build_training_set(feature_store(s), entity, model_feature_names(demo_terms()))
    frame = ts.frame
    for spec in view_specs(demo_terms()):
        assert (frame[spec.as_of_feature.name].fillna(0) <= frame["request_ts"] + 1e-6).all()
    # Independently: the joined profile row is the latest snapshot at or before exposure.
    table = pd.read_parquet(s.features_dir / "customer_profile.parquet")
    table = table.sort_values("event_timestamp")
    left = frame[["exposure_id", "customer_id", "event_timestamp", "tenure_days"]].sort_values(
        "event_timestamp"
    )
    expected = pd.merge_asof(
        left,
        table[["customer_id", "event_timestamp", "tenure_days"]],
        on="event_timestamp",
        by="customer_id",
        direction="backward",
        suffixes=("", "_exp"),
    )
    np.testing.assert_allclose(expected["tenure_days"], expected["tenure_days_exp"])


def test_a_feature_built_from_the_future_fails_the_build(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nextbest.core.settings import get_settings
    from nextbest.customers.feast_store import apply, feature_store
    from training.dataset import LeakageError, build_training_set, exposures_entity_df

    home = tmp_path / "home"
    for sub in ("raw", "unified", "features"):
        shutil.copytree(world.home / sub, home / sub)
    monkeypatch.setenv("NEXTBEST_HOME", str(home))
    s = get_settings(home=home)
    path = s.features_dir / "customer_behaviour.parquet"
    table = pd.read_parquet(path)
    # A snapshot stamped at its time but computed with 30 days of data from after it.
    table["customer_behaviour_as_of_ts"] = (
        table["event_timestamp"].astype("int64") / 1e6 + 30 * 86_400
    )
    table.to_parquet(path, index=False)
    store = apply(s, demo_terms())
    entity = exposures_entity_df(s.raw_dir, s.unified_dir).head(300)
    with pytest.raises(LeakageError, match="customer_behaviour"):
        build_training_set(store or feature_store(s), entity, model_feature_names(demo_terms()))


def test_every_identifier_type_resolves_to_its_customer(world: World) -> None:
    from nextbest.customers.feast_store import feature_store, lookup_customer
    from nextbest.customers.normalise import identifier_key
    from nextbest.customers.sources.identity_records import load_canonical_records

    s = world.settings
    store = feature_store(s)
    records = load_canonical_records(s.raw_dir).merge(
        pd.read_parquet(s.unified_dir / "identity.parquet")[["record_id", "customer_id"]],
        on="record_id",
    )
    for id_type in ("email", "phone", "crm_id", "loyalty_id", "device_id", "app_account_id"):
        rows = records.dropna(subset=[id_type])
        owners = rows.groupby(rows[id_type])["customer_id"].nunique()
        unique_values = owners.index[owners == 1]
        row = rows.loc[rows[id_type].isin(unique_values)].iloc[0]
        assert (
            lookup_customer(store, identifier_key(id_type, row[id_type], s.identifier_salt))
            == row["customer_id"]
        )
    cid = records["customer_id"].iloc[0]
    assert lookup_customer(store, identifier_key("customer_id", cid, s.identifier_salt)) == cid
    assert (
        lookup_customer(store, identifier_key("email", "nobody@example.invalid", s.identifier_salt))
        is None
    )


@pytest.fixture
def redis_server() -> str:
    """A real ``redis-server`` on a free loopback port, stopped by its process id."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make setup installs it from Debian)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_redis_and_sqlite_online_stores_return_the_same_features(
    world: World, redis_server: str
) -> None:
    from nextbest.core.settings import get_settings
    from nextbest.customers.feast_store import apply, feature_store, materialize, online_features

    sqlite_settings = world.settings
    redis_settings = get_settings(
        home=world.home,
        online_store="redis",
        redis_connection=redis_server,
        as_of=world.settings.as_of,
    )
    apply(redis_settings, demo_terms())
    materialize(redis_settings, end=redis_settings.as_of)
    ids = list(
        pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
        .drop_duplicates()
        .head(50)
    )
    names = all_feature_names(demo_terms())
    now = sqlite_settings.as_of.timestamp()
    a = online_features(feature_store(sqlite_settings), ids, now, names)
    b = online_features(feature_store(redis_settings), ids, now, names)
    assert np.isfinite(a).any()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b))
