"""``nextbest identity review`` without a file lists the identify events waiting for review,
masked; ``nextbest consent history`` shows the identifiers attached by identify events."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from nextbest.cli import app
from nextbest.core.settings import get_settings
from nextbest.customers.normalise import identifier_key
from nextbest.decisions.identity_links import IdentityLinks, identify_payload
from nextbest.decisions.ledger import Ledger, validate_event

NOW = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
EMAIL = "Kim.Review@Example.net"


def _identify(ledger: Ledger, cid: str, event_id: str, owner: str | None, salt: str) -> str:
    payload = identify_payload({"id_type": "email", "id_value": EMAIL}, salt)
    event = validate_event(
        cid, "identify", NOW - 60, payload, event_id=event_id, actor="app-key", received=NOW
    )
    return IdentityLinks(ledger).append(event, owner)[1].status


def test_review_lists_conflicts_masked_and_history_shows_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    salt = get_settings(home=tmp_path).identifier_salt
    runner = CliRunner()
    empty = runner.invoke(app, ["identity", "review"])
    assert empty.exit_code == 0 and "no identify events" in empty.output
    ledger = Ledger(tmp_path / "ledger.db")
    assert _identify(ledger, "C7", "login-7", None, salt) == "linked"
    assert _identify(ledger, "C8", "login-8", None, salt) == "review"
    assert _identify(ledger, "C9", "login-9", "C1", salt) == "review"

    out = runner.invoke(app, ["identity", "review", "--json"])
    assert out.exit_code == 0, out.output
    rows = [orjson.loads(line) for line in out.output.splitlines()]
    assert [(r["event_id"], r["customer_id"], r["owner_id"]) for r in rows] == [
        ("login-8", "C8", "C7"),
        ("login-9", "C9", "C1"),
    ]
    table = runner.invoke(app, ["identity", "review"])
    assert table.exit_code == 0 and "login-9" in table.output
    key = identifier_key("email", EMAIL, salt)
    for text in (out.output, table.output):
        assert EMAIL.lower() not in text.lower() and key not in text

    history = runner.invoke(app, ["consent", "history", "C7", "--json"])
    assert history.exit_code == 0, history.output
    [line] = [orjson.loads(x) for x in history.output.splitlines()]
    assert (line["type"], line["event_id"], line["status"]) == ("identify", "login-7", "linked")
    assert line["identifier"].startswith("email:") and key not in history.output
    shown = runner.invoke(app, ["consent", "history", "C7"])
    assert shown.exit_code == 0 and "login-7" in shown.output


def test_review_with_a_file_still_goes_through_the_record_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    reviewed = tmp_path / "review_pairs.csv"
    reviewed.write_text(
        "record_id_a,record_id_b,decision,reason\ncrm:1,app:2,link,same person\ncrm:3,app:4,,\n"
    )
    out = CliRunner().invoke(app, ["identity", "review", str(reviewed)])
    # No records to check the pair against: refused, nothing recorded.
    assert out.exit_code == 2 and "crm_accounts.parquet is missing" in out.output
    assert not (tmp_path / "identity" / "decisions.csv").exists()
    missing = CliRunner().invoke(app, ["identity", "review", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
