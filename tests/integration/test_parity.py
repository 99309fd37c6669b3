"""Batch and online decide the same for the same customers and feature snapshot.

The online path reads Feast's online store (materialised up to ``as_of``) through the
service's :class:`~serving.decider.OnlineDecider`; the batch path reads the offline feature
tables as of the same time. Both then call the one engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from customers.feature_schema import all_feature_names, view_specs
from decisions.engine import DecisionContext, decide
from tests.conftest import World, demo_terms

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _untouched(decider, ids: list[str], as_of) -> list[str]:
    """Customers whose online rows no event has changed since the snapshot (other tests in
    the session push events through the service; those customers legitimately differ)."""
    names = all_feature_names(demo_terms())
    cols = [names.index(v.as_of_feature.name) for v in view_specs(demo_terms())]
    X = decider.features(ids, as_of)
    fresh = np.nan_to_num(X[:, cols]).max(axis=1) <= as_of.timestamp()
    kept = [c for c, ok in zip(ids, fresh, strict=True) if ok]
    assert len(kept) >= 0.9 * len(ids)
    return kept


@pytest.fixture(scope="module")
def decider(world: World):
    """The online decision path over the world's stores, as the service builds it."""
    from serving.decider import OnlineDecider

    return OnlineDecider(world.settings)


def test_online_and_offline_features_agree_at_the_snapshot(world: World, decider) -> None:
    from batch.io import offline_feature_matrix

    s = world.settings
    ids = (
        pd.read_parquet(s.features_dir / "customer_profile.parquet")["customer_id"]
        .drop_duplicates()
        .sort_values()
        .head(200)
        .tolist()
    )
    ids = _untouched(decider, ids, s.as_of)
    batch_ids, X_batch, _ = offline_feature_matrix(s.features_dir, ids, s.as_of, demo_terms())
    order = {c: i for i, c in enumerate(batch_ids)}
    X_batch = X_batch[[order[c] for c in ids]]
    X_online = decider.features(ids, s.as_of)
    assert X_online.shape == X_batch.shape
    np.testing.assert_array_equal(np.isnan(X_online), np.isnan(X_batch))
    np.testing.assert_allclose(np.nan_to_num(X_online), np.nan_to_num(X_batch), rtol=0, atol=1e-9)


def test_batch_and_online_decisions_are_identical(world: World, decider) -> None:
    from batch.io import offline_feature_matrix

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
    batch_ids, X_batch, snapshot = offline_feature_matrix(
        s.features_dir, list(ids), s.as_of, demo_terms()
    )
    ctx = DecisionContext(
        channel="email",
        now=s.as_of,
        k=3,
        stock=decider.stock.vector(),
        feature_snapshot_time=snapshot,
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


@pytest.fixture(scope="module")
def champion_sample(world: World, tmp_path_factory: pytest.TempPathFactory):
    """The batch job's output for a sample of customers, scored with the champion loaded
    from the world's MLflow registry (``load_runtime``, as ``nextbest score`` does)."""
    from batch.run import score_customers
    from decisions.runtime import load_runtime

    s = world.settings
    runtime = load_runtime(s)
    ids = (
        pd.read_parquet(s.features_dir / "customer_consent.parquet")["customer_id"]
        .drop_duplicates()
        .sample(250, random_state=3)
        .sort_values()
        .tolist()
    )
    out = tmp_path_factory.mktemp("champion_batch") / "decisions.parquet"
    # chunk_size below the sample: several chunks, each scored in one stacked call.
    settings = s.model_copy(update={"chunk_size": 64})
    summary = score_customers(settings, "email", s.as_of, out, customer_ids=ids, runtime=runtime)
    return runtime, ids, out, summary


def test_batch_output_with_the_champion_equals_one_customer_at_a_time(
    world: World, champion_sample
) -> None:
    """Batch (stacked scorer, 2 LightGBM threads, chunks) gives, for every sampled
    customer, exactly the record of the engine deciding that customer alone with the
    registry's model scoring per arm, and with the online service's scorer."""
    from batch.io import offline_feature_matrix
    from decisions.runtime import stock_vector
    from models.scoring import StackedScorer, stacked_plan

    runtime, ids, out, summary = champion_sample
    s = world.settings
    assert summary.model_version == runtime.plan.model_version
    assert runtime.model_version  # a registered version, not an ad-hoc model
    assert StackedScorer.from_model(runtime.model) is not None  # the stacked path ran
    batch = pd.read_parquet(out)
    assert list(batch["customer_id"]) == ids
    online_plan = stacked_plan(runtime.plan, 1)
    _, X, snapshot = offline_feature_matrix(s.features_dir, ids, s.as_of, demo_terms())
    ctx = DecisionContext(
        channel="email",
        now=s.as_of,
        k=3,
        stock=stock_vector(runtime),
        feature_snapshot_time=snapshot,
    )
    cols = [c for c in batch.columns if c.startswith("excluded_")]
    ranked_rows = 0
    for i, cid in enumerate(ids):
        row = batch.iloc[i]
        cid_arr = np.array([cid], dtype=object)
        for plan in (runtime.plan, online_plan):
            one = decide(X[i : i + 1], cid_arr, plan, ctx).records()[0]
            assert one["chosen_action"] == row["chosen_action"], cid
            assert one["group"] == row["group"] and one["reason"] == row["reason"]
            assert one["propensity"] == row["propensity"]
            assert len(one["ranked"]) == sum(row[f"rank_{r}_action"] is not None for r in (1, 2, 3))
            for r, ranked in enumerate(one["ranked"], start=1):
                assert ranked["action_id"] == row[f"rank_{r}_action"]
                assert ranked["score"] == row[f"rank_{r}_score"]  # bit for bit
            excluded = {e["action_id"]: e["reason"] for e in one["excluded"]}
            got = {c.removeprefix("excluded_"): row[c] for c in cols if row[c] is not None}
            assert got == excluded
        ranked_rows += bool(one["ranked"])
    assert ranked_rows >= 20  # the model's scores decided a good part of the sample
    assert batch["chosen_action"].nunique() > 2


def test_spark_batch_with_the_champion_equals_local(
    world: World, champion_sample, tmp_path
) -> None:
    """The Spark job (plan broadcast with the stacked scorer, real PySpark in local mode)
    writes exactly the local job's rows for the same customers and champion."""
    from batch.run import score_customers

    runtime, ids, out, summary = champion_sample
    spark = score_customers(
        world.settings,
        "email",
        world.settings.as_of,
        tmp_path / "spark",
        customer_ids=ids,
        runtime=runtime,
        engine="spark",
    )
    a = pd.read_parquet(out)
    b = pd.read_parquet(tmp_path / "spark").sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert spark.chosen == summary.chosen and spark.excluded == summary.excluded
    assert spark.model_version == summary.model_version
