"""kill -9 under load: no acknowledged decision or event is lost.

A real ``bentoml serve`` of the product (``serving.service:NextBest``) takes a load from
concurrent client threads: ``/decide`` and ``/events`` (a purchase, each with its own
``event_id``; an event whose request failed is sent again with the same id and content,
as a client that retries does). Meanwhile the service is killed with SIGKILL, in two
rounds: first its workers only (the arbiter starts new ones), then the whole process group
(the benchmark starts a new server on the same home). After the last kill the load stops,
every event still unanswered is sent again until acknowledged, and the server is stopped.
Then the files are read directly:

- every acknowledged (200) ``decision_id`` is in the decision log, and every line the run
  appended parses (no torn line);
- every acknowledged ``event_id`` is in the ledger exactly once, and the ledger holds no
  other event of the run.

The standard (issue 16): 0 acknowledged decisions or events lost. Run:
``.venv/bin/python benchmarks/kill9_bench.py --home /tmp/kill9_world --customers 2000``
(a few minutes; the world is built on first use); writes ``benchmarks/results/kill9.json``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import print_table, write_result
from benchmarks.world import ensure_world, sample_requests
from devtools.process import Server, start_server, stop_server

TARGET = "serving.service:NextBest"
ROUNDS = ("workers", "process_group")


# --- the load ---------------------------------------------------------------------------


@dataclass
class Tally:
    """What the clients sent and what the server acknowledged, per round."""

    decisions: dict[str, set[str]] = field(default_factory=lambda: {r: set() for r in ROUNDS})
    events: dict[str, set[str]] = field(default_factory=lambda: {r: set() for r in ROUNDS})
    #: Events sent whose answer never came (sent again until acknowledged).
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Acknowledged events the server reported as already stored (``applied`` false).
    repeats: int = 0
    #: Event sends that were retries of an unanswered one.
    retries: int = 0
    #: Requests that got no 200: connection refused or reset, timeouts, other statuses.
    failed: dict[str, int] = field(default_factory=lambda: {"decide": 0, "events": 0})
    statuses: dict[str, int] = field(default_factory=dict)


class Load:
    """Client threads sending /decide and /events to whichever server is current."""

    def __init__(
        self,
        server: Server,
        decide_bodies: list[dict[str, Any]],
        customer_ids: list[str],
        clients: int,
        run_id: str,
    ) -> None:
        self.server = server
        self.decide_bodies = decide_bodies
        self.customer_ids = customer_ids
        self.clients = clients
        self.run_id = run_id
        self.round = ROUNDS[0]
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._next_event = 0

    def start(self) -> None:
        """Start the client threads (half mostly decide, half mostly send events)."""
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop the clients and wait for their last requests."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _new_event(self, rng: random.Random) -> dict[str, Any]:
        with self._lock:
            n = self._next_event
            self._next_event += 1
        return {
            "customer": {"id": rng.choice(self.customer_ids), "id_type": "customer_id"},
            "type": "purchase",
            "timestamp": datetime.now(UTC).isoformat(),
            "payload": {"amount": round(rng.uniform(1, 200), 2)},
            "event_id": f"{self.run_id}-{n}",
        }

    def _client(self, i: int) -> None:
        import httpx

        rng = random.Random(i)
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                if (i % 2 == 0) == (rng.random() < 0.75):
                    body = self.decide_bodies[rng.randrange(len(self.decide_bodies))]
                    self.decide(client, body)
                else:
                    self.send_event(client, self._retry_or_new(rng))

    def _retry_or_new(self, rng: random.Random) -> dict[str, Any]:
        with self._lock:
            if self.tally.pending and rng.random() < 0.5:
                eid = next(iter(self.tally.pending))
                self.tally.retries += 1
                return self.tally.pending.pop(eid)
        return self._new_event(rng)

    def _post(self, client: Any, path: str, body: dict[str, Any]) -> Any:
        """The response, or None when the request failed on the way (connection, timeout)."""
        import httpx

        server = self.server  # the current one: a process-group kill starts another
        try:
            r = client.post(f"{server.url}{path}", json=body, headers=server.headers)
        except httpx.HTTPError:
            time.sleep(0.05)  # the server is down or restarting
            return None
        with self._lock:
            key = f"{path} {r.status_code}"
            self.tally.statuses[key] = self.tally.statuses.get(key, 0) + 1
        return r

    def decide(self, client: Any, body: dict[str, Any]) -> None:
        """One /decide; its decision_id is acknowledged on a 200."""
        r = self._post(client, "/decide", body)
        with self._lock:
            if r is not None and r.status_code == 200:
                self.tally.decisions[self.round].add(r.json()["decision_id"])
            else:
                self.tally.failed["decide"] += 1

    def send_event(self, client: Any, body: dict[str, Any]) -> bool:
        """One /events; acknowledged on a 200, else kept to be sent again."""
        r = self._post(client, "/events", body)
        with self._lock:
            if r is not None and r.status_code == 200:
                self.tally.events[self.round].add(body["event_id"])
                self.tally.repeats += not r.json()["applied"]
                return True
            self.tally.failed["events"] += 1
            self.tally.pending[body["event_id"]] = body
            return False

    def drain(self, timeout: float = 120.0) -> int:
        """Send every unanswered event again until acknowledged; returns how many are left."""
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=10.0) as client:
            while self.tally.pending and time.monotonic() < deadline:
                with self._lock:
                    eid, body = next(iter(self.tally.pending.items()))
                    del self.tally.pending[eid]
                    self.tally.retries += 1
                self.send_event(client, body)
        return len(self.tally.pending)


# --- killing and restarting -------------------------------------------------------------


def worker_pids(server: Server) -> list[int]:
    """The processes below the server's main process (its workers)."""
    import psutil

    try:
        return [p.pid for p in psutil.Process(server.proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def wait_ready(server: Server, timeout: float = 180.0, stable: float = 1.0) -> float:
    """Seconds until /readyz answers 200 again (twice, ``stable`` seconds apart)."""
    import httpx

    t0 = time.monotonic()
    ok = 0
    while time.monotonic() - t0 < timeout:
        try:
            r = httpx.get(f"{server.url}/readyz", headers=server.headers, timeout=2.0)
            ok = ok + 1 if r.status_code == 200 else 0
        except httpx.HTTPError:
            ok = 0
        if ok >= 2:
            return round(time.monotonic() - t0, 2)
        time.sleep(stable if ok else 0.25)
    raise RuntimeError(f"the server was not ready again within {timeout:g} s")


def kill_workers(server: Server, min_workers: int = 2, timeout: float = 180.0) -> dict[str, Any]:
    """SIGKILL every worker of the server; wait until the arbiter has started as many
    again and the service answers; returns what was killed and how long it took."""
    pids = worker_pids(server)
    if not pids:
        raise RuntimeError("the server has no worker processes to kill")
    t0 = time.monotonic()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while time.monotonic() - t0 < timeout:
        alive = set(worker_pids(server)) - set(pids)
        if len(alive) >= min(min_workers, len(pids)):
            break
        if server.proc.poll() is not None:
            raise RuntimeError("the server's main process exited after its workers were killed")
        time.sleep(0.2)
    return {"killed": len(pids), "back_in_s": wait_ready(server, timeout)}


def kill_group(server: Server) -> None:
    """SIGKILL the server's whole process group and reap its main process."""
    try:
        os.killpg(server.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.proc.wait(timeout=30)


# --- checking the files -----------------------------------------------------------------


def log_offsets(log_dir: Path) -> dict[str, int]:
    """Each decision-log file's size now (the run's lines start there)."""
    return {p.name: p.stat().st_size for p in sorted(log_dir.glob("decisions-*.jsonl"))}


def read_log(log_dir: Path, offsets: dict[str, int]) -> tuple[set[str], int, int]:
    """The decision ids the run appended to the log, the torn lines (not JSON, or a last
    line without its newline) and the ids logged more than once."""
    import orjson

    ids: set[str] = set()
    torn = duplicates = 0
    for path in sorted(log_dir.glob("decisions-*.jsonl")):
        with path.open("rb") as f:
            f.seek(offsets.get(path.name, 0))
            data = f.read()
        *lines, tail = data.split(b"\n")
        torn += bool(tail)  # a last line without its newline was cut
        for line in lines:
            try:
                did = orjson.loads(line)["decision_id"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                torn += 1
                continue
            duplicates += did in ids
            ids.add(did)
    return ids, torn, duplicates


def ledger_counts(ledger_path: Path, run_id: str) -> dict[str, int]:
    """How many rows the ledger holds per event id of this run."""
    import sqlite3

    with sqlite3.connect(ledger_path) as conn:
        rows = conn.execute(
            "SELECT event_id, count(*) FROM events WHERE event_id LIKE ? GROUP BY event_id",
            (f"{run_id}-%",),
        ).fetchall()
    return {eid: int(n) for eid, n in rows}


def check(
    tally: Tally, log_dir: Path, offsets: dict[str, int], ledger_path: Path, run_id: str
) -> dict[str, Any]:
    """Acknowledged against stored, per round and in total."""
    logged, torn, dup_decisions = read_log(log_dir, offsets)
    stored = ledger_counts(ledger_path, run_id)
    out: dict[str, Any] = {"rounds": {}}
    all_d: set[str] = set()
    all_e: set[str] = set()
    for r in ROUNDS:
        d, e = tally.decisions[r], tally.events[r]
        all_d |= d
        all_e |= e
        out["rounds"][r] = {
            "decisions_acknowledged": len(d),
            "decisions_lost": len(d - logged),
            "events_acknowledged": len(e),
            "events_lost": len(e - set(stored)),
        }
    once = {eid for eid, n in stored.items() if n == 1}
    out["decisions"] = {
        "acknowledged": len(all_d),
        "found": len(all_d & logged),
        "lost": len(all_d - logged),
        "torn_lines": torn,
        "logged_more_than_once": dup_decisions,
        "logged_not_acknowledged": len(logged - all_d),
    }
    out["events"] = {
        "acknowledged": len(all_e),
        "found_exactly_once": len(all_e & once),
        "lost": len(all_e - set(stored)),
        "stored_more_than_once": sum(n > 1 for n in stored.values()),
        "stored_not_acknowledged": len(set(stored) - all_e),
        "never_acknowledged": len(tally.pending),
        "retries": tally.retries,
        "acknowledged_as_already_stored": tally.repeats,
    }
    return out


# --- the run ----------------------------------------------------------------------------


def _customer_ids(settings: Any) -> list[str]:
    import pandas as pd

    ids = pd.read_parquet(settings.unified_dir / "identity.parquet")["customer_id"]
    return sorted(ids.drop_duplicates().astype(str).tolist())


def run(
    home: Path,
    customers: int,
    kills: int = 3,
    interval: float = 10.0,
    clients: int = 8,
    warmup: float = 5.0,
    rounds: tuple[str, ...] = ROUNDS,
    results_dir: Path | None = None,
    output: str = "kill9",
) -> dict[str, Any]:
    """Load the service, kill it ``kills`` times per round every ``interval`` seconds of
    load, check the files; write ``<output>.json`` and return the figures."""
    settings = ensure_world(home, customers)
    bodies = sample_requests(settings, 2000)
    cids = _customer_ids(settings)
    run_id = f"kill9-{uuid.uuid4().hex[:12]}"
    log_dir = settings.decision_log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    offsets = log_offsets(log_dir)
    load_before = [round(x, 2) for x in os.getloadavg()]
    kill_log: dict[str, list[dict[str, Any]]] = {r: [] for r in rounds}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(TARGET, home, Path(tmp) / "serve-0.log", timeout=240)
        load = Load(server, bodies, cids, clients, run_id)
        try:
            wait_ready(server)
            load.start()
            time.sleep(warmup)
            for rnd in rounds:
                load.round = rnd
                for k in range(kills):
                    time.sleep(interval)
                    t0 = time.monotonic()
                    if rnd == "workers":
                        info = kill_workers(server)
                    else:
                        killed = len(worker_pids(server)) + 1
                        kill_group(server)
                        server = start_server(
                            TARGET, home, Path(tmp) / f"serve-{k + 1}.log", timeout=240
                        )
                        load.server = server
                        wait_ready(server)
                        # from the kill to a new server answering (its start-up included)
                        info = {"killed": killed, "back_in_s": round(time.monotonic() - t0, 2)}
                    info["at_s"] = round(t0 - t_start, 1)
                    kill_log[rnd].append(info)
                    print(f"kill -9 ({rnd}) {k + 1}/{kills}: {info}", flush=True)
            time.sleep(min(interval, 5.0))  # load on the last server before stopping
            load.stop()
            left = load.drain()
        finally:
            load.stop()
            stop_server(server.proc)
    duration = time.monotonic() - t_start
    result = check(load.tally, log_dir, offsets, settings.ledger_path, run_id)
    d, e = result["decisions"], result["events"]
    lost = d["lost"] + e["lost"]
    out = {
        "sizes": {
            "customers": customers,
            "clients": clients,
            "kills_per_round": kills,
            "seconds_between_kills": interval,
            "rounds": list(rounds),
        },
        "run_id": run_id,
        "kills": kill_log,
        "requests": {"failed": load.tally.failed, "statuses": load.tally.statuses},
        **result,
        "events_left_unacknowledged_after_drain": left,
        "duration_s": round(duration, 1),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "standard": "0 acknowledged decisions or events lost (issue 16)",
        "met": lost == 0 and d["torn_lines"] == 0 and e["stored_more_than_once"] == 0,
    }
    kw = {"results_dir": results_dir} if results_dir else {}
    path = write_result(output, out, **kw)
    rows = [
        ("decisions", d["acknowledged"], d["found"], d["lost"], d["torn_lines"]),
        ("events", e["acknowledged"], e["found_exactly_once"], e["lost"], "-"),
    ]
    n_kills = sum(len(v) for v in kill_log.values())
    print_table(
        f"kill -9 under load: {n_kills} kills ({', '.join(rounds)}), {duration:.0f} s, "
        f"load average {out['load_average_after'][0]}",
        rows,
        ("what", "acknowledged", "found", "lost", "torn lines"),
    )
    print(f"standard met: {out['met']}; saved {path}")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, default=Path("/tmp/kill9_world"))
    p.add_argument("--customers", type=int, default=2_000)
    p.add_argument("--kills", type=int, default=3, help="kills per round")
    p.add_argument("--interval", type=float, default=10.0, help="seconds of load between kills")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--rounds", default=",".join(ROUNDS))
    p.add_argument("--output", default="kill9")
    a = p.parse_args(argv)
    run(
        a.home,
        a.customers,
        kills=a.kills,
        interval=a.interval,
        clients=a.clients,
        rounds=tuple(a.rounds.split(",")),
        output=a.output,
    )


if __name__ == "__main__":
    main()
