"""Normalisation of identifier and name values, and salted identifier keys.

Every function has a scalar form (one value, ``None`` when the value is missing or
unusable) and a vectorised form over a :class:`pandas.Series` (missing as ``None``).
The vectorised forms use pandas string methods so that millions of values take
seconds, not minutes.

:func:`identifier_key` turns an identifier into the key the online store is indexed by:
``f"{id_type}:" + sha256(salt + normalised value)[:32]``, so that "which customer is this
email?" can be answered without storing the raw email. The salt is an argument: callers
pass ``Settings.identifier_salt`` (``NEXTBEST_IDENTIFIER_SALT``); ``customer_id`` values
are kept as they are.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
import pandas as pd

from nextbest.core.vocabulary import ID_TYPES

DEFAULT_COUNTRY_CODE = "44"
_KEY_CHARS = 32
_MIN_PHONE_DIGITS = 10  # with the country code; shorter strings are extensions or junk
_STREET_WORDS = {
    "rd": "road",
    "st": "street",
    "ave": "avenue",
    "av": "avenue",
    "ln": "lane",
    "cl": "close",
    "dr": "drive",
    "ct": "court",
    "pl": "place",
    "sq": "square",
    "cres": "crescent",
    "gdns": "gardens",
}
_NON_NAME = re.compile(r"[^a-z\s'-]")
_SPACES = re.compile(r"\s+")


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


# --- scalar forms -------------------------------------------------------------------------


def normalise_email(value: object) -> str | None:
    """Trimmed, lower-cased email; ``None`` when missing or without an ``@``."""
    if _missing(value):
        return None
    s = str(value).strip().lower()
    return s if "@" in s and not s.startswith("@") and not s.endswith("@") else None


def normalise_phone(value: object, country_code: str = DEFAULT_COUNTRY_CODE) -> str | None:
    """Digits with the country code, e.g. ``"447700900123"``.

    Accepts ``+44 7700 900123``, ``0044...``, ``07700-900-123``, ``447700900123`` and a
    bare national number without the trunk ``0``; numbers without a country code get
    ``country_code``. ``None`` when missing or too short to be a phone number.
    """
    if _missing(value):
        return None
    s = str(value).strip()
    international = s.startswith("+")
    digits = re.sub(r"\D", "", s)
    if international:
        out = digits
    elif digits.startswith("00"):
        out = digits[2:]
    elif digits.startswith("0"):
        out = country_code + digits[1:]
    elif digits.startswith(country_code) and len(digits) > 10:
        out = digits
    else:
        out = country_code + digits
    return out if len(out) >= _MIN_PHONE_DIGITS else None


def normalise_name(value: object) -> str | None:
    """Lower-case ASCII letters, single spaces, no accents or punctuation but ``'-``."""
    if _missing(value):
        return None
    s = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    s = _SPACES.sub(" ", _NON_NAME.sub("", s.lower())).strip()
    return s or None


def normalise_postcode(value: object) -> str | None:
    """Upper-case postcode without spaces (``"e1 6an"`` -> ``"E16AN"``)."""
    if _missing(value):
        return None
    s = re.sub(r"[^A-Z0-9]", "", str(value).upper())
    return s or None


def normalise_street(value: object) -> str | None:
    """Lower-case street with common abbreviations spelled out (``Rd`` -> ``road``)."""
    if _missing(value):
        return None
    words = re.sub(r"[^a-z0-9\s]", " ", str(value).lower()).split()
    s = " ".join(_STREET_WORDS.get(w, w) for w in words)
    return s or None


def normalise_id(value: object) -> str | None:
    """Native ids (CRM, loyalty, app account, device) trimmed; case is kept."""
    if _missing(value):
        return None
    s = str(value).strip()
    return s or None


def normalise_dob(value: object) -> str | None:
    """ISO date ``YYYY-MM-DD``; ``None`` when missing or not a date."""
    if _missing(value):
        return None
    return normalise_dobs(pd.Series([value], dtype=object)).iloc[0]


_SCALAR = {
    "email": normalise_email,
    "phone": normalise_phone,
    "crm_id": normalise_id,
    "loyalty_id": normalise_id,
    "app_account_id": normalise_id,
    "device_id": normalise_id,
    "customer_id": normalise_id,
}


def normalise_identifier(id_type: str, value: object) -> str | None:
    """Normalise ``value`` as an identifier of ``id_type`` (one of :data:`ID_TYPES`)."""
    try:
        fn = _SCALAR[id_type]
    except KeyError:
        msg = f"unknown identifier type {id_type!r}; expected one of {ID_TYPES}"
        raise ValueError(msg) from None
    return fn(value)


def _hash(salt: str, value: str) -> str:
    return hashlib.sha256((salt + value).encode()).hexdigest()[:_KEY_CHARS]


def identifier_key(id_type: str, value: str, salt: str) -> str:
    """Online-store key of one identifier: ``f"{id_type}:" + sha256(salt + value)[:32]``.

    ``customer_id`` values are returned as ``f"customer_id:{value}"`` without hashing.
    Raises ``ValueError`` for an unknown type or a value that does not normalise.
    """
    norm = normalise_identifier(id_type, value)
    if norm is None:
        raise ValueError(f"{id_type} value is missing or not a valid {id_type}")
    if id_type == "customer_id":
        return f"customer_id:{norm}"
    return f"{id_type}:{_hash(salt, norm)}"


# --- vectorised forms ----------------------------------------------------------------------


def _as_str(values: pd.Series) -> pd.Series:
    """Object Series of str with missing values as NaN (pandas string ops need that)."""
    s = pd.Series(values, copy=False)
    mask = s.isna()
    out = s.astype(object).where(~mask, None)
    return out.astype(str).where(~mask, np.nan)


def _finish(s: pd.Series) -> pd.Series:
    """Empty strings and NaN become ``None``; dtype object."""
    s = s.astype(object)
    return s.where(s.notna() & (s != ""), None)


def normalise_emails(values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalise_email`."""
    s = _as_str(values).str.strip().str.lower()
    ok = (
        s.str.contains("@", regex=False, na=False)
        & ~s.str.startswith("@", na=True)
        & ~s.str.endswith("@", na=True)
    )
    return _finish(s.where(ok))


def normalise_phones(values: pd.Series, country_code: str = DEFAULT_COUNTRY_CODE) -> pd.Series:
    """Vectorised :func:`normalise_phone`."""
    s = _as_str(values).str.strip()
    plus = s.str.startswith("+", na=False)
    d = s.str.replace(r"\D", "", regex=True)
    idd = d.str.startswith("00", na=False)
    trunk = d.str.startswith("0", na=False) & ~idd
    has_cc = d.str.startswith(country_code, na=False) & (d.str.len() > 10)
    out = country_code + d
    out = out.where(~has_cc, d)
    out = out.where(~trunk, country_code + d.str.slice(1))
    out = out.where(~idd, d.str.slice(2))
    out = out.where(~plus, d)
    ok = out.str.len().astype(float).fillna(0) >= _MIN_PHONE_DIGITS
    return _finish(out.where(ok))


def normalise_names(values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalise_name`."""
    s = _as_str(values)
    # Accent stripping needs unicodedata; only the few non-ASCII values pay for it.
    non_ascii = s.str.contains(r"[^\x00-\x7f]", regex=True, na=False)
    if non_ascii.any():
        s = s.copy()
        s[non_ascii] = [
            unicodedata.normalize("NFKD", v).encode("ascii", "ignore").decode()
            for v in s[non_ascii]
        ]
    s = s.str.lower().str.replace(_NON_NAME, "", regex=True)
    s = s.str.replace(_SPACES, " ", regex=True).str.strip()
    return _finish(s)


def normalise_postcodes(values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalise_postcode`."""
    return _finish(_as_str(values).str.upper().str.replace(r"[^A-Z0-9]", "", regex=True))


def normalise_streets(values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalise_street`."""
    s = _as_str(values).str.lower().str.replace(r"[^a-z0-9\s]", " ", regex=True)
    s = s.str.replace(_SPACES, " ", regex=True).str.strip()
    pattern = r"\b(" + "|".join(_STREET_WORDS) + r")\b"
    s = s.str.replace(pattern, lambda m: _STREET_WORDS[m.group(1)], regex=True)
    return _finish(s)


def normalise_ids(values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalise_id`."""
    return _finish(_as_str(values).str.strip())


def normalise_dobs(values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalise_dob`: ISO dates first, then other common formats."""
    s = _as_str(values).str.strip()
    parsed = pd.to_datetime(s, errors="coerce", format="ISO8601")
    retry = parsed.isna() & s.notna()
    if retry.any():
        parsed[retry] = pd.to_datetime(s[retry], errors="coerce", format="mixed", dayfirst=True)
    return _finish(parsed.dt.strftime("%Y-%m-%d"))


_VECTOR = {
    "email": normalise_emails,
    "phone": normalise_phones,
    "crm_id": normalise_ids,
    "loyalty_id": normalise_ids,
    "app_account_id": normalise_ids,
    "device_id": normalise_ids,
    "customer_id": normalise_ids,
}


def normalise_identifiers(id_type: str, values: pd.Series) -> pd.Series:
    """Vectorised :func:`normalise_identifier` for one identifier type."""
    try:
        fn = _VECTOR[id_type]
    except KeyError:
        msg = f"unknown identifier type {id_type!r}; expected one of {ID_TYPES}"
        raise ValueError(msg) from None
    return fn(values)


def identifier_keys(id_types: str | pd.Series, values: pd.Series, salt: str) -> pd.Series:
    """Vectorised :func:`identifier_key`; values that do not normalise give ``None``.

    ``id_types`` is one type for all values or a Series aligned with ``values``.
    """
    values = pd.Series(values, copy=False)
    types = (
        pd.Series(id_types, index=values.index, dtype=object)
        if isinstance(id_types, str)
        else pd.Series(id_types, copy=False)
    )
    if len(types) != len(values):
        raise ValueError(f"{len(types)} identifier types for {len(values)} values")
    out = pd.Series(None, index=values.index, dtype=object)
    for id_type in pd.unique(types.to_numpy()):
        m = (types == id_type).to_numpy()
        sub = values[m]
        # Identifiers repeat (every consent event of a customer names the same email
        # again): normalise and hash each distinct value once. Only for str values, where
        # equal values are equal strings; anything else goes value by value.
        codes, uniq = pd.factorize(sub.to_numpy(dtype=object), use_na_sentinel=True)
        distinct = pd.api.types.infer_dtype(uniq, skipna=True) in ("string", "empty")
        if distinct:
            sub = pd.Series(uniq, dtype=object)
        norm = normalise_identifiers(str(id_type), sub)
        if id_type == "customer_id":
            keys = [None if v is None else f"customer_id:{v}" for v in norm]
        else:
            keys = [None if v is None else f"{id_type}:{_hash(salt, v)}" for v in norm]
        if distinct:
            # code -1 (missing) picks the appended None
            out[m] = np.array([*keys, None], dtype=object)[codes]
        else:
            out[m] = keys
    return out
