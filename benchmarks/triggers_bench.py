"""Triggers: event -> webhook latency under a steady event rate, beside plain /decide
latency in the same run, and the inactivity scan over a million customers.

**Latency.** On a private copy of a world: a real ``bentoml serve`` of the product, the
triggers worker (``nextbest triggers run``, its own process) with one trigger (a purchase
-> decide on every channel, no delay), and a local webhook receiver on 127.0.0.1. A client
posts purchases for random customers at ``--rate`` events/s for ``--duration`` seconds
(an async httpx client on a fixed schedule) while a second client sends ``/decide``
requests one at a time. Event -> webhook latency is the receiver's arrival time minus the
time the event was posted, for every delivered decision (its body names the event); a
trigger whose decision is no action (no consent, holdout, ...) is counted, not timed.

**Scan.** ``--scan-customers`` customers (random ``last_active_ts`` over 120 days, written
as the behaviour feature table's columns) and a ledger holding one purchase for each of
``--scan-ledger-customers`` of them: the worker's own functions read the table, group the
ledger, pick the customers inactive for 45 days and insert their pending rows; each phase
timed, and the process's peak resident memory above its baseline sampled every 10 ms.

Run: ``.venv/bin/python benchmarks/triggers_bench.py --home /tmp/bench_world``; writes
``benchmarks/results/triggers.json`` with the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, percentiles, print_table, write_result
from benchmarks.world import ensure_world

SECRET = "bench-secret"
CHANNELS = ["email", "sms", "push", "app", "web"]
TRIGGERS = f"""
version: "bench"
triggers:
  - id: bench
    event: {{type: purchase}}
    channels: {CHANNELS}
    expires: 10m
"""
DAY = 86400.0


# --- scan -------------------------------------------------------------------------------


class PeakRss:
    """The process's peak resident memory above its level at start, sampled every 10 ms."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(0.01)

    def stop(self) -> float:
        """MiB above the baseline at the peak."""
        self._stop.set()
        self._thread.join()
        return round((self.peak - self.base) / 2**20, 1)


def scan_bench(n: int, ledger_customers: int, work: Path, seed: int = 7) -> dict[str, Any]:
    """The 45-day inactivity scan over ``n`` customers (see the module docstring)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nextbest.decisions.ledger import Ledger
    from nextbest.decisions.trigger_rules import inactive, ledger_last_activity, scan_fires
    from nextbest.decisions.trigger_store import TriggerStore
    from nextbest.decisions.triggers import Scan, Trigger
    from serving.trigger_worker import snapshot_last_active

    rng = np.random.default_rng(seed)
    now = time.time()
    ids = np.array([f"C{i:012d}" for i in range(n)], dtype=object)
    last = now - rng.uniform(0, 120 * DAY, n)
    snapshot = pa.array(np.full(n, int(now * 1e6)), pa.timestamp("us", tz="UTC"))
    table = pa.table({"customer_id": ids, "event_timestamp": snapshot, "last_active_ts": last})
    path = work / "customer_behaviour.parquet"
    pq.write_table(table, path)
    ledger = Ledger(work / "ledger.db")
    conn = ledger.connection()
    picked = rng.choice(n, size=min(ledger_customers, n), replace=False)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO events (event_id, customer_id, type, event_time, received_time, source,"
        " actor, dated, payload, digest) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            (
                f"e{i}",
                ids[i],
                "purchase",
                now - float(rng.uniform(0, 10 * DAY)),
                now,
                "bench",
                "bench",
                1,
                "{}",
                "-",
            )
            for i in picked
        ),
    )
    conn.execute("COMMIT")
    store = TriggerStore(work / "triggers.db")
    trigger = Trigger(id="winback", scan=Scan(inactive_for="45d"), channels=["email"])
    del table, snapshot, ids, last
    meter = PeakRss()
    t = {}
    t0 = time.perf_counter()
    cids, active = snapshot_last_active(path)
    t["read_table_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from_ledger = ledger_last_activity(ledger)
    t["ledger_group_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    who, when = inactive(cids, active, from_ledger, now, 45 * DAY)
    t["select_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fires = scan_fires(trigger, who, when, now)
    inserted = store.scanned(trigger.id, fires, now)
    t["insert_rows_s"] = time.perf_counter() - t0
    peak = meter.stop()
    return {
        "customers": n,
        "ledger_events": int(len(picked)),
        "inactive_45d": int(len(who)),
        "rows_inserted": inserted,
        **{k: round(v, 3) for k, v in t.items()},
        "total_s": round(sum(t.values()), 3),
        "peak_rss_above_baseline_mib": peak,
    }


# --- latency ----------------------------------------------------------------------------


async def _events(
    url: str,
    headers: dict,
    cids: list[str],
    rate: float,
    duration: float,
    posted: dict[str, float],
    in_flight: int = 64,
) -> dict[str, int]:
    """Post purchases on a fixed schedule of ``rate`` per second, at most ``in_flight`` at
    once (a send that finds every slot taken waits: the rate achieved is reported)."""
    import httpx

    codes: dict[str, int] = {}
    slots = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(timeout=60, headers=headers, limits=limits) as client:

        async def one(i: int) -> None:
            eid = f"bench-{i}"
            body = {
                "customer": {"id": cids[i % len(cids)]},
                "type": "purchase",
                "event_id": eid,
                "payload": {"amount": 5.0},
            }
            async with slots:
                posted[eid] = time.time()
                try:
                    r = await client.post(f"{url}/events", json=body)
                    key = str(r.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                codes[key] = codes.get(key, 0) + 1

        tasks = []
        start = time.monotonic()
        for i in range(int(rate * duration)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return codes


def _decides(
    url: str, headers: dict, cids: list[str], stop: threading.Event, out: list[float]
) -> None:
    import httpx

    with httpx.Client(timeout=30, headers=headers) as client:
        i = 0
        while not stop.is_set():
            body = {"customer": {"id": cids[(i * 7919) % len(cids)]}, "channel": "email", "k": 3}
            t0 = time.perf_counter()
            r = client.post(f"{url}/decide", json=body)
            if r.status_code == 200:
                out.append((time.perf_counter() - t0) * 1000)
            i += 1


def latency_bench(home: Path, rate: float, duration: float, work: Path) -> dict[str, Any]:
    """Event -> webhook latency at ``rate`` events/s beside sequential /decide latency."""
    import pandas as pd

    from devtools.process import start_server, stop_server
    from devtools.webhook import start_receiver
    from nextbest.core.settings import get_settings
    from nextbest.customers.feast_store import feature_store
    from nextbest.decisions.trigger_store import TriggerStore

    copy = work / "home"
    shutil.copytree(home, copy, ignore=shutil.ignore_patterns("triggers.db*"))
    settings = get_settings(home=copy)
    feature_store(settings)  # the copy's stores name only itself
    cids = sorted(
        pd.read_parquet(settings.features_dir / "customer_profile.parquet")["customer_id"].unique()
    )
    triggers = work / "triggers.yaml"
    triggers.write_text(TRIGGERS)
    receiver = start_receiver(SECRET.encode())
    server = start_server("serving.service:NextBest", copy, work / "serve.log")
    env = {
        **os.environ,
        "NEXTBEST_HOME": str(copy),
        "NEXTBEST_TRIGGERS_FILE": str(triggers),
        "NEXTBEST_WEBHOOKS": f'["{receiver.url}"]',
        "NEXTBEST_WEBHOOK_SECRET": SECRET,
        "NEXTBEST_TRIGGERS_POLL_SECONDS": "0.05",
    }
    with (work / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "nextbest", "triggers", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    store = TriggerStore(settings.triggers_db_path)
    try:
        deadline = time.monotonic() + 180
        while store.cursor() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        posted: dict[str, float] = {}
        decide_ms: list[float] = []
        stop = threading.Event()
        side = threading.Thread(
            target=_decides, args=(server.url, server.headers, cids, stop, decide_ms)
        )
        side.start()
        t0 = time.monotonic()
        codes = asyncio.run(_events(server.url, server.headers, cids, rate, duration, posted))
        sent_for = time.monotonic() - t0
        stop.set()
        side.join()
        # let the worker finish what the run fired (bounded)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            store.rows(status="pending") or store.outbox("queued")
        ):
            time.sleep(0.2)
        delivered = [
            (r.at - posted[r.body["event_id"]]) * 1000
            for r in receiver.requests
            if r.status == 200 and r.body.get("event_id") in posted
        ]
        states: dict[str, int] = {}
        for row in store.rows():
            states[row.status] = states.get(row.status, 0) + 1
        return {
            "rate_asked_per_s": rate,
            "events_posted": len(posted),
            "events_rate_achieved_per_s": round(len(posted) / sent_for, 1),
            "event_answers": codes,
            "triggers_by_state": states,
            "event_to_webhook": percentiles(delivered),
            "decide_sequential_same_run": percentiles(decide_ms),
            "ratio_p50_event_to_webhook_over_decide": (
                round(percentiles(delivered)["p50_ms"] / percentiles(decide_ms)["p50_ms"], 2)
                if delivered and decide_ms
                else None
            ),
        }
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, 15)
            worker.wait(timeout=30)
        stop_server(server.proc)
        receiver.stop()


def run(
    home: Path | None,
    rate: float = 200.0,
    duration: float = 10.0,
    scan_customers: int = 1_000_000,
    scan_ledger_customers: int = 100_000,
    results_dir: Path | None = None,
) -> dict[str, Any]:
    """Both parts (latency only with a world ``home``); writes ``triggers.json``."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    out: dict[str, Any] = {"load_average_before": load_before}
    with tempfile.TemporaryDirectory(prefix="triggers-bench-") as tmp:
        work = Path(tmp)
        (work / "scan").mkdir()
        out["scan"] = scan_bench(scan_customers, scan_ledger_customers, work / "scan")
        if home is not None:
            (work / "latency").mkdir()
            out["latency"] = latency_bench(home, rate, duration, work / "latency")
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    kwargs = {} if results_dir is None else {"results_dir": results_dir}
    write_result("triggers", out, **kwargs)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--home", type=Path, default=None, help="a world (built if missing)")
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--scan-customers", type=int, default=1_000_000)
    p.add_argument("--scan-ledger-customers", type=int, default=100_000)
    a = p.parse_args()
    if a.home is not None:
        ensure_world(a.home, a.customers)
    out = run(a.home, a.rate, a.duration, a.scan_customers, a.scan_ledger_customers)
    rows = [("scan " + k, v) for k, v in out["scan"].items()]
    if "latency" in out:
        lat = out["latency"]
        rows += [
            ("event->webhook", lat["event_to_webhook"]),
            ("/decide", lat["decide_sequential_same_run"]),
            ("states", lat["triggers_by_state"]),
        ]
    print_table("triggers", [(k, str(v)) for k, v in rows], ("what", "value"))


if __name__ == "__main__":
    main()
