"""Cross-fitted learner selection: training rows only, and a ranking gate before value."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

from nextbest.models.evaluation import qini_auc_score
from nextbest.models.fold_average import FoldAveragedLearner
from nextbest.models.learners import ShrunkUpliftLearner, SLearner, TLearner
from tests.params import SEED
from tests.unit.models.synthetic import CONTROL, make_experiment
from training.selection import apply_rule, select_uplift_learner

FEATURES = ["x1", "x2", "region"]
SMALL = {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 40, "n_jobs": 1}


class RecordingSLearner(SLearner):
    """An S learner that records the row labels of every frame it is fitted on."""

    fitted_on: ClassVar[list[np.ndarray]] = []

    def fit(self, X: Any, treatment: Any, y: Any, sample_weight: Any = None) -> SLearner:
        type(self).fitted_on.append(X.index.to_numpy())
        return super().fit(X, treatment, y, sample_weight)


class FlatLearner(BaseEstimator):
    """The no-model baseline: every row gets each arm's mean outcome, so every customer
    gets the same uplift (a policy, but no ranking)."""

    def __init__(self, control: str = CONTROL) -> None:
        self.control = control

    def fit(self, X: Any, treatment: Any, y: Any, sample_weight: Any = None) -> FlatLearner:
        t, y = np.asarray(treatment), np.asarray(y, dtype=float)
        self.arms_ = sorted(set(t.tolist()) - {self.control})
        self.classes_ = [self.control, *self.arms_]
        self.means_ = np.array([y[t == a].mean() for a in self.classes_])
        return self

    def predict_outcomes(self, X: Any) -> np.ndarray:
        return np.tile(self.means_, (len(X), 1))

    def predict_uplift(self, X: Any) -> np.ndarray:
        q = self.predict_outcomes(X)
        return q[:, 1:] - q[:, [0]]


def test_cross_fitting_fits_on_training_rows_only() -> None:
    df, _ = make_experiment(900, SEED)
    df.index = pd.Index(np.arange(len(df)) * 10 + 3)  # labels unlike positions
    train = df.sample(frac=0.7, random_state=SEED)
    held_out = set(df.index) - set(train.index)
    RecordingSLearner.fitted_on.clear()
    chosen = select_uplift_learner(
        {"s": RecordingSLearner(control=CONTROL, **SMALL)},
        train[FEATURES],
        train["arm"].to_numpy(),
        train["bought"].to_numpy(),
        control=CONTROL,
        propensity=1 / 3,
        n_folds=4,
        shrinkage=(1.0,),
        seed=SEED,
        bootstrap=5,
    )
    fits = RecordingSLearner.fitted_on
    assert len(fits) == 4 + 1  # one per fold, then the refit of the winner
    for rows in fits:
        assert not held_out & set(rows)
    # each training row is left out of exactly one fold's fit, and that fold predicts it
    left_out = [set(train.index) - set(rows) for rows in fits[:4]]
    assert sorted(i for s in left_out for i in s) == sorted(train.index)
    for (fit_pos, held_pos), rows in zip(chosen.folds, fits[:4], strict=True):
        assert set(train.index[fit_pos]) == set(rows)
        assert not set(fit_pos) & set(held_pos)
    assert set(fits[-1]) == set(train.index)  # the refit: all training rows, nothing else


def test_rule_prefers_ranking_to_a_slightly_higher_flat_policy() -> None:
    table = pd.DataFrame(
        [
            {"learner": "flat", "ips_value": 0.300, "ips_se": 0.01, "qini_mean": 0.001},
            {"learner": "ranker", "ips_value": 0.296, "ips_se": 0.01, "qini_mean": 0.080},
            {"learner": "close", "ips_value": 0.290, "ips_se": 0.01, "qini_mean": 0.070},
        ]
    ).assign(qini_mean_se=0.015)
    assert table.loc[table["ips_value"].idxmax(), "learner"] == "flat"  # value alone
    out = apply_rule(table)
    assert out.loc[out["selected"], "learner"].tolist() == ["ranker"]
    assert out["eligible"].tolist() == [False, True, True]
    assert out.loc[0, "reason"].startswith("ranking gate")
    # within one SE of the best Qini the policy value decides
    out = apply_rule(table.assign(ips_value=[0.300, 0.290, 0.296]))
    assert out.loc[out["selected"], "learner"].tolist() == ["close"]


def test_selection_keeps_the_ranking_learner_over_a_higher_valued_flat_one() -> None:
    # e-mail helps everyone (+0.03), some customers much more (+0.28): "e-mail everyone"
    # is the best policy, and a learner that ranks well but withholds the mail from a few
    # loses a little policy value against the flat learner on these folds
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 3))
    t = np.where(rng.random(3000) < 0.5, "mail", "none")
    y = rng.binomial(1, 0.2 + np.where(t == "mail", 0.03 + 0.25 * (x[:, 0] > 0), 0.0))
    chosen = select_uplift_learner(
        {"flat": FlatLearner(control="none"), "t": TLearner(control="none", **SMALL)},
        pd.DataFrame(x, columns=["a", "b", "c"]),
        t,
        y,
        control="none",
        propensity=0.5,
        n_folds=3,
        shrinkage=(1.0,),
        seed=0,
        bootstrap=20,
        ensemble=False,
    )
    table = chosen.table.set_index("learner")
    flat, ranker = table.loc["flat"], table.loc["t"]
    assert flat.ips_value > ranker.ips_value + 0.1 * ranker.ips_se  # value alone: flat
    assert flat.qini_mean < ranker.qini_mean - ranker.qini_mean_se
    assert chosen.name == "t" and not flat.eligible
    assert isinstance(chosen.model, TLearner)


def test_selection_rejects_bad_arguments() -> None:
    df, _ = make_experiment(300, SEED)
    args = (df[FEATURES], df["arm"].to_numpy(), df["bought"].to_numpy())
    with pytest.raises(ValueError, match="at least one candidate"):
        select_uplift_learner({}, *args, control=CONTROL, propensity=1 / 3)
    with pytest.raises(ValueError, match="shrinkage"):
        select_uplift_learner(
            {"flat": FlatLearner()}, *args, control=CONTROL, propensity=1 / 3, shrinkage=(0.0,)
        )


def _recorded_selection(**options: Any) -> tuple[Any, Any, list[Any]]:
    """An S learner that records its fit rows, selected on a small experiment (3 folds)."""
    df, _ = make_experiment(900, SEED)
    RecordingSLearner.fitted_on.clear()
    chosen = select_uplift_learner(
        {"s": RecordingSLearner(control=CONTROL, **SMALL)},
        df[FEATURES],
        df["arm"].to_numpy(),
        df["bought"].to_numpy(),
        control=CONTROL,
        propensity=1 / 3,
        n_folds=3,
        seed=SEED,
        bootstrap=5,
        **options,
    )
    return df, chosen, list(RecordingSLearner.fitted_on)


def test_max_rows_bounds_the_cross_fit_and_the_refit_uses_every_row() -> None:
    df, chosen, fits = _recorded_selection(shrinkage=(1.0,), max_rows=400)
    *folds, refit = fits
    sampled = set().union(*(set(f) for f in folds))
    assert len(sampled) == 400 and all(len(f) < 400 for f in folds)
    assert {i for _, held in chosen.folds for i in held} == sampled
    assert set(refit) == set(df.index)


def _fold_fit(average_folds: bool, shrinkage: tuple[float, ...]) -> tuple[Any, Any, Any]:
    return _recorded_selection(shrinkage=shrinkage, average_folds=average_folds)


def test_average_folds_keeps_the_winners_fold_models_and_fits_nothing_more() -> None:
    df, chosen, fits = _fold_fit(True, (1.0,))
    assert len(fits) == 3  # the cross-fit only: no refit
    model = chosen.model
    assert isinstance(model, FoldAveragedLearner) and chosen.averaged
    assert "average of the winner's K cross-fitted models" in chosen.rule
    # the members are the fold models the rule scored: each was fitted on its fold's fit
    # rows, and their out-of-fold predictions give the selection table's Qini
    X, t, y = df[FEATURES], df["arm"].to_numpy(), df["bought"].to_numpy()
    oof = np.zeros((len(df), len(model.arms_)))
    for member, rows, (fit_pos, held) in zip(model.members_, fits, chosen.folds, strict=True):
        assert set(rows) == set(df.index[fit_pos])
        oof[held] = member.predict_uplift(X.iloc[held])
    for j, arm in enumerate(model.arms_):
        m = (t == arm) | (t == CONTROL)
        qini = qini_auc_score(y[m], oof[m, j], (t[m] == arm).astype(int))
        assert qini == pytest.approx(chosen.table.loc[0, f"qini_{arm}"])
    outcomes = np.mean([member.predict_outcomes(X) for member in model.members_], axis=0)
    np.testing.assert_allclose(model.predict_outcomes(X), outcomes)
    # a refit of one model on every row is a different (higher-variance) model
    _, refitted, refits = _fold_fit(False, (1.0,))
    assert len(refits) == 3 + 1 and not refitted.averaged
    assert not np.allclose(refitted.model.predict_outcomes(X), outcomes)


def test_a_shrunk_fold_average_shrinks_towards_the_folds_mean_uplift() -> None:
    df, chosen, fits = _fold_fit(True, (0.5,))
    assert len(fits) == 3 and chosen.name == "s@shrink0.5"
    model = chosen.model
    assert isinstance(model, ShrunkUpliftLearner)
    assert isinstance(model.learner_, FoldAveragedLearner)
    X = df[FEATURES]
    # the target: each fold model's mean uplift on its own fit rows, averaged over rows
    priors = np.zeros((len(df), len(model.arms_)))
    for member, (fit_pos, held) in zip(model.learner_.members_, chosen.folds, strict=True):
        priors[held] = member.predict_uplift(X.iloc[fit_pos]).mean(axis=0)
    target = priors.mean(axis=0)
    np.testing.assert_allclose(model.mean_uplift_, target)
    expected = 0.5 * model.learner_.predict_uplift(X) + 0.5 * target
    np.testing.assert_allclose(model.predict_uplift(X), expected)


def test_average_folds_refuses_a_subsampled_cross_fit() -> None:
    df, _ = make_experiment(300, SEED)
    with pytest.raises(ValueError, match="average_folds.*max_rows"):
        select_uplift_learner(
            {"flat": FlatLearner()},
            df[FEATURES],
            df["arm"].to_numpy(),
            df["bought"].to_numpy(),
            control=CONTROL,
            propensity=1 / 3,
            max_rows=100,
            average_folds=True,
        )


def test_a_doubly_robust_rule_values_the_same_policies_with_smaller_errors() -> None:
    # A strong baseline the outcome models learn (x0) and a weak effect: IPS carries the
    # baseline's variance into every policy value, the DR value subtracts the reward model.
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(2400, 3))
    t = np.where(rng.random(2400) < 0.5, "mail", "none")
    y = (
        5.0 * x[:, 0]
        + np.where(t == "mail", 0.2 + 0.3 * (x[:, 1] > 0), 0.0)
        + rng.normal(size=2400)
    )
    X = pd.DataFrame(x, columns=["a", "b", "c"])
    args = (X, t, y)
    kwargs = {"control": "none", "propensity": 0.5, "n_folds": 3, "seed": SEED, "bootstrap": 5}
    cands = {"t": TLearner(control="none", **SMALL), "s": SLearner(control="none", **SMALL)}
    ips = select_uplift_learner(cands, *args, refit=False, **kwargs).table
    dr = select_uplift_learner(cands, *args, refit=False, policy_estimator="dr", **kwargs).table
    assert (ips["estimator"] == "ips").all() and (dr["estimator"] == "dr").all()
    assert list(ips["learner"]) == list(dr["learner"])
    assert np.allclose(ips["qini_mean"], dr["qini_mean"])  # the ranking is not re-estimated
    assert (dr["ips_se"] < 0.8 * ips["ips_se"]).all()  # small models: about 0.7 here
    assert (dr["gain_vs_best_arm_se"] <= ips["gain_vs_best_arm_se"] + 1e-12).all()
    with pytest.raises(ValueError, match="policy_estimator must be one of"):
        select_uplift_learner(cands, *args, policy_estimator="snips", **kwargs)
