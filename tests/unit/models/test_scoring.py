"""The stacked scorer gives the decision model's numbers bit for bit, with fewer calls."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from nextbest.core.vocabulary import NO_ACTION
from nextbest.models import compiled_trees
from nextbest.models.decision_model import DecisionModel, ValueModel
from nextbest.models.learners import SLearner, TLearner, XLearner
from nextbest.models.scoring import StackedScorer
from tests.params import SEED

ARMS = ["arm_a", "arm_b", "arm_c"]


def _data(n: int = 3000, f: int = 8, seed: int = SEED) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    X[rng.random((n, f)) < 0.1] = np.nan  # missing values take LightGBM's default branch
    t = rng.choice(np.array([NO_ACTION, *ARMS], dtype=object), size=n)
    lift = np.select([t == "arm_a", t == "arm_b", t == "arm_c"], [0.8, 0.4 * X[:, 1], -0.2], 0)
    p = 1 / (1 + np.exp(-(-1.0 + 0.7 * np.nan_to_num(X[:, 0]) + np.nan_to_num(lift))))
    y = rng.binomial(1, p)
    revenue = y * (30 + 10 * np.nan_to_num(X[:, 2]).clip(-2, 2) + (t == "arm_b") * 5)
    return X, t, y, revenue


def _model(
    learner: str, X: np.ndarray, t: np.ndarray, y: np.ndarray, rev: np.ndarray
) -> DecisionModel:
    cls = {"s_learner": SLearner, "t_learner": TLearner}[learner]
    response = cls(control=NO_ACTION, n_estimators=30, num_leaves=15, random_state=SEED)
    response.fit(X, t, y)
    value = ValueModel(n_estimators=30, random_state=SEED).fit(X, t, rev)
    return DecisionModel(
        response=response,
        value=value,
        feature_names=[f"f{i}" for i in range(X.shape[1])],
        learner_name=learner,
        version="scoring-test",
    )


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, ...]:
    return _data()


@pytest.fixture(scope="module")
def models(data: tuple[np.ndarray, ...]) -> dict[str, DecisionModel]:
    """One fitted model per learner, fitted once (tests copy before changing one)."""
    return {name: _model(name, *data) for name in ("s_learner", "t_learner")}


@pytest.mark.parametrize("learner", ["s_learner", "t_learner"])
@pytest.mark.parametrize("rows", [1, 2, 7, 64])
def test_stacked_scores_equal_the_per_arm_scores_bit_for_bit(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel], learner: str, rows: int
) -> None:
    X = data[0]
    model = copy.deepcopy(models[learner])
    reference = copy.deepcopy(model)  # untouched: the scikit-learn path, one call per arm
    scorer = StackedScorer.from_model(model)
    assert scorer is not None
    Xq = X[:rows] if rows > 1 else X[5:6]
    pc, pt, val = scorer.predict_arms(Xq)
    rc, rt, rv = reference.predict_arms(Xq)
    assert pc.shape == (len(Xq),) and pt.shape == (len(Xq), len(ARMS)) == val.shape
    assert np.array_equal(pc, rc) and np.array_equal(pt, rt) and np.array_equal(val, rv)
    assert np.array_equal(
        scorer.predict_control_value(Xq), reference.predict_control_value(Xq), equal_nan=True
    )


def test_value_model_without_trees_and_without_control_values(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel]
) -> None:
    X = data[0]
    model = copy.deepcopy(models["s_learner"])
    model.value.model_ = None  # too few responders: per-arm means
    model.value.control_model_ = None  # control mean
    scorer = StackedScorer.from_model(model)
    assert scorer is not None
    np.testing.assert_array_equal(scorer.predict_arms(X[:4])[2], model.predict_arms(X[:4])[2])
    np.testing.assert_array_equal(
        scorer.predict_control_value(X[:4]), model.predict_control_value(X[:4])
    )
    del model.value.control_mean_  # fitted before control values existed
    assert np.isnan(scorer.predict_control_value(X[:4])).all()


def test_models_it_cannot_stack_are_left_to_their_own_methods(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel]
) -> None:
    X, t, y, _ = data
    model = copy.deepcopy(models["s_learner"])
    model.response = XLearner(control=NO_ACTION, n_estimators=5).fit(X[:600], t[:600], y[:600])
    assert StackedScorer.from_model(model) is None
    model.response = SLearner(control=NO_ACTION, n_estimators=5, calibration="sigmoid").fit(
        X[:600], t[:600], y[:600]
    )
    assert StackedScorer.from_model(model) is None


def test_the_scorer_stands_in_for_the_model(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel]
) -> None:
    X = data[0]
    model = models["s_learner"]
    scorer = StackedScorer.from_model(model)
    assert scorer is not None
    assert scorer.feature_names == model.feature_names and scorer.arm_ids == ARMS
    assert scorer.version == "scoring-test" and scorer.learner_name == "s_learner"
    with pytest.raises(ValueError, match=r"\[n, 8\]"):
        scorer.predict_arms(X[:2, :5])


def _awkward_rows(X: np.ndarray, seed: int = SEED) -> np.ndarray:
    """Rows with NaN, exact zeros, values LightGBM reads as zero (|x| <= 1e-35) and the
    split thresholds' neighbourhood, which take every branch of the node test."""
    rng = np.random.default_rng(seed)
    A = X[:400].copy()
    A[rng.random(A.shape) < 0.1] = 0.0
    A[rng.random(A.shape) < 0.05] = 1e-36
    A[rng.random(A.shape) < 0.05] = -1e-36
    A[rng.random(A.shape) < 0.1] = np.nan
    return A


@pytest.mark.skipif(not compiled_trees.available(), reason="numba not installed")
@pytest.mark.parametrize("learner", ["s_learner", "t_learner"])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_trees_equal_the_per_arm_scores_bit_for_bit(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel], learner: str, threads: int
) -> None:
    model = copy.deepcopy(models[learner])
    reference = copy.deepcopy(model)
    scorer = StackedScorer.from_model(model, num_threads=threads, compiled=True)
    assert scorer is not None and scorer.compiled
    Xq = np.vstack([data[0][:3000], _awkward_rows(data[0])])
    # Bypass the LightGBM check: the compiled numbers themselves must be the model's.
    outcomes, values = scorer._arms(scorer._compiled, Xq)
    rc, rt, rv = reference.predict_arms(Xq)
    assert np.array_equal(outcomes[:, 0], rc) and np.array_equal(outcomes[:, 1:], rt)
    assert np.array_equal(values, rv)
    pc, pt, val = scorer.predict_arms(Xq)
    assert scorer.compiled and scorer.checked_rows == StackedScorer.CHECK_ROWS
    assert np.array_equal(pt, rt) and np.array_equal(val, rv)
    assert np.array_equal(scorer.predict_control_value(Xq), reference.predict_control_value(Xq))
    assert scorer.compiled  # no call fell back


@pytest.mark.skipif(not compiled_trees.available(), reason="numba not installed")
def test_a_compiled_difference_falls_back_to_lightgbm(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel]
) -> None:
    model = copy.deepcopy(models["s_learner"])
    scorer = StackedScorer.from_model(model, compiled=True)
    assert scorer is not None and scorer.compiled
    leaves = scorer._compiled.outcomes[0].booster._nodes[6]
    leaves += 0.25  # every leaf off: any checked row differs
    X = data[0][:500]
    pc, pt, _ = scorer.predict_arms(X)
    rc, rt, _ = model.predict_arms(X)
    assert not scorer.compiled  # switched to LightGBM for good
    assert np.array_equal(pc, rc) and np.array_equal(pt, rt)  # and answered LightGBM's numbers


@pytest.mark.skipif(not compiled_trees.available(), reason="numba not installed")
def test_compiled_scorer_pickles_for_spark(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel]
) -> None:
    from pyspark import cloudpickle

    scorer = StackedScorer.from_model(copy.deepcopy(models["t_learner"]), compiled=True)
    again = pickle.loads(cloudpickle.dumps(scorer))
    assert again.compiled and again.version == scorer.version
    X = data[0][:50]
    for a, b in zip(again.predict_arms(X), scorer.predict_arms(X), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.skipif(not compiled_trees.available(), reason="numba not installed")
def test_boosters_it_cannot_compile_are_named(data: tuple[np.ndarray, ...]) -> None:
    import lightgbm

    X, t, y, _ = data
    multi = lightgbm.LGBMClassifier(n_estimators=3, verbose=-1).fit(X, np.arange(len(X)) % 3)
    with pytest.raises(compiled_trees.NotCompilable):
        compiled_trees.CompiledBooster(multi.booster_, X.shape[1])
    huber = lightgbm.LGBMRegressor(n_estimators=3, objective="huber", verbose=-1).fit(X, y)
    with pytest.raises(compiled_trees.NotCompilable, match="huber"):
        compiled_trees.CompiledBooster(huber.booster_, X.shape[1])


@pytest.mark.skipif(not compiled_trees.available(), reason="numba not installed")
@pytest.mark.parametrize("learner", ["s_learner", "t_learner"])
def test_online_scorer_is_checked_once_and_then_scores_without_lightgbm(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel], learner: str
) -> None:
    model = copy.deepcopy(models[learner])
    reference = copy.deepcopy(model)
    scorer = StackedScorer.from_model(model, compiled=True, check_rows=0)
    assert scorer is not None and scorer.compiled
    assert scorer.verify()  # the start-up check: probe rows at every threshold's edges
    checked = scorer.checked_rows
    assert checked == 256
    Xq = np.vstack([data[0][:200], _awkward_rows(data[0])])
    for rows in (Xq[:1], Xq[1:3], Xq[3:40], Xq):  # one-row calls as online, and batches
        pc, pt, val = scorer.predict_arms(rows)
        rc, rt, rv = reference.predict_arms(rows)
        assert np.array_equal(pc, rc) and np.array_equal(pt, rt) and np.array_equal(val, rv)
        assert np.array_equal(
            scorer.predict_control_value(rows), reference.predict_control_value(rows)
        )
    assert scorer.compiled and scorer.checked_rows == checked  # no per-call LightGBM


@pytest.mark.skipif(not compiled_trees.available(), reason="numba not installed")
def test_the_start_up_check_finds_a_difference_only_at_the_thresholds(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel]
) -> None:
    model = copy.deepcopy(models["s_learner"])
    scorer = StackedScorer.from_model(model, compiled=True, check_rows=0)
    assert scorer is not None and scorer.compiled
    thresholds = scorer._compiled.outcomes[0].booster._nodes[1]
    # `<` instead of `<=`, in effect: only a value exactly on a threshold goes the other way.
    thresholds[:] = np.nextafter(thresholds, -np.inf)
    X = data[0][:500]
    outcomes, _ = scorer._arms(scorer._compiled, X)
    rc, rt, _ = model.predict_arms(X)
    assert np.array_equal(outcomes[:, 0], rc) and np.array_equal(outcomes[:, 1:], rt)
    assert not scorer.verify()  # the probe rows sit on the thresholds: caught
    assert not scorer.compiled  # LightGBM for good
    pc, pt, _ = scorer.predict_arms(X)
    assert np.array_equal(pc, rc) and np.array_equal(pt, rt)


def test_probe_rows_sit_on_the_thresholds_and_their_neighbours(
    data: tuple[np.ndarray, ...], models: dict[str, DecisionModel]
) -> None:
    if not compiled_trees.available():
        pytest.skip("numba not installed")
    scorer = StackedScorer.from_model(copy.deepcopy(models["s_learner"]), compiled=True)
    assert scorer is not None
    booster = scorer._compiled.outcomes[0].booster
    P = compiled_trees.probe_rows([booster], n_rows=512)
    assert P.shape == (512, booster.n_base)
    assert np.array_equal(P, compiled_trees.probe_rows([booster], n_rows=512), equal_nan=True)
    feat, thr = booster._nodes[0], booster._nodes[1]
    f = int(feat[0])  # the first split's feature
    column = P[:, f]
    assert np.isnan(column).any() and (column == 0).any()
    assert np.isin(thr[feat == f], column).any()
    assert np.isin(np.nextafter(thr[feat == f], np.inf), column).any()


NO_NUMBA = """
import sys
sys.modules["numba"] = None  # `import numba` raises ImportError, as when it is not installed
import numpy as np
from nextbest.models import compiled_trees
from nextbest.models.scoring import StackedScorer
from tests.unit.models.test_scoring import _data, _model
assert not compiled_trees.available()
data = _data(n=600)
model = _model("s_learner", *data)
scorer = StackedScorer.from_model(model, compiled=True, check_rows=0)
assert scorer is not None and not scorer.compiled and not scorer.verify()
X = data[0][:50]
for a, b in zip(scorer.predict_arms(X), model.predict_arms(X), strict=True):
    assert np.array_equal(a, b)
print("lightgbm without numba")
"""


def test_without_numba_the_scorer_uses_lightgbm() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", NO_NUMBA], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "lightgbm without numba" in out.stdout
