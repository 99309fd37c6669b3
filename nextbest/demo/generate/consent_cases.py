"""Service cases (complaints among them, whose keys the response model reads) and the consent
ledger: grants and withdrawals per purpose and channel, under the id the recording system
holds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.demo.generate.arrays import (
    _rng,
    _sample_rows,
    _str_table,
    _take,
    _time_order,
    _timestamps,
    _unique_ids,
)
from nextbest.demo.generate.catalog import CHANNELS, DAY, HISTORY_DAYS, PURPOSES
from nextbest.demo.generate.noise import _PHONE_PROBS, _email_forms, _phone_forms
from nextbest.demo.generate.people import _Population
from nextbest.demo.generate.records import _Ids
from nextbest.demo.generate.writer import _Writer

_CASE_REASONS = ("billing_dispute", "network_fault", "delivery_delay", "faulty_device")
_SERVICE_REASONS = (
    "billing_question",
    "technical_support",
    "address_change",
    "cancellation_enquiry",
)


def _service_cases(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> np.ndarray:
    """Write service_cases and return the sorted complaint keys."""
    rng = _rng(seed, "service")
    start_s = as_of_s - HISTORY_DAYS * DAY
    persons = np.flatnonzero(ids.has_crm)
    nc = rng.poisson(0.15 + 3.5 * pop.complaint[persons] + 1.2 * pop.churn[persons])
    p = np.repeat(persons, nc)
    opened = start_s + rng.integers(0, HISTORY_DAYS * DAY, p.size)
    order = _time_order(opened, p)
    p, opened = p[order], opened[order]
    m = p.size
    complaint = rng.random(m) < np.minimum(0.08 + 1.6 * pop.complaint[p], 0.9)
    reason_c = rng.integers(0, len(_CASE_REASONS), m)
    svc_w = np.stack(
        [np.full(m, 1.0), np.full(m, 1.0), np.full(m, 0.4), 4.0 * pop.churn[p]], axis=1
    )
    reason_s = _sample_rows(svc_w, np.arange(m), rng)
    reasons = _str_table(list(_CASE_REASONS) + list(_SERVICE_REASONS))
    reason = np.where(complaint, reason_c, len(_CASE_REASONS) + reason_s)
    closed = opened + (3600 + rng.exponential(4 * DAY, m)).astype(np.int64)
    still_open = (closed >= as_of_s) | (rng.random(m) < 0.01)

    # Cases of persons with a duplicate CRM record sometimes sit on the duplicate.
    dup_pos = np.searchsorted(ids.crm_dup_of, p).clip(0, max(ids.crm_dup_of.size - 1, 0))
    # A tiny world may have no duplicate at all (nothing to index); the draw stays in place.
    has_dup = ids.crm_dup_of[dup_pos] == p if ids.crm_dup_of.size else np.zeros(m, dtype=bool)
    on_dup = has_dup & (rng.random(m) < 0.25)
    crm_id = pc.if_else(
        pa.array(on_dup),
        pc.take(ids.crm_dup, pa.array(dup_pos))
        if ids.crm_dup_of.size
        else pa.nulls(m, pa.string()),
        pc.take(ids.crm, pa.array(p)),
    )
    table = pa.table(
        {
            "case_id": _unique_ids(rng, m, "CS", 9),
            "crm_id": crm_id,
            "opened_at": _timestamps(opened * 1_000_000),
            "closed_at": _timestamps(closed * 1_000_000, still_open),
            "complaint": pa.array(complaint),
            "reason": _take(reasons, reason),
        }
    )
    w.write("service_cases", table)
    return np.sort((p[complaint].astype(np.int64) << 32) | (opened[complaint] - start_s))


def _consent(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> None:
    rng = _rng(seed, "consent")
    start_s = as_of_s - HISTORY_DAYS * DAY
    base = {
        "marketing": [0.55, 0.4, 0.35, 0.3, 0.35, 0.2],
        "profiling": [0.3, 0.25, 0.25, 0.3, 0.3, 0.2],
        "service": [0.6, 0.5, 0.4, 0.3, 0.45, 0.5],
    }
    avail = {
        "email": pop.has_email,
        "sms": pop.has_mobile,
        "push": ids.has_app,
        "app": ids.has_app,
        "web": ids.has_crm | pop.has_email,
        "call_center": ids.has_crm | pop.has_mobile,
    }
    id_types = ("email", "crm_id", "app_account_id", "phone", "loyalty_id")
    sources = _str_table(["preference_centre", "crm", "app", "call_center", "pos"])
    parts_p, parts_k, parts_type = [], [], []
    for i, purpose in enumerate(PURPOSES):
        for j, channel in enumerate(CHANNELS):
            p = np.flatnonzero(avail[channel] & (rng.random(pop.n) < base[purpose][j]))
            if channel == "email":
                kind = np.zeros(p.size, np.int8)
            elif channel == "sms":
                kind = np.full(p.size, 3, np.int8)
            elif channel in ("push", "app"):
                kind = np.full(p.size, 2, np.int8)
            elif channel == "web":
                kind = np.where(ids.has_crm[p], 1, 0).astype(np.int8)
            else:
                kind = np.where(ids.has_crm[p], 1, 3).astype(np.int8)
            via_card = ids.has_loyalty[p] & (rng.random(p.size) < 0.12) & (channel != "push")
            kind[via_card] = 4
            parts_p.append(p)
            parts_k.append(np.full(p.size, i * len(CHANNELS) + j, np.int16))
            parts_type.append(kind)
    p = np.concatenate(parts_p)
    combo = np.concatenate(parts_k)
    kind = np.concatenate(parts_type)
    m = p.size
    t0 = start_s + rng.integers(0, HISTORY_DAYS * DAY, m)
    g0 = rng.random(m) < 0.85
    # Later changes of mind: withdraw a grant, grant after a refusal, grant again.
    change1 = rng.random(m) < np.where(g0, 0.18, 0.2)
    t1 = t0 + (rng.random(m) * (as_of_s - t0)).astype(np.int64)
    change2 = change1 & (rng.random(m) < 0.2)
    t2 = t1 + (rng.random(m) * (as_of_s - t1)).astype(np.int64)
    ev_i = np.concatenate([np.arange(m), np.flatnonzero(change1), np.flatnonzero(change2)])
    ev_t = np.concatenate([t0, t1[change1], t2[change2]])
    ev_g = np.concatenate([g0, ~g0[change1], g0[change2]])
    order = _time_order(ev_t, ev_i)
    ev_i, ev_t, ev_g = ev_i[order], ev_t[order], ev_g[order]

    # The id value as the recording system holds it.
    pp = pa.array(p)
    values = pc.choose(
        pa.array(kind),
        _email_forms(pc.take(pop.email1, pp), rng, [0.75, 0.15, 0.05, 0.05]),
        pc.take(ids.crm, pp),
        pc.take(ids.app, pp),
        _phone_forms(pop.mobile[p], rng, _PHONE_PROBS),
        pc.take(ids.loyalty, pp),
    )
    purposes = _str_table([pu for pu in PURPOSES for _ in CHANNELS])
    channels = _str_table([ch for _ in PURPOSES for ch in CHANNELS])
    ev = pa.array(ev_i)
    table = pa.table(
        {
            "consent_event_id": pa.array(np.arange(1, ev_i.size + 1, dtype=np.int64)),
            "id_type": _take(_str_table(list(id_types)), kind[ev_i]),
            "id_value": pc.take(values, ev),
            "purpose": _take(purposes, combo[ev_i]),
            "channel": _take(channels, combo[ev_i]),
            "granted": pa.array(ev_g),
            "ts": _timestamps(ev_t * 1_000_000),
            "source": _take(sources, kind[ev_i]),
        }
    )
    w.write("consent", table)
