"""What one durable decision-log line costs, against what a preallocated log would cost.

Three ways of getting one ~1 KB decision line on disk, interleaved round by round in one
run on the same file system (so the load is shared): the product's
``GroupCommitLog.append_inline`` (an ``O_APPEND`` write and ``fdatasync``), a bare
``write`` + ``fdatasync`` appending to a file, and ``pwrite`` + ``fdatasync`` into a file
preallocated with ``posix_fallocate`` (what database WALs do: the file's size does not
change, so the sync need not commit the file system's journal). The ratios say what a
preallocated log would save; the product does not preallocate (docs: benchmarks/README.md).

Run: ``.venv/bin/python benchmarks/log_sync_bench.py [--lines 500] [--dir DIR]``; writes
``benchmarks/results/log_sync.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import percentiles, write_result
from nextbest.decisions.group_commit import GroupCommitLog

LINE = b'{"decision_id":"' + b"0" * 36 + b'","pad":"' + b"x" * 900 + b'"}\n'


def run(lines: int, folder: Path) -> dict[str, Any]:
    """Time ``lines`` syncs of each way, interleaved; returns the figures."""
    log = GroupCommitLog(folder / "log")
    fd_append = os.open(folder / "append.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    fd_pre = os.open(folder / "prealloc.log", os.O_RDWR | os.O_CREAT, 0o640)
    os.posix_fallocate(fd_pre, 0, (lines + 1) * len(LINE))
    os.fsync(fd_pre)
    now = datetime.now(UTC).isoformat()
    record = {"decision_id": "0" * 36, "decided_at": now, "pad": "x" * 900}
    times: dict[str, list[float]] = {"product_append_inline": [], "append": [], "preallocated": []}
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        for i in range(lines):
            t = time.perf_counter()
            log.append_inline([record]).result()
            times["product_append_inline"].append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            os.write(fd_append, LINE)
            os.fdatasync(fd_append)
            times["append"].append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            os.pwrite(fd_pre, LINE, i * len(LINE))
            os.fdatasync(fd_pre)
            times["preallocated"].append((time.perf_counter() - t) * 1e3)
    finally:
        log.close()
        os.close(fd_append)
        os.close(fd_pre)
    out: dict[str, Any] = {k: percentiles(v) for k, v in times.items()}
    ref = out["preallocated"]
    out["ratios_to_preallocated"] = {
        k: {q: round(out[k][q] / ref[q], 1) for q in ("p50_ms", "p99_ms")}
        for k in ("product_append_inline", "append")
    }
    out["sizes"] = {"lines": lines, "line_bytes": len(LINE)}
    out["load_average_before"] = load_before
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=500)
    p.add_argument("--dir", type=Path, default=None, help="file system to measure (default /tmp)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        out = run(a.lines, Path(tmp))
    for k in ("product_append_inline", "append", "preallocated"):
        print(f"{k:>22}: p50 {out[k]['p50_ms']:.3f} ms  p99 {out[k]['p99_ms']:.3f} ms")
    print("ratios to preallocated:", out["ratios_to_preallocated"])
    print(f"wrote {write_result('log_sync', out)}")


if __name__ == "__main__":
    main()
