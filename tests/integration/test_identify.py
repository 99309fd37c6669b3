"""Live linking over real HTTP (``bentoml serve`` on the session world): an identify event
attaches a new e-mail to a known customer and the next /decide by it resolves to the
customer, with no resolve or features build; a repeat is stored once; an e-mail of another
customer is recorded for review and keeps resolving to its own customer."""

from __future__ import annotations

import httpx
import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from devtools.process import Server
from nextbest.decisions.ledger import Ledger
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _decide_by(service: Server, value: str, id_type: str = "email") -> dict:
    body = {"customer": {"id": value, "id_type": id_type}, "channel": "email"}
    r = httpx.post(f"{service.url}/decide", headers=service.headers, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _identify(service: Server, cid: str, email: str, event_id: str) -> httpx.Response:
    body = {
        "customer": {"id": cid},
        "type": "identify",
        "event_id": event_id,
        "timestamp": "2025-06-01T00:00:00Z",
        "payload": {"id_type": "email", "id_value": email},
    }
    return httpx.post(f"{service.url}/events", headers=service.headers, json=body, timeout=60)


def _emails(world: World) -> pd.DataFrame:
    """E-mail and customer of the session world's records."""
    from nextbest.customers.sources.identity_records import load_canonical_records

    records = load_canonical_records(world.settings.raw_dir)
    identity = pd.read_parquet(world.settings.unified_dir / "identity.parquet")
    merged = records.merge(identity[["record_id", "customer_id"]], on="record_id")
    return merged.loc[merged["email"].notna(), ["email", "customer_id"]]


def test_identify_links_at_once_once_and_never_over_another_customer(
    world: World, service: Server
) -> None:
    emails = _emails(world)
    # the customer and, of another customer, an e-mail the identity lookup resolves to them
    cid = emails["customer_id"].iloc[-1]
    other = emails.loc[emails["customer_id"] != cid].drop_duplicates("customer_id").tail(20)
    theirs = next(
        (e, c) for e, c in other.itertuples(index=False) if _decide_by(service, e)["customer_id"]
    )
    new = f"  Live.Link.{cid}@Example.org "

    assert _decide_by(service, new)["reason"]["code"] == "UNKNOWN_CUSTOMER"
    r = _identify(service, cid, new, f"{cid}-app-login")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["applied"], r.json()["customer_id"]) == (
        "linked",
        True,
        cid,
    )
    # the next decision by the e-mail, in any spelling, is the customer's: no build between
    assert _decide_by(service, new.strip().lower())["customer_id"] == cid

    again = _identify(service, cid, new, f"{cid}-app-login")
    assert again.status_code == 200 and again.json()["applied"] is False
    ledger = Ledger(world.settings.ledger_path)
    stored = ledger.events_for([cid], types=("identify",))[cid]
    assert [e.event_id for e in stored] == [f"{cid}-app-login"]
    conflict = _identify(service, cid, "someone.else@example.org", f"{cid}-app-login")
    assert conflict.status_code == 409

    # an e-mail of another customer: recorded for review, not linked
    email, owner = theirs
    review = _identify(service, cid, email, f"{cid}-claims-theirs")
    assert review.status_code == 200, review.text
    assert review.json()["status"] == "review" and owner not in review.text
    assert _decide_by(service, email)["customer_id"] == owner

    bad = _identify(service, cid, "not an e-mail", f"{cid}-bad")
    assert bad.status_code == 400 and bad.json()["error"].startswith("payload.id_value:")

    # the customer's history shows both, masked; the raw e-mails are in no ledger file
    # looked up by the e-mail, which travels in the body: the path form refuses it
    retired = httpx.get(
        f"{service.url}/customers/{cid}/consent",
        params={"id_type": "email"},
        headers=service.headers,
        timeout=30,
    )
    assert retired.status_code == 400 and "POST /customers/lookup/consent" in retired.text
    r = httpx.post(
        f"{service.url}/customers/lookup/consent",
        json={"customer": {"id": new.strip(), "id_type": "email"}},
        headers=service.headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json() == _history_by_id(service, cid)
    assert r.json()["customer_id"] == cid
    shown = [(i["event_id"], i["status"]) for i in r.json()["identifiers"]]
    assert shown == [(f"{cid}-app-login", "linked"), (f"{cid}-claims-theirs", "review")]
    files = b"".join(p.read_bytes() for p in world.home.glob("ledger.db*")).lower()
    assert new.strip().lower().encode() not in files and email.lower().encode() not in files

    runner = CliRunner()
    from nextbest.cli import app

    listed = runner.invoke(app, ["identity", "review", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [orjson.loads(line) for line in listed.output.splitlines()]
    mine = [r for r in rows if r["event_id"] == f"{cid}-claims-theirs"]
    assert [(r["customer_id"], r["owner_id"], r["owner_source"]) for r in mine] == [
        (cid, owner, "identity_lookup")
    ]
    assert email.lower() not in listed.output.lower()
    shown = runner.invoke(app, ["features", "show", new, "--id-type", "email"])
    assert shown.exit_code == 0 and f"customer {cid}" in shown.output

    spec = httpx.get(f"{service.url}/docs.json", headers=service.headers, timeout=30).json()
    payload = spec["components"]["schemas"]["EventPayload"]["properties"]
    id_types = payload["id_type"]["anyOf"][0]["enum"]
    assert "email" in id_types and "customer_id" not in id_types
    assert payload["id_value"]["anyOf"][0]["maxLength"] == 256


def _history_by_id(service: Server, cid: str) -> dict:
    r = httpx.get(f"{service.url}/customers/{cid}/consent", headers=service.headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()
