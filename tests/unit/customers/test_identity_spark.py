"""``resolve --engine spark``: Splink's Spark backend (local mode) gives DuckDB's clusters,
and the ``spark_master`` setting reaches every Spark session the product starts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nextbest.customers.identity import ResolutionSettings, resolve_records

pytest.importorskip("pyspark")
pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java")

PERSONS = 200


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


def _partition(assignments: pd.DataFrame) -> set[frozenset[str]]:
    groups = assignments.groupby("customer_id")["record_id"]
    return {frozenset(g) for _, g in groups}


def _stop_active_session() -> None:
    """Stop this thread's Spark session: ``getOrCreate`` would return it, whatever master
    a test asks for."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


_CLI = """
from pyspark.sql import SparkSession
from typer.testing import CliRunner
from nextbest.cli import app
done = CliRunner().invoke(app, ["resolve", "--sources", "{sources}", "--engine", "spark"])
print(done.output)
assert done.exit_code == 0, done.output
print("master=" + SparkSession.getActiveSession().sparkContext.master)
"""


@pytest.mark.slow
def test_resolve_sources_on_spark_gives_the_duckdb_customers_at_the_set_master(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from nextbest.batch.spark import spark_session
    from nextbest.core.settings import PROJECT_ROOT, get_settings
    from nextbest.demo.generate import generate
    from nextbest.pipeline import identity_records

    raw = tmp_path / "exports"
    generate(PERSONS, 7, raw)
    spec = yaml.safe_load((PROJECT_ROOT / "nextbest" / "demo" / "sources.yaml").read_text())
    spec["tables"] = {"identity_records": spec["tables"]["identity_records"]}
    sources = raw / "sources.yaml"
    sources.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NEXTBEST_SEED", "7")
    monkeypatch.setenv("NEXTBEST_SPARK_MASTER", "local[1]")
    _stop_active_session()
    try:
        # In a process of its own, as from a shell: a JVM another test started without
        # Splink's jar cannot load the jar's functions later.
        done = subprocess.run(
            [sys.executable, "-c", _CLI.format(sources=str(sources))],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=PROJECT_ROOT,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        # Splink ran on a Spark session, and on the master the setting named.
        assert done.stdout.strip().splitlines()[-1] == "master=local[1]"
        settings = get_settings(sources=sources)
        got = pd.read_parquet(settings.unified_dir / "identity.parquet")
        duck = resolve_records(identity_records(settings), ResolutionSettings(seed=7))
        assert duck.stats["edges_splink"] > 0  # the model took part, not only the rules
        # The same customers (the home's stable ids name them; compare the groupings).
        assert got["record_id"].tolist() == duck.assignments["record_id"].tolist()
        assert _partition(got) == _partition(duck.assignments)

        # The batch job's session takes the same setting.
        batch = spark_session(get_settings())
        assert batch.sparkContext.master == "local[1]"
    finally:
        _stop_active_session()
