"""A consent withdrawal follows the person through every identity change, over real HTTP:
recorded under one customer id, it still holds after a human link, a new export record
that joins two customers, and a human split, each followed by resolve and a features build,
and the consent history shows it under the customer id of now."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from demo.generate import ACTIONS
from devtools.process import Server, stop_server
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


def _split_person(settings, consented: set[str]) -> tuple[pd.Series, pd.Series]:
    """A person the resolver left as two customers: a lone app account with an e-mail and
    a consented customer with a phone and the same first name (an export can join them)."""
    from customers.sources import load_canonical_records

    recs = load_canonical_records(settings.raw_dir).merge(_identity(settings), on="record_id")
    truth = pd.read_parquet(settings.raw_dir / "truth" / "records.parquet")
    recs = recs.merge(truth[["record_id", "person_id"]], on="record_id")
    size = recs.groupby("customer_id")["record_id"].transform("size")
    lone = recs.loc[(recs["source"] == "app") & (size == 1) & recs["email"].notna()]
    for _, a in lone.iterrows():
        others = recs.loc[
            (recs["person_id"] == a["person_id"])
            & (recs["customer_id"] != a["customer_id"])
            & recs["customer_id"].isin(consented)
            & recs["phone"].notna()
            & (recs["first_name"].str.lower() == str(a["first_name"]).lower())
        ]
        if len(others):
            return a, others.iloc[0]
    raise AssertionError("the world has no person split across an app account and a CRM record")


def _add_lead(settings, email: str, b: pd.Series) -> None:
    """A new e-mail lead in the export: the app account's e-mail, the other side's phone."""
    path = settings.raw_dir / "email_leads.parquet"
    leads = pd.read_parquet(path)
    row = leads.iloc[[0]].copy()
    row["lead_id"] = "lead-joins-two"
    row["email"], row["phone"] = email, b["phone"]
    row["first_name"], row["last_name"] = b["first_name"], b["last_name"]
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
    a, b = _split_person(settings, consented)
    singles = before.groupby("customer_id").filter(lambda g: len(g) == 1)
    x, y = (r for _, r in singles.loc[singles["customer_id"].isin(consented)].head(2).iterrows())
    runner = CliRunner()
    env = {"NEXTBEST_HOME": str(home)}

    server = start_service(home, tmp_path / "serve.log")
    try:
        assert not _no_consent(_decide(server, b["customer_id"]))
        assert not _no_consent(_decide(server, y["customer_id"]))
        _withdraw(server, a["customer_id"], "withdraw-under-app-id")
        _withdraw(server, x["customer_id"], "withdraw-under-x")

        # 1. A human link (x with y) and a new export record (a with b), then a rebuild.
        linked = runner.invoke(
            app,
            ["identity", "link", x["record_id"], y["record_id"], "--reason", "same person"],
            env=env,
        )
        assert linked.exit_code == 0, linked.output
        _add_lead(settings, a["email"], b)
        resolve(settings)
        build_features(settings)
        ids = _identity(settings).set_index("record_id")["customer_id"]
        xy, ab = ids[x["record_id"]], ids[b["record_id"]]
        assert ids[y["record_id"]] == xy and ids[a["record_id"]] == ab
        assert ab == b["customer_id"] or ab == a["customer_id"]  # a merge keeps an old id
        for cid in (xy, ab):
            assert _no_consent(_decide(server, cid))
        history = _history(server, ab)
        assert history["customer_id"] == ab
        assert [c["recorded_under"] for c in history["changes"]] == [a["customer_id"]]
        # A caller holding the retired id reaches the person it is now.
        retired = a["customer_id"] if ab == b["customer_id"] else b["customer_id"]
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
