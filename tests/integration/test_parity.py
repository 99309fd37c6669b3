"""Batch and online decide the same for the same customers and feature snapshot, and
the same event ledger.

The online path reads Feast's online store (materialised up to ``as_of``) through the
service's :class:`~serving.decider.OnlineDecider`; the batch path reads the offline feature
tables as of the same time. Both apply the ledger's state at ``as_of`` with one function
(:func:`nextbest.decisions.ledger_state.apply_ledger`) and call the one engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nextbest.customers.feature_schema import all_feature_names, view_specs
from nextbest.decisions.engine import DecisionContext, decide
from tests.conftest import World, demo_terms

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _untouched(decider, ids: list[str], as_of, without_events: bool = True) -> list[str]:
    """Customers whose online rows no feature build after the snapshot has changed, and
    (``without_events``) who have no event in the ledger (other tests in the session send
    events and rebuild features; those customers legitimately differ from the snapshot)."""
    names = all_feature_names(demo_terms())
    cols = [names.index(v.as_of_feature.name) for v in view_specs(demo_terms())]
    with_events = set(decider.ledger.events_for(ids)) if without_events else set()
    X = decider.features(ids, as_of)
    fresh = np.nan_to_num(X[:, cols]).max(axis=1) <= as_of.timestamp()
    kept = [c for c, ok in zip(ids, fresh, strict=True) if ok and c not in with_events]
    assert len(kept) >= 0.9 * len(ids)
    return kept


@pytest.fixture(scope="module")
def decider(world: World):
    """The online decision path over the world's stores, as the service builds it."""
    from serving.decider import OnlineDecider

    return OnlineDecider(world.settings)


def test_online_and_offline_features_agree_at_the_snapshot(world: World, decider) -> None:
    from nextbest.batch.io import offline_feature_matrix

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
    from nextbest.batch.io import offline_feature_matrix

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


def _sample_ids(world: World) -> list[str]:
    """The customers the champion sample scores."""
    return (
        pd.read_parquet(world.settings.features_dir / "customer_consent.parquet")["customer_id"]
        .drop_duplicates()
        .sample(250, random_state=3)
        .sort_values()
        .tolist()
    )


def _email_marketing(decider) -> set[str]:
    return {
        a.id
        for a in decider.runtime.catalog.actions
        if a.purpose == "marketing" and "email" in a.channels
    }


@pytest.fixture(scope="module")
def ledger_touched(world: World, decider) -> dict[str, dict[str, dict]]:
    """Events appended to the world's ledger (``nextbest.decisions.ledger``), dated before
    ``as_of``, for customers of the champion sample whom the engine offers an e-mail
    marketing action at ``as_of`` without them (decided group, not explored): three
    withdraw e-mail marketing consent, two open a service case, two had the offered action
    delivered by e-mail. Returns, per kind, each customer's decision before the events."""
    from nextbest.batch.io import offline_feature_matrix
    from nextbest.decisions.ledger import validate_event

    s = world.settings
    ids = _untouched(decider, _sample_ids(world), s.as_of)
    ids_arr, X, snapshot = offline_feature_matrix(s.features_dir, ids, s.as_of, demo_terms())
    ctx = DecisionContext(
        channel="email",
        now=s.as_of,
        k=3,
        stock=decider.stock.vector(),
        feature_snapshot_time=snapshot,
    )
    records = decide(X, ids_arr, decider.runtime.plan, ctx).records()
    marketing = _email_marketing(decider)
    offered = [
        r
        for r in records
        if r["chosen_action"] in marketing and r["group"] == "decided" and not r["explored"]
    ]
    assert len(offered) >= 7, "the sample needs customers offered e-mail marketing"
    at = s.as_of.timestamp()
    kinds = {
        "withdrawn": ("consent_changed", {"purpose": "marketing", "channel": "email"}, 3),
        "case": ("service_case_opened", {"case_id": "parity-case"}, 2),
        "contacted": ("contact", {"channel": "email"}, 2),
    }
    out: dict[str, dict[str, dict]] = {}
    for kind, (type_, payload, n) in kinds.items():
        out[kind] = {}
        for r in offered[sum(len(v) for v in out.values()) :][:n]:
            body = dict(payload)
            if kind == "withdrawn":
                body["granted"] = False
            elif kind == "contacted":
                body["action_id"] = r["chosen_action"]
            event = validate_event(
                r["customer_id"],
                type_,
                at - 3600,
                body,
                f"parity-{kind}-{r['customer_id']}",
                vocab=decider.events.vocab,
            )
            decider.ledger.append(event)
            out[kind][r["customer_id"]] = r
    return out


@pytest.fixture(scope="module")
def champion_sample(world: World, ledger_touched, tmp_path_factory: pytest.TempPathFactory):
    """The batch job's output for a sample of customers, scored with the champion loaded
    from the world's MLflow registry (``load_runtime``, as ``nextbest decide-batch`` does), after
    the ledger events of :func:`ledger_touched`."""
    from nextbest.batch.run import decide_customers
    from nextbest.decisions.runtime import load_runtime

    s = world.settings
    runtime = load_runtime(s)
    ids = _sample_ids(world)
    out = tmp_path_factory.mktemp("champion_batch") / "decisions.parquet"
    # chunk_size below the sample: several chunks, each scored in one stacked call.
    settings = s.model_copy(update={"chunk_size": 64})
    summary = decide_customers(settings, "email", s.as_of, out, customer_ids=ids, runtime=runtime)
    return runtime, ids, out, summary


def test_batch_output_with_the_champion_equals_one_customer_at_a_time(
    world: World, decider, champion_sample, ledger_touched
) -> None:
    """Batch (stacked scorer, 2 LightGBM threads, chunks, the ledger read per chunk) gives,
    for every sampled customer, exactly the online decision at the same time: the engine
    deciding that customer alone on the online features with the ledger's state, with the
    registry's model scoring per arm, and the service's own path (``decide_records``:
    identifier, online features, ledger, its scorer)."""
    from nextbest.decisions.runtime import stock_vector
    from nextbest.models.scoring import StackedScorer
    from serving.requests import CustomerRef, DecideRequest

    runtime, ids, out, summary = champion_sample
    s = world.settings
    assert summary.model_version == runtime.plan.model_version
    assert runtime.model_version  # a registered version, not an ad-hoc model
    assert StackedScorer.from_model(runtime.model) is not None  # the stacked path ran
    touched = {c for kind in ledger_touched.values() for c in kind}
    assert summary.ledger_position > 0 and summary.ledger_customers >= len(touched)
    batch = pd.read_parquet(out)
    assert list(batch["customer_id"]) == ids
    compared = _untouched(decider, ids, s.as_of, without_events=False)
    assert touched <= set(compared)
    ctx = DecisionContext(
        channel="email",
        now=s.as_of,
        k=3,
        stock=stock_vector(runtime),
        feature_snapshot_time=s.as_of,
    )
    cols = [c for c in batch.columns if c.startswith("excluded_")]
    rows = batch.set_index("customer_id")
    ranked_rows = 0
    for cid in compared:
        row = rows.loc[cid]
        alone = decide(
            decider.features([cid], s.as_of), np.array([cid], dtype=object), runtime.plan, ctx
        )
        request = DecideRequest(CustomerRef(cid, "customer_id"), "email", 3, {})
        online = decider.decide_records([request], now=s.as_of)[0]
        for one in (alone.records()[0], online):
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
        ranked_rows += bool(online["ranked"])
    assert ranked_rows >= 20  # the model's scores decided a good part of the sample
    assert batch["chosen_action"].nunique() > 2


def test_ledger_events_reach_batch_scoring(champion_sample, ledger_touched, decider) -> None:
    """A customer whose e-mail marketing consent was withdrawn in the ledger gets no e-mail
    marketing action from the batch job (each one excluded for consent), though the same
    features without the ledger offered one; an open case and a delivered contact change
    the batch decision too."""
    _, _, out, _ = champion_sample
    rows = pd.read_parquet(out).set_index("customer_id")
    marketing = _email_marketing(decider)
    ranks = [f"rank_{r}_action" for r in (1, 2, 3)]
    for cid in ledger_touched["withdrawn"]:
        row = rows.loc[cid]
        assert row["chosen_action"] not in marketing
        assert not {row[c] for c in ranks} & marketing
        assert all(row[f"excluded_{a}"] == "NO_CONSENT" for a in marketing), cid
    # a delivered contact starts the action's cooldown (when it has one) and fills the
    # weekly e-mail cap; the lower reason code is the one reported
    expected = {"case": {"CASE_OPEN"}, "contacted": {"COOLDOWN", "CHANNEL_CAP"}}
    for kind, reasons in expected.items():
        for cid, before in ledger_touched[kind].items():
            row = rows.loc[cid]
            assert row["chosen_action"] != before["chosen_action"]
            assert row[f"excluded_{before['chosen_action']}"] in reasons, (kind, cid)


def test_spark_batch_with_the_champion_equals_local(
    world: World, champion_sample, tmp_path
) -> None:
    """The Spark job (plan broadcast with the stacked scorer, real PySpark in local mode,
    the ledger applied per partition) writes exactly the local job's rows for the same
    customers, champion and ledger."""
    from nextbest.batch.run import decide_customers

    runtime, ids, out, summary = champion_sample
    spark = decide_customers(
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
    # the ledger's events are in both: the partitions read the same cut of the ledger
    assert spark.ledger_position == summary.ledger_position > 0
