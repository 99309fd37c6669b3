"""`nextbest decide-batch` on the session world: every decision in the output file respects every
rule, checked against the feature tables read independently with pandas."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nextbest.cli import app
from nextbest.commands.decide_batch import RETIRED_SCORE
from nextbest.customers.feature_schema import NEVER_DAYS, request_time_features, view_specs
from nextbest.decisions.catalog import load_catalog
from nextbest.decisions.policy import load_policy
from tests.conftest import demo_terms

pytestmark = pytest.mark.slow


def latest_features(features_dir: Path, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per view, the latest row per customer at or before ``as_of``, joined (pandas)."""
    frames = []
    for spec in view_specs(demo_terms()):
        df = pd.read_parquet(features_dir / f"{spec.name}.parquet")
        df = df[df["event_timestamp"] <= as_of].sort_values("event_timestamp")
        frames.append(df.groupby("customer_id").last()[spec.feature_names])
    feats = pd.concat(frames, axis=1)
    now = as_of.timestamp()
    for name, src in request_time_features(demo_terms()).items():
        ts = feats[src].to_numpy(dtype=float)
        feats[name] = np.where(np.isnan(ts) | (ts <= 0), NEVER_DAYS, (now - ts) / 86_400.0)
    return feats


@pytest.fixture(scope="module")
def scored(world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out_dir = tmp_path_factory.mktemp("scored")
    result = {}
    for channel in ("email", "sms", "web"):
        out = out_dir / f"{channel}.parquet"
        res = CliRunner().invoke(app, ["decide-batch", "--channel", channel, "--out", str(out)])
        assert res.exit_code == 0, res.output
        result[channel] = pd.read_parquet(out)
    return result


@pytest.mark.parametrize("channel", ["email", "sms", "web"])
def test_every_chosen_action_respects_the_rules(world, scored, channel: str) -> None:
    s = world.settings
    catalog = load_catalog(s.catalog)
    policy = load_policy(s.policy, catalog.terms())
    assert not policy.consent.overrides  # the checks below read the default consent rule
    as_of = pd.Timestamp(s.as_of)
    feats = latest_features(s.features_dir, as_of)
    stock = pd.read_parquet(s.raw_dir / "products.parquet").set_index("product_id")["stock"]
    out = scored[channel].set_index("customer_id")
    f = feats.reindex(out.index)
    assert len(out) == len(feats)  # everyone with features is decided
    chosen = out["chosen_action"]
    acted = chosen != "no_action"
    assert acted.any()
    for action in catalog.actions:
        if channel not in action.channels:
            continue
        got = f[chosen == action.id]
        if action.purpose == "marketing":
            assert (got["open_cases"] == 0).all(), action.id
        assert (got[f"consent_{action.purpose}_{channel}"] == 1).all(), action.id
        if action.kind in policy.complaint_block.kinds:
            assert (got["days_since_complaint"] >= policy.complaint_block.days).all(), action.id
        if action.product:
            assert (got[f"holds_{action.product}"] != 1).all(), action.id
            if action.needs_stock:
                assert len(got) == 0 or stock.get(action.product, 0) > 0, action.id
        assert (got[f"days_since_shown_{action.id}"] >= action.cooldown_days).all(), action.id
        for cap in policy.caps:
            if cap.channel in (channel, "all"):
                assert (got[cap.feature()] < cap.max_contacts).all(), (action.id, cap)
        for p in action.eligibility:
            col = got[p.feature]
            ok = {
                "ge": col >= p.value,
                "gt": col > p.value,
                "le": col <= p.value,
                "lt": col < p.value,
                "eq": col == p.value,
                "ne": col != p.value,
            }.get(p.op)
            assert ok is None or ok.all(), (action.id, p)
        # Without consent the action is reported excluded for that reason.
        no_consent = f[f"consent_{action.purpose}_{channel}"].fillna(0) != 1
        assert (out.loc[no_consent, f"excluded_{action.id}"] == "NO_CONSENT").all()


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_holdout_is_the_salted_hash_and_never_treated(world, scored, channel: str) -> None:
    policy = load_policy(world.settings.policy)
    out = scored[channel]
    salt = policy.holdout.salt.encode()
    expect = np.array(
        [
            int.from_bytes(hashlib.sha256(salt + c.encode()).digest()[:8], "big") / 2**64
            < policy.holdout.share
            for c in out["customer_id"]
        ]
    )
    assert np.array_equal(out["group"].to_numpy() == "holdout", expect)
    assert (out.loc[expect, "chosen_action"] == "no_action").all()
    share, n = expect.mean(), len(out)
    assert abs(share - policy.holdout.share) < 4 * np.sqrt(
        policy.holdout.share * (1 - policy.holdout.share) / n
    )


def test_summary_counts_match_the_output(world, scored, tmp_path: Path) -> None:
    import json

    out = tmp_path / "email.parquet"
    # through the retired name, which says so in one line and runs decide-batch
    res = CliRunner().invoke(app, ["score", "--channel", "email", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stderr.splitlines()[0] == RETIRED_SCORE  # the notice, then its own output
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    df = pd.read_parquet(out)
    assert summary["customers"] == len(df)
    assert summary["chosen"] == df["chosen_action"].value_counts().to_dict()
    assert summary["holdout"] == int((df["group"] == "holdout").sum())
    for action, counts in summary["excluded"].items():
        assert counts == df[f"excluded_{action}"].value_counts().to_dict()
