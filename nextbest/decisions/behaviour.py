"""Behaviour events at decision time: the catalog's windowed features, by event time.

A behaviour event (a page view, an eligibility check, an add to cart: the catalog's
``behaviour_events``) reaches the service through ``/events`` and the ledger. Its
features (:class:`BehaviourTerm`: counts over each declared window, distinct products,
last seen) merge two histories without counting one event twice:

- the export's, in the feature snapshot: counts over windows ending at the snapshot time
  (the view's lineage column ``customer_behaviour_events_as_of_ts``, the *cut*);
- the ledger's: events dated after the cut and at or before ``now``.

A ledger event dated at or before the cut is taken to be in the export already and is not
counted. A window that starts at or after the cut (``now - window >= cut``) holds only
ledger events, so it is exact; a window reaching back before the cut adds the snapshot's
count, which ends at the cut and is not re-windowed until the next build (as every
snapshot count, docs/events.md). Distinct products over such a window take the larger of
the two sides (the export keeps counts, not the products, so the union cannot be formed
without counting a product seen on both sides twice). Every behaviour event is activity:
it moves ``last_active_ts`` too.

Functions are pure over a customer's events, so the trigger and journey code that asks
"how many eligibility checks in the last 7 days, as of time t" gets the same numbers the
decision sees (:func:`behaviour_counts`, :func:`behaviour_features`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from nextbest.customers.feature_schema import BEHAVIOUR_EVENTS_VIEW, BehaviourTerm, CatalogTerms
from nextbest.decisions.ledger import LedgerEvent

#: The snapshot column that says up to when the export's behaviour is counted.
CUT_FEATURE = f"{BEHAVIOUR_EVENTS_VIEW}_as_of_ts"
#: The activity feature every behaviour event moves.
LAST_ACTIVE = "last_active_ts"


def _value(snapshot: Mapping[str, float] | None, name: str) -> float:
    v = None if snapshot is None else snapshot.get(name)
    return 0.0 if v is None or math.isnan(v) else float(v)


def in_window(t: float, now: float, window_s: float) -> bool:
    """Whether event time ``t`` lies in the window of ``window_s`` seconds ending at
    ``now``, both ends included (the windows of every ledger count)."""
    return now - window_s <= t <= now


def behaviour_counts(
    events: Iterable[LedgerEvent],
    now: float,
    window_s: float,
    names: Iterable[str] | None = None,
    after: float = -math.inf,
) -> dict[str, int]:
    """Ledger events per type in the window of ``window_s`` seconds ending at ``now``
    (epoch seconds), dated after ``after`` (the snapshot's cut, when adding to it); only
    the types in ``names`` when given. By event time: an event that arrived late but is
    dated inside the window counts, one dated after ``now`` does not yet."""
    wanted = None if names is None else frozenset(names)
    out: dict[str, int] = {} if wanted is None else dict.fromkeys(wanted, 0)
    for e in events:
        if (wanted is None or e.type in wanted) and e.event_time > after:
            if in_window(e.event_time, now, window_s):
                out[e.type] = out.get(e.type, 0) + 1
    return out


def behaviour_features(
    events: Sequence[LedgerEvent],
    now: float,
    terms: CatalogTerms,
    snapshot: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The values of the catalog's behaviour features for one customer at ``now``: the
    snapshot's (missing or NaN: 0; its cut ``CUT_FEATURE``, missing: 0, i.e. every ledger
    event counts) merged with ``events`` (the customer's ledger events, any types, any
    order) as the module says. Only features some event changes are returned, plus
    ``last_active_ts`` when an event is newer than it."""
    by_type: dict[str, list[LedgerEvent]] = {}
    for e in events:
        if e.event_time <= now and terms.behaviour_term(e.type) is not None:
            by_type.setdefault(e.type, []).append(e)
    if not by_type:
        return {}
    cut = _value(snapshot, CUT_FEATURE)
    out: dict[str, float] = {}
    newest = -math.inf
    for name, evs in by_type.items():
        term = terms.behaviour_term(name)
        assert term is not None
        live = [e for e in evs if e.event_time > cut]
        if not live:
            continue
        newest = max(newest, max(e.event_time for e in live))
        out.update(_term_features(term, live, now, cut, snapshot))
    if newest > _value(snapshot, LAST_ACTIVE):
        out[LAST_ACTIVE] = newest
    return out


def _term_features(
    term: BehaviourTerm,
    live: Sequence[LedgerEvent],
    now: float,
    cut: float,
    snapshot: Mapping[str, float] | None,
) -> dict[str, float]:
    """One event's features from its ledger events after the cut (``live``, at or before
    ``now``) and the snapshot."""
    out: dict[str, float] = {}
    for w in term.windows:
        name = term.count_feature(w)
        n = sum(in_window(e.event_time, now, w) for e in live)
        # The snapshot's count ends at the cut: it belongs in a window that reaches it.
        base = _value(snapshot, name) if now - w < cut else 0.0
        out[name] = base + n
    for w in term.distinct_products:
        name = term.products_feature(w)
        products = {
            e.payload["product_id"]
            for e in live
            if in_window(e.event_time, now, w) and e.payload.get("product_id") is not None
        }
        base = _value(snapshot, name) if now - w < cut else 0.0
        out[name] = max(base, float(len(products)))
    if term.last_seen:
        newest = max(e.event_time for e in live)
        out[term.last_feature] = max(newest, _value(snapshot, term.last_feature))
    return out


def age_snapshot(X: np.ndarray, index: Mapping[str, int], now: float, terms: CatalogTerms) -> None:
    """Zero, in place, the snapshot's behaviour counts of every window that starts at or
    after the row's cut: the export cannot hold events in it, so only the ledger's count
    (added per customer by :func:`behaviour_features`) belongs there. Vectorised over
    every row, customers without events included; rows without a cut (NaN) are left."""
    j = index.get(CUT_FEATURE)
    if j is None or not terms.behaviour or not len(X):
        return
    cut = X[:, j]
    for term in terms.behaviour:
        for w, name in [(w, term.count_feature(w)) for w in term.windows] + [
            (w, term.products_feature(w)) for w in term.distinct_products
        ]:
            k = index.get(name)
            if k is not None:
                with np.errstate(invalid="ignore"):
                    X[now - w >= cut, k] = 0.0
