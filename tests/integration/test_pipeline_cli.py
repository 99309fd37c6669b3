"""The README's main job, ``nextbest pipeline``, end to end on a small world."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from nextbest.core.api_keys import hash_key, load_keys
from nextbest.core.vocabulary import API_SCOPES
from tests.params import SEED, SMALL_CUSTOMERS

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_pipeline_generates_resolves_builds_trains_and_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nextbest.cli import app

    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    monkeypatch.setenv("NEXTBEST_LEARNERS", '["t_learner", "s_learner"]')
    result = CliRunner().invoke(
        app, ["pipeline", "--customers", str(SMALL_CUSTOMERS), "--seed", str(SEED)]
    )
    assert result.exit_code == 0, result.output
    identity = pd.read_parquet(tmp_path / "unified" / "identity.parquet")
    assert identity["customer_id"].nunique() < len(identity)  # records were linked
    assert (tmp_path / "feast" / "online.db").exists()
    scores = pd.read_parquet(tmp_path / "scores" / "email.parquet")
    summary = json.loads((tmp_path / "scores" / "email.parquet.summary.json").read_text())
    assert summary["customers"] == len(scores) == identity["customer_id"].nunique()
    assert summary["model_version"].endswith("/1")
    assert set(scores["group"]) == {"decided", "holdout"}
    # a demo key with every scope: shown once, saved 0600, only its hash in the key file
    key = (tmp_path / "demo-api-key").read_text().strip()
    assert key.startswith("nb_") and key in result.output
    assert (tmp_path / "demo-api-key").stat().st_mode & 0o777 == 0o600
    stored = (tmp_path / "api_keys.json").read_text()
    assert key not in stored and hash_key(key) in stored
    [demo] = load_keys(tmp_path / "api_keys.json")
    assert (demo.name, set(demo.scopes)) == ("demo", set(API_SCOPES))
