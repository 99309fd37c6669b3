"""The sources file's schema: pydantic models, one per kind of entry (``sources.yaml``).

:class:`SourcesFile` is the whole file: per contract table, the files that hold it
(:class:`FileSpec`), who each row is about (:class:`Record`, or :class:`Customer` rules,
per row with :class:`When`), and where each contract column comes from
(:class:`ColumnSpec`, with :class:`Sign`). The models are the one statement of the
format: :func:`read_sources_file` validates with them, :mod:`nextbest.customers.sources.mapping`
maps files by them, and the configuration reference is written from their field
descriptions and examples.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nextbest.core.errors import InputError
from nextbest.core.vocabulary import ID_TYPES, NO_ACTION
from nextbest.customers.contract import CUSTOMER_TABLES, TABLES

#: What joins the values of a composite key (``[Campaign, CustNo]`` -> ``SPRING26:C00001``).
KEY_SEPARATOR = ":"
#: A source system's name (the ``{source}`` of ``{source}:{native id}`` record ids).
SOURCE_NAME = r"^[a-z][a-z0-9_]*$"
#: One source column, or several whose values joined make one key (a composite key).
SourceColumns = str | Annotated[list[str], Field(min_length=1)]
IdType = Literal[ID_TYPES]  # type: ignore[valid-type]


class Sign(BaseModel):
    """How an amount gets the contract's sign (``nextbest.customers.contract.AMOUNT_SIGN``:
    positive for spend, negative for money back).

    Either ``column`` and ``negative`` (an unsigned amount and its debit/credit flag: the
    amount is negative where ``column`` holds one of ``negative``, positive elsewhere), or
    ``flip: true`` (an amount already signed the other way round, e.g. an account
    statement where debits are negative: every amount is negated).
    """

    model_config = ConfigDict(extra="forbid")
    column: str | None = Field(
        None, description="Source column holding the debit/credit flag.", examples=["DC"]
    )
    negative: list[str] | None = Field(
        None,
        min_length=1,
        description="Values of `column` that make the amount negative (credits, refunds).",
        examples=[["C"]],
    )
    flip: bool = Field(
        False, description="Negate every amount (an export signed the other way round)."
    )

    @model_validator(mode="after")
    def _one_rule(self) -> Sign:
        flagged = self.column is not None or self.negative is not None
        if self.flip and flagged:
            raise ValueError("give either 'column' and 'negative', or 'flip: true', not both")
        if not self.flip and (self.column is None or self.negative is None):
            raise ValueError("give 'column' and 'negative' (a debit/credit flag), or 'flip: true'")
        return self


class ColumnSpec(BaseModel):
    """Where one contract column comes from: a source column (or several, joined: a
    composite key) or a constant, then its parse (format), value map and sign."""

    model_config = ConfigDict(extra="forbid")
    column: SourceColumns | None = Field(
        None,
        description="Source column; a list of columns makes one value of theirs joined "
        "with `separator` (a composite key; empty if any part is empty).",
        examples=["Amount", ["Campaign", "CustNo"]],
    )
    separator: str = Field(
        KEY_SEPARATOR, min_length=1, description="What joins the parts of a composite key."
    )
    value: str | float | bool | None = Field(
        None, description="A constant for every row (give this or column).", examples=["cards"]
    )
    format: str | None = Field(
        None, description="strftime format of a date or timestamp column.", examples=["%d/%m/%Y"]
    )
    dayfirst: bool = Field(False, description="Without a format: 03/04/2026 is 3 April.")
    timezone: str = Field(
        "UTC", description="Time zone of naive timestamps.", examples=["Europe/London"]
    )
    map: dict[str, str | bool | float | None] | None = Field(
        None,
        description="Value map; values not in it pass unchanged, a value mapped to null is empty.",
        examples=[{"CTRL": NO_ACTION, "NEWS": None}],
    )
    sign: Sign | None = Field(None, description="How an amount gets the contract's sign.")

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnSpec:
        if (self.column is None) == (self.value is None):
            raise ValueError("give exactly one of 'column' (a source column) or 'value'")
        return self


class Record(BaseModel):
    """The identity record a row belongs to: ``{source}:{value of column}``."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(
        pattern=SOURCE_NAME,
        description="The system the records come from (a lower-case name).",
        examples=["core"],
    )
    column: SourceColumns = Field(
        description="Native id column (a list: a composite native id, joined with ':')."
    )


class When(BaseModel):
    """A condition on a row: its ``column`` holds one of ``in``, or its value matches the
    regular expression ``matches`` (anywhere in it; anchor with ``^`` and ``$``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    column: str | None = Field(
        None,
        description="Source column the condition reads (default: the rule's own key).",
        examples=["KeyType"],
    )
    in_: list[str] | None = Field(
        None,
        alias="in",
        min_length=1,
        description="The row matches when the column holds one of these values.",
        examples=[["CUST"]],
    )
    matches: str | None = Field(
        None,
        description="The row matches when the value matches this regular expression.",
        examples=["^CARD-"],
    )

    @model_validator(mode="after")
    def _one_test(self) -> When:
        if (self.in_ is None) == (self.matches is None):
            raise ValueError("give exactly one of 'in' (values) or 'matches' (a pattern)")
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ValueError(f"'matches' is not a regular expression: {exc}") from None
        return self


class Customer(BaseModel):
    """Who a row is about: the value of ``column`` as the native id of a record of system
    ``record`` (record id ``{record}:{value}``), or as an identifier of type ``id_type`` (a
    customer number, a phone, an e-mail...), resolved to its customer like consent is.
    With ``when``, the rule holds only for the rows that match it."""

    model_config = ConfigDict(extra="forbid")
    column: SourceColumns = Field(
        description="Source column holding the key (a list: a composite key, joined with ':').",
        examples=["CustNo"],
    )
    record: str | None = Field(
        None,
        pattern=SOURCE_NAME,
        description="The key is the native id of a record of this system.",
        examples=["core"],
    )
    id_type: IdType | None = Field(
        None,
        description="The key is an identifier of this type.",
        examples=["crm_id", "phone"],
    )
    when: When | None = Field(
        None,
        description="Only the rows that match this condition.",
        examples=[{"column": "KeyType", "in": ["CUST"]}],
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Customer:
        if (self.record is None) == (self.id_type is None):
            raise ValueError("give exactly one of 'record' (a system) or 'id_type'")
        return self


class FileSpec(BaseModel):
    """One or several files (a glob) of one contract table, and how to map them."""

    model_config = ConfigDict(extra="forbid")
    file: str = Field(
        description="Path or glob, relative to the sources file.",
        examples=["cards/transactions_*.csv"],
    )
    format: Literal["csv", "parquet"] | None = Field(
        None, description="File format; none: by suffix (.csv and .txt are csv)."
    )
    delimiter: str = Field(",", description="Field delimiter (csv only).", examples=[";"])
    record: Record | None = Field(
        None,
        description="identity_records: the record each row is. Other tables: the record "
        "each row names its customer by (short for `customer: {column, record: source}`).",
    )
    customer: Customer | list[Customer] | None = Field(
        None,
        description="Who each row is about, by a record or an identifier; a list is a "
        "per-row rule: the first rule whose `when` matches the row holds (the last may "
        "have no `when`: the rest of the rows).",
    )
    columns: dict[str, str | list[str] | ColumnSpec] = Field(
        default_factory=dict,
        description="Contract column -> a source column, a list of source columns (a "
        "composite key) or a column spec.",
    )
    full_name: str | None = Field(
        None,
        description='identity_records: one column "First [Middle] Last" -> first_name, last_name.',
        examples=["FullName"],
    )
    drop_empty: list[str] = Field(
        default_factory=list, description="Leave out rows where these contract columns are empty."
    )
    exclude: dict[str, list[str]] = Field(
        default_factory=dict, description="Leave out rows with these values (contract columns)."
    )
    one_row_per_record: bool = Field(
        False, description="Keep each record's first row (sorted by its values)."
    )

    def customer_rules(self) -> list[Customer]:
        """The rules naming each row's customer (``record:`` as one rule); empty: none."""
        if self.customer is not None:
            return self.customer if isinstance(self.customer, list) else [self.customer]
        if self.record is not None:
            return [Customer(column=self.record.column, record=self.record.source)]
        return []


_WHO = ("record_id", "id_type", "id_value")


def _check_who(name: str, spec: FileSpec) -> None:
    """How one file of ``name`` names its rows' customer (see :class:`FileSpec`)."""
    where = f"{name}: {spec.file}"
    if name == "identity_records":
        if spec.record is None:
            raise ValueError(f"{where}: 'record' (source, column) is required")
        if spec.customer is not None:
            raise ValueError(f"{where}: identity records have 'record', not 'customer'")
        return
    if name not in CUSTOMER_TABLES:
        if spec.record is not None or spec.customer is not None:
            raise ValueError(f"{where}: {name} names no customer ('record'/'customer')")
        return
    if spec.record is not None and spec.customer is not None:
        raise ValueError(f"{where}: give 'record' or 'customer', not both")
    mapped = sorted(set(spec.columns) & set(_WHO))
    if spec.customer_rules() and mapped:
        raise ValueError(f"{where}: 'record'/'customer' already name the customer; remove {mapped}")
    if not spec.customer_rules() and not ({"record_id", "id_value"} & set(mapped)):
        raise ValueError(
            f"{where}: say who each row is about: 'record' (source, column), 'customer' "
            "(a record or an identifier type), or columns record_id / id_type, id_value"
        )
    rules = spec.customer_rules()
    for i, rule in enumerate(rules[:-1]):
        if rule.when is None:
            raise ValueError(
                f"{where}: customer[{i}] has no 'when', so the rules after it are never used"
            )


class SourcesFile(BaseModel):
    """The whole sources file: contract table -> its files."""

    model_config = ConfigDict(extra="forbid")
    version: Literal[1] = Field(1, description="Version of the sources file format.")
    tables: dict[str, list[FileSpec]] = Field(
        description="Contract table -> the files that hold it (several entries, several "
        "files); only identity_records is required."
    )

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
                _check_who(name, spec)
        return self


def _error_lines(exc: ValidationError) -> list[str]:
    """One line per wrong entry, its place written as the file's keys: pydantic's own
    union and validator tags are left out, and so is "not a list" when an entry that may
    be one rule or a list of them is a wrong rule."""
    found = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"] if not (isinstance(p, str) and "[" in p))
        found.append((loc or "(top)", e["type"], e["msg"]))
    out = []
    for loc, kind, msg in found:
        deeper = any(other != loc and other.startswith(loc + ".") for other, _, _ in found)
        if kind in ("list_type", "dict_type", "model_type") and deeper:
            continue
        out.append(f"{loc}: {msg}")
    return list(dict.fromkeys(out))


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
        lines = _error_lines(exc)
        raise InputError(f"{path}: invalid sources file:\n  " + "\n  ".join(lines)) from exc


# --- reading and mapping ------------------------------------------------------------------
