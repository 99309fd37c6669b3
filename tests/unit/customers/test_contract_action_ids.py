"""Contact history and campaign exposures name actions as the business writes them: the
contract reads them normalised as the catalog's ids are, and an unknown one is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextbest.core.settings import get_settings
from nextbest.customers.contract import ContractError
from nextbest.customers.sources.files import load_source_files
from nextbest.pipeline import contract_terms
from tests.worlds.bank import write_bank

WORLD = Path(__file__).resolve().parents[2] / "worlds" / "bank"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bank(tmp_path_factory.mktemp("bank_ids"), customers=40).data_dir


def _load(bank: Path, tmp_path: Path, text: str):
    sources = bank / "sources_upper.yaml"
    sources.write_text(text)
    settings = get_settings(home=tmp_path, sources=sources, catalog=WORLD / "catalog.yaml")
    return load_source_files(sources, terms=contract_terms(settings))


def test_upper_case_and_hyphenated_ids_are_the_catalog_s_actions(bank: Path, tmp_path: Path):
    text = (bank / "sources.yaml").read_text()
    # the bank's own spelling: upper case, hyphens, and its control label
    text = text.replace("OFF-SAV: email_savings_offer", "OFF-SAV: EMAIL-SAVINGS-OFFER")
    text = text.replace("OFF-CARD: sms_card_upgrade", "OFF-CARD: SMS_CARD_UPGRADE")
    text = text.replace("CTRL: no_action", "CTRL: No_Action")
    assert text.count("EMAIL-SAVINGS-OFFER") == 2 and "No_Action" in text
    tables = _load(bank, tmp_path, text)
    named = [tables[t]["action_id"].dropna() for t in ("contact_history", "campaign_exposures")]
    seen = set(named[0]) | set(named[1])  # contacts that are no catalog action name none
    assert {"email_savings_offer", "sms_card_upgrade", "no_action"} <= seen
    assert all(a == a.lower() and "-" not in a for a in seen)


def test_an_unknown_action_is_named_as_read(bank: Path, tmp_path: Path):
    text = (bank / "sources.yaml").read_text()
    text = text.replace("OFF-SAV: email_savings_offer", "OFF-SAV: Savings-Offer-2")
    with pytest.raises(ContractError) as err:
        _load(bank, tmp_path, text)
    msg = str(err.value)
    assert "column 'action_id': value not allowed" in msg
    assert "(found 'savings_offer_2')" in msg
