"""A team's exports mapped onto the source contract by a sources file (``sources.yaml``).

The sources file says, per contract table, which files hold it (CSV or parquet, one or
several, glob patterns allowed) and where each contract column comes from: a column of
the file (renamed), a constant, a value map (a team's offer codes onto catalog ids, its
control-arm label onto ``no_action``), a date or timestamp format (day-first dates
included), a full name in one column, or an amount whose sign is given by another
column. :func:`load_source_files` reads every file, maps it, and validates every table
against :mod:`customers.contract`; :func:`stage_tables` writes them only once all are
valid, so a bad file leaves nothing behind.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import InputError
from customers.contract import FILE, ROW, TABLES, ContractError, Problem, Terms, complete
from customers.contract import validate_tables as _validate

log = logging.getLogger(__name__)


class Sign(BaseModel):
    """The amount is negative where ``column`` holds one of ``negative`` (debits, refunds)."""

    model_config = ConfigDict(extra="forbid")
    column: str
    negative: list[str] = Field(min_length=1)


class ColumnSpec(BaseModel):
    """Where one contract column comes from: a source column or a constant, then its
    parse (format), value map and sign."""

    model_config = ConfigDict(extra="forbid")
    column: str | None = None
    value: str | float | bool | None = None
    format: str | None = None  # strftime format of a date or timestamp column
    dayfirst: bool = False
    timezone: str = "UTC"  # of naive timestamps
    map: dict[str, str | bool | float] | None = None
    sign: Sign | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnSpec:
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of 'column' (a source column) or 'value'")
        return self


class Record(BaseModel):
    """The identity record a row belongs to: ``{source}:{value of column}``."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    column: str


class FileSpec(BaseModel):
    """One or several files (a glob) of one contract table, and how to map them."""

    model_config = ConfigDict(extra="forbid")
    file: str
    format: Literal["csv", "parquet"] | None = None  # default: by suffix
    delimiter: str = ","
    record: Record | None = None
    columns: dict[str, str | ColumnSpec] = Field(default_factory=dict)
    full_name: str | None = None  # one column "First [Middle] Last" -> first_name, last_name
    drop_empty: list[str] = Field(default_factory=list)  # drop rows where these are empty
    exclude: dict[str, list[str]] = Field(default_factory=dict)  # drop rows with these values
    one_row_per_record: bool = False  # keep each record's first row (sorted by its values)


class SourcesFile(BaseModel):
    """The whole sources file: contract table -> its files."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = 1
    tables: dict[str, list[FileSpec]]

    @model_validator(mode="after")
    def _known_tables(self) -> SourcesFile:
        unknown = sorted(set(self.tables) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown tables {unknown}; the contract has {list(TABLES)}")
        for name, specs in self.tables.items():
            contract = set(TABLES[name].to_schema().columns) | {"record_id"}
            for spec in specs:
                bad = sorted(set(spec.columns) - contract)
                if bad:
                    raise ValueError(f"{name}: {spec.file}: unknown contract columns {bad}")
                if name not in ("consent_events", "product_stock") and spec.record is None:
                    raise ValueError(f"{name}: {spec.file}: 'record' (source, column) is required")
        return self


def read_sources_file(path: Path) -> SourcesFile:
    """Parse and validate ``path``; an :class:`InputError` names every wrong entry."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"sources file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return SourcesFile.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        ]
        raise InputError(f"{path}: invalid sources file:\n  " + "\n  ".join(lines)) from exc


# --- reading and mapping ------------------------------------------------------------------


def _files(base: Path, pattern: str) -> list[Path]:
    full = pattern if os.path.isabs(pattern) else str(base / pattern)
    return [Path(p) for p in sorted(glob.glob(full))]


def _read(path: Path, spec: FileSpec) -> pd.DataFrame:
    kind = spec.format or ("csv" if path.suffix.lower() in (".csv", ".txt") else "parquet")
    if kind == "csv":
        return pd.read_csv(
            path, dtype=str, keep_default_na=False, na_values=[""], sep=spec.delimiter
        )
    return pd.read_parquet(path)


def _as_str(s: pd.Series) -> pd.Series:
    """Text values (numbers written as text), empty ones as None."""
    missing = s.isna().to_numpy()
    if s.dtype == object and not missing.all():
        present = s.to_numpy()[~missing]
        if (
            all(isinstance(v, str) for v in present[:1000])
            and pd.api.types.infer_dtype(present, skipna=True) == "string"
        ):
            out = s.astype(object).copy()
            out[missing] = None
            return out
    out = s.astype(str).astype(object)
    out[missing] = None
    return out


class _Mapper:
    """Maps one file onto its table's columns, collecting problems instead of raising."""

    def __init__(self, table: str, path: Path, raw: pd.DataFrame) -> None:
        self.table, self.path, self.raw = table, path, raw
        self.problems: list[Problem] = []
        schema = TABLES[table].to_schema().columns
        self.dtypes = {n: str(c.dtype) for n, c in schema.items()}
        self.nullable = {n: bool(c.nullable) for n, c in schema.items()}

    def problem(self, column: str, rule: str, bad: np.ndarray | None = None) -> None:
        rows = [] if bad is None else (np.flatnonzero(bad) + 1).tolist()
        self.problems.append(Problem(self.table, str(self.path), column, rule, rows[:5], len(rows)))

    def source(self, name: str, target: str) -> pd.Series | None:
        if name not in self.raw:
            self.problem(target, f"source column {name!r} is not in the file")
            return None
        return self.raw[name]

    def column(self, target: str, spec: str | ColumnSpec) -> pd.Series | None:
        spec = ColumnSpec(column=spec) if isinstance(spec, str) else spec
        n = len(self.raw)
        if spec.column is None:
            s = pd.Series([spec.value] * n, index=self.raw.index, dtype=object)
        else:
            got = self.source(spec.column, target)
            if got is None:
                return None
            s = got
        if spec.map is not None:
            text = _as_str(s)
            mapped = text.map(spec.map)  # values not in the map pass unchanged
            s = mapped.astype(object).where(text.isin(list(spec.map)), text)
        return self.parse(target, s, spec)

    def parse(self, target: str, s: pd.Series, spec: ColumnSpec) -> pd.Series | None:
        dtype = self.dtypes.get(target, "str")
        present = s.notna().to_numpy()
        if "datetime" in dtype:
            out = self.timestamps(s, spec)
            bad = present & out.isna().to_numpy()
            fmt = f" with format {spec.format!r}" if spec.format else ""
            rule = f"cannot parse as a timestamp{fmt}"
        elif dtype == "float64":
            out = pd.to_numeric(s, errors="coerce").astype(np.float64)
            bad, rule = present & out.isna().to_numpy(), "cannot parse as a number"
            if spec.sign is not None:
                flag = self.source(spec.sign.column, target)
                if flag is not None:
                    neg = _as_str(flag).isin(spec.sign.negative).to_numpy()
                    out = out.abs().where(~neg, -out.abs())
        elif dtype == "int64":
            num = pd.to_numeric(s, errors="coerce")
            bad = present & (num.isna() | (num % 1 != 0)).to_numpy()
            rule = "cannot parse as a whole number"
            out = num.fillna(0).astype(np.int64) if not bad.any() else num
        elif spec.format is not None:  # a date kept as text, written ISO (date of birth)
            parsed = pd.to_datetime(_as_str(s), format=spec.format, errors="coerce")
            bad = present & parsed.isna().to_numpy()
            rule = f"cannot parse as a date with format {spec.format!r}"
            out = parsed.dt.strftime("%Y-%m-%d").astype(object).where(parsed.notna(), None)
        elif dtype == "bool":
            out, bad = _booleans(s)
            rule = "cannot parse as true/false (true, false, 1, 0, yes, no, y, n)"
            if not self.nullable.get(target, True) and not present.all():
                self.problem(target, "required value is empty (not_nullable)", ~present)
        else:
            return _as_str(s)
        if bad.any():
            self.problem(target, rule, bad)
        return out

    def timestamps(self, s: pd.Series, spec: ColumnSpec) -> pd.Series:
        if pd.api.types.is_datetime64_any_dtype(s):
            t = pd.Series(s)
        else:
            t = pd.to_datetime(
                _as_str(s), format=spec.format, dayfirst=spec.dayfirst, errors="coerce"
            )
        if t.dt.tz is None:
            t = t.dt.tz_localize(spec.timezone, ambiguous="NaT", nonexistent="NaT")
        return t.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


_TRUE = {"true", "1", "yes", "y", "t", "1.0"}
_FALSE = {"false", "0", "no", "n", "f", "0.0"}


def _booleans(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(bool), np.zeros(len(s), dtype=bool)
    text = _as_str(s).map(lambda v: None if v is None else v.strip().lower())
    known = text.isin(_TRUE | _FALSE).to_numpy()
    return text.isin(_TRUE).astype(bool), s.notna().to_numpy() & ~known


def _split_name(full: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = _as_str(full).map(lambda v: None if v is None else v.strip().rsplit(" ", 1))
    first = parts.map(lambda p: None if not p or len(p) < 2 else p[0])
    last = parts.map(lambda p: None if not p else p[-1])
    return first, last


def map_file(
    table: str, path: Path, raw: pd.DataFrame, spec: FileSpec
) -> tuple[pd.DataFrame, list[Problem]]:
    """One file's rows as contract columns (plus provenance), and the problems found."""
    m = _Mapper(table, path, raw)
    out = pd.DataFrame(index=raw.index)
    if spec.record is not None:
        native = m.source(spec.record.column, "record_id")
        if native is not None:
            ids = _as_str(native)
            out["record_id"] = (spec.record.source + ":" + ids.fillna("")).where(ids.notna(), None)
        if table == "identity_records":
            out["source"] = spec.record.source
    if spec.full_name is not None and table == "identity_records":
        full = m.source(spec.full_name, "first_name")
        if full is not None:
            out["first_name"], out["last_name"] = _split_name(full)
    for target, cspec in spec.columns.items():
        col = m.column(target, cspec)
        if col is not None:
            out[target] = col
    out[FILE] = str(path)
    out[ROW] = np.arange(1, len(raw) + 1)
    for c in spec.drop_empty:
        if c in out:
            out = out.loc[out[c].notna()]
    for c, values in spec.exclude.items():
        if c in out:
            out = out.loc[~out[c].isin(values)]
    if spec.one_row_per_record and "record_id" in out:
        cols = [c for c in out.columns if c not in (FILE, ROW)]
        out = out.sort_values(cols, kind="stable").drop_duplicates("record_id", keep="first")
    return out, m.problems


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
            tables[table] = pd.concat(parts, ignore_index=True)
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
