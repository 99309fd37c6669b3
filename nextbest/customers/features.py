"""Customer feature tables built from the unified record.

Each table is a parquet file under ``features_dir`` keyed by ``customer_id`` and
``event_timestamp``: one row per customer per snapshot time, computed only from source
events strictly before that time, so Feast's point-in-time join never leaks the future.
Column names come from :mod:`nextbest.customers.feature_schema`.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from nextbest.customers.behaviour_features import behaviour_event_columns
from nextbest.customers.feature_schema import (
    BEHAVIOUR_EVENTS_VIEW,
    WINDOWS,
    CatalogTerms,
    null_features,
    view_specs,
)
from nextbest.customers.feature_sources import (
    SECS,
    SourceData,
    epoch_seconds,
    load_coded_sources,
    with_extra_consent,
)

log = logging.getLogger(__name__)

DAY = 86_400.0
#: Net spend over 365 days separating value tiers 1|2 and 2|3 (tier 0 = no net spend).
#: Amounts follow ``nextbest.customers.contract.AMOUNT_SIGN``: spend is positive, refunds negative.
VALUE_TIER_EDGES = (200.0, 1000.0)


def snapshot_times(as_of: datetime, months: int) -> list[pd.Timestamp]:
    """``as_of`` and the first day of each of the ``months`` months before it (UTC)."""
    end = pd.Timestamp(as_of)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    first = end.normalize().replace(day=1)
    times = [first - pd.DateOffset(months=i) for i in range(months)]
    return sorted({t for t in times if t < end} | {end})


def snapshot_range(features_dir: Path, terms: CatalogTerms) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and the last snapshot time of the feature tables under ``features_dir``
    (every view is built at the same times; the last is the as-of time of the build)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nextbest.core.errors import MissingInputError

    path = Path(features_dir) / f"{view_specs(terms)[0].name}.parquet"
    if not path.exists():
        raise MissingInputError(
            f"no feature tables under {features_dir}; run `nextbest features build` first"
        )
    bounds = pc.min_max(pq.read_table(path, columns=["event_timestamp"]).column(0)).as_py()
    if bounds["min"] is None:
        raise MissingInputError(f"{path} has no rows; run `nextbest features build` again")
    first, last = (pd.Timestamp(bounds[k]) for k in ("min", "max"))
    utc = [t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC") for t in (first, last)]
    return utc[0], utc[1]


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
    # ``load_coded_sources`` precomputes epoch seconds once per table; converting per
    # snapshot was the single largest cost.
    if col + SECS not in prior:
        return (
            pd.Series(epoch_seconds(prior[col]), index=prior["customer_id"].to_numpy())
            .groupby(level=0)
            .max()
        )
    codes = prior["customer_id"].to_numpy()
    # NaN where a customer has no event, as a group-by reindexed onto every customer.
    last = np.full(int(codes.max()) + 1 if len(codes) else 0, np.nan)
    np.fmax.at(last, codes, prior[col + SECS].to_numpy())
    return pd.Series(last)


def _last_masked(events: pd.DataFrame, mask: np.ndarray, col: str = "ts") -> pd.Series:
    """:func:`_last_ts` of ``events.loc[mask]`` (its ``col`` before ``t``) without
    copying the rows: the codes and epoch seconds of the masked rows only."""
    codes = events["customer_id"].to_numpy()[mask]
    last = np.full(int(codes.max()) + 1 if len(codes) else 0, np.nan)
    np.fmax.at(last, codes, events[col + SECS].to_numpy()[mask])
    return pd.Series(last)


def _fmax(x: pd.Series, y: pd.Series) -> pd.Series:
    """Per position the larger of two :func:`_last_ts` results (NaN: neither has one);
    what :func:`_last_ts` gives on the two event tables concatenated."""
    out = np.full(max(len(x), len(y)), np.nan)
    out[: len(x)] = x.to_numpy()
    out[: len(y)] = np.fmax(out[: len(y)], y.to_numpy())
    return pd.Series(out)


def _view_rows(
    src: SourceData, ids: pd.Index, t: pd.Timestamp, terms: CatalogTerms
) -> dict[str, pd.DataFrame]:
    """Every feature view's rows for snapshot time ``t`` (data strictly before ``t``) of
    coded sources (:func:`load_coded_sources`) whose customers are ``ids``."""
    cust = pd.RangeIndex(len(ids), name="customer_id")
    b = src.baskets.loc[src.baskets["ts"] < t]
    # The activity table is by far the largest (~55 events per customer): it is masked,
    # never copied whole; only its 7- and 30-day windows are materialised.
    a_before = (src.activity["ts"] < t).to_numpy()
    last_act = _last_masked(src.activity, a_before)
    last_purchase = _last_ts(b, t)
    out = {
        "customer_profile": _profile_view(src.customers, b, last_act, cust, ids, t),
        "customer_transactions": _transactions_view(b, last_purchase, cust, ids, t, terms),
        "customer_behaviour": _behaviour_view(
            src.activity, a_before, last_act, last_purchase, cust, ids, t, terms
        ),
        "customer_service": _service_view(src.cases, cust, ids, t),
        "customer_holdings": _holdings_view(src.holdings, cust, ids, t, terms),
        "customer_consent": _consent_view(src.consent, cust, ids, t, terms),
        "customer_contacts": _contacts_view(src.contacts, cust, ids, t, terms),
    }
    if terms.behaviour:
        cols = behaviour_event_columns(src.activity, a_before, len(ids), t, terms)
        out[BEHAVIOUR_EVENTS_VIEW] = _frame(cust, t, cols, ids)
    # A feature whose source tables are all absent is unknown, not 0: null (a nullable
    # integer column for the integer kinds), in the parquet, in Feast and in training.
    null = set(null_features(src.absent, terms))
    for spec in view_specs(terms):
        df = out[spec.name]
        for f in spec.all_features:
            if f.name in null:
                kind = "Int64" if f.kind == "int" else "float64"
                df[f.name] = pd.Series(pd.NA if f.kind == "int" else np.nan, df.index, kind)
            else:
                df[f.name] = df[f.name].astype("int64" if f.kind == "int" else "float64")
        out[spec.name] = df[["customer_id", "event_timestamp", *spec.feature_names]]
    return out


def _profile_view(
    customers: pd.DataFrame,
    b: pd.DataFrame,
    last_act: pd.Series,
    cust: pd.RangeIndex,
    ids: pd.Index,
    t: pd.Timestamp,
) -> pd.DataFrame:
    """Tenure, value tier (365-day net spend of ``b``, the baskets before ``t``: the sum
    of their amounts, positive for spend and negative for refunds), household size, age,
    source records."""
    c = customers.set_index("customer_id")
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
    return _frame(
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


def _transactions_view(
    b: pd.DataFrame,
    last_purchase: pd.Series,
    cust: pd.RangeIndex,
    ids: pd.Index,
    t: pd.Timestamp,
    terms: CatalogTerms,
) -> pd.DataFrame:
    """Purchase counts and amounts per window, spend per category over 365 days."""
    cols: dict = {}
    for w in WINDOWS:
        cols[f"txn_count_{w}d"] = _window_agg(b, t, w, None)
    for w in WINDOWS:
        cols[f"txn_amount_{w}d"] = _window_agg(b, t, w, "amount")
    cols["last_purchase_ts"] = last_purchase
    b365 = b.loc[b["ts"] >= t - timedelta(days=365)]
    by_cat = b365.pivot_table(
        index="customer_id", columns="category", values="amount", aggfunc="sum"
    )
    for cat in terms.categories:
        cols[f"spend_365d_{cat}"] = by_cat[cat] if cat in by_cat else 0.0
    cols["customer_transactions_as_of_ts"] = last_purchase
    return _frame(cust, t, cols, ids)


def _behaviour_view(
    act: pd.DataFrame,
    a_before: np.ndarray,
    last_act: pd.Series,
    last_purchase: pd.Series,
    cust: pd.RangeIndex,
    ids: pd.Index,
    t: pd.Timestamp,
    terms: CatalogTerms,
) -> pd.DataFrame:
    """Product views over 30 days, configurator and loan checks over 7, last activity."""
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
    cols = {f"views_30d_{cat}": views[cat] if cat in views else 0.0 for cat in terms.categories}
    cols["config_views_7d"] = cfg.groupby("customer_id").size()
    cols["loan_checks_7d"] = a7.loc[a7["event_type"] == "loan_check"].groupby("customer_id").size()
    cols["repeat_interest_7d"] = repeat.groupby(level=0).max() if len(repeat) else 0.0
    cols["last_active_ts"] = last_active
    cols["customer_behaviour_as_of_ts"] = last_active
    return _frame(cust, t, cols, ids)


def _service_view(
    k: pd.DataFrame, cust: pd.RangeIndex, ids: pd.Index, t: pd.Timestamp
) -> pd.DataFrame:
    """Open cases, complaints over 90 days, the last complaint and case event."""
    opened = k.loc[k["opened_at"] < t]
    is_open = opened["closed_at"].isna() | (opened["closed_at"] >= t)
    complaints = opened.loc[opened["complaint"]]
    last_event = pd.concat(
        [
            opened[["customer_id"]].assign(
                ts=opened["opened_at"], **{"ts" + SECS: opened["opened_at" + SECS]}
            ),
            opened.loc[opened["closed_at"] < t, ["customer_id"]].assign(
                ts=opened.loc[opened["closed_at"] < t, "closed_at"],
                **{"ts" + SECS: opened.loc[opened["closed_at"] < t, "closed_at" + SECS]},
            ),
        ]
    )
    return _frame(
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


def _holdings_view(
    holdings: pd.DataFrame, cust: pd.RangeIndex, ids: pd.Index, t: pd.Timestamp, terms: CatalogTerms
) -> pd.DataFrame:
    """One flag per product held before ``t``, and its balance: the latest reading before
    ``t`` (several holdings of one product read at that time add up); 0 when the product
    is not held, NaN when it is held without a reading yet."""
    h = holdings.loc[holdings["since"] < t]
    held = h.assign(one=1).pivot_table(
        index="customer_id", columns="product_id", values="one", aggfunc="max"
    )
    cols: dict = {f"holds_{p}": held[p] if p in held else 0 for p in terms.products}
    last = _last_ts(h, t, "since")
    readings = _balance_readings(h, t)
    for p in terms.products:
        flag = (held[p] if p in held else pd.Series(dtype=float)).reindex(cust).fillna(0)
        value = (readings[p] if p in readings else pd.Series(dtype=float)).reindex(cust)
        cols[f"balance_{p}"] = np.where(flag.to_numpy() > 0, value.to_numpy(), 0.0)
    if len(readings.columns):
        last = _fmax(last, _last_ts(h.loc[h["balance_at"] < t], t, "balance_at"))
    cols["customer_holdings_as_of_ts"] = last
    return _frame(cust, t, cols, ids)


def _balance_readings(h: pd.DataFrame, t: pd.Timestamp) -> pd.DataFrame:
    """Per customer (rows) and product (columns) the sum of the balances read at the
    latest reading time before ``t``."""
    if "balance" not in h:
        return pd.DataFrame()
    read = h.loc[(h["balance_at"] < t).to_numpy() & h["balance"].notna().to_numpy()]
    if read.empty:
        return pd.DataFrame()
    latest = read.groupby(["customer_id", "product_id"])["balance_at"].transform("max")
    read = read.loc[read["balance_at"] == latest]
    return read.groupby(["customer_id", "product_id"])["balance"].sum().unstack()


def _consent_view(
    consent: pd.DataFrame, cust: pd.RangeIndex, ids: pd.Index, t: pd.Timestamp, terms: CatalogTerms
) -> pd.DataFrame:
    """The latest consent event per purpose and channel (deny when there is none); for a
    purpose consented to once for all channels, the latest on any channel, in every
    channel's column."""
    cs = consent.loc[consent["ts"] < t].sort_values("ts", kind="stable")
    # The cell a record decides: its channel, or "*" (every channel) for scoped purposes.
    scoped = cs["purpose"].astype(str).isin(terms.all_channel_purposes).to_numpy()
    cell = np.where(scoped, "*", cs["channel"].astype(str).to_numpy())
    latest = cs.assign(cell=cell).drop_duplicates(["customer_id", "purpose", "cell"], keep="last")
    granted = latest.assign(g=latest["granted"].astype(int)).pivot_table(
        index="customer_id", columns=["purpose", "cell"], values="g", aggfunc="max"
    )

    def cell_of(p: str, ch: str) -> tuple[str, str]:
        return (p, "*" if p in terms.all_channel_purposes else ch)

    cols = {
        f"consent_{p}_{ch}": granted[cell_of(p, ch)] if cell_of(p, ch) in granted else 0
        for p in terms.purposes
        for ch in terms.channels
    }
    cols["customer_consent_as_of_ts"] = _last_ts(cs, t)
    return _frame(cust, t, cols, ids)


def _contacts_view(
    contacts: pd.DataFrame, cust: pd.RangeIndex, ids: pd.Index, t: pd.Timestamp, terms: CatalogTerms
) -> pd.DataFrame:
    """Contacts per channel over 7 and 30 days, in total over 7, when each action was
    last shown."""
    ct = contacts.loc[contacts["ts"] < t]
    cols = {}
    for ch in terms.channels:
        sub = ct.loc[ct["channel"] == ch]
        for w in (7, 30):
            cols[f"contacts_{ch}_{w}d"] = _window_agg(sub, t, w, None)
    cols["contacts_total_7d"] = _window_agg(ct, t, 7, None)
    for act in terms.action_ids:
        cols[f"last_shown_ts_{act}"] = _last_ts(ct.loc[ct["action_id"] == act], t)
    cols["customer_contacts_as_of_ts"] = _last_ts(ct, t)
    return _frame(cust, t, cols, ids)


# What the snapshot workers read: set by the parent just before its pool forks, so each
# worker inherits the coded sources (copy-on-write pages) instead of being sent gigabytes.
_FORKED: tuple[SourceData, pd.Index, Path, CatalogTerms] | None = None


def _snapshot_tables(
    src: SourceData, ids: pd.Index, t: pd.Timestamp, terms: CatalogTerms
) -> dict[str, pa.Table]:
    """Every view's rows at snapshot ``t`` as the Arrow tables written to parquet."""
    out = {}
    for name, df in _view_rows(src, ids, t, terms).items():
        df = df.reset_index(drop=True)
        df["event_timestamp"] = df["event_timestamp"].astype("datetime64[us, UTC]")
        out[name] = pa.Table.from_pandas(df, preserve_index=False)
    return out


def _snapshot_to_files(i: int, t: pd.Timestamp) -> dict[str, str]:
    """In a forked worker: snapshot ``i``'s tables as Arrow IPC files (uncompressed, so
    the parent maps them back for free); their paths by view."""
    assert _FORKED is not None, "only called in a worker forked by _snapshots"
    src, ids, parts, terms = _FORKED
    paths = {}
    for name, table in _snapshot_tables(src, ids, t, terms).items():
        path = parts / f"{name}.{i}.arrow"
        with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
        paths[name] = str(path)
    return paths


def _snapshots(
    src: SourceData,
    ids: pd.Index,
    times: list[pd.Timestamp],
    workers: int,
    scratch: Path,
    terms: CatalogTerms,
) -> Iterator[dict[str, pa.Table]]:
    """Each snapshot's tables, in the order of ``times``.

    With ``workers`` > 1 the snapshots are built by that many forked processes (each
    snapshot reads only the shared sources, so they are independent) while this process
    writes the finished ones; the tables are the same as built here one by one.
    """
    global _FORKED
    if workers <= 1 or len(times) < 2 or "fork" not in mp.get_all_start_methods():
        for t in times:
            yield _snapshot_tables(src, ids, t, terms)
        return
    scratch.mkdir(parents=True, exist_ok=True)
    _FORKED = (src, ids, scratch, terms)
    # The workers must never run the collector over the objects they inherit: a forked
    # worker was seen to segfault in garbage collection after the parent had run Arrow's
    # thread pools (the object it tripped on was not pinned down). So the parent
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
    *,
    terms: CatalogTerms,
    salt: str,
    sources: tuple[SourceData, pd.Index] | None = None,
    extra_consent: pd.DataFrame | None = None,
    tombstone: frozenset[str] = frozenset(),
) -> dict[str, Path]:
    """Build every feature table at monthly snapshots up to ``as_of`` and write parquet.

    ``terms``: the catalog's products, categories and actions the columns are named after;
    ``salt``: the identifier salt of the identity lookup keys.

    ``workers`` > 1 builds the snapshots in that many forked processes (the same files).
    ``extra_consent``: consent records beside the export (see :func:`with_extra_consent`).
    ``sources``: the coded sources and customer ids to build from (default: the demo
    exports under ``raw_dir``; :mod:`nextbest.customers.contract_sources` builds them from a
    team's staged contract tables). ``tombstone``: erased persons
    (:mod:`nextbest.customers.tombstone`); a customer with a tombstoned identifier key gets no row
    in any table. Returns the written paths by view name (plus ``identity_lookup``).
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from nextbest.customers.tombstone import tombstoned_keys

    coded, ids = (
        sources
        if sources is not None
        else load_coded_sources(raw_dir, unified_dir, terms=terms, salt=salt)
    )
    coded = with_extra_consent(coded, ids, extra_consent)
    erased_keys = tombstoned_keys(coded.identifiers["identifier"], tombstone, salt)
    erased = pa.array(pd.unique(coded.identifiers["customer_id"][erased_keys]), type=pa.string())
    if len(erased):
        log.info("leaving out %d customers of erased persons (tombstone)", len(erased))
    times = snapshot_times(as_of, months)
    features_dir.mkdir(parents=True, exist_ok=True)
    paths = {s.name: features_dir / f"{s.name}.parquet" for s in view_specs(terms)}
    # Each snapshot goes to its view's file as soon as it is built (one row group per
    # snapshot) instead of every snapshot of every view held and then concatenated, which
    # made peak memory grow with customers x snapshots. Same rows, order and types as
    # one concatenated frame; the first snapshot fixes each file's schema.
    writers: dict[str, pq.ParquetWriter] = {}
    scratch = features_dir / ".snapshots"
    try:
        for i, tables in enumerate(_snapshots(coded, ids, times, workers, scratch, terms)):
            for name, table in tables.items():
                if len(erased):
                    keep = pc.invert(pc.is_in(table.column("customer_id"), value_set=erased))
                    table = table.filter(keep)
                if name not in writers:
                    writers[name] = pq.ParquetWriter(paths[name], table.schema)
                writers[name].write_table(table.cast(writers[name].schema))
            del tables
            if progress:
                progress(i + 1, len(times))
    finally:
        for w in writers.values():
            w.close()
    lookup = coded.identifiers.loc[
        ~coded.identifiers["customer_id"].isin(erased.to_pylist())
    ].reset_index(drop=True)
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


def view_names(terms: CatalogTerms) -> Iterable[str]:
    """Names of the customer feature views (without the identity lookup)."""
    return [s.name for s in view_specs(terms)]
