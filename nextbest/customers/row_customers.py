"""Which unified customer each row of a contract table names.

A row names its customer by ``record_id`` (the identity record it was booked against)
or by an identifier (``id_type``, ``id_value``: a customer number, a phone, an
e-mail...). A record resolves to the customer identity resolution put it in
(``identity.parquet``); an identifier to the one customer whose records hold it, found
through the same hashed identifier table the decision service looks customers up in. A
person with several customer numbers has all of them in that table, so each resolves to
the one customer. A row whose record or identifier no customer has, or whose identifier
several customers hold, names no one: it is left out and counted (:class:`LeftOut`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nextbest.customers.normalise import identifier_keys
from nextbest.customers.sources.coded_exports import identifier_pairs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeftOut:
    """Rows of one table that name no customer: ``unresolved`` (a record or identifier no
    customer has) and ``ambiguous`` (an identifier several customers hold)."""

    unresolved: int = 0
    ambiguous: int = 0

    @property
    def total(self) -> int:
        """Every row left out."""
        return self.unresolved + self.ambiguous


@dataclass(frozen=True)
class CustomerIndex:
    """Customer codes of records and identifiers (``ids[code]`` is the customer id)."""

    ids: pd.Index
    records: pd.Index  # the record ids of identity.parquet
    record_codes: np.ndarray  # each one's customer code
    identifiers: pd.DataFrame  # identifier (hashed key), customer_id: unambiguous ones
    identifier_codes: np.ndarray  # each identifier's customer code
    ambiguous: pd.Index  # identifier keys several customers hold
    salt: str

    def record_codes_of(self, record_ids: pd.Series) -> np.ndarray:
        """Customer code of each record id (-1: no such record, or empty)."""
        at = self.records.get_indexer(pd.Series(record_ids, dtype=object))
        return np.append(self.record_codes, -1)[at]

    def codes(self, frame: pd.DataFrame) -> tuple[np.ndarray, LeftOut]:
        """Customer code of each row of a contract table (-1: names no customer) and the
        rows left out."""
        n = len(frame)
        codes = np.full(n, -1, dtype=np.int64)
        by_record = _present(frame, "record_id")
        if by_record.any():
            codes[by_record] = self.record_codes_of(frame["record_id"][by_record])
        by_id = ~by_record & _present(frame, "id_type") & _present(frame, "id_value")
        ambiguous = np.zeros(n, dtype=bool)
        if by_id.any():
            types = frame["id_type"][by_id].astype(object).reset_index(drop=True)
            values = frame["id_value"][by_id].astype(object).reset_index(drop=True)
            keys = identifier_keys(types, values, self.salt).to_numpy(dtype=object)
            at = pd.Index(self.identifiers["identifier"].to_numpy()).get_indexer(keys)
            codes[by_id] = np.append(self.identifier_codes, -1)[at]
            ambiguous[by_id] = self.ambiguous.get_indexer(keys) >= 0
        missed = codes < 0
        left = LeftOut(int((missed & ~ambiguous).sum()), int((missed & ambiguous).sum()))
        return codes, left

    def customer_ids(self, frame: pd.DataFrame) -> tuple[np.ndarray, LeftOut]:
        """Customer id of each row (None: names no customer) and the rows left out."""
        codes, left = self.codes(frame)
        ids = np.append(np.asarray(self.ids, dtype=object), None)
        return ids[codes], left


def _present(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.zeros(len(frame), dtype=bool)
    return frame[column].notna().to_numpy()


def customer_index(records: pd.DataFrame, unified_dir: Path, *, salt: str) -> CustomerIndex:
    """The codes of the staged ``records`` (``identity_records``) and of their
    identifiers, by the resolution under ``unified_dir``; ``salt``: the identifier salt."""
    identity = pq.read_table(
        Path(unified_dir) / "identity.parquet", columns=["record_id", "customer_id"]
    )
    encoded = pc.dictionary_encode(identity.column("customer_id").combine_chunks())
    identity_codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = pd.Index(encoded.dictionary.to_numpy(zero_copy_only=False), name="customer_id")
    by_record = pd.Index(identity.column("record_id").to_numpy(zero_copy_only=False))
    at = by_record.get_indexer(pd.Series(records["record_id"], dtype=object))
    codes = np.append(identity_codes, -1)[at]
    key, cust, ambiguous = identifier_pairs(
        pa.Table.from_pandas(records, preserve_index=False),
        codes,
        ids,
        partial(identifier_keys, salt=salt),
    )
    if ambiguous.any():
        log.warning(
            "%d identifiers point at several customers; they resolve to none",
            len(pd.unique(key[ambiguous])),
        )
    table = pd.DataFrame(
        {"identifier": key[~ambiguous], "customer_id": np.asarray(ids[cust[~ambiguous]], object)}
    )
    return CustomerIndex(
        ids,
        by_record,
        identity_codes,
        table,
        cust[~ambiguous],
        pd.Index(pd.unique(key[ambiguous])),
        salt,
    )


def report_left_out(table: str, left: LeftOut) -> None:
    """Log how many rows of ``table`` name no customer (counts only, never values)."""
    if left.total:
        log.warning(
            "%s: %d rows name no customer and are left out (%d unresolved, %d ambiguous "
            "identifiers)",
            table,
            left.total,
            left.unresolved,
            left.ambiguous,
        )
