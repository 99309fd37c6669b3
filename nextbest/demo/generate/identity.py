"""The identity-bearing exports, one per source system (CRM accounts with their duplicates,
email leads, loyalty cards, app accounts) and the devices, drawn and written in a fixed
order together with the truth of their records."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.demo.generate.arrays import _rng, _take, _timestamps, _unique_ids, _with_nulls
from nextbest.demo.generate.catalog import DAY, HISTORY_DAYS
from nextbest.demo.generate.noise import (
    _NAME_NOISY,
    _PHONE_PROBS,
    _email_forms,
    _name_idx,
    _phone_forms,
    _record_noise,
)
from nextbest.demo.generate.people import _Population
from nextbest.demo.generate.records import (
    _address,
    _Export,
    _Ids,
    _per_person,
    _phone_for,
    _record_truth,
    _shuffled,
)
from nextbest.demo.generate.writer import _Writer


@dataclass
class _Crm:
    export: _Export
    persons: np.ndarray  # sorted persons with a (first) CRM record
    ids: pa.Array  # their CRM ids
    created_s: np.ndarray  # their accounts' creation times
    has: np.ndarray  # [n] person has a CRM record
    dup_p: np.ndarray  # person of each duplicate record
    dup_ids: pa.Array
    dup_use2: np.ndarray  # duplicate opened with the person's second email


def _crm_accounts(
    pop: _Population, seed: int, as_of_s: int, first_v: pa.Array, last_v: pa.Array
) -> _Crm:
    """CRM: most persons, ~3% of them with a second, differently spelled record."""
    n = pop.n
    start_s = as_of_s - HISTORY_DAYS * DAY
    rng = _rng(seed, "crm")
    has_crm = rng.random(n) < 0.8
    crm_p = np.flatnonzero(has_crm)
    dup_p = crm_p[rng.random(crm_p.size) < 0.03]
    all_crm = _unique_ids(rng, crm_p.size + dup_p.size, "CRM", 9)
    crm_ids, dup_ids = all_crm.slice(0, crm_p.size), all_crm.slice(crm_p.size)
    crm_created = (
        as_of_s - pop.tenure_days[crm_p].astype(np.int64) * DAY - rng.integers(0, DAY, crm_p.size)
    )
    dup_created = np.maximum(crm_created[np.searchsorted(crm_p, dup_p)], start_s) + rng.integers(
        DAY, 400 * DAY, dup_p.size
    )
    dup_created = np.minimum(dup_created, as_of_s - DAY)

    # The duplicate account is often opened with the second email.
    dup_use2 = pop.has_email2[dup_p] & (rng.random(dup_p.size) < 0.5)

    def crm_rows(persons: np.ndarray, ids: pa.Array, created: np.ndarray, dup: bool) -> pa.Table:
        m = persons.size
        probs = [0.3, 0.15, 0.15, 0.1, 0.1, 0.1, 0.1] if dup else _NAME_NOISY
        email = pc.take(pop.email1, pa.array(persons))
        if dup:
            email = pc.if_else(pa.array(dup_use2), pc.take(pop.email2, pa.array(persons)), email)
        email = _email_forms(
            email, rng, [0.7, 0.12, 0.1, 0.08] if not dup else [0.4, 0.3, 0.2, 0.1]
        )
        email = _with_nulls(email, ~pop.has_email[persons] | (rng.random(m) < 0.06))
        return pa.table(
            {
                "crm_id": ids,
                "email": email,
                "phone": _phone_for(pop, persons, rng, 0.03, 0.3),
                "first_name": _take(first_v, _name_idx(pop.first[persons], rng, probs)),
                "last_name": _take(last_v, _name_idx(pop.last[persons], rng, probs)),
                "date_of_birth": _with_nulls(
                    pc.take(pop.dob, pa.array(persons)), rng.random(m) < 0.05
                ),
                **_address(pop, persons, rng),
                "created_at": _timestamps(created * 1_000_000),
            }
        )

    crm = pa.concat_tables(
        [crm_rows(crm_p, crm_ids, crm_created, False), crm_rows(dup_p, dup_ids, dup_created, True)]
    )
    crm = _record_noise(crm, seed, "crm")
    crm_persons = np.concatenate([crm_p, dup_p])
    truth = _record_truth("crm", crm.column("crm_id").combine_chunks(), crm_persons)
    export = _shuffled("crm_accounts", crm, truth, rng.permutation(crm.num_rows))
    return _Crm(export, crm_p, crm_ids, crm_created, has_crm, dup_p, dup_ids, dup_use2)


@dataclass
class _App:
    export: _Export
    persons: np.ndarray
    ids: pa.Array
    has: np.ndarray
    email2_login: np.ndarray  # persons whose login is their second email
    rng: np.random.Generator  # the app stream, continued by the devices


def _app_accounts(pop: _Population, seed: int, as_of_s: int, first_v: pa.Array) -> _App:
    """App accounts: digital persons; the login is an email (sometimes the second one)
    or, without one, the mobile number; most apps also verify a mobile for sign-in."""
    n = pop.n
    start_s = as_of_s - HISTORY_DAYS * DAY
    rng = _rng(seed, "app")
    # Signing up needs a login: an email or a mobile number.
    has_app = (rng.random(n) < 0.08 + 0.65 * pop.digital) & (pop.has_email | pop.has_mobile)
    app_p = np.flatnonzero(has_app)
    m = app_p.size
    app_ids = _unique_ids(rng, m, "app-", 8)
    app_use2 = pop.has_email2[app_p] & (rng.random(m) < 0.35)
    email = pc.if_else(
        pa.array(app_use2),
        pc.take(pop.email2, pa.array(app_p)),
        pc.take(pop.email1, pa.array(app_p)),
    )
    no_email = ~pop.has_email[app_p] | (rng.random(m) < 0.04)
    apps = pa.table(
        {
            "app_account_id": app_ids,
            "email": _with_nulls(_email_forms(email, rng, [0.8, 0.05, 0.1, 0.05]), no_email),
            "phone": _with_nulls(
                _phone_for(pop, app_p, rng, 0.0, 0.0), ~no_email & (rng.random(m) < 0.15)
            ),
            "first_name": _with_nulls(
                _take(first_v, _name_idx(pop.first[app_p], rng, _NAME_NOISY)), rng.random(m) < 0.15
            ),
            "created_at": _timestamps(
                (start_s - 200 * DAY + rng.integers(0, (HISTORY_DAYS + 170) * DAY, m)) * 1_000_000
            ),
        }
    )
    truth = _record_truth("app", app_ids, app_p)
    apps = _record_noise(apps, seed, "app")
    export = _shuffled("app_accounts", apps, truth, rng.permutation(m))
    return _App(export, app_p, app_ids, has_app, app_p[app_use2 & ~no_email], rng)


def _email_leads(
    pop: _Population,
    seed: int,
    as_of_s: int,
    first_v: pa.Array,
    last_v: pa.Array,
    email2_known: np.ndarray,
) -> _Export:
    """Email leads: web-form sign-ups; some with only an email. A person signs up with
    the second email mostly when it is one they use with the company elsewhere
    (``email2_known``: app login, second CRM account); an address seen nowhere else is
    rare."""
    n = pop.n
    start_s = as_of_s - HISTORY_DAYS * DAY
    rng = _rng(seed, "leads")
    has_lead = pop.has_email & (rng.random(n) < 0.25 + 0.3 * pop.digital)
    lead_p = np.flatnonzero(has_lead)
    p_use2 = np.where(email2_known, 0.4, 0.02)
    second = lead_p[pop.has_email2[lead_p] & (rng.random(lead_p.size) < p_use2[lead_p])]
    lead_p = np.concatenate([lead_p, second])
    use2 = np.zeros(lead_p.size, dtype=bool)
    first_p = lead_p[: lead_p.size - second.size]
    use2[: first_p.size] = pop.has_email2[first_p] & (rng.random(first_p.size) < p_use2[first_p])
    use2[first_p.size :] = True
    m = lead_p.size
    email = pc.if_else(
        pa.array(use2), pc.take(pop.email2, pa.array(lead_p)), pc.take(pop.email1, pa.array(lead_p))
    )
    only_email = rng.random(m) < 0.25
    lead_ids = _unique_ids(rng, m, "L", 10)
    leads = pa.table(
        {
            "lead_id": lead_ids,
            "email": _email_forms(email, rng, [0.45, 0.25, 0.2, 0.1]),
            # The form's mobile field is optional: about half fill it in.
            "phone": _with_nulls(
                _phone_forms(pop.mobile[lead_p], rng, _PHONE_PROBS),
                ~pop.has_mobile[lead_p] | (rng.random(m) < 0.5),
            ),
            "first_name": _with_nulls(
                _take(first_v, _name_idx(pop.first[lead_p], rng, _NAME_NOISY)), only_email
            ),
            "last_name": _with_nulls(
                _take(last_v, _name_idx(pop.last[lead_p], rng, _NAME_NOISY)), only_email
            ),
            "created_at": _timestamps(
                (start_s + rng.integers(0, HISTORY_DAYS * DAY, m)) * 1_000_000
            ),
        }
    )
    leads = _record_noise(leads, seed, "email_leads")
    truth = _record_truth("email_lead", lead_ids, lead_p)
    return _shuffled("email_leads", leads, truth, rng.permutation(m))


@dataclass
class _Loyalty:
    export: _Export
    persons: np.ndarray
    ids: pa.Array
    has: np.ndarray


def _loyalty_members(
    pop: _Population, seed: int, as_of_s: int, first_v: pa.Array, last_v: pa.Array
) -> _Loyalty:
    """Loyalty cards: phone-first, email often missing; some only phone + first name."""
    n = pop.n
    rng = _rng(seed, "loyalty")
    has_loyalty = rng.random(n) < 0.25 + 0.3 * (1 - pop.digital)
    loy_p = np.flatnonzero(has_loyalty)
    m = loy_p.size
    sparse = rng.random(m) < 0.15
    loyalty_ids = _unique_ids(rng, m, "6339", 9)
    email = _email_forms(pc.take(pop.email1, pa.array(loy_p)), rng, [0.5, 0.3, 0.1, 0.1])
    phone = _phone_for(pop, loy_p, rng, 0.05, 0.5)
    # The card form needs a contact: without a phone the email is taken.
    has_phone = pc.is_valid(phone).to_numpy(zero_copy_only=False)
    no_email = ~pop.has_email[loy_p] | (has_phone & (sparse | (rng.random(m) < 0.55)))
    loyalty = pa.table(
        {
            "loyalty_id": loyalty_ids,
            "email": _with_nulls(email, no_email),
            "phone": phone,
            "first_name": _take(first_v, _name_idx(pop.first[loy_p], rng, _NAME_NOISY)),
            "last_name": _with_nulls(
                _take(last_v, _name_idx(pop.last[loy_p], rng, _NAME_NOISY)), sparse
            ),
            "postcode": _with_nulls(
                _address(pop, loy_p, rng)["postcode"], sparse | (rng.random(m) < 0.2)
            ),
            "joined_at": _timestamps(
                (as_of_s - rng.integers(30, 6 * 365, m) * DAY - rng.integers(0, DAY, m)) * 1_000_000
            ),
        }
    )
    loyalty = _record_noise(loyalty, seed, "loyalty")
    truth = _record_truth("loyalty", loyalty_ids, loy_p)
    export = _shuffled("loyalty_members", loyalty, truth, rng.permutation(m))
    return _Loyalty(export, loy_p, loyalty_ids, has_loyalty)


def _devices(
    pop: _Population, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """Devices (anonymous web cookies / phones): 1-3 per person. (devices per person,
    owner per device, first device per person, device ids)."""
    n = pop.n
    n_devices = 1 + rng.binomial(2, 0.15 + 0.35 * pop.digital).astype(np.int32)
    device_owner = np.repeat(np.arange(n, dtype=np.int32), n_devices)
    device_start = np.concatenate([[0], np.cumsum(n_devices)[:-1]]).astype(np.int64)
    device_ids = pc.binary_join_element_wise(
        "d-",
        pc.cast(
            pa.array(10**11 + rng.choice(9 * 10**11, size=device_owner.size, replace=False)),
            pa.string(),
        ),
        "",
    )
    return n_devices, device_owner, device_start, device_ids


def _identity_sources(
    pop: _Population, seed: int, as_of_s: int, w: _Writer, first_v: pa.Array, last_v: pa.Array
) -> _Ids:
    """Write the identity-bearing exports (CRM, email leads, loyalty, app) and draw the
    devices; every person's native ids and the records' truth."""
    n = pop.n
    records: list[pa.Table] = []
    crm = _crm_accounts(pop, seed, as_of_s, first_v, last_v)
    crm.export.write(w, records)
    created_pp = np.full(n, as_of_s, dtype=np.int64)
    created_pp[crm.persons] = crm.created_s

    # The app accounts are drawn before the leads (a lead's second email depends on
    # them) and written after the loyalty cards.
    app = _app_accounts(pop, seed, as_of_s, first_v)
    # Where a person's second email is on file besides leads: the app login or a
    # duplicate CRM account.
    email2_known = np.zeros(n, dtype=bool)
    email2_known[app.email2_login] = True
    email2_known[crm.dup_p[crm.dup_use2]] = True
    _email_leads(pop, seed, as_of_s, first_v, last_v, email2_known).write(w, records)
    loyalty = _loyalty_members(pop, seed, as_of_s, first_v, last_v)
    loyalty.export.write(w, records)
    app.export.write(w, records)

    n_devices, device_owner, device_start, device_ids = _devices(pop, app.rng)
    return _Ids(
        crm=_per_person(crm.ids, crm.persons, crm.has),
        has_crm=crm.has,
        crm_dup_of=crm.dup_p,
        crm_dup=crm.dup_ids,
        loyalty=_per_person(loyalty.ids, loyalty.persons, loyalty.has),
        has_loyalty=loyalty.has,
        app=_per_person(app.ids, app.persons, app.has),
        has_app=app.has,
        device_owner=device_owner,
        device_start=device_start,
        n_devices=n_devices,
        device=device_ids,
        crm_created_s=created_pp,
        records=records,
    )
