"""The erasure tombstone: salted hashes of the identifiers of erased persons.

``nextbest forget`` removes a person from every store, but a team's next export will
still hold them. The tombstone keeps them out: identity resolution drops every record
carrying a tombstoned identifier (or whose record id is tombstoned), and the feature build
drops every customer one of whose identifier keys is tombstoned. It holds hashes of the
identifier keys (:func:`nextbest.customers.normalise.identifier_key`), hashed once more with the
identifier salt and a tag, so neither the raw value nor the online store's key appears in
it. One hash per line, append-only, synced: an erasure is never forgotten.

Changing ``identifier_salt`` orphans the tombstone (as it orphans the online keys); the
person's identifiers would have to be tombstoned again under the new salt.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.core.settings import Settings
from nextbest.core.vocabulary import ID_TYPES
from nextbest.customers.normalise import identifier_keys

#: The canonical record columns that carry an identifier: every identifier type but the
#: unified ``customer_id`` (which no source record holds).
IDENTIFIER_COLUMNS: tuple[str, ...] = tuple(t for t in ID_TYPES if t != "customer_id")
_TAG = "\x00tombstone\x00"


def tombstone_path(privacy_dir: Path) -> Path:
    """The tombstone file of a home's privacy directory."""
    return Path(privacy_dir) / "tombstone.txt"


def home_tombstone(settings: Settings) -> frozenset[str]:
    """The tombstone of the home of ``settings``."""
    return load_tombstone(tombstone_path(settings.privacy_dir))


def tombstone_hash(key: str, salt: str) -> str:
    """The tombstone entry of one identifier key (or ``record:<record_id>``)."""
    return hashlib.sha256((salt + _TAG + key).encode()).hexdigest()[:32]


def record_key(record_id: str) -> str:
    """The key a canonical record id is tombstoned under."""
    return f"record:{record_id}"


def load_tombstone(path: Path) -> frozenset[str]:
    """Every hash in the tombstone file (empty when there is none)."""
    path = Path(path)
    if not path.exists():
        return frozenset()
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())


def add_to_tombstone(path: Path, hashes: Iterable[str]) -> int:
    """Append the hashes not in the tombstone yet (one write, synced); returns how many."""
    path = Path(path)
    new = sorted(set(hashes) - load_tombstone(path))
    if not new:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, ("\n".join(new) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(new)


def tombstoned_keys(keys: pd.Series, tombstone: frozenset[str], salt: str) -> np.ndarray:
    """Whether each identifier key (None: no key) is tombstoned."""
    if not tombstone:
        return np.zeros(len(keys), dtype=bool)
    return np.array(
        [k is not None and tombstone_hash(k, salt) in tombstone for k in keys], dtype=bool
    )


def tombstoned_records(records: pd.DataFrame, tombstone: frozenset[str], salt: str) -> np.ndarray:
    """Whether each canonical record carries a tombstoned identifier or record id."""
    hit = np.zeros(len(records), dtype=bool)
    if not tombstone or records.empty:
        return hit
    if "record_id" in records.columns:
        rid = (
            records["record_id"].astype(object).map(lambda r: None if r is None else record_key(r))
        )
        hit |= tombstoned_keys(rid, tombstone, salt)
    for column in IDENTIFIER_COLUMNS:
        if column in records.columns:
            keys = identifier_keys(column, records[column].reset_index(drop=True), salt)
            hit |= tombstoned_keys(keys, tombstone, salt)
    return hit
