"""One export file mapped onto its contract table, as its sources-file entry says.

:func:`map_file` renames and parses each contract column (formats, value maps, signs,
composite keys), names each row's customer (a record or an identifier, by one rule or a
per-row rule) and adds the provenance columns (file and data row) the contract's
problems name. It collects problems instead of raising, so one run reports every file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.customers.contract import FILE, ROW, TABLES, Problem
from nextbest.customers.sources.schema import (
    KEY_SEPARATOR,
    ColumnSpec,
    Customer,
    FileSpec,
    When,
)

_ROWS_SHOWN = 5


def as_str(s: pd.Series) -> pd.Series:
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


def _joined(parts: list[pd.Series], separator: str) -> pd.Series:
    """The parts' text joined with ``separator``; None where any part is empty."""
    texts = [as_str(p) for p in parts]
    empty = np.zeros(len(texts[0]), dtype=bool)
    for t in texts:
        empty |= t.isna().to_numpy()
    out = texts[0].fillna("")
    for t in texts[1:]:
        out = out + separator + t.fillna("")
    return out.astype(object).where(~empty, None)


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
        self.problems.append(
            Problem(self.table, str(self.path), column, rule, rows[:_ROWS_SHOWN], len(rows))
        )

    def source(self, name: str, target: str) -> pd.Series | None:
        if name not in self.raw:
            self.problem(target, f"source column {name!r} is not in the file")
            return None
        return self.raw[name]

    def key(self, columns: str | list[str], target: str, separator: str) -> pd.Series | None:
        """One source column, or several joined (a composite key), as text."""
        names = [columns] if isinstance(columns, str) else list(columns)
        parts = [self.source(n, target) for n in names]
        if any(p is None for p in parts):
            return None
        if len(parts) == 1:
            return parts[0]
        return _joined([p for p in parts if p is not None], separator)

    def column(self, target: str, spec: str | list[str] | ColumnSpec) -> pd.Series | None:
        if not isinstance(spec, ColumnSpec):
            spec = ColumnSpec(column=spec)
        n = len(self.raw)
        if spec.column is None:
            s = pd.Series([spec.value] * n, index=self.raw.index, dtype=object)
        else:
            got = self.key(spec.column, target, spec.separator)
            if got is None:
                return None
            s = got
        if spec.map is not None:
            text = as_str(s)
            mapped = text.map(spec.map)  # values not in the map pass unchanged
            s = mapped.astype(object).where(text.isin(list(spec.map)), text)
            s = s.where(s.notna(), None)  # a value mapped to null is empty
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
                out = self.signed(target, out, spec)
        elif dtype == "int64":
            num = pd.to_numeric(s, errors="coerce")
            bad = present & (num.isna() | (num % 1 != 0)).to_numpy()
            rule = "cannot parse as a whole number"
            out = num.fillna(0).astype(np.int64) if not bad.any() else num
        elif spec.format is not None:  # a date kept as text, written ISO (date of birth)
            parsed = pd.to_datetime(as_str(s), format=spec.format, errors="coerce")
            bad = present & parsed.isna().to_numpy()
            rule = f"cannot parse as a date with format {spec.format!r}"
            out = parsed.dt.strftime("%Y-%m-%d").astype(object).where(parsed.notna(), None)
        elif dtype == "bool":
            out, bad = _booleans(s)
            rule = "cannot parse as true/false (true, false, 1, 0, yes, no, y, n)"
            if not self.nullable.get(target, True) and not present.all():
                self.problem(target, "required value is empty (not_nullable)", ~present)
        else:
            return as_str(s)
        if bad.any():
            self.problem(target, rule, bad)
        return out

    def signed(self, target: str, amount: pd.Series, spec: ColumnSpec) -> pd.Series:
        """The amount in the contract's sign convention (:class:`Sign`)."""
        sign = spec.sign
        assert sign is not None
        if sign.flip:
            return -amount
        assert sign.column is not None and sign.negative is not None
        flag = self.source(sign.column, target)
        if flag is None:
            return amount
        neg = as_str(flag).isin(sign.negative).to_numpy()
        return amount.abs().where(~neg, -amount.abs())

    def timestamps(self, s: pd.Series, spec: ColumnSpec) -> pd.Series:
        if pd.api.types.is_datetime64_any_dtype(s):
            t = pd.Series(s)
        else:
            t = pd.to_datetime(
                as_str(s), format=spec.format, dayfirst=spec.dayfirst, errors="coerce"
            )
        if t.dt.tz is None:
            t = t.dt.tz_localize(spec.timezone, ambiguous="NaT", nonexistent="NaT")
        return t.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")

    def matches(self, when: When, key: pd.Series) -> np.ndarray | None:
        """Which rows ``when`` holds for (None: its column is not in the file)."""
        if when.column is None:
            values = as_str(key)
        else:
            got = self.source(when.column, "record_id")
            if got is None:
                return None
            values = as_str(got)
        if when.in_ is not None:
            return values.isin(when.in_).to_numpy()
        assert when.matches is not None
        pattern = re.compile(when.matches)
        return values.map(lambda v: v is not None and pattern.search(v) is not None).to_numpy(
            dtype=bool
        )

    def customers(self, rules: list[Customer]) -> dict[str, pd.Series]:
        """``record_id``, ``id_type`` and ``id_value`` of each row by the first rule that
        holds for it, and ``_UNMATCHED``: the rows no rule holds for."""
        index = self.raw.index
        cols = {c: pd.Series(None, index=index, dtype=object) for c in _WHO}
        left = np.ones(len(index), dtype=bool)
        for rule in rules:
            target = "record_id" if rule.record is not None else "id_value"
            key = self.key(rule.column, target, KEY_SEPARATOR)
            if key is None:
                return {}
            text = as_str(key)
            hit = left.copy()
            if rule.when is not None:
                holds = self.matches(rule.when, text)
                if holds is None:
                    return {}
                hit &= holds
            named = hit & text.notna().to_numpy()
            if rule.record is not None:
                cols["record_id"][named] = rule.record + ":" + text[named]
            else:
                cols["id_type"][named] = rule.id_type
                cols["id_value"][named] = text[named]
            left &= ~hit
        return {**cols, _UNMATCHED: pd.Series(left, index=index)}


_WHO = ("record_id", "id_type", "id_value")
_UNMATCHED = "__unmatched"
_TRUE = {"true", "1", "yes", "y", "t", "1.0"}
_FALSE = {"false", "0", "no", "n", "f", "0.0"}


def _booleans(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(s):
        return s.astype(bool), np.zeros(len(s), dtype=bool)
    text = as_str(s).map(lambda v: None if v is None else v.strip().lower())
    known = text.isin(_TRUE | _FALSE).to_numpy()
    return text.isin(_TRUE).astype(bool), s.notna().to_numpy() & ~known


def _split_name(full: pd.Series) -> tuple[pd.Series, pd.Series]:
    parts = as_str(full).map(lambda v: None if v is None else v.strip().rsplit(" ", 1))
    first = parts.map(lambda p: None if not p or len(p) < 2 else p[0])
    last = parts.map(lambda p: None if not p else p[-1])
    return first, last


def _names_no_one(out: pd.DataFrame) -> np.ndarray:
    """Rows that name no customer (neither a record nor an identifier value)."""
    named = np.zeros(len(out), dtype=bool)
    for c in ("record_id", "id_value"):
        if c in out:
            named |= out[c].notna().to_numpy()
    return ~named


def map_file(
    table: str, path: Path, raw: pd.DataFrame, spec: FileSpec
) -> tuple[pd.DataFrame, list[Problem]]:
    """One file's rows as contract columns (plus provenance), and the problems found."""
    m = _Mapper(table, path, raw)
    out = pd.DataFrame(index=raw.index)
    if table == "identity_records" and spec.record is not None:
        native = m.key(spec.record.column, "record_id", KEY_SEPARATOR)
        if native is not None:
            ids = as_str(native)
            out["record_id"] = (spec.record.source + ":" + ids.fillna("")).where(ids.notna(), None)
        out["source"] = spec.record.source
    elif spec.customer_rules():
        for c, values in m.customers(spec.customer_rules()).items():
            out[c] = values
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
        if c in ("record_id", "id_value") and table != "identity_records":
            # a row of a customer table names its customer by a record or an identifier
            out = out.loc[~_names_no_one(out)]
        elif c in out:
            out = out.loc[out[c].notna()]
    for c, values in spec.exclude.items():
        if c in out:
            out = out.loc[~out[c].isin(values)]
    if _UNMATCHED in out:
        # rows left out by drop_empty or exclude need no rule
        unmatched = out.pop(_UNMATCHED).to_numpy(dtype=bool)
        rows = np.zeros(len(raw), dtype=bool)
        rows[out[ROW].to_numpy()[unmatched] - 1] = True
        if rows.any():
            m.problem(
                "record_id", "matches no 'customer' rule (add one, or exclude the rows)", rows
            )
    if spec.one_row_per_record and "record_id" in out:
        cols = [c for c in out.columns if c not in (FILE, ROW)]
        out = out.sort_values(cols, kind="stable").drop_duplicates("record_id", keep="first")
    return out, m.problems
