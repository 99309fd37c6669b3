"""The second world end to end: a bank's own exports through the walkthrough of
docs/bring-your-own-data.md (its ``bash walkthrough`` commands, run as written) to a
served ``/decide`` that answers with the bank's actions and rules, on a channel (branch)
and under a purpose (advice) that only the bank's catalog declares."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from devtools.process import Server, start_server, stop_server
from tests.walkthrough import Result, commands
from tests.walkthrough import run as run_walkthrough
from tests.worlds.bank import KNOWN_CUSTOMER, NO_ADVICE_CUSTOMER, BankWorld

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.integration]


DOC = ROOT / "docs" / "bring-your-own-data.md"


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Result], dict[str, str]]:
    """The doc's walkthrough run as written, in a temporary home: it builds the bank."""
    root = tmp_path_factory.mktemp("bank")
    env = {
        **os.environ,
        "HOME": str(root / "user"),
        "TMPDIR": str(root / "tmp"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
        # speed only: one feature worker, one learner (the doc's commands are unchanged)
        "NEXTBEST_FEATURE_WORKERS": "1",
        "NEXTBEST_LEARNERS": '["t_learner"]',
    }
    for d in ("user", "tmp"):
        (root / d).mkdir()
    return run_walkthrough(commands(DOC), ROOT, env, root / "walkthrough")


@pytest.fixture(scope="module")
def bank(walkthrough: tuple[list[Result], dict[str, str]]) -> tuple[BankWorld, dict[str, str]]:
    results, final = walkthrough
    failed = [r for r in results if not r.as_documented]
    assert not failed, "\n\n".join(
        f"{r.command.text}: exit {r.status}\n{r.output[-3000:]}" for r in failed
    )
    work = Path(final["WORK"])
    world = BankWorld(data_dir=work / "bank", sources=work / "bank" / "sources.yaml")
    env = {
        "NEXTBEST_HOME": final["NEXTBEST_HOME"],
        "NEXTBEST_SOURCES": str(world.sources),
        "NEXTBEST_CATALOG": str(ROOT / final["NEXTBEST_CATALOG"]),
        "NEXTBEST_POLICY": str(ROOT / final["NEXTBEST_POLICY"]),
        "NEXTBEST_SNAPSHOT_MONTHS": final["NEXTBEST_SNAPSHOT_MONTHS"],
    }
    return world, env


def test_the_doc_walkthrough_runs_as_documented(
    walkthrough: tuple[list[Result], dict[str, str]],
) -> None:
    results, final = walkthrough
    assert len(results) >= 8
    for r in results:
        assert r.as_documented, f"{r.command.text}: exit {r.status}\n{r.output[-3000:]}"
    failures = [r for r in results if r.command.status != 0]
    assert failures and all(r.command.message in r.output for r in failures)
    assert "Traceback" not in "".join(r.output for r in failures)
    assert (Path(final["WORK"]) / "scores" / "email.parquet").exists()
    # `nextbest pipeline --sources` did the same in one go, in its own home
    one_go = Path(final["WORK"]) / "home-pipeline"
    assert (one_go / "scores" / "email.parquet").exists()
    assert pd.read_parquet(one_go / "scores" / "email.parquet")["chosen_action"].notna().all()


@pytest.fixture(scope="module")
def service(
    bank: tuple[BankWorld, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    _, env = bank
    log = tmp_path_factory.mktemp("bank-service") / "serve.log"
    server = start_server("serving.service:NextBest", Path(env["NEXTBEST_HOME"]), log, env=env)
    try:
        yield server
    finally:
        stop_server(server.proc)


def _post_decide(service: Server, channel: str, customer: str = KNOWN_CUSTOMER) -> httpx.Response:
    return httpx.post(
        f"{service.url}/decide",
        json={"customer": {"id": customer, "id_type": "crm_id"}, "channel": channel, "k": 3},
        headers=service.headers,
        timeout=30,
    )


def _decide(service: Server, channel: str, customer: str = KNOWN_CUSTOMER) -> dict:
    r = _post_decide(service, channel, customer)
    assert r.status_code == 200, r.text
    return r.json()


def _first_reasons(answer: dict) -> dict[str, str]:
    return {e["action_id"]: e["reasons"][0]["code"] for e in answer["excluded"]}


def _bank_actions(world: BankWorld) -> set[str]:
    return {a["id"] for a in yaml.safe_load(world.catalog.read_text())["actions"]}


def test_training_learned_the_bank_s_arms(bank: tuple[BankWorld, dict[str, str]]) -> None:
    _, env = bank
    db = sqlite3.connect(Path(env["NEXTBEST_HOME"]) / "mlflow.db")
    arms = dict(db.execute("select key, value from params where key = 'arms'").fetchall())
    assert set(arms["arms"].split(",")) == {
        "email_savings_offer",
        "sms_card_upgrade",
        "branch_mortgage_review",
    }


def test_decide_answers_with_the_bank_s_actions_and_rules(
    bank: tuple[BankWorld, dict[str, str]], service: Server
) -> None:
    world, _ = bank
    actions = _bank_actions(world)
    email = _decide(service, "email")
    named = {e["action_id"] for e in email["excluded"]} | {a["action_id"] for a in email["actions"]}
    assert named and named <= actions | {"no_action"}
    assert email["chosen_action"] in actions | {"no_action"}
    assert email["catalog_version"] == "bank-2026.1"
    reasons = {e["action_id"]: e["reasons"][0]["code"] for e in email["excluded"]}
    assert reasons.get("email_metal_card") == "OUT_OF_STOCK"  # stock 0 in the bank's table
    # the known customer withdrew SMS consent: the card upgrade is never sent by SMS
    sms = _decide(service, "sms")
    assert sms["chosen_action"] == "no_action"
    sms_reasons = {e["action_id"]: e["reasons"][0]["code"] for e in sms["excluded"]}
    assert sms_reasons["sms_card_upgrade"] == "NO_CONSENT"


def test_a_branch_channel_and_advice_purpose_the_demo_never_had(
    bank: tuple[BankWorld, dict[str, str]], service: Server
) -> None:
    world, _ = bank
    catalog = yaml.safe_load(world.catalog.read_text())
    # channels are plain ids or {id, phrase} entries: the ids, in file order
    catalog["channels"] = [c if isinstance(c, str) else c["id"] for c in catalog["channels"]]
    # the API's enums are the bank catalog's channels and purposes
    spec = httpx.get(f"{service.url}/docs.json", headers=service.headers, timeout=10).json()
    decide = spec["paths"]["/decide"]["post"]["requestBody"]["content"]["application/json"]
    channel = decide["schema"]["properties"]["channel"]  # optional: an enum inside anyOf
    assert [v["enum"] for v in channel["anyOf"] if "enum" in v] == [catalog["channels"]]
    assert catalog["channels"] == ["email", "sms", "branch", "web"]
    payload = spec["components"]["schemas"]["EventPayload"]["properties"]
    for field, declared in (("channel", "channels"), ("purpose", "purposes")):
        enums = [v["enum"] for v in payload[field]["anyOf"] if "enum" in v]
        assert enums == [catalog[declared]], (field, payload[field])
    assert "advice" in catalog["purposes"]
    refused = _post_decide(service, "push")  # a demo channel the bank does not have
    assert refused.status_code == 400 and "channel" in refused.text
    # advice in branch needs consent to advice in branch: marketing consent is not enough
    with_consent = _decide(service, "branch")
    named = {e["action_id"] for e in with_consent["excluded"]}
    named |= {a["action_id"] for a in with_consent["actions"]}
    assert named == {"branch_mortgage_review"}
    assert _first_reasons(with_consent).get("branch_mortgage_review") != "NO_CONSENT"
    without = _decide(service, "branch", NO_ADVICE_CUSTOMER)
    assert without["chosen_action"] == "no_action"
    assert _first_reasons(without)["branch_mortgage_review"] == "NO_CONSENT"
    # the reason reads in the bank's words for its branch (its catalog's phrase)
    texts = {e["action_id"]: e["reasons"][0]["text"] for e in without["excluded"]}
    assert texts["branch_mortgage_review"] == "Customer has not consented to advice in a branch."
    # consent to advice in branch given through /events (validated against the catalog)
    event = {
        "customer": {"id": NO_ADVICE_CUSTOMER, "id_type": "crm_id"},
        "type": "consent_changed",
        "payload": {"purpose": "advice", "channel": "branch", "granted": True},
    }
    r = httpx.post(f"{service.url}/events", json=event, headers=service.headers, timeout=30)
    assert r.status_code == 200, r.text
    after = _decide(service, "branch", NO_ADVICE_CUSTOMER)
    assert _first_reasons(after).get("branch_mortgage_review") != "NO_CONSENT"
    event["payload"] = {"purpose": "advice", "channel": "call_center", "granted": True}
    r = httpx.post(f"{service.url}/events", json=event, headers=service.headers, timeout=30)
    assert r.status_code == 400 and "payload.channel" in r.text
