"""Which features an absent contract table makes null: a feature is null only when every
table it is computed from is absent."""

from __future__ import annotations

from nextbest.customers.contract import REQUIRED_TABLES, TABLES
from nextbest.customers.feature_schema import (
    HOLDING_BALANCE,
    CatalogTerms,
    feature_tables,
    null_features,
    view_specs,
)

TERMS = CatalogTerms(
    products=("card",),
    categories=("cards",),
    action_ids=("email_card",),
    channels=("email",),
    purposes=("marketing",),
)


def test_a_feature_is_null_only_when_all_its_tables_are_absent() -> None:
    assert null_features([], TERMS) == []
    assert null_features(["service_cases"], TERMS) == ["open_cases"]
    both = set(null_features(["service_cases", "complaints"], TERMS))
    assert both == {"open_cases", "complaints_90d", "last_complaint_ts"}
    orders = set(null_features(["orders"], TERMS))
    assert {"txn_count_7d", "spend_365d_cards", "value_tier", "last_purchase_ts"} <= orders
    assert "last_active_ts" not in orders  # behaviour still dates the last activity
    assert "last_active_ts" in null_features(["orders", "behaviour_events"], TERMS)
    assert null_features(["holdings"], TERMS) == ["holds_card", "balance_card"]
    # holdings without any balance: the flags are known, the balances are not
    assert null_features([HOLDING_BALANCE], TERMS) == ["balance_card"]


def test_every_mapped_feature_exists_and_names_optional_contract_tables() -> None:
    stored = {f.name for v in view_specs(TERMS) for f in v.features}
    mapped = feature_tables(TERMS)
    assert set(mapped) <= stored
    tables = {t for ts in mapped.values() for t in ts}
    assert tables <= set(TABLES) - set(REQUIRED_TABLES) | {HOLDING_BALANCE}
    # every feature of these views comes from some optional table
    for view in (
        "customer_transactions",
        "customer_behaviour",
        "customer_service",
        "customer_holdings",
        "customer_consent",
        "customer_contacts",
    ):
        spec = next(v for v in view_specs(TERMS) if v.name == view)
        assert {f.name for f in spec.features} <= set(mapped), view
