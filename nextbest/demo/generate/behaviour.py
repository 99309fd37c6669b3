"""Behaviour and orders: web events (page views, loan checks, configurator views with repeat
interest, logins), app events and in-store baskets. The web events also give the
repeat-interest keys the response model reads."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.core.vocabulary import APP_EVENT_TYPES, WEB_EVENT_TYPES
from nextbest.demo.generate.arrays import (
    _choose,
    _rng,
    _sample_rows,
    _str_table,
    _take,
    _time_order,
    _timestamps,
)
from nextbest.demo.generate.catalog import CATEGORIES, DAY, HISTORY_DAYS, PRODUCTS, _product_arrays
from nextbest.demo.generate.people import _Population
from nextbest.demo.generate.records import _Ids, _record_truth
from nextbest.demo.generate.writer import _Writer

_CONFIGS_PER_CATEGORY = 40


def _thin_recent(
    t: np.ndarray, churn: np.ndarray, as_of_s: int, rng: np.random.Generator
) -> np.ndarray:
    """Keep-mask: persons at risk of churning go quiet in the last 90 days."""
    recent = t >= as_of_s - 90 * DAY
    return ~recent | (rng.random(t.size) >= 0.8 * churn)


def _category_weights(pop: _Population, boost: np.ndarray | None = None) -> np.ndarray:
    w = 0.04 + pop.interest.astype(np.float32) ** 2
    return w * boost if boost is not None else w


def _web_events(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> np.ndarray:
    """Write web_events and return the sorted repeat-interest keys. Over 100 lines on
    purpose: one vectorised pass whose steps share the same per-session arrays."""
    rng = _rng(seed, "web")
    start_s = as_of_s - HISTORY_DAYS * DAY
    span = HISTORY_DAYS * DAY
    owner = ids.device_owner
    n_dev = owner.size
    k = len(CATEGORIES)

    def own_device(persons: np.ndarray) -> np.ndarray:
        return ids.device_start[persons] + (
            rng.random(persons.size) * ids.n_devices[persons]
        ).astype(np.int64)

    # Page views: volume follows digital affinity, topic follows interest.
    counts = rng.poisson((4 + 30 * pop.digital[owner]) / ids.n_devices[owner])
    counts[np.bincount(owner, weights=counts, minlength=pop.n)[owner] == 0] = 1
    pv_dev = np.repeat(np.arange(n_dev, dtype=np.int64), counts)
    pv_t = start_s + rng.integers(0, span, pv_dev.size)
    pv_cat = _sample_rows(_category_weights(pop), owner[pv_dev], rng)

    # Loan eligibility checks: loan interest.
    n_lc = rng.poisson(8 * pop.interest[:, 4] ** 3)
    lc_p = np.repeat(np.arange(pop.n), n_lc)
    lc_dev = own_device(lc_p)
    lc_t = start_s + rng.integers(0, span, lc_p.size)

    # Configurator: repeat-interest episodes (the same config viewed again within days).
    lam = 14 * pop.interest**2 * (0.3 + pop.digital[:, None])
    n_ep = rng.poisson(lam)
    ep_pc = np.repeat(np.arange(pop.n * k, dtype=np.int64), n_ep.ravel())
    ep_p, ep_cat = ep_pc // k, (ep_pc % k).astype(np.int8)
    ep_t = start_s + 3 * DAY + rng.integers(0, span - 3 * DAY, ep_pc.size)
    ep_cfg = rng.integers(0, _CONFIGS_PER_CATEGORY, ep_pc.size).astype(np.int32)
    ep_dev = own_device(ep_p)
    extra = rng.binomial(2, 0.5, ep_pc.size)
    ex_idx = np.repeat(np.arange(ep_pc.size), extra)
    cf_idx = np.concatenate([np.arange(ep_pc.size), np.arange(ep_pc.size), ex_idx])
    cf_t = np.concatenate(
        [
            ep_t - rng.integers(3600, 3 * DAY, ep_pc.size),
            ep_t,
            ep_t[ex_idx] + rng.integers(600, 5 * DAY, ex_idx.size),
        ]
    )
    cf_dev, cf_cat, cf_cfg = ep_dev[cf_idx], ep_cat[cf_idx], ep_cfg[cf_idx]
    # Single, non-repeated configurator views.
    n_single = rng.poisson(2 * pop.interest)
    sg_pc = np.repeat(np.arange(pop.n * k, dtype=np.int64), n_single.ravel())
    cf_dev = np.concatenate([cf_dev, own_device(sg_pc // k)])
    cf_cat = np.concatenate([cf_cat, (sg_pc % k).astype(np.int8)])
    cf_cfg = np.concatenate(
        [cf_cfg, rng.integers(0, _CONFIGS_PER_CATEGORY, sg_pc.size).astype(np.int32)]
    )
    cf_t = np.concatenate([cf_t, start_s + rng.integers(0, span, sg_pc.size)])

    # Logins: only some devices of app users ever log in.
    logs_in = ids.has_app[owner] & (rng.random(n_dev) < 0.55)
    n_login = np.where(logs_in, 1 + rng.poisson(1 + 6 * pop.digital[owner]), 0)
    lg_dev = np.repeat(np.arange(n_dev, dtype=np.int64), n_login)
    lg_t = start_s + rng.integers(0, span, lg_dev.size)

    dev = np.concatenate([pv_dev, lc_dev, cf_dev, lg_dev])
    t = np.concatenate([pv_t, lc_t, cf_t, lg_t])
    etype = np.concatenate(
        [
            np.zeros(pv_dev.size, np.int8),
            np.full(lc_dev.size, 2, np.int8),
            np.full(cf_dev.size, 3, np.int8),
            np.ones(lg_dev.size, np.int8),
        ]
    )
    cat = np.concatenate(
        [pv_cat, np.full(lc_dev.size, 4, np.int8), cf_cat, np.full(lg_dev.size, -1, np.int8)]
    )
    cfg = np.concatenate(
        [
            np.full(pv_dev.size + lc_dev.size, -1, np.int32),
            cf_cfg,
            np.full(lg_dev.size, -1, np.int32),
        ]
    )
    del pv_dev, pv_t, pv_cat, lc_dev, lc_t, cf_dev, cf_t, cf_cat, cf_cfg, lg_dev, lg_t
    keep = (t < as_of_s) & _thin_recent(t, pop.churn[owner[dev]], as_of_s, rng)
    keep[etype == 1] = t[etype == 1] < as_of_s  # keep logins: they carry the cookie link
    order = np.flatnonzero(keep)
    order = order[_time_order(t[order], dev[order])]
    dev, t, etype, cat, cfg = dev[order], t[order], etype[order], cat[order], cfg[order]
    del order, keep

    app_of_person = ids.app
    cfg_names = _str_table(
        [f"cfg-{c}-{i:03d}" for c in CATEGORIES for i in range(_CONFIGS_PER_CATEGORY)]
    )

    def build(lo: int, hi: int) -> pa.Table:
        d, tt, et, ct, cf = dev[lo:hi], t[lo:hi], etype[lo:hi], cat[lo:hi], cfg[lo:hi]
        login = et == 1
        return pa.table(
            {
                "event_id": pa.array(np.arange(lo, hi, dtype=np.int64) + 1),
                "device_id": pc.take(ids.device, pa.array(d)),
                "ts": _timestamps(tt * 1_000_000),
                "event_type": _take(_str_table(list(WEB_EVENT_TYPES)), et),
                "category": _take(_str_table(list(CATEGORIES)), np.maximum(ct, 0), ct < 0),
                "config_id": _take(
                    cfg_names,
                    np.maximum(ct, 0).astype(np.int64) * _CONFIGS_PER_CATEGORY + np.maximum(cf, 0),
                    cf < 0,
                ),
                "app_account_id": pc.take(
                    app_of_person, pa.array(owner[d].astype(np.int64), mask=~login)
                ),
            }
        )

    w.write_chunks("web_events", t.size, build)
    # Only a device that logged in carries an identity (its app account); a cookie that
    # never did is anonymous and is no identity record
    # (see nextbest.customers.sources.identity_records).
    logged_in = np.zeros(n_dev, dtype=bool)
    logged_in[dev[etype == 1]] = True
    ids.records.append(
        _record_truth("web", ids.device.filter(pa.array(logged_in)), owner[logged_in])
    )

    rep_key = ((ep_p * k + ep_cat) << 32) | (ep_t - start_s)
    return np.sort(rep_key[ep_t < as_of_s])


def _app_events(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> None:
    rng = _rng(seed, "app_events")
    start_s = as_of_s - HISTORY_DAYS * DAY
    persons = np.flatnonzero(ids.has_app)
    counts = rng.poisson(3 + 45 * pop.digital[persons])
    p = np.repeat(persons, counts)
    t = start_s + rng.integers(0, HISTORY_DAYS * DAY, p.size)
    keep = _thin_recent(t, pop.churn[p], as_of_s, rng)
    p, t = p[keep], t[keep]
    etype = _choose(rng, p.size, [0.35, 0.3, 0.1, 0.15, 0.1])
    cat = _sample_rows(_category_weights(pop), p, rng)
    cat[(etype == 0) | (etype == 4)] = -1
    order = _time_order(t, p)
    p, t, etype, cat = p[order], t[order], etype[order], cat[order]
    app_idx = np.searchsorted(persons, p)
    app_ids = pc.take(ids.app, pa.array(persons))

    def build(lo: int, hi: int) -> pa.Table:
        ct = cat[lo:hi]
        return pa.table(
            {
                "event_id": pa.array(np.arange(lo, hi, dtype=np.int64) + 1),
                "app_account_id": pc.take(app_ids, pa.array(app_idx[lo:hi])),
                "device_id": pc.take(ids.device, pa.array(ids.device_start[p[lo:hi]])),
                "ts": _timestamps(t[lo:hi] * 1_000_000),
                "event_type": _take(_str_table(list(APP_EVENT_TYPES)), etype[lo:hi]),
                "category": _take(_str_table(list(CATEGORIES)), np.maximum(ct, 0), ct < 0),
            }
        )

    w.write_chunks("app_events", p.size, build)


def _baskets(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> None:
    rng = _rng(seed, "pos")
    start_s = as_of_s - HISTORY_DAYS * DAY
    rate = 0.5 + 7 * (1 - 0.5 * pop.digital) * (0.2 + pop.interest.mean(axis=1))
    nb = rng.poisson(rate)
    b_p = np.repeat(np.arange(pop.n), nb)
    b_t = start_s + rng.integers(0, HISTORY_DAYS * DAY, b_p.size)
    keep = _thin_recent(b_t, pop.churn[b_p], as_of_s, rng)
    b_p, b_t = b_p[keep], b_t[keep]
    order = _time_order(b_t, b_p)
    b_p, b_t = b_p[order], b_t[order]
    hh = pop.household[b_p]
    store = np.where(rng.random(b_p.size) < 0.8, pop.store[hh], rng.integers(1, 81, b_p.size))
    scanned = ids.has_loyalty[b_p] & (rng.random(b_p.size) < 0.85)

    lines = 1 + rng.binomial(2, 0.3, b_p.size)
    l_b = np.repeat(np.arange(b_p.size, dtype=np.int64), lines)
    l_p = b_p[l_b]
    in_store = np.array([1.0, 3.0, 0.3, 0.5, 0.0], dtype=np.float32)
    l_cat = _sample_rows(_category_weights(pop, in_store), l_p, rng)
    price, _, by_cat = _product_arrays()
    sizes = np.array([len(b) for b in by_cat])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(by_cat)
    l_prod = flat[offsets[l_cat] + (rng.random(l_b.size) * sizes[l_cat]).astype(np.int64)]
    amount = price[l_prod] * (0.8 + 0.12 * pop.income[l_p]) * rng.lognormal(0, 0.12, l_b.size)
    products = _str_table([p.product_id for p in PRODUCTS])
    stores = _str_table([f"S{i:03d}" for i in range(81)])

    def build(lo: int, hi: int) -> pa.Table:
        b = l_b[lo:hi]
        return pa.table(
            {
                "basket_id": pa.array(b + 1),
                "loyalty_id": pc.take(
                    ids.loyalty, pa.array(b_p[b].astype(np.int64), mask=~scanned[b])
                ),
                "store_id": _take(stores, store[b]),
                "ts": _timestamps(b_t[b] * 1_000_000),
                "product_id": _take(products, l_prod[lo:hi]),
                "category": _take(_str_table(list(CATEGORIES)), l_cat[lo:hi]),
                "amount": pa.array(np.round(amount[lo:hi], 2)),
            }
        )

    w.write_chunks("pos_baskets", l_b.size, build)
