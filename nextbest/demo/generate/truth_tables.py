"""The truth under ``truth/``: persons' latent attributes, households, the person of every
record, and each person's response probabilities and values at ``as_of``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.core.vocabulary import NO_ACTION
from nextbest.demo.generate.catalog import ACTIONS, CATEGORIES, DAY, HISTORY_DAYS
from nextbest.demo.generate.people import _Population
from nextbest.demo.generate.records import _Ids, _person_ids
from nextbest.demo.generate.response import _action_values, _response_probs, _State, _state_at
from nextbest.demo.generate.writer import _Writer


def _truth(pop: _Population, ids: _Ids, state: _State, as_of_s: int, w: _Writer) -> None:
    persons = np.arange(pop.n)
    start_s = as_of_s - HISTORY_DAYS * DAY
    pid = _person_ids(persons)
    hid = pc.binary_join_element_wise(
        "H", pc.utf8_lpad(pc.cast(pa.array(pop.household), pa.string()), 7, "0"), ""
    )
    cols: dict[str, pa.Array] = {
        "person_id": pid,
        "household_id": hid,
        "age": pa.array(pop.age.astype(np.int16)),
        "income_tier": pa.array(pop.income),
        "tenure_days": pa.array(pop.tenure_days),
    }
    for c, name in enumerate(CATEGORIES):
        cols[f"interest_{name}"] = pa.array(pop.interest[:, c])
    cols["digital_affinity"] = pa.array(pop.digital)
    cols["churn_risk"] = pa.array(pop.churn)
    cols["complaint_propensity"] = pa.array(pop.complaint)
    cols["has_crm"] = pa.array(ids.has_crm)
    w.write("persons", pa.table(cols), truth=True)
    w.write("households", pa.table({"household_id": hid, "person_id": pid}), truth=True)
    w.write("records", pa.concat_tables(ids.records), truth=True)

    response: dict[str, pa.Array] = {"person_id": pid}
    arm_names = [NO_ACTION] + [a.action_id for a in ACTIONS]
    chunk = 200_000
    probs_parts, value_parts = [], []
    for lo in range(0, pop.n, chunk):
        p = persons[lo : lo + chunk]
        rc, repeat, holds = _state_at(state, p, np.full(p.size, as_of_s, np.int64), start_s)
        probs_parts.append(_response_probs(pop, p, rc, repeat, holds))
        value_parts.append(_action_values(pop, p))
    probs, values = np.concatenate(probs_parts), np.concatenate(value_parts)
    for i, a in enumerate(arm_names):
        response[f"p_{a}"] = pa.array(probs[:, i])
    for i, a in enumerate(arm_names):
        response[f"value_{a}"] = pa.array(values[:, i])
    w.write("response", pa.table(response), truth=True)
