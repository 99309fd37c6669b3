"""Off-policy estimators: what a policy would have earned on logged bandit data.

One family, used by training (learner selection, held-out policy values) and by
measurement (candidate policies on the decision log). The design follows zr-obp's
``obp.ope``: a small base class whose ``estimate_policy_value`` and ``estimate_interval``
every estimator shares, and one subclass per estimator.

The inputs are obp's: ``reward`` ``[n]`` observed outcomes, ``action`` ``[n]`` the column
of the logged action among the ``K`` actions, ``pscore`` ``[n]`` (or a scalar) the logging
probability of that action, ``action_dist`` ``[n, K]`` the evaluated policy's probability
of each action, and for DR ``estimated_rewards`` ``[n, K]`` a reward model's prediction for
each action. :func:`bandit_inputs` builds ``action`` and ``action_dist`` from labels.

* IPS: ``mean(w * y)`` with ``w = pi(a_logged | x) / pscore``;
* SNIPS: ``sum(w * y) / sum(w)`` (delta-method SE of the ratio);
* DR: ``mean(sum_a pi(a|x) q(x, a) + w * (y - q(x, a_logged)))``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = [
    "DR",
    "IPS",
    "SNIPS",
    "OffPolicyEstimator",
    "PolicyValue",
    "bandit_inputs",
    "policy_matrix",
]

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class PolicyValue:
    """An estimated expected outcome per row under a policy, with standard error."""

    value: float
    se: float

    def interval(self, z: float = Z95) -> tuple[float, float]:
        """The normal confidence interval ``value -/+ z * se``."""
        return self.value - z * self.se, self.value + z * self.se


def _mean_and_se(terms: np.ndarray) -> PolicyValue:
    return PolicyValue(float(terms.mean()), float(terms.std(ddof=1) / np.sqrt(len(terms))))


@dataclass(frozen=True)
class _Logged:
    """Checked inputs: rewards, logged columns, logging probabilities, policy weights."""

    reward: np.ndarray
    action: np.ndarray
    action_dist: np.ndarray
    weight: np.ndarray


class OffPolicyEstimator:
    """Base class: checks the inputs and turns an estimate into a value and an interval.

    Subclasses implement :meth:`estimate`. Estimators that are the mean of per-row terms
    (IPS, DR) implement :meth:`_terms` instead and get :meth:`estimate_difference`.
    :meth:`evaluate` and :meth:`compare` take policies as labels.
    """

    name: ClassVar[str]

    def _check(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray | float,
        action_dist: np.ndarray,
    ) -> _Logged:
        reward = np.asarray(reward, dtype=float)
        action = np.asarray(action, dtype=np.int64)
        dist = np.asarray(action_dist, dtype=float)
        n = len(reward)
        if not (len(action) == len(dist) == n):
            raise ValueError(
                f"reward, action and action_dist differ in length: {n}, {len(action)}, {len(dist)}"
            )
        if n == 0:
            raise ValueError("no logged rows to evaluate")
        p = np.asarray(pscore, dtype=float)
        if p.ndim and len(p) != n:
            raise ValueError(f"pscore has {len(p)} rows, reward {n}: lengths differ")
        p = np.broadcast_to(p, reward.shape)
        if not np.isfinite(p).all() or (p <= 0).any() or (p > 1).any():
            raise ValueError("logging propensities must lie in (0, 1]")
        weight = dist[np.arange(n), action] / p
        return _Logged(reward, action, dist, weight)

    def _terms(self, data: _Logged, estimated_rewards: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError(f"{self.name} is not a mean of per-row terms")

    def terms(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray | float,
        action_dist: np.ndarray,
        estimated_rewards: np.ndarray | None = None,
    ) -> np.ndarray:
        """The per-row terms whose mean is the estimate (IPS, DR): two policies' terms on
        the same rows give their paired difference (:func:`paired_gain`)."""
        return self._terms(self._check(reward, action, pscore, action_dist), estimated_rewards)

    def estimate(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray | float,
        action_dist: np.ndarray,
        estimated_rewards: np.ndarray | None = None,
    ) -> PolicyValue:
        """The policy value with its standard error."""
        data = self._check(reward, action, pscore, action_dist)
        return _mean_and_se(self._terms(data, estimated_rewards))

    def estimate_policy_value(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray | float,
        action_dist: np.ndarray,
        estimated_rewards: np.ndarray | None = None,
    ) -> float:
        """The estimated value per row of the policy ``action_dist``."""
        return self.estimate(reward, action, pscore, action_dist, estimated_rewards).value

    def estimate_interval(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray | float,
        action_dist: np.ndarray,
        estimated_rewards: np.ndarray | None = None,
        z: float = Z95,
    ) -> tuple[float, float]:
        """The normal confidence interval of the value (``z`` standard errors each side)."""
        return self.estimate(reward, action, pscore, action_dist, estimated_rewards).interval(z)

    def estimate_difference(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray | float,
        action_dist: np.ndarray,
        baseline_dist: np.ndarray,
        estimated_rewards: np.ndarray | None = None,
    ) -> PolicyValue:
        """Value of ``action_dist`` minus that of ``baseline_dist`` on the same rows, with
        the SE of the paired difference.

        Both values share every row where the two policies agree, so the paired SE is much
        smaller than the two values' own SEs combined: it is the figure to read when asking
        whether a targeting policy beats, say, "everyone gets the best arm".
        """
        a = self._terms(self._check(reward, action, pscore, action_dist), estimated_rewards)
        b = self._terms(self._check(reward, action, pscore, baseline_dist), estimated_rewards)
        return _mean_and_se(a - b)

    def evaluate(
        self,
        policy: np.ndarray | Sequence[Hashable],
        logged: np.ndarray | Sequence[Hashable],
        reward: np.ndarray,
        pscore: np.ndarray | float,
        actions: Sequence[Hashable] | None = None,
        estimated_rewards: np.ndarray | None = None,
    ) -> PolicyValue:
        """:meth:`estimate` from labels: ``policy`` the chosen label per row (or a matrix
        over ``actions``), ``logged`` the logged label per row; ``actions`` orders the
        columns of ``estimated_rewards`` (default: labels in order of appearance)."""
        action, dist = bandit_inputs(policy, logged, actions)
        return self.estimate(reward, action, pscore, dist, estimated_rewards)

    def compare(
        self,
        policy: np.ndarray | Sequence[Hashable],
        baseline: np.ndarray | Sequence[Hashable],
        logged: np.ndarray | Sequence[Hashable],
        reward: np.ndarray,
        pscore: np.ndarray | float,
        estimated_rewards: np.ndarray | None = None,
        actions: Sequence[Hashable] | None = None,
    ) -> PolicyValue:
        """:meth:`estimate_difference` from labels (see :meth:`evaluate`)."""
        if actions is None:
            labels = [np.asarray(x, dtype=object).tolist() for x in (logged, policy, baseline)]
            actions = list(dict.fromkeys(a for part in labels for a in part))
        action, dist = bandit_inputs(policy, logged, actions)
        _, base = bandit_inputs(baseline, logged, actions)
        return self.estimate_difference(reward, action, pscore, dist, base, estimated_rewards)


#: One-sided 95 % normal quantile: the promotion rule's margin for noise.
Z_ONE_SIDED_95 = 1.6448536269514722


@dataclass(frozen=True)
class PairedGain:
    """A candidate's value minus the incumbent's on the same rows, with the SE of the
    paired difference, and the promotion rule's verdict on it."""

    candidate: float
    incumbent: float
    gain: float
    se: float
    z: float = Z_ONE_SIDED_95

    @property
    def lower(self) -> float:
        """Lower bound of the one-sided interval of the gain."""
        return self.gain - self.z * self.se

    @property
    def beats(self) -> bool:
        """The rule: the candidate beats the incumbent by more than the noise, i.e. the
        lower bound of the one-sided 95 % interval of the paired gain is above 0."""
        return bool(np.isfinite(self.lower) and self.lower > 0)


def paired_gain(
    candidate_terms: np.ndarray, incumbent_terms: np.ndarray, z: float = Z_ONE_SIDED_95
) -> PairedGain:
    """:class:`PairedGain` of two policies' per-row terms on the same rows (IPS or DR
    terms, :meth:`OffPolicyEstimator.terms`)."""
    a = np.asarray(candidate_terms, dtype=float)
    b = np.asarray(incumbent_terms, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired terms need two equal 1-d arrays of 2+ rows: {a.shape}, {b.shape}")
    d = _mean_and_se(a - b)
    return PairedGain(float(a.mean()), float(b.mean()), d.value, d.se, z)


class IPS(OffPolicyEstimator):
    """Inverse propensity scoring: ``mean(w * y)``."""

    name = "ips"

    def _terms(self, data: _Logged, estimated_rewards: np.ndarray | None) -> np.ndarray:
        return data.weight * data.reward


class SNIPS(OffPolicyEstimator):
    """Self-normalised IPS: ``sum(w * y) / sum(w)``, NaN when no row matches the policy."""

    name = "snips"

    def estimate(
        self,
        reward: np.ndarray,
        action: np.ndarray,
        pscore: np.ndarray | float,
        action_dist: np.ndarray,
        estimated_rewards: np.ndarray | None = None,
    ) -> PolicyValue:
        """The ratio estimate with its delta-method standard error."""
        data = self._check(reward, action, pscore, action_dist)
        w = data.weight
        if w.sum() == 0:
            return PolicyValue(float("nan"), float("nan"))
        value = (w * data.reward).sum() / w.sum()
        se = np.sqrt(np.sum((w * (data.reward - value)) ** 2)) / w.sum()
        return PolicyValue(float(value), float(se))


class DR(OffPolicyEstimator):
    """Doubly robust: the reward model's value of the policy, corrected by IPS on its
    residuals where the logged action is one the policy takes."""

    name = "dr"

    def _terms(self, data: _Logged, estimated_rewards: np.ndarray | None) -> np.ndarray:
        if estimated_rewards is None:
            raise ValueError("DR needs estimated_rewards, the reward model's [n, K]")
        q = np.asarray(estimated_rewards, dtype=float)
        if q.shape != data.action_dist.shape:
            raise ValueError(
                f"estimated_rewards has shape {q.shape}, expected {data.action_dist.shape}"
            )
        if not np.isfinite(q).all():
            raise ValueError("estimated_rewards has missing or infinite entries")
        rows = np.arange(len(q))
        return (data.action_dist * q).sum(axis=1) + data.weight * (
            data.reward - q[rows, data.action]
        )


def policy_matrix(
    policy: np.ndarray | Sequence[Hashable], actions: Sequence[Hashable], n: int
) -> np.ndarray:
    """A policy as a row-stochastic matrix ``[n, K]`` over ``actions``: from the chosen
    action per row (one-hot) or from a probability matrix (checked)."""
    arr = np.asarray(policy)
    if arr.ndim == 2:
        if arr.shape != (n, len(actions)):
            raise ValueError(f"policy matrix has shape {arr.shape}, expected {(n, len(actions))}")
        probs = arr.astype(float)
        if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0):
            raise ValueError("policy probability rows must be non-negative and sum to 1")
        return probs
    if arr.shape != (n,):
        raise ValueError(f"policy has {arr.shape[0] if arr.ndim else 0} rows, expected {n}")
    probs = np.zeros((n, len(actions)))
    probs[np.arange(n), _columns(arr, actions, "policy chooses")] = 1.0
    return probs


def _columns(labels: np.ndarray, actions: Sequence[Hashable], what: str) -> np.ndarray:
    col = {a: k for k, a in enumerate(actions)}
    values = np.asarray(labels, dtype=object).tolist()
    unknown = sorted({a for a in values if a not in col}, key=str)
    if unknown:
        raise ValueError(f"{what} actions outside {list(actions)}: {unknown}")
    return np.array([col[a] for a in values], dtype=np.int64)


def bandit_inputs(
    policy: np.ndarray | Sequence[Hashable],
    logged: np.ndarray | Sequence[Hashable],
    actions: Sequence[Hashable] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(action, action_dist)`` from labels: the logged action's column and the policy's
    matrix over ``actions`` (default: the logged and chosen labels in order of appearance).

    ``policy`` holds the chosen label per row or a probability matrix over ``actions``.
    """
    logged = np.asarray(logged, dtype=object)
    if actions is None:
        chosen = np.asarray(policy, dtype=object)
        extra = chosen.tolist() if chosen.ndim == 1 else []
        actions = list(dict.fromkeys([*logged.tolist(), *extra]))
    if len(np.asarray(policy)) != len(logged):
        raise ValueError(
            f"policy and logged actions differ in length: {len(np.asarray(policy))}, {len(logged)}"
        )
    return _columns(logged, actions, "logged"), policy_matrix(policy, actions, len(logged))
