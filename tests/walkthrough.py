"""Run the shell walkthrough of a doc as a user would: the commands of its ```bash
walkthrough fences, in order, in one bash session (so ``export`` and variables carry
over), each command's exit status and output recorded.

A command is one line of such a fence, with ``\\`` continuations joined; comments and
blank lines are skipped. A command whose trailing comment reads ``# exits N: text`` is
a documented failure: it must exit with status N and print ``text``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

FENCE = "```bash walkthrough"
_EXPECT = re.compile(r"\s#\s*exits\s+(\d+):\s*(.+?)\s*$")


@dataclass(frozen=True)
class Command:
    """One walkthrough command and what it must do."""

    text: str
    status: int = 0
    message: str | None = None


@dataclass(frozen=True)
class Result:
    """What one command did."""

    command: Command
    status: int
    output: str

    @property
    def as_documented(self) -> bool:
        """Exit status as documented, and the documented message printed."""
        if self.status != self.command.status:
            return False
        return self.command.message is None or self.command.message in self.output


def commands(doc: Path) -> list[Command]:
    """The walkthrough commands of ``doc``, in order."""
    out: list[Command] = []
    inside = False
    pending = ""
    for line in doc.read_text().splitlines():
        if not inside:
            inside = line.strip() == FENCE
            continue
        if line.strip() == "```":
            inside = False
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if not text or text.startswith("#"):
            continue
        m = _EXPECT.search(text)
        out.append(Command(text, int(m.group(1)), m.group(2)) if m else Command(text))
    return out


def run(
    cmds: list[Command], cwd: Path, env: dict[str, str], scratch: Path, timeout: float = 1800
) -> tuple[list[Result], dict[str, str]]:
    """Run ``cmds`` in one bash session in ``cwd``; each command's result, and the
    session's environment at the end (its exported and shell variables)."""
    scratch.mkdir(parents=True, exist_ok=True)
    lines = ["set +e"]
    for i, c in enumerate(cmds):
        log = shlex.quote(str(scratch / f"{i}.log"))
        # a brace group runs in this shell (exports carry over); the newline ends any
        # trailing comment before the redirection
        lines.append(f"{{ {c.text}\n}} > {log} 2>&1")
        lines.append(f"echo $? > {shlex.quote(str(scratch / f'{i}.status'))}")
    lines.append(f"set > {shlex.quote(str(scratch / 'env'))}")
    script = scratch / "walkthrough.sh"
    script.write_text("\n".join(lines) + "\n")
    subprocess.run(["bash", str(script)], cwd=cwd, env=env, timeout=timeout, check=False)
    results = []
    for i, c in enumerate(cmds):
        status_file = scratch / f"{i}.status"
        status = int(status_file.read_text()) if status_file.exists() else -1
        log_file = scratch / f"{i}.log"
        results.append(Result(c, status, log_file.read_text() if log_file.exists() else ""))
    final: dict[str, str] = {}
    for line in (scratch / "env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            final[name] = value.strip("'")
    return results, final
