"""The source contract: one schema per input table a team (or the generator) provides.

Each table is a pandera ``DataFrameModel``: its columns, their types, whether they are
required, and what they mean (``docs/bring-your-own-data.md`` prints the same). Only
``identity_records`` is required; any other table may be absent, and the features that
need it are then missing or null, never invented.

Every table about a customer (events and consent) names it per row, in one of two
ways: by ``record_id``, the identity record the row was booked against
(``"{source}:{native id}"``, as in :mod:`nextbest.customers.sources.identity_records`), or
by an identifier (``id_type``, ``id_value``: a customer number, a phone, an e-mail...), as consent
systems do. Identity resolution maps records and identifiers to customers
(:mod:`nextbest.customers.row_customers`). Identifier values are kept as the source holds them:
normalising them is :mod:`nextbest.customers.normalise`'s job.

Amounts have one sign convention, :data:`AMOUNT_SIGN`, stated here and used by the
guide and the features.

:func:`validate_tables` checks every table (its columns with pandera, then the rules
that span columns of a row, :func:`row_problems`) and raises one :class:`ContractError`
listing every problem (file, column, rule and a few row numbers) before anything is
written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

from nextbest.core.action_ids import normalise_action_id
from nextbest.core.errors import InputError
from nextbest.core.vocabulary import ID_TYPES, NO_ACTION

Timestamp = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]
#: The one sign convention of transaction amounts (the contract, the guide and the value
#: tier follow it; a sources file's ``sign:`` turns an export's own convention into it).
AMOUNT_SIGN = (
    "Signed amount: positive for spend (a purchase, a card debit), "
    "negative for money back (a refund, a card credit)."
)
_SOURCE_NAME = r"^[a-z][a-z0-9_]*$"


def _f(description: str, **kw: object) -> object:
    return pa.Field(description=description, **kw)  # type: ignore[arg-type]


class _Table(pa.DataFrameModel):
    class Config:
        strict = False  # provenance columns ride along while validating
        coerce = False  # the loader parses; the contract checks what it produced


class _Customer(_Table):
    """A table whose rows are about a customer, named by a record or by an identifier."""

    record_id: Series[str] | None = _f(
        "Identity record the row names its customer by, `{source}:{native id}`; "
        "or give `id_type` and `id_value`.",
        nullable=True,
    )
    id_type: Series[str] | None = _f(
        "Identifier type the row names its customer by instead of a record.",
        nullable=True,
        isin=list(ID_TYPES),
    )
    id_value: Series[str] | None = _f(
        "That identifier's value, as the source holds it.", nullable=True
    )


class IdentityRecords(_Table):
    """One record per customer record in each source system (CRM account, lead, card...)."""

    record_id: Series[str] = _f("`{source}:{native id}`, unique over all systems.", unique=True)
    source: Series[str] = _f("System the record comes from, e.g. `crm`.", str_matches=_SOURCE_NAME)
    email: Series[str] | None = _f("E-mail address as the system holds it.", nullable=True)
    phone: Series[str] | None = _f("Phone number as the system holds it.", nullable=True)
    crm_id: Series[str] | None = _f(
        "Customer number. A person may hold several (a re-opened account, a name change, "
        "a migration): two numbers join one customer only on the evidence of "
        "docs/identity.md (names or name change, date of birth, phone, e-mail, address).",
        nullable=True,
    )
    loyalty_id: Series[str] | None = _f("Loyalty card number.", nullable=True)
    app_account_id: Series[str] | None = _f("App account id.", nullable=True)
    device_id: Series[str] | None = _f("Web cookie / device id.", nullable=True)
    first_name: Series[str] | None = _f("Given name(s).", nullable=True)
    last_name: Series[str] | None = _f("Family name.", nullable=True)
    date_of_birth: Series[str] | None = _f("Date of birth, ISO `YYYY-MM-DD`.", nullable=True)
    street: Series[str] | None = _f("Street and number.", nullable=True)
    city: Series[str] | None = _f("City.", nullable=True)
    postcode: Series[str] | None = _f("Postcode.", nullable=True)
    created_at: Series[Timestamp] | None = _f(
        "When the record was created (tenure counts from the first).", nullable=True
    )


class Orders(_Customer):
    """Purchases, transactions or contract sales, one row per line or basket."""

    ts: Series[Timestamp] = _f("When it was bought (UTC).")
    category: Series[str] = _f("Product category (the catalog's categories).")
    amount: Series[float] = _f(AMOUNT_SIGN)
    product_id: Series[str] | None = _f("Product bought, when known.", nullable=True)


class BehaviourEvents(_Customer):
    """Web and app behaviour: page views, add to cart, app opens, product checks."""

    ts: Series[Timestamp] = _f("When it happened (UTC).")
    event_type: Series[str] = _f("What happened, e.g. `page_view`, `loan_check`.")
    category: Series[str] | None = _f("Product category looked at, if any.", nullable=True)
    config_id: Series[str] | None = _f("Product configuration looked at, if any.", nullable=True)


class ServiceCases(_Customer):
    """Service cases; a case pauses promotions while it is open."""

    opened_at: Series[Timestamp] = _f("When the case was opened (UTC).")
    closed_at: Series[Timestamp] | None = _f("When it was closed; empty while open.", nullable=True)
    complaint: Series[bool] | None = _f("True if the case is a complaint.")


class Complaints(_Customer):
    """Complaints booked apart from service cases."""

    ts: Series[Timestamp] = _f("When the complaint was made (UTC).")


class Holdings(_Customer):
    """Products a customer holds (never offered again), with their balances if known."""

    product_id: Series[str] = _f("Product held (the catalog's product ids).")
    since: Series[Timestamp] | None = _f("Since when it is held.", nullable=True)
    balance: Series[float] | None = _f(
        "Balance of the holding at `balance_at` (savings held, mortgage outstanding...).",
        nullable=True,
    )
    balance_at: Series[Timestamp] | None = _f(
        "When the balance was read; it counts from then on (required with `balance`).",
        nullable=True,
    )


class ConsentEvents(_Customer):
    """Consent given or withdrawn, per purpose and channel; no record means no consent."""

    purpose: Series[str] = _f("Purpose, e.g. `marketing`.")
    channel: Series[str] = _f("Channel, e.g. `email`.")
    granted: Series[bool] = _f("True: given; False: withdrawn.")
    ts: Series[Timestamp] = _f("When it was given or withdrawn (UTC).")
    source: Series[str] | None = _f("Where it was captured (web form, branch...).", nullable=True)


class ContactHistory(_Customer):
    """Contacts made, catalog actions or not (caps count them all, cooldowns the actions)."""

    ts: Series[Timestamp] = _f("When the contact was made (UTC).")
    channel: Series[str] = _f("Channel it went out on.")
    action_id: Series[str] | None = _f(
        "Catalog action shown; empty for a contact that is no catalog action (a newsletter).",
        nullable=True,
    )
    purpose: Series[str] | None = _f(
        "Purpose of the contact (the catalog's purposes); required without `action_id`.",
        nullable=True,
    )


class CampaignExposures(_Customer):
    """Randomised campaign exposures and their outcomes: what training learns from."""

    exposure_id: Series[str] = _f("Unique id of the exposure.", unique=True)
    exposed_at: Series[Timestamp] = _f("When the arm was assigned (UTC).")
    action_id: Series[str] = _f("Assigned arm: a catalog action, or `no_action` for control.")
    assignment_probability: Series[float] = _f(
        "Design probability of the assigned arm in its campaign.", gt=0.0, le=1.0
    )
    responded: Series[bool] = _f("True if the customer responded within the window.")
    revenue: Series[float] = _f("Value of the response (0 without one).", ge=0.0)
    campaign_id: Series[str] | None = _f("Campaign the exposure belongs to.", nullable=True)


class ProductStock(_Table):
    """Units in stock per product (an action that needs stock waits for it)."""

    product_id: Series[str] = _f("Product id.", unique=True)
    stock: Series[np.int64] = _f("Units in stock.", ge=0)


#: Every contract table by name, in the order they are validated and documented.
TABLES: dict[str, type[_Table]] = {
    "identity_records": IdentityRecords,
    "orders": Orders,
    "behaviour_events": BehaviourEvents,
    "service_cases": ServiceCases,
    "complaints": Complaints,
    "holdings": Holdings,
    "consent_events": ConsentEvents,
    "contact_history": ContactHistory,
    "campaign_exposures": CampaignExposures,
    "product_stock": ProductStock,
}
REQUIRED_TABLES: tuple[str, ...] = ("identity_records",)
#: The tables whose rows name a customer (by ``record_id`` or ``id_type``/``id_value``).
CUSTOMER_TABLES: tuple[str, ...] = tuple(n for n, t in TABLES.items() if issubclass(t, _Customer))
#: Provenance columns the loader adds while validating: source file and its data row (1-based).
FILE, ROW = "__file", "__row"
#: Contract columns that name catalog actions, read as the business writes them
#: (:func:`with_normalised_action_ids`).
ACTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "contact_history": ("action_id",),
    "campaign_exposures": ("action_id",),
}


def with_normalised_action_ids(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the action ids of its :data:`ACTION_COLUMNS` normalised as the
    catalog's are (:func:`nextbest.core.action_ids.normalise_action_id`: ``MORTGAGE_REMORT`` is
    ``mortgage_remort``, ``CTRL`` mapped to ``No_Action`` is the control arm); other
    values (empty, not text) are left for validation to report."""
    cols = [c for c in ACTION_COLUMNS.get(table, ()) if c in frame]
    if not cols:
        return frame
    out = frame.copy()
    for c in cols:
        values = out[c]
        # Few distinct ids over many rows: normalise each distinct one once.
        distinct = {v for v in pd.unique(values.to_numpy(dtype=object)) if isinstance(v, str)}
        lookup = {v: normalise_action_id(v) for v in distinct}
        out[c] = values.map(lambda v, lookup=lookup: lookup.get(v, v) if isinstance(v, str) else v)
    return out


@dataclass(frozen=True)
class Terms:
    """The values the catalog allows; a column naming something else is an error."""

    channels: tuple[str, ...]
    purposes: tuple[str, ...]
    action_ids: tuple[str, ...]  # catalog actions and the response models they name
    products: tuple[str, ...] = ()  # catalog products (empty: not checked)


def columns(table: str) -> dict[str, tuple[str, bool, str]]:
    """Contract columns of ``table``: name -> (type, required, meaning)."""
    schema = TABLES[table].to_schema()
    return {
        name: (str(col.dtype), bool(col.required), str(col.description or ""))
        for name, col in schema.columns.items()
    }


def _domain_checks(table: str, terms: Terms | None) -> dict[str, list[str]]:
    if terms is None:
        return {}
    allowed = {
        "consent_events": {"purpose": terms.purposes, "channel": terms.channels},
        "contact_history": {
            "channel": terms.channels,
            "action_id": terms.action_ids,
            "purpose": terms.purposes,
        },
        "campaign_exposures": {"action_id": (*terms.action_ids, NO_ACTION)},
    }
    if terms.products:
        allowed["holdings"] = {"product_id": terms.products}
        allowed["product_stock"] = {"product_id": terms.products}
    return {c: sorted(set(v)) for c, v in allowed.get(table, {}).items()}


def schema(table: str, terms: Terms | None = None) -> pa.DataFrameSchema:
    """``table``'s pandera schema, with the catalog's values as allowed sets when given."""
    s = TABLES[table].to_schema()
    for col, values in _domain_checks(table, terms).items():
        checks = [*s.columns[col].checks, pa.Check.isin(values)]
        s = s.update_column(col, checks=checks)
    return s


@dataclass
class Problem:
    """One broken rule: where, which column, which rule, which rows (1-based, per file)."""

    table: str
    file: str
    column: str
    rule: str
    rows: list[int] = field(default_factory=list)
    n_rows: int = 0

    def __str__(self) -> str:
        where = f"{self.file}: table {self.table}, column {self.column!r}: {self.rule}"
        if not self.rows:
            return where
        shown = ", ".join(str(r) for r in self.rows)
        more = f" and {self.n_rows - len(self.rows)} more" if self.n_rows > len(self.rows) else ""
        return f"{where} (rows {shown}{more})"


class ContractError(InputError):
    """Input tables break the source contract; ``problems`` lists every broken rule."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [str(p) for p in problems]
        super().__init__(
            f"{len(problems)} problem(s) with the source data:\n  " + "\n  ".join(lines)
        )


_ROWS_SHOWN = 5


def _rule(check: str, failure: object) -> str:
    if check == "column_in_dataframe":
        return "required column is missing"
    if check == "not_nullable":
        return "required value is empty (not_nullable)"
    if check in ("field_uniqueness", "unique"):
        return "values must be unique (unique)"
    if check.startswith("dtype("):
        return f"wrong type: expected {check[6:-1]}, found {failure} ({check})"
    if check.startswith("isin("):
        found = "" if failure is None else f" (found {failure})"
        return f"value not allowed: must be one of {check[5:-1]}{found}"
    return f"fails {check}"


def _found(group: pd.DataFrame) -> str:
    """The distinct values that broke a check, quoted (a few, then how many more)."""
    values = sorted({str(v) for v in group["failure_case"].dropna()})
    shown = ", ".join(repr(v) for v in values[:_ROWS_SHOWN])
    more = f" and {len(values) - _ROWS_SHOWN} more" if len(values) > _ROWS_SHOWN else ""
    return shown + more


def problems_of(table: str, errors: SchemaErrors, frame: pd.DataFrame) -> list[Problem]:
    """pandera's failure cases as problems naming each file and its rows."""
    cases = errors.failure_cases
    files = sorted(set(frame[FILE])) if FILE in frame and len(frame) else ["(no rows)"]
    out: list[Problem] = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        column = str(group["failure_case"].iloc[0]) if check == "column_in_dataframe" else column
        rows = group["index"].dropna()
        if rows.empty or FILE not in frame:
            first = group["failure_case"].iloc[0]
            out += [Problem(table, f, str(column), _rule(str(check), first)) for f in files]
            continue
        at = frame.loc[rows.astype(int).unique(), [FILE, ROW]]
        found = _found(group) if str(check).startswith("isin(") else None
        for f, part in at.groupby(FILE, sort=True):
            nums = sorted(part[ROW].astype(int).tolist())
            out.append(
                Problem(
                    table,
                    str(f),
                    str(column),
                    _rule(str(check), found),
                    nums[:_ROWS_SHOWN],
                    len(nums),
                )
            )
    return out


def _present(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.zeros(len(frame), dtype=bool)
    return frame[column].notna().to_numpy()


def _at_rows(
    table: str, frame: pd.DataFrame, bad: np.ndarray, column: str, rule: str
) -> list[Problem]:
    """One problem per file for the rows where ``bad`` holds."""
    if not bad.any():
        return []
    if FILE not in frame or ROW not in frame:
        return [Problem(table, "(table)", column, rule, [], int(bad.sum()))]
    out = []
    for f, part in frame.loc[bad, [FILE, ROW]].groupby(FILE, sort=True):
        nums = sorted(part[ROW].astype(int).tolist())
        out.append(Problem(table, str(f), column, rule, nums[:_ROWS_SHOWN], len(nums)))
    return out


def row_problems(table: str, frame: pd.DataFrame) -> list[Problem]:
    """The rules that span several columns of a row (pandera checks one column at a time).

    A row about a customer names it exactly once: by ``record_id`` or by ``id_type`` and
    ``id_value`` together. A contact that is no catalog action says its purpose. A
    balance says when it was read.
    """
    out: list[Problem] = []
    if table in CUSTOMER_TABLES:
        record = _present(frame, "record_id")
        id_type, id_value = _present(frame, "id_type"), _present(frame, "id_value")
        out += _at_rows(
            table,
            frame,
            ~record & ~id_type & ~id_value,
            "record_id",
            "names no customer: give record_id, or id_type and id_value "
            "(or drop_empty: rows that name no one)",
        )
        out += _at_rows(
            table,
            frame,
            record & (id_type | id_value),
            "record_id",
            "names its customer twice: record_id and id_type/id_value",
        )
        out += _at_rows(
            table, frame, ~record & id_value & ~id_type, "id_type", "id_value without id_type"
        )
        out += _at_rows(
            table, frame, ~record & id_type & ~id_value, "id_value", "id_type without id_value"
        )
    if table == "contact_history":
        bare = ~_present(frame, "action_id") & ~_present(frame, "purpose")
        out += _at_rows(
            table,
            frame,
            bare,
            "purpose",
            "a contact that is no catalog action (empty action_id) needs its purpose",
        )
    if table == "holdings":
        undated = _present(frame, "balance") & ~_present(frame, "balance_at")
        out += _at_rows(
            table, frame, undated, "balance_at", "a balance needs balance_at (when it was read)"
        )
    return out


def validate_table(table: str, frame: pd.DataFrame, terms: Terms | None = None) -> list[Problem]:
    """Every broken rule of one table (empty: the table is valid)."""
    try:
        schema(table, terms).validate(frame, lazy=True)
    except SchemaErrors as errors:
        return problems_of(table, errors, frame) + row_problems(table, frame)
    return row_problems(table, frame)


def validate_tables(tables: dict[str, pd.DataFrame], terms: Terms | None = None) -> None:
    """Check every table; raise one :class:`ContractError` listing all problems."""
    problems = [
        Problem(t, "(sources file)", "-", "required table is missing")
        for t in REQUIRED_TABLES
        if t not in tables
    ]
    unknown = sorted(set(tables) - set(TABLES))
    problems += [Problem(t, "(sources file)", "-", "not a contract table") for t in unknown]
    for name in TABLES:
        if name in tables:
            problems += validate_table(name, tables[name], terms)
    if problems:
        raise ContractError(problems)


def complete(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """A valid table in contract column order, absent optional columns added as empty."""
    out = pd.DataFrame(index=frame.index)
    for name, col in TABLES[table].to_schema().columns.items():
        if name in frame:
            out[name] = frame[name]
        elif table == "service_cases" and name == "complaint":
            out[name] = False
        elif "datetime" in str(col.dtype):
            out[name] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        elif str(col.dtype) == "float64":
            out[name] = pd.Series(np.nan, index=frame.index, dtype="float64")
        else:
            out[name] = pd.Series(None, index=frame.index, dtype=object)
    return out.reset_index(drop=True)
