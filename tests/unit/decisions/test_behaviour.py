"""Behaviour events at decision time: windows by event time, merged with the export at
the snapshot's cut without counting an event twice."""

import math

import numpy as np

from nextbest.customers.feature_schema import BehaviourTerm, CatalogTerms
from nextbest.decisions.behaviour import (
    CUT_FEATURE,
    age_snapshot,
    behaviour_counts,
    behaviour_features,
)
from nextbest.decisions.ledger import LedgerEvent
from nextbest.decisions.ledger_state import derive

H, D = 3600, 86_400
CHECK = BehaviourTerm(
    "eligibility_check", windows=(H, D, 7 * D), distinct_products=(7 * D,), last_seen=True
)
TERMS = CatalogTerms(
    products=("loan_personal", "loan_device"),
    categories=("loans",),
    action_ids=("web_loan",),
    channels=("web",),
    purposes=("marketing",),
    behaviour=(CHECK, BehaviourTerm("page_view", windows=(D,))),
)
CUT = 1_800_000_000.0  # the snapshot time: the export counts end here


def ev(
    seq: int, t: float, kind: str = "eligibility_check", product: str | None = None
) -> LedgerEvent:
    payload = {} if product is None else {"product_id": product}
    return LedgerEvent(f"e{seq}", "C1", kind, t, payload, seq=seq)


def test_counts_by_event_time_including_a_late_event() -> None:
    now = CUT + 10 * D
    posted = [ev(1, now - 10 * 60), ev(2, now - 3 * H)]  # the second arrived later, dated earlier
    assert behaviour_counts(posted, now, H) == {"eligibility_check": 1}
    assert behaviour_counts(posted, now, D) == {"eligibility_check": 2}
    # An event dated after now is not in force yet; asked later it is.
    future = [*posted, ev(3, now + 60)]
    assert behaviour_counts(future, now, H, names=["eligibility_check", "search"]) == {
        "eligibility_check": 1,
        "search": 0,
    }
    assert behaviour_counts(future, now + 120, H)["eligibility_check"] == 2
    # Both window ends are included.
    assert behaviour_counts([ev(4, now - H)], now, H)["eligibility_check"] == 1


def test_export_and_ledger_merge_without_double_counting() -> None:
    snapshot = {
        CUT_FEATURE: CUT,
        "eligibility_check_count_1h": 1.0,
        "eligibility_check_count_1d": 2.0,
        "eligibility_check_count_7d": 5.0,
        "eligibility_check_last_ts": CUT - 600,
        "eligibility_check_products_7d": 2.0,
        "last_active_ts": CUT - 60,
    }
    now = CUT + 2 * H
    events = [
        ev(1, CUT - 30, product="loan_personal"),  # before the cut: in the export already
        ev(2, CUT + H + 1, product="loan_personal"),
        ev(3, CUT + 30 * 60, product="loan_device"),
    ]
    out = behaviour_features(events, now, TERMS, snapshot)
    # 1h window [now-1h, now] starts after the cut: ledger only (event 2).
    assert out["eligibility_check_count_1h"] == 1
    # 1d and 7d reach back before the cut: the snapshot's count plus the two after the cut.
    assert out["eligibility_check_count_1d"] == 4
    assert out["eligibility_check_count_7d"] == 7
    # Distinct products: the larger of the export's and the ledger's (never their sum).
    assert out["eligibility_check_products_7d"] == 2
    assert out["eligibility_check_last_ts"] == CUT + H + 1
    assert out["last_active_ts"] == CUT + H + 1
    assert "page_view_count_1d" not in out  # no page views: not changed


def test_without_a_snapshot_every_ledger_event_counts() -> None:
    now = CUT
    out = behaviour_features([ev(1, now - 2 * D), ev(2, now - 5)], now, TERMS, None)
    assert out["eligibility_check_count_1d"] == 1
    assert out["eligibility_check_count_7d"] == 2


def test_derive_applies_behaviour_with_the_rest_and_ages_the_snapshot() -> None:
    names = [
        CUT_FEATURE,
        "eligibility_check_count_1h",
        "eligibility_check_count_7d",
        "page_view_count_1d",
        "last_active_ts",
    ]
    index = {n: j for j, n in enumerate(names)}
    X = np.array([[CUT, 3.0, 9.0, 4.0, CUT - 5], [CUT, 3.0, 9.0, 4.0, CUT - 5], [np.nan] * 5])
    now = CUT + 2 * D
    age_snapshot(X, index, now, TERMS)
    # Windows that start after the cut hold nothing of the export: 0 for every row; the
    # 7-day window keeps the export's count; a row without a snapshot is left NaN.
    assert X[0].tolist() == [CUT, 0.0, 9.0, 0.0, CUT - 5]
    assert X[1].tolist() == X[0].tolist()
    assert all(math.isnan(v) for v in X[2])
    row = {n: X[0, j] for n, j in index.items()}
    out = derive([ev(1, now - 60), ev(2, now - 30, "page_view")], now, row, terms=TERMS)
    assert out["eligibility_check_count_1h"] == 1
    assert out["eligibility_check_count_7d"] == 10
    assert out["page_view_count_1d"] == 1
    assert out["last_active_ts"] == now - 30
    assert out["days_inactive"] == 30 / D


def test_the_ledger_takes_declared_behaviour_events_only() -> None:
    import pytest

    from nextbest.decisions.ledger import EventError, Vocabulary, validate_event

    vocab = Vocabulary.from_terms(TERMS)
    e = validate_event(
        "C1", "eligibility_check", 1_700_000_000, {"product_id": "loan_device"}, "x1", vocab=vocab
    )
    assert e.type == "eligibility_check" and e.payload == {"product_id": "loan_device"}
    with pytest.raises(EventError, match="^type: must be one of .*eligibility_check"):
        validate_event("C1", "add_to_cart", 1_700_000_000, {}, vocab=vocab)
    with pytest.raises(EventError, match="^payload.product_id"):
        validate_event("C1", "page_view", 1_700_000_000, {"product_id": "boat"}, vocab=vocab)
    with pytest.raises(EventError, match="^payload.amount: not a field of page_view"):
        validate_event("C1", "page_view", 1_700_000_000, {"amount": 3}, vocab=vocab)
