"""The persons and their households: the name, street and city lists they are drawn from,
their latent attributes (age, income, tenure, category interests, digital affinity, churn
risk, complaint propensity), their contacts and their addresses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nextbest.demo.generate.arrays import _rng, _str_table, _take
from nextbest.demo.generate.catalog import CATEGORIES, DAY

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
    # Small draws can hold fewer places than persons: the rest live alone (no draw, so
    # every world that had enough places is unchanged).
    sizes = np.concatenate([sizes, np.ones(max(n - int(sizes.sum()), 0), dtype=sizes.dtype)])
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
