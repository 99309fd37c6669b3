"""Reading the decision log and outcomes, and attributing outcomes to decisions.

An outcome (a response or a purchase) belongs to the latest decision for the same
customer that came before it, as long as it falls within the attribution window. The
join is one ``pandas.merge_asof`` by customer, so it stays vectorised for millions of rows.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.core.errors import InputError
from nextbest.core.vocabulary import NO_ACTION, RETIRED_GROUPS
from nextbest.customers.id_map import IdMap

logger = logging.getLogger(__name__)

__all__ = [
    "DECISION_COLUMNS",
    "OUTCOME_COLUMNS",
    "attribute_outcomes",
    "attributed_log",
    "flatten_decisions",
    "read_decisions",
    "read_outcomes",
]

#: Columns every decision record carries (docs/contracts.md, nextbest.decisions.decision_log).
DECISION_COLUMNS = (
    "decision_id",
    "decided_at",
    "customer_id",
    "channel",
    "group",
    "chosen_action",
    "propensity",
    "ranked",
)
OUTCOME_COLUMNS = ("customer_id", "ts", "type", "revenue")


def _utc(values: pd.Series | datetime | str | None) -> pd.Series | pd.Timestamp | None:
    """UTC timestamps from ISO text or datetimes; naive values are read as UTC."""
    if values is None:
        return None
    if isinstance(values, pd.Series):
        return pd.to_datetime(values, utc=True, format="ISO8601")
    t = pd.Timestamp(values)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _read_jsonl_dir(log_dir: Path) -> pd.DataFrame:
    files = sorted(p for p in log_dir.rglob("*") if p.suffix in {".jsonl", ".json"})
    if not files:
        raise FileNotFoundError(f"no decision-log files (*.jsonl) under {log_dir}")
    rows: list[dict] = []
    for path in files:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {lineno}: not valid JSON ({e.msg})") from e
    return pd.DataFrame(rows)


def read_decisions(
    log_dir: str | Path,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    id_map: IdMap | None = None,
) -> pd.DataFrame:
    """The decision records in ``log_dir`` with ``since <= decided_at < until`` (UTC).

    With ``id_map`` each record's ``customer_id`` is the customer its logged id belongs to
    now (a decision logged before a merge joins the merged customer's outcomes); the
    logged id stays in ``logged_customer_id``.

    Uses ``nextbest.decisions.decision_log.read_log`` when that module is installed and falls back
    to reading the JSON-lines files directly, so measurement works on a copied log too.
    """
    log_dir = Path(log_dir)
    if not log_dir.exists():
        raise FileNotFoundError(f"decision log directory {log_dir} does not exist")
    try:
        from nextbest.decisions.decision_log import read_log  # noqa: PLC0415 - optional at import time
    except ImportError:
        read_log = None
    lo, hi = _utc(since), _utc(until)
    if read_log is not None:
        df = read_log(log_dir, lo, hi)
    else:
        df = _read_jsonl_dir(log_dir)
    if df.empty:
        return df
    if "group" in df.columns:  # a log written before ``treatment`` became ``decided``
        df["group"] = df["group"].replace(RETIRED_GROUPS)
    missing = [c for c in DECISION_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"decision log {log_dir}: records lack the fields {missing}")
    df = df.copy()
    df["decided_at"] = _utc(df["decided_at"])
    keep = np.ones(len(df), dtype=bool)
    if lo is not None:
        keep &= (df["decided_at"] >= lo).to_numpy()
    if hi is not None:
        keep &= (df["decided_at"] < hi).to_numpy()
    df = df.loc[keep].reset_index(drop=True)
    if id_map:
        df["logged_customer_id"] = df["customer_id"]
        df["customer_id"] = df["customer_id"].map(id_map.current)
    return df


def read_outcomes(path: str | Path) -> pd.DataFrame:
    """Outcome events ``customer_id, ts, type, revenue`` from parquet, CSV or JSON lines."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"outcomes file {path} does not exist")
    if path.is_dir() or path.suffix == ".parquet":
        df = pd.read_parquet(path)
    elif path.suffix == ".csv":
        df = pd.read_csv(path)
    elif path.suffix in {".jsonl", ".json"}:
        df = pd.read_json(path, lines=True)
    else:
        raise ValueError(f"outcomes file {path}: expected .parquet, .csv or .jsonl")
    missing = [c for c in ("customer_id", "ts") if c not in df.columns]
    if missing:
        raise ValueError(f"outcomes file {path}: missing columns {missing}")
    df = df.copy()
    if "revenue" not in df.columns:
        df["revenue"] = 0.0
    if "type" not in df.columns:
        df["type"] = "response"
    return df


def attribute_outcomes(
    decisions: pd.DataFrame, outcomes: pd.DataFrame, window: timedelta
) -> pd.DataFrame:
    """Attach ``responded`` (0/1) and ``revenue`` to each decision.

    Each outcome goes to the latest decision for its customer with
    ``decided_at <= ts <= decided_at + window``; outcomes with no such decision are
    dropped. A decision with several outcomes has ``responded = 1`` and the sum of their
    revenue. Returns a copy of ``decisions`` (same row order) with the two columns added.
    """
    for name, frame, cols in (
        ("decisions", decisions, ("decision_id", "decided_at", "customer_id")),
        ("outcomes", outcomes, ("customer_id", "ts")),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{name}: missing columns {missing}")
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    out = decisions.copy()
    d = pd.DataFrame(
        {
            "decision_id": decisions["decision_id"].to_numpy(),
            "customer_id": decisions["customer_id"].astype(str).to_numpy(),
            "_t": _utc(decisions["decided_at"]).to_numpy(),
        }
    ).sort_values("_t", kind="stable")
    o = pd.DataFrame(
        {
            "customer_id": outcomes["customer_id"].astype(str).to_numpy(),
            "_t": _utc(outcomes["ts"]).to_numpy(),
            "revenue": (
                outcomes["revenue"].fillna(0.0).to_numpy(dtype=float)
                if "revenue" in outcomes
                else np.zeros(len(outcomes))
            ),
        }
    ).sort_values("_t", kind="stable")
    # Backward search: the latest decision at or before the outcome, within the window.
    joined = pd.merge_asof(
        o,
        d,
        on="_t",
        by="customer_id",
        direction="backward",
        tolerance=pd.Timedelta(window),
        allow_exact_matches=True,
    )
    joined = joined.dropna(subset=["decision_id"])
    agg = joined.groupby("decision_id", sort=False)["revenue"].agg(["size", "sum"])
    n = out["decision_id"].map(agg["size"]).fillna(0).to_numpy()
    out["responded"] = (n > 0).astype(np.int8)
    out["revenue"] = out["decision_id"].map(agg["sum"]).fillna(0.0).to_numpy(dtype=float)
    logger.info(
        "attributed %d of %d outcomes to %d decisions",
        len(joined),
        len(o),
        int((n > 0).sum()),
    )
    return out


def attributed_log(
    log_dir: str | Path,
    outcomes_path: str | Path,
    window: timedelta,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    id_map: IdMap | None = None,
) -> pd.DataFrame:
    """The decisions of ``log_dir`` in the period that name a customer, with the outcomes
    of ``outcomes_path`` attributed (:func:`attribute_outcomes`).

    Raises :class:`~nextbest.core.errors.InputError` when the period holds no decision."""
    decisions = read_decisions(log_dir, since, until, id_map)
    if not decisions.empty:
        decisions = decisions.loc[decisions["customer_id"].notna()].reset_index(drop=True)
    if decisions.empty:
        raise InputError(f"no decisions in {log_dir} for the selected period")
    return attribute_outcomes(decisions, read_outcomes(outcomes_path), window)


def flatten_decisions(decisions: pd.DataFrame) -> pd.DataFrame:
    """One flat row per decision: the log's scalar fields plus the top-ranked action.

    Adds ``top_action`` and ``top_score`` (the first entry of ``ranked``, i.e. what the
    policy would have chosen without exploration; holdout rows keep their counterfactual
    list) and ``value_tier`` (NaN when not logged). ``no_action`` when nothing was ranked.
    """
    ranked = decisions["ranked"].tolist() if "ranked" in decisions else [[]] * len(decisions)
    top_action = np.full(len(ranked), NO_ACTION, dtype=object)
    top_score = np.zeros(len(ranked))
    for i, r in enumerate(ranked):
        # The best score, not the first entry, so an unsorted list still reads right.
        if isinstance(r, list | np.ndarray) and len(r):
            best = max(r, key=lambda e: float(e["score"]))
            top_action[i] = best["action_id"]
            top_score[i] = float(best["score"])
    keep = [
        c
        for c in (*DECISION_COLUMNS, "model_version", "policy_version", "responded", "revenue")
        if c in decisions.columns and c != "ranked"
    ]
    flat = decisions[keep].copy()
    flat["decided_at"] = _utc(flat["decided_at"])
    flat["top_action"] = top_action
    flat["top_score"] = top_score
    flat["value_tier"] = (
        pd.to_numeric(decisions["value_tier"], errors="coerce")
        if "value_tier" in decisions
        else np.nan
    )
    return flat
