"""The as-of time is the data's (issue 23): the bank's exports moved to end in 2025, far
from any fixed default, run through the documented commands without ``NEXTBEST_AS_OF``:
each command prints the as-of time it took from the data, the snapshots end there and a
model is trained and registered. With an explicit as-of time that puts every exposure
outside the snapshots, ``train`` stops with one message (exit 2) and registers nothing."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from tests.params import SHIFTED_BANK_CUSTOMERS
from tests.worlds.bank import write_bank

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: The bank's exports end here (its campaigns run from December 2024 to April 2025).
END = datetime(2025, 6, 1, tzinfo=UTC)
#: The midnight after the exports' latest time: their balances, read on 31 May.
DATA_AS_OF = "2025-06-01T00:00:00Z"


@dataclass
class Shifted:
    """The shifted bank's home after the documented commands, and what they printed."""

    home: Path
    results: dict[str, Result]


def _run(*args: str) -> Result:
    from nextbest.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shifted]:
    root = tmp_path_factory.mktemp("bank-2025")
    world = write_bank(root / "bank", customers=SHIFTED_BANK_CUSTOMERS, end=END)
    # the sources file names the day its balances were read: this export's, not the default's
    text = world.sources.read_text()
    assert "31/10/2026" in text
    world.sources.write_text(text.replace("31/10/2026", f"{END - timedelta(days=1):%d/%m/%Y}"))
    with pytest.MonkeyPatch.context() as env:
        env.delenv("NEXTBEST_AS_OF", raising=False)
        for name, value in {
            "NEXTBEST_HOME": str(root / "home"),
            "NEXTBEST_SOURCES": str(world.sources),
            "NEXTBEST_CATALOG": str(world.catalog),
            "NEXTBEST_POLICY": str(world.policy),
            "NEXTBEST_SNAPSHOT_MONTHS": "7",
            # speed only
            "NEXTBEST_FEATURE_WORKERS": "1",
            "NEXTBEST_LEARNERS": '["t_learner"]',
        }.items():
            env.setenv(name, value)
        results = {}
        for step in (
            ["resolve", "--sources", str(world.sources)],
            ["features", "build"],
            ["train"],
            ["decide-batch", "--channel", "email", "--out", str(root / "scores" / "email.parquet")],
        ):
            results[step[0]] = _run(*step)
        yield Shifted(root / "home", results)


def _versions(home: Path) -> int:
    db = home / "mlflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("select count(*) from model_versions").fetchone()[0]


def test_without_a_setting_every_command_takes_the_as_of_from_the_data(
    shifted: Shifted,
) -> None:
    for name, result in shifted.results.items():
        assert result.exit_code == 0, f"{name}: {result.output}"
    for name in ("features", "train", "decide-batch"):
        out = shifted.results[name].output
        assert f"as of {DATA_AS_OF} (from the data" in out, (name, out)
    from nextbest.core.settings import get_settings
    from nextbest.customers.features import snapshot_range
    from nextbest.decisions.catalog import load_catalog

    settings = get_settings(home=shifted.home)
    first, last = snapshot_range(settings.features_dir, load_catalog(settings.catalog).terms())
    assert (first, last) == (pd.Timestamp("2024-12-01", tz="UTC"), pd.Timestamp(DATA_AS_OF))
    summary = json.loads(next(shifted.home.parent.glob("scores/*.summary.json")).read_text())
    assert summary["as_of"] == pd.Timestamp(DATA_AS_OF).isoformat()
    assert _versions(shifted.home) == 1
    # the training rows saw the customers' events: spend in the windows before exposure
    with sqlite3.connect(shifted.home / "mlflow.db") as conn:
        tags = dict(conn.execute("select key, value from tags").fetchall())
    assert tags["lineage.time_min"].startswith("2024-12")
    assert tags["lineage.time_max"].startswith("2025-04")


def test_an_as_of_that_leaves_every_exposure_outside_the_snapshots_stops_training(
    shifted: Shifted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    for staged in ("contract", "unified"):
        shutil.copytree(shifted.home / staged, home / staged)
    monkeypatch.setenv("NEXTBEST_HOME", str(home))
    monkeypatch.setenv("NEXTBEST_AS_OF", "2026-11-01")  # the former fixed default
    built = _run("features", "build")
    assert built.exit_code == 0, built.output
    assert "as of 2026-11-01T00:00:00Z (set by NEXTBEST_AS_OF" in built.output
    trained = _run("train")
    assert trained.exit_code == 2, trained.output
    message = " ".join(trained.output.split())
    assert "fall outside the feature snapshots" in message
    assert "NEXTBEST_AS_OF (or --as-of) is set to 2026-11-01" in message
    assert "Nothing was trained or registered." in message
    assert "Traceback" not in trained.output
    assert _versions(home) == 0
