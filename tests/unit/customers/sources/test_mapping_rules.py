"""What a sources file can say beyond renames: composite keys, who a row is about (a
record or an identifier, per row by a column or a pattern), signs, contacts that are no
catalog action, balances; and every wrong use named before anything is staged."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from nextbest.core.errors import InputError
from nextbest.customers.contract import ContractError, Terms
from nextbest.customers.sources.files import load_source_files
from tests.worlds.small_bank import write_small_bank

TERMS = Terms(
    channels=("email", "branch"),
    purposes=("marketing", "service"),
    action_ids=("email_offer",),
    products=("savings", "mortgage"),
)


@pytest.fixture
def bank(tmp_path: Path) -> Path:
    return write_small_bank(tmp_path / "bank")


def _spec(sources: Path) -> dict:
    return yaml.safe_load(sources.read_text())


def _write_spec(sources: Path, spec: dict) -> Path:
    sources.write_text(yaml.safe_dump(spec, sort_keys=False))
    return sources


def _edit_csv(path: Path, **cells: tuple[int, str]) -> None:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col, (row, value) in cells.items():
        df.loc[row, col] = value
    df.to_csv(path, index=False)


def _problem(err: pytest.ExceptionInfo, column: str) -> str:
    text = str(err.value)
    return next((ln for ln in text.splitlines() if f"column {column!r}" in ln), text)


def test_a_per_row_rule_by_pattern_names_the_same_customers(bank: Path) -> None:
    by_column = load_source_files(bank)["orders"]
    spec = _spec(bank)
    spec["tables"]["orders"][0]["customer"] = [
        {"when": {"matches": "^CARD-"}, "column": "Key", "record": "cards"},
        {"column": "Key", "id_type": "crm_id"},
    ]
    by_pattern = load_source_files(_write_spec(bank, spec))["orders"]
    cols = ["record_id", "id_type", "id_value"]
    pd.testing.assert_frame_equal(by_pattern[cols], by_column[cols])
    assert by_column.loc[1, "record_id"] == "cards:CARD-1"
    assert by_column.loc[0, ["id_type", "id_value"]].tolist() == ["crm_id", "K2"]


def test_a_row_no_rule_holds_for_is_named(bank: Path) -> None:
    spec = _spec(bank)
    spec["tables"]["orders"][0]["customer"] = [
        {"when": {"column": "KeyType", "in": ["CUST"]}, "column": "Key", "id_type": "crm_id"},
        {"when": {"column": "KeyType", "in": ["CARD"]}, "column": "Key", "record": "cards"},
    ]
    _edit_csv(bank.parent / "transactions.csv", KeyType=(2, "ATM"))
    with pytest.raises(ContractError) as err:
        load_source_files(_write_spec(bank, spec))
    line = _problem(err, "record_id")
    assert "transactions.csv: table orders" in line and "matches no 'customer' rule" in line
    assert line.endswith("(rows 3)")
    # rows that name no one may be left out on purpose (drop_empty)
    spec["tables"]["orders"][0]["drop_empty"] = ["record_id"]
    assert len(load_source_files(_write_spec(bank, spec))["orders"]) == 4


def test_rows_that_name_no_one_fail_unless_dropped(bank: Path) -> None:
    _edit_csv(bank.parent / "visits.csv", Phone=(1, ""))
    with pytest.raises(ContractError) as err:
        load_source_files(bank)
    line = _problem(err, "record_id")
    assert "visits.csv: table behaviour_events" in line and "names no customer" in line
    assert line.endswith("(rows 2)")
    spec = _spec(bank)
    spec["tables"]["behaviour_events"][0]["drop_empty"] = ["record_id"]
    assert len(load_source_files(_write_spec(bank, spec))["behaviour_events"]) == 2


def test_a_composite_key_joins_its_columns_and_an_empty_part_empties_it(bank: Path) -> None:
    exposures = load_source_files(bank)["campaign_exposures"]
    assert exposures["exposure_id"].tolist() == ["SPRING:K1", "SPRING:K2", "SPRING:K3"]
    _edit_csv(bank.parent / "exposures.csv", Campaign=(1, ""))
    with pytest.raises(ContractError) as err:
        load_source_files(bank)
    line = _problem(err, "exposure_id")
    assert "required value is empty" in line and line.endswith("(rows 2)")
    _edit_csv(bank.parent / "exposures.csv", Campaign=(1, "SPRING"), CustNo=(1, "K1"))
    with pytest.raises(ContractError, match=r"column 'exposure_id': values must be unique"):
        load_source_files(bank)


def test_sign_sets_an_unsigned_amount_or_flips_a_signed_one(bank: Path) -> None:
    orders = load_source_files(bank)["orders"]
    # D is spend (positive), C money back (negative); the statement's -300 is a debit
    assert orders["amount"].tolist() == [500.0, -100.0, 50.0, 700.0, 300.0]
    _edit_csv(bank.parent / "transactions.csv", Amount=(0, "-500.00"))
    assert load_source_files(bank)["orders"]["amount"].iloc[0] == 500.0  # flag decides


def test_contacts_that_are_no_catalog_action_need_a_catalog_purpose(bank: Path) -> None:
    contacts = load_source_files(bank, terms=TERMS)["contact_history"]
    assert contacts["action_id"].tolist() == [None, "email_offer"]
    _edit_csv(bank.parent / "contacts.csv", Purpose=(0, ""))
    with pytest.raises(ContractError) as err:
        load_source_files(bank, terms=TERMS)
    line = _problem(err, "purpose")
    assert "contacts.csv: table contact_history" in line and "needs its purpose" in line
    assert line.endswith("(rows 1)")
    _edit_csv(bank.parent / "contacts.csv", Purpose=(0, "PIGEONS"))
    with pytest.raises(ContractError) as err:
        load_source_files(bank, terms=TERMS)
    assert "value not allowed" in _problem(err, "purpose")


def test_a_balance_needs_the_time_it_was_read(bank: Path) -> None:
    _edit_csv(bank.parent / "holdings.csv", ReadOn=(3, ""))
    with pytest.raises(ContractError) as err:
        load_source_files(bank)
    line = _problem(err, "balance_at")
    assert "holdings.csv: table holdings" in line and "a balance needs balance_at" in line
    assert line.endswith("(rows 4)")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"customer": {"column": "CustNo", "id_type": "crm_id"}},
            "give 'record' or 'customer', not both",
        ),
        ({"customer": {"column": "CustNo"}}, "exactly one of 'record' (a system) or 'id_type'"),
        ({"customer": {"column": "CustNo", "id_type": "passport"}}, "customer.id_type"),
        (
            {"customer": [{"column": "A", "record": "x"}, {"column": "B", "record": "y"}]},
            "customer[0] has no 'when', so the rules after it are never used",
        ),
        (
            {"customer": {"column": "A", "record": "x", "when": {"matches": "("}}},
            "'matches' is not a regular expression",
        ),
        (
            {"customer": {"column": "A", "record": "x", "when": {"in": ["a"], "matches": "a"}}},
            "exactly one of 'in' (values) or 'matches'",
        ),
        (
            {"columns": {"amount": {"column": "Amount", "sign": {"column": "DC", "flip": True}}}},
            "either 'column' and 'negative', or 'flip: true'",
        ),
        (
            {"columns": {"amount": {"column": "Amount", "sign": {"column": "DC"}}}},
            "give 'column' and 'negative'",
        ),
    ],
)
def test_a_wrong_entry_is_named(bank: Path, entry: dict, message: str) -> None:
    spec = _spec(bank)
    contacts = spec["tables"]["contact_history"][0]  # named by `record: {core, CustNo}`
    if "customer" in entry and "not both" not in message:
        del contacts["record"]
    contacts.update(entry)
    with pytest.raises(InputError) as err:
        load_source_files(_write_spec(bank, spec))
    assert message in str(err.value), str(err.value)


@pytest.mark.parametrize(
    ("table", "entry", "message"),
    [
        (
            "identity_records",
            {"customer": {"column": "CustNo", "id_type": "crm_id"}},
            "identity records have 'record', not 'customer'",
        ),
        ("orders", {"customer": None}, "say who each row is about"),
    ],
)
def test_who_a_row_is_about_is_checked_per_table(
    bank: Path, table: str, entry: dict, message: str
) -> None:
    spec = _spec(bank)
    spec["tables"][table][0].update(entry)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_source_files(_write_spec(bank, spec))
