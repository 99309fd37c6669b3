"""Choosing an uplift learner by cross-fitting on training rows only.

Every candidate is fitted K times on K-1 folds of the training rows and predicts the fold
it did not see, so each training row gets one out-of-fold prediction. From these:

* the **ranking** of each candidate: Qini per arm on the pooled out-of-fold uplift, its
  mean over arms and the bootstrap standard error of that mean (rows resampled, the same
  draws for every candidate);
* the **policy** of each candidate and shrinkage strength (see
  :class:`nextbest.models.learners.ShrunkUpliftLearner`): "arm with the highest predicted uplift if
  above 0, else control", scored by its IPS value with the logged propensities.

The rule (:data:`SELECTION_RULE`, applied by :func:`apply_rule`) keeps both honest: a
candidate is eligible only if its mean Qini is within one bootstrap SE of the best mean
Qini (so a flat policy cannot win by trading away the ranking), and among the eligible the
highest cross-fitted policy value wins. The equal-weight average of the candidates is one
more candidate (its out-of-fold predictions are the average of theirs). Shrinkage leaves a
learner's ranking unchanged, so a shrunk variant shares its base's Qini: when the data do
not support targeting, the policy may become "everyone gets the best arm" while the scores
still rank customers.
Rows passed to :func:`select_uplift_learner` are the only rows any candidate is fitted on.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold, StratifiedKFold

from nextbest.models.evaluation import qini_auc_score
from nextbest.models.evaluation import uplift_policy as _uplift_policy
from nextbest.models.fold_average import FoldAveragedLearner
from nextbest.models.learners import (
    EnsembleLearner,
    ShrunkUpliftLearner,
    SLearner,
    TLearner,
    XLearner,
    logged_propensity,
)
from nextbest.models.ope_estimators import DR, IPS

__all__ = [
    "BASE_LGBM",
    "FOLD_AVERAGE_RULE",
    "SELECTION_RULE",
    "SHRINKAGE_GRID",
    "Selection",
    "apply_rule",
    "cross_fit",
    "make_folds",
    "meta_learner_candidates",
    "select_uplift_learner",
]

logger = logging.getLogger(__name__)

#: LightGBM settings shared by every candidate of ``uplift fit`` (and, in the benchmark,
#: by the reference learners): a regularised tree for a weak, noisy treatment signal.
BASE_LGBM: dict[str, Any] = {
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 100,
}
#: Shrinkage strengths tried, in order of preference (1 = the learner's own uplift).
SHRINKAGE_GRID = (1.0, 0.75, 0.5, 0.25)
N_FOLDS = 5
BOOTSTRAP_DRAWS = 50
QINI_TOLERANCE_SE = 1.0
TIE_SE = 0.1
#: How the rule values a candidate's policy: IPS (the default) or doubly robust with one
#: common cross-fitted reward model (measured in the uplift benchmark, not the default).
POLICY_ESTIMATORS = {"ips": IPS, "dr": DR}

SELECTION_RULE = (
    "K-fold cross-fitting on the training rows only; the candidates are the S, T and X "
    "learners and their equal-weight average, each with shrinkage strengths "
    f"{list(SHRINKAGE_GRID)}. Ranking gate: a candidate is eligible "
    "when its out-of-fold mean Qini over arms is at least the best candidate's minus "
    f"{QINI_TOLERANCE_SE:g} bootstrap SE of that best (shrunk variants share their base's "
    "ranking). Among the eligible, the highest cross-fitted IPS value of the policy 'best arm "
    f"if its uplift > 0, else control' wins; values within {TIE_SE:g} SE of the best tie and "
    "the tie goes to the higher mean Qini, then to the earlier candidate (less shrunk)."
)
FOLD_AVERAGE_RULE = (
    "The final model is the average of the winner's K cross-fitted models (each fitted "
    "without one fold; no refit), shrunk towards their mean training uplift when the "
    "winner is a shrunk variant."
)


@dataclass(frozen=True)
class Selection:
    """What :func:`select_uplift_learner` chose, on which folds, and why."""

    name: str
    base: str
    shrinkage: float
    learner: BaseEstimator
    model: BaseEstimator | None
    table: pd.DataFrame
    folds: list[tuple[np.ndarray, np.ndarray]]
    rule: str = SELECTION_RULE
    averaged: bool = False

    @property
    def reason(self) -> str:
        """Why the winner won (its row's reason)."""
        return str(self.table.loc[self.table["selected"], "reason"].iloc[0])


def meta_learner_candidates(
    control: Hashable,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    propensity: Mapping[Hashable, float] | str = "empirical",
    n_jobs: int = 1,
) -> dict[str, BaseEstimator]:
    """The S, T and X learners on one shared LightGBM setting (``BASE_LGBM`` by default).

    ``propensity`` is the X learner's arm probabilities: a mapping, ``"empirical"`` (the
    arm shares; a randomised experiment) or ``"model"`` (learnt from the features).
    """
    common: dict[str, Any] = {
        "control": control,
        "random_state": seed,
        "n_jobs": n_jobs,
        **(params if params is not None else BASE_LGBM),
    }
    return {
        "s_learner": SLearner(**common),
        "t_learner": TLearner(**common),
        "x_learner": XLearner(propensity=propensity, **common),
    }


def make_folds(
    t: np.ndarray, y: np.ndarray, n_folds: int = N_FOLDS, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(fit positions, held-out positions)`` per fold, stratified on arm (and outcome when
    binary) when every stratum is large enough, plain shuffled K-fold otherwise."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    t = np.asarray(t)
    y = np.asarray(y, dtype=float)
    strat = pd.Series(t.astype(str))
    if np.isin(y, (0.0, 1.0)).all():
        strat = strat + "|" + pd.Series(y.astype(int).astype(str))
    zeros = np.zeros(len(t))
    if strat.value_counts().min() >= n_folds:
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
        return list(splitter.split(zeros, strat))
    return list(KFold(n_folds, shuffle=True, random_state=seed).split(zeros))


def _take(X: Any, idx: np.ndarray) -> Any:
    return X.iloc[idx] if isinstance(X, pd.DataFrame) else np.asarray(X)[idx]


def cross_fit(
    estimator: BaseEstimator,
    X: Any,
    t: np.ndarray,
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    keep: list[BaseEstimator] | None = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Hashable]]:
    """Out-of-fold outcomes ``[n, 1 + A]``, each fold's mean predicted uplift on its own
    fit rows ``[n, A]`` (the shrinkage target) and the arms, for one candidate; each fold
    is fitted with the ``sample_weight`` of its fit rows (None: unweighted). With
    ``keep``, each fold's fitted model is appended to it."""
    n = len(t)
    q_oof: np.ndarray | None = None
    prior: np.ndarray | None = None
    arms: list[Hashable] = []
    for fit_idx, held in folds:
        sw = None if sample_weight is None else sample_weight[fit_idx]
        model = clone(estimator).fit(_take(X, fit_idx), t[fit_idx], y[fit_idx], sw)
        if keep is not None:
            keep.append(model)
        arms = list(model.arms_)
        q = np.asarray(model.predict_outcomes(_take(X, held)), dtype=np.float64)
        if q_oof is None:
            q_oof = np.zeros((n, q.shape[1]))
            prior = np.zeros((n, q.shape[1] - 1))
        q_oof[held] = q
        prior[held] = np.asarray(model.predict_uplift(_take(X, fit_idx))).mean(axis=0)
    if q_oof is None or prior is None:
        raise ValueError("cross_fit needs at least one fold")
    return q_oof, prior, arms


def _qinis(
    y: np.ndarray, t: np.ndarray, u: np.ndarray, arms: Sequence[Hashable], control: Hashable
) -> list[float]:
    out = []
    for j, arm in enumerate(arms):
        m = (t == arm) | (t == control)
        out.append(qini_auc_score(y[m], u[m, j], (t[m] == arm).astype(int)))
    return out


def _bootstrap_qini_se(
    y: np.ndarray,
    t: np.ndarray,
    uplifts: Mapping[str, np.ndarray],
    arms: Sequence[Hashable],
    control: Hashable,
    draws: int,
    seed: int,
) -> dict[str, tuple[list[float], float]]:
    """Per candidate: bootstrap SE of the Qini of each arm and of their mean (the same
    resampled rows for every candidate)."""
    rng = np.random.default_rng(seed)
    samples: dict[str, list[list[float]]] = {name: [] for name in uplifts}
    for _ in range(draws):
        idx = rng.integers(0, len(y), len(y))
        for name, u in uplifts.items():
            samples[name].append(_qinis(y[idx], t[idx], u[idx], arms, control))
    out = {}
    for name, s in samples.items():
        a = np.asarray(s)
        out[name] = (list(a.std(axis=0, ddof=1)), float(a.mean(axis=1).std(ddof=1)))
    return out


def apply_rule(
    table: pd.DataFrame,
    qini_tolerance_se: float = QINI_TOLERANCE_SE,
    tie_se: float = TIE_SE,
    where: str = "cross-fitted",
) -> pd.DataFrame:
    """Mark the winner of :data:`SELECTION_RULE` and say why each row won or lost.

    ``table`` needs ``learner, ips_value, ips_se, qini_mean, qini_mean_se`` (rows in
    order of preference). Returns a copy with ``eligible, selected, reason``.
    """
    table = table.reset_index(drop=True).copy()
    top = int(table["qini_mean"].idxmax())
    floor = table.loc[top, "qini_mean"] - qini_tolerance_se * table.loc[top, "qini_mean_se"]
    table["eligible"] = table["qini_mean"] >= floor
    ok = table.index[table["eligible"]]
    best = int(table.loc[ok, "ips_value"].idxmax())
    tol = tie_se * table.loc[best, "ips_se"]
    tied = [i for i in ok if table.loc[i, "ips_value"] >= table.loc[best, "ips_value"] - tol]
    winner = int(table.loc[tied, "qini_mean"].idxmax())
    win = table.loc[winner]
    reasons = []
    for i, r in table.iterrows():
        if i == winner:
            why = (
                f"selected: {where} policy value {r.ips_value:.5f} (SE {r.ips_se:.5f}) is the "
                f"highest among learners whose mean Qini is within {qini_tolerance_se:g} SE "
                f"of the best ({r.qini_mean:.4f} vs {table.loc[top, 'qini_mean']:.4f}, "
                f"floor {floor:.4f})"
            )
            if len(tied) > 1:
                others = ", ".join(str(table.loc[j, "learner"]) for j in tied if j != winner)
                why += f"; ties with {others} on value, higher mean Qini or listed first"
            reasons.append(why)
        elif not r.eligible:
            reasons.append(f"ranking gate: mean Qini {r.qini_mean:.4f} below floor {floor:.4f}")
        elif i in tied:
            reasons.append(f"tied on policy value with {win.learner}, lower mean Qini or later")
        else:
            reasons.append(
                f"{where} policy value {r.ips_value:.5f} below {win.learner}'s {win.ips_value:.5f}"
            )
    table["selected"] = table.index == winner
    table["reason"] = reasons
    return table


def _selection_table(
    fitted: Mapping[str, tuple[np.ndarray, np.ndarray, list[Hashable]]],
    t: np.ndarray,
    y: np.ndarray,
    prop: np.ndarray,
    control: Hashable,
    grid: Sequence[float],
    bootstrap: int,
    seed: int,
    estimator: str = "ips",
) -> pd.DataFrame:
    """One row per (candidate, shrinkage): out-of-fold ranking and policy figures; the
    policy values by IPS or, with ``estimator="dr"``, doubly robust."""
    arms = fitted[next(iter(fitted))][2]
    actions = [control, *arms]
    est = POLICY_ESTIMATORS[estimator]()
    # One reward model for every candidate's DR value (paired comparisons): the mean of
    # the candidates' out-of-fold outcomes, so no row's own outcome shaped its prediction.
    q_common = (
        np.mean([q for name, (q, _, _) in fitted.items() if name != "ensemble"], axis=0)
        if estimator == "dr"
        else None
    )

    def value_of(policy: np.ndarray) -> Any:
        return est.evaluate(policy, t, y, prop, actions=actions, estimated_rewards=q_common)

    single = {a: value_of(np.full(len(t), a, dtype=object)).value for a in np.unique(t).tolist()}
    best_arm = max(single, key=single.__getitem__)
    everyone_best = np.full(len(t), best_arm, dtype=object)
    uplifts = {name: q[:, 1:] - q[:, [0]] for name, (q, _, _) in fitted.items()}
    se = _bootstrap_qini_se(y, t, uplifts, arms, control, bootstrap, seed)
    rows: list[dict[str, Any]] = []
    for name, (_, prior, _) in fitted.items():
        u = uplifts[name]
        qinis = _qinis(y, t, u, arms, control)
        arm_se, mean_se = se[name]
        ranking = {f"qini_{a}": q for a, q in zip(arms, qinis, strict=True)}
        ranking.update({f"qini_{a}_se": s for a, s in zip(arms, arm_se, strict=True)})
        for s in grid:
            policy = _uplift_policy(s * u + (1.0 - s) * prior, arms, control)
            value = value_of(policy)
            gain = est.compare(
                policy, everyone_best, t, y, prop, estimated_rewards=q_common, actions=actions
            )
            rows.append(
                {
                    "learner": name if s == 1.0 else f"{name}@shrink{s:g}",
                    "base": name,
                    "shrinkage": s,
                    "ips_value": value.value,
                    "ips_se": value.se,
                    "best_arm": best_arm,
                    "gain_vs_best_arm": gain.value,
                    "gain_vs_best_arm_se": gain.se,
                    **ranking,
                    "qini_mean": float(np.mean(qinis)),
                    "qini_mean_se": mean_se,
                    "share_treated": float(np.mean(policy != control)),
                }
            )
    return pd.DataFrame(rows)


def select_uplift_learner(
    candidates: Mapping[str, BaseEstimator],
    X: Any,
    t: Any,
    y: Any,
    control: Hashable,
    propensity: float | Mapping[Hashable, float] | np.ndarray,
    n_folds: int = N_FOLDS,
    shrinkage: Sequence[float] = SHRINKAGE_GRID,
    seed: int = 0,
    bootstrap: int = BOOTSTRAP_DRAWS,
    refit: bool = True,
    ensemble: bool = True,
    max_rows: int | None = None,
    average_folds: bool = False,
    sample_weight: np.ndarray | None = None,
    policy_estimator: str = "ips",
) -> Selection:
    """Cross-fit every candidate on ``X`` (training rows only) and apply the rule. Over
    100 lines because this docstring states the whole rule; the body is the steps.

    ``propensity`` is the probability of each row's logged arm (a scalar, an arm ->
    probability mapping, or one value per row). The table has one row per (candidate,
    shrinkage): ``learner, base, shrinkage, ips_value, ips_se, gain_vs_best_arm(_se),
    qini_<arm>, qini_<arm>_se, qini_mean, qini_mean_se, share_treated, eligible, selected,
    reason``; ``gain_vs_best_arm`` is the paired IPS gain over giving every row the single
    arm with the highest IPS value on these rows. With ``ensemble`` and several candidates,
    their equal-weight average (:class:`nextbest.models.learners.EnsembleLearner`) is one more
    candidate, listed last; its out-of-fold outcomes are the mean of the members' (same
    folds), so it costs no extra fit. With ``max_rows``, a larger ``X`` is cross-fitted on
    a random ``max_rows`` of its rows (the choice costs at most that much; ``folds`` are
    positions in ``X``). With ``refit`` the winner (wrapped in a
    :class:`ShrunkUpliftLearner` when shrunk) is fitted on all of ``X``; with
    ``average_folds`` as well, it is instead the average of its cross-fitted fold models
    (:data:`FOLD_AVERAGE_RULE`, :class:`nextbest.models.fold_average.FoldAveragedLearner`), which
    needs every row cross-fitted (no ``max_rows``). ``sample_weight`` (one per row, e.g.
    :attr:`training.dataset.TrainingSet.sample_weight`) weights every fit, cross-fitted and
    refitted alike; the policy values use ``propensity`` per row. ``policy_estimator``
    ``"dr"`` values the policies doubly robustly (the table's ``ips_*`` columns then hold
    those values; ``estimator`` says which).
    """
    if not candidates:
        raise ValueError("select_uplift_learner needs at least one candidate")
    if policy_estimator not in POLICY_ESTIMATORS:
        raise ValueError(
            f"policy_estimator must be one of {sorted(POLICY_ESTIMATORS)}, got {policy_estimator!r}"
        )
    grid = [float(s) for s in shrinkage]
    if not grid or any(not 0.0 < s <= 1.0 for s in grid):
        raise ValueError(f"shrinkage values must lie in (0, 1], got {list(shrinkage)}")
    if average_folds and max_rows is not None:
        raise ValueError(
            "average_folds needs every row cross-fitted; it cannot be combined with max_rows"
        )
    t_all = np.asarray(t)
    y_all = np.asarray(y, dtype=float)
    prop_all = logged_propensity(propensity, t_all)
    rows = np.arange(len(t_all))
    if max_rows is not None and len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_rows, replace=False))
    X_sel, t_sel, y_sel = _take(X, rows), t_all[rows], y_all[rows]
    sw_all = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if sw_all is not None and sw_all.shape != t_all.shape:
        raise ValueError(f"sample_weight has shape {sw_all.shape}, treatment {t_all.shape}")
    sw_sel = None if sw_all is None else sw_all[rows]
    folds = make_folds(t_sel, y_sel, n_folds, seed)
    fitted: dict[str, tuple[np.ndarray, np.ndarray, list[Hashable]]] = {}
    fold_models: dict[str, list[BaseEstimator]] = {}
    for name, est in candidates.items():
        fold_models[name] = []
        keep = fold_models[name] if average_folds else None
        fitted[name] = cross_fit(est, X_sel, t_sel, y_sel, folds, keep, sw_sel)
        logger.info("cross-fitted %s", name)
    learners = dict(candidates)
    if ensemble and len(candidates) > 1:
        parts = list(fitted.values())
        fitted["ensemble"] = (
            np.mean([q for q, _, _ in parts], axis=0),
            np.mean([prior for _, prior, _ in parts], axis=0),
            parts[0][2],
        )
        learners["ensemble"] = EnsembleLearner(list(candidates.items()))
        fold_models["ensemble"] = [m for ms in list(fold_models.values()) for m in ms]
    table = _selection_table(
        fitted, t_sel, y_sel, prop_all[rows], control, grid, bootstrap, seed, policy_estimator
    )
    table["estimator"] = policy_estimator
    table = apply_rule(table, where=f"{n_folds}-fold cross-fitted")
    win = table.loc[table["selected"]].iloc[0]
    learner = learners[str(win["base"])]
    model: BaseEstimator | None = None
    shrink = float(win["shrinkage"])
    if refit and average_folds:
        model = FoldAveragedLearner.from_members(learner, fold_models[str(win["base"])])
        if shrink != 1.0:
            prior = fitted[str(win["base"])][1].mean(axis=0)
            model = ShrunkUpliftLearner.from_fitted(model, prior, shrink)
    elif refit:
        model = clone(learner)
        if shrink != 1.0:
            model = ShrunkUpliftLearner(model, shrinkage=shrink)
        model = model.fit(X, t_all, y_all, sw_all)
    logger.info("selected %s: %s", win["learner"], win["reason"])
    return Selection(
        name=str(win["learner"]),
        base=str(win["base"]),
        shrinkage=float(win["shrinkage"]),
        learner=learner,
        model=model,
        table=table,
        folds=[(rows[f], rows[h]) for f, h in folds],
        rule=f"{SELECTION_RULE} {FOLD_AVERAGE_RULE}" if average_folds else SELECTION_RULE,
        averaged=average_folds and refit,
    )
