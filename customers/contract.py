"""The source contract: one schema per input table a team (or the generator) provides.

Each table is a pandera ``DataFrameModel``: its columns, their types, whether they are
required, and what they mean (``docs/bring-your-own-data.md`` prints the same). Only
``identity_records`` is required; any other table may be absent, and the features that
need it are then missing or null, never invented.

Events name their customer by ``record_id``, the identity record they were booked
against (``"{source}:{native id}"``, as in :mod:`customers.sources`); identity
resolution maps records to customers. Consent names its customer by an identifier
(``id_type``, ``id_value``), as consent systems do. Identifier values are kept as the
source holds them: normalising them is :mod:`customers.normalise`'s job.

:func:`validate_tables` checks every table and raises one :class:`ContractError`
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

from core.errors import InputError
from core.vocabulary import ID_TYPES, NO_ACTION

Timestamp = Annotated[pd.DatetimeTZDtype, "ns", "UTC"]
#: The implicit control arm of every experiment.
CONTROL_ARM = NO_ACTION
_SOURCE_NAME = r"^[a-z][a-z0-9_]*$"


def _f(description: str, **kw: object) -> object:
    return pa.Field(description=description, **kw)  # type: ignore[arg-type]


class _Table(pa.DataFrameModel):
    class Config:
        strict = False  # provenance columns ride along while validating
        coerce = False  # the loader parses; the contract checks what it produced


class _Event(_Table):
    record_id: Series[str] = _f(
        "Identity record the event was booked against, `{source}:{native id}`."
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


class Orders(_Event):
    """Purchases, transactions or contract sales, one row per line or basket."""

    ts: Series[Timestamp] = _f("When it was bought (UTC).")
    category: Series[str] = _f("Product category (the catalog's categories).")
    amount: Series[float] = _f("Signed amount: negative for refunds and debits.")
    product_id: Series[str] | None = _f("Product bought, when known.", nullable=True)


class BehaviourEvents(_Event):
    """Web and app behaviour: page views, add to cart, app opens, product checks."""

    ts: Series[Timestamp] = _f("When it happened (UTC).")
    event_type: Series[str] = _f("What happened, e.g. `page_view`, `loan_check`.")
    category: Series[str] | None = _f("Product category looked at, if any.", nullable=True)
    config_id: Series[str] | None = _f("Product configuration looked at, if any.", nullable=True)


class ServiceCases(_Event):
    """Service cases; a case pauses promotions while it is open."""

    opened_at: Series[Timestamp] = _f("When the case was opened (UTC).")
    closed_at: Series[Timestamp] | None = _f("When it was closed; empty while open.", nullable=True)
    complaint: Series[bool] | None = _f("True if the case is a complaint.")


class Complaints(_Event):
    """Complaints booked apart from service cases."""

    ts: Series[Timestamp] = _f("When the complaint was made (UTC).")


class Holdings(_Event):
    """Products a customer holds (never offered again)."""

    product_id: Series[str] = _f("Product held (the catalog's product ids).")
    since: Series[Timestamp] | None = _f("Since when it is held.", nullable=True)


class ConsentEvents(_Table):
    """Consent given or withdrawn, per purpose and channel; no record means no consent."""

    id_type: Series[str] = _f("Identifier the consent was recorded under.", isin=list(ID_TYPES))
    id_value: Series[str] = _f("That identifier's value, as the consent system holds it.")
    purpose: Series[str] = _f("Purpose, e.g. `marketing`.")
    channel: Series[str] = _f("Channel, e.g. `email`.")
    granted: Series[bool] = _f("True: given; False: withdrawn.")
    ts: Series[Timestamp] = _f("When it was given or withdrawn (UTC).")
    source: Series[str] | None = _f("Where it was captured (web form, branch...).", nullable=True)


class ContactHistory(_Event):
    """Contacts made (caps and cooldowns count them)."""

    ts: Series[Timestamp] = _f("When the contact was made (UTC).")
    channel: Series[str] = _f("Channel it went out on.")
    action_id: Series[str] = _f("Catalog action shown.")


class CampaignExposures(_Event):
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
#: Provenance columns the loader adds while validating: source file and its data row (1-based).
FILE, ROW = "__file", "__row"


@dataclass(frozen=True)
class Terms:
    """The values the catalog allows; a column naming something else is an error."""

    channels: tuple[str, ...]
    purposes: tuple[str, ...]
    arms: tuple[str, ...]  # catalog actions (and their response-model arms)
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
        "contact_history": {"channel": terms.channels, "action_id": terms.arms},
        "campaign_exposures": {"action_id": (*terms.arms, CONTROL_ARM)},
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
        return f"value not allowed: must be one of {check[5:-1]}"
    return f"fails {check}"


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
        for f, part in at.groupby(FILE, sort=True):
            nums = sorted(part[ROW].astype(int).tolist())
            out.append(
                Problem(
                    table,
                    str(f),
                    str(column),
                    _rule(str(check), None),
                    nums[:_ROWS_SHOWN],
                    len(nums),
                )
            )
    return out


def validate_table(table: str, frame: pd.DataFrame, terms: Terms | None = None) -> list[Problem]:
    """Every broken rule of one table (empty: the table is valid)."""
    try:
        schema(table, terms).validate(frame, lazy=True)
    except SchemaErrors as errors:
        return problems_of(table, errors, frame)
    return []


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
        else:
            out[name] = pd.Series(None, index=frame.index, dtype=object)
    return out.reset_index(drop=True)
