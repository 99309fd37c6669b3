"""Every hashed identifier of the source exports with the customers that hold it, for the
agent console: who shares an identifier (candidates, masked), which systems a customer
appears in, and the consent export's entries of a customer with their date and source.

The online identity lookup drops an identifier that several customers hold (a shared
household phone resolves to nobody, ``sources.coded_exports.identifier_pairs``); the console
needs to say *who* the candidates are without showing them. The index is built from the
same canonical records and identity output as the features build, with the same salted
keys, and holds no raw value: a candidate's label is masked when it is built.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest.customers.normalise import identifier_keys
from nextbest.customers.sources.coded_exports import (
    _identity_codes,
    _record_codes,
    identifier_pairs,
)
from nextbest.customers.sources.identity_records import load_canonical_table

log = logging.getLogger(__name__)


def mask_text(value: Any, keep: int = 1) -> str:
    """A personal value masked: its first ``keep`` characters, then asterisks ("J***")."""
    if value is None or (isinstance(value, float) and value != value) or str(value) == "":
        return ""
    text = str(value)
    return text[:keep] + "***"


def mask_email(value: Any) -> str:
    """An e-mail address masked: "j***@e***.com"."""
    if not isinstance(value, str) or "@" not in value:
        return ""
    local, _, domain = value.partition("@")
    name, dot, tld = domain.rpartition(".")
    return f"{mask_text(local)}@{mask_text(name)}{dot}{tld}" if dot else f"{mask_text(local)}@***"


def mask_phone(value: Any) -> str:
    """A phone number masked to its last two digits: "•••• 23"."""
    digits = "".join(c for c in str(value or "") if c.isdigit())
    return f"•••• {digits[-2:]}" if len(digits) >= 2 else ""


@dataclass
class IdentifierIndex:
    """Hashed identifier -> customers; customer -> systems, masked label, consent entries."""

    customers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    systems: dict[str, tuple[str, ...]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    consent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def customers_of(self, key: str) -> tuple[str, ...]:
        """Every customer whose records hold the identifier ``key`` (salted, as the
        online lookup's)."""
        return self.customers.get(key, ())


def build_identifier_index(raw_dir: Path, unified_dir: Path, salt: str) -> IdentifierIndex:
    """The index of the exports under ``raw_dir`` resolved in ``unified_dir``."""
    keys_of = partial(identifier_keys, salt=salt)
    _, ids, identity_codes, identity_records = _identity_codes(unified_dir)
    records = load_canonical_table(raw_dir)
    codes = _record_codes(records, identity_records, identity_codes)
    key, cust, _ = identifier_pairs(records, codes, ids, keys_of)
    index = IdentifierIndex()
    grouped: dict[str, list[str]] = defaultdict(list)
    for k, c in zip(key.tolist(), np.asarray(ids[cust], dtype=object).tolist(), strict=True):
        grouped[k].append(c)
    index.customers = {k: tuple(v) for k, v in grouped.items()}
    frame = records.select(
        [
            c
            for c in ("record_id", "source", "first_name", "last_name", "email", "phone")
            if c in records.column_names
        ]
    ).to_pandas()
    frame["customer_id"] = np.where(codes >= 0, np.asarray(ids, dtype=object)[codes], None)
    frame = frame[frame["customer_id"].notna()]
    index.systems = {c: tuple(sorted(set(g))) for c, g in frame.groupby("customer_id")["source"]}
    index.labels = {c: _label(g) for c, g in frame.groupby("customer_id")}
    index.consent = _consent_entries(raw_dir, index, keys_of)
    log.info("identifier index: %d identifiers, %d customers", len(index.customers), len(ids))
    return index


def _label(rows: pd.DataFrame) -> str:
    """A customer's masked label: initials, a masked e-mail and a phone's last digits."""

    def first(col: str) -> Any:
        values = rows[col].dropna() if col in rows else pd.Series(dtype=object)
        return values.iloc[0] if len(values) else None

    parts = [
        " ".join(p for p in (mask_text(first("first_name")), mask_text(first("last_name"))) if p),
        mask_email(first("email")),
        mask_phone(first("phone")),
    ]
    return " · ".join(p for p in parts if p) or "(no personal data on record)"


def _consent_entries(
    raw_dir: Path, index: IdentifierIndex, keys_of: Any
) -> dict[str, list[dict[str, Any]]]:
    """The consent export's entries per customer (purpose, channel, granted, date,
    source), through the identifier each names; an identifier several customers hold is
    given to none."""
    path = raw_dir / "consent.parquet"
    if not path.exists():
        return {}
    table = pd.read_parquet(path)
    keys = keys_of(table["id_type"], table["id_value"].astype(object))
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for k, row in zip(keys.tolist(), table.itertuples(index=False), strict=True):
        owners = index.customers.get(k, ()) if k is not None else ()
        if len(owners) != 1:
            continue
        out[owners[0]].append(
            {
                "purpose": row.purpose,
                "channel": row.channel,
                "granted": bool(row.granted),
                "time": pd.Timestamp(row.ts).isoformat(),
                "source": f"export: {row.source}",
                "actor": "",
            }
        )
    return dict(out)
