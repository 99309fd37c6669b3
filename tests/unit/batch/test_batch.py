"""Batch scoring on a small real world: point-in-time offline features, parity with
per-customer decisions, stock and customer lists, and (slow) the Spark path."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.batch.io import BatchInputError, offline_feature_matrix, point_in_time_features
from nextbest.batch.run import decide_customers
from nextbest.customers.feature_schema import NEVER_DAYS, all_feature_names, view_specs
from nextbest.decisions.decision_log import read_log
from nextbest.decisions.engine import DecisionContext, decide
from nextbest.decisions.privacy import apply_retention
from nextbest.decisions.runtime import stock_vector
from tests.conftest import demo_terms
from tests.params import SEED
from tests.unit.batch.conftest_batch import BatchWorld, batch_world_fixture  # noqa: F401

MID_MONTH = datetime(2026, 9, 17, 12, 0, tzinfo=UTC)


def test_offline_features_are_the_latest_row_at_or_before_as_of(batch_world: BatchWorld) -> None:
    features_dir = batch_world.settings.features_dir
    ids, X, snapshot = offline_feature_matrix(features_dir, None, MID_MONTH, demo_terms())
    assert snapshot <= MID_MONTH
    assert list(ids) == sorted(ids)
    names = all_feature_names(demo_terms())
    pos = {n: i for i, n in enumerate(names)}
    for spec in view_specs(demo_terms()):
        df = pd.read_parquet(features_dir / f"{spec.name}.parquet")
        df = df[df["event_timestamp"] <= pd.Timestamp(MID_MONTH)]
        latest = df.sort_values("event_timestamp").groupby("customer_id").last()
        want = latest.reindex(ids)[spec.feature_names].to_numpy(dtype=float)
        got = X[:, [pos[c] for c in spec.feature_names]]
        np.testing.assert_array_equal(got, want, err_msg=spec.name)
        # No row was built from data after the decision time.
        lineage = X[:, pos[spec.as_of_feature.name]]
        assert np.nanmax(lineage) <= MID_MONTH.timestamp()
    ts = X[:, pos["last_complaint_ts"]]
    days = X[:, pos["days_since_complaint"]]
    never = np.isnan(ts) | (ts <= 0)
    assert (days[never] == NEVER_DAYS).all()
    np.testing.assert_allclose(days[~never], (MID_MONTH.timestamp() - ts[~never]) / 86_400.0)


def test_customer_list_keeps_its_order_and_unknown_customers_get_no_action(
    batch_world: BatchWorld, tmp_path: Path
) -> None:
    s = batch_world.settings
    all_ids, X_all, _ = offline_feature_matrix(
        s.features_dir, None, batch_world.as_of, demo_terms()
    )
    wanted = [*all_ids[:40][::-1], "C_nobody_here"]
    ids, X, _ = offline_feature_matrix(s.features_dir, wanted, batch_world.as_of, demo_terms())
    assert list(ids) == wanted
    np.testing.assert_array_equal(X[:40], X_all[:40][::-1])
    consent = [i for i, n in enumerate(all_feature_names(demo_terms())) if n.startswith("consent_")]
    assert np.isnan(X[40, consent]).all()
    listing = tmp_path / "ids.txt"
    listing.write_text("customer_id\n" + "\n".join(wanted) + "\n")
    out = tmp_path / "list.parquet"
    summary = decide_customers(
        s, "email", None, out, customer_ids=listing, runtime=batch_world.runtime
    )
    df = pd.read_parquet(out)
    assert summary.customers == len(wanted) and list(df["customer_id"]) == wanted
    assert df["chosen_action"].iloc[-1] == "no_action"
    assert df["excluded_email_phone_upgrade"].iloc[-1] == "NO_CONSENT"


@pytest.mark.parametrize("channel", ["email"])
def test_batch_equals_one_customer_at_a_time(
    batch_world: BatchWorld, tmp_path: Path, channel: str
) -> None:
    s, rt = batch_world.settings, batch_world.runtime
    out = tmp_path / "decisions.parquet"
    summary = decide_customers(s, channel, None, out, runtime=rt, log_decisions=True)
    batch = pd.read_parquet(out)
    assert summary.customers == len(batch) > s.chunk_size  # several chunks were written
    ids, X, snapshot = offline_feature_matrix(s.features_dir, None, batch_world.as_of, demo_terms())
    assert list(batch["customer_id"]) == list(ids)
    ctx = DecisionContext(
        channel=channel,
        now=batch_world.as_of,
        k=3,
        stock=stock_vector(rt),
        feature_snapshot_time=snapshot,
    )
    # Every customer who got an action plus a sample of the rest, one decide() call each.
    rng = np.random.default_rng(0)
    acted = np.flatnonzero(batch["chosen_action"].to_numpy() != "no_action")
    rest = rng.choice(len(ids), size=150, replace=False)
    for i in np.union1d(acted[:150], rest):
        one = decide(X[i : i + 1], ids[i : i + 1], rt.plan, ctx).records()[0]
        row = batch.iloc[i]
        assert one["chosen_action"] == row["chosen_action"], ids[i]
        assert one["group"] == row["group"] and one["reason"] == row["reason"]
        assert one["propensity"] == row["propensity"]
        for r, ranked in enumerate(one["ranked"], start=1):
            assert ranked["action_id"] == row[f"rank_{r}_action"]
            assert ranked["score"] == row[f"rank_{r}_score"]
        for r in range(len(one["ranked"]) + 1, 4):
            assert row[f"rank_{r}_action"] is None
        excluded = {e["action_id"]: e["reason"] for e in one["excluded"]}
        cols = [c for c in batch.columns if c.startswith("excluded_")]
        got = {c.removeprefix("excluded_"): row[c] for c in cols if row[c] is not None}
        assert got == excluded
    # The decision log holds one record per customer with the same choices.
    logged = pd.read_json(next(Path(s.decision_log_dir).glob("*.jsonl")), lines=True)
    logged = logged[logged["channel"] == channel].drop_duplicates("decision_id")
    merged = batch.merge(logged, on="customer_id", suffixes=("", "_log"))
    assert len(merged) == len(batch)
    assert (merged["chosen_action"] == merged["chosen_action_log"]).all()

    # Retention goes by write time too: this batch, decided as of a day older than a
    # 10-day retention allows but written now, outlives it (caps and measurement read it).
    now = datetime.now(UTC)
    assert batch_world.as_of.date() < (now - timedelta(days=10)).date()
    logged_before = read_log(s.decision_log_dir)
    report = apply_retention(
        s.model_copy(update={"retention_decision_log_days": 10}), "test", now=now
    )
    assert report.removed["decision_log"] == 0
    after = read_log(s.decision_log_dir)
    assert len(after) == len(logged_before) and set(batch["customer_id"]) <= set(
        after["customer_id"]
    )


def test_out_of_stock_products_are_never_offered(batch_world: BatchWorld, tmp_path: Path) -> None:
    s, rt = batch_world.settings, batch_world.runtime
    upgrade = next(a for a in rt.catalog.actions if a.id == "email_phone_upgrade")
    assert upgrade.needs_stock
    before = decide_customers(s, "email", None, tmp_path / "a.parquet", runtime=rt)
    assert before.chosen.get(upgrade.id, 0) > 0
    empty = dataclasses.replace(rt, stock={**rt.stock, upgrade.product: 0.0})
    decide_customers(s, "email", None, tmp_path / "b.parquet", runtime=empty)
    df = pd.read_parquet(tmp_path / "b.parquet")
    assert not (df["chosen_action"] == upgrade.id).any()
    assert not (df[[f"rank_{r}_action" for r in (1, 2, 3)]] == upgrade.id).any().any()
    # Those who could have had it are now told it is out of stock.
    was = pd.read_parquet(tmp_path / "a.parquet")
    assert (
        df.loc[was["chosen_action"] == upgrade.id, f"excluded_{upgrade.id}"] == "OUT_OF_STOCK"
    ).all()


def test_bad_input_is_named(batch_world: BatchWorld, tmp_path: Path) -> None:
    s = batch_world.settings
    with pytest.raises(BatchInputError, match="channel 'fax'"):
        decide_customers(s, "fax", None, tmp_path / "x.parquet", runtime=batch_world.runtime)
    with pytest.raises(BatchInputError, match="no feature tables"):
        offline_feature_matrix(tmp_path, None, batch_world.as_of, demo_terms())
    with pytest.raises(BatchInputError, match="customer list not found"):
        decide_customers(
            s,
            "email",
            None,
            tmp_path / "x.parquet",
            customer_ids=tmp_path / "missing.txt",
            runtime=batch_world.runtime,
        )


@pytest.mark.slow
def test_spark_path_equals_local_path(batch_world: BatchWorld, tmp_path: Path) -> None:
    s, rt = batch_world.settings, batch_world.runtime
    local = decide_customers(s, "email", None, tmp_path / "local.parquet", runtime=rt)
    spark = decide_customers(s, "email", None, tmp_path / "spark", runtime=rt, engine="spark")
    a = pd.read_parquet(tmp_path / "local.parquet")
    b = pd.read_parquet(tmp_path / "spark").sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert spark.chosen == local.chosen and spark.excluded == local.excluded


def _shuffled_view(path: Path, spec_name: str, rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A view table in no particular row order, over several small row groups, with rows
    after ``MID_MONTH`` and rows older than the view's TTL; returns it as written."""
    spec = next(v for v in view_specs(demo_terms()) if v.name == spec_name)
    ids = np.array([f"K{i:04d}" for i in rng.integers(0, n, 6 * n)])
    days = rng.integers(-spec.ttl_days - 60, 40, len(ids))  # some beyond TTL, some after
    ts = pd.Timestamp(MID_MONTH) + pd.to_timedelta(days, unit="D")
    df = pd.DataFrame({"customer_id": ids, "event_timestamp": ts.astype("datetime64[us, UTC]")})
    for name in spec.feature_names:
        df[name] = rng.normal(size=len(ids))
    # One customer-time pair per row: the latest row per customer is then unique.
    df = df.drop_duplicates(["customer_id", "event_timestamp"]).reset_index(drop=True)
    df.to_parquet(path, row_group_size=max(len(df) // 7, 1), index=False)
    return df


def test_point_in_time_on_unsorted_multi_row_group_tables_with_ttl(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED)
    frames = {
        name: _shuffled_view(tmp_path / f"{name}.parquet", name, rng, 300)
        for name in ("customer_profile", "customer_service")
    }
    wanted = ["K0003", "K0001", "K0003", "nobody"]  # repeats and an unknown id
    for customer_ids in (None, wanted):
        ids, X = point_in_time_features(tmp_path, customer_ids, MID_MONTH, terms=demo_terms())
        first = 0
        want_ids: list[str] | None = None if customer_ids is None else list(customer_ids)
        for spec in view_specs(demo_terms()):
            width = len(spec.feature_names)
            block = X[:, first : first + width]
            first += width
            if spec.name not in frames:
                assert np.isnan(block).all(), spec.name
                continue
            df = frames[spec.name]
            t = pd.Timestamp(MID_MONTH)
            live = df[
                (df.event_timestamp <= t)
                & (df.event_timestamp > t - pd.Timedelta(days=spec.ttl_days))
            ]
            latest = live.sort_values("event_timestamp").groupby("customer_id").last()
            if want_ids is None:
                # Everyone with a row in any view's window, sorted.
                union = set()
                for name, other in frames.items():
                    ttl = next(v.ttl_days for v in view_specs(demo_terms()) if v.name == name)
                    keep = (other.event_timestamp <= t) & (
                        other.event_timestamp > t - pd.Timedelta(days=ttl)
                    )
                    union |= set(other.loc[keep, "customer_id"])
                want_ids = sorted(union)
            assert ids.to_pylist() == want_ids
            want = latest.reindex(want_ids)[spec.feature_names].to_numpy(dtype=float)
            np.testing.assert_array_equal(block, want, err_msg=spec.name)


def test_the_ledger_cut_is_fixed_at_start_and_an_unreadable_ledger_is_named(
    tmp_path: Path,
) -> None:
    from nextbest.batch.io import ledger_cut
    from nextbest.decisions.ledger import Ledger, validate_event

    assert ledger_cut(tmp_path / "ledger.db") is None  # no ledger: none created
    assert not (tmp_path / "ledger.db").exists()
    ledger = Ledger(tmp_path / "ledger.db")
    assert ledger_cut(tmp_path / "ledger.db") is None  # no event
    ledger.append(validate_event("C1", "complaint", None, {}, "e1"))
    ledger.record_build(1)
    ledger.append(validate_event("C1", "complaint", None, {}, "e2"))
    cut = ledger_cut(tmp_path / "ledger.db")
    assert cut is not None and (cut.upto_seq, cut.watermark) == (2, 1)
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database " * 200)
    with pytest.raises(BatchInputError, match="bad.db"):
        ledger_cut(bad)
