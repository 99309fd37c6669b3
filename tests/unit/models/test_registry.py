"""Reading the registry never creates it."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import get_settings
from models.registry import load_model_by_alias


def test_loading_a_champion_from_an_empty_home_names_the_missing_store_and_creates_none(
    tmp_path: Path,
) -> None:
    settings = get_settings(home=tmp_path)
    with pytest.raises(LookupError, match="MLflow registry not found") as err:
        load_model_by_alias(settings)
    assert str(tmp_path / "mlflow.db") in str(err.value)
    assert "'champion'" in str(err.value)
    assert not (tmp_path / "mlflow.db").exists()
