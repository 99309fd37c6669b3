"""The direct SQLite reader answers exactly as the Feast SDK path does."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from nextbest.customers.fast_features import FastOnlineFeatures
from nextbest.customers.feast_store import feature_store, lookup_customer, online_features
from nextbest.customers.feature_schema import all_feature_names
from nextbest.customers.normalise import identifier_key
from nextbest.customers.sources.identity_records import load_canonical_records
from tests.conftest import World, demo_terms
from tests.params import SEED

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


def _customers(world: World, n: int) -> list[str]:
    ids = pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
    return ids.drop_duplicates().sample(n, random_state=SEED).tolist()


def test_fast_matrix_equals_the_sdk_matrix(world: World) -> None:
    store = feature_store(world.settings)
    names = all_feature_names(demo_terms())
    fast = FastOnlineFeatures(store, names)
    cids = [*_customers(world, 100), "no-such-customer"]
    ts = world.settings.as_of.timestamp()
    sdk = online_features(store, cids, ts, names)
    got = fast.features(cids, ts)
    assert got.shape == sdk.shape
    bad = np.argwhere(~_same(got, sdk))
    assert bad.size == 0, [(cids[i], names[j], sdk[i, j], got[i, j]) for i, j in bad[:5]]
    # the comparison has teeth: values and the request-time features are really there
    assert np.isfinite(got[:-1]).mean() > 0.5
    assert (got[:, names.index("days_since_purchase")] != 0).any()


def test_fast_identity_lookup_equals_the_sdk(world: World) -> None:
    store = feature_store(world.settings)
    fast = FastOnlineFeatures(store, all_feature_names(demo_terms()))
    recs = load_canonical_records(world.settings.raw_dir).dropna(subset=["email"])
    keys = [
        identifier_key("email", e, world.settings.identifier_salt)
        for e in recs["email"].drop_duplicates().head(60)
    ]
    keys.append(
        identifier_key("email", "nobody-at-all@example.invalid", world.settings.identifier_salt)
    )
    sdk = [lookup_customer(store, k) for k in keys]
    assert [fast.lookup(k) for k in keys] == sdk
    assert sum(c is not None for c in sdk) > 30 and sdk[-1] is None


def test_a_pushed_event_is_seen_by_the_fast_path_at_once(world: World) -> None:
    store = feature_store(world.settings)
    names = all_feature_names(demo_terms())
    fast = FastOnlineFeatures(store, names)
    cid = _customers(world, 1)[0]
    ts = world.settings.as_of.timestamp()
    before = fast.features([cid], ts)
    j = names.index("open_cases")
    row = store.get_online_features(
        features=[
            f"customer_service:{n}"
            for n in (
                "open_cases",
                "complaints_90d",
                "last_complaint_ts",
                "customer_service_as_of_ts",
            )
        ],
        entity_rows=[{"customer_id": cid}],
    ).to_dict()
    cols = ("open_cases", "complaints_90d", "last_complaint_ts", "customer_service_as_of_ts")

    def push(values: dict[str, float], at: datetime) -> None:
        df = pd.DataFrame(
            {"customer_id": [cid], "event_timestamp": [pd.Timestamp(at)]}
            | {c: [values[c]] for c in cols}
        )
        df["event_timestamp"] = df["event_timestamp"].astype("datetime64[us, UTC]")
        df["open_cases"] = df["open_cases"].astype("int64")
        df["complaints_90d"] = df["complaints_90d"].astype("int64")
        store.push("customer_service_push", df)

    old = {c: (row[c][0] or 0) for c in cols}
    new_cases = int(old["open_cases"]) + 3
    push(old | {"open_cases": new_cases, "last_complaint_ts": ts - 2 * 86_400}, datetime.now(UTC))
    try:
        after = fast.features([cid], ts)
        assert after[0, j] == new_cases
        assert after[0, names.index("days_since_complaint")] == pytest.approx(2.0)
        assert _same(after, online_features(store, [cid], ts, names)).all()
    finally:  # the session world is shared: put the customer's row back
        push(old, datetime.now(UTC))
    assert _same(fast.features([cid], ts), before).all()


def test_a_batch_reads_each_customer_as_a_call_of_its_own(world: World) -> None:
    names = all_feature_names(demo_terms())
    fast = FastOnlineFeatures(feature_store(world.settings), names)
    cids = _customers(world, 30)
    cids.insert(7, "no-such-customer")  # no rows, between customers that have them
    ts = world.settings.as_of.timestamp()
    batch = fast.features(cids, ts)
    single = np.vstack([fast.features([c], ts) for c in cids])
    assert np.array_equal(batch, single, equal_nan=True)
    from nextbest.customers.feature_schema import NEVER_DAYS

    # the customer without rows still gets the request-time features' "never"
    assert batch[7, names.index("days_since_purchase")] == NEVER_DAYS
    assert np.isfinite(batch[:7]).mean() > 0.5  # the others' values are really there
    assert fast.features([], ts).shape == (0, len(names))
