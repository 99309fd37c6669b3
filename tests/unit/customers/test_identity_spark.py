"""``resolve --engine spark``: Splink's Spark backend (local mode) gives DuckDB's clusters."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from customers.identity import ResolutionSettings, resolve_records

pytest.importorskip("pyspark")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")

PERSONS = 200


def _partition(result) -> set[frozenset[str]]:
    groups = result.assignments.groupby("customer_id")["record_id"]
    return {frozenset(g) for _, g in groups}


@pytest.mark.slow
def test_spark_engine_gives_the_duckdb_clusters_on_a_small_set(tmp_path: Path) -> None:
    from customers.sources import load_canonical_records
    from demo.generate import generate

    generate(PERSONS, 7, tmp_path)
    records = load_canonical_records(tmp_path)
    duck = resolve_records(records, ResolutionSettings(seed=7))
    spark = resolve_records(records, ResolutionSettings(seed=7, engine="spark"))
    assert duck.stats["edges_splink"] > 0  # the model took part, not only the rules
    assert _partition(spark) == _partition(duck)
    pd.testing.assert_frame_equal(
        spark.assignments[["record_id", "customer_id"]],
        duck.assignments[["record_id", "customer_id"]],
    )


def test_unknown_engine_is_a_clear_error() -> None:
    records = pd.DataFrame({"record_id": ["1"], "source": ["a"], "email": ["x@y"]})
    with pytest.raises(ValueError, match="engine must be one of"):
        resolve_records(records, ResolutionSettings(engine="flink"))


def test_cli_unknown_engine_is_one_clear_message(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from nextbest.cli import app

    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["resolve", "--engine", "flink"])
    assert result.exit_code == 2
    assert "--engine must be one of duckdb, spark" in result.output
    assert "Traceback" not in result.output
