"""Before/after over HTTP on a busy machine: both services up at once, requests alternating.

On a machine whose load comes and goes (here: other engineers' jobs on the same 2 cores),
two benchmark runs minutes apart differ by more than most changes; even CPU time per
request grows with the load (shared caches, SMT siblings). This script starts the
product service from two checkouts at the same time (``--before``: a directory holding an
older checkout, e.g. from ``git archive``, with a ``.venv``; ``--after``: this one), on the
same world and 20-action catalog, and measures them in alternation so that both see the
same machine: ``--sequential`` requests per service, A/B then B/A, on one keep-alive
connection each, then ``--rounds`` rounds of ``wrk`` (16 connections) per service, order
flipped each round. Server CPU from psutil over each service's process tree.

Run: ``.venv/bin/python benchmarks/http_ab.py --before /tmp/before``; writes
``benchmarks/results/http_ab.json`` (``--output NAME`` for another name).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, percentiles, print_table, write_result
from benchmarks.http_bench import _process_cpu_seconds, load, wait_settled
from benchmarks.world import ensure_world, sample_requests
from devtools.process import free_port, provision_test_key, stop_server


def _start(root: Path, home: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``bentoml serve`` of the product from checkout ``root`` with its own venv."""
    port = free_port()
    env = {
        **os.environ,
        "NEXTBEST_HOME": str(home),
        "NEXTBEST_CATALOG": str(root / "benchmarks" / "config" / "catalog_20_email.yaml"),
        "PYTHONWARNINGS": "ignore",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "True",
    }
    cmd = [str(root / ".venv" / "bin" / "python"), "-m", "bentoml", "serve"]
    cmd += ["serving.service:NextBest", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server at {url} exited ({proc.returncode})")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server at {url} not ready in {timeout}s")


def run(
    before: Path,
    after: Path = ROOT,
    home: Path = Path("/tmp/bench_world"),
    customers: int = 20_000,
    n_seq: int = 2000,
    warmup: int = 200,
    load_seconds: float = 20.0,
    rounds: int = 2,
    output: str = "http_ab",
    wrk_sequential_s: float = 0.0,
) -> dict[str, Any]:
    """Measure the two services in alternation; write ``<output>.json``.

    With ``wrk_sequential_s`` (and ``wrk`` installed), also that many seconds of ``wrk`` on
    one connection per service, two rounds in flipped order: sequential latency from a C
    client, whose own CPU per request is tiny (the Python client's is ~2 ms here).
    """
    import httpx

    settings = ensure_world(home, customers)
    bodies = sample_requests(settings, max(n_seq + warmup, 2000))
    # Both sides get the key (a checkout without authentication ignores the header).
    headers = {"Authorization": f"Bearer {provision_test_key(home)}"}
    roots = {"before": before.resolve(), "after": after.resolve()}
    servers: dict[str, tuple[subprocess.Popen, str]] = {}
    out: dict[str, Any] = {
        "roots": {k: str(v) for k, v in roots.items()},
        "sizes": {"customers": customers, "sequential_requests": n_seq, "warmup": warmup},
    }
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    try:
        for name, root in roots.items():
            servers[name] = _start(root, home, logs / f"http_ab_{name}.log")
        for proc, url in servers.values():
            _wait_ready(url, proc)
        for proc, _ in servers.values():
            wait_settled(proc.pid)  # every worker loaded, on both sides
        clients = {
            n: httpx.Client(base_url=url, headers=headers, timeout=10.0)
            for n, (_, url) in servers.items()
        }
        for i in range(warmup):
            for c in clients.values():
                c.post("/decide", json=bodies[i % len(bodies)])
        lat: dict[str, list[float]] = {n: [] for n in servers}
        cpu0 = {n: _process_cpu_seconds(p.pid) for n, (p, _) in servers.items()}
        out["sequential_load_average_before"] = [round(x, 2) for x in os.getloadavg()]
        names = list(servers)
        for i in range(warmup, warmup + n_seq):
            for n in names if i % 2 == 0 else names[::-1]:
                t = time.perf_counter()
                r = clients[n].post("/decide", json=bodies[i % len(bodies)])
                lat[n].append((time.perf_counter() - t) * 1e3)
                if r.status_code != 200:
                    raise RuntimeError(f"{n}: {r.status_code} {r.text[:200]}")
        cpu1 = {n: _process_cpu_seconds(p.pid) for n, (p, _) in servers.items()}
        out["sequential_load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        for c in clients.values():
            c.close()
        seq = {}
        for n in names:
            used = [c - cpu0[n].get(pid, 0.0) for pid, c in cpu1[n].items()]
            seq[n] = {
                **percentiles(lat[n]),
                "server_cpu_ms_per_request": round(sum(used) / n_seq * 1e3, 3),
                "busiest_process_cpu_ms_per_request": round(max(used) / n_seq * 1e3, 3),
            }
        out["sequential"] = seq
        if wrk_sequential_s > 0 and shutil.which("wrk"):
            out["sequential_wrk"] = []
            for rnd in range(2):
                for n in names if rnd % 2 == 0 else names[::-1]:
                    proc, url = servers[n]
                    la = [round(x, 2) for x in os.getloadavg()]
                    res = load(url, proc.pid, bodies, wrk_sequential_s, 1, headers)
                    out["sequential_wrk"].append(
                        {"service": n, "round": rnd, "load_average_before": la, **res}
                    )
        out["load"] = []
        for rnd in range(rounds):
            for n in names if rnd % 2 == 0 else names[::-1]:
                proc, url = servers[n]
                la = [round(x, 2) for x in os.getloadavg()]
                res = load(url, proc.pid, bodies, load_seconds, 16, headers)
                out["load"].append({"service": n, "round": rnd, "load_average_before": la, **res})
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    write_result(output, out)
    rows = [
        (
            n,
            s["p50_ms"],
            s["p99_ms"],
            s["server_cpu_ms_per_request"],
            *(
                f"{r['decisions_per_s']}/s {r['server_cpu_ms_per_decision']} ms"
                for r in out["load"]
                if r["service"] == n
            ),
        )
        for n, s in out["sequential"].items()
    ]
    if out.get("sequential_wrk"):
        cpu = "server_cpu_ms_per_decision"
        print_table(
            "A/B sequential from wrk, one connection",
            [
                (r["service"], r["round"], r["p50_ms"], r["p99_ms"], r[cpu])
                for r in out["sequential_wrk"]
            ],
            ("service", "round", "p50 ms", "p99 ms", "CPU ms/req"),
        )
    print_table(
        "A/B over HTTP, alternating",
        rows,
        ("service", "seq p50", "seq p99", "seq CPU ms/req", *(f"load r{i}" for i in range(rounds))),
    )
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, required=True, help="older checkout with a .venv")
    p.add_argument("--after", type=Path, default=ROOT)
    p.add_argument("--home", type=Path, default=Path("/tmp/bench_world"))
    p.add_argument("--customers", type=int, default=20_000)
    p.add_argument("--sequential", type=int, default=2000)
    p.add_argument("--load-seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--output", default="http_ab")
    p.add_argument(
        "--wrk-sequential",
        type=float,
        default=0.0,
        help="seconds of wrk on one connection per service and round (0: none)",
    )
    a = p.parse_args(argv)
    run(
        a.before,
        a.after,
        a.home,
        a.customers,
        a.sequential,
        load_seconds=a.load_seconds,
        rounds=a.rounds,
        output=a.output,
        wrk_sequential_s=a.wrk_sequential,
    )


if __name__ == "__main__":
    main()
