"""Staged contract tables mapped onto unified customers: the feature build's input.

:func:`contract_source_data` is the contract's route into
:class:`customers.feature_sources.SourceData`, the same value the demo's direct reader
(:func:`customers.feature_sources.load_coded_sources`) builds from the generator's exports; on
the demo world both give the same tables (``tests/unit/customers/test_contract_sources.py``).
Events name their identity record; the resolution's ``identity.parquet`` names each
record's customer; rows of records that did not resolve are left out. An absent table
gives an empty one and is named in ``SourceData.absent``, so the features that need it
are built null rather than 0 (:func:`customers.feature_schema.null_features`).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from customers.contract import TABLES, complete
from customers.feature_sources import SECS, SourceData, _identifier_table_coded, epoch_seconds


def _table(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    if name in tables:
        return tables[name]
    return complete(name, pd.DataFrame(columns=list(TABLES[name].to_schema().columns)))


def _customer_codes(
    identity: pa.Table,
) -> tuple[pd.Index, np.ndarray]:
    """Customer ids in first-appearance order and each identity row's code."""
    cust = identity.column("customer_id").combine_chunks()
    encoded = pc.dictionary_encode(cust)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = pd.Index(encoded.dictionary.to_numpy(zero_copy_only=False), name="customer_id")
    return ids, codes


def _frame(codes: np.ndarray, cols: dict[str, pd.Series], *ts_cols: str) -> pd.DataFrame:
    keep = codes >= 0
    df = pd.DataFrame({"customer_id": codes})
    for name, col in cols.items():
        df[name] = col.to_numpy() if isinstance(col, pd.Series) else col
    df = df.loc[keep].reset_index(drop=True)
    df["customer_id"] = df["customer_id"].astype(np.int64)
    for c in ts_cols:
        df[c + SECS] = epoch_seconds(df[c])
    return df


def contract_source_data(
    tables: dict[str, pd.DataFrame], unified_dir: Path, *, salt: str
) -> tuple[SourceData, pd.Index]:
    """The coded :class:`SourceData` of valid contract ``tables`` and the customer ids;
    ``salt``: the identifier salt of the identity lookup keys."""
    from customers.normalise import identifier_keys as keys_with_salt

    identifier_keys = partial(keys_with_salt, salt=salt)

    identity = pq.read_table(
        Path(unified_dir) / "identity.parquet", columns=["record_id", "customer_id"]
    )
    ids, identity_codes = _customer_codes(identity)
    by_record = pd.Index(identity.column("record_id").to_numpy(zero_copy_only=False))
    lookup = np.append(identity_codes, -1)

    def codes_of(record_ids: pd.Series) -> np.ndarray:
        return lookup[by_record.get_indexer(record_ids.astype(object))]

    records = tables["identity_records"]
    record_codes = codes_of(records["record_id"])
    behaviour = _table(tables, "behaviour_events")
    behaviour_codes = codes_of(behaviour["record_id"])

    # a record without a creation time (a web device) dates from its first event
    undated = pd.Index(records.loc[records["created_at"].isna(), "record_id"])
    seen = behaviour.loc[undated.get_indexer(behaviour["record_id"]) >= 0]
    firsts = pd.DataFrame(
        {
            "customer_id": np.concatenate([record_codes, codes_of(seen["record_id"])]),
            "ts": pd.concat([records["created_at"], seen["ts"]], ignore_index=True),
        }
    )
    firsts = firsts.loc[(firsts["customer_id"] >= 0).to_numpy()].dropna()
    first_seen = firsts.groupby("customer_id")["ts"].min()
    dob = (
        pd.DataFrame(
            {
                "customer_id": record_codes,
                "dob": pd.to_datetime(records["date_of_birth"], errors="coerce", utc=True),
            }
        )
        .loc[record_codes >= 0]
        .groupby("customer_id")["dob"]
        .min()
    )
    rec = record_codes[record_codes >= 0]
    n_records = pd.Series(rec).groupby(rec).size()
    households_path = Path(unified_dir) / "households.parquet"
    household = pd.Series([], dtype=object)
    if households_path.exists():
        hh = pd.read_parquet(households_path, columns=["customer_id", "household_id"])
        hh = hh.drop_duplicates("customer_id")
        at = ids.get_indexer(hh["customer_id"])
        household = pd.Series(hh["household_id"].to_numpy()[at >= 0], index=at[at >= 0])
    cust = pd.RangeIndex(len(ids))
    customers = pd.DataFrame({"customer_id": np.arange(len(ids), dtype=np.int64)})
    customers["first_seen"] = first_seen.reindex(cust).to_numpy()
    customers["dob"] = dob.reindex(cust).to_numpy()
    customers["n_source_records"] = n_records.reindex(cust).fillna(0).to_numpy()
    customers["household_id"] = household.reindex(cust).to_numpy(dtype=object)

    o = _table(tables, "orders")
    baskets = _frame(
        codes_of(o["record_id"]),
        {"ts": o["ts"], "category": o["category"].astype(str), "amount": o["amount"]},
        "ts",
    )
    activity = _frame(
        behaviour_codes,
        {
            "ts": behaviour["ts"],
            "event_type": behaviour["event_type"].astype(str),
            "category": behaviour["category"],
            "config_id": behaviour["config_id"],
        },
        "ts",
    )
    k = _table(tables, "service_cases")
    c = _table(tables, "complaints")
    # a complaint booked on its own is a complaint case opened and closed at once
    c = pd.DataFrame(
        {"record_id": c["record_id"], "opened_at": c["ts"], "closed_at": c["ts"], "complaint": True}
    )
    k = pd.concat([k, c], ignore_index=True) if len(c) else k
    cases = _frame(
        codes_of(k["record_id"]),
        {
            "opened_at": k["opened_at"],
            "closed_at": k["closed_at"],
            "complaint": k["complaint"].astype(bool),
        },
        "opened_at",
        "closed_at",
    )
    h = _table(tables, "holdings")
    holdings = _frame(
        codes_of(h["record_id"]),
        {"product_id": h["product_id"].astype(str), "since": h["since"]},
        "since",
    )
    identifiers, identifier_codes = _identifier_table_coded(
        pa.Table.from_pandas(records, preserve_index=False), record_codes, ids, identifier_keys
    )
    ce = _table(tables, "consent_events")
    keys = identifier_keys(ce["id_type"], ce["id_value"])
    at = pd.Index(identifiers["identifier"].to_numpy()).get_indexer(keys.to_numpy())
    consent = _frame(
        np.append(identifier_codes, -1)[at],
        {
            "purpose": ce["purpose"].astype(str),
            "channel": ce["channel"].astype(str),
            "granted": ce["granted"].astype(bool),
            "ts": ce["ts"],
        },
        "ts",
    )
    ch = _table(tables, "contact_history")
    contacts = _frame(
        codes_of(ch["record_id"]),
        {"ts": ch["ts"], "action_id": ch["action_id"].astype(str), "channel": ch["channel"]},
        "ts",
    )
    absent = frozenset(t for t in TABLES if t not in tables)
    src = SourceData(
        customers, baskets, activity, cases, holdings, consent, contacts, identifiers, absent
    )
    return src, ids
