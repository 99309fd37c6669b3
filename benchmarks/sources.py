"""Which source each results file measures, its hash, and the check for stale results.

Every results file written by :func:`benchmarks.common.write_result` records ``source``:
the paths it measures (:data:`MEASURES`) and a SHA-256 over their Python files (path and
bytes, in path order). A results file whose recorded hash differs from the source's hash
now measured other code: :func:`stale_results` flags it, and so do ``nextbest bench
--check`` and ``benchmarks/engine_bench.py --check`` (exit status 1). Folders stand for
every ``*.py`` under them; the benchmark's own script is part of what it measures.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_ONLINE = (
    "serving",
    "nextbest/decisions",
    "nextbest/models",
    "nextbest/customers/fast_features.py",
    "nextbest/customers/feast_store.py",
)
_ENGINE = (
    "nextbest/decisions/engine.py",
    "nextbest/decisions/rules.py",
    "nextbest/decisions/rule_families.py",
    "nextbest/decisions/reasons.py",
    "nextbest/decisions/draws.py",
    "nextbest/decisions/policy.py",
    "nextbest/decisions/catalog.py",
)
_IDENTITY = (
    "nextbest/customers/identity.py",
    "nextbest/customers/linkage.py",
    "nextbest/customers/normalise.py",
)
_UPLIFT = ("nextbest/models", "training")

#: Results file name -> the source paths (files or folders, from the root) it measures.
MEASURES: dict[str, tuple[str, ...]] = {
    "http": (
        *_ONLINE,
        "benchmarks/http_bench.py",
        "benchmarks/floor_service.py",
        "benchmarks/naive_service.py",
    ),
    "http_ab": (*_ONLINE, "benchmarks/http_ab.py"),
    "auth_ab": (*_ONLINE, "nextbest/core/api_keys.py", "benchmarks/http_ab.py"),
    "inprocess": (*_ONLINE, "benchmarks/inprocess_bench.py"),
    "kill9": (*_ONLINE, "benchmarks/kill9_bench.py"),
    "engine": (*_ENGINE, "benchmarks/engine_bench.py"),
    "log_sync": (
        "nextbest/decisions/group_commit.py",
        "nextbest/decisions/decision_log.py",
        "benchmarks/log_sync_bench.py",
    ),
    "batch": ("nextbest/batch", "nextbest/models", *_ENGINE, "benchmarks/batch_bench.py"),
    "features": ("nextbest/customers", "benchmarks/features_bench.py"),
    "generate": ("nextbest/demo", "benchmarks/generate_bench.py"),
    "pipeline": ("nextbest", "training", "benchmarks/pipeline_bench.py"),
    "pipeline_1m": ("nextbest", "training", "benchmarks/pipeline_bench.py"),
    "identity": (*_IDENTITY, "benchmarks/identity_bench.py", "benchmarks/febrl.py"),
    "identity_crm": (*_IDENTITY, "benchmarks/identity_crm.py", "benchmarks/febrl.py"),
    "identity_threshold": (*_IDENTITY, "benchmarks/identity_threshold.py", "benchmarks/febrl.py"),
    "hillstrom": (*_UPLIFT,),
    "hillstrom_cv": (*_UPLIFT, "benchmarks/hillstrom_cv.py"),
    "uplift": (*_UPLIFT, "benchmarks/uplift_bench.py"),
}


def _files(paths: tuple[str, ...], root: Path) -> list[Path]:
    out: set[Path] = set()
    for p in paths:
        path = root / p
        if path.is_dir():
            out.update(f for f in path.rglob("*.py") if "__pycache__" not in f.parts)
        elif path.exists():
            out.add(path)
    return sorted(out)


def source_hash(paths: tuple[str, ...], root: Path | None = None) -> str:
    """SHA-256 over the Python files of ``paths`` (each file's path from ``root``, the
    project by default, and its bytes)."""
    root = root or ROOT
    h = hashlib.sha256()
    for f in _files(paths, root):
        h.update(f.relative_to(root).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def source_record(name: str, root: Path | None = None) -> dict[str, Any] | None:
    """What a results file named ``name`` records of its source (None: not listed)."""
    paths = MEASURES.get(name)
    if paths is None:
        return None
    return {"paths": list(paths), "sha256": source_hash(paths, root)}


def stale_results(results_dir: Path, root: Path | None = None) -> dict[str, str]:
    """Every results file in ``results_dir`` that does not measure today's source, with why:
    no source recorded, a listed path gone, or the source changed since it was written."""
    root = root or ROOT
    out: dict[str, str] = {}
    for path in sorted(results_dir.glob("*.json")):
        name = path.stem
        if name not in MEASURES:
            if name != "suite":  # the suite folds in the other files
                out[name] = "not listed in benchmarks/sources.py MEASURES"
            continue
        missing = [p for p in MEASURES[name] if not (root / p).exists()]
        if missing:
            out[name] = f"measured paths gone: {', '.join(missing)}"
            continue
        recorded = json.loads(path.read_text()).get("source") or {}
        if not recorded.get("sha256"):
            out[name] = "no source hash recorded (written before hashes were kept)"
        elif recorded["sha256"] != source_hash(MEASURES[name], root):
            out[name] = f"source changed since {json.loads(path.read_text()).get('run_at')}"
    return out
