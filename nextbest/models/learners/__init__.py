"""Multi-treatment uplift learners with LightGBM base models (scikit-learn contract).

Every learner takes its parameters in ``__init__``, learns in
``fit(X, treatment, y, sample_weight=None)`` and exposes fitted attributes ending in ``_``:

* ``arms_``: the treatment arms in sorted order, control excluded;
* ``classes_``: ``[control, *arms_]``, the column order of :meth:`predict_outcomes`;
* ``feature_names_in_``, ``categories_`` (per categorical column), ``binary_``.

``predict_outcomes(X)`` returns ``[n, 1 + A]``: the predicted outcome (a calibrated
response probability for a binary outcome, the expected value for a continuous one) under
control, then under each arm. ``predict_uplift(X)`` returns ``[n, A]``: outcome under each
arm minus outcome under control.

``X`` may be a numpy array (numeric) or a DataFrame; string, object, bool-free category
columns are ordinal-encoded with the categories stored in the fitted learner and passed to
LightGBM as categorical features, so unseen categories at predict time become missing.
"""

from __future__ import annotations

from collections.abc import Hashable

from sklearn.base import BaseEstimator

# Models pickled before the learners were split name their classes under this package
# (``nextbest.models.learners.TLearner``, ``..._FeatureEncoder``): they load through these names.
from nextbest.models.learners.base import (
    NO_ARM_COLUMNS,
    Head,
    with_arm_columns,
)
from nextbest.models.learners.base import (
    _FeatureEncoder as _FeatureEncoder,
)
from nextbest.models.learners.dr_learner import DRLearner
from nextbest.models.learners.ensemble import EnsembleLearner
from nextbest.models.learners.propensity import inverse_propensity_weights, logged_propensity
from nextbest.models.learners.s_learner import SLearner
from nextbest.models.learners.shrunk import ShrunkUpliftLearner
from nextbest.models.learners.t_learner import TLearner
from nextbest.models.learners.x_learner import XLearner

__all__ = [
    "NO_ARM_COLUMNS",
    "DRLearner",
    "EnsembleLearner",
    "Head",
    "SLearner",
    "TLearner",
    "XLearner",
    "default_candidates",
    "ShrunkUpliftLearner",
    "inverse_propensity_weights",
    "logged_propensity",
    "with_arm_columns",
]


def default_candidates(control: Hashable, random_state: int = 0) -> dict[str, BaseEstimator]:
    """The standard candidate set: T, S (plain and regularised), X and DR learners."""
    common = {"control": control, "random_state": random_state}
    return {
        "t_learner": TLearner(**common),
        "s_learner": SLearner(**common),
        "s_learner_reg": SLearner(
            num_leaves=15, min_child_samples=100, reg_lambda=5.0, n_estimators=300, **common
        ),
        "x_learner": XLearner(**common),
        "dr_learner": DRLearner(min_child_samples=100, reg_lambda=5.0, **common),
    }
