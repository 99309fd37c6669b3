"""Randomised campaigns: stated assignment probabilities, exposures, and responses and revenue
drawn from the response model; the assigned arm's true probabilities go to the truth."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.core.vocabulary import NO_ACTION
from nextbest.demo.generate.arrays import _choose, _rng, _str_table, _take, _time_order, _timestamps
from nextbest.demo.generate.catalog import (
    ACTIONS,
    DAY,
    HISTORY_DAYS,
    OUTCOME_WINDOW_DAYS,
)
from nextbest.demo.generate.people import _Population
from nextbest.demo.generate.records import _Ids, _person_ids
from nextbest.demo.generate.response import _action_values, _response_probs, _State, _state_at
from nextbest.demo.generate.writer import _Writer


def _campaigns(
    pop: _Population, ids: _Ids, state: _State, seed: int, as_of_s: int, w: _Writer
) -> None:
    rng = _rng(seed, "campaigns")
    start_s = as_of_s - HISTORY_DAYS * DAY
    arm_names = [NO_ACTION] + [a.action_id for a in ACTIONS]
    crm_p = np.flatnonzero(ids.has_crm)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "t", "arm", "prob", "cmp")}
    for c in range(8):
        c_start = as_of_s - 365 * DAY + c * 38 * DAY + int(rng.integers(0, 5 * DAY))
        arms = (
            np.sort(
                rng.choice(len(ACTIONS), size=int(rng.integers(4, len(ACTIONS) + 1)), replace=False)
            )
            + 1
        )
        p_control = float(rng.choice([0.2, 0.25, 0.3]))
        # Stated probabilities: rounded to cents, at least 5% per arm, summing to one.
        free = 1 - p_control - 0.05 * arms.size
        split = np.round(0.05 + rng.dirichlet(np.full(arms.size, 6.0)) * free, 2)
        split[np.argmax(split)] += round(1 - p_control - split.sum(), 2)
        probs = np.concatenate([[p_control], split])
        arm_ids = np.concatenate([[0], arms])
        eligible = crm_p[ids.crm_created_s[crm_p] < c_start]
        chosen = eligible[rng.random(eligible.size) < rng.uniform(0.45, 0.7)]
        parts["p"].append(chosen)
        parts["t"].append(c_start + rng.integers(0, 7 * DAY, chosen.size))
        which = _choose(rng, chosen.size, list(probs))
        parts["arm"].append(arm_ids[which])
        parts["prob"].append(probs[which])
        parts["cmp"].append(np.full(chosen.size, c, np.int8))
    p, t, arm, prob, cmp_ = (np.concatenate(parts[k]) for k in ("p", "t", "arm", "prob", "cmp"))
    order = _time_order(t, p)
    p, t, arm, prob, cmp_ = p[order], t[order], arm[order], prob[order], cmp_[order]

    rc, repeat, holds = _state_at(state, p, t, start_s)
    probs_all = _response_probs(pop, p, rc, repeat, holds)
    values = _action_values(pop, p)
    rows = np.arange(p.size)
    p_arm = probs_all[rows, arm]
    responded = rng.random(p.size) < p_arm
    sigma = 0.3
    revenue = np.where(
        responded, values[rows, arm] * rng.lognormal(-(sigma**2) / 2, sigma, p.size), 0.0
    )
    exposure_id = np.arange(1, p.size + 1, dtype=np.int64)
    w.write(
        "campaign_exposures",
        pa.table(
            {
                "exposure_id": pa.array(exposure_id),
                "crm_id": pc.take(ids.crm, pa.array(p)),
                "campaign_id": _take(_str_table([f"cmp_{i + 1:02d}" for i in range(8)]), cmp_),
                "exposed_at": _timestamps(t * 1_000_000),
                "action_id": _take(_str_table(arm_names), arm),
                "assignment_probability": pa.array(prob.astype(np.float64)),
                "responded": pa.array(responded.astype(np.int8)),
                "revenue": pa.array(np.round(revenue, 2)),
                "outcome_window_days": pa.array(np.full(p.size, OUTCOME_WINDOW_DAYS, np.int16)),
            }
        ),
    )
    w.write(
        "campaign_truth",
        pa.table(
            {
                "exposure_id": pa.array(exposure_id),
                "person_id": _person_ids(p),
                "p_response_assigned_arm": pa.array(p_arm),
                "p_response_no_action": pa.array(probs_all[:, 0]),
            }
        ),
        truth=True,
    )
