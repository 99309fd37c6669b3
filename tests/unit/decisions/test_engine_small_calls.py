"""The online path's one-row calls take cheaper routes inside ``decide``; same answers.

``decide`` on a few rows hashes with Python integers instead of numpy ufuncs and gathers
with plain indexing; these tests hold it to the batch answer, record for record, on rows
built to hit every rule, NaNs, holdout and exploration.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from nextbest.decisions.draws import MIX64_PY_MAX, mix64
from nextbest.decisions.engine import decide
from nextbest.decisions.policy import Exploration, Holdout
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rules import compile_plan
from tests.params import SEED
from tests.unit.decisions.conftest import NOW, ViewsModel, ctx, default_row, matrix


def test_splitmix_on_python_ints_equals_numpy() -> None:
    rng = np.random.default_rng(SEED)
    edge = np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64)
    values = np.concatenate([edge, rng.integers(0, 2**64 - 1, 4000, dtype=np.uint64)])
    big = mix64(values)  # longer than MIX64_PY_MAX: numpy
    assert big.dtype == np.uint64
    for start in range(0, len(values), 7):
        for size in (1, 2, MIX64_PY_MAX):
            part = values[start : start + size]
            small = mix64(part)
            assert small.dtype == np.uint64
            assert np.array_equal(small, big[start : start + size])


def test_one_row_and_few_row_calls_equal_one_batch(catalog, policy, names) -> None:
    rng = np.random.default_rng(SEED)
    pol = policy.model_copy(
        update={
            "holdout": Holdout(share=0.2, salt="h"),
            "exploration": Exploration(epsilon=0.4, salt="e"),
        }
    )
    plan = compile_plan(catalog, pol, names, ViewsModel(catalog.ids))
    flags = ("holds_phone_premium", "open_cases", "contacts_email_7d", "contacts_total_7d")
    rows = []
    for _ in range(400):
        r = default_row(names)
        for f in flags:
            r[f] = float(rng.random() < 0.15) * (3.0 if f == "contacts_total_7d" else 1.0)
        r["consent_marketing_email"] = rng.choice([1.0, 1.0, 1.0, 0.0, np.nan])
        r["consent_service_email"] = rng.choice([1.0, 1.0, np.nan])
        r["views_30d_phones"] = float(rng.integers(0, 10))
        r["tenure_days"] = rng.choice([float(rng.integers(0, 2000)), np.nan])
        r["days_since_complaint"] = rng.choice([5.0, -0.0, 9999.0, np.nan])
        r["days_since_shown_email_phone_upgrade"] = rng.choice([2.0, 9999.0])
        rows.append(r)
    X = matrix(names, rows)
    ids: list[str | None] = [f"C{i:05d}" for i in range(len(rows))]
    ids[7] = None  # an unknown customer inside the batch
    for when in (NOW, NOW + timedelta(days=3)):
        c = ctx(now=when, k=4)
        batch = decide(X, ids, plan, c).records(deterministic_ids=True)
        single = [
            decide(X[i : i + 1], ids[i : i + 1], plan, c).records(deterministic_ids=True)[0]
            for i in range(len(rows))
        ]
        few = []
        for start in range(0, len(rows), 5):
            d = decide(X[start : start + 5], ids[start : start + 5], plan, c)
            few += d.records(deterministic_ids=True)
        assert single == batch
        assert few == batch
        # the rows did reach every branch the one-row routes touch
        reasons = {r["reason"] for r in batch}
        assert {"HOLDOUT", "EXPLORATION", "BEST_VALUE", "UNKNOWN_CUSTOMER"} <= reasons
        excluded = {e["reason"] for r in batch for e in r["excluded"]}
        for reason in (Reason.NO_CONSENT, Reason.MISSING_FEATURES, Reason.CASE_OPEN):
            assert reason.name in excluded
