"""The lift report: JSON figures equal a direct numpy computation; HTML is self-contained."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from nextbest.core.settings import get_settings
from nextbest.decisions.decision_log import DecisionLog
from nextbest.measurement.report import build_report, run_report, write_report
from tests.params import SEED, SMALL_CUSTOMERS

START = pd.Timestamp("2024-05-01T00:00:00Z")
WINDOW = timedelta(days=14)


def _log(seed: int, n: int = SMALL_CUSTOMERS) -> dict:
    """One decision per customer over three days; outcomes partly outside the window."""
    rng = np.random.default_rng(seed)
    top = rng.choice(["A", "B"], size=n)
    holdout = rng.random(n) < 0.3
    chosen = np.where(holdout, "no_action", top)
    score = rng.uniform(0.5, 5.0, size=n)
    decided = START + pd.to_timedelta(rng.integers(0, 3 * 86_400, size=n), unit="s")
    channel = rng.choice(["email", "sms"], size=n)
    reason = rng.choice(["NO_CONSENT", "COOLDOWN", None], size=n)
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "decided_at": [t.isoformat() for t in decided],
            "customer_id": [f"C{i:06d}" for i in range(n)],
            "channel": channel,
            "group": np.where(holdout, "holdout", "decided"),
            "chosen_action": chosen,
            "propensity": np.where(holdout, 1.0, 0.95),
            "ranked": [
                [{"action_id": str(a), "score": float(s)}] for a, s in zip(top, score, strict=True)
            ],
            "excluded": [[{"action_id": "C", "reason": r}] if r else [] for r in reason],
            "model_version": "m1",
            "policy_version": "p1",
        }
    )
    p = np.where(holdout, 0.1, np.where(top == "A", 0.2, 0.1))
    hit = rng.random(n) < p
    delay_days = rng.uniform(0, 20, size=n)  # about 30% land after the 14-day window
    revenue = rng.gamma(2.0, 30.0, size=n)
    outcomes = pd.DataFrame(
        {
            "customer_id": decisions["customer_id"][hit].to_numpy(),
            "ts": (decided + pd.to_timedelta(delay_days, unit="D"))[hit],
            "type": "purchase",
            "revenue": revenue[hit],
        }
    )
    counted = hit & (delay_days <= WINDOW.days)
    return {
        "decisions": decisions,
        "outcomes": outcomes,
        "responded": counted.astype(float),
        "revenue": np.where(counted, revenue, 0.0),
        "top": top,
        "holdout": holdout,
        "channel": channel,
        "decided": decided,
        "chosen": chosen,
        "score": score,
        "reason": reason,
    }


def _welch(t: np.ndarray, c: np.ndarray) -> tuple[float, float]:
    return t.mean() - c.mean(), np.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c))


def test_report_json_equals_direct_computation(tmp_path) -> None:
    g = _log(SEED)
    report = build_report(g["decisions"], g["outcomes"], WINDOW)
    files = write_report(report, tmp_path)
    back = json.loads(files.json.read_text())
    rows = {(r["segment"], r["metric"]): r for r in back["lift"]["action"]}
    for action in ("A", "B"):
        for metric in ("responded", "revenue"):
            y, m = g[metric], g["top"] == action
            lift, se = _welch(y[m & ~g["holdout"]], y[m & g["holdout"]])
            assert rows[(action, metric)]["lift"] == pytest.approx(lift, rel=1e-9)
            assert rows[(action, metric)]["se"] == pytest.approx(se, rel=1e-9)
    ch = {(r["segment"], r["metric"]): r for r in back["lift"]["channel"]}
    y, m = g["responded"], g["channel"] == "sms"
    assert ch[("sms", "responded")]["lift"] == pytest.approx(
        _welch(y[m & ~g["holdout"]], y[m & g["holdout"]])[0]
    )
    ex = {(r["action_id"], r["code"]): r["count"] for r in back["exclusions"]}
    assert ex[("C", "NO_CONSENT")] == int((g["reason"] == "NO_CONSENT").sum())
    day = g["decided"].floor("D")
    first = day.min()
    share_a = np.mean(g["chosen"][day == first] == "A")
    shares = {(r["day"][:10], r["action_id"]): r["share"] for r in back["drift"]["shares"]}
    assert shares[(first.isoformat()[:10], "A")] == pytest.approx(share_a)
    scores = {r["day"][:10]: r["mean_top_score"] for r in back["drift"]["scores"]}
    assert scores[first.isoformat()[:10]] == pytest.approx(g["score"][day == first].mean())
    assert back["meta"]["n_decisions"] == len(g["decisions"])
    assert back["meta"]["n_responded"] == int(g["responded"].sum())
    page = files.html.read_text()
    assert page.count("data:image/png;base64,") >= 3
    assert "<script src=" not in page and "http" not in page.split("<body>")[0]


@pytest.mark.slow
def test_run_report_reads_the_log_and_logs_to_mlflow(tmp_path, monkeypatch) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    g = _log(SEED, n=400)
    log_dir = tmp_path / "decisions"
    DecisionLog(log_dir, fsync=False).append(g["decisions"].to_dict(orient="records"))
    outcomes = tmp_path / "outcomes.parquet"
    g["outcomes"].to_parquet(outcomes)
    settings = get_settings(home=tmp_path / "home")
    files = run_report(
        settings,
        tmp_path / "report",
        since="2024-05-01",
        until="2024-05-02",
        log_dir=log_dir,
        outcomes_path=outcomes,
        window=WINDOW,
    )
    data = json.loads(files.json.read_text())
    first_day = int((g["decided"] < pd.Timestamp("2024-05-02", tz="UTC")).sum())
    assert data["meta"]["n_decisions"] == first_day
    run = mlflow.get_run(files.run_id)
    assert run.info.run_name == "lift-report"
    overall = {r["metric"]: r for r in data["lift"]["overall"]}
    assert run.data.metrics["response_lift"] == pytest.approx(overall["responded"]["lift"])
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(files.run_id, "report")}
    assert arts == {"report/report.html", "report/report.json"}
