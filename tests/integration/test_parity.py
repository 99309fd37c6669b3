"""Batch and online decide the same for the same customers and feature snapshot.

The online path reads Feast's online store (materialised up to ``as_of``) through the
service's :class:`~serving.online.OnlineDecider`; the batch path reads the offline feature
tables as of the same time. Both then call the one engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from customers.feature_schema import all_feature_names, view_specs
from serving.engine import DecisionContext, decide
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _untouched(decider, ids: list[str], as_of) -> list[str]:
    """Customers whose online rows no event has changed since the snapshot (other tests in
    the session push events through the service; those customers legitimately differ)."""
    names = all_feature_names()
    cols = [names.index(v.as_of_feature.name) for v in view_specs()]
    X = decider.features(ids, as_of)
    fresh = np.nan_to_num(X[:, cols]).max(axis=1) <= as_of.timestamp()
    kept = [c for c, ok in zip(ids, fresh, strict=True) if ok]
    assert len(kept) >= 0.9 * len(ids)
    return kept


@pytest.fixture(scope="module")
def decider(world: World):
    """The online decision path over the world's stores, as the service builds it."""
    from serving.online import OnlineDecider

    return OnlineDecider(world.settings)


def test_online_and_offline_features_agree_at_the_snapshot(world: World, decider) -> None:
    from serving.batch import offline_feature_matrix

    s = world.settings
    ids = (
        pd.read_parquet(s.features_dir / "customer_profile.parquet")["customer_id"]
        .drop_duplicates()
        .sort_values()
        .head(200)
        .tolist()
    )
    ids = _untouched(decider, ids, s.as_of)
    batch_ids, X_batch, _ = offline_feature_matrix(s.features_dir, ids, s.as_of)
    order = {c: i for i, c in enumerate(batch_ids)}
    X_batch = X_batch[[order[c] for c in ids]]
    X_online = decider.features(ids, s.as_of)
    assert X_online.shape == X_batch.shape
    np.testing.assert_array_equal(np.isnan(X_online), np.isnan(X_batch))
    np.testing.assert_allclose(np.nan_to_num(X_online), np.nan_to_num(X_batch), rtol=0, atol=1e-9)


def test_batch_and_online_decisions_are_identical(world: World, decider) -> None:
    from serving.batch import offline_feature_matrix

    s = world.settings
    plan = decider.runtime.plan
    ids = (
        pd.read_parquet(s.features_dir / "customer_consent.parquet")["customer_id"]
        .drop_duplicates()
        .sort_values()
        .head(300)
        .tolist()
    )
    ids = _untouched(decider, ids, s.as_of)
    batch_ids, X_batch, snapshot = offline_feature_matrix(s.features_dir, list(ids), s.as_of)
    ctx = DecisionContext(
        channel="email", now=s.as_of, k=3, stock=decider.stock, feature_snapshot_time=snapshot
    )
    batch = decide(X_batch, batch_ids, plan, ctx)
    online_chosen = []
    for cid in batch_ids:
        X_one = decider.features([cid], s.as_of)
        one = decide(X_one, np.array([cid], dtype=object), plan, ctx)
        online_chosen.append((one.chosen_action[0], tuple(one.ranked[0]), tuple(one.codes[0])))
    batch_chosen = [
        (batch.chosen_action[i], tuple(batch.ranked[i]), tuple(batch.codes[i]))
        for i in range(len(batch_ids))
    ]
    assert online_chosen == batch_chosen
    assert len({c[0] for c in batch_chosen}) > 1  # the comparison covers different outcomes
