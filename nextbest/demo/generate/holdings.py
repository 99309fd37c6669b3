"""What CRM customers already hold, and the product catalogue export with its stock (none of
the out-of-stock products)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.demo.generate.arrays import _rng, _str_table, _take, _timestamps
from nextbest.demo.generate.catalog import _OUT_OF_STOCK, DAY, PRODUCTS, _product_arrays
from nextbest.demo.generate.people import _Population
from nextbest.demo.generate.records import _Ids
from nextbest.demo.generate.writer import _Writer


def _holdings_and_products(
    pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = _rng(seed, "holdings")
    persons = np.flatnonzero(ids.has_crm)
    _, pcat, _ = _product_arrays()
    appeal = np.array([1.0, 0.5, 0.3, 0.3, 0.2, 0.2, 1.0, 0.5, 0.7, 0.4, 0.25, 0.4])
    prob = 0.01 + 0.45 * appeal[None, :] * pop.interest[persons][:, pcat] ** 2
    held = rng.random(prob.shape) < prob
    hp, hj = np.nonzero(held)
    hp = persons[hp]
    since = (
        as_of_s
        - (rng.random(hp.size) * np.minimum(pop.tenure_days[hp], 5 * 365) * DAY).astype(np.int64)
        - DAY
    )
    products = _str_table([p.product_id for p in PRODUCTS])
    w.write(
        "holdings",
        pa.table(
            {
                "crm_id": pc.take(ids.crm, pa.array(hp)),
                "product_id": _take(products, hj),
                "since": _timestamps(since * 1_000_000),
            }
        ),
    )
    stock = rng.integers(20, 2000, len(PRODUCTS))
    stock[[i for i, p in enumerate(PRODUCTS) if p.product_id in _OUT_OF_STOCK]] = 0
    w.write(
        "products",
        pa.table(
            {
                "product_id": products,
                "name": _str_table([p.name for p in PRODUCTS]),
                "category": _str_table([p.category for p in PRODUCTS]),
                "price": pa.array([p.price for p in PRODUCTS]),
                "margin": pa.array([p.margin for p in PRODUCTS]),
                "stock": pa.array(stock.astype(np.int64)),
            }
        ),
    )
    return hp, hj, since
