"""Customer feature tables built from the unified record.

Each table is a parquet file under ``features_dir`` keyed by ``customer_id`` and
``event_timestamp``: one row per customer per snapshot time, computed only from source
events strictly before that time, so Feast's point-in-time join never leaks the future.
Column names come from :mod:`customers.feature_schema`.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from customers.feature_schema import (
    ACTION_IDS,
    CATEGORIES,
    CHANNELS,
    PURPOSES,
    WINDOWS,
    product_ids,
    view_specs,
)

log = logging.getLogger(__name__)

DAY = 86_400.0
#: Spend over 365 days separating value tiers 1|2 and 2|3 (tier 0 = no spend).
VALUE_TIER_EDGES = (200.0, 1000.0)


@dataclass(frozen=True)
class SourceData:
    """Source events mapped onto unified customers (raw identifiers dropped)."""

    customers: pd.DataFrame  # customer_id, household_id, first_seen, dob, n_source_records
    baskets: pd.DataFrame  # customer_id, ts, category, amount
    activity: pd.DataFrame  # customer_id, ts, event_type, category, config_id
    cases: pd.DataFrame  # customer_id, opened_at, closed_at, complaint
    holdings: pd.DataFrame  # customer_id, product_id, since
    consent: pd.DataFrame  # customer_id, purpose, channel, granted, ts
    contacts: pd.DataFrame  # customer_id, ts, channel, action_id
    identifiers: pd.DataFrame  # identifier, customer_id


def snapshot_times(as_of: datetime, months: int) -> list[pd.Timestamp]:
    """``as_of`` and the first day of each of the ``months`` months before it (UTC)."""
    end = pd.Timestamp(as_of)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    first = end.normalize().replace(day=1)
    times = [first - pd.DateOffset(months=i) for i in range(months)]
    return sorted({t for t in times if t < end} | {end})


def _epoch(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps as float epoch seconds (NaT -> NaN), whatever their unit."""
    s = pd.Series(pd.to_datetime(ts, utc=True))
    return ((s - pd.Timestamp(0, tz="UTC")).dt.total_seconds()).to_numpy(dtype=np.float64)


def _utc(df: pd.DataFrame, *cols: str) -> pd.DataFrame:
    for c in cols:
        df[c] = pd.to_datetime(df[c], utc=True)
    return df


def load_sources(raw_dir: Path, unified_dir: Path) -> SourceData:
    """Read the source exports and the identity output; map every event to a customer.

    Only the unified record's ``customer_id`` leaves this function: emails, phones and
    names are used to build hashed identifier keys and then dropped.
    """
    from customers.normalise import identifier_keys
    from customers.sources import load_canonical_records

    identity = pd.read_parquet(
        unified_dir / "identity.parquet", columns=["record_id", "customer_id"]
    )
    rec2cust = pd.Series(identity["customer_id"].to_numpy(), index=identity["record_id"].to_numpy())

    def by_native(source: str, ids: pd.Series) -> np.ndarray:
        return rec2cust.reindex(source + ":" + ids.astype(str)).to_numpy()

    records = load_canonical_records(raw_dir)
    records["customer_id"] = rec2cust.reindex(records["record_id"]).to_numpy()

    crm = pd.read_parquet(raw_dir / "crm_accounts.parquet")
    crm["customer_id"] = by_native("crm", crm["crm_id"])
    firsts = []
    for name, col in (
        ("crm_accounts", "created_at"),
        ("email_leads", "created_at"),
        ("loyalty_members", "joined_at"),
        ("app_accounts", "created_at"),
    ):
        df = pd.read_parquet(raw_dir / f"{name}.parquet")
        src = {
            "crm_accounts": "crm",
            "email_leads": "email_lead",
            "loyalty_members": "loyalty",
            "app_accounts": "app",
        }[name]
        native = {
            "crm": "crm_id",
            "email_lead": "lead_id",
            "loyalty": "loyalty_id",
            "app": "app_account_id",
        }[src]
        firsts.append(
            pd.DataFrame(
                {"customer_id": by_native(src, df[native]), "ts": pd.to_datetime(df[col], utc=True)}
            )
        )
    web = pd.read_parquet(raw_dir / "web_events.parquet")
    web["customer_id"] = by_native("web", web["device_id"])
    firsts.append(
        pd.DataFrame({"customer_id": web["customer_id"], "ts": pd.to_datetime(web["ts"], utc=True)})
    )
    first_seen = pd.concat(firsts).dropna().groupby("customer_id")["ts"].min()

    households_path = unified_dir / "households.parquet"
    households = (
        pd.read_parquet(households_path)[["customer_id", "household_id"]].drop_duplicates(
            "customer_id"
        )
        if households_path.exists()
        else pd.DataFrame({"customer_id": [], "household_id": []})
    )
    dob = (
        crm.dropna(subset=["customer_id"])
        .assign(dob=lambda d: pd.to_datetime(d["date_of_birth"], errors="coerce", utc=True))
        .groupby("customer_id")["dob"]
        .min()
    )
    n_records = records.dropna(subset=["customer_id"]).groupby("customer_id").size()
    customers = pd.DataFrame({"customer_id": identity["customer_id"].unique()})
    customers["first_seen"] = first_seen.reindex(customers["customer_id"]).to_numpy()
    customers["dob"] = dob.reindex(customers["customer_id"]).to_numpy()
    customers["n_source_records"] = n_records.reindex(customers["customer_id"]).fillna(0).to_numpy()
    customers = customers.merge(households, on="customer_id", how="left")

    baskets = pd.read_parquet(raw_dir / "pos_baskets.parquet")
    baskets = pd.DataFrame(
        {
            "customer_id": by_native("loyalty", baskets["loyalty_id"]),
            "ts": pd.to_datetime(baskets["ts"], utc=True),
            "category": baskets["category"].astype(str),
            "amount": baskets["amount"].astype(float),
        }
    ).dropna(subset=["customer_id"])

    app = pd.read_parquet(raw_dir / "app_events.parquet")
    activity = pd.concat(
        [
            pd.DataFrame(
                {
                    "customer_id": web["customer_id"],
                    "ts": pd.to_datetime(web["ts"], utc=True),
                    "event_type": web["event_type"].astype(str),
                    "category": web["category"],
                    "config_id": web.get("config_id"),
                }
            ),
            pd.DataFrame(
                {
                    "customer_id": by_native("app", app["app_account_id"]),
                    "ts": pd.to_datetime(app["ts"], utc=True),
                    "event_type": app["event_type"].astype(str),
                    "category": app["category"],
                    "config_id": None,
                }
            ),
        ]
    ).dropna(subset=["customer_id"])

    cases = pd.read_parquet(raw_dir / "service_cases.parquet")
    cases = _utc(
        pd.DataFrame(
            {
                "customer_id": by_native("crm", cases["crm_id"]),
                "opened_at": cases["opened_at"],
                "closed_at": cases["closed_at"],
                "complaint": cases["complaint"].astype(bool),
            }
        ),
        "opened_at",
        "closed_at",
    ).dropna(subset=["customer_id"])

    holdings = pd.read_parquet(raw_dir / "holdings.parquet")
    holdings = _utc(
        pd.DataFrame(
            {
                "customer_id": by_native("crm", holdings["crm_id"]),
                "product_id": holdings["product_id"].astype(str),
                "since": holdings["since"],
            }
        ),
        "since",
    ).dropna(subset=["customer_id"])

    identifiers = _identifier_table(records, identifier_keys)
    consent = pd.read_parquet(raw_dir / "consent.parquet")
    keys = identifier_keys(consent["id_type"], consent["id_value"])
    key2cust = pd.Series(
        identifiers["customer_id"].to_numpy(), index=identifiers["identifier"].to_numpy()
    )
    consent = _utc(
        pd.DataFrame(
            {
                "customer_id": key2cust.reindex(keys).to_numpy(),
                "purpose": consent["purpose"].astype(str),
                "channel": consent["channel"].astype(str),
                "granted": consent["granted"].astype(bool),
                "ts": consent["ts"],
            }
        ),
        "ts",
    ).dropna(subset=["customer_id"])

    camp = pd.read_parquet(raw_dir / "campaign_history.parquet")
    camp = camp[camp["action_id"] != "no_action"]
    channel_of = {a: a.split("_", 1)[0] for a in ACTION_IDS}
    channel_of["call_retention_offer"] = "call_center"
    contacts = _utc(
        pd.DataFrame(
            {
                "customer_id": by_native("crm", camp["crm_id"]),
                "ts": camp["exposed_at"],
                "action_id": camp["action_id"].astype(str),
                "channel": camp["action_id"].map(channel_of),
            }
        ),
        "ts",
    ).dropna(subset=["customer_id"])

    return SourceData(customers, baskets, activity, cases, holdings, consent, contacts, identifiers)


def _identifier_table(records: pd.DataFrame, identifier_keys: Callable) -> pd.DataFrame:
    """Hashed identifier -> customer; identifiers claimed by two customers are dropped."""
    cids = pd.Series(records["customer_id"].dropna().unique())
    parts = [
        pd.DataFrame(
            {"identifier": identifier_keys("customer_id", cids).to_numpy(), "customer_id": cids}
        )
    ]
    for id_type in ("email", "phone", "crm_id", "loyalty_id", "app_account_id", "device_id"):
        if id_type not in records:
            continue
        sub = records[[id_type, "customer_id"]].dropna()
        if sub.empty:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "identifier": identifier_keys(
                        pd.Series(id_type, index=sub.index), sub[id_type]
                    ),
                    "customer_id": sub["customer_id"].to_numpy(),
                }
            )
        )
    table = pd.concat(parts, ignore_index=True).dropna().drop_duplicates()
    ambiguous = table["identifier"].duplicated(keep=False)
    if ambiguous.any():
        log.warning(
            "%d identifiers point at several customers; they resolve to none", int(ambiguous.sum())
        )
    return table[~ambiguous].reset_index(drop=True)


def _identifier_table_coded(
    records: pa.Table, codes: np.ndarray, ids: pd.Index, identifier_keys: Callable
) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`_identifier_table` of ``records`` whose customers are given as codes
    (``codes[i]``: record ``i``'s customer code, -1 if unresolved; ``ids[code]`` is the
    customer id), and each returned identifier's customer code.

    The same rows in the same order; the pairs are de-duplicated and the ambiguous
    identifiers found on integer codes (one factorisation of the identifier strings)
    instead of on two string columns, which at 1,000,000 customers was a third of the
    sources' load.
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
    if ambiguous.any():
        log.warning(
            "%d identifiers point at several customers; they resolve to none", int(ambiguous.sum())
        )
    key, cust = key[~ambiguous], cust[~ambiguous]
    table = pd.DataFrame({"identifier": key, "customer_id": np.asarray(ids[cust], dtype=object)})
    return table, cust


def _window_agg(events: pd.DataFrame, t: pd.Timestamp, days: int, value: str | None) -> pd.Series:
    m = (events["ts"] < t) & (events["ts"] >= t - timedelta(days=days))
    if value is None and events["customer_id"].dtype == np.int64:
        # Customers without events get 0 here and NaN from a group-by; callers fill 0.
        return pd.Series(np.bincount(events["customer_id"].to_numpy()[m.to_numpy()]))
    g = events.loc[m].groupby("customer_id")
    return g.size() if value is None else g[value].sum()


def _frame(
    customers: pd.Index,
    t: pd.Timestamp,
    cols: dict[str, pd.Series | np.ndarray | float],
    ids: pd.Index | None = None,
) -> pd.DataFrame:
    out = pd.DataFrame(index=customers)
    for name, col in cols.items():
        out[name] = (
            col.reindex(customers).fillna(0).to_numpy() if isinstance(col, pd.Series) else col
        )
    if ids is not None:
        out.index = ids
    out.index.name = "customer_id"
    out = out.reset_index()
    out.insert(1, "event_timestamp", t)
    return out


def _last_ts(events: pd.DataFrame, t: pd.Timestamp, col: str = "ts") -> pd.Series:
    prior = events.loc[events[col] < t]
    # ``_encode`` precomputes epoch seconds once per table; converting per snapshot was
    # the single largest cost.
    if col + _SECS not in prior:
        return (
            pd.Series(_epoch(prior[col]), index=prior["customer_id"].to_numpy())
            .groupby(level=0)
            .max()
        )
    codes = prior["customer_id"].to_numpy()
    # NaN where a customer has no event, as a group-by reindexed onto every customer.
    last = np.full(int(codes.max()) + 1 if len(codes) else 0, np.nan)
    np.fmax.at(last, codes, prior[col + _SECS].to_numpy())
    return pd.Series(last)


_SECS = "__epoch"


def _last_masked(events: pd.DataFrame, mask: np.ndarray, col: str = "ts") -> pd.Series:
    """:func:`_last_ts` of ``events.loc[mask]`` (its ``col`` before ``t``) without
    copying the rows: the codes and epoch seconds of the masked rows only."""
    codes = events["customer_id"].to_numpy()[mask]
    last = np.full(int(codes.max()) + 1 if len(codes) else 0, np.nan)
    np.fmax.at(last, codes, events[col + _SECS].to_numpy()[mask])
    return pd.Series(last)


def _fmax(x: pd.Series, y: pd.Series) -> pd.Series:
    """Per position the larger of two :func:`_last_ts` results (NaN: neither has one);
    what :func:`_last_ts` gives on the two event tables concatenated."""
    out = np.full(max(len(x), len(y)), np.nan)
    out[: len(x)] = x.to_numpy()
    out[: len(y)] = np.fmax(out[: len(y)], y.to_numpy())
    return pd.Series(out)


def _encode(src: SourceData) -> SourceData:
    """``src`` with ``customer_id`` as integer row positions in ``src.customers``.

    Grouping and reindexing on integers is much cheaper than on string ids, and each
    table keeps its row order, so per-customer sums add the same values in the same order.
    Events of customers missing from ``src.customers`` are dropped (they never reach the
    output). Timestamp columns gain an epoch-seconds twin used by :func:`_last_ts`.
    """
    cust = pd.Index(src.customers["customer_id"])

    def enc(df: pd.DataFrame, *ts_cols: str) -> pd.DataFrame:
        codes = cust.get_indexer(df["customer_id"])
        df = df.loc[codes >= 0].copy()
        df["customer_id"] = codes[codes >= 0].astype(np.int64)
        for c in ts_cols:
            df[c + _SECS] = _epoch(df[c])
        return df

    customers = src.customers.copy()
    customers["customer_id"] = np.arange(len(customers), dtype=np.int64)
    return SourceData(
        customers,
        enc(src.baskets, "ts"),
        enc(src.activity, "ts"),
        enc(src.cases, "opened_at", "closed_at"),
        enc(src.holdings, "since"),
        enc(src.consent, "ts"),
        enc(src.contacts, "ts"),
        src.identifiers,
    )


def _native_code_maps(
    identity: pa.Table,
) -> tuple[dict[str, tuple[pa.Array, np.ndarray]], pd.Index, np.ndarray]:
    """Per source: its native ids in ``identity`` and each one's customer code; the
    customer ids in first-appearance order (code ``i`` is ``ids[i]``); and the customer
    code of each row of ``identity``.

    Codes come from one dictionary encoding of ``identity.customer_id``, whose order of
    first appearance is ``Series.unique``'s, the customer order of :func:`load_sources`.
    """
    import pyarrow.compute as pc

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
    import pyarrow.compute as pc

    natives, codes = maps[source]
    pos = pc.index_in(native.cast(pa.string()), value_set=natives)
    pos = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    # -1 indexes the appended -1: unknown ids stay unknown
    return np.append(codes, -1)[pos]


def load_coded_sources(raw_dir: Path, unified_dir: Path) -> tuple[SourceData, pd.Index]:
    """``_encode(load_sources(raw_dir, unified_dir))`` and the customer ids, computed
    without string customer ids on the event tables.

    Native ids of every export are mapped to integer customer codes with one hash lookup
    per table against the identity records of their source (pyarrow, no Python strings),
    instead of building ``"source:id"`` strings, reindexing them to string customer ids
    and then indexing those again: at 1,000,000 customers that string path was ~760 s and
    most of the feature step's 12 GiB peak. Rows, their order, columns and values are
    those of the string path (``tests/unit/customers/test_features_coded.py``).
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from customers.normalise import identifier_keys
    from customers.sources import load_canonical_table

    identity = pq.read_table(unified_dir / "identity.parquet", columns=["record_id", "customer_id"])
    maps, ids, identity_codes = _native_code_maps(identity)
    n = len(ids)

    def read(name: str, columns: list[str]) -> pa.Table:
        return pq.read_table(raw_dir / f"{name}.parquet", columns=columns)

    def frame(codes: np.ndarray, cols: dict[str, Any], *ts_cols: str) -> pd.DataFrame:
        # the rows of resolved customers, in table order, as ``_encode`` keeps them
        keep = codes >= 0
        df = pd.DataFrame({"customer_id": codes})
        for name, col in cols.items():
            df[name] = col
        df = df.loc[keep]
        df["customer_id"] = df["customer_id"].astype(np.int64)
        for c in ts_cols:
            df[c + _SECS] = _epoch(df[c])
        return df

    records = load_canonical_table(raw_dir)
    # each record's customer code through its row in identity.parquet (-1: not there)
    pos = pc.index_in(records.column("record_id"), value_set=identity.column("record_id"))
    pos = pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    record_codes = np.append(identity_codes, -1)[pos]
    del identity, identity_codes, pos

    crm = read("crm_accounts", ["crm_id", "date_of_birth", "created_at"])
    crm_codes = _codes_of(maps, "crm", crm.column("crm_id"))
    first_codes = [crm_codes]
    first_ts = [pd.to_datetime(crm.column("created_at").to_pandas(), utc=True)]
    for name, src, native, col in (
        ("email_leads", "email_lead", "lead_id", "created_at"),
        ("loyalty_members", "loyalty", "loyalty_id", "joined_at"),
        ("app_accounts", "app", "app_account_id", "created_at"),
    ):
        t = read(name, [native, col])
        first_codes.append(_codes_of(maps, src, t.column(native)))
        first_ts.append(pd.to_datetime(t.column(col).to_pandas(), utc=True))
    web = read("web_events", ["device_id", "ts", "event_type", "category", "config_id"])
    web_codes = _codes_of(maps, "web", web.column("device_id"))
    web_ts = pd.to_datetime(web.column("ts").to_pandas(), utc=True)
    first_codes.append(web_codes)
    first_ts.append(web_ts)
    firsts = pd.DataFrame(
        {
            "customer_id": np.concatenate(first_codes),
            "ts": pd.concat(first_ts, ignore_index=True),
        }
    )
    firsts = firsts.loc[(firsts["customer_id"] >= 0).to_numpy()].dropna()
    first_seen = firsts.groupby("customer_id")["ts"].min()
    del firsts, first_codes, first_ts

    households_path = unified_dir / "households.parquet"
    if households_path.exists():
        hh = pd.read_parquet(households_path, columns=["customer_id", "household_id"])
        hh = hh.drop_duplicates("customer_id")
        hh_codes = ids.get_indexer(hh["customer_id"])
        household = pd.Series(
            hh["household_id"].to_numpy()[hh_codes >= 0], index=hh_codes[hh_codes >= 0]
        )
    else:
        household = pd.Series([], dtype=object)
    crm_df = pd.DataFrame(
        {
            "customer_id": crm_codes,
            "dob": pd.to_datetime(
                crm.column("date_of_birth").to_pandas(), errors="coerce", utc=True
            ),
        }
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
    customers["household_id"] = household.reindex(cust).to_numpy(dtype=object)

    b = read("pos_baskets", ["loyalty_id", "ts", "category", "amount"])
    baskets = frame(
        _codes_of(maps, "loyalty", b.column("loyalty_id")),
        {
            "ts": pd.to_datetime(b.column("ts").to_pandas(), utc=True),
            "category": b.column("category").to_pandas().astype(str),
            "amount": b.column("amount").to_pandas().astype(float),
        },
        "ts",
    )
    del b

    app = read("app_events", ["app_account_id", "ts", "event_type", "category"])
    app_codes = _codes_of(maps, "app", app.column("app_account_id"))
    del web_ts

    def events(table: pa.Table, codes: np.ndarray) -> pd.DataFrame:
        # Rows of unresolved devices and accounts are dropped in Arrow, before any
        # pandas column exists: this table is ~55 rows per customer and its copies made
        # most of the feature step's peak.
        keep = codes >= 0
        table = table.filter(pa.array(keep))
        df = pd.DataFrame({"customer_id": codes[keep]})
        df["ts"] = pd.to_datetime(table.column("ts").to_pandas(), utc=True)
        df["event_type"] = table.column("event_type").to_pandas().astype(str)
        df["category"] = table.column("category").to_pandas()
        df["config_id"] = (
            table.column("config_id").to_pandas()
            if "config_id" in table.column_names
            else pd.Series([None] * table.num_rows, dtype=object)
        )
        return df

    web_part = events(web.drop_columns(["device_id"]), web_codes)
    del web, web_codes
    app_part = events(app.drop_columns(["app_account_id"]), app_codes)
    del app, app_codes
    activity = pd.concat([web_part, app_part], ignore_index=True)
    del web_part, app_part
    activity["ts" + _SECS] = _epoch(activity["ts"])

    k = read("service_cases", ["crm_id", "opened_at", "closed_at", "complaint"])
    cases = frame(
        _codes_of(maps, "crm", k.column("crm_id")),
        {
            "opened_at": pd.to_datetime(k.column("opened_at").to_pandas(), utc=True),
            "closed_at": pd.to_datetime(k.column("closed_at").to_pandas(), utc=True),
            "complaint": k.column("complaint").to_pandas().astype(bool),
        },
        "opened_at",
        "closed_at",
    )

    h = read("holdings", ["crm_id", "product_id", "since"])
    holdings = frame(
        _codes_of(maps, "crm", h.column("crm_id")),
        {
            "product_id": h.column("product_id").to_pandas().astype(str),
            "since": pd.to_datetime(h.column("since").to_pandas(), utc=True),
        },
        "since",
    )

    identifiers, identifier_codes = _identifier_table_coded(
        records, record_codes, ids, identifier_keys
    )
    del records, record_codes
    consent = pd.read_parquet(
        raw_dir / "consent.parquet",
        columns=["id_type", "id_value", "purpose", "channel", "granted", "ts"],
    )
    keys = identifier_keys(consent["id_type"], consent["id_value"])
    # identifiers are unique once the ambiguous ones are dropped; -1: unknown or None
    at = pd.Index(identifiers["identifier"].to_numpy()).get_indexer(keys.to_numpy())
    consent_codes = np.append(identifier_codes, -1)[at]
    consent = frame(
        consent_codes,
        {
            "purpose": consent["purpose"].astype(str),
            "channel": consent["channel"].astype(str),
            "granted": consent["granted"].astype(bool),
            "ts": pd.to_datetime(consent["ts"], utc=True),
        },
        "ts",
    )

    camp = pd.read_parquet(
        raw_dir / "campaign_history.parquet", columns=["crm_id", "exposed_at", "action_id"]
    )
    camp = camp[camp["action_id"] != "no_action"].reset_index(drop=True)
    channel_of = {a: a.split("_", 1)[0] for a in ACTION_IDS}
    channel_of["call_retention_offer"] = "call_center"
    contacts = frame(
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
    coded = SourceData(
        customers, baskets, activity, cases, holdings, consent, contacts, identifiers
    )
    return coded, ids


def build_view_rows(src: SourceData, t: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Every feature view's rows for snapshot time ``t`` (data strictly before ``t``)."""
    return _view_rows(_encode(src), pd.Index(src.customers["customer_id"], name="customer_id"), t)


def _view_rows(src: SourceData, ids: pd.Index, t: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """:func:`build_view_rows` on an :func:`_encode` d source whose customers are ``ids``."""
    cust = pd.RangeIndex(len(ids), name="customer_id")
    c = src.customers.set_index("customer_id")
    out: dict[str, pd.DataFrame] = {}

    b = src.baskets.loc[src.baskets["ts"] < t]
    # The activity table is by far the largest (~55 events per customer): it is masked,
    # never copied whole; only its 7- and 30-day windows are materialised.
    act = src.activity
    a_before = (act["ts"] < t).to_numpy()
    last_act = _last_masked(act, a_before)
    spend365 = _window_agg(b, t, 365, "amount").reindex(cust).fillna(0.0)
    tier = np.where(
        spend365.to_numpy() <= 0,
        0,
        1 + np.searchsorted(VALUE_TIER_EDGES, spend365.to_numpy(), side="left"),
    )
    hh = c["household_id"]
    hh_size = hh.map(hh.value_counts()).fillna(1)
    first = pd.to_datetime(c["first_seen"], utc=True)
    tenure = ((t - first).dt.total_seconds() / DAY).clip(lower=0).where(first < t, 0.0)
    age = (t - pd.to_datetime(c["dob"], utc=True)).dt.days / 365.25
    out["customer_profile"] = _frame(
        cust,
        t,
        {
            "tenure_days": tenure,
            "value_tier": pd.Series(tier, index=cust),
            "household_size": hh_size,
            "age": age.reindex(cust).to_numpy(),
            "n_source_records": c["n_source_records"],
            "customer_profile_as_of_ts": last_act.reindex(cust).fillna(0.0),
        },
        ids,
    )

    cols: dict = {}
    for w in WINDOWS:
        cols[f"txn_count_{w}d"] = _window_agg(b, t, w, None)
    for w in WINDOWS:
        cols[f"txn_amount_{w}d"] = _window_agg(b, t, w, "amount")
    last_purchase = _last_ts(b, t)
    cols["last_purchase_ts"] = last_purchase
    b365 = b.loc[b["ts"] >= t - timedelta(days=365)]
    by_cat = b365.pivot_table(
        index="customer_id", columns="category", values="amount", aggfunc="sum"
    )
    for cat in CATEGORIES:
        cols[f"spend_365d_{cat}"] = by_cat[cat] if cat in by_cat else 0.0
    cols["customer_transactions_as_of_ts"] = last_purchase
    out["customer_transactions"] = _frame(cust, t, cols, ids)

    a30 = act.loc[a_before & (act["ts"] >= t - timedelta(days=30)).to_numpy()]
    a30 = a30.loc[
        a30["event_type"].isin(["page_view", "configurator_view", "view_product", "view_offer"])
    ]
    views = a30.groupby(["customer_id", "category"]).size().unstack(fill_value=0)
    a7 = act.loc[a_before & (act["ts"] >= t - timedelta(days=7)).to_numpy()]
    cfg = a7.loc[a7["event_type"] == "configurator_view"]
    repeat = cfg.dropna(subset=["config_id"]).groupby(["customer_id", "config_id"]).size()
    # the latest of activity and purchases: the max of the two maxima
    last_active = _fmax(last_act, last_purchase)
    cols = {f"views_30d_{cat}": views[cat] if cat in views else 0.0 for cat in CATEGORIES}
    cols["config_views_7d"] = cfg.groupby("customer_id").size()
    cols["loan_checks_7d"] = a7.loc[a7["event_type"] == "loan_check"].groupby("customer_id").size()
    cols["repeat_interest_7d"] = repeat.groupby(level=0).max() if len(repeat) else 0.0
    cols["last_active_ts"] = last_active
    cols["customer_behaviour_as_of_ts"] = last_active
    out["customer_behaviour"] = _frame(cust, t, cols, ids)

    k = src.cases
    opened = k.loc[k["opened_at"] < t]
    is_open = opened["closed_at"].isna() | (opened["closed_at"] >= t)
    complaints = opened.loc[opened["complaint"]]
    last_event = pd.concat(
        [
            opened[["customer_id"]].assign(
                ts=opened["opened_at"], **{"ts" + _SECS: opened["opened_at" + _SECS]}
            ),
            opened.loc[opened["closed_at"] < t, ["customer_id"]].assign(
                ts=opened.loc[opened["closed_at"] < t, "closed_at"],
                **{"ts" + _SECS: opened.loc[opened["closed_at"] < t, "closed_at" + _SECS]},
            ),
        ]
    )
    out["customer_service"] = _frame(
        cust,
        t,
        {
            "open_cases": opened.loc[is_open].groupby("customer_id").size(),
            "complaints_90d": complaints.loc[complaints["opened_at"] >= t - timedelta(days=90)]
            .groupby("customer_id")
            .size(),
            "last_complaint_ts": _last_ts(complaints, t, "opened_at"),
            "customer_service_as_of_ts": _last_ts(last_event, t),
        },
        ids,
    )

    h = src.holdings.loc[src.holdings["since"] < t]
    held = h.assign(one=1).pivot_table(
        index="customer_id", columns="product_id", values="one", aggfunc="max"
    )
    cols = {f"holds_{p}": held[p] if p in held else 0 for p in product_ids()}
    cols["customer_holdings_as_of_ts"] = _last_ts(h, t, "since")
    out["customer_holdings"] = _frame(cust, t, cols, ids)

    cs = src.consent.loc[src.consent["ts"] < t].sort_values("ts", kind="stable")
    latest = cs.drop_duplicates(["customer_id", "purpose", "channel"], keep="last")
    granted = latest.assign(g=latest["granted"].astype(int)).pivot_table(
        index="customer_id", columns=["purpose", "channel"], values="g", aggfunc="max"
    )
    cols = {
        f"consent_{p}_{ch}": granted[(p, ch)] if (p, ch) in granted else 0
        for p in PURPOSES
        for ch in CHANNELS
    }
    cols["customer_consent_as_of_ts"] = _last_ts(cs, t)
    out["customer_consent"] = _frame(cust, t, cols, ids)

    ct = src.contacts.loc[src.contacts["ts"] < t]
    cols = {}
    for ch in CHANNELS:
        sub = ct.loc[ct["channel"] == ch]
        for w in (7, 30):
            cols[f"contacts_{ch}_{w}d"] = _window_agg(sub, t, w, None)
    cols["contacts_total_7d"] = _window_agg(ct, t, 7, None)
    for act in ACTION_IDS:
        cols[f"last_shown_ts_{act}"] = _last_ts(ct.loc[ct["action_id"] == act], t)
    cols["customer_contacts_as_of_ts"] = _last_ts(ct, t)
    out["customer_contacts"] = _frame(cust, t, cols, ids)

    for spec in view_specs():
        df = out[spec.name]
        for f in spec.all_features:
            df[f.name] = df[f.name].astype("int64" if f.kind == "int" else "float64")
        out[spec.name] = df[["customer_id", "event_timestamp", *spec.feature_names]]
    return out


# What the snapshot workers read: set by the parent just before its pool forks, so each
# worker inherits the coded sources (copy-on-write pages) instead of being sent gigabytes.
_FORKED: tuple[SourceData, pd.Index, Path] | None = None


def _snapshot_tables(src: SourceData, ids: pd.Index, t: pd.Timestamp) -> dict[str, pa.Table]:
    """Every view's rows at snapshot ``t`` as the Arrow tables written to parquet."""
    out = {}
    for name, df in _view_rows(src, ids, t).items():
        df = df.reset_index(drop=True)
        df["event_timestamp"] = df["event_timestamp"].astype("datetime64[us, UTC]")
        out[name] = pa.Table.from_pandas(df, preserve_index=False)
    return out


def _snapshot_to_files(i: int, t: pd.Timestamp) -> dict[str, str]:
    """In a forked worker: snapshot ``i``'s tables as Arrow IPC files (uncompressed, so
    the parent maps them back for free); their paths by view."""
    assert _FORKED is not None, "only called in a worker forked by _snapshots"
    src, ids, parts = _FORKED
    paths = {}
    for name, table in _snapshot_tables(src, ids, t).items():
        path = parts / f"{name}.{i}.arrow"
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
        paths[name] = str(path)
    return paths


def _snapshots(
    src: SourceData, ids: pd.Index, times: list[pd.Timestamp], workers: int, scratch: Path
) -> Iterator[dict[str, pa.Table]]:
    """Each snapshot's tables, in the order of ``times``.

    With ``workers`` > 1 the snapshots are built by that many forked processes (each
    snapshot reads only the shared sources, so they are independent) while this process
    writes the finished ones; the tables are the same as built here one by one.
    """
    global _FORKED
    if workers <= 1 or len(times) < 2 or "fork" not in mp.get_all_start_methods():
        for t in times:
            yield _snapshot_tables(src, ids, t)
        return
    scratch.mkdir(parents=True, exist_ok=True)
    _FORKED = (src, ids, scratch)
    # The workers must never run the collector over the objects they inherit: a forked
    # worker segfaulted in garbage collection (CI, 2026-12-02, after the parent had run
    # Arrow's thread pools; the object it tripped on was not pinned down). So the parent
    # collects its own cycles and freezes what is left right before the fork (Python's
    # documented gc.freeze-before-fork pattern, which also keeps those pages shared), and
    # unfreezes once the workers exist: with the fork context every worker is started at
    # the first submit.
    gc.collect()
    gc.freeze()
    try:
        fork = mp.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(times)), mp_context=fork) as pool:
            try:
                futures = [pool.submit(_snapshot_to_files, i, t) for i, t in enumerate(times)]
            finally:
                gc.unfreeze()
            try:
                for future in futures:
                    files = future.result()
                    yield {
                        name: pa.ipc.open_file(pa.memory_map(path)).read_all()
                        for name, path in files.items()
                    }
                    for path in files.values():
                        os.unlink(path)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    finally:
        _FORKED = None
        shutil.rmtree(scratch, ignore_errors=True)


def build_feature_tables(
    raw_dir: Path,
    unified_dir: Path,
    features_dir: Path,
    as_of: datetime,
    months: int = 13,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    sources: tuple[SourceData, pd.Index] | None = None,
) -> dict[str, Path]:
    """Build every feature table at monthly snapshots up to ``as_of`` and write parquet.

    ``workers`` > 1 builds the snapshots in that many forked processes (the same files).
    ``sources``: the coded sources and customer ids to build from (default: the demo
    exports under ``raw_dir``; :mod:`customers.contract_sources` builds them from a
    team's staged contract tables). Returns the written paths by view name (plus
    ``identity_lookup``).
    """
    import pyarrow.parquet as pq

    coded, ids = sources if sources is not None else load_coded_sources(raw_dir, unified_dir)
    times = snapshot_times(as_of, months)
    features_dir.mkdir(parents=True, exist_ok=True)
    paths = {s.name: features_dir / f"{s.name}.parquet" for s in view_specs()}
    # Each snapshot goes to its view's file as soon as it is built (one row group per
    # snapshot) instead of every snapshot of every view held and then concatenated, which
    # made peak memory grow with customers x snapshots. Same rows, order and types as
    # one concatenated frame; the first snapshot fixes each file's schema.
    writers: dict[str, pq.ParquetWriter] = {}
    scratch = features_dir / ".snapshots"
    try:
        for i, tables in enumerate(_snapshots(coded, ids, times, workers, scratch)):
            for name, table in tables.items():
                if name not in writers:
                    writers[name] = pq.ParquetWriter(paths[name], table.schema)
                writers[name].write_table(table.cast(writers[name].schema))
            del tables
            if progress:
                progress(i + 1, len(times))
    finally:
        for w in writers.values():
            w.close()
    lookup = coded.identifiers.copy()
    lookup["event_timestamp"] = pd.Timestamp(times[0]).as_unit("us")
    lookup["event_timestamp"] = lookup["event_timestamp"].astype("datetime64[us, UTC]")
    paths["identity_lookup"] = features_dir / "identity_lookup.parquet"
    lookup.to_parquet(paths["identity_lookup"], index=False)
    log.info(
        "wrote %d feature tables for %d customers x %d snapshots",
        len(paths),
        len(ids),
        len(times),
    )
    return paths


def view_names() -> Iterable[str]:
    """Names of the customer feature views (without the identity lookup)."""
    return [s.name for s in view_specs()]
