"""The fold average: one learner per fold complement, outcomes averaged."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from nextbest.models.fold_average import FoldAveragedLearner
from nextbest.models.learners import ShrunkUpliftLearner, TLearner
from tests.params import SEED
from tests.unit.models.synthetic import CONTROL, make_experiment

FEATURES = ["x1", "x2", "region"]
SMALL = {"n_estimators": 30, "num_leaves": 7, "min_child_samples": 40, "n_jobs": 1}


def test_fit_averages_one_model_per_fold_complement() -> None:
    df, _ = make_experiment(900, SEED)
    X, t, y = df[FEATURES], df["arm"].to_numpy(), df["bought"].to_numpy()
    bag = FoldAveragedLearner(TLearner(control=CONTROL, **SMALL), n_folds=3, random_state=SEED)
    bag.fit(X, t, y)
    assert len(bag.members_) == 3 and bag.arms_ == bag.members_[0].arms_
    # each member saw two thirds of the rows, so no two members are the same model
    q = [m.predict_outcomes(X) for m in bag.members_]
    assert not np.allclose(q[0], q[1])
    np.testing.assert_allclose(bag.predict_outcomes(X), np.mean(q, axis=0))
    mean = np.mean(q, axis=0)
    np.testing.assert_allclose(bag.predict_uplift(X), mean[:, 1:] - mean[:, [0]])
    # refitting a clone on the same rows gives the same model (seeded folds and trees)
    np.testing.assert_allclose(clone(bag).fit(X, t, y).predict_outcomes(X), bag.predict_outcomes(X))
    assert bag.feature_importances().sum() == pytest.approx(1.0)


def test_from_members_and_a_prefitted_shrink_fit_nothing() -> None:
    df, _ = make_experiment(600, SEED)
    X, t, y = df[FEATURES], df["arm"].to_numpy(), df["bought"].to_numpy()
    members = [
        TLearner(control=CONTROL, **SMALL).fit(X.iloc[i::2], t[i::2], y[i::2]) for i in (0, 1)
    ]
    bag = FoldAveragedLearner.from_members(TLearner(control=CONTROL), members)
    assert bag.members_ == members
    shrunk = ShrunkUpliftLearner.from_fitted(bag, np.array([0.1, -0.2]), 0.25)
    expected = 0.25 * bag.predict_uplift(X) + 0.75 * np.array([0.1, -0.2])
    np.testing.assert_allclose(shrunk.predict_uplift(X), expected)
    with pytest.raises(ValueError, match="mean_uplift has shape"):
        ShrunkUpliftLearner.from_fitted(bag, np.array([0.1]), 0.5)
    with pytest.raises(ValueError, match="n_folds must be at least 2"):
        FoldAveragedLearner(TLearner(control=CONTROL), n_folds=1).fit(X, t, y)
