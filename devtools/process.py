"""Start and stop a ``bentoml serve`` process on loopback (tests and benchmarks).

The server runs in its own process group so that it and its workers stop together, by the
group id, whatever state they are in.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import PROJECT_ROOT


@dataclass
class Server:
    """A running ``bentoml serve`` process."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    #: Headers every request to this server carries (the API key once authentication is on).
    headers: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    target: str,
    home: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> Server:
    """``bentoml serve target`` on a free port with ``NEXTBEST_HOME=home``; wait until ready.

    Raises ``RuntimeError`` with the server log if it exits, logs a ``StartupError`` (BentoML
    restarts a worker that fails in ``__init__``, so it would never become ready), or is not
    ready within ``timeout`` seconds.
    """
    import httpx

    port = free_port()
    full_env = {
        **os.environ,
        "NEXTBEST_HOME": str(home),
        "PYTHONWARNINGS": "ignore",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "True",
        **(env or {}),
    }
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{target} exited ({proc.returncode}):\n{log_path.read_text()}")
        if "StartupError" in log_path.read_text(errors="replace"):
            stop_server(proc)
            raise RuntimeError(f"{target} refused to start:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return Server(url, proc, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"{target} not ready in {timeout}s:\n{log_path.read_text()}")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server and its workers by process group id."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
