"""Rows named by a record or by any identifier resolve to their customer, like consent:
a person's two customer numbers and card are one customer in every table; a row whose
identifier no one or several customers hold is left out and counted. The features read
the resolved rows: signed amounts in the value tier, balances, contacts that are no
catalog action in the caps' counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nextbest.customers.features import build_feature_tables
from nextbest.customers.row_customers import LeftOut, customer_index
from nextbest.customers.sources.coded_contract import contract_source_data
from nextbest.customers.sources.files import load_source_files
from tests.worlds.small_bank import AS_OF, TERMS, write_identity, write_small_bank
from training.dataset import contract_exposures

SALT = "row-customers-salt"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pd.DataFrame], Path]:
    root = tmp_path_factory.mktemp("small-bank")
    tables = load_source_files(write_small_bank(root / "bank"))
    write_identity(root / "unified")
    return tables, root / "unified"


@pytest.fixture(scope="module")
def features(
    bank: tuple[dict[str, pd.DataFrame], Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, pd.DataFrame]:
    tables, unified = bank
    out = tmp_path_factory.mktemp("features")
    sources = contract_source_data(tables, unified, salt=SALT)
    paths = build_feature_tables(
        out, unified, out, AS_OF, months=3, terms=TERMS, salt=SALT, sources=sources
    )
    return {
        name: pd.read_parquet(path).set_index(["customer_id", "event_timestamp"])
        for name, path in paths.items()
        if name != "identity_lookup"
    }


def _at(frame: pd.DataFrame, customer: str, day: str = "2026-05-01") -> pd.Series:
    return frame.loc[(customer, pd.Timestamp(day, tz="UTC"))]


def test_every_number_of_a_person_and_her_card_resolve_to_her(
    bank: tuple[dict[str, pd.DataFrame], Path],
) -> None:
    tables, unified = bank
    index = customer_index(tables["identity_records"], unified, salt=SALT)
    orders, left = index.customer_ids(tables["orders"])
    # K2 (her second number) and CARD-1 (a card record) are Anna's; K9 is no one's
    assert list(orders) == ["X", "X", None, "Y", "Y"]
    assert left == LeftOut(unresolved=1, ambiguous=0)
    consent, _ = index.customer_ids(tables["consent_events"])
    assert list(consent) == ["X", "X"]  # consent under K1 and under K2
    visits, left = index.customer_ids(tables["behaviour_events"])
    # her phone in another notation; Ben's phone is also the online user's; a walk-in
    assert list(visits) == ["X", None, None]
    assert left == LeftOut(unresolved=1, ambiguous=1)


def test_the_build_counts_the_rows_it_leaves_out(
    bank: tuple[dict[str, pd.DataFrame], Path],
) -> None:
    tables, unified = bank
    src, ids = contract_source_data(tables, unified, salt=SALT)
    assert src.left_out == {
        "orders": LeftOut(unresolved=1),
        "behaviour_events": LeftOut(unresolved=1, ambiguous=1),
    }
    assert sorted(ids) == ["X", "Y", "Z"]
    assert len(src.baskets) == 4 and len(src.activity) == 1


def test_consent_complaints_and_purchases_under_either_number_are_one_customer_s(
    features: dict[str, pd.DataFrame],
) -> None:
    consent = _at(features["customer_consent"], "X")
    assert consent["consent_marketing_email"] == 1  # recorded under K1
    assert consent["consent_marketing_branch"] == 1  # recorded under K2
    assert _at(features["customer_service"], "X")["complaints_90d"] == 1  # under K2
    assert _at(features["customer_transactions"], "X")["txn_count_365d"] == 2
    assert _at(features["customer_behaviour"], "X")["last_active_ts"] == pytest.approx(
        pd.Timestamp("2026-04-10", tz="UTC").timestamp()
    )


def test_amounts_follow_one_sign_convention_spend_positive(
    features: dict[str, pd.DataFrame],
) -> None:
    # Anna: 500 spent (a debit), 100 back (a card credit): net spend 400, tier 2.
    anna = _at(features["customer_transactions"], "X")
    assert anna["txn_amount_365d"] == 400.0
    assert _at(features["customer_profile"], "X")["value_tier"] == 2
    # Ben: 700 by card, 300 on a statement signed the other way round (flipped): 1000
    assert _at(features["customer_transactions"], "Y")["txn_amount_365d"] == 1000.0
    assert _at(features["customer_profile"], "Y")["value_tier"] == 2
    assert _at(features["customer_profile"], "Z")["value_tier"] == 0


def test_balances_count_from_their_reading_and_add_up_per_product(
    features: dict[str, pd.DataFrame],
) -> None:
    h = features["customer_holdings"]
    # two savings accounts, one per number, read on 1 February: 1000 + 500
    assert _at(h, "X", "2026-03-01")["balance_savings"] == 1500.0
    # a mortgage held without a balance is unknown, not 0; a product not held is 0
    assert np.isnan(_at(h, "X")["balance_mortgage"])
    assert _at(h, "Y")["balance_mortgage"] == 0.0
    # Ben's savings were read on 15 April: unknown before, 200 after
    assert np.isnan(_at(h, "Y", "2026-04-01")["balance_savings"])
    assert _at(h, "Y")["balance_savings"] == 200.0
    # the lineage never runs ahead of the snapshot
    for (_, t), row in h.iterrows():
        assert row["customer_holdings_as_of_ts"] <= t.timestamp()


def test_a_newsletter_counts_towards_the_caps_but_shows_no_action(
    features: dict[str, pd.DataFrame],
) -> None:
    contacts = _at(features["customer_contacts"], "X")
    assert contacts["contacts_email_7d"] == 2  # the newsletter and the offer
    assert contacts["contacts_total_7d"] == 2
    assert contacts["last_shown_ts_email_offer"] == pd.Timestamp("2026-04-28", tz="UTC").timestamp()


def test_training_resolves_exposures_named_by_a_customer_number(
    bank: tuple[dict[str, pd.DataFrame], Path],
) -> None:
    tables, unified = bank
    exposures = tables["campaign_exposures"]
    assert list(exposures["exposure_id"]) == ["SPRING:K1", "SPRING:K2", "SPRING:K3"]
    got = contract_exposures(
        exposures, unified, records=tables["identity_records"], salt=SALT
    ).set_index("exposure_id")
    assert got["customer_id"].to_dict() == {"SPRING:K1": "X", "SPRING:K2": "X", "SPRING:K3": "Y"}
    with pytest.raises(ValueError, match="identity records"):
        contract_exposures(exposures, unified)
