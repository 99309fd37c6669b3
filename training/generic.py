"""Uplift models on any experiment export: ``nextbest uplift fit`` and ``uplift predict``.

The input is a CSV or parquet file with one row per customer: a treatment column (the
arm each customer was randomised to, with a named control value), an outcome column
(binary response or continuous amount), optionally a value column (for example revenue,
modelled as a second, continuous outcome), optionally a column with each row's assignment
probability, and feature columns (numeric or strings; strings are treated as categories).
``fit`` selects a learner by cross-fitting on the file's rows (the rule of
:mod:`training.selection`), refits it on all rows and saves it with a JSON manifest;
``predict`` scores a file with it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from nextbest.core.errors import InputError, MissingInputError
from nextbest.models.learners import EnsembleLearner
from training.selection import N_FOLDS, meta_learner_candidates, select_uplift_learner

__all__ = ["FitSummary", "fit_uplift", "predict_uplift", "read_table"]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"


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
        raise MissingInputError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise InputError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")


def _continuous(learner: BaseEstimator) -> BaseEstimator:
    """An unfitted copy of ``learner`` (or of every member of an ensemble) that models a
    continuous outcome."""
    if isinstance(learner, EnsembleLearner):
        return EnsembleLearner([(n, _continuous(e)) for n, e in learner.learners])
    return clone(learner).set_params(outcome="continuous")


def _prepare_features(df: pd.DataFrame, features: Sequence[str], source: str) -> pd.DataFrame:
    missing = [c for c in features if c not in df.columns]
    if missing:
        raise InputError(f"{source}: missing feature columns {missing}")
    X = df[list(features)].copy()
    for c in X.columns:
        if X[c].dtype == object or pd.api.types.is_string_dtype(X[c].dtype):
            X[c] = X[c].astype("string").astype(object)
    return X


def _numbers(df: pd.DataFrame, column: str, source: str, role: str) -> pd.Series:
    """``column`` as floats; text that is not a number fails naming a few of its rows."""
    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    if bad.any():
        rows = ", ".join(str(i + 2) for i in np.flatnonzero(bad.to_numpy())[:5])  # header = 1
        raise InputError(f"{source}: {role} column {column!r} is not numeric (rows {rows})")
    return values


def _fit_inputs(
    df: pd.DataFrame,
    source: str,
    treatment: str,
    control: str,
    outcome: str,
    value: str | None,
    features: Sequence[str] | None,
    propensity: str | None,
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, float], dict[str, float] | np.ndarray]:
    """Check every input of :func:`fit_uplift` before anything is fitted or written:
    arms, outcome, propensity and features; returns ``(t, y, features, arm shares, logged
    propensity)``, the logged propensity being the arm shares when no column gives it."""
    roles = (("treatment", treatment), ("outcome", outcome), ("value", value))
    for role, col in (*roles, ("propensity", propensity)):
        if col is not None and col not in df.columns:
            raise InputError(
                f"{source}: {role} column {col!r} not found; columns: {list(df.columns)}"
            )
    t = df[treatment].astype(str).to_numpy()
    arms = sorted(set(t.tolist()))
    if str(control) not in arms:
        raise InputError(
            f"{source}: control value {control!r} not found in column {treatment!r}; values: {arms}"
        )
    if len(arms) < 2:
        raise InputError(
            f"{source}: column {treatment!r} holds a single arm {arms}; "
            "uplift needs a control and at least one treatment arm"
        )
    few = {a: int(n) for a, n in zip(*np.unique(t, return_counts=True), strict=True) if n < N_FOLDS}
    if few:
        raise InputError(
            f"{source}: cross-fitting needs at least {N_FOLDS} rows per arm; "
            f"too few in column {treatment!r}: {few}"
        )
    if df[outcome].isna().any():
        raise InputError(f"{source}: outcome column {outcome!r} has missing values")
    y = _numbers(df, outcome, source, "outcome").to_numpy(dtype=float)
    if value is not None:
        _numbers(df, value, source, "value")
    excluded = {treatment, outcome, *(c for c in (value, propensity) if c)}
    feats = list(features) if features else [c for c in df.columns if c not in excluded]
    if not feats:
        raise InputError(f"{source}: no feature columns left")
    shares = {a: float(np.mean(t == a)) for a in arms}
    logged: dict[str, float] | np.ndarray = shares
    if propensity is not None:
        logged = _numbers(df, propensity, source, "propensity").to_numpy(dtype=float)
        if not np.all((logged > 0) & (logged <= 1)):
            raise InputError(f"{source}: propensity column {propensity!r} must lie in (0, 1]")
    return t, y, feats, shares, logged


def fit_uplift(
    data: Path | str,
    treatment: str,
    control: str,
    outcome: str,
    model_out: Path | str,
    value: str | None = None,
    features: Sequence[str] | None = None,
    seed: int = 0,
    propensity: str | None = None,
) -> FitSummary:
    """Select and fit an uplift learner on ``data`` and save it under ``model_out``.

    Features default to every column other than treatment, outcome, value and propensity.
    Selection cross-fits the S, T and X learners (and shrunk variants) on the rows of
    ``data`` and applies :data:`training.selection.SELECTION_RULE`; the IPS values weight
    each row by its ``propensity`` column (the probability its arm was assigned) when
    given, else by the observed arm shares (a randomised experiment). The saved model is
    the average of the winner's cross-fitted fold models
    (:data:`training.selection.FOLD_AVERAGE_RULE`). With ``value``, a second learner of
    the same kind, fitted on all rows, models that continuous column (unshrunk: shrinkage
    only changes the policy of the outcome model).
    """
    df = read_table(data)
    source = str(data)
    t, y, feats, shares, logged = _fit_inputs(
        df, source, treatment, control, outcome, value, features, propensity
    )
    X = _prepare_features(df, feats, source)
    candidates = meta_learner_candidates(
        str(control), seed=seed, propensity="model" if propensity else "empirical"
    )
    chosen = select_uplift_learner(
        candidates, X, t, y, control=str(control), propensity=logged, seed=seed, average_folds=True
    )
    name, table, model = chosen.name, chosen.table, chosen.model
    value_model = None
    if value is not None:
        v = _numbers(df, value, source, "value").fillna(0.0).to_numpy(dtype=float)
        value_model = _continuous(chosen.learner).fit(X, t, v)
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
        "propensity": propensity,
        "arm_shares": shares,
        "rows": len(df),
        "metrics": {
            "selection_rule": chosen.rule,
            "cv_ips_value": float(selected["ips_value"]),
            "cv_ips_se": float(selected["ips_se"]),
            "cv_qini_mean": float(selected["qini_mean"]),
            "cv_qini_mean_se": float(selected["qini_mean_se"]),
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
        raise MissingInputError(f"{model_dir}: no {MANIFEST_FILE}; is this a fitted model dir?")
    manifest = json.loads(manifest_path.read_text())
    models = joblib.load(model_dir / MODEL_FILE)
    df = read_table(data)
    X = _prepare_features(df, manifest["features"], str(data))
    model = models["outcome"]
    q = model.predict_outcomes(X)
    result = pd.DataFrame(index=df.index)
    if id_column is not None:
        if id_column not in df.columns:
            raise InputError(f"{data}: id column {id_column!r} not found")
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
