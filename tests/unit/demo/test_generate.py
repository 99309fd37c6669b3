"""The generator: fragmented, noisy identities; honest randomisation; outcomes as the truth says."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nextbest.core.vocabulary import NO_ACTION
from nextbest.demo.generate import (
    ACTIONS,
    CATEGORIES,
    CHANNELS,
    EXPORT_FILES,
    PRODUCTS,
    PURPOSES,
    RECORD_NOISE,
    generate,
)
from tests.params import SECOND_SEED, SEED, SMALL_CUSTOMERS

# Tolerance for sampling-error checks; several dozen comparisons per test.
Z = 4.5


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    generate(SMALL_CUSTOMERS, SEED, out)
    return out


def _read(raw: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(raw / f"{name}.parquet")


@pytest.fixture(scope="module")
def records(raw: Path) -> pd.DataFrame:
    return _read(raw, "truth/records")


@pytest.fixture(scope="module")
def exposures(raw: Path) -> pd.DataFrame:
    history = _read(raw, "campaign_exposures")
    truth = _read(raw, "truth/campaign_truth")
    return history.merge(truth, on="exposure_id", validate="one_to_one")


def _by_person(raw: Path, records: pd.DataFrame, name: str, id_col: str, source: str):
    table = _read(raw, name)
    table["record_id"] = f"{source}:" + table[id_col]
    return table.merge(records[["record_id", "person_id"]], on="record_id", validate="one_to_one")


def test_constants_follow_the_contract() -> None:
    assert CHANNELS == ("email", "sms", "push", "web", "app", "call_center")
    assert PURPOSES == ("marketing", "profiling", "service")
    assert set(CATEGORIES) == {"phones", "accessories", "broadband", "insurance", "loans"}
    assert len({p.product_id for p in PRODUCTS}) == len(PRODUCTS)
    product_ids = {p.product_id: p.category for p in PRODUCTS}
    assert len(ACTIONS) == 8
    for action in ACTIONS:
        assert action.channel in CHANNELS and action.purpose in PURPOSES
        assert action.kind in {"upsell", "cross_sell", "retention", "service"}
        if action.product_id is not None:
            assert product_ids[action.product_id] == action.category


def test_every_export_and_truth_file_is_written(raw: Path) -> None:
    for name in EXPORT_FILES:
        assert (raw / f"{name}.parquet").exists(), name
    for name in ("records", "persons", "households", "response", "campaign_truth"):
        assert (raw / "truth" / f"{name}.parquet").exists(), name
    assert not any(p.name.startswith("truth") for p in raw.glob("*.parquet"))


def test_timestamps_are_utc_microseconds(raw: Path) -> None:
    for name in EXPORT_FILES:
        for col, dtype in _read(raw, name).dtypes.items():
            if str(dtype).startswith("datetime"):
                assert str(dtype) == "datetime64[us, UTC]", (name, col, dtype)


def test_persons_appear_in_several_sources_under_different_ids(records: pd.DataFrame) -> None:
    sources_per_person = records.groupby("person_id")["source"].nunique()
    assert (sources_per_person >= 3).mean() > 0.3
    assert records["record_id"].is_unique
    share_crm = records.loc[records.source == "crm", "person_id"].nunique() / SMALL_CUSTOMERS
    assert 0.7 < share_crm < 0.9
    crm_per_person = records[records.source == "crm"].groupby("person_id").size()
    assert 0.01 < (crm_per_person == 2).mean() < 0.06  # duplicate CRM records


def test_emails_differ_in_form_between_crm_and_leads(raw: Path, records: pd.DataFrame) -> None:
    crm = _by_person(raw, records, "crm_accounts", "crm_id", "crm").dropna(subset=["email"])
    leads = _by_person(raw, records, "email_leads", "lead_id", "email_lead")
    pairs = crm.merge(leads, on="person_id", suffixes=("_crm", "_lead"))
    assert len(pairs) > 100
    crm_address = pairs.email_crm.str.strip().str.lower()
    same_address = crm_address == pairs.email_lead.str.strip().str.lower()
    differ_in_form = same_address & (pairs.email_crm != pairs.email_lead)
    assert differ_in_form.mean() > 0.15
    assert (~same_address).mean() > 0.03  # second email addresses
    assert leads.first_name.isna().mean() > 0.1  # leads with only an email


def test_phones_come_in_several_formats_and_landlines_are_shared(
    raw: Path, records: pd.DataFrame
) -> None:
    crm = _by_person(raw, records, "crm_accounts", "crm_id", "crm")
    loyalty = _by_person(raw, records, "loyalty_members", "loyalty_id", "loyalty")
    phones = pd.concat([crm[["person_id", "phone"]], loyalty[["person_id", "phone"]]]).dropna()
    patterns = {
        r"^\+44 \d{4} \d{6}$",
        r"^0\d{10}$",
        r"^0\d{4}-\d{3}-\d{3}$",
        r"^44\d{10}$",
    }
    for pattern in patterns:
        assert phones.phone.str.match(pattern).mean() > 0.05, pattern
    phones["digits"] = phones.phone.str.replace(r"\D", "", regex=True).str[-10:]
    persons_per_number = phones.groupby("digits").person_id.nunique()
    assert (persons_per_number > 1).sum() >= 3  # household landlines: a phone-linking trap


def test_web_records_are_logged_in_devices_of_their_account_owner(
    raw: Path, records: pd.DataFrame
) -> None:
    events = _read(raw, "web_events")[["device_id", "app_account_id"]]
    logins = events.dropna().drop_duplicates()
    web = records[records.source == "web"]
    assert set(web.record_id) == set("web:" + logins.device_id)
    assert events.device_id.nunique() > 2 * len(web)  # most cookies never log in
    owner = dict(zip(records.record_id, records.person_id, strict=True))
    device_person = ("web:" + logins.device_id).map(owner)
    account_person = ("app:" + logins.app_account_id).map(owner)
    assert device_person.notna().all()
    assert (device_person == account_person).all()


def test_apps_and_loyalty_cards_carry_a_contact(raw: Path) -> None:
    apps = _read(raw, "app_accounts")
    loyalty = _read(raw, "loyalty_members")
    leads = _read(raw, "email_leads")
    assert (apps.email.notna() | apps.phone.notna()).mean() > 0.99  # a login is needed
    assert (loyalty.email.notna() | loyalty.phone.notna()).mean() > 0.97
    assert 0.3 < leads.phone.notna().mean() < 0.6  # the form's optional mobile field
    assert loyalty.email.isna().mean() > 0.4  # still phone-first


def test_names_carry_typos_and_case_noise(raw: Path, records: pd.DataFrame) -> None:
    crm = _by_person(raw, records, "crm_accounts", "crm_id", "crm")
    loyalty = _by_person(raw, records, "loyalty_members", "loyalty_id", "loyalty")
    pairs = crm.merge(loyalty, on="person_id", suffixes=("_a", "_b"))
    a = pairs.first_name_a.str.strip().str.lower()
    b = pairs.first_name_b.str.strip().str.lower()
    assert (pairs.first_name_a != pairs.first_name_b).mean() > 0.1
    assert 0.01 < (a != b).mean() < 0.25  # a one-character edit, not a different person


def test_households_share_addresses(raw: Path) -> None:
    persons = _read(raw, "truth/persons")
    households = _read(raw, "truth/households")
    assert households.person_id.is_unique and len(households) == SMALL_CUSTOMERS
    assert (persons.groupby("household_id").size() > 1).mean() > 0.3


def test_campaign_assignment_matches_stated_probabilities(exposures: pd.DataFrame) -> None:
    for campaign, rows in exposures.groupby("campaign_id"):
        stated = rows.groupby("action_id")["assignment_probability"].agg(["min", "max"])
        assert (stated["min"] == stated["max"]).all(), campaign  # one probability per arm
        assert stated["min"].sum() == pytest.approx(1.0, abs=1e-9)
        assert NO_ACTION in stated.index
        counts = rows.action_id.value_counts().reindex(stated.index)
        result = stats.chisquare(counts.to_numpy(), stated["min"].to_numpy() * len(rows))
        assert result.pvalue > 1e-4, (campaign, counts.to_dict())


def test_exposures_are_plentiful_and_before_as_of(raw: Path, exposures: pd.DataFrame) -> None:
    crm_persons = _read(raw, "truth/persons").has_crm.sum()
    assert 2.5 < len(exposures) / crm_persons < 6.0
    window_end = exposures.exposed_at + pd.to_timedelta(exposures.outcome_window_days, unit="D")
    assert window_end.max() <= pd.Timestamp("2026-11-01", tz="UTC")
    assert (exposures.revenue[exposures.responded == 0] == 0).all()
    assert (exposures.revenue[exposures.responded == 1] > 0).all()


def test_observed_response_matches_truth_per_arm(exposures: pd.DataFrame) -> None:
    for arm, rows in exposures.groupby("action_id"):
        p = rows.p_response_assigned_arm.to_numpy()
        se = np.sqrt((p * (1 - p)).sum()) / len(p)
        assert abs(rows.responded.mean() - p.mean()) < Z * se, arm


def test_treated_minus_control_matches_truth_uplift(exposures: pd.DataFrame) -> None:
    control = exposures[exposures.action_id == NO_ACTION]
    pc_ = control.p_response_assigned_arm.to_numpy()
    var_c = (pc_ * (1 - pc_)).sum() / len(pc_) ** 2
    for arm, rows in exposures[exposures.action_id != NO_ACTION].groupby("action_id"):
        p = rows.p_response_assigned_arm.to_numpy()
        observed = rows.responded.mean() - control.responded.mean()
        truth = p.mean() - pc_.mean()
        se = np.sqrt((p * (1 - p)).sum() / len(p) ** 2 + var_c)
        assert abs(observed - truth) < Z * se, (arm, observed, truth)
        # The truth's own uplift for these rows is the treated minus the untreated probability.
        own = (p - rows.p_response_no_action.to_numpy()).mean()
        assert abs(own - truth) < Z * se


def test_uplift_is_heterogeneous(raw: Path) -> None:
    response = _read(raw, "truth/response")
    for action in ACTIONS:
        uplift = response[f"p_{action.action_id}"] - response["p_no_action"]
        assert (uplift > 0.02).mean() > 0.05, action.action_id  # persuadables
    sales = [a.action_id for a in ACTIONS if a.kind in ("upsell", "cross_sell")]
    for action_id in sales:
        uplift = response[f"p_{action_id}"] - response["p_no_action"]
        assert (uplift < -0.02).mean() > 0.05, action_id  # sleeping dogs
        assert (response[f"value_{action_id}"] > 0).all()


def test_latent_attributes_show_in_observable_data(raw: Path, records: pd.DataFrame) -> None:
    persons = _read(raw, "truth/persons").set_index("person_id")
    web = _read(raw, "web_events")
    web = web[web.event_type == "page_view"]
    web["record_id"] = "web:" + web.device_id
    web = web.merge(records, on="record_id")
    views = pd.crosstab(web.person_id, web.category)
    share = views.div(views.sum(axis=1), axis=0)
    for category in CATEGORIES:
        r = np.corrcoef(share[category], persons.loc[share.index, f"interest_{category}"])[0, 1]
        assert r > 0.3, category

    cases = _read(raw, "service_cases")
    cases["record_id"] = "crm:" + cases.crm_id
    cases = cases.merge(records, on="record_id")
    complaints = cases[cases.complaint].groupby("person_id").size()
    crm_persons = persons[persons.has_crm]
    n_complaints = complaints.reindex(crm_persons.index, fill_value=0)
    assert np.corrcoef(n_complaints, crm_persons.complaint_propensity)[0, 1] > 0.3

    crm = _by_person(raw, records, "crm_accounts", "crm_id", "crm").dropna(subset=["date_of_birth"])
    dob = pd.to_datetime(crm.date_of_birth, format="%Y-%m-%d")
    age = (pd.Timestamp("2026-11-01") - dob).dt.days / 365.25
    # The date of birth gives the age within a year, except where a digit typo (at the
    # rate of the data dictionary) moved the year.
    off = np.abs(age.to_numpy() - persons.loc[crm.person_id, "age"].to_numpy()) > 1.0
    assert 0 < off.mean() <= RECORD_NOISE["dob_digit_typo"]


def test_as_of_must_be_timezone_aware(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="as_of"):
        generate(100, SEED, tmp_path, as_of=datetime(2026, 11, 1))


@pytest.mark.parametrize("persons", [60, 100])
def test_small_worlds_give_every_person_a_household(tmp_path: Path, persons: int) -> None:
    # with this seed the drawn household sizes hold fewer places than persons
    generate(persons, SEED, tmp_path)
    truth = pd.read_parquet(tmp_path / "truth" / "persons.parquet")
    assert len(truth) == persons and truth["household_id"].notna().all()


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    raw: Path, tmp_path: Path
) -> None:
    generate(SMALL_CUSTOMERS, SEED, tmp_path / "again")
    generate(SMALL_CUSTOMERS, SECOND_SEED, tmp_path / "other")
    first, again, other = _hashes(raw), _hashes(tmp_path / "again"), _hashes(tmp_path / "other")
    assert len(first) == len(EXPORT_FILES) + 5
    assert first == again
    assert all(first[name] != other[name] for name in first if name != "products.parquet")
    assert re.match(r"^[0-9a-f]{64}$", next(iter(first.values())))
