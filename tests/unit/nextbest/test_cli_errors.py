"""Every command prints a user's mistake as one message and exits non-zero, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from nextbest.cli import app
from nextbest.commands.common import fail_cleanly


def _commands(group: typer.Typer) -> list:
    out = [c.callback for c in group.registered_commands]
    for sub in group.registered_groups:
        out += _commands(sub.typer_instance)
    return out


def test_every_command_handles_user_errors() -> None:
    callbacks = _commands(app)
    assert len(callbacks) > 10
    assert all(getattr(cb, "__wrapped__", None) is not None for cb in callbacks)


def test_resolve_with_a_duplicated_record_id_is_one_message(tmp_path: Path) -> None:
    records = tmp_path / "records.csv"
    records.write_text("record_id,source,email\ncrm:1,crm,a@x.test\ncrm:1,crm,b@x.test\n")
    result = CliRunner().invoke(
        app, ["resolve", "--records", str(records), "--out", str(tmp_path / "out.csv")]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "record_id must be unique" in result.output and "crm:1" in result.output
    assert not (tmp_path / "out.csv").exists()


def test_ingest_of_a_bad_file_names_file_column_and_rule(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("Id,Mail\n1,a@x.test\n,b@x.test\n")
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "tables:\n  identity_records:\n    - file: people.csv\n"
        "      record: {source: crm, column: Id}\n      columns: {email: Mail}\n"
    )
    result = CliRunner().invoke(
        app, ["ingest", "--sources", str(sources)], env={"NEXTBEST_HOME": str(tmp_path / "h")}
    )
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    flat = " ".join(result.output.split())
    assert "people.csv: table identity_records, column 'record_id'" in flat
    assert "required value is empty" in flat and "rows 2" in flat
    assert not (tmp_path / "h" / "contract").exists()


def test_a_bug_keeps_its_traceback() -> None:
    @fail_cleanly
    def broken() -> None:
        raise KeyError("a bug, not the user's mistake")

    with pytest.raises(KeyError):
        broken()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["generate", "--customers", "5"], "at least 10 persons, got 5"),
        (["train"], "run `nextbest features build` first"),
        (["features", "build"], "run `nextbest generate` (or pass --sources) first"),
        (["resolve"], "run `nextbest generate"),
    ],
)
def test_a_careless_call_on_an_empty_home_is_one_message(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    # A step run before the one that builds its input, or an impossible size: the file or
    # the option named, no traceback, nothing written.
    home = tmp_path / "home"
    result = CliRunner().invoke(app, args, env={"NEXTBEST_HOME": str(home)})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "╭" not in result.output
    assert needle in " ".join(result.output.split())
    assert not (home / "models").exists() and not (home / "features").exists()


def test_spark_remote_is_refused_before_anything_is_staged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPARK_REMOTE", "sc://spark.example:15002/;token=secret")
    sources = tmp_path / "sources.yaml"
    sources.write_text("version: 1\ntables: {}\n")
    args = ["resolve", "--sources", str(sources), "--engine", "spark"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "SPARK_REMOTE is set" in result.output and "NEXTBEST_SPARK_MASTER" in result.output
    assert "secret" not in result.output
    assert not (tmp_path / "home").exists()
