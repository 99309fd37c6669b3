"""Staged contract tables mapped onto unified customers: the feature build's input.

:func:`contract_source_data` is the contract's route into
:class:`nextbest.customers.sources.coded_exports.SourceData`, the same value the demo's
direct reader (:func:`nextbest.customers.sources.coded_exports.load_coded_sources`) builds
from the generator's exports; on the demo world both give the same tables
(``tests/unit/customers/sources/test_coded_contract.py``).
Each row names its customer by an identity record or by an identifier; both resolve
through :mod:`nextbest.customers.row_customers`, and rows that name no customer (an unresolved
record, an unknown or ambiguous identifier) are left out and counted in
``SourceData.left_out``. An absent table gives an empty one and is named in
``SourceData.absent``, so the features that need it are built null rather than 0
(:func:`nextbest.customers.feature_schema.null_features`); so is a holdings table without any
balance (:data:`nextbest.customers.feature_schema.HOLDING_BALANCE`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.customers.contract import TABLES, complete
from nextbest.customers.feature_schema import HOLDING_BALANCE
from nextbest.customers.row_customers import LeftOut, customer_index, report_left_out
from nextbest.customers.sources.coded_exports import (
    SECS,
    SourceData,
    epoch_seconds,
)


def _table(tables: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """The table with every contract column (a stage written before a column existed
    lacks it), or an empty one when it is absent."""
    cols = list(TABLES[name].to_schema().columns)
    if name not in tables:
        return complete(name, pd.DataFrame(columns=cols))
    frame = tables[name]
    return frame if set(cols) <= set(frame.columns) else complete(name, frame)


def _frame(codes: np.ndarray, cols: dict[str, pd.Series], *ts_cols: str) -> pd.DataFrame:
    keep = codes >= 0
    df = pd.DataFrame({"customer_id": codes})
    for name, col in cols.items():
        # .array keeps a time zone that .to_numpy() of an all-empty column would drop
        df[name] = col.array if isinstance(col, pd.Series) else col
    df = df.loc[keep].reset_index(drop=True)
    df["customer_id"] = df["customer_id"].astype(np.int64)
    for c in ts_cols:
        df[c + SECS] = epoch_seconds(df[c])
    return df


def _stack(frames: list[pd.DataFrame], names: tuple[str, ...]) -> pd.Series:
    """The first of ``names`` each frame has, one after the other."""
    cols = [f[next(n for n in names if n in f)] for f in frames]
    return cols[0].reset_index(drop=True) if len(cols) == 1 else pd.concat(cols, ignore_index=True)


def contract_source_data(
    tables: dict[str, pd.DataFrame], unified_dir: Path, *, salt: str
) -> tuple[SourceData, pd.Index]:
    """The coded :class:`SourceData` of valid contract ``tables`` and the customer ids;
    ``salt``: the identifier salt of the identity lookup keys.

    Over 100 lines on purpose: one block per contract table, in the order ``SourceData``
    holds them, all sharing the customer index and the left-out counts; a function per
    table would pass those around and hide the one-to-one mapping."""
    records = _table(tables, "identity_records")
    index = customer_index(records, unified_dir, salt=salt)
    ids = index.ids
    left_out: dict[str, LeftOut] = {}

    def codes_of(table: str, frame: pd.DataFrame) -> np.ndarray:
        codes, left_out[table] = index.codes(frame)
        return codes

    record_codes = index.record_codes_of(records["record_id"])
    behaviour = _table(tables, "behaviour_events")
    behaviour_codes = codes_of("behaviour_events", behaviour)

    # a record without a creation time (a web device) dates from its first event
    undated = pd.Index(records.loc[records["created_at"].isna(), "record_id"])
    seen = behaviour.loc[undated.get_indexer(behaviour["record_id"]) >= 0]
    firsts = pd.DataFrame(
        {
            "customer_id": np.concatenate([record_codes, index.record_codes_of(seen["record_id"])]),
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
        codes_of("orders", o),
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
    k_codes = codes_of("service_cases", k)
    c_codes = codes_of("complaints", c)
    # a complaint booked on its own is a complaint case opened and closed at once
    both = [part for part in (k, c) if len(part)] or [k]
    cases = _frame(
        np.concatenate([k_codes, c_codes]),
        {
            "opened_at": _stack(both, ("opened_at", "ts")),
            "closed_at": _stack(both, ("closed_at", "ts")),
            "complaint": np.concatenate(
                [k["complaint"].astype(bool).to_numpy(), np.ones(len(c), dtype=bool)]
            ),
        },
        "opened_at",
        "closed_at",
    )
    h = _table(tables, "holdings")
    holdings = _frame(
        codes_of("holdings", h),
        {
            "product_id": h["product_id"].astype(str),
            "since": h["since"],
            "balance": h["balance"].astype(np.float64),
            "balance_at": h["balance_at"],
        },
        "since",
        "balance_at",
    )
    ce = _table(tables, "consent_events")
    consent = _frame(
        codes_of("consent_events", ce),
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
        codes_of("contact_history", ch),
        {
            "ts": ch["ts"],
            "action_id": ch["action_id"].astype(object),
            "channel": ch["channel"],
            "purpose": ch["purpose"].astype(object),
        },
        "ts",
    )
    absent = {t for t in TABLES if t not in tables}
    if h["balance"].isna().all():
        absent.add(HOLDING_BALANCE)  # no balance known: the balance features are null
    for table, left in left_out.items():
        report_left_out(table, left)
    src = SourceData(
        customers,
        baskets,
        activity,
        cases,
        holdings,
        consent,
        contacts,
        index.identifiers,
        frozenset(absent),
        left_out={t: left for t, left in left_out.items() if left.total},
    )
    return src, ids
