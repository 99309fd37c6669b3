"""A third world: a retail bank's exports as its own systems write them.

Written by a script that knows nothing of nextbest (it imports nothing of the product):
the bank's core banking system, card system, online banking, payments, branches, CRM,
consent log, product system and campaign tool each export their own files.

- ``core/customers.csv``: one row per customer number, day-first dates, upper-case
  surnames, phones in five notations. About 5 % of persons hold a second customer number
  (a married name, with the former surname kept, or a move to a new address), opened
  later, with consent rows, holdings, complaints and campaign selections of its own; its
  records keep two of phone, e-mail and address. Records are keyed as branches key them
  (a few typos, a day and month swapped, abbreviated streets, flats, postcodes without
  their space), and the card system embosses short forms of some first names.
- ``cards/cardholders.csv`` and ``online/logins.parquet``: card and online-banking
  records without a customer number (name, mobile, e-mail, postcode; login e-mail and
  phone), ``online/sessions.csv`` what logged-in users looked at (ISO "Z" times).
- ``payments/transactions.csv``: one file whose ``AcctKey`` is a customer number or a
  card reference (``KeyType`` CUS or CRD), unsigned amounts with a D/C flag.
- ``branch/visits.csv``: branch visits that carry only the phone the visitor gave.
- ``crm/cases.csv``, ``crm/complaints.csv``; ``consent/consent_log.csv`` (a consent event
  log keyed by customer number: grants and withdrawals per purpose and channel code).
- ``products/holdings.csv``: products held with their balances.
- ``marketing/contact_history.csv``: offers sent and business-as-usual mailings
  (newsletters, rate-change letters) that are no catalog action.
- ``marketing/campaigns/*.csv``: randomised campaigns, one file each, with a treatment
  reference, cells (offer codes, ``HOLDOUT`` is control) and each row's assignment
  probability, which differs between campaigns and, in one, between segments;
  ``marketing/legacy/*.csv`` an older campaign export without a treatment reference.

``truth/`` (marked as owned by its writer: the product never reads it) holds what the
evaluation needs: the person of every identity record (``records.csv``, record ids as
``{system}:{native id}``: ``core:``, ``card:``, ``online:``), the persons
(``persons.csv``), every branch visit's person, each person's consent state at the end
of the exports across all their customer numbers (``consent_state.csv``), their
complaints (``complaints.csv``), every campaign selection (``exposures.csv``) and their
true response probabilities and values with and without each offer (``response.csv``, by
catalog action id).

``tests/worlds/retail_bank/`` holds the bank's ``sources.yaml`` (copied beside the
data), ``catalog.yaml`` and ``policy.yaml``. Deterministic in ``(persons, seed, end)``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

CONFIG_DIR = Path(__file__).resolve().parent / "retail_bank"
#: The default end of the exports: nothing is later.
END = datetime(2025, 9, 30, tzinfo=UTC)
DAY = pd.Timedelta(days=1)

#: The bank's offer codes, the catalog action each one is, its channel and purpose codes.
OFFERS: dict[str, tuple[str, str, str]] = {
    "OFF-SAV": ("email_saver_offer", "EML", "MKT"),
    "OFF-LON": ("email_loan_offer", "EML", "MKT"),
    "OFF-PLT": ("sms_platinum_upgrade", "SMS", "MKT"),
    "OFF-MTG": ("branch_remortgage_review", "BRN", "ADV"),
}
#: Value of a response per offer code (what the bank books), and the control's.
VALUES = {"HOLDOUT": 100.0, "OFF-SAV": 80.0, "OFF-LON": 150.0, "OFF-PLT": 120.0, "OFF-MTG": 600.0}
#: Campaigns: start (days before the end), cells with their probabilities (a second set for
#: mortgage holders where the design differs by segment), share of customer numbers
#: selected, and whether the campaign tool's export has a treatment reference.
CAMPAIGNS: dict[str, dict] = {
    "SAV24Q4": {"start": 330, "cells": {"HOLDOUT": 0.5, "OFF-SAV": 0.5}, "ref": False},
    "PLT25Q1": {"start": 240, "cells": {"HOLDOUT": 0.3, "OFF-PLT": 0.7}, "ref": True},
    "MTG25Q2": {
        "start": 180,
        "cells": {"HOLDOUT": 0.8, "OFF-MTG": 0.2},
        "holders": {"HOLDOUT": 0.2, "OFF-MTG": 0.8},
        "ref": True,
    },
    "MIX25Q2": {
        "start": 140,
        "cells": {"HOLDOUT": 0.25, "OFF-SAV": 0.25, "OFF-LON": 0.25, "OFF-PLT": 0.25},
        "ref": True,
    },
    "SAV25Q3": {"start": 85, "cells": {"HOLDOUT": 0.4, "OFF-SAV": 0.6}, "ref": True},
    "LON25Q3": {"start": 50, "cells": {"HOLDOUT": 0.4, "OFF-LON": 0.6}, "ref": True},
}
#: Product codes of the bank's product system.
PRODUCTS = {
    "CA01": "current_account",
    "SV10": "easy_saver",
    "CC20": "classic_card",
    "CC21": "platinum_card",
    "MG30": "fixed_mortgage",
    "LN40": "personal_loan",
}
CHANNEL_CODES = {"EML": "email", "SMS": "sms", "BRN": "branch", "ONL": "web", "PST": "post"}
PURPOSE_CODES = {"MKT": "marketing", "PROF": "profiling", "ADV": "advice", "SVC": "service"}

_FIRST = (
    "Anna Ben Clara David Emma Finn Grace Harry Isla Jack Katie Liam Mia Noah Olivia Oscar "
    "Poppy Ruby Sam Sophie Tom Amelia Ava Charlie Daisy Ella Evie Freya George Henry Jacob "
    "Leo Lily Lucy Max Millie Molly Oliver Rosie Thomas"
).split()
_LAST = (
    "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Thompson Evans "
    "Walker White Roberts Green Hall Wood Jackson Clarke Patel Khan Lewis James Phillips "
    "Mason Mitchell Rose Davis Rodriguez Cox Alexander Morgan Moore Hughes Ward"
).split()
_STREETS = (
    "High Street, Station Road, Church Lane, Mill Lane, Park Avenue, Victoria Road, "
    "Green Lane, Manor Road, Kings Road, Queens Road, The Crescent, Orchard Way"
).split(", ")
_TOWNS = ("Leeds", "York", "Harrogate", "Wakefield", "Bradford", "Halifax")
_DOMAINS = ("mail.test", "post.test", "inbox.test")

#: A person with two customer numbers (a married name) and a classic card: e-mail and SMS
#: marketing granted under the first number, e-mail withdrawn under the second, and a
#: complaint three weeks before the end under the second. The tests decide for them by
#: their first number: no e-mail offer (consent), no upgrade by SMS (complaint).
KNOWN_PERSON = "P00000"


@dataclass(frozen=True)
class RetailBank:
    """Where the exports went and the files that describe them."""

    data_dir: Path
    sources: Path
    truth_dir: Path
    end: datetime
    catalog: Path = CONFIG_DIR / "catalog.yaml"
    policy: Path = CONFIG_DIR / "policy.yaml"


def _phone_as_written(mobile: str, style: int) -> str:
    """One of the five notations the bank's systems hold a mobile number in."""
    national = mobile  # "07" + 9 digits
    body = national[1:]
    return (
        f"{national[:5]} {national[5:]}",  # 07700 900123
        f"+44 {body[:4]} {body[4:]}",  # +44 7700 900123
        f"44{body}",  # 447700900123
        f"0044 {body[:4]} {body[4:]}",  # 0044 7700 900123
        f"{national[:5]}-{national[5:8]}-{national[8:]}",  # 07700-900-123
    )[style % 5]


#: Short forms the card system embosses.
_NICKNAMES = {
    "Thomas": "Tom",
    "Oliver": "Ollie",
    "Jacob": "Jake",
    "Katie": "Kate",
    "Samuel": "Sam",
    "Charlie": "Charles",
    "Harry": "Henry",
    "Molly": "Mary",
}


def _typo(word: str, rng: np.random.Generator) -> str:
    """A keying error: two neighbouring letters swapped, or one left out."""
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 2))
    if rng.random() < 0.5:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i + 1 :]


def _as_keyed(p: dict, rng: np.random.Generator) -> dict:
    """How a branch keyed a record in: a few typos, abbreviated streets, postcodes
    without their space or in lower case."""
    if rng.random() < 0.03:
        p["Forenames"] = _typo(p["Forenames"], rng)
    if rng.random() < 0.02:
        p["Surname"] = _typo(p["Surname"], rng)
    if rng.random() < 0.04:  # the date of birth keyed day and month swapped, or a year off
        d, m, y = p["DateOfBirth"].split("/")
        swap = int(d) <= 12 and d != m and rng.random() < 0.5
        p["DateOfBirth"] = f"{m}/{d}/{y}" if swap else f"{d}/{m}/{int(y) + 1}"
    if rng.random() < 0.15:
        p["AddressLine1"] = p["AddressLine1"].replace("Road", "Rd").replace("Street", "St")
    elif rng.random() < 0.08:  # a flat or a house name in front of the street
        p["AddressLine1"] = f"Flat {int(rng.integers(1, 9))}, {p['AddressLine1']}"
    if rng.random() < 0.2:
        p["Postcode"] = p["Postcode"].replace(" ", "")
    elif rng.random() < 0.1:
        p["Postcode"] = p["Postcode"].lower()
    return p


def _day(ts: pd.Series | pd.Timestamp) -> pd.Series | str:
    return ts.strftime("%d/%m/%Y") if isinstance(ts, pd.Timestamp) else ts.dt.strftime("%d/%m/%Y")


def _iso_z(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _at(end: pd.Timestamp, rng: np.random.Generator, lo_days: float, hi_days: float, n: int):
    """``n`` times uniformly between ``hi_days`` and ``lo_days`` before ``end``."""
    secs = rng.uniform(lo_days * 86_400, hi_days * 86_400, n)
    return pd.Series(end - pd.to_timedelta(np.round(secs), unit="s"))


def _persons(n: int, rng: np.random.Generator, end: pd.Timestamp) -> pd.DataFrame:
    first = rng.choice(_FIRST, n)
    last = rng.choice(_LAST, n)
    house = rng.integers(0, max(int(n * 0.85), 1), n)  # some share an address (households)
    dob = pd.Timestamp("1946-01-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 58 * 365, n), unit="D"
    )
    email = [
        f"{f}.{s}{i}@{_DOMAINS[i % 3]}".lower() if rng.random() < 0.88 else ""
        for i, (f, s) in enumerate(zip(first, last, strict=True))
    ]
    saver = rng.random(n) < 0.45  # puts money aside: the savings offer works for them
    spender = rng.gamma(2.0, 0.7, n)  # card spend level
    borrower = (~saver) & (rng.random(n) < 0.55)  # short of cash: the loan offer works
    digital = rng.beta(2.5, 2.0, n)
    people = pd.DataFrame(
        {
            "person_id": [f"P{i:05d}" for i in range(n)],
            "first_name": first,
            "last_name": last,
            "date_of_birth": dob.strftime("%Y-%m-%d"),
            "mobile": [f"07{700000000 + i * 7:09d}" for i in range(n)],
            "email": email,
            "house": house,
            "opened": end - pd.to_timedelta(rng.integers(400, 16 * 365, n), unit="D"),
            "saver": saver,
            "spender": spender,
            "borrower": borrower,
            "digital": digital,
        }
    )
    people["street"] = [f"{h % 180 + 1} {_STREETS[h % len(_STREETS)]}" for h in house]
    people["town"] = [_TOWNS[h % len(_TOWNS)] for h in house]
    people["postcode"] = [f"LS{h % 25 + 1} {h % 9 + 1}{'ABDEFGHJ'[h % 8]}X" for h in house]
    return people


def _customer_numbers(
    people: pd.DataFrame, rng: np.random.Generator, end: pd.Timestamp
) -> pd.DataFrame:
    """One core record per person, and a second for about 5 % (married name or move)."""
    n = len(people)
    rows = []
    second = set(np.flatnonzero(rng.random(n) < 0.05).tolist()) | {0}
    numbers = rng.permutation(np.arange(10_000_000, 10_000_000 + 3 * n))
    k = 0
    for i, p in people.iterrows():
        style = int(rng.integers(0, 5))
        keyed = _as_keyed if i != 0 else (lambda r, _rng: r)  # the known person: clean
        rows.append(
            keyed(
                {
                    "person": i,
                    "CustNo": str(numbers[k]),
                    "Surname": p.last_name.upper(),
                    "Forenames": p.first_name,
                    "FormerSurname": "",
                    "DateOfBirth": pd.Timestamp(p.date_of_birth).strftime("%d/%m/%Y"),
                    "MobileNo": _phone_as_written(p.mobile, style),
                    "EmailAddr": p.email,
                    "AddressLine1": p.street,
                    "Town": p.town,
                    "Postcode": p.postcode,
                    "Opened": p.opened,
                    "reason": "first",
                },
                rng,
            )
        )
        k += 1
        if i not in second:
            continue
        married = i == 0 or rng.random() < 0.6
        moved = not married or (i != 0 and rng.random() < 0.3)  # a married person too
        new = keyed(dict(rows[-1]), rng)
        new["CustNo"] = str(numbers[k])
        k += 1
        new["Opened"] = p.opened + (end - p.opened) * float(rng.uniform(0.5, 0.85))
        new["MobileNo"] = _phone_as_written(p.mobile, int(rng.integers(0, 5)))
        if married:
            surname = str(rng.choice([s for s in _LAST if s != p.last_name]))
            new["Surname"] = surname.upper()
            new["FormerSurname"] = p.last_name.upper()
            # a new e-mail with the new name, but not by those who also moved: the bank's
            # records of one person share two of phone, e-mail and address
            if p.email and not moved and rng.random() < 0.5:
                new["EmailAddr"] = f"{p.first_name}.{surname}@{_DOMAINS[i % 3]}".lower()
            new["reason"] = "married"
        if moved:
            h = int(rng.integers(0, 10_000))
            new["AddressLine1"] = f"{h % 180 + 1} {_STREETS[(h + 5) % len(_STREETS)]}"
            new["Town"] = _TOWNS[(h + 1) % len(_TOWNS)]
            new["Postcode"] = f"HG{h % 9 + 1} {h % 7 + 1}QZ"
            new["reason"] = "married and moved" if married else "moved"
        rows.append(new)
    return pd.DataFrame(rows)


def write_retail_bank(
    out: Path, persons: int = 800, seed: int = 23, end: datetime | None = None
) -> RetailBank:
    """Write the bank's exports under ``out`` and the truth under ``out/truth``."""
    out = Path(out)
    end_ts = pd.Timestamp(end or END).tz_convert("UTC")
    rng = np.random.default_rng(seed)
    for sub in ("core", "cards", "online", "payments", "branch", "crm", "consent", "products"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("marketing/campaigns", "marketing/legacy", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    people = _persons(persons, rng, end_ts)
    core = _customer_numbers(people, rng, end_ts)
    records = [("core:" + core["CustNo"], core["person"])]

    core["Opened"] = pd.to_datetime(core["Opened"], utc=True)
    export = core.drop(columns=["person", "reason"]).copy()
    export["Opened"] = _day(core["Opened"])
    export.to_csv(out / "core" / "customers.csv", index=False)

    holdings = _holdings(people, core, rng, end_ts)
    holds = holdings.groupby("person")["ProductCode"].apply(set)
    has = {
        code: holds.map(lambda s, c=code: c in s).reindex(people.index, fill_value=False)
        for code in PRODUCTS
    }
    cards = _cards(people, core, has, rng, end_ts)
    records.append(("card:" + cards["CardRef"], cards["person"]))
    logins = _logins(people, rng, end_ts)
    records.append(("online:" + logins["LoginId"], logins["person"]))
    _sessions(people, logins, rng, end_ts).to_csv(out / "online" / "sessions.csv", index=False)
    cards.drop(columns="person").to_csv(out / "cards" / "cardholders.csv", index=False)
    logins.drop(columns="person").to_parquet(out / "online" / "logins.parquet", index=False)
    _transactions(people, core, cards, rng, end_ts).to_csv(
        out / "payments" / "transactions.csv", index=False
    )
    visits = _branch_visits(people, rng, end_ts)
    visits.drop(columns="person").to_csv(out / "branch" / "visits.csv", index=False)
    complaints = _cases_and_complaints(out, people, core, rng, end_ts)
    consent = _consent(people, core, rng, end_ts)
    consent.drop(columns="person").to_csv(out / "consent" / "consent_log.csv", index=False)
    export_h = holdings.drop(columns="person").copy()
    export_h["OpenDate"] = _day(holdings["OpenDate"])
    export_h["AsAt"] = _day(end_ts - DAY)  # the balances are those of the export's last day
    export_h.to_csv(out / "products" / "holdings.csv", index=False)

    response = _response(people, has)
    selections, contacts = _campaigns(out, people, core, has, response, rng, end_ts)
    mailings = _mailings(people, core, consent, end_ts)
    ct = pd.concat([contacts, mailings], ignore_index=True).sort_values("ts", kind="stable")
    ct["SentAt"] = ct["ts"].dt.strftime("%d/%m/%Y %H:%M:%S")
    ct.drop(columns="ts").to_csv(out / "marketing" / "contact_history.csv", index=False)

    _write_truth(out / "truth", people, records, visits, consent, complaints, response)
    selections.to_csv(out / "truth" / "exposures.csv", index=False)
    shutil.copy(CONFIG_DIR / "sources.yaml", out / "sources.yaml")
    return RetailBank(out, out / "sources.yaml", out / "truth", end_ts.to_pydatetime())


def _holdings(
    people: pd.DataFrame, core: pd.DataFrame, rng: np.random.Generator, end: pd.Timestamp
) -> pd.DataFrame:
    """Products per customer number, with balances as of the export."""
    rows = []
    for _, c in core.iterrows():
        p = people.loc[c.person]
        opened = c.Opened
        if c.reason == "first":
            rows.append((c.person, c.CustNo, "CA01", opened, rng.gamma(2.0, 900.0)))
            if p.saver and rng.random() < 0.35:
                rows.append((c.person, c.CustNo, "SV10", opened + 30 * DAY, rng.gamma(2, 6000)))
            if rng.random() < 0.55 or c.person == 0:
                code = "CC21" if rng.random() < 0.12 and c.person != 0 else "CC20"
                rows.append((c.person, c.CustNo, code, opened + 60 * DAY, rng.gamma(2, 400)))
            if rng.random() < 0.28 and c.person != 0:
                start = end - int(rng.integers(200, 8 * 365)) * DAY
                rows.append((c.person, c.CustNo, "MG30", start, rng.gamma(3, 40_000)))
            if p.borrower and rng.random() < 0.2:
                start = end - int(rng.integers(60, 4 * 365)) * DAY
                rows.append((c.person, c.CustNo, "LN40", start, rng.gamma(2, 3000)))
        else:  # the second number: a new current account, sometimes the mortgage of a move
            rows.append((c.person, c.CustNo, "CA01", opened, rng.gamma(2.0, 900.0)))
            if c.reason != "married" and rng.random() < 0.4:
                rows.append((c.person, c.CustNo, "MG30", opened, rng.gamma(3, 40_000)))
    df = pd.DataFrame(rows, columns=["person", "CustNo", "ProductCode", "OpenDate", "Balance"])
    df["Balance"] = df["Balance"].round(2)
    df["OpenDate"] = df["OpenDate"].where(df["OpenDate"] < end - DAY, end - 2 * DAY)
    return df


def _cards(
    people: pd.DataFrame,
    core: pd.DataFrame,
    has: dict[str, pd.Series],
    rng: np.random.Generator,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """The card system's cardholders: no customer number; the name as on the card."""
    rows = []
    latest = core.groupby("person").tail(1).set_index("person")
    for i in np.flatnonzero((has["CC20"] | has["CC21"]).to_numpy()):
        c = latest.loc[i]
        p = people.loc[i]
        rows.append(
            {
                "person": i,
                "CardRef": f"CRD{rng.integers(10**8, 10**9)}",
                "Cardholder": f"{_embossed(p.first_name, rng)} {c.Surname.title()}",
                "Mobile": _phone_as_written(p.mobile, int(rng.integers(0, 5))),
                "Email": c.EmailAddr if rng.random() < 0.6 else "",
                "PostCode": c.Postcode.replace(" ", "") if rng.random() < 0.5 else c.Postcode,
                "Issued": _day(min(c.Opened + 90 * DAY, end - 5 * DAY)),
            }
        )
    return pd.DataFrame(rows)


def _embossed(first: str, rng: np.random.Generator) -> str:
    if first in _NICKNAMES and rng.random() < 0.5:
        return _NICKNAMES[first]
    return _typo(first, rng) if rng.random() < 0.04 else first


def _logins(people: pd.DataFrame, rng: np.random.Generator, end: pd.Timestamp) -> pd.DataFrame:
    """Online-banking users: a login e-mail and a phone, no customer number."""
    who = np.flatnonzero((rng.random(len(people)) < 0.35 + 0.4 * people["digital"]).to_numpy())
    who = who[people["email"].to_numpy()[who] != ""]
    reg = end - pd.to_timedelta(rng.integers(30, 6 * 365, len(who)), unit="D")
    return pd.DataFrame(
        {
            "person": who,
            "LoginId": [f"u{rng.integers(10**6, 10**7)}" for _ in who],
            "LoginEmail": [
                e.upper() if rng.random() < 0.3 else e for e in people["email"].to_numpy()[who]
            ],
            "Phone": ["+44 " + m[1:] for m in people["mobile"].to_numpy()[who]],
            "Registered": pd.Series(reg, dtype="datetime64[ns, UTC]"),
        }
    )


def _sessions(
    people: pd.DataFrame, logins: pd.DataFrame, rng: np.random.Generator, end: pd.Timestamp
) -> pd.DataFrame:
    rows = []
    for _, u in logins.iterrows():
        p = people.loc[u.person]
        k = int(rng.poisson(4 + 14 * p.digital))
        when = _at(end, rng, 0.05, 365, k)
        interest = np.array([1.0 + 2 * p.saver, 1.0 + p.spender, 0.6, 0.5 + 2 * p.borrower])
        section = rng.choice(
            ["SAVINGS", "CARDS", "MORTGAGES", "LOANS"], k, p=interest / interest.sum()
        )
        action = np.where(rng.random(k) < 0.25, "CALC", "PAGE")
        rows.append(
            pd.DataFrame(
                {"LoginId": u.LoginId, "Started": when, "Action": action, "Section": section}
            )
        )
    df = pd.concat(rows, ignore_index=True).sort_values("Started", kind="stable")
    df["Started"] = _iso_z(df["Started"])
    return df


def _transactions(
    people: pd.DataFrame,
    core: pd.DataFrame,
    cards: pd.DataFrame,
    rng: np.random.Generator,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """Account transactions keyed by customer number, card payments by card reference."""
    rows = []
    for _, c in core.iterrows():
        p = people.loc[c.person]
        since = max((end - c.Opened).days, 30)
        span = min(since, 400)
        for kind, rate, scale, dc in (
            ("BILL", 2.0, 60.0, "D"),
            ("SAL", 1.0, 1800.0, "C"),
            ("SAV", 1.5 * p.saver, 250.0, "D"),
        ):
            k = int(rng.poisson(rate * span / 30))
            if not k:
                continue
            when = _at(end, rng, 1, span, k)
            amount = np.round(rng.gamma(2.0, scale / 2, k), 2)
            rows.append(
                pd.DataFrame(
                    {
                        "AcctKey": c.CustNo,
                        "KeyType": "CUS",
                        "ts": when,
                        "Amount": amount,
                        "DrCr": dc,
                        "TxnType": kind,
                    }
                )
            )
    for _, card in cards.iterrows():
        p = people.loc[card.person]
        k = int(rng.poisson(2 + 8 * p.spender))
        when = _at(end, rng, 1, 365, k)
        refund = rng.random(k) < 0.05
        amount = np.round(rng.gamma(2.0, 15 + 25 * p.spender, k), 2)
        rows.append(
            pd.DataFrame(
                {
                    "AcctKey": card.CardRef,
                    "KeyType": "CRD",
                    "ts": when,
                    "Amount": amount,
                    "DrCr": np.where(refund, "C", "D"),
                    "TxnType": "CARD",
                }
            )
        )
    df = pd.concat(rows, ignore_index=True).sort_values("ts", kind="stable")
    df.insert(2, "BookingDate", _day(df.pop("ts")))
    return df


def _branch_visits(people: pd.DataFrame, rng: np.random.Generator, end: pd.Timestamp):
    """Visits that carry only the phone the visitor gave (and walk-ins nobody knows)."""
    rows = []
    for i in np.flatnonzero(rng.random(len(people)) < 0.2):
        for when in _at(end, rng, 1, 300, int(rng.integers(1, 4))):
            rows.append((i, when, _phone_as_written(people.mobile[i], int(rng.integers(0, 5)))))
    for when in _at(end, rng, 1, 300, max(len(people) // 40, 1)):
        rows.append((-1, when, f"07{int(rng.integers(10**8, 10**9)):09d}"))
    df = pd.DataFrame(rows, columns=["person", "ts", "ContactPhone"]).sort_values("ts")
    df["VisitedAt"] = df.pop("ts").dt.strftime("%d/%m/%Y %H:%M")
    df["Branch"] = rng.choice(["LDS01", "YRK02", "HGT03"], len(df))
    df["Reason"] = rng.choice(["ADVICE", "QUERY", "CASH"], len(df), p=[0.3, 0.4, 0.3])
    return df.reset_index(drop=True)


def _cases_and_complaints(
    out: Path,
    people: pd.DataFrame,
    core: pd.DataFrame,
    rng: np.random.Generator,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """Service cases and complaints per customer number; returns each complaint's person
    and time (cases of type COMPLAINT included)."""
    cases, complaints = [], []
    for _, c in core.iterrows():
        if c.person == 0:
            continue
        for opened in _at(end, rng, 1, 365, int(rng.poisson(0.3))):
            kind = rng.choice(["QUERY", "COMPLAINT", "FRAUD"], p=[0.8, 0.12, 0.08])
            closed = opened + int(rng.integers(1, 30)) * DAY
            cases.append((f"CS{len(cases):06d}", c.CustNo, opened, closed, kind, c.person))
        if rng.random() < 0.05:
            complaints.append((c.CustNo, _at(end, rng, 1, 200, 1)[0], c.person))
    # the known person complained three weeks ago under their second number
    second_of_known = core.loc[core["person"] == 0, "CustNo"].iloc[-1]
    complaints.append((second_of_known, end - 21 * DAY, 0))
    cs = pd.DataFrame(cases, columns=["CaseRef", "CustNo", "Opened", "Closed", "CaseType", "p"])
    still_open = cs["Closed"] >= end
    export = cs.drop(columns="p").copy()
    export["Opened"] = _day(cs["Opened"])
    export["Closed"] = np.where(still_open, "", _day(cs["Closed"].where(~still_open, end)))
    export.to_csv(out / "crm" / "cases.csv", index=False)
    cp = pd.DataFrame(complaints, columns=["CustNo", "ts", "p"])
    pd.DataFrame(
        {
            "CustNo": cp["CustNo"],
            "ReceivedOn": _day(cp["ts"]),
            "Product": rng.choice(list(PRODUCTS), len(cp)),
        }
    ).to_csv(out / "crm" / "complaints.csv", index=False)
    # the time a complaint counts from is its day (the exports carry dates only)
    from_cases = cs.loc[cs["CaseType"] == "COMPLAINT", ["p", "Opened"]]
    both = pd.concat(
        [
            pd.DataFrame({"person": cp["p"], "ts": cp["ts"].dt.normalize()}),
            pd.DataFrame({"person": from_cases["p"], "ts": from_cases["Opened"].dt.normalize()}),
        ],
        ignore_index=True,
    )
    return both.sort_values(["person", "ts"]).reset_index(drop=True)


def _consent(
    people: pd.DataFrame, core: pd.DataFrame, rng: np.random.Generator, end: pd.Timestamp
) -> pd.DataFrame:
    """The consent event log, per customer number: grants when the number was opened,
    some withdrawals later. Half of the persons with a second number withdrew e-mail
    marketing under it (so their first number still says granted)."""
    rows = []
    second = core.duplicated("person", keep="first")
    for j, c in core.iterrows():
        t0 = c.Opened + pd.Timedelta(hours=int(rng.integers(1, 48)))
        t0 = min(t0, end - 3 * DAY)
        for code, share in (("EML", 0.8), ("SMS", 0.65), ("ONL", 0.85), ("PST", 0.9)):
            if rng.random() < share:
                rows.append((c.CustNo, "MKT", code, "GRANT", t0, "account opening", c.person))
        if rng.random() < 0.55:
            rows.append((c.CustNo, "ADV", "BRN", "GRANT", t0, "branch", c.person))
        if rng.random() < 0.35:
            rows.append((c.CustNo, "PROF", "ONL", "GRANT", t0, "online", c.person))
        rows.append((c.CustNo, "SVC", "EML", "GRANT", t0, "account opening", c.person))
        if rng.random() < 0.08:
            t1 = min(t0 + int(rng.integers(10, 900)) * DAY, end - 2 * DAY)
            rows.append((c.CustNo, "MKT", "SMS", "WITHDRAW", t1, "phone", c.person))
        if second[j] and (c.person == 0 or rng.random() < 0.5):
            # withdrawn under the second number, after every grant under the first (the
            # known person keeps SMS: their complaint is what blocks an upgrade by SMS)
            t1 = end - int(rng.integers(10, 60)) * DAY
            rows.append((c.CustNo, "MKT", "EML", "WITHDRAW", t1, "online", c.person))
            if c.person != 0 and rng.random() < 0.5:
                rows.append((c.CustNo, "MKT", "SMS", "WITHDRAW", t1, "online", c.person))
    first_of_known = core.loc[core["person"] == 0, "CustNo"].iloc[0]
    early = core.loc[core["person"] == 0, "Opened"].iloc[0] + DAY
    for code in ("EML", "SMS"):  # the known person's first number: granted long ago
        rows.append((first_of_known, "MKT", code, "GRANT", early, "branch", 0))
    df = pd.DataFrame(
        rows,
        columns=["CustNo", "PurposeCode", "ChannelCode", "Decision", "ts", "CapturedVia", "person"],
    )
    df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    df.insert(4, "RecordedAt", _iso_z(df.pop("ts")))
    return df


def _response(people: pd.DataFrame, has: dict[str, pd.Series]) -> pd.DataFrame:
    """True response probabilities without and with each offer, and values."""
    base = 0.01 + 0.03 * people["digital"]
    mortgage = has["MG30"].to_numpy()
    uplift = {
        # an unwanted offer costs goodwill: a loan offer to a saver most of all
        "email_saver_offer": np.where(people["saver"], 0.09, -0.02),
        "email_loan_offer": np.where(people["borrower"], 0.11, np.where(people["saver"], -0.06, 0)),
        "sms_platinum_upgrade": np.clip(0.05 * (people["spender"] - 1.2), -0.03, 0.12),
        "branch_remortgage_review": np.where(mortgage, 0.22, 0.01),
    }
    out = pd.DataFrame({"person_id": people["person_id"], "p_control": base.round(4)})
    value = {a: VALUES[code] for code, (a, _, _) in OFFERS.items()}
    for action, u in uplift.items():
        out[f"p_{action}"] = np.clip(base + u, 0.001, 0.95).round(4)
        out[f"value_{action}"] = value[action]
    out["value_control"] = VALUES["HOLDOUT"]
    return out


def _campaigns(
    out: Path,
    people: pd.DataFrame,
    core: pd.DataFrame,
    has: dict[str, pd.Series],
    response: pd.DataFrame,
    rng: np.random.Generator,
    end: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each campaign selects customer numbers (the known person stays out) and draws a
    cell with the design's probability; a response is drawn from the truth."""
    selections, contacts = [], []
    mortgage_of = has["MG30"].to_numpy()
    for camp, spec in CAMPAIGNS.items():
        start = end - spec["start"] * DAY
        picked = core.loc[(rng.random(len(core)) < 0.65) & (core["person"] != 0)]
        rows = []
        for _, c in picked.iterrows():
            cells = (
                spec["holders"] if "holders" in spec and mortgage_of[c.person] else spec["cells"]
            )
            codes, probs = list(cells), np.array(list(cells.values()))
            a = int(rng.choice(len(codes), p=probs))
            code = codes[a]
            action = OFFERS[code][0] if code in OFFERS else "control"
            p = response.at[c.person, "p_control" if code == "HOLDOUT" else f"p_{action}"]
            responded = bool(rng.random() < p)
            when = start + pd.Timedelta(seconds=float(rng.uniform(0, 14 * 86_400)))
            rows.append(
                {
                    "TreatmentRef": f"T{len(selections):07d}",  # unique in the tool
                    "CampaignCode": camp,
                    "CustNo": c.CustNo,
                    "Cell": code,
                    "CellProb": float(probs[a]),
                    "SelectedOn": when.strftime("%d/%m/%Y %H:%M"),
                    "Responded": "Y" if responded else "N",
                    "ResponseValue": VALUES[code] if responded else 0.0,
                }
            )
            selections.append({"campaign": camp, "person": people.person_id[c.person], **rows[-1]})
            if code in OFFERS:
                contacts.append((c.CustNo, OFFERS[code][1], code, when.floor("s")))
        df = pd.DataFrame(rows)
        if spec["ref"]:
            df.to_csv(out / "marketing" / "campaigns" / f"{camp}.csv", index=False)
        else:  # the older tool's export: no treatment reference
            df.drop(columns="TreatmentRef").to_csv(
                out / "marketing" / "legacy" / f"{camp}.csv", index=False
            )
    return (
        pd.DataFrame(selections),
        pd.DataFrame(contacts, columns=["CustNo", "Channel", "ContactCode", "ts"]),
    )


def _mailings(
    people: pd.DataFrame,
    core: pd.DataFrame,
    consent: pd.DataFrame,
    end: pd.Timestamp,
) -> pd.DataFrame:
    """Business-as-usual mailings: a monthly newsletter by e-mail to numbers with e-mail
    marketing consent, rate-change letters by post to savers and borrowers."""
    granted = consent.loc[
        (consent["PurposeCode"] == "MKT") & (consent["ChannelCode"] == "EML"), "CustNo"
    ].unique()
    rows = []
    for months_back in range(6):
        sent = (end - pd.DateOffset(months=months_back)).normalize().replace(day=1)
        sent = sent + pd.Timedelta(hours=9)
        if sent >= end:
            continue
        for no in granted:
            rows.append((no, "EML", "NEWSLETTER", sent))
    letter = end - 40 * DAY
    for _, c in core.iterrows():
        if people.saver[c.person] or people.borrower[c.person]:
            rows.append((c.CustNo, "PST", "RATECHG", letter.floor("D") + pd.Timedelta(hours=8)))
    return pd.DataFrame(rows, columns=["CustNo", "Channel", "ContactCode", "ts"])


def _write_truth(
    truth: Path,
    people: pd.DataFrame,
    records: list[tuple[pd.Series, pd.Series]],
    visits: pd.DataFrame,
    consent: pd.DataFrame,
    complaints: pd.DataFrame,
    response: pd.DataFrame,
) -> None:
    pid = people["person_id"].to_numpy()
    (truth / ".own-eraser").write_text("the world's own truth: evaluation reads it, nothing else\n")
    pd.DataFrame(
        {
            "record_id": pd.concat([r for r, _ in records], ignore_index=True),
            "person_id": pid[pd.concat([p for _, p in records], ignore_index=True).to_numpy()],
        }
    ).to_csv(truth / "records.csv", index=False)
    people.drop(columns=["house"]).to_csv(truth / "persons.csv", index=False)
    v = visits.loc[visits["person"] >= 0]
    pd.DataFrame({"row": v.index + 1, "person_id": pid[v["person"].to_numpy()]}).to_csv(
        truth / "branch_visits.csv", index=False
    )
    state = consent.assign(
        person_id=pid[consent["person"].to_numpy()],
        purpose=consent["PurposeCode"].map(PURPOSE_CODES),
        channel=consent["ChannelCode"].map(CHANNEL_CODES),
        granted=consent["Decision"] == "GRANT",
        ts=consent["RecordedAt"],
    )
    # the latest event of the person over all their customer numbers wins
    state = (
        state.sort_values("ts", kind="stable").groupby(["person_id", "purpose", "channel"]).tail(1)
    )
    state[["person_id", "purpose", "channel", "granted", "ts"]].sort_values(
        ["person_id", "purpose", "channel"]
    ).to_csv(truth / "consent_state.csv", index=False)
    pd.DataFrame(
        {"person_id": pid[complaints["person"].to_numpy()], "ts": _iso_z(complaints["ts"])}
    ).to_csv(truth / "complaints.csv", index=False)
    response.to_csv(truth / "response.csv", index=False)


if __name__ == "__main__":
    import sys

    print(write_retail_bank(Path(sys.argv[1] if len(sys.argv) > 1 else "retail_bank_data")))
