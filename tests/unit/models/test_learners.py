import numpy as np
import pytest
from sklearn.base import clone

from nextbest.models.evaluation import qini_auc_score
from nextbest.models.learners import (
    DRLearner,
    ShrunkUpliftLearner,
    SLearner,
    TLearner,
    XLearner,
)
from tests.params import SEED, UPLIFT_ROWS
from tests.unit.models.synthetic import ARMS, CONTROL, make_experiment

FEATURES = ["x1", "x2", "region"]


@pytest.fixture(scope="module")
def experiment():
    df, p = make_experiment(UPLIFT_ROWS, SEED)
    test, p_test = make_experiment(UPLIFT_ROWS // 2, SEED + 1)
    return df, test, p_test - 0  # p_test: true response per arm on the test rows


LEARNERS = {
    "t": TLearner(
        control=CONTROL,
        random_state=SEED,
        num_leaves=7,
        min_child_samples=50,
        n_estimators=100,
        n_jobs=1,
    ),
    "s": SLearner(
        control=CONTROL,
        random_state=SEED,
        num_leaves=7,
        min_child_samples=50,
        n_estimators=100,
        n_jobs=1,
    ),
    "x": XLearner(
        control=CONTROL,
        random_state=SEED,
        num_leaves=7,
        min_child_samples=50,
        n_estimators=100,
        n_jobs=1,
    ),
    "dr": DRLearner(
        control=CONTROL,
        random_state=SEED,
        num_leaves=7,
        min_child_samples=50,
        n_estimators=100,
        n_jobs=1,
    ),
    "s_sigmoid": SLearner(
        control=CONTROL,
        random_state=SEED,
        num_leaves=7,
        min_child_samples=50,
        calibration="sigmoid",
    ),
}


@pytest.mark.parametrize("name", list(LEARNERS))
def test_learners_recover_the_known_effects(name, experiment) -> None:
    df, test, p_test = experiment
    model = clone(LEARNERS[name]).fit(df[FEATURES], df["arm"], df["bought"])
    assert model.arms_ == ARMS
    assert model.classes_ == [CONTROL, *ARMS]
    assert model.binary_
    assert model.categories_ == {"region": ["north", "south", "west"]}
    q = model.predict_outcomes(test[FEATURES])
    u = model.predict_uplift(test[FEATURES])
    assert q.shape == (len(test), 3) and u.shape == (len(test), 2)
    np.testing.assert_allclose(u, q[:, 1:] - q[:, [0]], atol=1e-12)
    true_uplift = p_test[:, 1:] - p_test[:, [0]]
    arms = test["arm"].to_numpy()
    for j, arm in enumerate(ARMS):
        assert np.corrcoef(u[:, j], true_uplift[:, j])[0, 1] > 0.3, arm
        m = (arms == arm) | (arms == CONTROL)
        t = (arms[m] == arm).astype(int)
        y = test["bought"].to_numpy()[m]
        learnt = qini_auc_score(y, u[m, j], t)
        oracle = qini_auc_score(y, true_uplift[m, j], t)
        assert learnt > 0.5 * oracle > 0, arm


def test_learners_accept_numpy_and_unseen_categories(experiment) -> None:
    df, test, _ = experiment
    X = df[["x1", "x2"]].to_numpy()
    model = TLearner(control=CONTROL, random_state=SEED, n_estimators=50, n_jobs=1).fit(
        X, df["arm"], df["bought"]
    )
    assert list(model.feature_names_in_) == ["x0", "x1"]
    assert model.predict_outcomes(test[["x1", "x2"]].to_numpy()).shape == (len(test), 3)
    cat = SLearner(control=CONTROL, random_state=SEED, n_estimators=50, n_jobs=1).fit(
        df[FEATURES], df["arm"], df["bought"]
    )
    odd = test[FEATURES].head(5).assign(region="nowhere")
    assert np.isfinite(cat.predict_uplift(odd)).all()
    with pytest.raises(ValueError, match="region"):
        cat.predict_uplift(test[["x1", "x2"]])


def test_continuous_outcome_uses_regressors(experiment) -> None:
    df, _, _ = experiment
    model = SLearner(control=CONTROL, random_state=SEED).fit(df[FEATURES], df["arm"], df["revenue"])
    assert not model.binary_
    q = model.predict_outcomes(df[FEATURES])
    assert q.max() > 1.0  # amounts, not probabilities


def test_bad_treatment_is_named(experiment) -> None:
    df, _, _ = experiment
    with pytest.raises(ValueError, match="control arm 'nobody'"):
        TLearner(control="nobody").fit(df[FEATURES], df["arm"], df["bought"])
    with pytest.raises(ValueError, match="only the control arm"):
        TLearner(control=CONTROL).fit(df[FEATURES], np.full(len(df), CONTROL), df["bought"])


def test_shrinkage_keeps_the_ranking_and_moves_towards_the_mean(experiment) -> None:
    df, test, _ = experiment
    base = clone(LEARNERS["t"]).fit(df[FEATURES], df["arm"], df["bought"])
    raw = base.predict_uplift(test[FEATURES])
    full = ShrunkUpliftLearner(LEARNERS["t"], shrinkage=1.0).fit(
        df[FEATURES], df["arm"], df["bought"]
    )
    np.testing.assert_allclose(full.predict_uplift(test[FEATURES]), raw, atol=1e-12)
    half = ShrunkUpliftLearner(LEARNERS["t"], shrinkage=0.5).fit(
        df[FEATURES], df["arm"], df["bought"]
    )
    assert half.arms_ == ARMS and half.classes_ == [CONTROL, *ARMS]
    np.testing.assert_allclose(
        half.mean_uplift_, base.predict_uplift(df[FEATURES]).mean(axis=0), atol=1e-12
    )
    shrunk = half.predict_uplift(test[FEATURES])
    q = half.predict_outcomes(test[FEATURES])
    np.testing.assert_allclose(q[:, 0], base.predict_outcomes(test[FEATURES])[:, 0])
    for j in range(len(ARMS)):
        assert np.array_equal(np.argsort(shrunk[:, j]), np.argsort(raw[:, j]))
        assert shrunk[:, j].std() == pytest.approx(0.5 * raw[:, j].std())
    with pytest.raises(ValueError, match="shrinkage"):
        ShrunkUpliftLearner(LEARNERS["t"], shrinkage=1.5).fit(df[FEATURES], df["arm"], df["bought"])
