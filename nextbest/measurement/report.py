"""The lift report: every figure as JSON, the same figures as one self-contained HTML page.

``build_report`` computes the figures (pure pandas/numpy), ``write_report`` renders them
(matplotlib Agg, plots embedded as base64 PNG so the page travels as one file) and
``log_report`` stores both files and the headline metrics in MLflow under the run name
``lift-report``. ``run_report`` chains reading, attribution and the three steps.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nextbest.core.vocabulary import DECIDED
from nextbest.customers.id_map import IdMapFile
from nextbest.measurement.attribution import (
    attribute_outcomes,
    flatten_decisions,
    read_decisions,
    read_outcomes,
)
from nextbest.measurement.lift import decision_drift, exclusion_counts, lift_tables
from nextbest.models.registry import log_files, log_run, tracked_run

if TYPE_CHECKING:
    from nextbest.core.settings import Settings

logger = logging.getLogger(__name__)

__all__ = [
    "RUN_NAME",
    "ReportFiles",
    "build_report",
    "headline_metrics",
    "log_report",
    "run_report",
    "write_report",
]

RUN_NAME = "lift-report"


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written and the MLflow run that holds it (None if not logged)."""

    html: Path
    json: Path
    run_id: str | None = None


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, pd.Timestamp | datetime):
        return v.isoformat()
    return v


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return _jsonable(df.to_dict(orient="records"))


def build_report(
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    window: timedelta,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
) -> dict[str, Any]:
    """Every figure of the lift report as a JSON-ready dict.

    ``decisions`` are raw decision-log records, ``outcomes`` the outcome events. Keys:
    ``meta`` (counts, window, versions), ``lift`` (``overall, action, channel,
    value_tier``: lists of rows with n, means, lift, se and 95% interval per metric),
    ``exclusions`` (per action and reason code), ``drift`` (``shares``: per day and chosen
    action; ``scores``: per day mean top score).
    """
    if decisions.empty:
        raise ValueError("no decisions in the selected period")
    attributed = attribute_outcomes(decisions, outcomes, window)
    flat = flatten_decisions(attributed)
    tables = lift_tables(flat)
    shares, scores = decision_drift(flat)
    shares_long = (
        shares.rename_axis("day")
        .reset_index()
        .melt(id_vars="day", var_name="action_id", value_name="share")
    )
    versions = {
        c: sorted(flat[c].dropna().astype(str).unique().tolist())
        for c in ("model_version", "policy_version")
        if c in flat
    }
    meta = {
        "since": _jsonable(pd.Timestamp(since)) if since is not None else None,
        "until": _jsonable(pd.Timestamp(until)) if until is not None else None,
        "window_days": window / timedelta(days=1),
        "n_decisions": len(flat),
        "n_customers": int(flat["customer_id"].nunique()),
        "n_decided": int((flat["group"] == DECIDED).sum()),
        "n_holdout": int((flat["group"] == "holdout").sum()),
        "n_outcomes": len(outcomes),
        "n_responded": int(flat["responded"].sum()),
        "first_decision": _jsonable(flat["decided_at"].min()),
        "last_decision": _jsonable(flat["decided_at"].max()),
        **versions,
    }
    return {
        "meta": meta,
        "lift": {k: _records(v) for k, v in tables.items()},
        "exclusions": _records(exclusion_counts(decisions)),
        "drift": {"shares": _records(shares_long), "scores": _records(scores)},
    }


def headline_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The overall lifts and counts, flat, for MLflow metrics (NaNs left out)."""
    out: dict[str, float] = {
        "n_decisions": float(report["meta"]["n_decisions"]),
        "n_holdout": float(report["meta"]["n_holdout"]),
    }
    for row in report["lift"]["overall"]:
        m = "response" if row["metric"] == "responded" else "value"
        for key in ("lift", "se", "ci_low", "ci_high", "mean_decided", "mean_holdout"):
            if row[key] is not None:
                out[f"{m}_{key}"] = float(row[key])
    return out


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(report: dict[str, Any]) -> dict[str, str]:
    """The report's figures as base64 PNGs, keyed by section."""
    # lazy: matplotlib is heavy and needed only to draw
    import matplotlib

    matplotlib.use("Agg")
    # lazy: matplotlib is heavy and needed only to draw
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    for key in ("action", "channel", "value_tier"):
        rows = pd.DataFrame(report["lift"][key])
        if rows.empty:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * rows["segment"].nunique() + 1.8))
        for ax, metric, label in zip(
            axes, ("responded", "revenue"), ("response rate", "value per decision"), strict=True
        ):
            r = rows[rows["metric"] == metric].astype({"segment": str})
            lo = (r["lift"] - r["ci_low"]).fillna(0.0)
            hi = (r["ci_high"] - r["lift"]).fillna(0.0)
            ax.errorbar(r["lift"], r["segment"], xerr=[lo, hi], fmt="o", capsize=3)
            ax.axvline(0.0, color="grey", lw=0.8)
            ax.set_title(f"lift in {label} (95% CI)")
        fig.tight_layout()
        out[f"lift_{key}"] = _png(fig)
        plt.close(fig)
    shares = pd.DataFrame(report["drift"]["shares"])
    scores = pd.DataFrame(report["drift"]["scores"])
    if not shares.empty:
        wide = shares.pivot(index="day", columns="action_id", values="share").fillna(0.0)
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
        wide.index = pd.to_datetime(wide.index)
        axes[0].stackplot(wide.index, wide.to_numpy().T, labels=wide.columns)
        axes[0].set_title("share of chosen actions per day")
        axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        axes[1].plot(pd.to_datetime(scores["day"]), scores["mean_top_score"], marker="o")
        axes[1].set_title("mean top score per day")
        for ax in axes:
            ax.tick_params(axis="x", labelrotation=30)
        fig.tight_layout()
        out["drift"] = _png(fig)
        plt.close(fig)
    ex = pd.DataFrame(report["exclusions"])
    if not ex.empty:
        wide = ex.pivot(index="action_id", columns="code", values="count").fillna(0)
        fig, ax = plt.subplots(figsize=(10, 0.4 * len(wide) + 1.8))
        wide.plot.barh(stacked=True, ax=ax)
        ax.set_title("exclusions per action and rule")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        out["exclusions"] = _png(fig)
        plt.close(fig)
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    df = pd.DataFrame(rows)
    return df.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep="", border=0)


def _render_html(report: dict[str, Any], plots: dict[str, str]) -> str:
    def img(key: str) -> str:
        if key not in plots:
            return ""
        return f'<img alt="{key}" src="data:image/png;base64,{plots[key]}">'

    meta = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in report["meta"].items()
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>nextbest lift report</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}</style></head><body>",
        "<h1>Lift report</h1>",
        "<p>Lift is treated minus holdout (difference in means, Welch SE, normal 95% CI). "
        "Per action: decisions whose top-ranked action was that action, in both groups.</p>",
        f"<table>{meta}</table>",
        "<h2>Overall</h2>",
        _table(report["lift"]["overall"]),
    ]
    for key, title in (
        ("action", "Per top-ranked action"),
        ("channel", "Per channel"),
        ("value_tier", "Per value tier"),
    ):
        parts += [f"<h2>{title}</h2>", img(f"lift_{key}"), _table(report["lift"][key])]
    parts += [
        "<h2>Exclusions</h2>",
        img("exclusions"),
        _table(report["exclusions"]),
        "<h2>Drift</h2>",
        img("drift"),
        _table(report["drift"]["scores"]),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(report: dict[str, Any], out_dir: str | Path) -> ReportFiles:
    """Write ``report.json`` (every figure) and ``report.html`` (self-contained) to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(_jsonable(report), indent=2), encoding="utf-8")
    html_path.write_text(_render_html(report, _plots(report)), encoding="utf-8")
    return ReportFiles(html=html_path, json=json_path)


def log_report(files: ReportFiles, report: dict[str, Any], settings: Settings) -> str:
    """Log both report files and the headline metrics to MLflow; returns the run id."""
    meta = report["meta"]
    with tracked_run(settings, RUN_NAME) as run_id:
        log_files([files.html, files.json], "report")
        log_run(
            metrics=headline_metrics(report),
            tags={
                "nextbest.step": "report",
                "since": str(meta.get("since")),
                "until": str(meta.get("until")),
                "window_days": str(meta.get("window_days")),
            },
        )
        return run_id


def run_report(
    settings: Settings,
    out_dir: str | Path,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    log_dir: str | Path | None = None,
    outcomes_path: str | Path | None = None,
    window: timedelta = timedelta(days=14),
    log_to_mlflow: bool = True,
) -> ReportFiles:
    """Read the log and outcomes, build, write and (optionally) log the lift report.

    ``log_dir`` defaults to ``settings.decision_log_dir``; ``outcomes_path`` to
    ``settings.raw_dir / "outcomes.parquet"``.
    """
    log_dir = Path(log_dir) if log_dir else settings.decision_log_dir
    outcomes_path = Path(outcomes_path) if outcomes_path else settings.raw_dir / "outcomes.parquet"
    # Decisions logged under an earlier id of a customer count for the customer now.
    decisions = read_decisions(log_dir, since, until, IdMapFile(settings.root).get())
    outcomes = read_outcomes(outcomes_path)
    report = build_report(decisions, outcomes, window, since, until)
    files = write_report(report, out_dir)
    run_id = log_report(files, report, settings) if log_to_mlflow else None
    logger.info("lift report written to %s (MLflow run %s)", files.html.parent, run_id)
    return ReportFiles(html=files.html, json=files.json, run_id=run_id)
