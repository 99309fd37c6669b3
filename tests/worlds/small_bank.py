"""A handful of hand-made bank customers whose exports need every rule of a sources file.

Anna holds two customer numbers (``K1``, and ``K2`` after a name change) and a card
(``CARD-1``); Ben (``K3``) shares a phone with an online-banking user (``U1``) who is
someone else. Transactions are keyed per row by a customer number or a card reference
(a ``KeyType`` column says which); a second transaction file is signed the other way
round (an account statement: debits negative); branch visits carry only a phone;
complaints and consent name a customer number; holdings carry balances with the time
they were read; the contact log holds a newsletter that is no catalog action; campaign
exposures have no id of their own. Some rows name no one (an unknown number, a walk-in
phone) and one names a phone two customers hold.

``IDENTITY`` is the resolution these exports should get (Anna's two numbers and her
card are one customer): written as ``identity.parquet`` so these tests do not depend on
the merge rules.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nextbest.customers.feature_schema import CatalogTerms

AS_OF = pd.Timestamp("2026-05-01", tz="UTC")
TERMS = CatalogTerms(
    products=("savings", "mortgage"),
    categories=("cards",),
    action_ids=("email_offer",),
    channels=("email", "branch"),
    purposes=("marketing", "service"),
)
#: Record -> customer: Anna (X) has two numbers and a card, Ben (Y), the online user (Z).
IDENTITY = {
    "core:K1": "X",
    "core:K2": "X",
    "cards:CARD-1": "X",
    "core:K3": "Y",
    "online:U1": "Z",
}

SOURCES = """
version: 1
tables:
  identity_records:
    - file: core.csv
      record: {source: core, column: CustNo}
      full_name: Name
      columns: {crm_id: CustNo, phone: Phone, email: Mail}
    - file: cards.csv
      record: {source: cards, column: CardRef}
    - file: online.csv
      record: {source: online, column: UserRef}
      columns: {phone: Phone}
  orders:
    - file: transactions.csv
      customer:
        - {when: {column: KeyType, in: [CUST]}, column: Key, id_type: crm_id}
        - {column: Key, record: cards}
      columns:
        ts: {column: Date, format: "%d/%m/%Y"}
        amount: {column: Amount, sign: {column: DC, negative: [C]}}
        category: {value: cards}
    - file: statement.csv
      customer: {column: CustNo, id_type: crm_id}
      columns:
        ts: {column: Date, format: "%d/%m/%Y"}
        amount: {column: Amount, sign: {flip: true}}
        category: {value: cards}
  behaviour_events:
    - file: visits.csv
      customer: {column: Phone, id_type: phone}
      columns:
        ts: {column: At, format: "%d/%m/%Y"}
        event_type: {value: branch_visit}
  complaints:
    - file: complaints.csv
      customer: {column: CustNo, id_type: crm_id}
      columns: {ts: {column: Date, format: "%d/%m/%Y"}}
  holdings:
    - file: holdings.csv
      customer: {column: CustNo, id_type: crm_id}
      columns:
        product_id: {column: Product, map: {SAV: savings, MRT: mortgage}}
        since: {column: Since, format: "%d/%m/%Y"}
        balance: Balance
        balance_at: {column: ReadOn, format: "%d/%m/%Y"}
  consent_events:
    - file: consent.csv
      customer: {column: CustNo, id_type: crm_id}
      columns:
        purpose: {value: marketing}
        channel: {column: Channel, map: {EMAIL: email, BRANCH: branch}}
        granted: {column: Flag, map: {"Y": "true", "N": "false"}}
        ts: {column: Date, format: "%d/%m/%Y"}
  contact_history:
    - file: contacts.csv
      record: {source: core, column: CustNo}
      columns:
        ts: {column: Sent, format: "%d/%m/%Y"}
        channel: {column: Channel, map: {EMAIL: email}}
        action_id: {column: Code, map: {OFFER: email_offer, NEWS: null}}
        purpose: {column: Purpose, map: {MKT: marketing, SVC: service}}
  campaign_exposures:
    - file: exposures.csv
      customer: {column: CustNo, id_type: crm_id}
      columns:
        exposure_id: [Campaign, CustNo]
        campaign_id: Campaign
        exposed_at: {column: Date, format: "%d/%m/%Y"}
        action_id: {column: Arm, map: {CTRL: no_action, OFFER: email_offer}}
        assignment_probability: P
        responded: Responded
        revenue: Revenue
"""

FILES: dict[str, dict[str, list]] = {
    "core.csv": {
        "CustNo": ["K1", "K2", "K3"],
        "Name": ["Anna Meyer", "Anna Schmidt", "Ben Weber"],
        "Phone": ["07700 900001", "07700 900001", "07700 900003"],
        "Mail": ["anna@x.test", "anna@x.test", "ben@x.test"],
    },
    "cards.csv": {"CardRef": ["CARD-1"]},
    "online.csv": {"UserRef": ["U1"], "Phone": ["+44 7700 900003"]},
    # K2 is Anna's second number; CARD-1 her card; K9 is no one's
    "transactions.csv": {
        "Key": ["K2", "CARD-1", "K9", "K3"],
        "KeyType": ["CUST", "CARD", "CUST", "CUST"],
        "Date": ["01/03/2026", "02/03/2026", "03/03/2026", "04/03/2026"],
        "Amount": ["500.00", "100.00", "50.00", "700.00"],
        "DC": ["D", "C", "D", "D"],
    },
    # an account statement: a debit (spend) is negative, a credit positive
    "statement.csv": {"CustNo": ["K3"], "Date": ["05/03/2026"], "Amount": ["-300.00"]},
    "visits.csv": {
        "Phone": ["+447700900001", "07700 900003", "07700 999999"],
        "At": ["10/04/2026", "11/04/2026", "12/04/2026"],
    },
    "complaints.csv": {"CustNo": ["K2"], "Date": ["20/04/2026"]},
    # Anna's two savings accounts (one per number), her mortgage without a balance; Ben's
    # savings read only mid-April
    "holdings.csv": {
        "CustNo": ["K1", "K2", "K1", "K3"],
        "Product": ["SAV", "SAV", "MRT", "SAV"],
        "Since": ["01/01/2025"] * 4,
        "Balance": ["1000", "500", "", "200"],
        "ReadOn": ["01/02/2026", "01/02/2026", "", "15/04/2026"],
    },
    "consent.csv": {
        "CustNo": ["K1", "K2"],
        "Channel": ["EMAIL", "BRANCH"],
        "Flag": ["Y", "Y"],
        "Date": ["01/01/2026", "01/01/2026"],
    },
    # a newsletter (no catalog action) and an offer, both by e-mail in the last week
    "contacts.csv": {
        "CustNo": ["K1", "K2"],
        "Channel": ["EMAIL", "EMAIL"],
        "Code": ["NEWS", "OFFER"],
        "Purpose": ["MKT", "MKT"],
        "Sent": ["27/04/2026", "28/04/2026"],
    },
    "exposures.csv": {
        "CustNo": ["K1", "K2", "K3"],
        "Campaign": ["SPRING", "SPRING", "SPRING"],
        "Date": ["01/04/2026"] * 3,
        "Arm": ["OFFER", "CTRL", "OFFER"],
        "P": ["0.5"] * 3,
        "Responded": ["Y", "N", "N"],
        "Revenue": ["80", "0", "0"],
    },
}


def write_small_bank(out: Path) -> Path:
    """Write the exports and ``sources.yaml`` under ``out``; returns the sources file."""
    out.mkdir(parents=True, exist_ok=True)
    for name, columns in FILES.items():
        pd.DataFrame(columns).to_csv(out / name, index=False)
    (out / "sources.yaml").write_text(SOURCES)
    return out / "sources.yaml"


def write_identity(unified: Path) -> None:
    """The resolution of these exports (``IDENTITY``) as ``identity.parquet``."""
    unified.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"record_id": list(IDENTITY), "customer_id": list(IDENTITY.values())}).to_parquet(
        unified / "identity.parquet", index=False
    )
