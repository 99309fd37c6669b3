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

from nextbest.core.api_keys import create_key, load_keys, revoke_key, write_secret
from nextbest.core.settings import PROJECT_ROOT, get_settings
from nextbest.core.vocabulary import API_SCOPES

#: Name of the key with every scope that :func:`start_server` provisions.
TEST_KEY_NAME = "tests"


@dataclass
class Server:
    """A running ``bentoml serve`` process."""

    url: str
    proc: subprocess.Popen
    log_path: Path
    #: Headers every request to this server carries (the API key once authentication is on).
    headers: dict[str, str] = field(default_factory=dict)


def provision_test_key(home: Path, env: Mapping[str, str] | None = None) -> str:
    """The key named ``tests`` (every scope) of the service over ``home``, created through
    the key store if it is missing; the raw key is kept beside it (``tests-api-key``, 0600)
    so that later servers over the same home reuse it."""
    overrides = {"home": home}
    if env and env.get("NEXTBEST_API_KEYS_FILE"):
        overrides["api_keys_file"] = Path(env["NEXTBEST_API_KEYS_FILE"])
    settings = get_settings(**overrides)
    key_file, raw_file = settings.api_keys_path, settings.root / "tests-api-key"
    if any(r.name == TEST_KEY_NAME for r in load_keys(key_file)):
        if raw_file.exists():
            return raw_file.read_text().strip()
        revoke_key(key_file, TEST_KEY_NAME)  # its raw key is lost: make a new one
    key, _ = create_key(key_file, TEST_KEY_NAME, API_SCOPES)
    write_secret(raw_file, key)
    return key


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

    A key with every scope is provisioned in the home first (:func:`provision_test_key`);
    the returned server's ``headers`` carry it.

    Raises ``RuntimeError`` with the server log if it exits, logs a ``StartupError`` (BentoML
    restarts a worker that fails in ``__init__``, so it would never become ready), or is not
    ready within ``timeout`` seconds.
    """
    import httpx

    key = provision_test_key(home, env)
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
                return Server(url, proc, log_path, {"Authorization": f"Bearer {key}"})
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
