"""A consent withdrawal follows the person through every identity change, over real HTTP:
recorded under one customer id, it still holds after a human link, a new export record
that joins two customers, and a human split, each followed by resolve and a features build,
and the consent history shows it under the customer id of now."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from devtools.process import Server, stop_server
from nextbest.core.settings import get_settings
from nextbest.demo.generate import ACTIONS
from tests.conftest import World, start_service

pytestmark = [pytest.mark.slow, pytest.mark.integration]

EMAIL_MARKETING = {
    a.action_id for a in ACTIONS if a.purpose == "marketing" and a.channel == "email"
}
WITHDRAW = {"purpose": "marketing", "channel": "email", "granted": False}


def _decide(server: Server, cid: str) -> dict:
    body = {"customer": {"id": cid}, "channel": "email"}
    r = httpx.post(f"{server.url}/decide", headers=server.headers, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _no_consent(decision: dict) -> bool:
    """Whether every e-mail marketing action is excluded for want of consent."""
    codes = {e["action_id"]: e["reasons"][0]["code"] for e in decision["excluded"]}
    return all(codes.get(a) == "NO_CONSENT" for a in EMAIL_MARKETING)


def _history(server: Server, cid: str) -> dict:
    url = f"{server.url}/customers/{cid}/consent"
    r = httpx.get(url, headers=server.headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _withdraw(server: Server, cid: str, event_id: str) -> None:
    at = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    body = {"customer": {"id": cid}, "type": "consent_changed", "payload": WITHDRAW}
    body |= {"event_id": event_id, "timestamp": at}
    r = httpx.post(f"{server.url}/events", headers=server.headers, json=body, timeout=30)
    assert r.status_code == 200, r.text


def _consented(settings) -> set[str]:
    df = pd.read_parquet(settings.features_dir / "customer_consent.parquet")
    df = df.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    return set(df.loc[df["consent_marketing_email"] == 1, "customer_id"])


def _identity(settings) -> pd.DataFrame:
    return pd.read_parquet(settings.unified_dir / "identity.parquet")


@dataclass(frozen=True)
class SplitPerson:
    """A person the resolver left as two customers, and the lead that joins them."""

    quiet: str  # the customer the withdrawal is sent to
    offered: str  # the consented customer decided for
    record: str  # a record of the offered customer
    lead: dict[str, str]


def _split_person(settings, consented: set[str]) -> SplitPerson:
    """Two customers of one person: one with an e-mail, one with a phone, the same first
    name, one of them consented (a new lead with that e-mail and phone joins them)."""
    from nextbest.customers.sources.identity_records import load_canonical_records

    recs = load_canonical_records(settings.raw_dir).merge(_identity(settings), on="record_id")
    truth = pd.read_parquet(settings.raw_dir / "truth" / "records.parquet")
    recs = recs.merge(truth[["record_id", "person_id"]], on="record_id")
    recs["first"] = recs["first_name"].str.lower()
    people = recs.groupby("person_id")["customer_id"].transform("nunique")
    for _, person in recs.loc[people == 2].groupby("person_id"):
        sides = [g for _, g in person.groupby("customer_id")]
        names = [set(g["first"].dropna()) for g in sides]
        if len(names[0] | names[1]) != 1:
            continue
        for mail, tel in (sides, sides[::-1]):
            email, phone = mail["email"].dropna(), tel["phone"].dropna()
            ids = (mail["customer_id"].iloc[0], tel["customer_id"].iloc[0])
            if email.empty or phone.empty or not consented & set(ids):
                continue
            offered = ids[0] if ids[0] in consented else ids[1]
            quiet = ids[1] if offered == ids[0] else ids[0]
            first = person["first_name"].dropna().iloc[0]
            last = person["last_name"].dropna()
            lead = {"email": email.iloc[0], "phone": phone.iloc[0], "first_name": first}
            lead["last_name"] = last.iloc[0] if len(last) else None
            record = person.loc[person["customer_id"] == offered, "record_id"].iloc[0]
            return SplitPerson(quiet, offered, record, lead)
    raise AssertionError("the world has no person split across an e-mail and a phone")


def _add_lead(settings, lead: dict[str, str]) -> None:
    """A new e-mail lead in the export."""
    path = settings.raw_dir / "email_leads.parquet"
    leads = pd.read_parquet(path)
    row = leads.iloc[[0]].copy()
    row["lead_id"] = "lead-joins-two"
    for k, v in lead.items():
        row[k] = v
    pd.concat([leads, row], ignore_index=True).to_parquet(path, index=False)


def test_a_withdrawal_holds_through_link_export_merge_and_split(
    world: World, tmp_path: Path
) -> None:
    from nextbest.cli import app
    from nextbest.pipeline import build_features, resolve

    home = tmp_path / "home"
    shutil.copytree(world.home, home)
    settings = get_settings(home=home)
    before = _identity(settings)
    resolve(settings)  # the first resolve into a home keeps the ids it had
    assert _identity(settings)["customer_id"].tolist() == before["customer_id"].tolist()

    consented = _consented(settings)
    p = _split_person(settings, consented)
    singles = before.groupby("customer_id").filter(lambda g: len(g) == 1)
    x, y = (r for _, r in singles.loc[singles["customer_id"].isin(consented)].head(2).iterrows())
    runner = CliRunner()
    env = {"NEXTBEST_HOME": str(home)}

    server = start_service(home, tmp_path / "serve.log")
    try:
        assert not _no_consent(_decide(server, p.offered))
        assert not _no_consent(_decide(server, y["customer_id"]))
        _withdraw(server, p.quiet, "withdraw-under-other-id")
        _withdraw(server, x["customer_id"], "withdraw-under-x")

        # 1. A human link (x with y) and a new export record (a with b), then a rebuild.
        # x and y are two people, so the guard may refuse the link: it is forced.
        link = ["identity", "link", x["record_id"], y["record_id"], "--reason", "same person"]
        linked = runner.invoke(app, [*link, "--force"], env=env)
        assert linked.exit_code == 0, linked.output
        _add_lead(settings, p.lead)
        resolve(settings)
        build_features(settings)
        ids = _identity(settings).set_index("record_id")["customer_id"]
        xy, ab = ids[x["record_id"]], ids[p.record]
        assert ids[y["record_id"]] == xy and ids["email_lead:lead-joins-two"] == ab
        assert ab in (p.quiet, p.offered)  # a merge keeps one of the old ids
        for cid in (xy, ab):
            assert _no_consent(_decide(server, cid))
        history = _history(server, ab)
        assert history["customer_id"] == ab
        assert [c["recorded_under"] for c in history["changes"]] == [p.quiet]
        # A caller holding the retired id reaches the person it is now.
        retired = p.quiet if ab == p.offered else p.offered
        assert _decide(server, retired)["customer_id"] == ab

        # 2. A human split of the linked pair: the withdrawal holds on both sides.
        split = runner.invoke(
            app,
            ["identity", "split", x["record_id"], y["record_id"], "--reason", "two people"],
            env=env,
        )
        assert split.exit_code == 0, split.output
        resolve(settings)
        build_features(settings)
        ids = _identity(settings).set_index("record_id")["customer_id"]
        sides = {ids[x["record_id"]], ids[y["record_id"]]}
        assert len(sides) == 2 and xy in sides
        for cid in sides:
            assert _no_consent(_decide(server, cid))
            changes = _history(server, cid)["changes"]
            assert [c["event_id"] for c in changes] == ["withdraw-under-x"]
        changes = pd.read_parquet(home / "identity" / "id_map.parquet")
        assert set(changes["kind"]) == {"merge", "split"}
        assert set(changes["cause"]) == {"export", "correction"}
    finally:
        stop_server(server.proc)
