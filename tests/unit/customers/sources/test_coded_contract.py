"""The demo generator's exports pass the same contract as any team's, and the contract
path builds the same feature tables as the demo's direct reader."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nextbest.core.settings import get_settings
from nextbest.customers.contract import TABLES, columns
from nextbest.customers.features import build_feature_tables
from nextbest.customers.identity import ResolutionSettings
from nextbest.customers.identity_io import resolve_generated
from nextbest.customers.sources.coded_contract import contract_source_data
from nextbest.customers.sources.files import load_source_files
from nextbest.decisions.catalog import load_catalog
from nextbest.demo.generate import DEFAULT_AS_OF, generate

DEMO_SOURCES = Path(__file__).resolve().parents[4] / "nextbest" / "demo" / "sources.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("demo")
    generate(250, 3, home / "raw", as_of=DEFAULT_AS_OF)
    resolve_generated(home / "raw", home / "unified", ResolutionSettings(use_splink=False))
    return home


def test_generator_output_passes_the_contract(demo: Path) -> None:
    tables = load_source_files(DEMO_SOURCES, base_dir=demo / "raw")
    assert set(tables) == set(TABLES) - {"complaints"}  # complaints ride on service cases
    for name, frame in tables.items():
        assert list(frame.columns) == list(columns(name))
    truth = pd.read_parquet(demo / "raw" / "truth" / "records.parquet")
    assert set(tables["identity_records"]["record_id"]) == set(truth["record_id"])


def test_contract_path_builds_the_demo_reader_s_feature_tables(demo: Path) -> None:
    tables = load_source_files(DEMO_SOURCES, base_dir=demo / "raw")
    settings = get_settings()
    salt = settings.identifier_salt
    sources = contract_source_data(tables, demo / "unified", salt=salt)
    args = (demo / "raw", demo / "unified")
    kw = {"months": 3, "terms": load_catalog(settings.catalog).terms(), "salt": salt}
    via_contract = build_feature_tables(*args, demo / "fc", DEFAULT_AS_OF, sources=sources, **kw)
    direct = build_feature_tables(*args, demo / "fd", DEFAULT_AS_OF, **kw)
    assert via_contract.keys() == direct.keys()
    for name in direct:
        pd.testing.assert_frame_equal(
            pd.read_parquet(via_contract[name]), pd.read_parquet(direct[name])
        )


@pytest.mark.parametrize("persons", [10, 60])
def test_a_tiny_generated_world_passes_the_contract(tmp_path: Path, persons: int) -> None:
    # The smallest worlds have no duplicate CRM record for a case to sit on.
    generate(persons, 3, tmp_path, as_of=DEFAULT_AS_OF)
    tables = load_source_files(DEMO_SOURCES, base_dir=tmp_path)
    assert set(tables) == set(TABLES) - {"complaints"}
    assert tables["identity_records"]["record_id"].is_unique
