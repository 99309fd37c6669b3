"""Figures for model reports and MLflow: Qini/uplift curves, calibration, importance.

Every function returns a matplotlib ``Figure`` drawn on the Agg backend (no display
needed); the caller saves or logs it and closes it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nextbest.models.evaluation import calibration_table, qini_curve, uplift_curve

__all__ = ["calibration_figure", "importance_figure", "uplift_curves_figure"]


def uplift_curves_figure(
    y: np.ndarray,
    arms: np.ndarray,
    uplift: np.ndarray,
    arm_labels: Sequence[Hashable],
    control: Hashable,
    kind: str = "qini",
) -> Figure:
    """One panel per treatment arm: the Qini (or uplift) curve of the model against the
    random-targeting diagonal, on the rows of that arm and control."""
    if kind not in ("qini", "uplift"):
        raise ValueError(f"kind must be 'qini' or 'uplift', got {kind!r}")
    curve = qini_curve if kind == "qini" else uplift_curve
    y = np.asarray(y, dtype=float)
    arms = np.asarray(arms)
    uplift = np.asarray(uplift, dtype=float).reshape(len(y), -1)
    fig = Figure(figsize=(4.5 * len(arm_labels), 4))
    axes = fig.subplots(1, len(arm_labels), squeeze=False)[0]
    for ax, (j, arm) in zip(axes, enumerate(arm_labels), strict=True):
        m = (arms == arm) | (arms == control)
        t = (arms[m] == arm).astype(int)
        x, v = curve(y[m], uplift[m, j], t)
        ax.plot(x, v, label="model")
        ax.plot([0, x[-1]], [0, v[-1]], linestyle="--", color="grey", label="random")
        ax.set_title(f"{arm} vs {control}")
        ax.set_xlabel("customers targeted")
        ax.set_ylabel("incremental responders" if kind == "qini" else "uplift x targeted")
        ax.legend(loc="best")
    fig.tight_layout()
    return fig


def calibration_figure(
    y: np.ndarray, p: np.ndarray, n_bins: int = 10, title: str = "calibration"
) -> Figure:
    """Reliability curve: observed rate against mean predicted probability per bin."""
    table = calibration_table(y, p, n_bins=n_bins)
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    hi = max(float(table["mean_predicted"].max()), float(table["observed_rate"].max()), 1e-6)
    ax.plot([0, hi], [0, hi], linestyle="--", color="grey", label="perfect")
    ax.plot(table["mean_predicted"], table["observed_rate"], marker="o", label="model")
    ax.set_xlabel("mean predicted")
    ax.set_ylabel("observed rate")
    ax.set_title(title)
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` largest importances (a Series indexed by feature)."""
    imp = importance.sort_values(ascending=False).head(top)[::-1]
    fig = Figure(figsize=(6, 0.3 * len(imp) + 1.2))
    ax = fig.subplots()
    ax.barh(list(map(str, imp.index)), imp.to_numpy())
    ax.set_xlabel("importance (gain)")
    fig.tight_layout()
    return fig
