"""Uplift models on any experiment export: ``nextbest uplift fit`` and ``uplift predict``.

The input is a CSV or parquet file with one row per customer: a treatment column (the
arm each customer was randomised to, with a named control value), an outcome column
(binary response or continuous amount), optionally a value column (for example revenue,
modelled as a second, continuous outcome) and feature columns (numeric or strings; strings
are treated as categories). ``fit`` selects a learner on a validation split, refits it on
all rows and saves it with a JSON manifest; ``predict`` scores a file with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from models.learners import SLearner, TLearner, XLearner, select_learner

__all__ = ["FitSummary", "fit_uplift", "predict_uplift", "read_table"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
VALIDATION_SIZE = 0.25


@dataclass(frozen=True)
class FitSummary:
    """What ``fit_uplift`` chose and measured."""

    model_dir: Path
    learner: str
    arms: list[str]
    control: str
    rows: int
    selection: pd.DataFrame


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a CSV or parquet file (chosen by suffix) with a clear error otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")


def _candidates(control: str, seed: int) -> dict[str, Any]:
    common: dict[str, Any] = {"control": control, "random_state": seed}
    small = {"num_leaves": 7, "min_child_samples": 50, "n_estimators": 300, "learning_rate": 0.03}
    return {
        "t_learner": TLearner(**common),
        "s_learner": SLearner(**common),
        "s_learner_small": SLearner(**common, **small),
        "x_learner": XLearner(**common),
    }


def _prepare_features(df: pd.DataFrame, features: Sequence[str], source: str) -> pd.DataFrame:
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing feature columns {missing}")
    X = df[list(features)].copy()
    for c in X.columns:
        if X[c].dtype == object or pd.api.types.is_string_dtype(X[c].dtype):
            X[c] = X[c].astype("string").astype(object)
    return X


def fit_uplift(
    data: Path | str,
    treatment: str,
    control: str,
    outcome: str,
    model_out: Path | str,
    value: str | None = None,
    features: Sequence[str] | None = None,
    seed: int = 0,
) -> FitSummary:
    """Select and fit an uplift learner on ``data`` and save it under ``model_out``.

    Features default to every column other than treatment, outcome and value. Selection
    uses a stratified validation split (IPS value of the uplift policy with the observed
    arm shares as propensities, Qini tie-break); the winner is refitted on all rows. With
    ``value``, a second learner of the same kind models that continuous column.
    """
    df = read_table(data)
    source = str(data)
    for role, col in (("treatment", treatment), ("outcome", outcome), ("value", value)):
        if col is not None and col not in df.columns:
            raise ValueError(
                f"{source}: {role} column {col!r} not found; columns: {list(df.columns)}"
            )
    t = df[treatment].astype(str).to_numpy()
    arms = sorted(set(t.tolist()))
    if str(control) not in arms:
        raise ValueError(
            f"{source}: control value {control!r} not found in column {treatment!r}; values: {arms}"
        )
    if len(arms) < 2:
        raise ValueError(
            f"{source}: column {treatment!r} holds a single arm {arms}; "
            "uplift needs a control and at least one treatment arm"
        )
    if df[outcome].isna().any():
        raise ValueError(f"{source}: outcome column {outcome!r} has missing values")
    excluded = {treatment, outcome, *([value] if value else [])}
    feats = list(features) if features else [c for c in df.columns if c not in excluded]
    if not feats:
        raise ValueError(f"{source}: no feature columns left")
    X = _prepare_features(df, feats, source)
    y = df[outcome].to_numpy(dtype=float)
    shares = {a: float(np.mean(t == a)) for a in arms}
    strat = pd.Series(t) + "|" + pd.Series(y > np.median(y)).astype(str)
    if strat.value_counts().min() < 2:
        strat = pd.Series(t)
    idx_fit, idx_val = train_test_split(
        np.arange(len(df)), test_size=VALIDATION_SIZE, random_state=seed, stratify=strat
    )
    candidates = _candidates(str(control), seed)
    name, _, table = select_learner(
        candidates,
        X.iloc[idx_fit],
        t[idx_fit],
        y[idx_fit],
        X.iloc[idx_val],
        t[idx_val],
        y[idx_val],
        control=str(control),
        design_propensity=shares,
    )
    model = clone(candidates[name]).fit(X, t, y)
    value_model = None
    if value is not None:
        v = df[value].fillna(0.0).to_numpy(dtype=float)
        value_model = clone(candidates[name]).set_params(outcome="continuous").fit(X, t, v)
    out = Path(model_out)
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump({"outcome": model, "value": value_model}, out / MODEL_FILE)
    selected = table.loc[table["selected"]].iloc[0]
    manifest = {
        "learner": name,
        "reason": selected["reason"],
        "features": feats,
        "dtypes": {c: str(df[c].dtype) for c in feats},
        "categories": {c: [str(v) for v in cats] for c, cats in model.categories_.items()},
        "treatment": treatment,
        "control": str(control),
        "arms": list(model.arms_),
        "outcome": outcome,
        "outcome_kind": "binary" if model.binary_ else "continuous",
        "value": value,
        "arm_shares": shares,
        "rows": len(df),
        "metrics": {
            "validation_ips_value": float(selected["ips_value"]),
            "validation_ips_se": float(selected["ips_se"]),
            "validation_qini_mean": float(selected["qini_mean"]),
            "selection": table.drop(columns=["reason"]).to_dict(orient="records"),
        },
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    logger.info("saved %s (%s) to %s", name, outcome, out)
    return FitSummary(out, name, list(model.arms_), str(control), len(df), table)


def predict_uplift(
    model_dir: Path | str, data: Path | str, out: Path | str, id_column: str | None = None
) -> pd.DataFrame:
    """Score ``data`` with a saved model and write the predictions (CSV or parquet).

    Output columns: the id column (``id_column``, else the input row index as ``row``),
    ``pred_<arm>`` for every arm (control included), ``uplift_<arm>`` for each treatment
    arm, and ``value_<arm>`` per arm when the model was fitted with a value column.
    """
    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {MANIFEST_FILE}; is this a fitted model dir?")
    manifest = json.loads(manifest_path.read_text())
    models = joblib.load(model_dir / MODEL_FILE)
    df = read_table(data)
    X = _prepare_features(df, manifest["features"], str(data))
    model = models["outcome"]
    q = model.predict_outcomes(X)
    result = pd.DataFrame(index=df.index)
    if id_column is not None:
        if id_column not in df.columns:
            raise ValueError(f"{data}: id column {id_column!r} not found")
        result[id_column] = df[id_column].to_numpy()
    else:
        result["row"] = np.arange(len(df))
    for k, arm in enumerate(model.classes_):
        result[f"pred_{arm}"] = q[:, k]
    for k, arm in enumerate(model.arms_, start=1):
        result[f"uplift_{arm}"] = q[:, k] - q[:, 0]
    if models.get("value") is not None:
        qv = models["value"].predict_outcomes(X)
        for k, arm in enumerate(model.classes_):
            result[f"value_{arm}"] = qv[:, k]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        result.to_parquet(out, index=False)
    else:
        result.to_csv(out, index=False)
    return result
