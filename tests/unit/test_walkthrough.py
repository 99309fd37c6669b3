"""The doc walkthrough runner: which commands it reads from a doc, and that it runs them
in one shell with their exit statuses and the documented failures."""

from __future__ import annotations

from pathlib import Path

from tests.walkthrough import Command, commands, run

DOC = Path(__file__).resolve().parents[2] / "docs" / "bring-your-own-data.md"


def test_the_bring_your_own_data_walkthrough_is_read_in_order() -> None:
    cmds = commands(DOC)
    assert cmds[0].text.startswith("WORK=$(mktemp -d)")
    assert any(
        c.text.startswith("export NEXTBEST_HOME=") and "NEXTBEST_POLICY=" in c.text for c in cmds
    )  # a continued line joined
    assert [c.text.split()[1] for c in cmds if c.text.startswith("nextbest")][:5] == [
        "ingest",
        "resolve",
        "features",
        "train",
        "decide-batch",
    ]
    failing = [c for c in cmds if c.status]
    assert failing == [
        Command(failing[0].text, 2, "source column 'MobilePhone' is not in the file")
    ]


def test_commands_share_one_shell_and_report_each_status(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```sh\necho not run\n```\n"
        "```bash walkthrough\n"
        "export GREETING=hello \\\n  OTHER=x\n"
        "# a comment\n"
        'echo "$GREETING"\n'
        "ls /no/such/path    # exits 2: No such file\n"
        "false    # exits 0: never\n"
        "```\n"
    )
    results, final = run(commands(doc), tmp_path, {"PATH": "/usr/bin:/bin"}, tmp_path / "s")
    assert [r.status for r in results] == [0, 0, 2, 1]
    assert results[1].output.strip() == "hello"
    assert [r.as_documented for r in results] == [True, True, True, False]
    assert final["GREETING"] == "hello"
