"""Stale results: a results file records the hash of the source it measures, and the check
flags one whose source changed since (``nextbest bench --check``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from benchmarks import common, sources


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with one measured module and a results folder."""
    (tmp_path / "nextbest" / "decisions").mkdir(parents=True)
    (tmp_path / "nextbest" / "decisions" / "engine.py").write_text("X = 1\n")
    (tmp_path / "results").mkdir()
    monkeypatch.setattr(sources, "ROOT", tmp_path)
    monkeypatch.setattr(sources, "MEASURES", {"engine": ("nextbest/decisions",)})
    return tmp_path


def test_a_fresh_results_file_passes_and_goes_stale_when_its_source_changes(
    project: Path,
) -> None:
    common.write_result("engine", {"figure": 1.0}, results_dir=project / "results")
    assert sources.stale_results(project / "results", project) == {}
    (project / "nextbest" / "decisions" / "engine.py").write_text("X = 2\n")
    assert "source changed" in sources.stale_results(project / "results", project)["engine"]


def test_a_results_file_without_a_hash_or_unlisted_is_flagged(project: Path) -> None:
    (project / "results" / "engine.json").write_text(json.dumps({"run_at": "then"}))
    (project / "results" / "mystery.json").write_text("{}")
    stale = sources.stale_results(project / "results", project)
    assert "no source hash" in stale["engine"]
    assert "not listed" in stale["mystery"]


def test_a_new_file_under_a_measured_folder_changes_the_hash(project: Path) -> None:
    before = sources.source_hash(("nextbest/decisions",), project)
    (project / "nextbest" / "decisions" / "new.py").write_text("")
    assert sources.source_hash(("nextbest/decisions",), project) != before


def test_every_measured_path_exists_and_the_repository_results_are_reported() -> None:
    for name, paths in sources.MEASURES.items():
        for p in paths:
            assert (sources.ROOT / p).exists(), (name, p)
    stale = sources.stale_results(common.RESULTS)
    if stale:  # re-running a benchmark is a measurement, not a test: report, do not fail
        warnings.warn(f"stale benchmark results: {sorted(stale)}", stacklevel=1)
