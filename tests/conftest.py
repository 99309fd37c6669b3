"""Shared fixtures: one small real world (generated sources, resolved identities, Feast
stores, an MLflow registry with a champion) built once per test session, and a real
``bentoml serve`` process over it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.params import SEED, SMALL_CUSTOMERS

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class World:
    """A built demo world under ``home``."""

    home: Path
    settings: object
    train_result: object


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_world(home: Path, customers: int = SMALL_CUSTOMERS, seed: int = SEED) -> World:
    """Generate, resolve, build features and train a champion under ``home``."""
    from customers.generate import generate
    from customers.identity import resolve_generated
    from nextbest.pipeline import build_features
    from nextbest.settings import get_settings
    from training.train import train

    settings = get_settings(
        home=home, customers=customers, seed=seed, learners=["t_learner", "s_learner"]
    )
    generate(customers, seed, settings.raw_dir, as_of=settings.as_of)
    resolve_generated(settings.raw_dir, settings.unified_dir)
    build_features(settings)
    result = train(settings)
    return World(home=home, settings=settings, train_result=result)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The session's small real world (built once; about a minute)."""
    home = tmp_path_factory.mktemp("world")
    old = os.environ.get("NEXTBEST_HOME")
    os.environ["NEXTBEST_HOME"] = str(home)
    try:
        yield build_world(home)
    finally:
        if old is None:
            os.environ.pop("NEXTBEST_HOME", None)
        else:
            os.environ["NEXTBEST_HOME"] = old


@dataclass
class Server:
    """A running ``bentoml serve`` process."""

    url: str
    proc: subprocess.Popen
    log_path: Path


def start_service(home: Path, log_path: Path, timeout: float = 120.0) -> Server:
    """Start ``bentoml serve`` on a free port with ``NEXTBEST_HOME=home``; wait until ready.

    Raises ``RuntimeError`` with the server log if it exits or is not ready in time.
    """
    port = free_port()
    env = {**os.environ, "NEXTBEST_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "serving.service:NextBest",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited ({proc.returncode}):\n{log_path.read_text()}")
        if "StartupError" in log_path.read_text(errors="replace"):
            # BentoML restarts a worker that fails in __init__; the reason is already logged.
            stop_service(proc)
            raise RuntimeError(f"service refused to start:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return Server(url, proc, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_service(proc)
    raise RuntimeError(f"service not ready in {timeout}s:\n{log_path.read_text()}")


def stop_service(proc: subprocess.Popen) -> None:
    """Stop the server and its workers by process group id."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def service(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``bentoml serve`` over the session world."""
    log_path = tmp_path_factory.mktemp("service") / "serve.log"
    server = start_service(world.home, log_path)
    try:
        yield server
    finally:
        stop_service(server.proc)
