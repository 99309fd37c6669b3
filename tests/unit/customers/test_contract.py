"""The source contract at the door: every rule fails a bad file with a message naming the
file, the column and the rule, and nothing is staged."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import pytest

from nextbest.core.errors import InputError
from nextbest.core.settings import Settings, get_settings
from nextbest.customers.contract import TABLES, ContractError, columns
from nextbest.customers.sources.files import load_source_files
from nextbest.pipeline import contract_terms, ingest
from tests.worlds.bank import KNOWN_CUSTOMER, write_bank

Edit = Callable[[pd.DataFrame], pd.DataFrame]


@pytest.fixture(scope="module")
def bank_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bank(tmp_path_factory.mktemp("bank"), customers=60).data_dir


@pytest.fixture
def bank(bank_template: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bank"
    shutil.copytree(bank_template, out)
    return out


def _edit(path: Path, edit: Edit) -> None:
    if path.suffix == ".csv":
        edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    else:
        edit(pd.read_parquet(path)).to_parquet(path, index=False)


def _set(col: str, row: int, value: object) -> Edit:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
        return df

    return edit


@pytest.fixture
def settings(bank: Path, tmp_path: Path) -> Settings:
    """A home reading the bank's exports through its sources file, with the bank's catalog."""
    world = Path(__file__).resolve().parents[2] / "worlds" / "bank"
    return get_settings(
        home=tmp_path / "home", sources=bank / "sources.yaml", catalog=world / "catalog.yaml"
    )


class Case(NamedTuple):
    """One broken rule: the file and its edit, and what the error must name."""

    file: str
    edit: Edit
    column: str  # the contract column named
    rule: str  # a fragment of the rule stated
    row: int | None  # a 1-based row named (None: a file-level problem)


CASES = {
    "source column missing": Case(
        "core/customers.csv",
        lambda df: df.drop(columns=["EMail"]),
        "email",
        "source column 'EMail' is not in the file",
        None,
    ),
    "required value empty": Case(
        "crm/cases.csv",
        _set("Opened", 4, ""),
        "opened_at",
        "required value is empty",
        5,
    ),
    "record id unique": Case(
        "core/customers.csv",
        _set("CustNo", 3, "C00001"),
        "record_id",
        "values must be unique",
        4,  # and row 1, the first C00001
    ),
    "timestamp format": Case(
        "crm/consent_log.csv",
        _set("Timestamp", 2, "2026-02-30 10:00"),
        "ts",
        "cannot parse as a timestamp with format '%d/%m/%Y %H:%M'",
        3,
    ),
    "number": Case(
        "cards/transactions_2025.csv",
        _set("Amount", 6, "12,50 EUR"),
        "amount",
        "cannot parse as a number",
        7,
    ),
    "boolean": Case(
        "crm/consent_log.csv",
        _set("Flag", 1, "maybe"),
        "granted",
        "cannot parse as true/false",
        2,
    ),
    "whole number": Case(
        "products/stock.csv",
        _set("Units", 0, "2.5"),
        "stock",
        "cannot parse as a whole number",
        1,
    ),
    "channel allowed": Case(
        "crm/consent_log.csv",
        _set("Channel", 0, "PIGEON"),
        "channel",
        "value not allowed",
        1,
    ),
    "arm is a catalog action": Case(
        "marketing/exposures.parquet",
        _set("OfferCode", 0, "OFF-UNKNOWN"),
        "action_id",
        "value not allowed",
        1,
    ),
    "probability in (0, 1]": Case(
        "marketing/exposures.parquet",
        _set("Probability", 2, 1.5),
        "assignment_probability",
        "less_than_or_equal_to(1.0)",
        3,
    ),
    "revenue not negative": Case(
        "marketing/exposures.parquet",
        _set("Value", 1, -5.0),
        "revenue",
        "greater_than_or_equal_to(0.0)",
        2,
    ),
    "stock not negative": Case(
        "products/stock.csv",
        _set("Units", 1, "-3"),
        "stock",
        "greater_than_or_equal_to(0)",
        2,
    ),
    "held product is a catalog product": Case(
        "products/holdings.csv",
        _set("ProductCode", 2, "ZZ99"),
        "product_id",
        "value not allowed",
        3,
    ),
    "exposure id unique": Case(  # a composite id, [Campaign, CustNo]: one customer twice
        "marketing/exposures.parquet",
        lambda df: _set("CustNo", 1, df.loc[0, "CustNo"])(df),
        "exposure_id",
        "values must be unique",
        2,
    ),
    "contact without action or purpose": Case(  # row 1 is a newsletter, no catalog action
        "marketing/contacts.csv",
        _set("Purpose", 0, ""),
        "purpose",
        "a contact that is no catalog action (empty action_id) needs its purpose",
        1,
    ),
    "event naming no one": Case(
        "branch/visits.csv",
        _set("Phone", 3, ""),
        "record_id",
        "names no customer",
        4,
    ),
    "balance": Case(
        "products/holdings.csv",
        _set("Balance", 5, "12k"),
        "balance",
        "cannot parse as a number",
        6,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_names_file_column_rule_and_rows_and_stages_nothing(
    case: str, bank: Path, settings: Settings
) -> None:
    file, edit, column, rule, row = CASES[case]
    _edit(bank / file, edit)
    with pytest.raises(ContractError) as err:
        ingest(settings)
    text = str(err.value)
    line = next((ln for ln in text.splitlines() if f"column {column!r}" in ln), "")
    assert str(bank / file) in line, text
    assert rule in line, text
    if row is not None:
        shown = line.rsplit("(rows ", 1)[-1].rstrip(")").split(", ")
        assert str(row) in shown, text
    assert not settings.contract_dir.exists()  # nothing half-built


def test_a_bad_file_leaves_the_previous_stage_untouched(bank: Path, settings: Settings) -> None:
    ingest(settings)
    before = {p.name: p.read_bytes() for p in settings.contract_dir.iterdir()}
    _edit(bank / "core" / "customers.csv", _set("CustNo", 0, ""))
    with pytest.raises(ContractError):
        ingest(settings)
    assert {p.name: p.read_bytes() for p in settings.contract_dir.iterdir()} == before


def test_missing_file_and_invalid_sources_file(bank: Path, tmp_path: Path) -> None:
    (bank / "crm" / "complaints.csv").unlink()
    with pytest.raises(ContractError, match=r"complaints\.csv: table complaints.*no such file"):
        load_source_files(bank / "sources.yaml")
    bad = bank / "bad.yaml"
    bad.write_text("tables:\n  orders:\n    - file: x.csv\n      columns: {price: Amount}\n")
    with pytest.raises(InputError, match=r"(?s)bad\.yaml.*unknown contract columns \['price'\]"):
        load_source_files(bad)
    bad.write_text("tables:\n  loyalty_cards: []\n")
    with pytest.raises(InputError, match=r"unknown tables \['loyalty_cards'\]"):
        load_source_files(bad)


def test_bank_maps_onto_the_contract(settings: Settings) -> None:
    tables = load_source_files(settings.sources, terms=contract_terms(settings))
    assert set(tables) == set(TABLES)
    for name, frame in tables.items():
        assert list(frame.columns) == list(columns(name)), name
    people = tables["identity_records"].set_index("record_id")
    known = people.loc[f"core:{KNOWN_CUSTOMER}"]
    # full name split, day-first date of birth written ISO, raw phone kept for normalise
    assert known["first_name"] and known["last_name"] and " " not in known["last_name"]
    assert len(known["date_of_birth"]) == 10 and known["date_of_birth"][4] == "-"
    assert known["phone"].startswith("07700")
    # the transaction files of both years, credits (DC = C) negative
    orders = tables["orders"]
    assert orders["ts"].dt.year.nunique() == 2
    assert (orders["amount"] < 0).any() and (orders["amount"] > 0).any()
    exposures = tables["campaign_exposures"]
    assert "no_action" in set(exposures["action_id"])  # CTRL mapped onto the control arm
    per_campaign = exposures.groupby("campaign_id")["assignment_probability"].unique()
    assert len({tuple(sorted(v)) for v in per_campaign}) == 3  # campaigns differ
    consent = tables["consent_events"]
    mine = consent.loc[consent["id_value"] == KNOWN_CUSTOMER].sort_values("ts")
    assert mine.loc[mine["channel"] == "sms", "granted"].tolist() == [True, False]
    # no exposure id in the export: campaign and customer number make one
    assert exposures["exposure_id"].str.fullmatch(r"[A-Z]+26:C\d{5}").all()
    # branch visits name a phone, complaints a customer number: identifiers, not records
    visits = tables["behaviour_events"].loc[tables["behaviour_events"]["id_type"].notna()]
    assert set(visits["id_type"]) == {"phone"} and visits["record_id"].isna().all()
    assert set(tables["complaints"]["id_type"]) == {"crm_id"}
    # newsletters and rate letters are contacts without a catalog action, with a purpose
    contacts = tables["contact_history"]
    bau = contacts.loc[contacts["action_id"].isna()]
    assert len(bau) and set(bau["purpose"]) == {"marketing", "service"}
    assert tables["holdings"][["balance", "balance_at"]].notna().all().all()


def test_the_guide_documents_every_contract_column() -> None:
    guide = (Path(__file__).resolve().parents[3] / "docs" / "bring-your-own-data.md").read_text()
    for table in TABLES:
        assert f"### `{table}`" in guide
        for name, (kind, required, meaning) in columns(table).items():
            row = f"| `{name}` | {kind} | {'yes' if required else 'no'} | {meaning} |"
            assert row in guide, row


def test_the_guide_shows_the_bank_s_sources_file_as_it_is() -> None:
    root = Path(__file__).resolve().parents[3]
    guide = (root / "docs" / "bring-your-own-data.md").read_text()
    sources = (root / "tests" / "worlds" / "bank" / "sources.yaml").read_text()
    assert f"```yaml\n{sources}```" in guide


def test_identifiers_are_normalised_by_the_product_not_the_source(bank: Path) -> None:
    from nextbest.customers.identity import ResolutionSettings, resolve_records
    from nextbest.customers.sources.identity_records import CANONICAL_COLUMNS

    records = load_source_files(bank / "sources.yaml")["identity_records"]
    online = records.loc[records["source"] == "online"].iloc[0]
    assert online["email"] == online["email"].upper()  # staged as the bank holds it
    result = resolve_records(records[list(CANONICAL_COLUMNS)], ResolutionSettings(use_splink=False))
    customer = result.assignments.set_index("record_id")["customer_id"]
    assert customer[online["record_id"]] == customer[f"core:{KNOWN_CUSTOMER}"]
