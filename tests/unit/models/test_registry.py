"""Reading the registry never creates it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextbest.core.settings import get_settings
from nextbest.models.registry import load_model_by_alias


def test_loading_a_champion_from_an_empty_home_names_the_missing_store_and_creates_none(
    tmp_path: Path,
) -> None:
    settings = get_settings(home=tmp_path)
    with pytest.raises(LookupError, match="MLflow registry not found") as err:
        load_model_by_alias(settings)
    assert str(tmp_path / "mlflow.db") in str(err.value)
    assert "'champion'" in str(err.value)
    assert not (tmp_path / "mlflow.db").exists()


def test_a_copied_homes_mlflow_store_names_only_the_copy(tmp_path: Path) -> None:
    import shutil

    import mlflow

    from nextbest.models.registry import configure_mlflow

    original = get_settings(home=tmp_path / "original")
    configure_mlflow(original)
    with mlflow.start_run():
        mlflow.log_dict({"a": 1}, "a.json")
    shutil.copytree(original.root, tmp_path / "copy")
    before = {p: p.read_bytes() for p in original.root.rglob("*") if p.is_file()}
    copy = get_settings(home=tmp_path / "copy")
    configure_mlflow(copy)
    (run,) = mlflow.search_runs(output_format="list")
    assert run.info.artifact_uri.startswith(copy.artifact_root.as_uri())
    assert mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/a.json") == {"a": 1}
    assert str(original.root).encode() not in (copy.root / "mlflow.db").read_bytes()
    assert {p: p.read_bytes() for p in original.root.rglob("*") if p.is_file()} == before
