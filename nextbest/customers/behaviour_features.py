"""The export's history of the catalog's behaviour events, at one snapshot time.

For each behaviour event the catalog declares (:class:`BehaviourTerm`), the rows of the
behaviour export whose ``event_type`` is one of its ``export_types`` are counted over each
declared window ending at the snapshot time ``t`` (data strictly before ``t``), and the
newest one is its last-seen time. Distinct products come from the export's ``product_id``
column when it has one (the demo exports and the source contract carry none, so the
export adds 0 there and the ledger's events carry them).

The view's lineage column is ``t`` for every customer: the export is read up to it, and
the decision path adds the ledger's events dated after it (nextbest.decisions.behaviour),
which is what keeps the two from counting one event twice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nextbest.customers.feature_schema import BEHAVIOUR_EVENTS_VIEW, CatalogTerms
from nextbest.customers.feature_sources import SECS


def behaviour_event_columns(
    activity: pd.DataFrame,
    before: np.ndarray,
    n_customers: int,
    t: pd.Timestamp,
    terms: CatalogTerms,
) -> dict[str, np.ndarray]:
    """Column name -> one value per customer code (0..n_customers-1) of the behaviour
    events view at snapshot time ``t``; ``before`` masks the activity rows before ``t``."""
    if not terms.behaviour:
        return {}
    codes = activity["customer_id"].to_numpy()
    secs = activity["ts" + SECS].to_numpy()
    types = activity["event_type"].to_numpy()
    products = activity["product_id"].to_numpy() if "product_id" in activity else None
    t_s = pd.Timestamp(t).timestamp()
    out: dict[str, np.ndarray] = {}
    for b in terms.behaviour:
        mask = before & np.isin(types, b.export_types)
        for w in b.windows:
            m = mask & (secs >= t_s - w)
            out[b.count_feature(w)] = np.bincount(codes[m], minlength=n_customers)[:n_customers]
        for w in b.distinct_products:
            out[b.products_feature(w)] = _distinct(
                codes, products, mask & (secs >= t_s - w), n_customers
            )
        if b.last_seen:
            last = np.zeros(n_customers)
            np.maximum.at(last, codes[mask], secs[mask])
            out[b.last_feature] = last
    out[f"{BEHAVIOUR_EVENTS_VIEW}_as_of_ts"] = np.full(n_customers, t_s)
    return out


def _distinct(
    codes: np.ndarray, products: np.ndarray | None, mask: np.ndarray, n: int
) -> np.ndarray:
    """Distinct non-null products per customer code among the masked rows."""
    if products is None:
        return np.zeros(n)
    m = mask & pd.notna(products)
    pairs = pd.DataFrame({"c": codes[m], "p": products[m]}).drop_duplicates()
    return np.bincount(pairs["c"].to_numpy(dtype=np.int64), minlength=n)[:n].astype(float)
