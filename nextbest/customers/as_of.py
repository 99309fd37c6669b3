"""The as-of time: the moment the feature snapshots, materialisation and batch decisions
are taken at.

It is the data's time, not the clock's: ``NEXTBEST_AS_OF`` (or a command's ``--as-of``)
when given, else the data's own end, the midnight (UTC) after its latest event or
exposure. Exports that end in 2025 are then snapshotted in 2025, instead of at a fixed
date that no event reaches. :func:`resolve_as_of` is the one place that decides it;
every command that uses it prints :meth:`AsOf.describe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nextbest.core.errors import InputError
from nextbest.core.settings import Settings
from nextbest.customers.contract import TABLES, columns
from nextbest.customers.sources.files import export_path

Origin = Literal["setting", "data"]

#: Contract tables that are not events: record creation dates and stock carry no event time.
_NOT_EVENTS = ("identity_records", "product_stock")

#: The demo generator's exports and their event-time columns (the same events the contract
#: tables hold once ``nextbest/demo/sources.yaml`` maps them).
_GENERATED_EVENT_TIMES: dict[str, tuple[str, ...]] = {
    "pos_baskets": ("ts",),
    "web_events": ("ts",),
    "app_events": ("ts",),
    "service_cases": ("opened_at", "closed_at"),
    "holdings": ("since",),
    "consent": ("ts",),
    "campaign_exposures": ("exposed_at",),
}


@dataclass(frozen=True)
class AsOf:
    """The as-of time and where it came from."""

    time: datetime
    origin: Origin
    #: With ``origin == "data"``: the latest event time and the ``table.column`` holding it.
    latest: datetime | None = None
    latest_in: str = ""

    def describe(self) -> str:
        """One line for the command line: the time and where it came from."""
        when = _iso(self.time)
        if self.origin == "setting":
            return f"as of {when} (set by NEXTBEST_AS_OF or --as-of)"
        return (
            f"as of {when} (from the data: the midnight after its latest event, "
            f"{_iso(self.latest)} in {self.latest_in}; set NEXTBEST_AS_OF to choose another)"
        )


def _iso(t: datetime | None) -> str:
    return "" if t is None else pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def event_time_columns(settings: Settings) -> dict[Path, tuple[str, ...]]:
    """The files the data's end is read from and their event-time columns: the staged
    contract's event tables with ``settings.sources``, else the generator's exports."""
    if settings.sources is None:
        return {
            export_path(settings.raw_dir, f"{name}.parquet"): cols
            for name, cols in _GENERATED_EVENT_TIMES.items()
        }

    out: dict[Path, tuple[str, ...]] = {}
    for table in TABLES:
        if table in _NOT_EVENTS:
            continue
        times = tuple(c for c, (dtype, _, _) in columns(table).items() if "datetime" in dtype)
        if times:
            out[settings.contract_dir / f"{table}.parquet"] = times
    return out


def _column_max(path: Path, column: str) -> pd.Timestamp | None:
    """The largest value of a timestamp column (None: empty or all null), from the row
    groups' statistics when every one has them (no data read), else from the column."""
    meta = pq.ParquetFile(path).metadata
    leaves = [meta.schema.column(j).name for j in range(meta.num_columns)]
    if column not in leaves:
        return None
    j = leaves.index(column)
    tops = []
    for i in range(meta.num_row_groups):
        chunk = meta.row_group(i).column(j)
        stats = chunk.statistics
        if stats is not None and stats.has_null_count and stats.null_count == chunk.num_values:
            continue  # an all-null row group holds no time
        if stats is None or not stats.has_min_max:
            tops = None
            break
        tops.append(stats.max)
    if tops is None:
        tops = [pc.max(pq.read_table(path, columns=[column]).column(0)).as_py()]
    tops = [pd.Timestamp(t) for t in tops if t is not None]
    if not tops:
        return None
    top = max(t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC") for t in tops)
    return top


def data_end(settings: Settings) -> tuple[datetime, str]:
    """The latest event or exposure time in the data and the ``table.column`` holding it.

    Raises :class:`~nextbest.core.errors.InputError` when there is no data to read it from.
    """
    latest: pd.Timestamp | None = None
    where = ""
    for path, cols in event_time_columns(settings).items():
        if not path.exists():
            continue
        for col in cols:
            top = _column_max(path, col)
            if top is not None and (latest is None or top > latest):
                latest, where = top, f"{path.stem}.{col}"
    if latest is None:
        first = (
            f"run `nextbest ingest --sources {settings.sources}` first"
            if settings.sources is not None
            else "run `nextbest generate` (or pass --sources) first"
        )
        src = settings.contract_dir if settings.sources is not None else settings.raw_dir
        raise InputError(
            f"no event or exposure times in {src} to take the as-of time from: {first}, "
            "or set NEXTBEST_AS_OF (or --as-of)"
        )
    return latest.to_pydatetime(), where


def resolve_as_of(settings: Settings) -> AsOf:
    """``settings.as_of`` when set, else the midnight (UTC) after the data's latest event
    or exposure (so the last snapshot holds every event, features counting events strictly
    before it)."""
    if settings.as_of is not None:
        return AsOf(settings.as_of, "setting")
    latest, where = data_end(settings)
    end = pd.Timestamp(latest).normalize() + pd.Timedelta(days=1)
    return AsOf(end.to_pydatetime().astimezone(UTC), "data", latest, where)
