"""``nextbest serve``'s watch over the BentoML server it starts.

BentoML restarts a worker that fails in its ``__init__`` for ever, and a ``bentoml serve``
started as a plain child outlives a CLI that is stopped. :func:`supervise` starts the
server in a session (process group) of its own, copies its output through, and

- stops the group and returns 1 with the message when a worker reports a
  ``StartupError``/``ConfigError``, or when the server is not up within the start bound;
- forwards SIGTERM/SIGINT/SIGHUP to the group (BentoML then stops gracefully: requests in
  flight are answered, the decision log synced and closed), waits, and returns
  ``128 + signal``; a group still there after the grace period is killed (return 1).

Companions (the triggers worker) run beside the server, each in a process group of its
own with its output copied through: one that reports a start-up failure stops everything
as a failing worker does; one that ends otherwise (a crash, kill -9) is started again after
a second; they are stopped with the server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: Lines of a worker that cannot start (its traceback's last line names the error).
FAILURE_MARKERS = (b"StartupError: ", b"ConfigError: ")
#: The signals forwarded to the server's process group.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class Outcome:
    """How the server ended: the exit status for the CLI and a message (empty if clean)."""

    code: int
    message: str = ""


@dataclass
class _Watch:
    failure: str = ""
    stop_signal: int | None = None
    events: threading.Event = field(default_factory=threading.Event)


def _copy_output(stream: IO[bytes], out: IO[bytes], watch: _Watch) -> None:
    """Copy the server's output through, noting the first start-up failure it reports."""
    for line in iter(stream.readline, b""):
        out.write(line)
        out.flush()
        if not watch.failure:
            for marker in FAILURE_MARKERS:
                at = line.find(marker)
                if at >= 0:
                    watch.failure = line[at:].decode(errors="replace").strip()
                    watch.events.set()
                    break


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is still a member
        return True
    return True


def stop_group(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 30.0
) -> bool:
    """Send ``sig`` to the server's process group and wait for all of it to end (the
    whole group, not only its leader); kill what is left after ``grace`` seconds.
    Returns whether it stopped within the grace period."""
    pgid = proc.pid
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if not _group_alive(pgid):
            return True
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return False


#: Seconds before a companion that ended is started again.
RESTART_DELAY = 1.0


def _start(
    cmd: Sequence[str], env: Mapping[str, str], cwd: Path, out: IO[bytes], watch: _Watch
) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """Start ``cmd`` in a session of its own, its output copied to ``out`` through ``watch``."""
    proc = subprocess.Popen(
        list(cmd),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    copier = threading.Thread(
        target=_copy_output, args=(proc.stdout, out, watch), name="serve-output", daemon=True
    )
    copier.start()
    return proc, copier


@dataclass
class _Companion:
    """A process run beside the server (restarted when it ends)."""

    cmd: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    out: IO[bytes]
    watch: _Watch
    proc: subprocess.Popen[bytes] | None = None
    ended_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        self.proc, _ = _start(self.cmd, self.env, self.cwd, self.out, self.watch)
        self.ended_at = None

    def tend(self) -> None:
        """Start it again a second after it ended (not after a start-up failure)."""
        if self.proc is None or self.proc.poll() is None or self.watch.failure:
            return
        now = time.monotonic()
        if self.ended_at is None:
            self.ended_at = now
            if _group_alive(self.proc.pid):
                stop_group(self.proc, signal.SIGKILL, 5.0)
        elif now - self.ended_at >= RESTART_DELAY:
            self.restarts += 1
            self.start()

    def stop(self, sig: int, grace: float) -> None:
        if self.proc is not None:
            stop_group(self.proc, sig, grace)


def supervise(
    cmd: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    is_up: Callable[[], bool],
    start_timeout: float,
    grace: float = 30.0,
    out: IO[bytes] | None = None,
    companions: Sequence[Sequence[str]] = (),
) -> Outcome:
    """Run ``cmd`` (``bentoml serve``) in its own process group until it ends, fails to
    start or is signalled, with ``companions`` beside it; see the module docstring for the
    outcomes."""
    sink = out or sys.stdout.buffer
    watch = _Watch()
    proc, copier = _start(cmd, env, cwd, sink, watch)
    others = [_Companion(c, env, cwd, sink, watch) for c in companions]
    for c in others:
        c.start()

    def forward(signum: int, _frame: object) -> None:
        if watch.stop_signal is None:
            watch.stop_signal = signum
        watch.events.set()

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        return _watch(proc, watch, is_up, start_timeout, grace, others)
    finally:
        for c in others:  # stopped with the server, whatever ended it
            c.stop(watch.stop_signal or signal.SIGTERM, grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        copier.join(timeout=5)


def _watch(
    proc: subprocess.Popen[bytes],
    watch: _Watch,
    is_up: Callable[[], bool],
    start_timeout: float,
    grace: float,
    companions: Sequence[_Companion] = (),
) -> Outcome:
    deadline = time.monotonic() + start_timeout
    up = False
    while proc.poll() is None:
        for c in companions:
            c.tend()
        if watch.stop_signal is not None:
            sig = watch.stop_signal
            if stop_group(proc, sig, grace):
                return Outcome(128 + sig)
            name = signal.Signals(sig).name
            return Outcome(1, f"the server did not stop within {grace:g} s of {name}; killed")
        if watch.failure:
            stop_group(proc, signal.SIGTERM, grace)
            return Outcome(1, f"cannot start the decision service: {watch.failure}")
        if not up:
            if time.monotonic() > deadline:
                stop_group(proc, signal.SIGTERM, grace)
                return Outcome(
                    1, f"cannot start the decision service: not up within {start_timeout:g} s"
                )
            up = is_up()
        watch.events.wait(0.5)
    # The server ended on its own: make sure none of its group is left behind.
    if _group_alive(proc.pid):
        stop_group(proc, signal.SIGTERM, grace)
    if watch.failure:
        return Outcome(1, f"cannot start the decision service: {watch.failure}")
    code = proc.returncode
    return Outcome(code if code >= 0 else 128 - code)
