"""Synthetic multi-source customer data with a known truth.

Persons with latent attributes (age, income, tenure, category interests, digital
affinity, churn risk, complaint propensity, household) are drawn first; every source
system then exports its own, noisy view of them (own record ids, spelling, formats and
missing fields). Randomised campaigns with stated assignment probabilities record
exposures and outcomes whose response probabilities follow a heterogeneous uplift model
driven by the same attributes, so that features built from the observable exports can
learn it. The truth (person of each record, latent attributes, response probabilities)
goes only under ``out_dir/truth/``.

Everything is vectorised with numpy and pyarrow; the output is byte-identical for a
given seed and size (fixed row order, no wall-clock values, one writer setting).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.vocabulary import APP_EVENT_TYPES, WEB_EVENT_TYPES
from core.vocabulary import DEMO_CHANNELS as CHANNELS
from core.vocabulary import DEMO_PURPOSES as PURPOSES
from core.vocabulary import NO_ACTION as CONTROL_ARM

logger = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = ("phones", "accessories", "broadband", "insurance", "loans")
DEFAULT_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Product:
    """A sellable product; ``price`` in GBP, ``margin`` as a share of price."""

    product_id: str
    name: str
    category: str
    price: float
    margin: float


@dataclass(frozen=True)
class Action:
    """A campaign arm (next-best action) and what it sells, if anything."""

    action_id: str
    channel: str
    purpose: str
    kind: str  # upsell | cross_sell | retention | service
    category: str | None
    product_id: str | None


PRODUCTS: tuple[Product, ...] = (
    Product("phone_basic", "Basic smartphone", "phones", 199.0, 0.12),
    Product("phone_premium", "Premium smartphone", "phones", 899.0, 0.18),
    Product("phone_refurb", "Refurbished smartphone", "phones", 299.0, 0.25),
    Product("acc_case", "Protective case", "accessories", 25.0, 0.55),
    Product("acc_earbuds", "Wireless earbuds", "accessories", 129.0, 0.40),
    Product("acc_charger", "Fast charger", "accessories", 35.0, 0.50),
    Product("bb_standard", "Broadband standard (12 months)", "broadband", 360.0, 0.30),
    Product("bb_fibre", "Fibre broadband (12 months)", "broadband", 540.0, 0.35),
    Product("ins_device", "Device insurance (12 months)", "insurance", 96.0, 0.45),
    Product("ins_home", "Home insurance (12 months)", "insurance", 240.0, 0.35),
    Product("loan_personal", "Personal loan", "loans", 1200.0, 0.08),
    Product("loan_device", "Device finance", "loans", 600.0, 0.10),
)

ACTIONS: tuple[Action, ...] = (
    Action("email_phone_upgrade", "email", "marketing", "upsell", "phones", "phone_premium"),
    Action("email_broadband_bundle", "email", "marketing", "cross_sell", "broadband", "bb_fibre"),
    Action(
        "sms_accessory_discount", "sms", "marketing", "cross_sell", "accessories", "acc_earbuds"
    ),
    Action("push_insurance_offer", "push", "marketing", "cross_sell", "insurance", "ins_device"),
    Action("web_loan_banner", "web", "marketing", "cross_sell", "loans", "loan_personal"),
    Action("app_loyalty_bonus", "app", "marketing", "retention", None, None),
    Action("call_retention_offer", "call_center", "marketing", "retention", None, None),
    Action("email_service_tips", "email", "service", "service", None, None),
)

# Products that are out of stock (serving must never offer them).
_OUT_OF_STOCK = frozenset({"phone_refurb", "acc_charger"})

#: Source-system exports written to ``out_dir`` (without the ``.parquet`` suffix).
EXPORT_FILES: tuple[str, ...] = (
    "crm_accounts",
    "email_leads",
    "loyalty_members",
    "pos_baskets",
    "app_accounts",
    "app_events",
    "web_events",
    "service_cases",
    "consent",
    "holdings",
    "products",
    "campaign_history",
)

DAY = 86_400
HISTORY_DAYS = 730
COMPLAINT_WINDOW_DAYS = 90
REPEAT_WINDOW_DAYS = 7
OUTCOME_WINDOW_DAYS = 30
_WRITE_ROWS = 2_000_000
# Low-cardinality columns worth dictionary-encoding; ids and timestamps are not.
_DICTIONARY_COLUMNS = [
    "source",
    "event_type",
    "category",
    "config_id",
    "store_id",
    "product_id",
    "reason",
    "id_type",
    "purpose",
    "channel",
    "campaign_id",
    "action_id",
    "city",
    "first_name",
    "last_name",
]

_FIRST_NAMES = (
    "James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa "
    "Anthony Betty Mark Margaret Donald Sandra Steven Ashley Paul Kimberly Andrew Emily "
    "Joshua Donna Kenneth Michelle Kevin Dorothy Brian Carol George Amanda Edward Melissa "
    "Ronald Deborah Timothy Stephanie Jason Rebecca Jeffrey Sharon Ryan Laura Jacob Cynthia "
    "Gary Kathleen Nicholas Amy Eric Shirley Jonathan Angela Stephen Helen Larry Anna "
    "Justin Brenda Scott Pamela Brandon Nicole Oliver Emma Harry Olivia Jack Amelia "
    "Charlie Isla Freddie Ava Alfie Mia Noah Grace Leo Sophie Oscar Chloe Arthur Lily "
    "Priya Aisha Mohammed Fatima Omar Zara Ravi Anika Wei Mei Kofi Ama Tomasz Agnieszka"
).split()
_LAST_NAMES = (
    "Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson "
    "Thompson Wright Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel "
    "Jackson Wood Turner Martin Cooper Hill Ward Morris Moore Clark Lee King Baker "
    "Harrison Morgan Allen James Scott Phillips Watson Davis Parker Price Bennett Young "
    "Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell Shaw Murphy "
    "Miller Cox Richards Khan Marshall Anderson Simpson Ellis Adams Singh Begum Wilkinson "
    "Foster Chapman Powell Webb Rogers Gray Mason Ali Hunt Hussain Campbell Matthews "
    "Owen Palmer Holmes Mills Barnes Knight Lloyd Butler Russell Barker Fisher Stevens "
    "Jenkins Murray Dixon Harvey Graham Pearson Ahmed Fletcher Walsh Kaur Gibson Howard "
    "Andrews Stewart Elliott Reynolds Saunders Payne Fox Ford Pearce Day Brooks West "
    "Nowak Kowalski Chen Wang Okafor Mensah Sharma Gupta Costa Silva"
).split()
_STREETS = (
    "High Church Station Victoria Green Manor Park Queens Kings Mill School Grange "
    "Springfield Windsor Albert Chestnut Oak Cedar Elm Willow Meadow Orchard Riverside "
    "Hillside Beech Ash Maple Bridge Castle Market North South West East London York "
    "Cambridge Oxford Richmond Clarence Stanley Alexandra Balmoral Highfield Broadway"
).split()
_STREET_SUFFIX = (
    ("Road", "Rd"),
    ("Street", "St"),
    ("Avenue", "Ave"),
    ("Lane", "Ln"),
    ("Close", "Cl"),
    ("Drive", "Dr"),
)
_CITIES = (
    ("London", "E"),
    ("Manchester", "M"),
    ("Birmingham", "B"),
    ("Leeds", "LS"),
    ("Glasgow", "G"),
    ("Liverpool", "L"),
    ("Bristol", "BS"),
    ("Sheffield", "S"),
    ("Edinburgh", "EH"),
    ("Cardiff", "CF"),
    ("Leicester", "LE"),
    ("Nottingham", "NG"),
    ("Newcastle", "NE"),
    ("Brighton", "BN"),
    ("Southampton", "SO"),
    ("Norwich", "NR"),
    ("York", "YO"),
    ("Oxford", "OX"),
)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.test", "inbox.test")
_CASE_REASONS = ("billing_dispute", "network_fault", "delivery_delay", "faulty_device")
_SERVICE_REASONS = (
    "billing_question",
    "technical_support",
    "address_change",
    "cancellation_enquiry",
)
_CONFIGS_PER_CATEGORY = 40


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    seed: int
    as_of: datetime
    n_persons: int
    n_households: int
    rows: dict[str, int] = field(default_factory=dict)


ProgressCallback = Callable[[str], None]


# --------------------------------------------------------------------------------------
# small vectorised helpers


def _rng(seed: int, step: str) -> np.random.Generator:
    """An independent stream per step so that changing one step leaves the others alone."""
    return np.random.default_rng([seed, int.from_bytes(step.encode()[:8].ljust(8, b"\0"), "big")])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _unique_ids(rng: np.random.Generator, n: int, prefix: str, digits: int) -> pa.Array:
    """``n`` distinct ids ``prefix + digits`` in random order (no leading zeros, no padding)."""
    low = 10 ** (digits - 1)
    nums = low + rng.choice(9 * low, size=n, replace=False)
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(nums), pa.string()), "")


def _str_table(values: list[str]) -> pa.Array:
    return pa.array(values, type=pa.string())


def _take(values: pa.Array, idx: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    """``values[idx]`` with optional nulls where ``null_mask`` is true."""
    indices = pa.array(idx.astype(np.int64), mask=null_mask)
    return pc.take(values, indices)


def _with_nulls(values: pa.Array, null_mask: np.ndarray) -> pa.Array:
    if not null_mask.any():
        return values
    return pc.if_else(pa.array(null_mask), pa.scalar(None, values.type), values)


def _choose(rng: np.random.Generator, n: int, probs: list[float]) -> np.ndarray:
    """Variant index per row with the given probabilities."""
    cum = np.cumsum(np.asarray(probs, dtype=np.float64))
    cum /= cum[-1]
    return np.searchsorted(cum, rng.random(n), side="right").astype(np.int8)


def _sample_rows(weights: np.ndarray, owner: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row, drawn from the row owner's weight vector (chunked to bound memory)."""
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1).astype(np.float32)
    cum[:, -1] = 1.0
    out = np.empty(owner.size, dtype=np.int8)
    for start in range(0, owner.size, _WRITE_ROWS):
        stop = min(start + _WRITE_ROWS, owner.size)
        u = rng.random(stop - start, dtype=np.float32)
        out[start:stop] = (u[:, None] >= cum[owner[start:stop]]).sum(axis=1)
    return np.minimum(out, weights.shape[1] - 1)


def _time_order(t: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Indices sorting by ``(t, tie)``: one argsort of a combined key, faster than lexsort."""
    if t.size == 0:
        return np.arange(0)
    span = int(tie.max()) + 1
    key = (t.astype(np.int64) - int(t.min())) * span + tie.astype(np.int64)
    return np.argsort(key, kind="stable")


def _timestamps(us: np.ndarray, null_mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(us.astype(np.int64), type=pa.timestamp("us", tz="UTC"), mask=null_mask)


def _write(table: pa.Table, path: Path) -> int:
    """Write one parquet file with fixed settings so that bytes depend on data only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(
        path,
        table.schema,
        compression="zstd",
        compression_level=1,
        use_dictionary=_DICTIONARY_COLUMNS,
    ) as writer:
        for start in range(0, max(table.num_rows, 1), _WRITE_ROWS):
            writer.write_table(table.slice(start, _WRITE_ROWS), row_group_size=_WRITE_ROWS)
    return table.num_rows


def _typo(name: str, rng: np.random.Generator) -> str:
    """A one-character edit (substitute, delete, insert or swap) of ``name``."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = int(rng.integers(1, len(name)))
    op = int(rng.integers(0, 4))
    if op == 0:
        return name[:i] + letters[int(rng.integers(0, 26))] + name[i + 1 :]
    if op == 1 and len(name) > 3:
        return name[:i] + name[i + 1 :]
    if op == 2:
        return name[:i] + letters[int(rng.integers(0, 26))] + name[i:]
    if i < len(name) - 1 and name[i] != name[i + 1]:
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    return name[:i] + letters[int(rng.integers(0, 26))] + name[i + 1 :]


_NAME_FORMS = 7  # clean, upper, lower, padded, three typos

#: Record-level noise real exports carry, per record of a source that has the field
#: (rates stated in docs/data-dictionary.md). Drawn from their own random streams, so
#: every other generated value is the same as without them.
RECORD_NOISE: dict[str, float] = {
    "dob_digit_typo": 0.02,
    "dob_day_month_swap": 0.01,
    "postcode_typo": 0.02,
    "nickname": 0.02,
    "swapped_names": 0.01,
    "missing_last_name": 0.02,
    "missing_dob": 0.02,
    "missing_street": 0.03,
}
_NICKNAMES = {
    "James": "Jim", "Robert": "Bob", "John": "Jack", "Michael": "Mike", "William": "Bill",
    "Elizabeth": "Liz", "David": "Dave", "Richard": "Rick", "Joseph": "Joe",
    "Jessica": "Jess", "Thomas": "Tom", "Charles": "Charlie", "Daniel": "Dan",
    "Matthew": "Matt", "Anthony": "Tony", "Margaret": "Maggie", "Steven": "Steve",
    "Andrew": "Andy", "Kenneth": "Ken", "Kimberly": "Kim", "Edward": "Ed",
    "Timothy": "Tim", "Jeffrey": "Jeff", "Nicholas": "Nick", "Jonathan": "Jon",
    "Stephen": "Steve", "Rebecca": "Becky", "Deborah": "Debbie", "Pamela": "Pam",
    "Patricia": "Pat", "Susan": "Sue", "Catherine": "Kate", "Oliver": "Ollie",
    "Frederick": "Fred", "Alexander": "Alex", "Samuel": "Sam", "Benjamin": "Ben",
    "Jennifer": "Jenny", "Cynthia": "Cindy", "Kathleen": "Kathy", "Stephanie": "Steph",
    "Sandra": "Sandy", "Dorothy": "Dot", "Ronald": "Ron", "Donald": "Don",
    "Lawrence": "Larry", "Joshua": "Josh", "Nicole": "Nikki", "Brandon": "Brad",
}  # fmt: skip


def _digit_typo(value: str, rng: np.random.Generator) -> str:
    """One digit of a YYYY-MM-DD date replaced (year's last two digits, month or day),
    keeping a valid date: an invalid one would be dropped by any reader, not mislead it."""
    for _ in range(10):
        pos = int(rng.choice([2, 3, 5, 6, 8, 9]))
        digit = str((int(value[pos]) + int(rng.integers(1, 10))) % 10)
        typo = value[:pos] + digit + value[pos + 1 :]
        try:
            date.fromisoformat(typo)
        except ValueError:
            continue
        return typo
    return value


def _postcode_typo(value: str, rng: np.random.Generator) -> str:
    """One letter or digit of a postcode replaced by another of its kind."""
    spots = [i for i, c in enumerate(value) if c.isalnum()]
    i = spots[int(rng.integers(1, len(spots)))]
    pool = "0123456789" if value[i].isdigit() else "ABCDEFGHJKLMNPRSTUWXY"
    return value[:i] + pool[int(rng.integers(0, len(pool)))] + value[i + 1 :]


def _record_noise(table: pa.Table, seed: int, source: str) -> pa.Table:
    """Apply :data:`RECORD_NOISE` to the name, date-of-birth and address columns present."""
    rng = _rng(seed, f"noise-{source}")
    noisy = ("first_name", "last_name", "date_of_birth", "postcode", "street")
    cols = {c: table.column(c).to_pylist() for c in noisy if c in table.column_names}
    n = table.num_rows

    def pick(rate: str) -> np.ndarray:
        return np.flatnonzero(rng.random(n) < RECORD_NOISE[rate])

    if "date_of_birth" in cols:
        dob = cols["date_of_birth"]
        for i in pick("dob_digit_typo"):
            if dob[i]:
                dob[i] = _digit_typo(dob[i], rng)
        for i in pick("dob_day_month_swap"):
            if dob[i] and int(dob[i][8:10]) <= 12:
                dob[i] = f"{dob[i][:4]}-{dob[i][8:10]}-{dob[i][5:7]}"
        for i in pick("missing_dob"):
            dob[i] = None
    if "postcode" in cols:
        for i in pick("postcode_typo"):
            if cols["postcode"][i]:
                cols["postcode"][i] = _postcode_typo(cols["postcode"][i], rng)
    if "first_name" in cols:
        first = cols["first_name"]
        for i in pick("nickname"):
            nick = _NICKNAMES.get((first[i] or "").strip().title())
            if nick:
                first[i] = nick
        if "last_name" in cols:
            last = cols["last_name"]
            for i in pick("swapped_names"):
                first[i], last[i] = last[i], first[i]
            for i in pick("missing_last_name"):
                last[i] = None
    if "street" in cols:
        for i in pick("missing_street"):
            cols["street"][i] = None
    for c, values in cols.items():
        i = table.column_names.index(c)
        table = table.set_column(i, c, pa.array(values, type=table.schema.field(c).type))
    return table


def _name_variants(names: list[str], rng: np.random.Generator) -> pa.Array:
    """Flattened [len(names), _NAME_FORMS] table of spellings of each name."""
    out: list[str] = []
    for name in names:
        out += [name, name.upper(), name.lower(), f" {name} "]
        out += [_typo(name, rng) for _ in range(3)]
    return _str_table(out)


# Probabilities of the clean, upper, lower, padded and typo spellings of a name.
_NAME_CLEAN = [1.0, 0, 0, 0, 0, 0, 0]
_NAME_NOISY = [0.78, 0.06, 0.05, 0.03, 0.027, 0.027, 0.026]


def _name_idx(base: np.ndarray, rng: np.random.Generator, probs: list[float]) -> np.ndarray:
    return base.astype(np.int64) * _NAME_FORMS + _choose(rng, base.size, probs)


def _email_forms(email: pa.Array, rng: np.random.Generator, probs: list[float]) -> pa.Array:
    """Same address in another form: upper-cased, capitalised or padded with spaces."""
    which = _choose(rng, len(email), probs)
    return pc.choose(
        pa.array(which),
        email,
        pc.utf8_upper(email),
        pc.utf8_capitalize(email),
        pc.binary_join_element_wise(" ", email, "  ", ""),
    )


def _phone_forms(number: np.ndarray, rng: np.random.Generator, probs: list[float]) -> pa.Array:
    """Format 10-digit UK national numbers as +44 7700 900123, 07700900123, ... ."""
    s = pc.cast(pa.array(number), pa.string())
    head = pc.utf8_slice_codeunits(s, 0, 4)
    tail = pc.utf8_slice_codeunits(s, 4, 10)
    mid = pc.utf8_slice_codeunits(s, 4, 7)
    end = pc.utf8_slice_codeunits(s, 7, 10)
    which = _choose(rng, number.size, probs)
    return pc.choose(
        pa.array(which),
        pc.binary_join_element_wise("+44 ", head, " ", tail, ""),
        pc.binary_join_element_wise("0", s, ""),
        pc.binary_join_element_wise("0", head, "-", mid, "-", end, ""),
        pc.binary_join_element_wise("44", s, ""),
    )


_PHONE_PROBS = [0.3, 0.4, 0.15, 0.15]


def _window_count(
    keys: np.ndarray, group: np.ndarray, t: np.ndarray, window_s: int, shift: int = 32
) -> np.ndarray:
    """Events of ``group`` in ``[t - window, t)``; ``keys`` are sorted ``group << shift | time``."""
    hi = (group.astype(np.int64) << shift) | t.astype(np.int64)
    lo = (group.astype(np.int64) << shift) | np.maximum(t.astype(np.int64) - window_s, 0)
    return np.searchsorted(keys, hi, side="left") - np.searchsorted(keys, lo, side="left")


# --------------------------------------------------------------------------------------
# the population


@dataclass
class _Population:
    """Latent attributes of persons and households (numpy arrays, one row per person)."""

    n: int
    household: np.ndarray
    n_households: int
    age: np.ndarray
    income: np.ndarray
    tenure_days: np.ndarray
    interest: np.ndarray  # [n, len(CATEGORIES)]
    digital: np.ndarray
    churn: np.ndarray
    complaint: np.ndarray
    first: np.ndarray  # index into _FIRST_NAMES
    last: np.ndarray  # index into _LAST_NAMES
    dob: pa.Array
    has_email: np.ndarray
    email1: pa.Array
    has_email2: np.ndarray
    email2: pa.Array
    has_mobile: np.ndarray
    mobile: np.ndarray  # 10-digit national number
    landline: np.ndarray  # household landline shared by members, -1 if none
    street_no: np.ndarray  # per household
    street: np.ndarray
    suffix: np.ndarray
    city: np.ndarray
    postcode: pa.Array  # per household, canonical "AB12 3CD"
    store: np.ndarray  # home store per household


def _population(n: int, seed: int, as_of_s: int) -> _Population:
    rng = _rng(seed, "persons")
    sizes = rng.choice([1, 2, 3, 4, 5], size=n // 2 + 2, p=[0.34, 0.34, 0.15, 0.13, 0.04])
    household = np.repeat(np.arange(sizes.size, dtype=np.int32), sizes)[:n]
    n_households = int(household[-1]) + 1

    age = np.clip(rng.normal(45, 16, n), 18, 90).astype(np.float32)
    income = np.clip(np.round(rng.normal(1.4 + (age - 45) / 40 * (age < 60), 1.0, n)), 0, 3).astype(
        np.int8
    )
    tenure_days = np.minimum(rng.exponential(4 * 365, n), 15 * 365).astype(np.int32)
    digital = np.clip(rng.beta(2.5, 2.5, n) - (age - 45) / 90, 0.02, 0.98).astype(np.float32)
    interest = rng.beta(0.9, 2.6, (n, len(CATEGORIES))).astype(np.float32)
    interest[:, 0] = np.clip(interest[:, 0] + 0.05 * income, 0, 1)  # phones: richer, keener
    interest[:, 4] = np.clip(interest[:, 4] + 0.08 * (income <= 1), 0, 1)  # loans
    churn = np.clip(rng.beta(1.6, 5.0, n) + 0.12 * (tenure_days < 365), 0, 1).astype(np.float32)
    complaint = rng.beta(1.3, 7.0, n).astype(np.float32)

    # Household members mostly share a surname.
    hh_last = rng.integers(0, len(_LAST_NAMES), n_households)
    last = np.where(rng.random(n) < 0.8, hh_last[household], rng.integers(0, len(_LAST_NAMES), n))
    first = rng.integers(0, len(_FIRST_NAMES), n)

    dob_s = as_of_s - (age.astype(np.int64) * 365.25 * DAY).astype(np.int64)
    dob_s -= rng.integers(0, 365 * DAY, n)
    dob = pc.strftime(pa.array(dob_s, type=pa.timestamp("s")), format="%Y-%m-%d")

    # Emails: unique per person by a random unique number in the local part.
    first_lower = pc.utf8_lower(_take(_str_table(_FIRST_NAMES), first))
    last_lower = pc.utf8_lower(_take(_str_table(_LAST_NAMES), last))
    number = pc.cast(
        pa.array(100 + rng.choice(90 * n + 1000, size=2 * n, replace=False)), pa.string()
    )
    domain = _take(_str_table(list(_EMAIL_DOMAINS)), rng.integers(0, len(_EMAIL_DOMAINS), 2 * n))
    style = rng.integers(0, 3, 2 * n)
    first2 = pa.concat_arrays([first_lower, first_lower])
    last2 = pa.concat_arrays([last_lower, last_lower])
    local = pc.choose(
        pa.array(style),
        pc.binary_join_element_wise(first2, ".", last2, ""),
        pc.binary_join_element_wise(pc.utf8_slice_codeunits(first2, 0, 1), last2, ""),
        pc.binary_join_element_wise(first2, "_", pc.utf8_slice_codeunits(last2, 0, 3), ""),
    )
    emails = pc.binary_join_element_wise(local, number, "@", domain, "")
    has_email = rng.random(n) < 0.93
    has_email2 = has_email & (rng.random(n) < 0.18)

    mobile_n = 7_000_000_000 + rng.choice(999_999_999, size=n, replace=False)
    has_mobile = rng.random(n) < 0.9
    hh_sizes = np.bincount(household, minlength=n_households)
    shared = (hh_sizes >= 2) & (rng.random(n_households) < 0.03)
    hh_land = np.full(n_households, -1, dtype=np.int64)
    hh_land[shared] = 1_000_000_000 + rng.choice(999_999_999, size=int(shared.sum()), replace=False)

    street_no = rng.integers(1, 220, n_households).astype(np.int16)
    street = rng.integers(0, len(_STREETS), n_households).astype(np.int16)
    suffix = rng.integers(0, len(_STREET_SUFFIX), n_households).astype(np.int8)
    city = rng.integers(0, len(_CITIES), n_households).astype(np.int8)
    letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
    area = _take(_str_table([c[1] for c in _CITIES]), city)
    district = pc.cast(pa.array(rng.integers(1, 30, n_households)), pa.string())
    sector = pc.cast(pa.array(rng.integers(0, 10, n_households)), pa.string())
    unit = np.char.add(
        letters[rng.integers(0, 20, n_households)], letters[rng.integers(0, 20, n_households)]
    )
    postcode = pc.binary_join_element_wise(area, district, " ", sector, pa.array(unit), "")

    return _Population(
        n=n,
        household=household,
        n_households=n_households,
        age=age,
        income=income,
        tenure_days=tenure_days,
        interest=interest,
        digital=digital,
        churn=churn,
        complaint=complaint,
        first=first,
        last=last,
        dob=dob,
        has_email=has_email,
        email1=emails.slice(0, n),
        has_email2=has_email2,
        email2=emails.slice(n, n),
        has_mobile=has_mobile,
        mobile=mobile_n.astype(np.int64),
        landline=hh_land[household],
        street_no=street_no,
        street=street,
        suffix=suffix,
        city=city,
        postcode=postcode,
        store=rng.integers(1, 81, n_households).astype(np.int16),
    )


# --------------------------------------------------------------------------------------
# identity-bearing exports


@dataclass
class _Ids:
    """Native ids per person (null where the person has no record in that system)."""

    crm: pa.Array
    has_crm: np.ndarray
    crm_dup_of: np.ndarray  # person index of each duplicate CRM record
    crm_dup: pa.Array
    loyalty: pa.Array
    has_loyalty: np.ndarray
    app: pa.Array
    has_app: np.ndarray
    device_owner: np.ndarray  # person index per device
    device_start: np.ndarray  # first device index per person
    n_devices: np.ndarray
    device: pa.Array
    crm_created_s: np.ndarray
    records: list[pa.Table] = field(default_factory=list)


class _Writer:
    """Collects row counts and reports progress."""

    def __init__(self, out_dir: Path, progress: ProgressCallback | None) -> None:
        self.out_dir = out_dir
        self.rows: dict[str, int] = {}
        self.progress = progress

    def write(self, name: str, table: pa.Table, truth: bool = False) -> None:
        path = self.out_dir / ("truth" if truth else "") / f"{name}.parquet"
        self.rows[("truth/" if truth else "") + name] = _write(table, path)
        logger.info("wrote %s (%d rows)", path.name, table.num_rows)
        if self.progress is not None:
            self.progress(name)

    def write_chunks(self, name: str, n_rows: int, build: Callable[[int, int], pa.Table]) -> None:
        """Write a large export slice by slice so its string columns never all sit in memory."""
        path = self.out_dir / f"{name}.parquet"
        schema = build(0, 0).schema
        with pq.ParquetWriter(
            path,
            schema,
            compression="zstd",
            compression_level=1,
            use_dictionary=_DICTIONARY_COLUMNS,
        ) as writer:
            for lo in range(0, n_rows, _WRITE_ROWS):
                writer.write_table(
                    build(lo, min(lo + _WRITE_ROWS, n_rows)), row_group_size=_WRITE_ROWS
                )
        self.rows[name] = n_rows
        logger.info("wrote %s (%d rows)", path.name, n_rows)
        if self.progress is not None:
            self.progress(name)


def _address(pop: _Population, persons: np.ndarray, rng: np.random.Generator) -> dict:
    """Street, city and postcode of the persons' households, with format noise."""
    hh = pop.household[persons]
    m = persons.size
    abbrev = rng.random(m) < 0.3
    suffix_names = _str_table([s for pair in _STREET_SUFFIX for s in pair])
    suffix = _take(suffix_names, pop.suffix[hh].astype(np.int64) * 2 + abbrev)
    street = pc.binary_join_element_wise(
        pc.cast(pa.array(pop.street_no[hh]), pa.string()),
        _take(_str_table(_STREETS), pop.street[hh]),
        suffix,
        " ",
    )
    street = pc.choose(
        pa.array(_choose(rng, m, [0.85, 0.1, 0.05])),
        street,
        pc.utf8_upper(street),
        pc.utf8_lower(street),
    )
    city = _take(_str_table([c[0] for c in _CITIES]), pop.city[hh])
    city = pc.choose(pa.array(_choose(rng, m, [0.9, 0.1])), city, pc.utf8_upper(city))
    postcode = pc.take(pop.postcode, pa.array(hh.astype(np.int64)))
    postcode = pc.choose(
        pa.array(_choose(rng, m, [0.75, 0.15, 0.1])),
        postcode,
        pc.replace_substring(postcode, " ", ""),
        pc.utf8_lower(postcode),
    )
    return {"street": street, "city": city, "postcode": postcode}


def _phone_for(
    pop: _Population, persons: np.ndarray, rng: np.random.Generator, p_missing: float, p_land: float
) -> pa.Array:
    """A phone per record: the mobile, or the shared household landline, or missing."""
    use_land = (pop.landline[persons] >= 0) & (
        (rng.random(persons.size) < p_land) | ~pop.has_mobile[persons]
    )
    number = np.where(use_land, pop.landline[persons], pop.mobile[persons])
    missing = (~pop.has_mobile[persons] & ~use_land) | (rng.random(persons.size) < p_missing)
    return _with_nulls(_phone_forms(number, rng, _PHONE_PROBS), missing)


def _record_truth(source: str, ids: pa.Array, persons: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "record_id": pc.binary_join_element_wise(f"{source}:", ids, ""),
            "source": pa.array(np.full(persons.size, source)),
            "person_id": _person_ids(persons),
        }
    )


def _person_ids(persons: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(
        "P", pc.utf8_lpad(pc.cast(pa.array(persons), pa.string()), 7, "0"), ""
    )


def _per_person(ids: pa.Array, persons: np.ndarray, has: np.ndarray) -> pa.Array:
    """Each person's id among ``ids`` (one per person of the sorted ``persons``), null for
    persons without one (``~has``)."""
    at = np.searchsorted(persons, np.arange(has.size)).clip(0, max(persons.size - 1, 0))
    return pc.take(ids, pa.array(at, mask=~has))


@dataclass
class _Export:
    """One identity-bearing export in its file's row order, and its records' truth."""

    name: str
    table: pa.Table
    records: pa.Table

    def write(self, w: _Writer, records: list[pa.Table]) -> None:
        w.write(self.name, self.table)
        records.append(self.records)


def _shuffled(name: str, table: pa.Table, records: pa.Table, order: np.ndarray) -> _Export:
    idx = pa.array(order)
    return _Export(name, table.take(idx), records.take(idx))


@dataclass
class _Crm:
    export: _Export
    persons: np.ndarray  # sorted persons with a (first) CRM record
    ids: pa.Array  # their CRM ids
    created_s: np.ndarray  # their accounts' creation times
    has: np.ndarray  # [n] person has a CRM record
    dup_p: np.ndarray  # person of each duplicate record
    dup_ids: pa.Array
    dup_use2: np.ndarray  # duplicate opened with the person's second email


def _crm_accounts(
    pop: _Population, seed: int, as_of_s: int, first_v: pa.Array, last_v: pa.Array
) -> _Crm:
    """CRM: most persons, ~3% of them with a second, differently spelled record."""
    n = pop.n
    start_s = as_of_s - HISTORY_DAYS * DAY
    rng = _rng(seed, "crm")
    has_crm = rng.random(n) < 0.8
    crm_p = np.flatnonzero(has_crm)
    dup_p = crm_p[rng.random(crm_p.size) < 0.03]
    all_crm = _unique_ids(rng, crm_p.size + dup_p.size, "CRM", 9)
    crm_ids, dup_ids = all_crm.slice(0, crm_p.size), all_crm.slice(crm_p.size)
    crm_created = (
        as_of_s - pop.tenure_days[crm_p].astype(np.int64) * DAY - rng.integers(0, DAY, crm_p.size)
    )
    dup_created = np.maximum(crm_created[np.searchsorted(crm_p, dup_p)], start_s) + rng.integers(
        DAY, 400 * DAY, dup_p.size
    )
    dup_created = np.minimum(dup_created, as_of_s - DAY)

    # The duplicate account is often opened with the second email.
    dup_use2 = pop.has_email2[dup_p] & (rng.random(dup_p.size) < 0.5)

    def crm_rows(persons: np.ndarray, ids: pa.Array, created: np.ndarray, dup: bool) -> pa.Table:
        m = persons.size
        probs = [0.3, 0.15, 0.15, 0.1, 0.1, 0.1, 0.1] if dup else _NAME_NOISY
        email = pc.take(pop.email1, pa.array(persons))
        if dup:
            email = pc.if_else(pa.array(dup_use2), pc.take(pop.email2, pa.array(persons)), email)
        email = _email_forms(
            email, rng, [0.7, 0.12, 0.1, 0.08] if not dup else [0.4, 0.3, 0.2, 0.1]
        )
        email = _with_nulls(email, ~pop.has_email[persons] | (rng.random(m) < 0.06))
        return pa.table(
            {
                "crm_id": ids,
                "email": email,
                "phone": _phone_for(pop, persons, rng, 0.03, 0.3),
                "first_name": _take(first_v, _name_idx(pop.first[persons], rng, probs)),
                "last_name": _take(last_v, _name_idx(pop.last[persons], rng, probs)),
                "date_of_birth": _with_nulls(
                    pc.take(pop.dob, pa.array(persons)), rng.random(m) < 0.05
                ),
                **_address(pop, persons, rng),
                "created_at": _timestamps(created * 1_000_000),
            }
        )

    crm = pa.concat_tables(
        [crm_rows(crm_p, crm_ids, crm_created, False), crm_rows(dup_p, dup_ids, dup_created, True)]
    )
    crm = _record_noise(crm, seed, "crm")
    crm_persons = np.concatenate([crm_p, dup_p])
    truth = _record_truth("crm", crm.column("crm_id").combine_chunks(), crm_persons)
    export = _shuffled("crm_accounts", crm, truth, rng.permutation(crm.num_rows))
    return _Crm(export, crm_p, crm_ids, crm_created, has_crm, dup_p, dup_ids, dup_use2)


@dataclass
class _App:
    export: _Export
    persons: np.ndarray
    ids: pa.Array
    has: np.ndarray
    email2_login: np.ndarray  # persons whose login is their second email
    rng: np.random.Generator  # the app stream, continued by the devices


def _app_accounts(pop: _Population, seed: int, as_of_s: int, first_v: pa.Array) -> _App:
    """App accounts: digital persons; the login is an email (sometimes the second one)
    or, without one, the mobile number; most apps also verify a mobile for sign-in."""
    n = pop.n
    start_s = as_of_s - HISTORY_DAYS * DAY
    rng = _rng(seed, "app")
    # Signing up needs a login: an email or a mobile number.
    has_app = (rng.random(n) < 0.08 + 0.65 * pop.digital) & (pop.has_email | pop.has_mobile)
    app_p = np.flatnonzero(has_app)
    m = app_p.size
    app_ids = _unique_ids(rng, m, "app-", 8)
    app_use2 = pop.has_email2[app_p] & (rng.random(m) < 0.35)
    email = pc.if_else(
        pa.array(app_use2),
        pc.take(pop.email2, pa.array(app_p)),
        pc.take(pop.email1, pa.array(app_p)),
    )
    no_email = ~pop.has_email[app_p] | (rng.random(m) < 0.04)
    apps = pa.table(
        {
            "app_account_id": app_ids,
            "email": _with_nulls(_email_forms(email, rng, [0.8, 0.05, 0.1, 0.05]), no_email),
            "phone": _with_nulls(
                _phone_for(pop, app_p, rng, 0.0, 0.0), ~no_email & (rng.random(m) < 0.15)
            ),
            "first_name": _with_nulls(
                _take(first_v, _name_idx(pop.first[app_p], rng, _NAME_NOISY)), rng.random(m) < 0.15
            ),
            "created_at": _timestamps(
                (start_s - 200 * DAY + rng.integers(0, (HISTORY_DAYS + 170) * DAY, m)) * 1_000_000
            ),
        }
    )
    truth = _record_truth("app", app_ids, app_p)
    apps = _record_noise(apps, seed, "app")
    export = _shuffled("app_accounts", apps, truth, rng.permutation(m))
    return _App(export, app_p, app_ids, has_app, app_p[app_use2 & ~no_email], rng)


def _email_leads(
    pop: _Population,
    seed: int,
    as_of_s: int,
    first_v: pa.Array,
    last_v: pa.Array,
    email2_known: np.ndarray,
) -> _Export:
    """Email leads: web-form sign-ups; some with only an email. A person signs up with
    the second email mostly when it is one they use with the company elsewhere
    (``email2_known``: app login, second CRM account); an address seen nowhere else is
    rare."""
    n = pop.n
    start_s = as_of_s - HISTORY_DAYS * DAY
    rng = _rng(seed, "leads")
    has_lead = pop.has_email & (rng.random(n) < 0.25 + 0.3 * pop.digital)
    lead_p = np.flatnonzero(has_lead)
    p_use2 = np.where(email2_known, 0.4, 0.02)
    second = lead_p[pop.has_email2[lead_p] & (rng.random(lead_p.size) < p_use2[lead_p])]
    lead_p = np.concatenate([lead_p, second])
    use2 = np.zeros(lead_p.size, dtype=bool)
    first_p = lead_p[: lead_p.size - second.size]
    use2[: first_p.size] = pop.has_email2[first_p] & (rng.random(first_p.size) < p_use2[first_p])
    use2[first_p.size :] = True
    m = lead_p.size
    email = pc.if_else(
        pa.array(use2), pc.take(pop.email2, pa.array(lead_p)), pc.take(pop.email1, pa.array(lead_p))
    )
    only_email = rng.random(m) < 0.25
    lead_ids = _unique_ids(rng, m, "L", 10)
    leads = pa.table(
        {
            "lead_id": lead_ids,
            "email": _email_forms(email, rng, [0.45, 0.25, 0.2, 0.1]),
            # The form's mobile field is optional: about half fill it in.
            "phone": _with_nulls(
                _phone_forms(pop.mobile[lead_p], rng, _PHONE_PROBS),
                ~pop.has_mobile[lead_p] | (rng.random(m) < 0.5),
            ),
            "first_name": _with_nulls(
                _take(first_v, _name_idx(pop.first[lead_p], rng, _NAME_NOISY)), only_email
            ),
            "last_name": _with_nulls(
                _take(last_v, _name_idx(pop.last[lead_p], rng, _NAME_NOISY)), only_email
            ),
            "created_at": _timestamps(
                (start_s + rng.integers(0, HISTORY_DAYS * DAY, m)) * 1_000_000
            ),
        }
    )
    leads = _record_noise(leads, seed, "email_leads")
    truth = _record_truth("email_lead", lead_ids, lead_p)
    return _shuffled("email_leads", leads, truth, rng.permutation(m))


@dataclass
class _Loyalty:
    export: _Export
    persons: np.ndarray
    ids: pa.Array
    has: np.ndarray


def _loyalty_members(
    pop: _Population, seed: int, as_of_s: int, first_v: pa.Array, last_v: pa.Array
) -> _Loyalty:
    """Loyalty cards: phone-first, email often missing; some only phone + first name."""
    n = pop.n
    rng = _rng(seed, "loyalty")
    has_loyalty = rng.random(n) < 0.25 + 0.3 * (1 - pop.digital)
    loy_p = np.flatnonzero(has_loyalty)
    m = loy_p.size
    sparse = rng.random(m) < 0.15
    loyalty_ids = _unique_ids(rng, m, "6339", 9)
    email = _email_forms(pc.take(pop.email1, pa.array(loy_p)), rng, [0.5, 0.3, 0.1, 0.1])
    phone = _phone_for(pop, loy_p, rng, 0.05, 0.5)
    # The card form needs a contact: without a phone the email is taken.
    has_phone = pc.is_valid(phone).to_numpy(zero_copy_only=False)
    no_email = ~pop.has_email[loy_p] | (has_phone & (sparse | (rng.random(m) < 0.55)))
    loyalty = pa.table(
        {
            "loyalty_id": loyalty_ids,
            "email": _with_nulls(email, no_email),
            "phone": phone,
            "first_name": _take(first_v, _name_idx(pop.first[loy_p], rng, _NAME_NOISY)),
            "last_name": _with_nulls(
                _take(last_v, _name_idx(pop.last[loy_p], rng, _NAME_NOISY)), sparse
            ),
            "postcode": _with_nulls(
                _address(pop, loy_p, rng)["postcode"], sparse | (rng.random(m) < 0.2)
            ),
            "joined_at": _timestamps(
                (as_of_s - rng.integers(30, 6 * 365, m) * DAY - rng.integers(0, DAY, m)) * 1_000_000
            ),
        }
    )
    loyalty = _record_noise(loyalty, seed, "loyalty")
    truth = _record_truth("loyalty", loyalty_ids, loy_p)
    export = _shuffled("loyalty_members", loyalty, truth, rng.permutation(m))
    return _Loyalty(export, loy_p, loyalty_ids, has_loyalty)


def _devices(
    pop: _Population, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]:
    """Devices (anonymous web cookies / phones): 1-3 per person. (devices per person,
    owner per device, first device per person, device ids)."""
    n = pop.n
    n_devices = 1 + rng.binomial(2, 0.15 + 0.35 * pop.digital).astype(np.int32)
    device_owner = np.repeat(np.arange(n, dtype=np.int32), n_devices)
    device_start = np.concatenate([[0], np.cumsum(n_devices)[:-1]]).astype(np.int64)
    device_ids = pc.binary_join_element_wise(
        "d-",
        pc.cast(
            pa.array(10**11 + rng.choice(9 * 10**11, size=device_owner.size, replace=False)),
            pa.string(),
        ),
        "",
    )
    return n_devices, device_owner, device_start, device_ids


def _identity_sources(
    pop: _Population, seed: int, as_of_s: int, w: _Writer, first_v: pa.Array, last_v: pa.Array
) -> _Ids:
    """Write the identity-bearing exports (CRM, email leads, loyalty, app) and draw the
    devices; every person's native ids and the records' truth."""
    n = pop.n
    records: list[pa.Table] = []
    crm = _crm_accounts(pop, seed, as_of_s, first_v, last_v)
    crm.export.write(w, records)
    created_pp = np.full(n, as_of_s, dtype=np.int64)
    created_pp[crm.persons] = crm.created_s

    # The app accounts are drawn before the leads (a lead's second email depends on
    # them) and written after the loyalty cards.
    app = _app_accounts(pop, seed, as_of_s, first_v)
    # Where a person's second email is on file besides leads: the app login or a
    # duplicate CRM account.
    email2_known = np.zeros(n, dtype=bool)
    email2_known[app.email2_login] = True
    email2_known[crm.dup_p[crm.dup_use2]] = True
    _email_leads(pop, seed, as_of_s, first_v, last_v, email2_known).write(w, records)
    loyalty = _loyalty_members(pop, seed, as_of_s, first_v, last_v)
    loyalty.export.write(w, records)
    app.export.write(w, records)

    n_devices, device_owner, device_start, device_ids = _devices(pop, app.rng)
    return _Ids(
        crm=_per_person(crm.ids, crm.persons, crm.has),
        has_crm=crm.has,
        crm_dup_of=crm.dup_p,
        crm_dup=crm.dup_ids,
        loyalty=_per_person(loyalty.ids, loyalty.persons, loyalty.has),
        has_loyalty=loyalty.has,
        app=_per_person(app.ids, app.persons, app.has),
        has_app=app.has,
        device_owner=device_owner,
        device_start=device_start,
        n_devices=n_devices,
        device=device_ids,
        crm_created_s=created_pp,
        records=records,
    )


# --------------------------------------------------------------------------------------
# behaviour: web, app, baskets, service cases


@dataclass
class _State:
    """Time-stamped latent state the response model looks at (sorted search keys)."""

    complaint_keys: np.ndarray  # person << 32 | seconds since history start, sorted
    repeat_keys: np.ndarray  # (person * n_categories + category) << 32 | seconds, sorted
    hold_person: np.ndarray
    hold_product: np.ndarray
    hold_since_s: np.ndarray


def _thin_recent(
    t: np.ndarray, churn: np.ndarray, as_of_s: int, rng: np.random.Generator
) -> np.ndarray:
    """Keep-mask: persons at risk of churning go quiet in the last 90 days."""
    recent = t >= as_of_s - 90 * DAY
    return ~recent | (rng.random(t.size) >= 0.8 * churn)


def _category_weights(pop: _Population, boost: np.ndarray | None = None) -> np.ndarray:
    w = 0.04 + pop.interest.astype(np.float32) ** 2
    return w * boost if boost is not None else w


def _web_events(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> np.ndarray:
    """Write web_events and return the sorted repeat-interest keys."""
    rng = _rng(seed, "web")
    start_s = as_of_s - HISTORY_DAYS * DAY
    span = HISTORY_DAYS * DAY
    owner = ids.device_owner
    n_dev = owner.size
    k = len(CATEGORIES)

    def own_device(persons: np.ndarray) -> np.ndarray:
        return ids.device_start[persons] + (
            rng.random(persons.size) * ids.n_devices[persons]
        ).astype(np.int64)

    # Page views: volume follows digital affinity, topic follows interest.
    counts = rng.poisson((4 + 30 * pop.digital[owner]) / ids.n_devices[owner])
    counts[np.bincount(owner, weights=counts, minlength=pop.n)[owner] == 0] = 1
    pv_dev = np.repeat(np.arange(n_dev, dtype=np.int64), counts)
    pv_t = start_s + rng.integers(0, span, pv_dev.size)
    pv_cat = _sample_rows(_category_weights(pop), owner[pv_dev], rng)

    # Loan eligibility checks: loan interest.
    n_lc = rng.poisson(8 * pop.interest[:, 4] ** 3)
    lc_p = np.repeat(np.arange(pop.n), n_lc)
    lc_dev = own_device(lc_p)
    lc_t = start_s + rng.integers(0, span, lc_p.size)

    # Configurator: repeat-interest episodes (the same config viewed again within days).
    lam = 14 * pop.interest**2 * (0.3 + pop.digital[:, None])
    n_ep = rng.poisson(lam)
    ep_pc = np.repeat(np.arange(pop.n * k, dtype=np.int64), n_ep.ravel())
    ep_p, ep_cat = ep_pc // k, (ep_pc % k).astype(np.int8)
    ep_t = start_s + 3 * DAY + rng.integers(0, span - 3 * DAY, ep_pc.size)
    ep_cfg = rng.integers(0, _CONFIGS_PER_CATEGORY, ep_pc.size).astype(np.int32)
    ep_dev = own_device(ep_p)
    extra = rng.binomial(2, 0.5, ep_pc.size)
    ex_idx = np.repeat(np.arange(ep_pc.size), extra)
    cf_idx = np.concatenate([np.arange(ep_pc.size), np.arange(ep_pc.size), ex_idx])
    cf_t = np.concatenate(
        [
            ep_t - rng.integers(3600, 3 * DAY, ep_pc.size),
            ep_t,
            ep_t[ex_idx] + rng.integers(600, 5 * DAY, ex_idx.size),
        ]
    )
    cf_dev, cf_cat, cf_cfg = ep_dev[cf_idx], ep_cat[cf_idx], ep_cfg[cf_idx]
    # Single, non-repeated configurator views.
    n_single = rng.poisson(2 * pop.interest)
    sg_pc = np.repeat(np.arange(pop.n * k, dtype=np.int64), n_single.ravel())
    cf_dev = np.concatenate([cf_dev, own_device(sg_pc // k)])
    cf_cat = np.concatenate([cf_cat, (sg_pc % k).astype(np.int8)])
    cf_cfg = np.concatenate(
        [cf_cfg, rng.integers(0, _CONFIGS_PER_CATEGORY, sg_pc.size).astype(np.int32)]
    )
    cf_t = np.concatenate([cf_t, start_s + rng.integers(0, span, sg_pc.size)])

    # Logins: only some devices of app users ever log in.
    logs_in = ids.has_app[owner] & (rng.random(n_dev) < 0.55)
    n_login = np.where(logs_in, 1 + rng.poisson(1 + 6 * pop.digital[owner]), 0)
    lg_dev = np.repeat(np.arange(n_dev, dtype=np.int64), n_login)
    lg_t = start_s + rng.integers(0, span, lg_dev.size)

    dev = np.concatenate([pv_dev, lc_dev, cf_dev, lg_dev])
    t = np.concatenate([pv_t, lc_t, cf_t, lg_t])
    etype = np.concatenate(
        [
            np.zeros(pv_dev.size, np.int8),
            np.full(lc_dev.size, 2, np.int8),
            np.full(cf_dev.size, 3, np.int8),
            np.ones(lg_dev.size, np.int8),
        ]
    )
    cat = np.concatenate(
        [pv_cat, np.full(lc_dev.size, 4, np.int8), cf_cat, np.full(lg_dev.size, -1, np.int8)]
    )
    cfg = np.concatenate(
        [
            np.full(pv_dev.size + lc_dev.size, -1, np.int32),
            cf_cfg,
            np.full(lg_dev.size, -1, np.int32),
        ]
    )
    del pv_dev, pv_t, pv_cat, lc_dev, lc_t, cf_dev, cf_t, cf_cat, cf_cfg, lg_dev, lg_t
    keep = (t < as_of_s) & _thin_recent(t, pop.churn[owner[dev]], as_of_s, rng)
    keep[etype == 1] = t[etype == 1] < as_of_s  # keep logins: they carry the cookie link
    order = np.flatnonzero(keep)
    order = order[_time_order(t[order], dev[order])]
    dev, t, etype, cat, cfg = dev[order], t[order], etype[order], cat[order], cfg[order]
    del order, keep

    app_of_person = ids.app
    cfg_names = _str_table(
        [f"cfg-{c}-{i:03d}" for c in CATEGORIES for i in range(_CONFIGS_PER_CATEGORY)]
    )

    def build(lo: int, hi: int) -> pa.Table:
        d, tt, et, ct, cf = dev[lo:hi], t[lo:hi], etype[lo:hi], cat[lo:hi], cfg[lo:hi]
        login = et == 1
        return pa.table(
            {
                "event_id": pa.array(np.arange(lo, hi, dtype=np.int64) + 1),
                "device_id": pc.take(ids.device, pa.array(d)),
                "ts": _timestamps(tt * 1_000_000),
                "event_type": _take(_str_table(list(WEB_EVENT_TYPES)), et),
                "category": _take(_str_table(list(CATEGORIES)), np.maximum(ct, 0), ct < 0),
                "config_id": _take(
                    cfg_names,
                    np.maximum(ct, 0).astype(np.int64) * _CONFIGS_PER_CATEGORY + np.maximum(cf, 0),
                    cf < 0,
                ),
                "app_account_id": pc.take(
                    app_of_person, pa.array(owner[d].astype(np.int64), mask=~login)
                ),
            }
        )

    w.write_chunks("web_events", t.size, build)
    # Only a device that logged in carries an identity (its app account); a cookie that
    # never did is anonymous and is no identity record (see customers.sources).
    logged_in = np.zeros(n_dev, dtype=bool)
    logged_in[dev[etype == 1]] = True
    ids.records.append(
        _record_truth("web", ids.device.filter(pa.array(logged_in)), owner[logged_in])
    )

    rep_key = ((ep_p * k + ep_cat) << 32) | (ep_t - start_s)
    return np.sort(rep_key[ep_t < as_of_s])


def _app_events(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> None:
    rng = _rng(seed, "app_events")
    start_s = as_of_s - HISTORY_DAYS * DAY
    persons = np.flatnonzero(ids.has_app)
    counts = rng.poisson(3 + 45 * pop.digital[persons])
    p = np.repeat(persons, counts)
    t = start_s + rng.integers(0, HISTORY_DAYS * DAY, p.size)
    keep = _thin_recent(t, pop.churn[p], as_of_s, rng)
    p, t = p[keep], t[keep]
    etype = _choose(rng, p.size, [0.35, 0.3, 0.1, 0.15, 0.1])
    cat = _sample_rows(_category_weights(pop), p, rng)
    cat[(etype == 0) | (etype == 4)] = -1
    order = _time_order(t, p)
    p, t, etype, cat = p[order], t[order], etype[order], cat[order]
    app_idx = np.searchsorted(persons, p)
    app_ids = pc.take(ids.app, pa.array(persons))

    def build(lo: int, hi: int) -> pa.Table:
        ct = cat[lo:hi]
        return pa.table(
            {
                "event_id": pa.array(np.arange(lo, hi, dtype=np.int64) + 1),
                "app_account_id": pc.take(app_ids, pa.array(app_idx[lo:hi])),
                "device_id": pc.take(ids.device, pa.array(ids.device_start[p[lo:hi]])),
                "ts": _timestamps(t[lo:hi] * 1_000_000),
                "event_type": _take(_str_table(list(APP_EVENT_TYPES)), etype[lo:hi]),
                "category": _take(_str_table(list(CATEGORIES)), np.maximum(ct, 0), ct < 0),
            }
        )

    w.write_chunks("app_events", p.size, build)


def _product_arrays() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    price = np.array([p.price for p in PRODUCTS])
    cat = np.array([CATEGORIES.index(p.category) for p in PRODUCTS])
    by_cat = [np.flatnonzero(cat == c) for c in range(len(CATEGORIES))]
    return price, cat, by_cat


def _baskets(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> None:
    rng = _rng(seed, "pos")
    start_s = as_of_s - HISTORY_DAYS * DAY
    rate = 0.5 + 7 * (1 - 0.5 * pop.digital) * (0.2 + pop.interest.mean(axis=1))
    nb = rng.poisson(rate)
    b_p = np.repeat(np.arange(pop.n), nb)
    b_t = start_s + rng.integers(0, HISTORY_DAYS * DAY, b_p.size)
    keep = _thin_recent(b_t, pop.churn[b_p], as_of_s, rng)
    b_p, b_t = b_p[keep], b_t[keep]
    order = _time_order(b_t, b_p)
    b_p, b_t = b_p[order], b_t[order]
    hh = pop.household[b_p]
    store = np.where(rng.random(b_p.size) < 0.8, pop.store[hh], rng.integers(1, 81, b_p.size))
    scanned = ids.has_loyalty[b_p] & (rng.random(b_p.size) < 0.85)

    lines = 1 + rng.binomial(2, 0.3, b_p.size)
    l_b = np.repeat(np.arange(b_p.size, dtype=np.int64), lines)
    l_p = b_p[l_b]
    in_store = np.array([1.0, 3.0, 0.3, 0.5, 0.0], dtype=np.float32)
    l_cat = _sample_rows(_category_weights(pop, in_store), l_p, rng)
    price, _, by_cat = _product_arrays()
    sizes = np.array([len(b) for b in by_cat])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    flat = np.concatenate(by_cat)
    l_prod = flat[offsets[l_cat] + (rng.random(l_b.size) * sizes[l_cat]).astype(np.int64)]
    amount = price[l_prod] * (0.8 + 0.12 * pop.income[l_p]) * rng.lognormal(0, 0.12, l_b.size)
    products = _str_table([p.product_id for p in PRODUCTS])
    stores = _str_table([f"S{i:03d}" for i in range(81)])

    def build(lo: int, hi: int) -> pa.Table:
        b = l_b[lo:hi]
        return pa.table(
            {
                "basket_id": pa.array(b + 1),
                "loyalty_id": pc.take(
                    ids.loyalty, pa.array(b_p[b].astype(np.int64), mask=~scanned[b])
                ),
                "store_id": _take(stores, store[b]),
                "ts": _timestamps(b_t[b] * 1_000_000),
                "product_id": _take(products, l_prod[lo:hi]),
                "category": _take(_str_table(list(CATEGORIES)), l_cat[lo:hi]),
                "amount": pa.array(np.round(amount[lo:hi], 2)),
            }
        )

    w.write_chunks("pos_baskets", l_b.size, build)


def _service_cases(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> np.ndarray:
    """Write service_cases and return the sorted complaint keys."""
    rng = _rng(seed, "service")
    start_s = as_of_s - HISTORY_DAYS * DAY
    persons = np.flatnonzero(ids.has_crm)
    nc = rng.poisson(0.15 + 3.5 * pop.complaint[persons] + 1.2 * pop.churn[persons])
    p = np.repeat(persons, nc)
    opened = start_s + rng.integers(0, HISTORY_DAYS * DAY, p.size)
    order = _time_order(opened, p)
    p, opened = p[order], opened[order]
    m = p.size
    complaint = rng.random(m) < np.minimum(0.08 + 1.6 * pop.complaint[p], 0.9)
    reason_c = rng.integers(0, len(_CASE_REASONS), m)
    svc_w = np.stack(
        [np.full(m, 1.0), np.full(m, 1.0), np.full(m, 0.4), 4.0 * pop.churn[p]], axis=1
    )
    reason_s = _sample_rows(svc_w, np.arange(m), rng)
    reasons = _str_table(list(_CASE_REASONS) + list(_SERVICE_REASONS))
    reason = np.where(complaint, reason_c, len(_CASE_REASONS) + reason_s)
    closed = opened + (3600 + rng.exponential(4 * DAY, m)).astype(np.int64)
    still_open = (closed >= as_of_s) | (rng.random(m) < 0.01)

    # Cases of persons with a duplicate CRM record sometimes sit on the duplicate.
    dup_pos = np.searchsorted(ids.crm_dup_of, p).clip(0, max(ids.crm_dup_of.size - 1, 0))
    on_dup = (ids.crm_dup_of.size > 0) & (ids.crm_dup_of[dup_pos] == p) & (rng.random(m) < 0.25)
    crm_id = pc.if_else(
        pa.array(on_dup),
        pc.take(ids.crm_dup, pa.array(dup_pos))
        if ids.crm_dup_of.size
        else pa.nulls(m, pa.string()),
        pc.take(ids.crm, pa.array(p)),
    )
    table = pa.table(
        {
            "case_id": _unique_ids(rng, m, "CS", 9),
            "crm_id": crm_id,
            "opened_at": _timestamps(opened * 1_000_000),
            "closed_at": _timestamps(closed * 1_000_000, still_open),
            "complaint": pa.array(complaint),
            "reason": _take(reasons, reason),
        }
    )
    w.write("service_cases", table)
    return np.sort((p[complaint].astype(np.int64) << 32) | (opened[complaint] - start_s))


def _holdings_and_products(
    pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = _rng(seed, "holdings")
    persons = np.flatnonzero(ids.has_crm)
    _, pcat, _ = _product_arrays()
    appeal = np.array([1.0, 0.5, 0.3, 0.3, 0.2, 0.2, 1.0, 0.5, 0.7, 0.4, 0.25, 0.4])
    prob = 0.01 + 0.45 * appeal[None, :] * pop.interest[persons][:, pcat] ** 2
    held = rng.random(prob.shape) < prob
    hp, hj = np.nonzero(held)
    hp = persons[hp]
    since = (
        as_of_s
        - (rng.random(hp.size) * np.minimum(pop.tenure_days[hp], 5 * 365) * DAY).astype(np.int64)
        - DAY
    )
    products = _str_table([p.product_id for p in PRODUCTS])
    w.write(
        "holdings",
        pa.table(
            {
                "crm_id": pc.take(ids.crm, pa.array(hp)),
                "product_id": _take(products, hj),
                "since": _timestamps(since * 1_000_000),
            }
        ),
    )
    stock = rng.integers(20, 2000, len(PRODUCTS))
    stock[[i for i, p in enumerate(PRODUCTS) if p.product_id in _OUT_OF_STOCK]] = 0
    w.write(
        "products",
        pa.table(
            {
                "product_id": products,
                "name": _str_table([p.name for p in PRODUCTS]),
                "category": _str_table([p.category for p in PRODUCTS]),
                "price": pa.array([p.price for p in PRODUCTS]),
                "margin": pa.array([p.margin for p in PRODUCTS]),
                "stock": pa.array(stock.astype(np.int64)),
            }
        ),
    )
    return hp, hj, since


def _consent(pop: _Population, ids: _Ids, seed: int, as_of_s: int, w: _Writer) -> None:
    rng = _rng(seed, "consent")
    start_s = as_of_s - HISTORY_DAYS * DAY
    base = {
        "marketing": [0.55, 0.4, 0.35, 0.3, 0.35, 0.2],
        "profiling": [0.3, 0.25, 0.25, 0.3, 0.3, 0.2],
        "service": [0.6, 0.5, 0.4, 0.3, 0.45, 0.5],
    }
    avail = {
        "email": pop.has_email,
        "sms": pop.has_mobile,
        "push": ids.has_app,
        "app": ids.has_app,
        "web": ids.has_crm | pop.has_email,
        "call_center": ids.has_crm | pop.has_mobile,
    }
    id_types = ("email", "crm_id", "app_account_id", "phone", "loyalty_id")
    sources = _str_table(["preference_centre", "crm", "app", "call_center", "pos"])
    parts_p, parts_k, parts_type = [], [], []
    for i, purpose in enumerate(PURPOSES):
        for j, channel in enumerate(CHANNELS):
            p = np.flatnonzero(avail[channel] & (rng.random(pop.n) < base[purpose][j]))
            if channel == "email":
                kind = np.zeros(p.size, np.int8)
            elif channel == "sms":
                kind = np.full(p.size, 3, np.int8)
            elif channel in ("push", "app"):
                kind = np.full(p.size, 2, np.int8)
            elif channel == "web":
                kind = np.where(ids.has_crm[p], 1, 0).astype(np.int8)
            else:
                kind = np.where(ids.has_crm[p], 1, 3).astype(np.int8)
            via_card = ids.has_loyalty[p] & (rng.random(p.size) < 0.12) & (channel != "push")
            kind[via_card] = 4
            parts_p.append(p)
            parts_k.append(np.full(p.size, i * len(CHANNELS) + j, np.int16))
            parts_type.append(kind)
    p = np.concatenate(parts_p)
    combo = np.concatenate(parts_k)
    kind = np.concatenate(parts_type)
    m = p.size
    t0 = start_s + rng.integers(0, HISTORY_DAYS * DAY, m)
    g0 = rng.random(m) < 0.85
    # Later changes of mind: withdraw a grant, grant after a refusal, grant again.
    change1 = rng.random(m) < np.where(g0, 0.18, 0.2)
    t1 = t0 + (rng.random(m) * (as_of_s - t0)).astype(np.int64)
    change2 = change1 & (rng.random(m) < 0.2)
    t2 = t1 + (rng.random(m) * (as_of_s - t1)).astype(np.int64)
    ev_i = np.concatenate([np.arange(m), np.flatnonzero(change1), np.flatnonzero(change2)])
    ev_t = np.concatenate([t0, t1[change1], t2[change2]])
    ev_g = np.concatenate([g0, ~g0[change1], g0[change2]])
    order = _time_order(ev_t, ev_i)
    ev_i, ev_t, ev_g = ev_i[order], ev_t[order], ev_g[order]

    # The id value as the recording system holds it.
    pp = pa.array(p)
    values = pc.choose(
        pa.array(kind),
        _email_forms(pc.take(pop.email1, pp), rng, [0.75, 0.15, 0.05, 0.05]),
        pc.take(ids.crm, pp),
        pc.take(ids.app, pp),
        _phone_forms(pop.mobile[p], rng, _PHONE_PROBS),
        pc.take(ids.loyalty, pp),
    )
    purposes = _str_table([pu for pu in PURPOSES for _ in CHANNELS])
    channels = _str_table([ch for _ in PURPOSES for ch in CHANNELS])
    ev = pa.array(ev_i)
    table = pa.table(
        {
            "consent_event_id": pa.array(np.arange(1, ev_i.size + 1, dtype=np.int64)),
            "id_type": _take(_str_table(list(id_types)), kind[ev_i]),
            "id_value": pc.take(values, ev),
            "purpose": _take(purposes, combo[ev_i]),
            "channel": _take(channels, combo[ev_i]),
            "granted": pa.array(ev_g),
            "ts": _timestamps(ev_t * 1_000_000),
            "source": _take(sources, kind[ev_i]),
        }
    )
    w.write("consent", table)


# --------------------------------------------------------------------------------------
# response model and campaigns


def _action_values(pop: _Population, persons: np.ndarray) -> np.ndarray:
    """Expected revenue given response, [m, 1 + len(ACTIONS)] (control first)."""
    scale = 0.75 + 0.15 * pop.income[persons].astype(np.float64)
    prices = {p.product_id: p.price for p in PRODUCTS}
    base = [120.0]
    for a in ACTIONS:
        if a.product_id is not None:
            base.append(prices[a.product_id])
        elif a.kind == "retention":
            base.append(320.0)
        else:
            base.append(25.0)
    return scale[:, None] * np.asarray(base)[None, :]


def _response_probs(
    pop: _Population,
    persons: np.ndarray,
    recent_complaint: np.ndarray,
    repeat: np.ndarray,
    holds: np.ndarray,
) -> np.ndarray:
    """Response probabilities [m, 1 + len(ACTIONS)] (control first) given the state.

    ``repeat`` is [m, n_categories] recent repeat interest, ``holds`` [m, n_products].
    """
    inter = pop.interest[persons].astype(np.float64)
    digital = pop.digital[persons].astype(np.float64)
    churn = pop.churn[persons].astype(np.float64)
    income = pop.income[persons].astype(np.float64)
    rc = recent_complaint.astype(np.float64)
    base = (
        -2.3
        + 1.4 * (inter.max(axis=1) - 0.45)
        + 0.22 * income
        + 0.5 * repeat.any(axis=1)
        - 0.9 * churn
        + 0.15 * (pop.tenure_days[persons] > 3 * 365)
    )
    product_index = {p.product_id: i for i, p in enumerate(PRODUCTS)}
    channel_aff = {
        "email": 0.0,
        "sms": 0.1,
        "push": 0.8 * (digital - 0.5),
        "web": 0.6 * (digital - 0.5),
    }
    logits = [base]
    for a in ACTIONS:
        if a.category is not None and a.product_id is not None:
            c = CATEGORIES.index(a.category)
            tau = (
                0.1
                + 2.6 * (inter[:, c] - 0.3)
                + 1.1 * repeat[:, c]
                + channel_aff.get(a.channel, 0.0)
                - 1.8 * rc  # sleeping dogs: a sales push right after a complaint backfires
                - 3.0 * np.maximum(churn - 0.45, 0.0)
                - 1.2 * holds[:, product_index[a.product_id]]
            )
            if a.kind == "upsell":
                tau = tau + 0.2 * income - 0.3
        elif a.action_id == "app_loyalty_bonus":
            tau = -0.3 + 3.0 * churn * digital - 0.6 * rc
        elif a.action_id == "call_retention_offer":
            tau = -0.5 + 3.0 * churn + 0.9 * rc - 0.5 * digital
        else:  # service tips: mildly helpful for people who struggle
            tau = 0.05 + 1.5 * pop.complaint[persons] - 0.3 * digital
        logits.append(base + tau)
    return _sigmoid(np.stack(logits, axis=1))


def _state_at(
    state: _State, persons: np.ndarray, t: np.ndarray, start_s: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Sorted queries make numpy's searchsorted walk the keys in order (much faster).
    order = _time_order(t, persons)
    order = order[np.argsort(persons[order], kind="stable")]
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    persons, t = persons[order], t[order]
    rel = t - start_s
    k = len(CATEGORIES)
    rc = _window_count(state.complaint_keys, persons, rel, COMPLAINT_WINDOW_DAYS * DAY) > 0
    repeat = np.stack(
        [
            _window_count(
                state.repeat_keys, persons.astype(np.int64) * k + c, rel, REPEAT_WINDOW_DAYS * DAY
            )
            > 0
            for c in range(k)
        ],
        axis=1,
    )
    # Holdings per (person, product) with their start; few per person, so a sorted lookup.
    hkey = state.hold_person.astype(np.int64) * len(PRODUCTS) + state.hold_product
    order = np.argsort(hkey, kind="stable")
    hkey, hsince = hkey[order], state.hold_since_s[order]
    holds = np.zeros((persons.size, len(PRODUCTS)), dtype=bool)
    for j in range(len(PRODUCTS)):
        q = persons.astype(np.int64) * len(PRODUCTS) + j
        pos = np.searchsorted(hkey, q).clip(0, max(hkey.size - 1, 0))
        if hkey.size:
            holds[:, j] = (hkey[pos] == q) & (hsince[pos] <= t)
    return rc[inverse], repeat[inverse], holds[inverse]


def _campaigns(
    pop: _Population, ids: _Ids, state: _State, seed: int, as_of_s: int, w: _Writer
) -> None:
    rng = _rng(seed, "campaigns")
    start_s = as_of_s - HISTORY_DAYS * DAY
    arm_names = [CONTROL_ARM] + [a.action_id for a in ACTIONS]
    crm_p = np.flatnonzero(ids.has_crm)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("p", "t", "arm", "prob", "cmp")}
    for c in range(8):
        c_start = as_of_s - 365 * DAY + c * 38 * DAY + int(rng.integers(0, 5 * DAY))
        arms = (
            np.sort(
                rng.choice(len(ACTIONS), size=int(rng.integers(4, len(ACTIONS) + 1)), replace=False)
            )
            + 1
        )
        p_control = float(rng.choice([0.2, 0.25, 0.3]))
        # Stated probabilities: rounded to cents, at least 5% per arm, summing to one.
        free = 1 - p_control - 0.05 * arms.size
        split = np.round(0.05 + rng.dirichlet(np.full(arms.size, 6.0)) * free, 2)
        split[np.argmax(split)] += round(1 - p_control - split.sum(), 2)
        probs = np.concatenate([[p_control], split])
        arm_ids = np.concatenate([[0], arms])
        eligible = crm_p[ids.crm_created_s[crm_p] < c_start]
        chosen = eligible[rng.random(eligible.size) < rng.uniform(0.45, 0.7)]
        parts["p"].append(chosen)
        parts["t"].append(c_start + rng.integers(0, 7 * DAY, chosen.size))
        which = _choose(rng, chosen.size, list(probs))
        parts["arm"].append(arm_ids[which])
        parts["prob"].append(probs[which])
        parts["cmp"].append(np.full(chosen.size, c, np.int8))
    p, t, arm, prob, cmp_ = (np.concatenate(parts[k]) for k in ("p", "t", "arm", "prob", "cmp"))
    order = _time_order(t, p)
    p, t, arm, prob, cmp_ = p[order], t[order], arm[order], prob[order], cmp_[order]

    rc, repeat, holds = _state_at(state, p, t, start_s)
    probs_all = _response_probs(pop, p, rc, repeat, holds)
    values = _action_values(pop, p)
    rows = np.arange(p.size)
    p_arm = probs_all[rows, arm]
    responded = rng.random(p.size) < p_arm
    sigma = 0.3
    revenue = np.where(
        responded, values[rows, arm] * rng.lognormal(-(sigma**2) / 2, sigma, p.size), 0.0
    )
    exposure_id = np.arange(1, p.size + 1, dtype=np.int64)
    w.write(
        "campaign_history",
        pa.table(
            {
                "exposure_id": pa.array(exposure_id),
                "crm_id": pc.take(ids.crm, pa.array(p)),
                "campaign_id": _take(_str_table([f"cmp_{i + 1:02d}" for i in range(8)]), cmp_),
                "exposed_at": _timestamps(t * 1_000_000),
                "action_id": _take(_str_table(arm_names), arm),
                "assignment_probability": pa.array(prob.astype(np.float64)),
                "responded": pa.array(responded.astype(np.int8)),
                "revenue": pa.array(np.round(revenue, 2)),
                "outcome_window_days": pa.array(np.full(p.size, OUTCOME_WINDOW_DAYS, np.int16)),
            }
        ),
    )
    w.write(
        "campaign_truth",
        pa.table(
            {
                "exposure_id": pa.array(exposure_id),
                "person_id": _person_ids(p),
                "p_response_assigned_arm": pa.array(p_arm),
                "p_response_no_action": pa.array(probs_all[:, 0]),
            }
        ),
        truth=True,
    )


def _truth(pop: _Population, ids: _Ids, state: _State, as_of_s: int, w: _Writer) -> None:
    persons = np.arange(pop.n)
    start_s = as_of_s - HISTORY_DAYS * DAY
    pid = _person_ids(persons)
    hid = pc.binary_join_element_wise(
        "H", pc.utf8_lpad(pc.cast(pa.array(pop.household), pa.string()), 7, "0"), ""
    )
    cols: dict[str, pa.Array] = {
        "person_id": pid,
        "household_id": hid,
        "age": pa.array(pop.age.astype(np.int16)),
        "income_tier": pa.array(pop.income),
        "tenure_days": pa.array(pop.tenure_days),
    }
    for c, name in enumerate(CATEGORIES):
        cols[f"interest_{name}"] = pa.array(pop.interest[:, c])
    cols["digital_affinity"] = pa.array(pop.digital)
    cols["churn_risk"] = pa.array(pop.churn)
    cols["complaint_propensity"] = pa.array(pop.complaint)
    cols["has_crm"] = pa.array(ids.has_crm)
    w.write("persons", pa.table(cols), truth=True)
    w.write("households", pa.table({"household_id": hid, "person_id": pid}), truth=True)
    w.write("records", pa.concat_tables(ids.records), truth=True)

    response: dict[str, pa.Array] = {"person_id": pid}
    arm_names = [CONTROL_ARM] + [a.action_id for a in ACTIONS]
    chunk = 200_000
    probs_parts, value_parts = [], []
    for lo in range(0, pop.n, chunk):
        p = persons[lo : lo + chunk]
        rc, repeat, holds = _state_at(state, p, np.full(p.size, as_of_s, np.int64), start_s)
        probs_parts.append(_response_probs(pop, p, rc, repeat, holds))
        value_parts.append(_action_values(pop, p))
    probs, values = np.concatenate(probs_parts), np.concatenate(value_parts)
    for i, a in enumerate(arm_names):
        response[f"p_{a}"] = pa.array(probs[:, i])
    for i, a in enumerate(arm_names):
        response[f"value_{a}"] = pa.array(values[:, i])
    w.write("response", pa.table(response), truth=True)


# --------------------------------------------------------------------------------------
# entry point

#: Files written, in order (for progress bars).
OUTPUT_FILES: tuple[str, ...] = (
    "crm_accounts",
    "email_leads",
    "loyalty_members",
    "app_accounts",
    "service_cases",
    "web_events",
    "app_events",
    "pos_baskets",
    "holdings",
    "products",
    "consent",
    "campaign_history",
    "campaign_truth",
    "persons",
    "households",
    "records",
    "response",
)


def generate(
    n_customers: int,
    seed: int,
    out_dir: Path,
    as_of: datetime = DEFAULT_AS_OF,
    progress: ProgressCallback | None = None,
) -> GenerationSummary:
    """Generate the source exports for ``n_customers`` persons into ``out_dir``.

    Exports go to ``out_dir/*.parquet`` and the truth to ``out_dir/truth/``. The same
    ``(n_customers, seed, as_of)`` gives byte-identical files. ``progress`` is called with
    the name of each file once it is written (see :data:`OUTPUT_FILES`).
    """
    if n_customers < 10:
        raise ValueError(f"n_customers must be at least 10, got {n_customers}")
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    as_of_s = int(as_of.timestamp())
    writer = _Writer(out_dir, progress)

    pop = _population(n_customers, seed, as_of_s)
    name_rng = _rng(seed, "names")
    first_v = _name_variants(_FIRST_NAMES, name_rng)
    last_v = _name_variants(_LAST_NAMES, name_rng)
    ids = _identity_sources(pop, seed, as_of_s, writer, first_v, last_v)
    complaint_keys = _service_cases(pop, ids, seed, as_of_s, writer)
    repeat_keys = _web_events(pop, ids, seed, as_of_s, writer)
    _app_events(pop, ids, seed, as_of_s, writer)
    _baskets(pop, ids, seed, as_of_s, writer)
    hp, hj, since = _holdings_and_products(pop, ids, seed, as_of_s, writer)
    _consent(pop, ids, seed, as_of_s, writer)
    state = _State(complaint_keys, repeat_keys, hp, hj, since)
    _campaigns(pop, ids, state, seed, as_of_s, writer)
    _truth(pop, ids, state, as_of_s, writer)
    return GenerationSummary(
        out_dir=out_dir,
        seed=seed,
        as_of=as_of,
        n_persons=pop.n,
        n_households=pop.n_households,
        rows=dict(writer.rows),
    )
