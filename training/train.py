"""``nextbest train``: fit, evaluate, log, register and gate the decision model.

One plain function per step, chained by :func:`train`: :func:`load_dataset` (exposures ->
training set from Feast, point-in-time and leakage-checked -> split), :func:`fit` (select a
multi-treatment learner by cross-fitting on the training rows, fit the value model),
:func:`evaluate` (held-out randomised data: per-arm response and uplift metrics, policy
values against baselines), :func:`register` (MLflow run with lineage, plots and a model
card -> registered model version) and :func:`promote_version` (the promotion gate).
Every MLflow call goes through :mod:`nextbest.models.registry`. Training reads only
the data a team supplies; the pipeline's separate evaluate step logs regret to the same run.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from nextbest.core.settings import Settings
from nextbest.core.vocabulary import NO_ACTION
from nextbest.customers.feast_store import FEATURE_SERVICE, feature_store
from nextbest.customers.feature_schema import model_feature_names
from nextbest.customers.features import snapshot_range
from nextbest.decisions.catalog import load_catalog
from nextbest.decisions.runtime import load_catalog_and_policy
from nextbest.models import evaluation as ev
from nextbest.models.decision_model import DecisionModel, ValueModel
from nextbest.models.learners import default_candidates
from nextbest.models.ope_estimators import DR, PairedGain, bandit_inputs, paired_gain
from nextbest.models.registry import (
    PromotionDecision,
    log_decision_model,
    log_figure,
    log_run,
    promote,
    register_logged_model,
    tracked_run,
)
from nextbest.models.value import incremental_value
from training import plots
from training.dataset import (
    TrainingSet,
    build_training_set,
    check_exposures_in_snapshots,
    check_windowed_features,
    training_exposures,
)
from training.selection import select_uplift_learner

log = logging.getLogger(__name__)

#: Training rows the learner choice cross-fits at most (a random subset beyond that): the
#: winner is still refitted on every training row, and the choice costs at most K fits
#: of this size per candidate.
SELECTION_MAX_ROWS = 200_000


@dataclass
class HeldOut:
    """A run's held-out rows as a later evaluation needs them: exposure ids, logged arm,
    outcome, assignment probability, and the model's predicted outcomes ``[n, 1 + A]``
    (control first) under its ``arms``."""

    exposure_ids: np.ndarray
    treatment: np.ndarray
    y: np.ndarray
    propensity: np.ndarray
    outcomes: np.ndarray
    arms: list[str]


@dataclass
class TrainResult:
    """What a training run produced."""

    run_id: str
    model_version: str
    alias: str
    reason: str
    learner: str
    policy_value: float
    metrics: dict[str, float]
    held_out: HeldOut


def split(ts: TrainingSet, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices for train / validation / held-out test (60/20/20, stratified by arm)."""
    idx = np.arange(len(ts.frame))
    strat = ts.frame["action_id"].astype(str) + "|" + ts.frame["responded"].astype(str)
    # A stratum too small to be split five ways (a rarely explored arm's responders in a
    # decision log) joins its arm's stratum, and a rare arm joins one "rare" stratum.
    strat = _merge_rare(_merge_rare(strat, ts.frame["action_id"].astype(str)), "rare")
    train, rest = train_test_split(idx, test_size=0.4, random_state=seed, stratify=strat)
    val, test = train_test_split(
        rest, test_size=0.5, random_state=seed, stratify=strat.to_numpy()[rest]
    )
    return np.sort(train), np.sort(val), np.sort(test)


def _merge_rare(strat: pd.Series, coarser: pd.Series | str, least: int = 5) -> pd.Series:
    """``strat`` with the labels held by fewer than ``least`` rows replaced by ``coarser``."""
    counts = strat.map(strat.value_counts())
    return strat.where(counts >= least, coarser)


def _expected_values(
    model: DecisionModel, X: np.ndarray, costs: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per arm: the engine's expected incremental value ``[n, A]`` and the direct-method
    expected net revenue ``[n, 1 + A]`` (control first; control costs nothing)."""
    p0, pt, v = model.predict_arms(X)
    cost = np.array([costs.get(a, 0.0) for a in model.arm_ids])
    v0 = model.predict_control_value(X)
    ev = incremental_value(p0, pt, v, cost, 1.0, v0)
    v0 = np.where(np.isfinite(v0), v0, model.value.fallback_)
    return ev, np.column_stack([p0 * v0, pt * v - cost])


def _policy(model: DecisionModel, ev: np.ndarray) -> np.ndarray:
    best = ev.argmax(axis=1)
    arms = np.asarray(model.arm_ids, dtype=object)
    return np.where(ev[np.arange(len(ev)), best] > 0, arms[best], NO_ACTION)


def policy_value_terms(
    model: DecisionModel, frame: pd.DataFrame, costs: dict[str, float]
) -> np.ndarray:
    """Per-row doubly robust terms of the model's policy's net value (revenue minus
    contact cost) on randomised rows; their mean is :func:`policy_value`."""
    X = frame[model.feature_names].to_numpy(dtype=np.float64)
    ev, q = _expected_values(model, X, costs)
    arms = frame["action_id"].to_numpy()
    arm_cost = np.array([costs.get(a, 0.0) if a != NO_ACTION else 0.0 for a in arms])
    y = frame["revenue"].to_numpy(dtype=np.float64) - arm_cost
    labels = [NO_ACTION, *model.arm_ids]
    action, dist = bandit_inputs(_policy(model, ev), arms, labels)
    return DR().terms(y, action, frame["assignment_probability"].to_numpy(), dist, q)


def policy_value(
    model: DecisionModel, frame: pd.DataFrame, costs: dict[str, float]
) -> tuple[float, float]:
    """Doubly robust net value per customer (revenue minus contact cost) of the model's
    policy on held-out randomised rows, with its standard error."""
    terms = policy_value_terms(model, frame, costs)
    return float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(len(terms)))


def catalog_costs(settings: Settings) -> tuple[dict[str, float], str]:
    """Contact cost per action and the catalog version (empty when no catalog file)."""
    if not settings.catalog.exists():
        return {}, ""
    catalog = load_catalog(settings.catalog)
    costs: dict[str, float] = {}
    for a in catalog.actions:
        arm = getattr(a, "response_model", None) or a.id
        costs.setdefault(arm, float(a.cost))
    return costs, str(catalog.version)


@dataclass
class Dataset:
    """The training set from Feast and its train / validation / held-out test rows."""

    ts: TrainingSet
    features: list[str]
    allow_sensitive: bool
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def test_frame(self) -> pd.DataFrame:
        """The held-out rows of the training frame, renumbered."""
        return self.ts.frame.iloc[self.test].reset_index(drop=True)


@dataclass
class Fitted:
    """The selected learner inside a decision model, and why it was selected."""

    name: str
    why: str
    selection: pd.DataFrame
    model: DecisionModel
    costs: dict[str, float]


@dataclass
class Evaluation:
    """Held-out metrics and tables of a fitted model."""

    outcomes: np.ndarray
    metrics: dict[str, float]
    response_rows: list[dict[str, Any]]
    uplift: pd.DataFrame
    policies: pd.DataFrame
    net_value: float


def load_dataset(
    settings: Settings, store: Any | None = None, exposures: pd.DataFrame | None = None
) -> Dataset:
    """Exposures -> training set from Feast (point-in-time, leakage-checked) -> split.

    ``exposures`` (keyed like :func:`training.dataset.training_exposures`'s) replace the
    campaign history: the decision log's (:mod:`training.from_log`).

    Raises :class:`training.dataset.TimeRangeError` before anything is fitted when the
    exposures fall outside the feature snapshots or meet only empty windows."""
    # First, before any store is opened: a policy that does not fit the catalog fails
    # here as it would at service start, not after a model was fitted and registered.
    catalog, _ = load_catalog_and_policy(settings)
    # The training rows include customers who never consented to profiling, so the
    # policy's sensitive features stay out of every model fitted here (the serving gate of
    # ``policy.modelling`` still guards a model that carries them).
    allow_sensitive = False
    entity_df = training_exposures(settings) if exposures is None else exposures
    # Exposures outside the snapshots (exports of another time than the as-of's) would
    # train on rows without customer data: refused before the join, and after it a
    # matrix whose every window is empty.
    first, last = snapshot_range(settings.features_dir, catalog.terms())
    check_exposures_in_snapshots(entity_df, first, last, settings.as_of)
    store = store or feature_store(settings)
    features = model_feature_names(catalog.terms(), allow_sensitive=allow_sensitive)
    ts = build_training_set(store, entity_df, features, service=FEATURE_SERVICE)
    check_windowed_features(ts.frame, features)
    tr, va, te = split(ts, settings.seed)
    return Dataset(ts, features, allow_sensitive, tr, va, te)


def fit(settings: Settings, data: Dataset) -> Fitted:
    """Select a multi-treatment learner by cross-fitting on the training rows (the rule of
    :mod:`training.selection`; no shrinkage or averaging, which the scorer does not
    compile), refit it on them, fit the value model. Validation and test rows stay out."""
    X, t, y = data.ts.X, data.ts.treatment, data.ts.y
    tr = data.train
    every = default_candidates(control=NO_ACTION, random_state=settings.seed)
    unknown = sorted(set(settings.learners) - set(every))
    if unknown:
        raise ValueError(f"settings.learners: unknown learners {unknown}; known: {sorted(every)}")
    candidates = {k: v for k, v in every.items() if k in settings.learners}
    chosen = select_uplift_learner(
        candidates,
        X[tr],
        t[tr],
        y[tr],
        control=NO_ACTION,
        propensity=data.ts.propensity[tr],
        sample_weight=data.ts.sample_weight[tr],
        shrinkage=(1.0,),
        seed=settings.seed,
        ensemble=False,
        max_rows=SELECTION_MAX_ROWS,
    )
    name, response, table = chosen.name, chosen.model, chosen.table
    selected = table.loc[table["selected"].astype(bool)]
    why = str(selected["reason"].iloc[0]) if "reason" in table and len(selected) else name
    value = ValueModel(random_state=settings.seed).fit(X[tr], t[tr], data.ts.revenue[tr])
    costs, catalog_version = catalog_costs(settings)
    model = DecisionModel(
        response=response,
        value=value,
        feature_names=data.features,
        learner_name=name,
        catalog_version=catalog_version,
    )
    return Fitted(name, why, table, model, costs)


def evaluate(settings: Settings, data: Dataset, fitted: Fitted) -> Evaluation:
    """Per-arm response and uplift metrics, policy values against baselines and the net
    value, on the held-out rows (regret is the pipeline's separate evaluate step)."""
    te = data.test
    t, y = data.ts.treatment[te], data.ts.y[te]
    arms = fitted.model.arm_ids
    test = data.test_frame()
    outcomes = np.asarray(fitted.model.response.predict_outcomes(data.ts.X[te]))
    metrics: dict[str, float] = {}
    resp_rows = []
    for j, arm in enumerate([NO_ACTION, *arms]):
        m = t == arm
        if m.sum() > 1 and 0 < y[m].mean() < 1:
            r = ev.response_metrics(y[m], outcomes[m, j])
            resp_rows.append({"arm": arm, **{k: v for k, v in r.items() if np.isscalar(v)}})
            for k, v in r.items():
                if np.isscalar(v):
                    metrics[f"{k}_{arm}"] = float(v)
    upl = ev.uplift_metrics(y, t, outcomes[:, 1:] - outcomes[:, [0]], arms, NO_ACTION)
    for _, row in upl.iterrows():
        for k in ("qini", "auuc", "uplift_at_30"):
            metrics[f"{k}_{row['arm']}"] = float(row[k])
    pol = ev.evaluate_policies(
        t, y, data.ts.propensity[te], arms, NO_ACTION, outcomes, seed=settings.seed
    )
    for _, row in pol.iterrows():
        metrics[f"policy_ips_{row['policy']}"] = float(row["ips"])
        metrics[f"policy_dr_{row['policy']}"] = float(row["dr"])
    net_value, net_se = policy_value(fitted.model, test, fitted.costs)
    metrics["net_value_dr"] = net_value
    metrics["net_value_dr_se"] = net_se
    return Evaluation(outcomes, metrics, resp_rows, upl, pol, net_value)


def register(settings: Settings, data: Dataset, fitted: Fitted, evaluation: Evaluation) -> str:
    """Log params, metrics, lineage, tables, plots, the model card and the model to the
    active MLflow run and register the model; returns the new model version."""
    ts, model = data.ts, fitted.model
    te, arms = data.test, model.arm_ids
    tables = {
        "selection/cross_fitted.json": fitted.selection,
        "evaluation/uplift_metrics.json": evaluation.uplift,
        "evaluation/policy_values.json": evaluation.policies,
    }
    if evaluation.response_rows:
        tables["evaluation/response_metrics.json"] = pd.DataFrame(evaluation.response_rows)
    card = model_card(
        fitted.name,
        fitted.why,
        ts,
        evaluation.metrics,
        evaluation.policies,
        evaluation.uplift,
        data.features,
    )
    log_run(
        params={
            "learner": fitted.name,
            "seed": settings.seed,
            "feature_service": FEATURE_SERVICE,
            "n_features": len(data.features),
            "arms": ",".join(arms),
            "allow_sensitive": data.allow_sensitive,
            "rows_train": len(data.train),
            "rows_valid": len(data.valid),
            "rows_test": len(te),
            "catalog_version": model.catalog_version,
        },
        metrics=evaluation.metrics,
        tags={
            "selection_reason": fitted.why[:4000],
            **{f"lineage.{k}": str(v) for k, v in ts.lineage.items()},
        },
        dicts={"lineage.json": ts.lineage, "feature_order.json": {"features": data.features}},
        tables=tables,
        texts={"model_card.md": card},
    )
    Xte = ts.X[te]
    _log_plots(model, Xte, ts.y[te], ts.treatment[te], evaluation.outcomes, arms)
    with tempfile.TemporaryDirectory() as tmp:
        info = log_decision_model(model, Xte, Path(tmp) / "model")
    return register_logged_model(settings, info.model_uri, {"feature_service": FEATURE_SERVICE})


def promote_version(
    settings: Settings, version: str, data: Dataset, fitted: Fitted, evaluation: Evaluation
) -> PromotionDecision:
    """Gate ``version`` against the champion on the same held-out rows; record the
    decision on the active MLflow run."""
    test = data.test_frame()
    new_terms = policy_value_terms(fitted.model, test, fitted.costs)

    def champion_value(champ: DecisionModel) -> PairedGain:
        missing = [f for f in champ.feature_names if f not in test]
        if missing:
            raise KeyError(f"features {missing[:5]}")
        return paired_gain(new_terms, policy_value_terms(champ, test, fitted.costs))

    decision = promote(settings, version, evaluation.net_value, champion_value)
    log_run(
        tags={"promotion.alias": decision.alias, "promotion.reason": decision.reason},
        dicts={"promotion.json": json.loads(json.dumps(decision.__dict__, default=str))},
    )
    return decision


def held_out(data: Dataset, fitted: Fitted, evaluation: Evaluation) -> HeldOut:
    """The held-out rows and what the model predicts for them, for a later evaluation."""
    te = data.test
    return HeldOut(
        exposure_ids=data.test_frame()["exposure_id"].astype(str).to_numpy(),
        treatment=data.ts.treatment[te],
        y=data.ts.y[te],
        propensity=np.asarray(data.ts.propensity[te]),
        outcomes=evaluation.outcomes,
        arms=list(fitted.model.arm_ids),
    )


def train(
    settings: Settings,
    store: Any | None = None,
    exposures: pd.DataFrame | None = None,
    run_params: dict[str, Any] | None = None,
) -> TrainResult:
    """Run the whole training step (dataset, fit, evaluate, register, promote) and return
    what was registered. ``exposures`` replace the campaign history (see
    :func:`load_dataset`); ``run_params`` are logged on the run beside the usual ones."""
    data = load_dataset(settings, store, exposures)
    fitted = fit(settings, data)
    evaluation = evaluate(settings, data, fitted)
    source = str((run_params or {}).get("training_source", "history"))
    prefix = "train" if source == "history" else f"train-{source}"
    with tracked_run(settings, f"{prefix}-{fitted.name}") as run_id:
        if run_params:
            log_run(params=run_params)
        version = register(settings, data, fitted, evaluation)
        decision = promote_version(settings, version, data, fitted, evaluation)
    log.info("trained %s: %s", fitted.name, fitted.why)
    return TrainResult(
        run_id,
        version,
        decision.alias,
        decision.reason,
        fitted.name,
        evaluation.net_value,
        evaluation.metrics,
        held_out(data, fitted, evaluation),
    )


def _log_plots(
    model: DecisionModel,
    X: np.ndarray,
    y: np.ndarray,
    t: np.ndarray,
    outcomes: np.ndarray,
    arms: list[str],
) -> None:
    import matplotlib  # lazy: heavy, needed only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: after the backend is chosen

    uplift = outcomes[:, 1:] - outcomes[:, [0]]
    figures = {
        "qini_curves.png": lambda: plots.uplift_curves_figure(
            y, t, uplift, arms, NO_ACTION, "qini"
        ),
        "uplift_curves.png": lambda: plots.uplift_curves_figure(
            y, t, uplift, arms, NO_ACTION, "uplift"
        ),
        "calibration_no_action.png": lambda: plots.calibration_figure(
            y[t == NO_ACTION], outcomes[t == NO_ACTION, 0], title=f"calibration: {NO_ACTION}"
        ),
        "feature_importance.png": lambda: plots.importance_figure(
            _named_importance(model.response.feature_importances(), model.feature_names)
        ),
    }
    for j, arm in enumerate(arms):
        figures[f"calibration_{arm}.png"] = lambda j=j, arm=arm: plots.calibration_figure(
            y[t == arm], outcomes[t == arm, j + 1], title=f"calibration: {arm}"
        )
    for name, fn in figures.items():
        try:
            fig = fn()
        except Exception as exc:  # a plot must never lose a training run
            log.warning("plot %s failed: %s", name, exc)
            continue
        log_figure(fig, f"plots/{name}")
        plt.close(fig)


def _named_importance(imp: pd.Series, names: list[str]) -> pd.Series:
    """Importances indexed by feature name (LightGBM on numpy names them Column_i)."""

    def name(i: object) -> object:
        text = str(i)
        digits = text.rsplit("_", 1)[-1]
        return names[int(digits)] if digits.isdigit() and int(digits) < len(names) else i

    return imp.rename(index=name)


def model_card(
    name: str,
    why: str,
    ts: TrainingSet,
    metrics: dict[str, float],
    pol: pd.DataFrame,
    upl: pd.DataFrame,
    features: list[str],
) -> str:
    """A short Markdown model card: data, learner choice, evaluation, intended use."""
    return "\n".join(
        [
            "# nextbest decision model",
            "",
            f"**Learner:** {name}. {why}",
            "",
            "## Data",
            f"Randomised campaign exposures joined point-in-time through the Feast feature service "
            f"`{ts.feature_service}`: {ts.lineage['rows']} rows from {ts.lineage['time_min']} to "
            f"{ts.lineage['time_max']}, data hash `{ts.lineage['data_hash']}`, "
            f"{len(features)} features, arms: {', '.join(ts.lineage['arms'])}.",
            "",
            "## Held-out evaluation (randomised data)",
            "",
            pol.to_string(index=False),
            "",
            upl.to_string(index=False),
            "",
            f"Net value per customer (doubly robust): {metrics['net_value_dr']:.4f} "
            f"± {metrics['net_value_dr_se']:.4f}.",
            "",
            "## Intended use",
            "Ranks actions by expected incremental value inside the nextbest decision engine, "
            "which enforces consent, suppression and contact rules. Not for decisions about "
            "credit or eligibility for essential services.",
        ]
    )
