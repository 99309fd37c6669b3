"""A team's exports mapped onto the source contract by a sources file (``sources.yaml``).

The sources file says, per contract table, which files hold it (CSV or parquet, one or
several, glob patterns allowed), who each row is about (a record of a system, or an
identifier such as a customer number or a phone; by one rule or per row) and where each
contract column comes from: a column of the file (renamed), several columns joined (a
composite key), a constant, a value map (a team's offer codes onto catalog ids, its
control-arm label onto ``no_action``), a date or timestamp format (day-first dates
included), a full name in one column, or an amount put into the contract's sign
convention (a debit/credit flag, or a flip). The schema is the pydantic models of
:mod:`nextbest.customers.sources.schema` (re-exported here);
:mod:`nextbest.customers.sources.mapping` maps each file by them.
:func:`load_source_files` reads every file, maps it, and validates every table against
:mod:`nextbest.customers.contract`; :func:`stage_tables` writes them only once all are valid, so a
bad file leaves nothing behind.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from nextbest.core.errors import InputError
from nextbest.customers.contract import (
    TABLES,
    ContractError,
    Problem,
    Terms,
    complete,
    with_normalised_action_ids,
)
from nextbest.customers.contract import validate_tables as _validate
from nextbest.customers.sources.mapping import map_file
from nextbest.customers.sources.schema import (  # noqa: F401 - the schema, re-exported
    ColumnSpec,
    Customer,
    FileSpec,
    Record,
    Sign,
    SourcesFile,
    When,
    read_sources_file,
)

log = logging.getLogger(__name__)

#: Export files the demo generator wrote under an earlier name (today's name -> the old
#: one): where only the old file is there (a home generated before the rename), it is read.
RETIRED_EXPORT_NAMES: dict[str, str] = {"campaign_exposures.parquet": "campaign_history.parquet"}


def export_path(directory: Path, name: str) -> Path:
    """``directory / name``, or the file under its retired name when only that exists."""
    path = directory / name
    old = RETIRED_EXPORT_NAMES.get(name)
    if old is not None and not path.exists() and (directory / old).exists():
        return directory / old
    return path


def _files(base: Path, pattern: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else str(base / pattern)
    found = [Path(p) for p in sorted(glob.glob(full))]
    if not found and Path(full).name in RETIRED_EXPORT_NAMES:
        old = export_path(Path(full).parent, Path(full).name)
        found = [old] if old.exists() else []
    return found


def _read(path: Path, spec: FileSpec) -> pd.DataFrame:
    kind = spec.format or ("csv" if path.suffix.lower() in (".csv", ".txt") else "parquet")
    if kind == "csv":
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], sep=spec.delimiter
        )
    return pd.read_parquet(path)


def load_source_files(
    sources: Path | SourcesFile, base_dir: Path | None = None, terms: Terms | None = None
) -> dict[str, pd.DataFrame]:
    """Every table of the sources file, mapped and validated (contract column order).

    Raises one :class:`ContractError` with every problem of every file, or an
    :class:`InputError` for an unreadable sources file.
    """
    if isinstance(sources, SourcesFile):
        spec, base = sources, Path(base_dir or ".")
    else:
        spec, base = read_sources_file(sources), Path(base_dir or Path(sources).parent)
    problems: list[Problem] = []
    tables: dict[str, pd.DataFrame] = {}
    for table, files in spec.tables.items():
        parts = []
        for fspec in files:
            paths = _files(base, fspec.file)
            if not paths:
                problems.append(Problem(table, str(base / fspec.file), "-", "no such file"))
            for path in paths:
                try:
                    raw = _read(path, fspec)
                except (OSError, ValueError) as exc:
                    problems.append(Problem(table, str(path), "-", f"cannot read the file: {exc}"))
                    continue
                part, found = map_file(table, path, raw, fspec)
                parts.append(part)
                problems += found
        if parts:
            tables[table] = with_normalised_action_ids(table, pd.concat(parts, ignore_index=True))
    if problems:
        raise ContractError(problems)
    _validate(tables, terms)
    out = {name: complete(name, frame) for name, frame in tables.items()}
    log.info("loaded %s", ", ".join(f"{k} {len(v):,} rows" for k, v in out.items()))
    return out


def stage_tables(tables: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, Path]:
    """Write the valid tables as ``<table>.parquet`` under ``out_dir``, replacing what
    was there in one rename: readers see the old set or the new one, never a mix."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name, frame in tables.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {name: out_dir / f"{name}.parquet" for name in tables}


def read_staged(contract_dir: Path) -> dict[str, pd.DataFrame]:
    """The staged contract tables under ``contract_dir`` (absent tables are left out)."""
    contract_dir = Path(contract_dir)
    if not (contract_dir / "identity_records.parquet").exists():
        raise InputError(
            f"no staged source data in {contract_dir}; run a command with --sources first"
        )
    return {
        name: pd.read_parquet(contract_dir / f"{name}.parquet")
        for name in TABLES
        if (contract_dir / f"{name}.parquet").exists()
    }


def describe(tables: dict[str, Any]) -> str:
    """``table rows, ...`` for logs and the command line."""
    return ", ".join(f"{k} {len(v):,}" for k, v in tables.items())
