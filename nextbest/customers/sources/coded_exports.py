"""Source exports mapped onto unified customers, as integer customer codes.

:func:`load_coded_sources` reads every export once and maps its native ids to the
customer code of the identity output (``ids[code]`` is the customer id) with one hash
lookup per table against the identity records of its source (pyarrow, no Python
strings). One function per source table builds that table's events; the feature views
(:mod:`nextbest.customers.features`) group and reindex on the codes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nextbest.core.vocabulary import NO_ACTION
from nextbest.customers.feature_schema import HOLDING_BALANCE, CatalogTerms
from nextbest.customers.normalise import identifier_keys as keys_with_salt
from nextbest.customers.sources.files import export_path
from nextbest.customers.sources.identity_records import load_canonical_table

log = logging.getLogger(__name__)

#: Suffix of the epoch-seconds twin of a timestamp column (see ``epoch_seconds``).
SECS = "__epoch"


@dataclass(frozen=True)
class SourceData:
    """Source events mapped onto unified customers (raw identifiers dropped)."""

    customers: pd.DataFrame  # customer_id, household_id, first_seen, dob, n_source_records
    baskets: pd.DataFrame  # customer_id, ts, category, amount
    activity: pd.DataFrame  # customer_id, ts, event_type, category, config_id
    cases: pd.DataFrame  # customer_id, opened_at, closed_at, complaint
    holdings: pd.DataFrame  # customer_id, product_id, since[, balance, balance_at]
    consent: pd.DataFrame  # customer_id, purpose, channel, granted, ts
    contacts: pd.DataFrame  # customer_id, ts, channel, action_id (None: no catalog action)
    identifiers: pd.DataFrame  # identifier, customer_id
    #: Optional contract tables (and columns, ``HOLDING_BALANCE``) the team does not
    #: provide: their features are null.
    absent: frozenset[str] = frozenset()
    #: Rows per table that named no customer and were left out (unresolved, ambiguous).
    left_out: dict[str, Any] = field(default_factory=dict)


def epoch_seconds(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps as float epoch seconds (NaT -> NaN), whatever their unit."""
    s = pd.Series(pd.to_datetime(ts, utc=True))
    return ((s - pd.Timestamp(0, tz="UTC")).dt.total_seconds()).to_numpy(dtype=np.float64)


def identifier_pairs(
    records: pa.Table, codes: np.ndarray, ids: pd.Index, identifier_keys: Callable
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (hashed identifier, customer code) pair of ``records`` once, and which
    identifiers several customers claim (``codes[i]``: record ``i``'s customer code, -1
    if unresolved; ``ids[code]`` is the customer id).

    The customer's own id and every email, phone and native id of its records, hashed.
    Pairs and ambiguity are found on integer codes (one factorisation of the identifier
    strings) rather than on two string columns, which at 1,000,000 customers was a third
    of the sources' load.
    """
    keys: list[np.ndarray] = []
    custs: list[np.ndarray] = []
    resolved = codes >= 0
    first = pd.unique(codes[resolved])
    keys.append(identifier_keys("customer_id", pd.Series(ids[first], dtype=object)).to_numpy())
    custs.append(first)
    for id_type in ("email", "phone", "crm_id", "loyalty_id", "app_account_id", "device_id"):
        if id_type not in records.column_names:
            continue
        column = records.column(id_type)
        mask = resolved & column.is_valid().to_numpy(zero_copy_only=False)
        if not mask.any():
            continue
        values = pd.Series(column.filter(pa.array(mask)).to_numpy(zero_copy_only=False))
        keys.append(identifier_keys(id_type, values).to_numpy())
        custs.append(codes[mask])
    key = np.concatenate(keys)
    cust = np.concatenate(custs).astype(np.int64)
    valid = pd.notna(key)
    key, cust = key[valid], cust[valid]
    key_codes, _ = pd.factorize(key)
    # one int64 per (identifier, customer) pair; both codes are below 2**31
    pairs = key_codes.astype(np.int64) * (len(ids) + 1) + cust
    first_pair = ~pd.Series(pairs).duplicated().to_numpy()
    key, cust, key_codes = key[first_pair], cust[first_pair], key_codes[first_pair]
    ambiguous = pd.Series(key_codes).duplicated(keep=False).to_numpy()
    return key, cust, ambiguous


def _identifier_table_coded(
    records: pa.Table, codes: np.ndarray, ids: pd.Index, identifier_keys: Callable
) -> tuple[pd.DataFrame, np.ndarray]:
    """Hashed identifier -> customer of ``records`` (see :func:`identifier_pairs`), and
    each returned identifier's customer code; a (identifier, customer) pair is kept once,
    and identifiers claimed by two customers are dropped."""
    key, cust, ambiguous = identifier_pairs(records, codes, ids, identifier_keys)
    if ambiguous.any():
        log.warning(
            "%d identifiers point at several customers; they resolve to none", int(ambiguous.sum())
        )
    key, cust = key[~ambiguous], cust[~ambiguous]
    table = pd.DataFrame({"identifier": key, "customer_id": np.asarray(ids[cust], dtype=object)})
    return table, cust


def _native_code_maps(
    identity: pa.Table,
) -> tuple[dict[str, tuple[pa.Array, np.ndarray]], pd.Index, np.ndarray]:
    """Per source: its native ids in ``identity`` and each one's customer code; the
    customer ids in first-appearance order (code ``i`` is ``ids[i]``); and the customer
    code of each row of ``identity``.

    Codes come from one dictionary encoding of ``identity.customer_id``, whose order of
    first appearance is ``Series.unique``'s.
    """
    cust = identity.column("customer_id").combine_chunks()
    if cust.null_count:
        raise ValueError("identity.parquet has records without a customer_id")
    encoded = pc.dictionary_encode(cust)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ids = pd.Index(encoded.dictionary.to_numpy(zero_copy_only=False), name="customer_id")
    record = identity.column("record_id").combine_chunks()
    maps: dict[str, tuple[pa.Array, np.ndarray]] = {}
    for source in ("crm", "email_lead", "loyalty", "app", "web"):
        prefix = source + ":"
        mask = pc.starts_with(record, prefix)
        natives = pc.utf8_slice_codeunits(record.filter(mask), len(prefix))
        maps[source] = (natives, codes[mask.to_numpy(zero_copy_only=False)])
    return maps, ids, codes


def _codes_of(
    maps: dict[str, tuple[pa.Array, np.ndarray]], source: str, native: pa.ChunkedArray
) -> np.ndarray:
    """Customer code of each native id of ``source`` (-1: not resolved, or null)."""
    natives, codes = maps[source]
    pos = pc.index_in(native.cast(pa.string()), value_set=natives)
    pos = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    # -1 indexes the appended -1: unknown ids stay unknown
    return np.append(codes, -1)[pos]


def load_coded_sources(
    raw_dir: Path, unified_dir: Path, *, terms: CatalogTerms, salt: str
) -> tuple[SourceData, pd.Index]:
    """Every source table with ``customer_id`` as integer customer codes, and the
    customer ids (``ids[code]``), in the identity output's order of first appearance.

    Only the unified record's customer leaves this function: emails, phones and names are
    used to build identifier keys hashed with ``salt`` and then dropped. Campaign contacts
    are kept for the actions of ``terms``. Events of unresolved records
    are dropped; every table keeps its export's row order, and each timestamp column
    gains an epoch-seconds twin (``<column>__epoch``).

    Native ids go to codes without building ``"source:id"`` strings and reindexing them
    to string customer ids: at 1,000,000 customers that string path was most of the
    feature step's time and memory.
    """
    identifier_keys = partial(keys_with_salt, salt=salt)

    maps, ids, identity_codes, identity_records = _identity_codes(unified_dir)
    records = load_canonical_table(raw_dir)
    record_codes = _record_codes(records, identity_records, identity_codes)
    del identity_records, identity_codes
    web = _web_activity(raw_dir, maps)
    customers = _customers(raw_dir, unified_dir, maps, ids, record_codes, web)
    baskets = _baskets(raw_dir, maps)
    activity = _activity(raw_dir, maps, web)
    del web
    cases = _cases(raw_dir, maps)
    holdings = _holdings(raw_dir, maps)
    identifiers, identifier_codes = _identifier_table_coded(
        records, record_codes, ids, identifier_keys
    )
    del records, record_codes
    consent = _consent(raw_dir, identifiers, identifier_codes, identifier_keys)
    contacts = _contacts(raw_dir, maps, terms)
    # the generator's holdings carry no balance: the balance features are null
    coded = SourceData(
        customers,
        baskets,
        activity,
        cases,
        holdings,
        consent,
        contacts,
        identifiers,
        absent=frozenset({HOLDING_BALANCE}),
    )
    return coded, ids


CodeMaps = dict[str, tuple[pa.Array, np.ndarray]]


def _identity_codes(unified_dir: Path) -> tuple[CodeMaps, pd.Index, np.ndarray, pa.Array]:
    """The native-id maps, customer ids and per-row codes of ``identity.parquet`` (see
    :func:`_native_code_maps`), and its record ids."""
    identity = pq.read_table(unified_dir / "identity.parquet", columns=["record_id", "customer_id"])
    maps, ids, codes = _native_code_maps(identity)
    return maps, ids, codes, identity.column("record_id")


def _record_codes(
    records: pa.Table, identity_records: pa.ChunkedArray, identity_codes: np.ndarray
) -> np.ndarray:
    """Each canonical record's customer code through its row in identity.parquet (-1:
    not there)."""
    pos = pc.index_in(records.column("record_id"), value_set=identity_records)
    pos = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.append(identity_codes, -1)[pos]


def _read(raw_dir: Path, name: str, columns: list[str]) -> pa.Table:
    return pq.read_table(raw_dir / f"{name}.parquet", columns=columns)


def _utc(column: pa.ChunkedArray, errors: str = "raise") -> pd.Series:
    return pd.to_datetime(column.to_pandas(), errors=errors, utc=True)


def _frame(codes: np.ndarray, cols: dict[str, Any], *ts_cols: str) -> pd.DataFrame:
    """The rows of resolved customers (``codes >= 0``), in table order, with the epoch
    twins of ``ts_cols``."""
    keep = codes >= 0
    df = pd.DataFrame({"customer_id": codes})
    for name, col in cols.items():
        df[name] = col
    df = df.loc[keep]
    df["customer_id"] = df["customer_id"].astype(np.int64)
    for c in ts_cols:
        df[c + SECS] = epoch_seconds(df[c])
    return df


def _customers(
    raw_dir: Path,
    unified_dir: Path,
    maps: CodeMaps,
    ids: pd.Index,
    record_codes: np.ndarray,
    web: pd.DataFrame,
) -> pd.DataFrame:
    """customer_id, first_seen, dob, n_source_records, household_id per customer code.

    First seen is the earliest account creation of the CRM, email-lead, loyalty and app
    exports and the earliest web event (``web``: the web rows of the activity table).
    """
    n = len(ids)
    crm = _read(raw_dir, "crm_accounts", ["crm_id", "date_of_birth", "created_at"])
    crm_codes = _codes_of(maps, "crm", crm.column("crm_id"))
    first_codes = [crm_codes]
    first_ts = [_utc(crm.column("created_at"))]
    for name, src, native, col in (
        ("email_leads", "email_lead", "lead_id", "created_at"),
        ("loyalty_members", "loyalty", "loyalty_id", "joined_at"),
        ("app_accounts", "app", "app_account_id", "created_at"),
    ):
        t = _read(raw_dir, name, [native, col])
        first_codes.append(_codes_of(maps, src, t.column(native)))
        first_ts.append(_utc(t.column(col)))
    first_codes.append(web["customer_id"].to_numpy())
    first_ts.append(web["ts"])
    firsts = pd.DataFrame(
        {
            "customer_id": np.concatenate(first_codes),
            "ts": pd.concat(first_ts, ignore_index=True),
        }
    )
    firsts = firsts.loc[(firsts["customer_id"] >= 0).to_numpy()].dropna()
    first_seen = firsts.groupby("customer_id")["ts"].min()
    del firsts, first_codes, first_ts

    crm_df = pd.DataFrame(
        {"customer_id": crm_codes, "dob": _utc(crm.column("date_of_birth"), errors="coerce")}
    )
    dob = crm_df.loc[crm_df["customer_id"] >= 0].groupby("customer_id")["dob"].min()
    del crm, crm_df
    rec_codes = record_codes[record_codes >= 0]
    n_records = pd.Series(rec_codes).groupby(rec_codes).size()
    cust = pd.RangeIndex(n)
    customers = pd.DataFrame({"customer_id": np.arange(n, dtype=np.int64)})
    customers["first_seen"] = first_seen.reindex(cust).to_numpy()
    customers["dob"] = dob.reindex(cust).to_numpy()
    customers["n_source_records"] = n_records.reindex(cust).fillna(0).to_numpy()
    customers["household_id"] = _households(unified_dir, ids).reindex(cust).to_numpy(dtype=object)
    return customers


def _households(unified_dir: Path, ids: pd.Index) -> pd.Series:
    """Household id by customer code (empty without a households output)."""
    households_path = unified_dir / "households.parquet"
    if not households_path.exists():
        return pd.Series([], dtype=object)
    hh = pd.read_parquet(households_path, columns=["customer_id", "household_id"])
    hh = hh.drop_duplicates("customer_id")
    hh_codes = ids.get_indexer(hh["customer_id"])
    return pd.Series(hh["household_id"].to_numpy()[hh_codes >= 0], index=hh_codes[hh_codes >= 0])


def _baskets(raw_dir: Path, maps: CodeMaps) -> pd.DataFrame:
    """POS baskets of loyalty members: customer_id, ts, category, amount."""
    b = _read(raw_dir, "pos_baskets", ["loyalty_id", "ts", "category", "amount"])
    return _frame(
        _codes_of(maps, "loyalty", b.column("loyalty_id")),
        {
            "ts": _utc(b.column("ts")),
            "category": b.column("category").to_pandas().astype(str),
            "amount": b.column("amount").to_pandas().astype(float),
        },
        "ts",
    )


def _events(table: pa.Table, codes: np.ndarray) -> pd.DataFrame:
    """customer_id, ts, event_type, category, config_id of the resolved rows."""
    # Rows of unresolved devices and accounts are dropped in Arrow, before any pandas
    # column exists: this table is ~55 rows per customer and its copies made most of the
    # feature step's peak.
    keep = codes >= 0
    table = table.filter(pa.array(keep))
    df = pd.DataFrame({"customer_id": codes[keep]})
    df["ts"] = _utc(table.column("ts"))
    df["event_type"] = table.column("event_type").to_pandas().astype(str)
    df["category"] = table.column("category").to_pandas()
    df["config_id"] = (
        table.column("config_id").to_pandas()
        if "config_id" in table.column_names
        else pd.Series([None] * table.num_rows, dtype=object)
    )
    return df


def _web_activity(raw_dir: Path, maps: CodeMaps) -> pd.DataFrame:
    """Web events of resolved devices (the first part of the activity table)."""
    web = _read(raw_dir, "web_events", ["device_id", "ts", "event_type", "category", "config_id"])
    codes = _codes_of(maps, "web", web.column("device_id"))
    return _events(web.drop_columns(["device_id"]), codes)


def _activity(raw_dir: Path, maps: CodeMaps, web: pd.DataFrame) -> pd.DataFrame:
    """Web events, then app events of resolved accounts."""
    app = _read(raw_dir, "app_events", ["app_account_id", "ts", "event_type", "category"])
    codes = _codes_of(maps, "app", app.column("app_account_id"))
    app_part = _events(app.drop_columns(["app_account_id"]), codes)
    del app, codes
    activity = pd.concat([web, app_part], ignore_index=True)
    del app_part
    activity["ts" + SECS] = epoch_seconds(activity["ts"])
    return activity


def _cases(raw_dir: Path, maps: CodeMaps) -> pd.DataFrame:
    """Service cases of CRM accounts: customer_id, opened_at, closed_at, complaint."""
    k = _read(raw_dir, "service_cases", ["crm_id", "opened_at", "closed_at", "complaint"])
    return _frame(
        _codes_of(maps, "crm", k.column("crm_id")),
        {
            "opened_at": _utc(k.column("opened_at")),
            "closed_at": _utc(k.column("closed_at")),
            "complaint": k.column("complaint").to_pandas().astype(bool),
        },
        "opened_at",
        "closed_at",
    )


def _holdings(raw_dir: Path, maps: CodeMaps) -> pd.DataFrame:
    """Products held by CRM accounts: customer_id, product_id, since."""
    h = _read(raw_dir, "holdings", ["crm_id", "product_id", "since"])
    return _frame(
        _codes_of(maps, "crm", h.column("crm_id")),
        {
            "product_id": h.column("product_id").to_pandas().astype(str),
            "since": _utc(h.column("since")),
        },
        "since",
    )


def _consent(
    raw_dir: Path,
    identifiers: pd.DataFrame,
    identifier_codes: np.ndarray,
    identifier_keys: Callable,
) -> pd.DataFrame:
    """Consent events matched through any identifier: customer_id, purpose, channel,
    granted, ts."""
    consent = pd.read_parquet(
        raw_dir / "consent.parquet",
        columns=["id_type", "id_value", "purpose", "channel", "granted", "ts"],
    )
    keys = identifier_keys(consent["id_type"], consent["id_value"])
    # identifiers are unique once the ambiguous ones are dropped; -1: unknown or None
    at = pd.Index(identifiers["identifier"].to_numpy()).get_indexer(keys.to_numpy())
    return _frame(
        np.append(identifier_codes, -1)[at],
        {
            "purpose": consent["purpose"].astype(str),
            "channel": consent["channel"].astype(str),
            "granted": consent["granted"].astype(bool),
            "ts": pd.to_datetime(consent["ts"], utc=True),
        },
        "ts",
    )


def _contacts(raw_dir: Path, maps: CodeMaps, terms: CatalogTerms) -> pd.DataFrame:
    """Campaign contacts (``no_action`` rows dropped): customer_id, ts, action_id, channel."""
    camp = pd.read_parquet(
        export_path(raw_dir, "campaign_exposures.parquet"),
        columns=["crm_id", "exposed_at", "action_id"],
    )
    camp = camp[camp["action_id"] != NO_ACTION].reset_index(drop=True)
    channel_of = {a: a.split("_", 1)[0] for a in terms.action_ids}
    channel_of["call_retention_offer"] = "call_center"
    return _frame(
        _codes_of(
            maps, "crm", pa.chunked_array([pa.array(camp["crm_id"].to_numpy(), pa.string())])
        ),
        {
            "ts": pd.to_datetime(camp["exposed_at"], utc=True),
            "action_id": camp["action_id"].astype(str),
            "channel": camp["action_id"].map(channel_of),
        },
        "ts",
    )


def with_extra_consent(src: SourceData, ids: pd.Index, extra: pd.DataFrame | None) -> SourceData:
    """Coded sources with consent records from outside the exports appended (the event
    ledger's: ``customer_id`` (unified id), ``purpose``, ``channel``, ``granted``, ``ts``).

    Records of customers not in ``ids`` are dropped. The build keeps the newest record per
    customer, purpose and channel by ``ts``, whichever side it came from (at equal times,
    the appended one).
    """
    if extra is None or extra.empty:
        return src
    codes = ids.get_indexer(extra["customer_id"])
    keep = codes >= 0
    ts = pd.to_datetime(extra["ts"].to_numpy()[keep], utc=True).astype(src.consent["ts"].dtype)
    rows = pd.DataFrame(
        {
            "customer_id": codes[keep].astype(src.consent["customer_id"].dtype),
            "purpose": extra["purpose"].to_numpy()[keep].astype(str),
            "channel": extra["channel"].to_numpy()[keep].astype(str),
            "granted": extra["granted"].to_numpy()[keep].astype(bool),
            "ts": ts,
        }
    )
    if "ts" + SECS in src.consent:
        rows["ts" + SECS] = epoch_seconds(rows["ts"])
    consent = pd.concat([src.consent, rows[list(src.consent.columns)]], ignore_index=True)
    return replace(src, consent=consent)
