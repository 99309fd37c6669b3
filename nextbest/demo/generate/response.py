"""The heterogeneous uplift model: a person's state at a time (recent complaint, repeat
interest, holdings), the response probability of each arm (control first) and the expected
revenue given a response."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextbest.demo.generate.arrays import _sigmoid, _time_order, _window_count
from nextbest.demo.generate.catalog import (
    ACTIONS,
    CATEGORIES,
    COMPLAINT_WINDOW_DAYS,
    DAY,
    PRODUCTS,
    REPEAT_WINDOW_DAYS,
)
from nextbest.demo.generate.people import _Population


@dataclass
class _State:
    """Time-stamped latent state the response model looks at (sorted search keys)."""

    complaint_keys: np.ndarray  # person << 32 | seconds since history start, sorted
    repeat_keys: np.ndarray  # (person * n_categories + category) << 32 | seconds, sorted
    hold_person: np.ndarray
    hold_product: np.ndarray
    hold_since_s: np.ndarray


def _action_values(pop: _Population, persons: np.ndarray) -> np.ndarray:
    """Expected revenue given response, [m, 1 + len(ACTIONS)] (control first)."""
    scale = 0.75 + 0.15 * pop.income[persons].astype(np.float64)
    prices = {p.product_id: p.price for p in PRODUCTS}
    base = [120.0]
    for a in ACTIONS:
        if a.product_id is not None:
            base.append(prices[a.product_id])
        elif a.kind == "retention":
            base.append(320.0)
        else:
            base.append(25.0)
    return scale[:, None] * np.asarray(base)[None, :]


def _response_probs(
    pop: _Population,
    persons: np.ndarray,
    recent_complaint: np.ndarray,
    repeat: np.ndarray,
    holds: np.ndarray,
) -> np.ndarray:
    """Response probabilities [m, 1 + len(ACTIONS)] (control first) given the state.

    ``repeat`` is [m, n_categories] recent repeat interest, ``holds`` [m, n_products].
    """
    inter = pop.interest[persons].astype(np.float64)
    digital = pop.digital[persons].astype(np.float64)
    churn = pop.churn[persons].astype(np.float64)
    income = pop.income[persons].astype(np.float64)
    rc = recent_complaint.astype(np.float64)
    base = (
        -2.3
        + 1.4 * (inter.max(axis=1) - 0.45)
        + 0.22 * income
        + 0.5 * repeat.any(axis=1)
        - 0.9 * churn
        + 0.15 * (pop.tenure_days[persons] > 3 * 365)
    )
    product_index = {p.product_id: i for i, p in enumerate(PRODUCTS)}
    channel_aff = {
        "email": 0.0,
        "sms": 0.1,
        "push": 0.8 * (digital - 0.5),
        "web": 0.6 * (digital - 0.5),
    }
    logits = [base]
    for a in ACTIONS:
        if a.category is not None and a.product_id is not None:
            c = CATEGORIES.index(a.category)
            tau = (
                0.1
                + 2.6 * (inter[:, c] - 0.3)
                + 1.1 * repeat[:, c]
                + channel_aff.get(a.channel, 0.0)
                - 1.8 * rc  # sleeping dogs: a sales push right after a complaint backfires
                - 3.0 * np.maximum(churn - 0.45, 0.0)
                - 1.2 * holds[:, product_index[a.product_id]]
            )
            if a.kind == "upsell":
                tau = tau + 0.2 * income - 0.3
        elif a.action_id == "app_loyalty_bonus":
            tau = -0.3 + 3.0 * churn * digital - 0.6 * rc
        elif a.action_id == "call_retention_offer":
            tau = -0.5 + 3.0 * churn + 0.9 * rc - 0.5 * digital
        else:  # service tips: mildly helpful for people who struggle
            tau = 0.05 + 1.5 * pop.complaint[persons] - 0.3 * digital
        logits.append(base + tau)
    return _sigmoid(np.stack(logits, axis=1))


def _state_at(
    state: _State, persons: np.ndarray, t: np.ndarray, start_s: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Sorted queries make numpy's searchsorted walk the keys in order (much faster).
    order = _time_order(t, persons)
    order = order[np.argsort(persons[order], kind="stable")]
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    persons, t = persons[order], t[order]
    rel = t - start_s
    k = len(CATEGORIES)
    rc = _window_count(state.complaint_keys, persons, rel, COMPLAINT_WINDOW_DAYS * DAY) > 0
    repeat = np.stack(
        [
            _window_count(
                state.repeat_keys, persons.astype(np.int64) * k + c, rel, REPEAT_WINDOW_DAYS * DAY
            )
            > 0
            for c in range(k)
        ],
        axis=1,
    )
    # Holdings per (person, product) with their start; few per person, so a sorted lookup.
    hkey = state.hold_person.astype(np.int64) * len(PRODUCTS) + state.hold_product
    order = np.argsort(hkey, kind="stable")
    hkey, hsince = hkey[order], state.hold_since_s[order]
    holds = np.zeros((persons.size, len(PRODUCTS)), dtype=bool)
    for j in range(len(PRODUCTS)):
        q = persons.astype(np.int64) * len(PRODUCTS) + j
        pos = np.searchsorted(hkey, q).clip(0, max(hkey.size - 1, 0))
        if hkey.size:
            holds[:, j] = (hkey[pos] == q) & (hsince[pos] <= t)
    return rc[inverse], repeat[inverse], holds[inverse]
