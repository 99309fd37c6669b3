"""Fail closed, over real HTTP: a store that cannot be read or written is a 503 naming it
(on /decide, /events and /readyz) while /livez stays 200, and the service recovers without a
restart; ``nextbest serve`` exits non-zero when its workers cannot start, and a SIGTERM to it
stops every process of the server.

Each test breaks stores of its own copy of the session world's home.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from devtools.process import Server, free_port, provision_test_key, start_server, stop_server
from tests.conftest import ROOT, World

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: The store timeout the services under test run with (seconds).
TIMEOUT = 1.0
#: How long a 503 may take beyond the store timeout (HTTP, batching, a loaded machine).
SLACK = 3.0


@pytest.fixture
def home(world: World, tmp_path: Path) -> Path:
    """A copy of the session world's home, to break stores in."""
    copy = tmp_path / "home"
    shutil.copytree(world.home, copy)
    return copy


def _customers(world: World, n: int = 3) -> list[str]:
    ids = pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
    return list(ids.drop_duplicates().head(n))


def _decide(server: Server, cid: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/decide",
        json={"customer": {"id": cid}, "channel": "email"},
        headers=server.headers,
        timeout=30,
    )


def _event(server: Server, cid: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/events",
        json={"customer": {"id": cid}, "type": "complaint", "payload": {}},
        headers=server.headers,
        timeout=30,
    )


def _assert_503(r: httpx.Response, dependency: str) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.json()["reason"] == f"{dependency}_unavailable", r.text
    assert r.json()["error"]
    assert int(r.headers["retry-after"]) >= 1


def _readyz(
    server: Server, want: int, dependency: str | None = None, deadline: float = 10.0
) -> httpx.Response:
    """/readyz once it answers ``want`` (naming ``dependency``); each worker caches its
    probes for a second, so a worker may still give the previous answer meanwhile."""
    end = time.monotonic() + deadline
    while True:
        r = httpx.get(f"{server.url}/readyz", headers=server.headers, timeout=10)
        named = dependency is None or f'"{dependency}_unavailable"' in r.text
        if (r.status_code == want and named) or time.monotonic() > end:
            return r
        time.sleep(0.2)


def _assert_livez_fast(server: Server) -> None:
    t0 = time.monotonic()
    r = httpx.get(f"{server.url}/livez", headers=server.headers, timeout=10)
    assert r.status_code == 200
    assert time.monotonic() - t0 < 1.0


def _assert_down(server: Server, cid: str, dependency: str, within: float = 0.0) -> None:
    """/decide (at once, or within ``within`` seconds) and /readyz say 503 naming
    ``dependency``; /livez is 200 and fast."""
    end = time.monotonic() + within
    while (r := _decide(server, cid)).status_code == 200 and time.monotonic() < end:
        time.sleep(0.1)
    _assert_503(r, dependency)
    _assert_503(_readyz(server, 503, dependency), dependency)
    _assert_livez_fast(server)


def _assert_recovered(server: Server, cid: str) -> None:
    r = _decide(server, cid)
    assert r.status_code == 200, r.text
    assert r.json()["customer_id"] == cid
    assert _readyz(server, 200).status_code == 200


@contextmanager
def _corrupted(path: Path, size: int = 4096) -> Iterator[None]:
    """``path``'s first ``size`` bytes overwritten in place (its header and first page),
    then restored."""
    original = path.read_bytes()[:size]
    with path.open("r+b") as f:
        f.write(b"\xa5" * len(original))
    try:
        yield
    finally:
        with path.open("r+b") as f:
            f.write(original)


@contextmanager
def _write_locked(path: Path) -> Iterator[None]:
    """Another writer holding the ledger's write lock (a stuck process)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def test_sqlite_stores_that_fail_are_503_naming_them_and_recover_without_restart(
    world: World, home: Path, tmp_path: Path
) -> None:
    server = start_server(
        "serving.service:NextBest",
        home,
        tmp_path / "serve.log",
        env={"NEXTBEST_STORE_TIMEOUT_SECONDS": str(TIMEOUT)},
    )
    try:
        cid = _customers(world)[0]
        _assert_recovered(server, cid)

        online = home / "feast" / "online.db"
        with _corrupted(online):
            _assert_down(server, cid, "features")
        _assert_recovered(server, cid)

        # Replaced by another file (here an empty database): open connections would read
        # the old file for ever; each worker notices within a second and reads the new one.
        aside = online.rename(online.with_name("online.db.aside"))
        online.write_bytes(b"")
        try:
            _assert_down(server, cid, "features", within=3.0)
        finally:
            online.unlink()
            aside.rename(online)
        _assert_recovered(server, cid)

        with _write_locked(home / "ledger.db"):
            t0 = time.monotonic()
            _assert_503(_event(server, cid), "ledger")
            assert time.monotonic() - t0 < TIMEOUT + SLACK
            _assert_503(_readyz(server, 503, "ledger"), "ledger")
            _assert_livez_fast(server)
        assert _event(server, cid).status_code == 200
        _assert_recovered(server, cid)

        log_dir = home / "decisions"
        moved = log_dir.rename(home / "decisions.moved")
        log_dir.write_text("not a directory")
        try:
            _assert_down(server, cid, "decision_log")
        finally:
            log_dir.unlink()
            moved.rename(log_dir)
        r = _decide(server, cid)
        assert r.status_code == 200
        logged = [
            json.loads(line)["decision_id"]
            for f in log_dir.glob("*.jsonl")
            for line in f.read_text().splitlines()
        ]
        assert r.json()["decision_id"] in logged
        assert "Traceback" not in server.log_path.read_text()
    finally:
        stop_server(server.proc)


# --- Redis -----------------------------------------------------------------------------------


class RedisServer:
    """A real ``redis-server`` on a loopback port that keeps its data across restarts."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Save the data and stop (a restart loads it again)."""
        import redis

        assert self.proc is not None
        try:
            redis.Redis(host="127.0.0.1", port=self.port).shutdown(save=True)
        except redis.ConnectionError:  # the server closes the connection as it goes
            pass
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make setup installs it from Debian)")
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_redis_down_or_hung_is_503_within_the_timeout_and_recovers(
    world: World, home: Path, tmp_path: Path, redis_server: RedisServer
) -> None:
    from nextbest.core.settings import get_settings
    from nextbest.customers.feast_store import apply, materialize
    from tests.conftest import demo_terms

    env = {
        "NEXTBEST_ONLINE_STORE": "redis",
        "NEXTBEST_REDIS_CONNECTION": redis_server.address,
        "NEXTBEST_STORE_TIMEOUT_SECONDS": str(TIMEOUT),
    }
    settings = get_settings(
        home=home,
        online_store="redis",
        redis_connection=redis_server.address,
        as_of=world.settings.as_of,
    )
    apply(settings, demo_terms())
    materialize(settings, end=settings.as_of)
    server = start_server("serving.service:NextBest", home, tmp_path / "serve.log", env=env)
    try:
        cid = _customers(world)[0]
        _assert_recovered(server, cid)

        # Hung: the process stopped, its socket open. /decide is a 503 within the timeout;
        # /livez answers at once meanwhile.
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            answers: list[tuple[httpx.Response, float]] = []

            def decide() -> None:
                t0 = time.monotonic()
                answers.append((_decide(server, cid), time.monotonic() - t0))

            pending = threading.Thread(target=decide)
            pending.start()
            time.sleep(0.2)
            _assert_livez_fast(server)
            pending.join(timeout=60)
            ((r, took),) = answers
            _assert_503(r, "features")
            assert took < 2 * TIMEOUT + SLACK, took
            _assert_503(_readyz(server, 503, "features"), "features")
            _assert_livez_fast(server)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        _assert_recovered(server, cid)

        # Down: connection refused is a 503 too, and a restarted Redis is used again.
        redis_server.stop()
        _assert_down(server, cid, "features")
        redis_server.start()
        _assert_recovered(server, cid)
        assert "Traceback" not in server.log_path.read_text()
    finally:
        stop_server(server.proc)


# --- nextbest serve --------------------------------------------------------------------------


def _serve(
    home: Path, port: int, output: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``nextbest serve`` over ``home``; what it prints goes to ``output`` (a pipe nobody
    reads would fill and stop the server)."""
    env = {
        **os.environ,
        "NEXTBEST_HOME": str(home),
        "PYTHONWARNINGS": "ignore",
        **(extra_env or {}),
    }
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nextbest", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _descendants_until_exit(proc: subprocess.Popen, bound: float) -> set[psutil.Process]:
    """Every descendant of ``proc`` seen while it runs (it must exit within ``bound``)."""
    seen: set[psutil.Process] = set()
    parent = psutil.Process(proc.pid)
    end = time.monotonic() + bound
    while proc.poll() is None:
        assert time.monotonic() < end, "nextbest serve did not exit in time"
        try:
            seen.update(parent.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    return seen


def _all_gone(procs: set[psutil.Process], bound: float = 5.0) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(list(procs), timeout=bound)
    return alive


def test_nextbest_serve_exits_1_when_its_workers_cannot_start(world: World, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: broken\nrules: [unclosed\n")
    output = tmp_path / "serve.out"
    proc = _serve(world.home, free_port(), output, {"NEXTBEST_POLICY": str(policy)})
    seen = _descendants_until_exit(proc, bound=180)
    assert proc.wait() == 1
    message = output.read_text(errors="replace")
    assert "cannot start the decision service" in message and "policy.yaml" in message, message
    assert seen, "the server was never started"
    assert not _all_gone(seen)


def _answers_ready(server: Server) -> bool:
    try:
        r = httpx.get(f"{server.url}/readyz", headers=server.headers, timeout=2)
    except httpx.HTTPError:  # not listening yet
        return False
    return r.status_code == 200


def test_sigterm_to_nextbest_serve_stops_the_whole_server_after_its_answers(
    world: World, home: Path
) -> None:
    port = free_port()
    key = provision_test_key(home)
    proc = _serve(home, port, home / "serve.log")
    server = Server(
        f"http://127.0.0.1:{port}", proc, home / "serve.log", {"Authorization": f"Bearer {key}"}
    )
    family: set[psutil.Process] = set()
    try:
        end = time.monotonic() + 180
        while not _answers_ready(server):
            assert proc.poll() is None and time.monotonic() < end, "nextbest serve not ready"
            time.sleep(0.5)
        family = set(psutil.Process(proc.pid).children(recursive=True))
        assert len(family) >= 3  # BentoML's arbiter and its two workers at least
        cids = _customers(world, 20)
        answered: list[str] = []
        refused: list[BaseException] = []

        def load() -> None:  # decisions until the server goes away
            for i in range(10_000):
                try:
                    r = _decide(server, cids[i % len(cids)])
                except httpx.HTTPError as exc:
                    refused.append(exc)
                    return
                if r.status_code != 200:
                    return
                answered.append(r.json()["decision_id"])

        clients = [threading.Thread(target=load) for _ in range(4)]
        for c in clients:
            c.start()
        while len(answered) < 20:
            assert any(c.is_alive() for c in clients), f"clients stopped: {refused}"
            assert time.monotonic() < end, "no load reached the server"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        for c in clients:
            c.join(timeout=60)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert not _all_gone(family, bound=10)
    finally:
        for p in [psutil.Process(proc.pid), *family] if proc.poll() is None else family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
    logged = {
        json.loads(line)["decision_id"]
        for f in (home / "decisions").glob("*.jsonl")
        for line in f.read_text().splitlines()
    }
    assert answered and set(answered) <= logged
