"""Normalisation of identifiers and the salted identifier keys."""

from __future__ import annotations

import pandas as pd
import pytest

from nextbest.customers import normalise as nz

SALT = "test-salt"

PHONES = ["+44 7700 900123", "07700900123", "0770-090-0123", "447700900123", "0044 7700 900123"]


@pytest.mark.parametrize("raw", PHONES)
def test_phone_formats_normalise_to_one(raw: str) -> None:
    assert nz.normalise_phone(raw) == "447700900123"


def test_phone_junk_and_missing_are_none() -> None:
    assert nz.normalise_phone("123") is None
    assert nz.normalise_phone(None) is None
    assert nz.normalise_phone(float("nan")) is None


def test_vectorised_forms_match_scalar_forms() -> None:
    phones = pd.Series([*PHONES, None, "12", "+1 (415) 555-0100"])
    assert nz.normalise_phones(phones).tolist() == [nz.normalise_phone(p) for p in phones]
    emails = pd.Series([" Ann@Example.COM ", None, "no-at-sign", "b@x.org"])
    assert nz.normalise_emails(emails).tolist() == [nz.normalise_email(e) for e in emails]
    names = pd.Series([" José  O'Brien ", "ANNA", None, "  ", "Anne-Marie"])
    assert nz.normalise_names(names).tolist() == [nz.normalise_name(v) for v in names]


def test_email_and_name_rules() -> None:
    assert nz.normalise_email("  Ann.Lee@Mail.TEST ") == "ann.lee@mail.test"
    assert nz.normalise_name(" José  O'Brien ") == "jose o'brien"
    assert nz.normalise_street("12 High Rd") == nz.normalise_street("12 HIGH ROAD")
    assert nz.normalise_postcode("e1 6an") == nz.normalise_postcode("E16AN")
    assert nz.normalise_dobs(pd.Series(["1980-01-02", "bad", None])).tolist() == [
        "1980-01-02",
        None,
        None,
    ]


def test_identifier_key_is_salted_hash_of_normalised_value() -> None:
    key = nz.identifier_key("email", " Ann@Example.com", SALT)
    assert key == nz.identifier_key("email", "ann@example.com", SALT)
    assert key.startswith("email:") and len(key) == len("email:") + 32
    assert "ann" not in key
    assert nz.identifier_key("phone", "07700900123", SALT) == nz.identifier_key(
        "phone", "+447700900123", SALT
    )
    assert nz.identifier_key("customer_id", "C123", SALT) == "customer_id:C123"
    assert nz.identifier_key("email", "ann@example.com", "another-salt") != key


def test_identifier_keys_vectorised_twin() -> None:
    types = pd.Series(["email", "phone", "customer_id", "email"])
    values = pd.Series(["A@b.com", "07700900123", "C1", None])
    keys = nz.identifier_keys(types, values, SALT)
    assert keys.iloc[0] == nz.identifier_key("email", "a@b.com", SALT)
    assert keys.iloc[1] == nz.identifier_key("phone", "07700900123", SALT)
    assert keys.iloc[2] == "customer_id:C1"
    assert keys.iloc[3] is None
    assert nz.identifier_keys("email", values.iloc[:1], SALT).iloc[0] == keys.iloc[0]


def _scalar_key(id_type: str, value: object) -> str | None:
    try:
        return nz.identifier_key(id_type, value, SALT)  # type: ignore[arg-type]
    except ValueError:
        return None


def test_identifier_keys_of_repeated_and_odd_values_equal_the_scalar_keys() -> None:
    """Keys are computed once per distinct value; repeats, case variants, blanks,
    missing values and non-string values still get exactly the scalar function's key."""
    types = pd.Series(
        ["email", "email", "email", "phone", "phone", "phone", "crm_id", "crm_id", "crm_id"] * 3
    )
    values = pd.Series(
        [" A@b.com", "a@b.com", None, "07700900123", "+44 7700 900123", "", "C1", 1, 1.0] * 3,
        dtype=object,
    )
    values.iloc[5] = float("nan")
    keys = nz.identifier_keys(types, values, SALT)
    want = [_scalar_key(t, v) for t, v in zip(types, values, strict=True)]
    assert keys.tolist() == want
    assert keys.iloc[0] == keys.iloc[1] == keys.iloc[9] is not None
    assert keys.iloc[3] == keys.iloc[4] is not None
    assert keys.iloc[7] != keys.iloc[8]  # 1 and 1.0 are different ids ("1" and "1.0")


def test_unknown_identifier_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown identifier type"):
        nz.identifier_key("passport", "X1", SALT)
