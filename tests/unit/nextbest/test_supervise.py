"""``nextbest serve``'s watch over its server, on real processes: a server whose worker
reports a start-up failure is stopped (all of its group) with exit 1 and the message, and a
SIGTERM to the CLI stops the whole group and exits 128 + 15."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil

from nextbest.supervise import supervise

#: A stand-in for ``bentoml serve``: starts a "worker" in its group, prints, then waits.
SERVER = """
import subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("worker", worker.pid, flush=True)
time.sleep({delay})
print({line!r}, flush=True)
time.sleep(120)
"""


def _run(tmp_path: Path, line: str, **kwargs: object) -> tuple[object, list[psutil.Process]]:
    script = tmp_path / "server.py"
    script.write_text(SERVER.format(delay=1.5, line=line))
    out = io.BytesIO()
    seen: list[psutil.Process] = []
    # Processes this test session started before (a Spark gateway, say) are not the server's.
    earlier = {p.pid for p in psutil.Process().children(recursive=True)}

    def is_up() -> bool:  # never up: the start bound or a signal ends it
        seen.extend(p for p in psutil.Process().children(recursive=True) if p.pid not in earlier)
        return False

    outcome = supervise(
        [sys.executable, str(script)], dict(os.environ), tmp_path, is_up, out=out, **kwargs
    )
    return outcome, seen


def test_a_worker_start_up_failure_stops_the_whole_group_with_its_message(
    tmp_path: Path,
) -> None:
    t0 = time.monotonic()
    outcome, seen = _run(
        tmp_path,
        "nextbest.decisions.catalog.ConfigError: policy.yaml: rules: not a list",
        start_timeout=60,
        grace=10,
    )
    assert outcome.code == 1
    assert "ConfigError: policy.yaml: rules: not a list" in outcome.message
    assert time.monotonic() - t0 < 20
    assert len({p.pid for p in seen}) >= 2  # the server and its worker
    _, alive = psutil.wait_procs(seen, timeout=5)
    assert not alive


def test_a_server_not_up_in_time_is_stopped(tmp_path: Path) -> None:
    outcome, seen = _run(tmp_path, "still starting", start_timeout=2, grace=10)
    assert outcome.code == 1 and "not up within 2 s" in outcome.message
    _, alive = psutil.wait_procs(seen, timeout=5)
    assert not alive


def test_sigterm_to_the_cli_is_forwarded_to_the_whole_group(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        outcome, seen = _run(tmp_path, "serving", start_timeout=60, grace=10)
    finally:
        timer.cancel()
    assert outcome.code == 128 + signal.SIGTERM
    assert len({p.pid for p in seen}) >= 2
    _, alive = psutil.wait_procs(seen, timeout=5)
    assert not alive
    assert signal.getsignal(signal.SIGTERM) == before  # the CLI's own handler is back


#: A stand-in for the triggers worker: appends its pid to a file, then waits (or fails).
COMPANION = """
import os, sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"{{os.getpid()}}\\n")
print({line!r}, flush=True)
time.sleep(120)
"""


def _companion(tmp_path: Path, line: str) -> tuple[list[str], Path]:
    script, pids = tmp_path / "companion.py", tmp_path / "pids"
    script.write_text(COMPANION.format(line=line))
    return [sys.executable, str(script), str(pids)], pids


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_a_companion_killed_is_started_again_and_stops_with_the_server(tmp_path: Path) -> None:
    cmd, pids = _companion(tmp_path, "worker running")

    def kill_then_stop() -> None:
        deadline = time.monotonic() + 30
        while not _pids(pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(_pids(pids)[0], signal.SIGKILL)
        while len(_pids(pids)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=kill_then_stop, daemon=True)
    killer.start()
    try:
        outcome, _ = _run(tmp_path, "serving", start_timeout=60, grace=10, companions=[cmd])
    finally:
        killer.join(timeout=40)
        signal.signal(signal.SIGTERM, before)
    assert outcome.code == 128 + signal.SIGTERM
    started = _pids(pids)
    assert len(started) == 2  # the first, killed, and the one started after it
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in started)


def test_a_companion_that_cannot_start_stops_everything(tmp_path: Path) -> None:
    cmd, _ = _companion(tmp_path, "StartupError: another triggers worker runs over this home")
    outcome, seen = _run(tmp_path, "serving", start_timeout=60, grace=10, companions=[cmd])
    assert outcome.code == 1 and "another triggers worker" in outcome.message
    _, alive = psutil.wait_procs(seen, timeout=5)
    assert not alive
