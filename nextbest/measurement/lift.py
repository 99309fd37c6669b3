"""Lift of the decided group over the holdout, exclusion counts and decision drift.

Lift is a difference in means between decided-group and holdout decisions with a Welch standard
error and a normal 95% interval. The per-action lift compares decisions whose *top-ranked*
action was A in both groups: holdout decisions keep their counterfactual ranked list, so
"decided-group customers the policy wanted to give A" and "holdout customers the policy would
have given A" are comparable groups (an intention-to-treat contrast; exploration makes
the decided side receive A slightly less than always).

All functions take the flat frame of ``nextbest.measurement.attribution.flatten_decisions`` with
``responded`` and ``revenue`` attached by ``attribute_outcomes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from nextbest.core.vocabulary import DECIDED, HOLDOUT

__all__ = [
    "LIFT_COLUMNS",
    "METRICS",
    "Z95",
    "decision_drift",
    "diff_in_means",
    "exclusion_counts",
    "lift_by",
    "lift_tables",
]

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054
#: Outcome columns lift is computed on: response rate and value (revenue) per decision.
METRICS = ("responded", "revenue")
LIFT_COLUMNS = [
    "segment",
    "metric",
    "n_decided",
    "n_holdout",
    "mean_decided",
    "mean_holdout",
    "lift",
    "se",
    "ci_low",
    "ci_high",
]


def diff_in_means(treated: np.ndarray, control: np.ndarray, z: float = Z95) -> dict[str, float]:
    """Mean of ``treated`` minus mean of ``control`` with the Welch (unequal variance) SE.

    Returns ``n_decided, n_holdout, mean_decided, mean_holdout, lift, se, ci_low,
    ci_high``; the SE and interval are NaN when either group has fewer than two rows.
    """
    t = np.asarray(treated, dtype=float)
    c = np.asarray(control, dtype=float)
    mt = float(t.mean()) if len(t) else float("nan")
    mc = float(c.mean()) if len(c) else float("nan")
    if len(t) >= 2 and len(c) >= 2:
        se = float(np.sqrt(t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c)))
    else:
        se = float("nan")
    lift = mt - mc
    return {
        "n_decided": int(len(t)),
        "n_holdout": int(len(c)),
        "mean_decided": mt,
        "mean_holdout": mc,
        "lift": lift,
        "se": se,
        "ci_low": lift - z * se,
        "ci_high": lift + z * se,
    }


def _check(flat: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in flat.columns]
    if missing:
        raise ValueError(f"decisions: missing columns {missing} (attribute outcomes first)")


def lift_by(flat: pd.DataFrame, by: str | None, metric: str) -> pd.DataFrame:
    """Treated-over-holdout lift in ``metric`` overall (``by=None``) or per value of ``by``.

    One row per segment with the fields of :func:`diff_in_means` plus ``segment`` and
    ``metric``; segments are sorted, rows with a missing segment value are left out.
    """
    _check(flat, ["group", metric] + ([by] if by else []))
    groups = flat["group"].to_numpy()
    y = flat[metric].to_numpy(dtype=float)
    if by is None:
        seg = np.full(len(flat), "all", dtype=object)
    else:
        seg = flat[by].to_numpy()
    valid = pd.notna(seg)
    rows = []
    for s in sorted(pd.unique(seg[valid]).tolist(), key=str):
        m = valid & (seg == s)
        rows.append(
            {
                "segment": s if not isinstance(s, np.generic) else s.item(),
                "metric": metric,
                **diff_in_means(y[m & (groups == DECIDED)], y[m & (groups == HOLDOUT)]),
            }
        )
    return pd.DataFrame(rows, columns=LIFT_COLUMNS)


def lift_tables(flat: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Lift overall, per top-ranked action, per channel and per value tier, both metrics.

    Keys: ``overall, action, channel, value_tier``; each table stacks the metrics of
    :data:`METRICS` (column ``metric``). ``value_tier`` is empty when the log has no tier.
    """
    by = {"overall": None, "action": "top_action", "channel": "channel", "value_tier": "value_tier"}
    out: dict[str, pd.DataFrame] = {}
    for key, col in by.items():
        if col is not None and (col not in flat or flat[col].isna().all()):
            out[key] = pd.DataFrame(columns=LIFT_COLUMNS)
            continue
        out[key] = pd.concat([lift_by(flat, col, m) for m in METRICS], ignore_index=True)
    return out


def exclusion_counts(decisions: pd.DataFrame) -> pd.DataFrame:
    """How often each rule (reason code) excluded each action.

    Reads the ``excluded`` lists of the raw log; returns ``action_id, code, count, share``
    where ``share`` is the count over the number of decisions, sorted by count.
    """
    cols = ["action_id", "code", "count", "share"]
    if "excluded" not in decisions or decisions.empty:
        return pd.DataFrame(columns=cols)
    # The engine logs the code under "reason" (with a "sentence"); older records use "code".
    pairs = [
        (e["action_id"], e.get("code") or e.get("reason"))
        for lst in decisions["excluded"].tolist()
        if isinstance(lst, list | np.ndarray)
        for e in lst
    ]
    if not pairs:
        return pd.DataFrame(columns=cols)
    counts = (
        pd.DataFrame(pairs, columns=["action_id", "code"])
        .value_counts()
        .rename("count")
        .reset_index()
    )
    counts["share"] = counts["count"] / len(decisions)
    return counts.sort_values(["count", "action_id", "code"], ascending=[False, True, True])[
        cols
    ].reset_index(drop=True)


def decision_drift(flat: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decisions and scores over time, per UTC day.

    Returns ``(shares, scores)``: ``shares`` has one row per day and one column per chosen
    action with its share of that day's decisions (rows sum to 1); ``scores`` has ``day,
    n, mean_top_score`` (the mean of each decision's best ranked score).
    """
    _check(flat, ["decided_at", "chosen_action", "top_score"])
    day = flat["decided_at"].dt.tz_convert("UTC").dt.floor("D")
    shares = pd.crosstab(day.rename("day"), flat["chosen_action"], normalize="index")
    shares.columns.name = None
    scores = (
        pd.DataFrame({"day": day, "top_score": flat["top_score"].to_numpy(dtype=float)})
        .groupby("day")["top_score"]
        .agg(n="size", mean_top_score="mean")
        .reset_index()
    )
    return shares, scores
