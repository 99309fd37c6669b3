"""Thompson sampling as the policy's exploration: propensities, reproducibility, and its
draws against an independent Monte-Carlo computation of the same posterior."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from nextbest.decisions import thompson
from nextbest.decisions.engine import decide
from nextbest.decisions.policy import Exploration
from nextbest.decisions.rules import compile_plan
from tests.params import SEED, SMALL_CUSTOMERS
from tests.unit.decisions.conftest import NOW, ViewsModel, ctx, default_row, matrix


def thompson_plan(catalog, policy, names, observations: float = 50.0, samples: int = 256):
    exploration = Exploration(
        method="thompson",
        salt="t",
        thompson_samples=samples,
        thompson_observations=observations,
    )
    pol = policy.model_copy(update={"exploration": exploration})
    return compile_plan(catalog, pol, names, ViewsModel(catalog.ids))


def rows(names, n: int, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return matrix(
        names,
        [
            {
                **default_row(names),
                "views_30d_phones": float(rng.integers(0, 10)),
                "contacts_email_7d": float(rng.random() < 0.2),
            }
            for _ in range(n)
        ],
    )


def test_thompson_propensities_are_probabilities_summing_to_one(catalog, policy, names):
    plan = thompson_plan(catalog, policy, names)
    X = rows(names, SMALL_CUSTOMERS)
    ids = [f"C{i}" for i in range(len(X))]
    d = decide(X, ids, plan, ctx())
    probs = d.action_probabilities()
    assert ((probs >= 0) & (probs <= 1)).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert ((d.propensity > 0) & (d.propensity <= 1)).all()
    chosen_col = np.where(d.chosen < 0, probs.shape[1] - 1, d.chosen)
    np.testing.assert_allclose(d.propensity, probs[np.arange(d.n), chosen_col])
    treat = ~d.holdout
    # a propensity is a share of the draws: at least one of them
    samples = plan.policy.exploration.thompson_samples
    assert (d.propensity[treat] >= 1 / samples - 1e-12).all()
    np.testing.assert_allclose(
        d.propensity[treat] * samples, np.round(d.propensity[treat] * samples)
    )
    # only options the rules let through carry probability
    off = ~d.explore_options & (probs[:, :-1] > 0)
    assert not off.any()
    # it explores, but mostly takes the greedy choice, and logs what it did
    assert 0.01 < d.explored[treat].mean() < 0.6
    recs = d.records()
    assert [r["propensity"] for r in recs] == d.propensity.tolist()
    assert {r["reason"] for r in recs if r["explored"]} == {"EXPLORATION"}


def test_thompson_is_reproducible_and_depends_on_the_bucket(catalog, policy, names):
    plan = thompson_plan(catalog, policy, names)
    X = rows(names, 500)
    ids = [f"C{i}" for i in range(len(X))]
    d = decide(X, ids, plan, ctx())
    again = decide(X, ids, plan, ctx())
    assert np.array_equal(d.chosen, again.chosen)
    np.testing.assert_array_equal(d.propensity, again.propensity)
    single = [decide(X[i : i + 1], ids[i : i + 1], plan, ctx()).chosen[0] for i in range(50)]
    assert single == d.chosen[:50].tolist()
    other = decide(X, ids, plan, ctx(now=NOW + timedelta(days=1)))
    assert not np.array_equal(other.chosen, d.chosen)


def test_wider_posteriors_explore_more(catalog, policy, names):
    X = rows(names, 1000)
    ids = [f"C{i}" for i in range(len(X))]
    narrow = decide(X, ids, thompson_plan(catalog, policy, names, 5000.0), ctx())
    wide = decide(X, ids, thompson_plan(catalog, policy, names, 5.0), ctx())
    assert wide.explored.mean() > narrow.explored.mean() + 0.05


def test_draw_probabilities_match_an_independent_monte_carlo():
    # Three actions and no action; the probability each is best, computed here with
    # numpy's own generator and many draws, against the module's hashed draws.
    mean = np.array([[0.5, 0.4, -0.2], [0.1, 0.0, 0.05]])
    sd = np.array([[0.3, 0.3, 0.4], [0.2, 0.5, 0.1]])
    options = np.array([[True, True, True], [True, False, True]])
    rng = np.random.default_rng(SEED)
    z = rng.standard_normal((200_000, *mean.shape))
    values = np.where(options, mean + sd * z, -np.inf)
    values = np.concatenate([values, np.zeros((*values.shape[:2], 1))], axis=2)
    best = values.argmax(axis=2)
    expected = np.stack([(best == k).mean(axis=0) for k in range(4)], axis=1)
    got = thompson.draw(np.array([11, 12], dtype=np.uint64), mean, sd, options, 4096)
    np.testing.assert_allclose(got.probs, expected, atol=4 * 0.5 / np.sqrt(4096))
    assert got.probs[1, 1] == 0.0
    np.testing.assert_allclose(got.probs.sum(axis=1), 1.0)
    # the pick is one of the draws' winners, so it carries probability
    assert (got.probs[np.arange(2), got.pick] > 0).all()
