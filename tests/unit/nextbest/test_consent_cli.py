"""``nextbest consent history``: the ledger's consent changes of one customer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from nextbest.cli import app
from nextbest.decisions.ledger import Ledger, Vocabulary, validate_event
from tests.conftest import demo_terms

NOW = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def test_history_lists_changes_with_source_and_actor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    ledger = Ledger(tmp_path / "ledger.db")
    cell = {"purpose": "marketing", "channel": "sms"}
    for eid, granted, t, actor in (("b", False, NOW, "agent"), ("a", True, NOW - 60, "app")):
        ledger.append(
            validate_event(
                "C9",
                "consent_changed",
                t,
                {**cell, "granted": granted},
                event_id=eid,
                actor=actor,
                received=NOW,
                vocab=Vocabulary.from_terms(demo_terms()),
            )
        )
    out = CliRunner().invoke(app, ["consent", "history", "C9", "--json"])
    assert out.exit_code == 0, out.output
    rows = [orjson.loads(line) for line in out.output.splitlines()]
    assert [(r["event_id"], r["granted"], r["actor"]) for r in rows] == [
        ("a", True, "app"),
        ("b", False, "agent"),
    ]
    table = CliRunner().invoke(app, ["consent", "history", "C9"])
    assert table.exit_code == 0 and "agent" in table.output
