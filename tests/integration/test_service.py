"""The real stack over HTTP: ``bentoml serve`` + Feast SQLite online store + MLflow registry.

Each rule is shown with a customer who is affected and one who is not, including the
changes that events pushed through ``/events`` make to the next decision.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from devtools.process import Server, stop_server
from nextbest.demo.generate import ACTIONS
from tests.conftest import World, start_service

pytestmark = [pytest.mark.slow, pytest.mark.integration]

MARKETING = {a.action_id for a in ACTIONS if a.purpose == "marketing"}
EMAIL_ACTIONS = {a.action_id for a in ACTIONS if a.channel == "email"}


def _decide(
    service: Server, cid: str, channel: str = "email", id_type: str = "customer_id", k: int = 3
) -> dict:
    r = httpx.post(
        f"{service.url}/decide",
        headers=service.headers,
        json={
            "customer": {"id": cid, "id_type": id_type},
            "channel": channel,
            "k": k,
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _event(service: Server, cid: str, type_: str, payload: dict | None = None) -> dict:
    r = httpx.post(
        f"{service.url}/events",
        headers=service.headers,
        json={
            "customer": {"id": cid},
            "type": type_,
            "payload": payload or {},
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _latest(world: World, view: str) -> pd.DataFrame:
    df = pd.read_parquet(world.settings.features_dir / f"{view}.parquet")
    df = df.sort_values("event_timestamp").drop_duplicates("customer_id", keep="last")
    return df.set_index("customer_id")


@pytest.fixture(scope="module")
def treated_customers(world: World, service: Server) -> list[str]:
    """Customers offered an email marketing action now (decided group, consent given)."""
    consent = _latest(world, "customer_consent")
    service_v = _latest(world, "customer_service")
    ok = consent.index[(consent["consent_marketing_email"] == 1)]
    ok = [c for c in ok if service_v.loc[c, "open_cases"] == 0][:120]
    found = []
    for cid in ok:
        d = _decide(service, cid)
        if d["group"] == "decided" and d["chosen_action"] in MARKETING:
            found.append(cid)
        if len(found) >= 6:
            break
    assert len(found) >= 6, "too few customers with an email offer to test the rules"
    return found


def test_decide_answers_and_logs_durably(
    world: World, service: Server, treated_customers: list[str]
) -> None:
    cid = treated_customers[0]
    d = _decide(service, cid)
    assert d["customer_id"] == cid
    assert d["actions"], d
    scores = [a["score"] for a in d["actions"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert d["model_version"].endswith(str(world.train_result.model_version))
    for a in d["actions"]:
        assert a["reasons"] and "uplift" in a["reasons"][0]
    for e in d["excluded"]:
        assert e["reasons"][0]["code"] and e["reasons"][0]["text"]
    logged = [
        json.loads(line)
        for f in sorted(Path(world.settings.decision_log_dir).glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert d["decision_id"] in {r["decision_id"] for r in logged}


def test_decide_by_email_resolves_and_keeps_email_out_of_the_log(
    world: World, service: Server, treated_customers: list[str]
) -> None:
    from nextbest.customers.sources.identity_records import load_canonical_records

    records = load_canonical_records(world.settings.raw_dir)
    identity = pd.read_parquet(world.settings.unified_dir / "identity.parquet")
    merged = records.merge(identity[["record_id", "customer_id"]], on="record_id")
    row = merged.loc[merged["customer_id"].isin(treated_customers) & merged["email"].notna()].iloc[
        0
    ]
    d = _decide(service, f"  {row['email'].upper()} ", id_type="email")
    assert d["customer_id"] == row["customer_id"]
    text = "".join(f.read_text() for f in Path(world.settings.decision_log_dir).glob("*.jsonl"))
    assert row["email"].strip().lower() not in text.lower()


def test_unknown_identifier_is_answered_safely(service: Server) -> None:
    d = _decide(service, "nobody@example.invalid", id_type="email")
    assert d["customer_id"] is None
    assert d["chosen_action"] == "no_action" and d["actions"] == []
    assert d["reason"]["code"] == "UNKNOWN_CUSTOMER"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"customer": {"id": "x", "id_type": "passport"}, "channel": "email"}, "id_type"),
        ({"customer": {"id": "x"}, "channel": "fax"}, "channel"),
        ({"channel": "email"}, "customer"),
        ({"customer": {"id": "x"}, "channel": "email", "k": 0}, "k"),
    ],
)
def test_malformed_requests_are_4xx_naming_the_field(
    service: Server, body: dict, field: str
) -> None:
    r = httpx.post(f"{service.url}/decide", headers=service.headers, json=body, timeout=30)
    assert 400 <= r.status_code < 500
    assert field in r.text


def test_consent_withdrawal_takes_effect_on_the_next_decision(
    service: Server, treated_customers: list[str]
) -> None:
    cid, other = treated_customers[0], treated_customers[1]
    _event(
        service,
        cid,
        "consent_changed",
        {"purpose": "marketing", "channel": "email", "granted": False},
    )
    d = _decide(service, cid)
    assert d["chosen_action"] == "no_action" or d["chosen_action"] == "email_service_tips"
    marketing = {e["action_id"] for e in d["excluded"] if e["reasons"][0]["code"] == "NO_CONSENT"}
    assert {"email_phone_upgrade", "email_broadband_bundle"} <= marketing
    assert _decide(service, other)["chosen_action"] not in (None, "no_action")
    _event(
        service,
        cid,
        "consent_changed",
        {"purpose": "marketing", "channel": "email", "granted": True},
    )
    assert _decide(service, cid)["chosen_action"] not in (None, "no_action")


def test_open_case_pauses_marketing_until_closed(
    service: Server, treated_customers: list[str]
) -> None:
    cid, other = treated_customers[2], treated_customers[3]
    # The marketing actions ranked for the customer before the case (others may already be
    # excluded for other reasons, e.g. eligibility, which then comes first).
    offered = {a["action_id"] for a in _decide(service, cid)["actions"]} & MARKETING
    assert offered
    _event(service, cid, "service_case_opened")
    d = _decide(service, cid)
    assert d["chosen_action"] not in MARKETING
    paused = {e["action_id"] for e in d["excluded"] if e["reasons"][0]["code"] == "CASE_OPEN"}
    assert offered <= paused <= MARKETING & EMAIL_ACTIONS
    assert _decide(service, other)["chosen_action"] in MARKETING
    _event(service, cid, "service_case_closed")
    assert _decide(service, cid)["chosen_action"] in MARKETING


def test_complaint_blocks_upsell_and_cross_sell(
    service: Server, treated_customers: list[str]
) -> None:
    cid = treated_customers[4]
    _event(service, cid, "complaint")
    d = _decide(service, cid)
    blocked = {
        e["action_id"] for e in d["excluded"] if e["reasons"][0]["code"] == "RECENT_COMPLAINT"
    }
    assert {"email_phone_upgrade", "email_broadband_bundle"} <= blocked
    assert d["chosen_action"] not in {"email_phone_upgrade", "email_broadband_bundle"}


def test_contact_counts_against_the_channel_cap(
    service: Server, treated_customers: list[str]
) -> None:
    cid, other = treated_customers[5], treated_customers[1]
    before = _decide(service, cid)["chosen_action"]
    assert before != "no_action"
    _event(service, cid, "contact", {"channel": "email", "action_id": before})
    d = _decide(service, cid)
    assert d["chosen_action"] == "no_action"
    codes = {e["reasons"][0]["code"] for e in d["excluded"]}
    assert codes & {"CHANNEL_CAP", "COOLDOWN"}
    assert _decide(service, other)["chosen_action"] != "no_action"


def test_purchase_means_the_product_is_never_offered_again(world: World, service: Server) -> None:
    consent = _latest(world, "customer_consent")
    holdings = _latest(world, "customer_holdings")
    candidates = [
        c
        for c in consent.index[consent["consent_marketing_email"] == 1]
        if holdings.loc[c, "holds_phone_premium"] == 0
    ][:200]
    for cid in candidates:
        d = _decide(service, cid, k=5)
        if d["group"] == "decided" and any(
            a["action_id"] == "email_phone_upgrade" for a in d["actions"]
        ):
            break
    else:
        pytest.fail("no customer is offered the phone upgrade")
    _event(
        service,
        cid,
        "purchase",
        {"product_id": "phone_premium", "amount": 899.0, "category": "phones"},
    )
    d = _decide(service, cid, k=5)
    assert all(a["action_id"] != "email_phone_upgrade" for a in d["actions"])
    assert any(
        e["action_id"] == "email_phone_upgrade" and e["reasons"][0]["code"] == "ALREADY_HOLDS"
        for e in d["excluded"]
    )


def test_holdout_customers_are_never_treated(world: World, service: Server) -> None:
    ids = _latest(world, "customer_profile").index[:300]
    groups = {"holdout": 0, "decided": 0}
    for cid in ids:
        d = _decide(service, cid, channel="web")
        groups[d["group"]] += 1
        if d["group"] == "holdout":
            assert d["chosen_action"] == "no_action"
            assert d["actions"] == [], "a holdout answer must list no offers"
    share = world.settings and groups["holdout"] / len(ids)
    from nextbest.decisions.policy import load_policy

    expected = load_policy(world.settings.policy).holdout.share
    sd = np.sqrt(expected * (1 - expected) / len(ids))
    assert abs(share - expected) < 4 * sd + 1e-9


def test_catalog_health_metrics_and_openapi(service: Server) -> None:
    r = httpx.get(f"{service.url}/actions", headers=service.headers, timeout=10)
    assert r.status_code == 200
    assert {"email_phone_upgrade", "web_loan_banner"} <= {a["id"] for a in r.json()["actions"]}
    for path in ("/healthz", "/readyz", "/livez", "/docs.json"):
        r = httpx.get(f"{service.url}{path}", headers=service.headers, timeout=10)
        assert r.status_code == 200, path
    metrics = httpx.get(f"{service.url}/metrics", headers=service.headers, timeout=10)
    assert metrics.status_code == 200 and "# TYPE" in metrics.text


def test_service_refuses_to_start_without_a_champion(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError) as err:
        server = start_service(tmp_path, tmp_path / "serve.log", timeout=90)
        stop_server(server.proc)
    assert "StartupError" in str(err.value)
    assert "holds the alias 'champion'" in str(err.value) or "not found" in str(err.value)


def test_nextbest_serve_refuses_to_start_without_features_or_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from nextbest.cli import app

    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", "--port", "3999"])
    assert result.exit_code == 1
    assert "Feast registry not found" in result.output
