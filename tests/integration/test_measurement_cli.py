"""``nextbest report`` and ``nextbest evaluate-policy`` on the session world.

The world's customers are decide in batchd with ``log_decisions=True`` and outcomes are drawn
from ``truth/`` (``nextbest.demo.notebook_support.ensure_demo_measurement``); the commands'
JSON figures are checked against a plain pandas computation of the same quantities made
here from the raw JSON-lines log, and against the truth.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nextbest.cli import app
from nextbest.demo.notebook_support import (
    DemoMeasurement,
    candidate_true_value,
    ensure_demo_measurement,
    truth_expectations,
)
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]

LEVERS = {"email_service_tips": 2.0}


@pytest.fixture(scope="module")
def demo(world: World) -> DemoMeasurement:
    return ensure_demo_measurement(world.settings)


def raw_log(demo: DemoMeasurement) -> pd.DataFrame:
    """The demo period's records read straight from the JSON-lines files."""
    rows = [
        json.loads(line)
        for path in sorted(Path(demo.log_dir).rglob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    df = pd.DataFrame(rows)
    df["decided_at"] = pd.to_datetime(df["decided_at"], utc=True, format="ISO8601")
    keep = (df["decided_at"] >= pd.Timestamp(demo.since)) & (
        df["decided_at"] < pd.Timestamp(demo.until)
    )
    return df.loc[keep].reset_index(drop=True)


def attributed(demo: DemoMeasurement) -> pd.DataFrame:
    """Responded/revenue per decision: each outcome goes to the customer's latest decision
    at or before it within the window (a cross join per customer, not merge_asof)."""
    d = raw_log(demo)
    o = pd.read_parquet(demo.outcomes_path)
    o["ts"] = pd.to_datetime(o["ts"], utc=True)
    o = o.reset_index(names="outcome")
    pairs = o.merge(d[["decision_id", "customer_id", "decided_at"]], on="customer_id")
    lag = pairs["ts"] - pairs["decided_at"]
    pairs = pairs.loc[(lag >= pd.Timedelta(0)) & (lag <= pd.Timedelta(days=demo.window_days))]
    best = pairs.sort_values("decided_at").groupby("outcome").tail(1)
    per = best.groupby("decision_id")["revenue"].agg(["size", "sum"])
    d["responded"] = d["decision_id"].map(per["size"]).notna().astype(float)
    d["revenue"] = d["decision_id"].map(per["sum"]).fillna(0.0)
    return d


def welch(t: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    return t.mean() - c.mean(), np.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c))


def test_report_lift_matches_pandas_and_truth(
    world: World, demo: DemoMeasurement, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    args = ["report", "--out", str(out), "--since", demo.since, "--until", demo.until]
    args += ["--log", str(demo.log_dir), "--outcomes", str(demo.outcomes_path)]
    args += ["--window-days", str(demo.window_days)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.html").stat().st_size > 1000

    d = attributed(demo)
    hold = d["group"].to_numpy() == "holdout"
    assert report["meta"]["n_decisions"] == len(d)
    assert report["meta"]["n_holdout"] == int(hold.sum())
    overall = {r["metric"]: r for r in report["lift"]["overall"]}
    for metric in ("responded", "revenue"):
        y = d[metric].to_numpy(dtype=float)
        lift, se = welch(y[~hold], y[hold])
        assert overall[metric]["lift"] == pytest.approx(lift, rel=1e-9, abs=1e-12)
        assert overall[metric]["se"] == pytest.approx(se, rel=1e-9)
        assert overall[metric]["ci_low"] < lift < overall[metric]["ci_high"]

    # The true effect of what was logged: expected response of the chosen action minus
    # the expected organic response, averaged over treated decisions.
    treated = d.loc[~hold]
    p_chosen, _ = truth_expectations(
        world.settings, treated["customer_id"].tolist(), treated["chosen_action"].tolist()
    )
    p_ctrl, _ = truth_expectations(
        world.settings, treated["customer_id"].tolist(), ["no_action"] * len(treated)
    )
    true_lift = float(np.nanmean(p_chosen - p_ctrl))
    r = overall["responded"]
    assert abs(r["lift"] - true_lift) < 4 * r["se"], (r, true_lift)

    per_channel = {x["segment"]: x for x in report["lift"]["channel"] if x["metric"] == "responded"}
    for channel, g in d.groupby("channel"):
        h = g["group"].to_numpy() == "holdout"
        y = g["responded"].to_numpy(dtype=float)
        assert per_channel[channel]["lift"] == pytest.approx(y[~h].mean() - y[h].mean())


def test_evaluate_policy_matches_pandas_and_truth(
    world: World, demo: DemoMeasurement, tmp_path: Path
) -> None:
    cand = tmp_path / "challenger.yaml"
    cand.write_text("levers:\n" + "".join(f"  {a}: {v}\n" for a, v in LEVERS.items()))
    out = tmp_path / "ope.json"
    args = ["evaluate-policy", "--candidate", str(cand), "--outcomes", str(demo.outcomes_path)]
    args += ["--log", str(demo.log_dir), "--since", demo.since, "--until", demo.until]
    args += ["--window-days", str(demo.window_days), "--json", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    est = {r["estimator"]: r for r in json.loads(out.read_text())}

    d = attributed(demo)
    d = d.loc[d["group"] != "holdout"].reset_index(drop=True)
    # The challenger re-ranks each decision's logged score parts with the new levers.
    choice = []
    for ranked in d["ranked"]:
        best, best_score = "no_action", 0.0
        for e in ranked:
            lever = LEVERS.get(e["action_id"], e["lever"])
            s = ((e["p_treated"] - e["p_control"]) * e["value"] - e["cost"]) * lever
            if s > best_score:
                best, best_score = e["action_id"], s
        choice.append(best)
    choice = np.array(choice, dtype=object)
    assert (choice != d["chosen_action"].to_numpy()).any(), "the challenger changes nothing"
    y = d["revenue"].to_numpy(dtype=float)
    w = (choice == d["chosen_action"].to_numpy()) / d["propensity"].to_numpy(dtype=float)
    assert est["logged"]["value"] == pytest.approx(y.mean())
    assert est["ips"]["value"] == pytest.approx((w * y).mean())
    assert est["snips"]["value"] == pytest.approx((w * y).sum() / w.sum())
    assert est["ips"]["match_rate"] == pytest.approx((w > 0).mean())

    true_value = candidate_true_value(world.settings, d, choice.tolist())
    for name in ("snips", "dr"):
        assert abs(est[name]["value"] - true_value) < 4 * est[name]["se"], (name, est, true_value)
