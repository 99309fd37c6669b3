"""The second world end to end: a bank's own exports through ``nextbest pipeline
--sources`` to a served ``/decide`` that answers with the bank's actions and rules."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from devtools.process import Server, start_server, stop_server
from tests.worlds.bank import KNOWN_CUSTOMER, BankWorld, write_bank

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[BankWorld, dict[str, str]]:
    root = tmp_path_factory.mktemp("bank")
    world = write_bank(root / "exports", customers=300)
    env = {
        "NEXTBEST_HOME": str(root / "home"),
        "NEXTBEST_SOURCES": str(world.sources),
        "NEXTBEST_CATALOG": str(world.catalog),
        "NEXTBEST_POLICY": str(world.policy),
        "NEXTBEST_SNAPSHOT_MONTHS": "7",
        "NEXTBEST_FEATURE_WORKERS": "1",
        "NEXTBEST_LEARNERS": '["t_learner"]',
    }
    # the walkthrough's command (docs/bring-your-own-data.md), as a user runs it
    done = subprocess.run(
        [sys.executable, "-m", "nextbest", "pipeline", "--sources", str(world.sources)],
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return world, env


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


def _decide(service: Server, channel: str) -> dict:
    r = httpx.post(
        f"{service.url}/decide",
        headers=service.headers,
        json={"customer": {"id": KNOWN_CUSTOMER, "id_type": "crm_id"}, "channel": channel, "k": 3},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()


def _bank_actions(world: BankWorld) -> set[str]:
    return {a["id"] for a in yaml.safe_load(world.catalog.read_text())["actions"]}


def test_training_learned_the_bank_s_arms(bank: tuple[BankWorld, dict[str, str]]) -> None:
    _, env = bank
    db = sqlite3.connect(Path(env["NEXTBEST_HOME"]) / "mlflow.db")
    arms = dict(db.execute("select key, value from params where key = 'arms'").fetchall())
    assert set(arms["arms"].split(",")) == {
        "email_savings_offer",
        "sms_card_upgrade",
        "call_mortgage_review",
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
