"""A second world, shaped unlike the demo: a small bank's exports, in its own layout.

Core banking customers (CSV, day-first dates, full names in one column, national phone
numbers), online-banking users (parquet, linked to customers only through e-mail and
phone), card transactions split over two yearly files with unsigned amounts and a
debit/credit flag, branch visits that carry only the phone the visitor gave, service
cases and complaints, product holdings with their balances and stock under the bank's
own product codes, consent and contact logs with its channel and purpose codes (among
them a branch channel and an advice purpose the demo generator never made; the contact
log also holds business-as-usual mailings that are no catalog action), and randomised
campaign exposures without an exposure id whose arms are offer codes (``CTRL`` is
control) and whose assignment probabilities differ per campaign. No app, no loyalty
scheme.

``tests/worlds/bank/sources.yaml`` (copied beside the data) maps it onto the source
contract;
``catalog.yaml`` and ``policy.yaml`` beside it are the bank's. Deterministic in ``seed``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

CONFIG_DIR = Path(__file__).resolve().parent / "bank"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
START = datetime(2025, 1, 1, tzinfo=UTC)
#: Offer code -> catalog action, per campaign with each arm's assignment probability.
CAMPAIGNS: dict[str, dict[str, float]] = {
    "SPRING26": {"CTRL": 0.5, "OFF-SAV": 0.5},
    "SUMMER26": {"CTRL": 0.2, "OFF-CARD": 0.4, "OFF-MORT": 0.4},
    "AUTUMN26": {"CTRL": 0.25, "OFF-SAV": 0.25, "OFF-CARD": 0.25, "OFF-MORT": 0.25},
}
CAMPAIGN_START = {
    "SPRING26": datetime(2026, 5, 4, tzinfo=UTC),
    "SUMMER26": datetime(2026, 7, 6, tzinfo=UTC),
    "AUTUMN26": datetime(2026, 9, 7, tzinfo=UTC),
}
OFFER_CHANNEL = {"OFF-SAV": "EMAIL", "OFF-CARD": "SMS", "OFF-MORT": "BRANCH"}
OFFER_PURPOSE = {"OFF-SAV": "MKT", "OFF-CARD": "MKT", "OFF-MORT": "ADV"}
PRODUCTS = ("CA01", "CC02", "MG03", "SV04", "CC09")
_FIRST = ("Anna", "Ben", "Clara", "David", "Eva", "Frank", "Greta", "Hugo", "Ida", "Jonas")
_LAST = ("Meyer", "Schmidt", "Fischer", "Weber", "Wagner", "Becker", "Hoffmann", "Klein")
_TOWNS = ("Leeds", "York", "Hull", "Bath", "Derby")

#: The known customer of the tests: consent to marketing by e-mail and in branch and to
#: advice in branch, an SMS consent that was withdrawn, a current account and no mortgage.
KNOWN_CUSTOMER = "C00001"
#: A customer with consent to marketing on every channel but to advice on none.
NO_ADVICE_CUSTOMER = "C00002"


@dataclass(frozen=True)
class BankWorld:
    """Where the exports went and the files that describe them."""

    data_dir: Path
    sources: Path
    catalog: Path = CONFIG_DIR / "catalog.yaml"
    policy: Path = CONFIG_DIR / "policy.yaml"


def _day(d: pd.Series | datetime) -> pd.Series | str:
    if isinstance(d, datetime):
        return d.strftime("%d/%m/%Y")
    return d.dt.strftime("%d/%m/%Y")


def _times(rng: np.random.Generator, n: int, start: datetime, end: datetime) -> pd.Series:
    span = (end - start).total_seconds()
    secs = np.sort(rng.uniform(0, span, n)) if n else np.array([])
    return pd.Series(pd.Timestamp(start) + pd.to_timedelta(secs, unit="s"))


def write_bank(out: Path, customers: int = 300, seed: int = 11, end: datetime = AS_OF) -> BankWorld:
    """Write the bank's exports under ``out`` and return where everything is.

    ``end``: the end of the exports (nothing is later); every date moves with it (the
    default writes the same files as ever; another end, e.g. in 2025, the same bank at
    another time)."""
    rng = np.random.default_rng(seed)
    shift = end - AS_OF
    out = Path(out)
    for sub in ("core", "online", "cards", "crm", "marketing", "products"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    n = customers
    cust = [f"C{i + 1:05d}" for i in range(n)]
    first = rng.choice(_FIRST, n)
    last = rng.choice(_LAST, n)
    email = [
        f"{f}.{s}{i}@bank-mail.test".lower()
        for i, (f, s) in enumerate(zip(first, last, strict=True))
    ]
    phone = [f"07700 9{i:05d}" for i in range(n)]
    opened = _times(
        rng, n, datetime(2015, 1, 1, tzinfo=UTC) + shift, datetime(2026, 6, 1, tzinfo=UTC) + shift
    )
    opened = opened.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    spender = rng.gamma(2.0, 1.0, n)  # card spend level: the card offer works for spenders
    house = rng.integers(0, int(n * 0.8), n)
    pd.DataFrame(
        {
            "CustNo": cust,
            "FullName": [f"{f} {s}" for f, s in zip(first, last, strict=True)],
            "EMail": email,
            "Mobile": phone,
            "DOB": _day(
                pd.Series(pd.to_datetime("1950-01-01", utc=True)).repeat(n).reset_index(drop=True)
                + pd.to_timedelta(rng.integers(0, 18_000, n), unit="D")
            ),
            "Address": [f"{h + 1} Mill Lane" for h in house],
            "Town": [_TOWNS[h % len(_TOWNS)] for h in house],
            "PostCode": [f"LS{h % 9 + 1} {h % 7 + 1}AB" for h in house],
            "Opened": _day(opened),
        }
    ).to_csv(out / "core" / "customers.csv", index=False)

    # online banking: about half the customers, upper-cased e-mails, phones in +44 form
    online = np.flatnonzero(rng.random(n) < 0.5)
    online = np.union1d(online, [0])
    users = pd.DataFrame(
        {
            "UserRef": [f"U{i:06d}" for i in range(len(online))],
            "Login": [email[i].upper() for i in online],
            "Phone": ["+44 " + phone[i][1:] for i in online],
            "Registered": [
                pd.Timestamp(opened[i]) + pd.Timedelta(days=int(rng.integers(1, 300)))
                for i in online
            ],
        }
    )
    users.to_parquet(out / "online" / "users.parquet", index=False)
    ev_rows = []
    for ref, i in zip(users["UserRef"], online, strict=True):
        k = int(rng.poisson(6 + 2 * spender[i]))
        ts = _times(rng, k, datetime(2026, 1, 1, tzinfo=UTC) + shift, end - timedelta(days=1))
        what = rng.choice(["page_view", "card_compare", "mortgage_calc"], k, p=[0.6, 0.25, 0.15])
        section = np.where(
            what == "mortgage_calc",
            "mortgages",
            np.where(what == "card_compare", "cards", "current_accounts"),
        )
        ev_rows.append(
            pd.DataFrame(
                {
                    "UserRef": ref,
                    "When": ts.dt.strftime("%Y-%m-%dT%H:%M:%S"),
                    "What": what,
                    "Section": section,
                }
            )
        )
    pd.concat(ev_rows, ignore_index=True).to_csv(out / "online" / "events.csv", index=False)

    # card transactions, one file per year, unsigned amounts and a D/C flag
    tx = []
    for i in range(n):
        k = int(rng.poisson(4 + 6 * spender[i]))
        ts = _times(rng, k, START + shift, end - timedelta(days=1))
        credit = rng.random(k) < 0.1
        tx.append(
            pd.DataFrame(
                {
                    "CustNo": cust[i],
                    "ts": ts,
                    "Amount": np.round(rng.gamma(2.0, 20.0 * (1 + spender[i]), k), 2),
                    "DC": np.where(credit, "C", "D"),
                    "MCC": rng.choice(["5411", "5812", "4111"], k),
                }
            )
        )
    tx = pd.concat(tx, ignore_index=True).sort_values("ts", kind="stable")
    for year in sorted(tx["ts"].dt.year.unique()):
        part = tx.loc[tx["ts"].dt.year == year]
        pd.DataFrame(
            {
                "CustNo": part["CustNo"],
                "BookingDate": _day(part["ts"]),
                "Amount": part["Amount"],
                "DC": part["DC"],
                "MCC": part["MCC"],
            }
        ).to_csv(out / "cards" / f"transactions_{year}.csv", index=False)

    # service cases (some still open) and complaints booked apart
    case_of = rng.choice(n, int(n * 0.3))
    c_open = _times(rng, len(case_of), datetime(2026, 1, 1, tzinfo=UTC) + shift, end)
    c_close = c_open + pd.to_timedelta(rng.integers(1, 20, len(case_of)), unit="D")
    still_open = (c_close >= pd.Timestamp(end)).to_numpy()
    pd.DataFrame(
        {
            "CaseRef": [f"K{i:05d}" for i in range(len(case_of))],
            "CustNo": [cust[i] for i in case_of],
            "Opened": _day(c_open),
            "Closed": np.where(still_open, "", _day(c_close)),
            "Type": rng.choice(["QUERY", "COMPLAINT"], len(case_of), p=[0.85, 0.15]),
        }
    ).to_csv(out / "crm" / "cases.csv", index=False)
    comp_of = rng.choice(np.arange(1, n), int(n * 0.05))
    pd.DataFrame(
        {
            "CustNo": [cust[i] for i in comp_of],
            "Date": _day(_times(rng, len(comp_of), datetime(2026, 1, 1, tzinfo=UTC) + shift, end)),
        }
    ).to_csv(out / "crm" / "complaints.csv", index=False)

    # holdings under the bank's product codes; everyone has a current account
    hold = [(cust[i], "CA01", _day(opened[i])) for i in range(n)]
    hold += [(cust[i], "CC02", _day(opened[i])) for i in range(1, n) if rng.random() < 0.4]
    hold += [(cust[i], "MG03", _day(opened[i])) for i in range(1, n) if rng.random() < 0.2]
    holdings = pd.DataFrame(hold, columns=["CustNo", "ProductCode", "StartDate"])
    # balances as of the export (their own generator: the draws above stay as they were)
    extra = np.random.default_rng((seed, 23))
    scale = holdings["ProductCode"].map({"CA01": 1_500.0, "CC02": 600.0, "MG03": 90_000.0})
    holdings["Balance"] = np.round(extra.gamma(2.0, 1.0, len(holdings)) * scale, 2)
    holdings.to_csv(out / "products" / "holdings.csv", index=False)
    pd.DataFrame({"ProductCode": list(PRODUCTS), "Units": [9999, 9999, 9999, 9999, 0]}).to_csv(
        out / "products" / "stock.csv", index=False
    )

    # consent log: codes for purpose and channel, Y/N flags, day-first timestamps
    rows = []
    for i in range(n):
        t0 = pd.Timestamp(opened[i]) + pd.Timedelta(days=1)
        for ch, p in (("EMAIL", 0.75), ("SMS", 0.6), ("BRANCH", 0.5), ("WEB", 0.8)):
            if rng.random() < p:
                rows.append((cust[i], "MKT", ch, "Y", t0, "branch"))
        if rng.random() < 0.5:
            rows.append((cust[i], "ADV", "BRANCH", "Y", t0, "branch"))
        if rng.random() < 0.3:
            rows.append((cust[i], "PROF", "EMAIL", "Y", t0, "online"))
    given = pd.Timestamp(2025, 3, 1, tz="UTC") + shift
    known = [(KNOWN_CUSTOMER, "MKT", ch, "Y", given, "branch") for ch in ("EMAIL", "SMS", "BRANCH")]
    known.append((KNOWN_CUSTOMER, "ADV", "BRANCH", "Y", given, "branch"))
    withdrawn = pd.Timestamp(2026, 2, 1, tz="UTC") + shift
    known.append((KNOWN_CUSTOMER, "MKT", "SMS", "N", withdrawn, "phone"))
    known += [
        (NO_ADVICE_CUSTOMER, "MKT", ch, "Y", given, "branch")
        for ch in ("EMAIL", "SMS", "BRANCH", "WEB")
    ]
    rows = [r for r in rows if r[0] not in (KNOWN_CUSTOMER, NO_ADVICE_CUSTOMER)] + known
    consent = pd.DataFrame(rows, columns=["CustNo", "Purpose", "Channel", "Flag", "ts", "Source"])
    consent["Timestamp"] = consent["ts"].dt.strftime("%d/%m/%Y %H:%M")
    consent.drop(columns="ts").to_csv(out / "crm" / "consent_log.csv", index=False)

    # randomised campaigns: each customer once per campaign, arm drawn with its probability
    expo, contacts = [], []
    mortgage_fit = (np.asarray((pd.Timestamp(end) - opened).dt.days) > 3 * 365).astype(float)
    for camp, arms in CAMPAIGNS.items():
        codes, probs = list(arms), np.array(list(arms.values()))
        who = np.flatnonzero(rng.random(n) < 0.8)
        who = who[who != 0]  # the known customer stays out of the experiments
        draw = rng.choice(len(codes), len(who), p=probs / probs.sum())
        start = CAMPAIGN_START[camp] + shift
        when = _times(rng, len(who), start, start + timedelta(days=20))
        when = when.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        for j, (i, a) in enumerate(zip(who, draw, strict=True)):
            code = codes[a]
            base = 0.05 + 0.05 * min(spender[i], 3)
            lift = {
                "CTRL": 0.0,
                "OFF-SAV": 0.05,
                "OFF-CARD": 0.12 * min(spender[i], 3) - 0.1,
                "OFF-MORT": 0.3 * mortgage_fit[i],
            }[code]
            responded = rng.random() < float(np.clip(base + lift, 0.01, 0.95))
            value = {"CTRL": 60.0, "OFF-SAV": 80.0, "OFF-CARD": 120.0, "OFF-MORT": 400.0}[code]
            expo.append(
                (
                    cust[i],
                    camp,
                    code,
                    probs[a],
                    "Y" if responded else "N",
                    value if responded else 0.0,
                    when[j],
                )
            )
            if code != "CTRL":
                contacts.append((cust[i], OFFER_CHANNEL[code], code, when[j]))
    ex = pd.DataFrame(
        expo,
        columns=[
            "CustNo",
            "Campaign",
            "OfferCode",
            "Probability",
            "Responded",
            "Value",
            "ts",
        ],
    )
    ex["AssignedOn"] = ex["ts"].dt.strftime("%d/%m/%Y %H:%M:%S")
    ex.drop(columns="ts").to_parquet(out / "marketing" / "exposures.parquet", index=False)
    contacts = [(*c, OFFER_PURPOSE[c[2]]) for c in contacts] + _mailings(cust, extra, shift)
    ct = pd.DataFrame(contacts, columns=["CustNo", "Channel", "OfferCode", "ts", "Purpose"])
    ct = ct.sort_values("ts", kind="stable")
    ct["SentAt"] = ct["ts"].dt.strftime("%d/%m/%Y %H:%M:%S")
    ct.drop(columns="ts").to_csv(out / "marketing" / "contacts.csv", index=False)
    _branch_visits(out, phone, extra, end)
    shutil.copy(CONFIG_DIR / "sources.yaml", out / "sources.yaml")
    return BankWorld(data_dir=out, sources=out / "sources.yaml")


def _mailings(cust: list[str], rng: np.random.Generator, shift: timedelta) -> list[tuple]:
    """Business-as-usual mailings, no catalog action: a monthly e-mail newsletter to about
    half the customers and rate-change letters by e-mail or SMS, none in the last 30 days
    before ``AS_OF`` and none to the known customers (their decisions stay as tested)."""
    rows = []
    known = (KNOWN_CUSTOMER, NO_ADVICE_CUSTOMER)
    readers = [c for c in cust if c not in known and rng.random() < 0.5]
    for month in range(1, 10):
        sent = pd.Timestamp(2026, month, 1, 9, tz="UTC") + shift
        rows += [(c, "EMAIL", "NEWS", sent, "MKT") for c in readers]
    for c in cust:
        if c not in known and rng.random() < 0.2:
            sent = pd.Timestamp(2026, 6, 15, 9, tz="UTC") + shift
            rows.append((c, rng.choice(["EMAIL", "SMS"]), "RATE", sent, "SVC"))
    return rows


def _branch_visits(out: Path, phone: list[str], rng: np.random.Generator, end: datetime) -> None:
    """Branch visits logged by the branch system with the phone the visitor gave (in the
    bank's several notations), no customer number; some phones are no customer's."""
    (out / "branch").mkdir(exist_ok=True)
    who = rng.choice(len(phone), len(phone) // 3)
    start = datetime(2026, 3, 1, tzinfo=UTC) + (end - AS_OF)
    when = _times(rng, len(who), start, end - timedelta(days=1))
    given = [
        phone[i] if k % 2 else "+44" + phone[i][1:].replace(" ", "") for k, i in enumerate(who)
    ]
    given[:3] = ["07700 800001", "07700 800002", "07700 800003"]  # walk-ins, no customer's
    pd.DataFrame(
        {"Phone": given, "VisitedAt": when.dt.strftime("%d/%m/%Y %H:%M"), "Desk": "advice"}
    ).to_csv(out / "branch" / "visits.csv", index=False)


if __name__ == "__main__":
    import sys

    print(write_bank(Path(sys.argv[1] if len(sys.argv) > 1 else "bank_data")))
