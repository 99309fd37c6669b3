"""Online decisions over HTTP: the product against the floor and a naive baseline, same run.

For each service (the floor ``benchmarks.floor_service:Floor``: an empty BentoML endpoint of
the product's configuration; the product ``serving.service:NextBest``; the naive baseline
``benchmarks.naive_service:NaiveNextBest``) on the same world, catalog (20 email actions
sharing the 8 model arms), policy and champion: ``bentoml serve`` in its own process group,
a warm-up, ``--sequential`` requests one at a time (p50/p95/p99/max), then a concurrent
load for ``--duration`` seconds from a separate process (``wrk`` with a Lua script rotating
the bodies when it is installed, otherwise an async httpx client), with the server's CPU
use from psutil over its process tree. Customers are random, half identified by customer
id, half by email. The product's figures are also given as ratios to the floor's
(``floor_ratios``, with the targets of issue 28), the only comparison that holds across
machines and loads; with its own per-stage time per decision (``stages``).

Run: ``.venv/bin/python benchmarks/http_bench.py --home /tmp/bench_world --customers 20000``;
writes ``benchmarks/results/http.json`` (``--output NAME`` for another name). Measuring
starts once the server's process tree is idle (every worker loaded), not at the first
``/readyz``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CATALOG_20, ROOT, percentiles, print_table, write_result
from benchmarks.world import ensure_world, sample_requests
from devtools import process
from devtools.process import Server, stop_server

SERVICES = {
    "floor": "benchmarks.floor_service:Floor",
    "nextbest": "serving.service:NextBest",
    "naive": "benchmarks.naive_service:NaiveNextBest",
}

#: The online targets of issue 28, as ratios of the product to the floor of the same run.
TARGETS = {
    "sequential_p50_x_floor": 1.5,
    "sequential_p99_x_floor": 1.5,
    "throughput_share_of_floor": 0.70,
    "load_p99_x_floor": 2.0,
}


def start_server(
    target: str, home: Path, log_path: Path, catalog: Path = CATALOG_20, timeout: float = 180.0
) -> Server:
    """``bentoml serve target`` over ``home`` with ``catalog``; wait for ready."""
    return process.start_server(
        target, home, log_path, env={"NEXTBEST_CATALOG": str(catalog)}, timeout=timeout
    )


def _tree_cpu_seconds(pid: int) -> float:
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return total


def _process_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each process of the tree rooted at ``pid``."""
    import psutil

    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.NoSuchProcess:
                pass
    except psutil.NoSuchProcess:
        pass
    return out


def wait_settled(
    pid: int, timeout: float = 180.0, window: float = 2.0, cores: float = 0.05
) -> float:
    """Wait until the server tree uses under ``cores`` of CPU over ``window`` seconds.

    ``/readyz`` answers as soon as the worker that gets the probe is ready; another worker
    may still be loading the model and the store (~30 s of CPU here), which would be
    counted as request CPU. Returns the seconds waited.
    """
    t0 = time.perf_counter()
    before = _tree_cpu_seconds(pid)
    while time.perf_counter() - t0 < timeout:
        time.sleep(window)
        now = _tree_cpu_seconds(pid)
        if now - before < cores * window:
            break
        before = now
    return round(time.perf_counter() - t0, 1)


def sequential(
    url: str,
    bodies: list[dict[str, Any]],
    n: int,
    warmup: int,
    pid: int | None = None,
    headers: dict[str, str] | None = None,
    stages: bool = False,
) -> dict[str, Any]:
    """``warmup`` then ``n`` requests one at a time on one keep-alive connection, each with
    ``headers`` (the server's API key).

    With the server's ``pid``, also the server's CPU per measured request (the tree, and
    the busiest process: one connection is served by one worker) and the client's own CPU
    per request (it shares the cores, so it is part of the wall time on this machine).
    With ``stages``, the service's own per-stage time per decision (``serving/stages.py``)
    of the worker that served the connection, read over it before and after.
    """
    import httpx

    lat: list[float] = []
    errors = 0
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, headers=headers or {}, timeout=10.0) as client:
        for i in range(warmup):
            if client.post("/decide", json=bodies[i % len(bodies)]).status_code != 200:
                errors += 1
        clocks0 = [client.get("/admin/stages").json()] if stages else []
        procs0 = _process_cpu_seconds(pid) if pid else {}
        me0 = time.process_time()
        for i in range(warmup, warmup + n):
            body = bodies[i % len(bodies)]
            t = time.perf_counter()
            r = client.post("/decide", json=body)
            lat.append((time.perf_counter() - t) * 1e3)
            if r.status_code != 200:
                errors += 1
        me1 = time.process_time()
        procs1 = _process_cpu_seconds(pid) if pid else {}
        if stages:
            out["stages"] = stage_times(clocks0, [client.get("/admin/stages").json()])
    if pid:
        used = {p: c - procs0.get(p, 0.0) for p, c in procs1.items()}
        out["server_cpu_ms_per_request"] = round(sum(used.values()) / n * 1e3, 3)
        out["busiest_process_cpu_ms_per_request"] = round(max(used.values()) / n * 1e3, 3)
        out["client_cpu_ms_per_request"] = round((me1 - me0) / n * 1e3, 3)
    return {**percentiles(lat), "errors": errors, **out}


def stage_times(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean microseconds per decision of each stage between two reads of the clocks, and
    the part of ``total`` no stage covers (the service's other middlewares)."""
    from serving.stages import STAGES, per_decision_us

    out = per_decision_us(before, after)
    mean = out["mean_us"]
    if mean["total"] is not None:
        parts = sum(mean[s] or 0.0 for s in STAGES if s != "total")
        out["unattributed_us"] = round(mean["total"] - parts, 1)
    return out


def worker_clocks(url: str, headers: dict[str, str], workers: int = 2, tries: int = 40) -> list:
    """Every worker's stage clocks: a fresh connection per read (the kernel hands each to
    one worker) until ``workers`` pids have answered or ``tries`` reads are spent."""
    import httpx

    seen: dict[int, dict[str, Any]] = {}
    for _ in range(tries):
        with httpx.Client(base_url=url, headers=headers, timeout=10.0) as client:
            snap = client.get("/admin/stages").json()
        seen[snap["pid"]] = snap
        if len(seen) >= workers:
            break
    return list(seen.values())


_WRK_LUA = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%s
request = function()
  i = i + 1
  return wrk.format(nil, "/decide", nil, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "max_us": %%d, "mean_us": %%f, "errors": %%d, "non_2xx": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def _load_wrk(
    url: str, bodies_file: Path, duration: float, connections: int, headers: dict[str, str]
) -> dict[str, Any]:
    script = bodies_file.with_suffix(".lua")
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    script.write_text(_WRK_LUA % (bodies_file, lines))
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{int(duration)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    r = json.loads(line[len("WRKJSON ") :])
    secs = r["duration_us"] / 1e6
    return {
        "client": "wrk",
        "connections": connections,
        "duration_s": round(secs, 2),
        "requests": r["requests"],
        "errors": r["errors"] + r["non_2xx"],
        "decisions_per_s": round((r["requests"] - r["non_2xx"]) / secs, 1),
        "p50_ms": r["p50_us"] / 1e3,
        "p90_ms": r["p90_us"] / 1e3,
        "p99_ms": r["p99_us"] / 1e3,
        "max_ms": r["max_us"] / 1e3,
        "mean_ms": round(r["mean_us"] / 1e3, 3),
    }


async def _httpx_load(
    url: str, bodies: list[str], duration: float, connections: int, headers: dict[str, str]
) -> dict:
    import httpx

    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {**headers, "Content-Type": "application/json"}

    async def worker(client: httpx.AsyncClient, start: int) -> None:
        nonlocal errors
        i = start
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                r = await client.post("/decide", content=bodies[i % len(bodies)], headers=headers)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                lat.append((time.perf_counter() - t) * 1e3)
            else:
                errors += 1
            i += connections

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0) as client:
        await asyncio.gather(*(worker(client, s) for s in range(connections)))
    secs = time.perf_counter() - t0
    return {
        "client": "httpx-async",
        "connections": connections,
        "duration_s": round(secs, 2),
        "requests": len(lat) + errors,
        "errors": errors,
        "decisions_per_s": round(len(lat) / secs, 1),
        **{k: v for k, v in percentiles(lat).items() if k != "n"},
    }


def load(
    url: str,
    pid: int,
    bodies: list[dict[str, Any]],
    duration: float,
    connections: int,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A concurrent load from a separate process (every request with ``headers``, the
    server's API key), with the server tree's CPU use."""
    with tempfile.TemporaryDirectory() as tmp:
        bodies_file = Path(tmp) / "bodies.jsonl"
        bodies_file.write_text("\n".join(json.dumps(b) for b in bodies) + "\n")
        headers_file = Path(tmp) / "headers.json"  # not on the command line (ps shows it)
        headers_file.write_text(json.dumps(headers or {}))
        cpu0, t0 = _tree_cpu_seconds(pid), time.perf_counter()
        if shutil.which("wrk"):
            res = _load_wrk(url, bodies_file, duration, connections, headers or {})
        else:
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.http_bench",
                    "_client",
                    url,
                    str(bodies_file),
                    str(duration),
                    str(connections),
                    str(headers_file),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            res = json.loads(out.strip().splitlines()[-1])
        cpu1, t1 = _tree_cpu_seconds(pid), time.perf_counter()
    res["server_cpu_cores"] = round((cpu1 - cpu0) / (t1 - t0), 2)
    served = res["decisions_per_s"] * (t1 - t0)
    # CPU the server spent per answered decision: what caps throughput on 2 shared cores
    res["server_cpu_ms_per_decision"] = round((cpu1 - cpu0) / served * 1e3, 3) if served else None
    return res


def bench_service(
    name: str,
    home: Path,
    bodies: list[dict[str, Any]],
    n_seq: int,
    warmup: int,
    duration: float,
    connections: int,
    workdir: Path,
    wrk_sequential_s: float = 10.0,
) -> dict[str, Any]:
    """Start one service, measure it sequentially and under load, stop it.

    With ``wrk`` installed, also ``wrk_sequential_s`` seconds over one connection: the same
    one-at-a-time requests from a C client, whose own CPU per request is tiny (the Python
    client's is ~2 ms here, on the same 2 cores, and part of every sequential latency).
    """
    server = start_server(SERVICES[name], home, workdir / f"{name}.log")
    stages = name == "nextbest"  # the product's own stage clocks (serving/stages.py)
    try:
        settled = wait_settled(server.proc.pid)
        load_seq = [round(x, 2) for x in os.getloadavg()]
        seq = sequential(server.url, bodies, n_seq, warmup, server.proc.pid, server.headers, stages)
        seq["load_average_before"] = load_seq
        seq["settle_wait_s"] = settled
        seq_wrk = None
        if wrk_sequential_s > 0 and shutil.which("wrk"):
            load_sw = [round(x, 2) for x in os.getloadavg()]
            seq_wrk = load(server.url, server.proc.pid, bodies, wrk_sequential_s, 1, server.headers)
            seq_wrk["load_average_before"] = load_sw
        load_ld = [round(x, 2) for x in os.getloadavg()]
        clocks0 = worker_clocks(server.url, server.headers) if stages else []
        ld = load(server.url, server.proc.pid, bodies, duration, connections, server.headers)
        if stages:
            ld["stages"] = stage_times(clocks0, worker_clocks(server.url, server.headers))
        ld["load_average_before"] = load_ld
        ld["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        stop_server(server.proc)
    out = {"sequential": seq, "load": ld}
    if seq_wrk is not None:
        out["sequential_wrk"] = seq_wrk
    return out


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


def floor_ratios(product: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """The product's figures as ratios to the floor's of the same run, each with its target
    (:data:`TARGETS`) and whether it is met. Sequential latency from ``wrk`` on one
    connection when both have it (the Python client's own CPU is in the other figures)."""
    seq = (
        "sequential_wrk"
        if "sequential_wrk" in product and "sequential_wrk" in floor
        else ("sequential")
    )
    a, b = product[seq], floor[seq]
    out: dict[str, Any] = {
        "sequential_source": seq,
        "sequential_p50_x_floor": _ratio(a["p50_ms"], b["p50_ms"]),
        "sequential_p99_x_floor": _ratio(a["p99_ms"], b["p99_ms"]),
        "python_client_sequential_p50_x_floor": _ratio(
            product["sequential"]["p50_ms"], floor["sequential"]["p50_ms"]
        ),
        "throughput_share_of_floor": _ratio(
            product["load"]["decisions_per_s"], floor["load"]["decisions_per_s"]
        ),
        "load_p99_x_floor": _ratio(product["load"]["p99_ms"], floor["load"]["p99_ms"]),
        "sequential_server_cpu_x_floor": _ratio(
            product["sequential"].get("server_cpu_ms_per_request", 0.0),
            floor["sequential"].get("server_cpu_ms_per_request", 0.0),
        ),
        "load_server_cpu_x_floor": _ratio(
            product["load"].get("server_cpu_ms_per_decision") or 0.0,
            floor["load"].get("server_cpu_ms_per_decision") or 0.0,
        ),
    }
    met = {}
    for name, bound in TARGETS.items():
        value = out[name]
        if value is not None:
            met[name] = value >= bound if name == "throughput_share_of_floor" else value <= bound
    out["targets"] = TARGETS
    out["met"] = met
    return out


def run(
    home: Path,
    customers: int,
    n_seq: int = 2000,
    warmup: int = 200,
    duration: float = 30.0,
    connections: int = 16,
    services: tuple[str, ...] = ("floor", "nextbest", "naive"),
    results_dir: Path | None = None,
    output: str = "http",
) -> dict[str, Any]:
    """Measure every service in ``services`` on the world under ``home``; write
    ``<output>.json`` (``http.json`` by default)."""
    settings = ensure_world(home, customers)
    bodies = sample_requests(settings, max(n_seq + warmup, 2000))
    out: dict[str, Any] = {
        "sizes": {
            "customers": customers,
            "catalog_actions": 20,
            "channel": "email",
            "sequential_requests": n_seq,
            "warmup": warmup,
            "load_seconds": duration,
            "connections": connections,
        },
        "services": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in services:
            out["services"][name] = bench_service(
                name,
                home,
                bodies,
                n_seq,
                warmup,
                duration,
                connections,
                Path(tmp),
                # as long as the load phase, at most 10 s (whole seconds for wrk)
                wrk_sequential_s=max(1.0, min(10.0, duration)),
            )
    s = out["services"]
    if "nextbest" in s and "naive" in s:
        a, b = s["nextbest"], s["naive"]
        out["ratios"] = {
            "sequential_p50_speedup": _ratio(b["sequential"]["p50_ms"], a["sequential"]["p50_ms"]),
            "sequential_p99_speedup": _ratio(b["sequential"]["p99_ms"], a["sequential"]["p99_ms"]),
            "throughput_ratio": _ratio(a["load"]["decisions_per_s"], b["load"]["decisions_per_s"]),
            "load_p99_ratio": _ratio(b["load"]["p99_ms"], a["load"]["p99_ms"]),
        }
    if "nextbest" in s and "floor" in s:
        out["floor_ratios"] = floor_ratios(s["nextbest"], s["floor"])
    kw = {"results_dir": results_dir} if results_dir else {}
    write_result(output, out, **kw)
    rows = []
    for name, r in s.items():
        q, ld = r["sequential"], r["load"]
        rows.append(
            (
                name,
                q["p50_ms"],
                q["p95_ms"],
                q["p99_ms"],
                q["max_ms"],
                ld["decisions_per_s"],
                ld["p50_ms"],
                ld["p99_ms"],
                ld["server_cpu_cores"],
            )
        )
    print_table(
        f"Online over HTTP ({customers:,} customers, 20 actions, load {duration:g}s x "
        f"{connections} connections)",
        rows,
        (
            "service",
            "seq p50 ms",
            "seq p95 ms",
            "seq p99 ms",
            "seq max ms",
            "load dec/s",
            "load p50 ms",
            "load p99 ms",
            "server CPU cores",
        ),
    )
    if "floor_ratios" in out:
        print("product / floor:", json.dumps(out["floor_ratios"]))
    for phase in ("sequential", "load"):
        st = s.get("nextbest", {}).get(phase, {}).get("stages")
        if st:
            print(f"stages ({phase}, us per decision):", json.dumps(st))
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_client":  # the async load client, in its own process
        url, bodies_file, duration, conns = argv[1], Path(argv[2]), float(argv[3]), int(argv[4])
        bodies = bodies_file.read_text().splitlines()
        headers = json.loads(Path(argv[5]).read_text())
        print(json.dumps(asyncio.run(_httpx_load(url, bodies, duration, conns, headers))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", type=Path, default=Path("/tmp/bench_world"))
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--sequential", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--duration", type=float, default=30.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--services", default="floor,nextbest,naive")
    p.add_argument(
        "--output",
        default="http",
        help="result name: writes benchmarks/results/<output>.json (default http)",
    )
    a = p.parse_args(argv)
    run(
        a.home,
        a.customers,
        a.sequential,
        a.warmup,
        a.duration,
        a.connections,
        tuple(a.services.split(",")),
        output=a.output,
    )


if __name__ == "__main__":
    main()
