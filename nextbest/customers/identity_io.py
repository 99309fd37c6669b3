"""Identity resolution's files: canonical records read, the unified record written, the
home's stable ids applied, and the ``nextbest resolve`` step that chains them around
:func:`nextbest.customers.identity.resolve_records`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.core.errors import InputError, MissingInputError
from nextbest.customers.corrections import load_decisions
from nextbest.customers.id_map import stabilise
from nextbest.customers.identity import (
    ProgressCallback,
    ResolutionResult,
    ResolutionSettings,
    resolve_records,
)
from nextbest.customers.sources.identity_records import load_canonical_records


def resolve_generated(
    raw_dir: Path,
    out_dir: Path,
    settings: ResolutionSettings | None = None,
    progress: ProgressCallback | None = None,
    decisions: pd.DataFrame | None = None,
    home: Path | None = None,
) -> ResolutionResult:
    """Resolve the generated exports under ``raw_dir`` and write the unified identity.

    Writes ``out_dir/identity.parquet``, ``households.parquet`` and
    ``refused_links.parquet``. ``out_dir`` is the unified directory
    (``settings.unified_dir``); when it is named differently a ``unified/`` folder
    is not added, so the caller decides the layout. With ``home`` the ids are the
    home's stable ids (:func:`with_stable_ids`).
    """
    records = load_canonical_records(Path(raw_dir))
    result = resolve_records(records, settings, progress, decisions)
    if home is not None:
        result = with_stable_ids(result, home, Path(out_dir) / "identity.parquet", decisions)
    write_result(result, Path(out_dir))
    return result


def _human_pairs(decisions: pd.DataFrame | None, kind: str) -> list[tuple[str, str]]:
    if decisions is None or not len(decisions):
        return []
    rows = decisions.loc[decisions["decision"] == kind]
    return list(zip(rows["record_id_a"].astype(str), rows["record_id_b"].astype(str), strict=True))


def with_stable_ids(
    result: ResolutionResult,
    root: Path,
    previous: Path | None = None,
    decisions: pd.DataFrame | None = None,
) -> ResolutionResult:
    """The result with the home's stable customer ids in place of the run's own
    (:func:`nextbest.customers.id_map.stabilise`; the changes go to the home's id map).

    ``previous``: the last unified assignment, read when the home has no id registry yet
    (a home resolved before ids were stable keeps the ids it had).
    """
    a = result.assignments
    labels, _ = pd.factorize(a["customer_id"], sort=False)
    stable = stabilise(
        root,
        a["record_id"].to_numpy(object),
        labels.astype(np.int64),
        previous,
        links=_human_pairs(decisions, "link"),
        splits=_human_pairs(decisions, "split"),
    )
    rename = dict(zip(a["customer_id"], stable.customer_ids, strict=True))
    assignments = a.assign(customer_id=stable.customer_ids)
    households = result.households.assign(customer_id=result.households["customer_id"].map(rename))
    result.stats["n_id_changes"] = len(stable.changes)
    result.stats["n_ids_issued"] = len(stable.issued)
    return replace(result, assignments=assignments, households=households)


def write_result(result: ResolutionResult, out_dir: Path) -> dict[str, Path]:
    """Write identity, households, refused and forced links as parquet under ``out_dir``,
    and the uncertain pairs (masked) as ``review_pairs.csv`` for a human to fill in."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "identity": out_dir / "identity.parquet",
        "households": out_dir / "households.parquet",
        "refused_links": out_dir / "refused_links.parquet",
        "forced_links": out_dir / "forced_links.parquet",
        "review_pairs": out_dir / "review_pairs.csv",
    }
    result.assignments.to_parquet(paths["identity"], index=False)
    result.households.to_parquet(paths["households"], index=False)
    result.refused_links.to_parquet(paths["refused_links"], index=False)
    result.forced_links.to_parquet(paths["forced_links"], index=False)
    result.review_pairs.to_csv(paths["review_pairs"], index=False)
    return paths


def read_records(path: Path) -> pd.DataFrame:
    """Read a user's canonical records from CSV or parquet (all columns as strings)."""
    path = Path(path)
    if not path.exists():
        raise MissingInputError(f"records file {path} does not exist")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise InputError(f"{path}: expected a .csv or .parquet file")


def write_assignments(assignments: pd.DataFrame, path: Path) -> None:
    """Write the assignments as CSV or parquet, chosen by the file suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        assignments.to_csv(path, index=False)
    elif path.suffix.lower() in (".parquet", ".pq"):
        assignments.to_parquet(path, index=False)
    else:
        raise ValueError(f"{path}: expected a .csv or .parquet output file")


@dataclass
class ResolveRun:
    """Outcome of :func:`run_resolve`: the result and where it went."""

    result: ResolutionResult
    written: dict[str, Path]


def run_resolve(
    records_path: Path | None,
    out_path: Path | None,
    raw_dir: Path,
    unified_dir: Path,
    settings: ResolutionSettings | None = None,
    progress: ProgressCallback | None = None,
    decisions_path: Path | None = None,
    home: Path | None = None,
) -> ResolveRun:
    """The ``nextbest resolve`` step.

    With ``records_path`` a user's canonical records (CSV/parquet) are resolved and the
    assignments written to ``out_path`` (next to it: households and refused links as
    parquet). Without it the generated exports under ``raw_dir`` are resolved into
    ``unified_dir``. Human links and splits in ``decisions_path`` (if it exists) are
    honoured. ``home``: the home whose stable ids the generated exports' customers get
    (a user's ``records_path`` is resolved on its own). Quality against labelled
    evaluation data is
    :func:`nextbest.customers.quality.evaluate_resolution`.
    """
    decisions = load_decisions(decisions_path)
    if records_path is not None:
        if out_path is None:
            raise InputError("--out is required with --records")
        result = resolve_records(read_records(records_path), settings, progress, decisions)
        write_assignments(result.assignments, out_path)
        side = write_result(result, out_path.parent / f"{out_path.stem}_resolution")
        written = {"assignments": out_path, **{k: v for k, v in side.items() if k != "identity"}}
    else:
        result = resolve_generated(raw_dir, unified_dir, settings, progress, decisions, home)
        written = {
            k: unified_dir / f"{k}.parquet"
            for k in ("identity", "households", "refused_links", "forced_links")
        }
        written["review_pairs"] = unified_dir / "review_pairs.csv"
        if out_path is not None:
            write_assignments(result.assignments, out_path)
            written["assignments"] = out_path
    return ResolveRun(result, written)
