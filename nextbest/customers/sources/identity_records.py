"""Map the identity-bearing source exports to the canonical record schema.

One canonical record per CRM account, email lead, loyalty member, app account and web
device (cookie) that logged in to an app account at least once, with the raw identifier
values exactly as the exports hold them: normalisation is :mod:`nextbest.customers.normalise`'s
job. A cookie that never logged in names no one and is no identity record. Only the
exports the mapping names are read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

#: Canonical record columns, in order (see docs/contracts.md).
CANONICAL_COLUMNS: tuple[str, ...] = (
    "record_id",
    "source",
    "email",
    "phone",
    "crm_id",
    "loyalty_id",
    "app_account_id",
    "device_id",
    "first_name",
    "last_name",
    "date_of_birth",
    "street",
    "city",
    "postcode",
)

#: Source name -> export file the canonical records of that source come from.
SOURCE_FILES: dict[str, str] = {
    "crm": "crm_accounts.parquet",
    "email_lead": "email_leads.parquet",
    "loyalty": "loyalty_members.parquet",
    "app": "app_accounts.parquet",
    "web": "web_events.parquet",
}

# Native id column and the export columns copied as they are, per source.
_NATIVE_ID = {
    "crm": "crm_id",
    "email_lead": "lead_id",
    "loyalty": "loyalty_id",
    "app": "app_account_id",
    "web": "device_id",
}
_COLUMNS = {
    "crm": [
        "crm_id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "date_of_birth",
        "street",
        "city",
        "postcode",
    ],
    "email_lead": ["lead_id", "email", "phone", "first_name", "last_name"],
    "loyalty": ["loyalty_id", "email", "phone", "first_name", "last_name", "postcode"],
    "app": ["app_account_id", "email", "phone", "first_name"],
}


def _read(raw_dir: Path, source: str, columns: list[str]) -> pa.Table:
    path = raw_dir / SOURCE_FILES[source]
    if not path.exists():
        raise FileNotFoundError(
            f"source export {path} is missing; run `nextbest generate --out {raw_dir}` first"
        )
    table = pq.read_table(path, columns=columns)
    missing = set(columns) - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    return table


def _web_devices(raw_dir: Path) -> pa.Table:
    """One record per web device that logged in; the app account it logged in with.

    A cookie that never logged in holds nothing but its own id: it names no one, so it
    is no identity record and its events stay anonymous.
    """
    events = _read(raw_dir, "web", ["device_id", "app_account_id"])
    events = events.filter(pc.is_valid(events.column("app_account_id")))
    devices = events.group_by("device_id").aggregate([("app_account_id", "min")])
    devices = devices.rename_columns(["device_id", "app_account_id"])
    return devices.sort_by("device_id")


def _canonical(source: str, table: pa.Table) -> pa.Table:
    native = table.column(_NATIVE_ID[source])
    n = table.num_rows
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "record_id": pc.binary_join_element_wise(f"{source}:", native, ""),
        "source": pa.array([source] * n, type=pa.string()),
    }
    for name in CANONICAL_COLUMNS[2:]:
        if name in table.column_names:
            columns[name] = table.column(name).cast(pa.string())
        else:
            columns[name] = pa.nulls(n, type=pa.string())
    return pa.table(columns)


def load_canonical_table(raw_dir: Path) -> pa.Table:
    """:func:`load_canonical_records` as an Arrow table (the same rows and columns)."""
    raw_dir = Path(raw_dir)
    parts = [_canonical(source, _read(raw_dir, source, cols)) for source, cols in _COLUMNS.items()]
    parts.append(_canonical("web", _web_devices(raw_dir)))
    table = pa.concat_tables(parts)
    logger.info("loaded %d canonical records from %s", table.num_rows, raw_dir)
    return table


def load_canonical_records(raw_dir: Path) -> pd.DataFrame:
    """All identity records of the exports under ``raw_dir`` in the canonical schema.

    Columns are :data:`CANONICAL_COLUMNS` (strings, missing values as None);
    ``record_id = f"{source}:{native_id}"``. Rows come source by source in the order of
    :data:`SOURCE_FILES`, each in its export's row order (web devices sorted by id).
    """
    return load_canonical_table(raw_dir).to_pandas()
