"""Models pickled before the learners became one module per learner still load and predict
alike: ``nextbest.models.learners`` re-exports every class a pickle names."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

import nextbest.models.learners as learners

#: Written by the single-module ``nextbest/models/learners.py`` (main before the split): a
#: shrunk T-learner and an S-learner fitted on 300 seeded rows, with their predictions.
BEFORE_SPLIT = Path(__file__).parent / "data" / "learners_before_split.pkl"


def test_a_model_pickled_under_the_old_module_path_loads_and_predicts_the_same() -> None:
    raw = BEFORE_SPLIT.read_bytes()
    assert b"nextbest.models.learners.t_learner" not in raw  # named by the old path only
    saved = pickle.loads(raw)
    models = saved["models"]
    assert isinstance(models["shrunk_t"], learners.ShrunkUpliftLearner)
    assert isinstance(models["shrunk_t"].learner_, learners.TLearner)
    assert isinstance(models["s"], learners.SLearner)
    for name, model in models.items():
        np.testing.assert_array_equal(model.predict_outcomes(saved["X"]), saved["outcomes"][name])


def test_a_model_pickled_now_names_the_learner_s_own_module() -> None:
    model = pickle.loads(BEFORE_SPLIT.read_bytes())["models"]["s"]
    again = pickle.dumps(model)
    assert b"nextbest.models.learners.s_learner" in again
    assert type(pickle.loads(again)) is learners.SLearner
