"""The as-of time is the data's: the setting when given, else the midnight after the
latest event or exposure, read alike from the generator's exports and from a staged
contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from nextbest.core.errors import InputError
from nextbest.core.settings import get_settings
from nextbest.customers.as_of import resolve_as_of
from nextbest.customers.sources.files import load_source_files, stage_tables
from nextbest.demo.generate import generate
from tests.params import SEED

DEMO_SOURCES = Path(__file__).resolve().parents[3] / "nextbest" / "demo" / "sources.yaml"
#: A generated world that ends at an hour of a day in 2025, far from the demo's default.
END = datetime(2025, 3, 15, 13, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("as_of")
    generate(60, SEED, home / "raw", as_of=END)
    return home


def test_without_a_setting_the_as_of_is_the_midnight_after_the_latest_event(home: Path) -> None:
    as_of = resolve_as_of(get_settings(home=home))
    assert as_of.origin == "data"
    assert END - timedelta(days=7) < as_of.latest <= END
    assert as_of.time == pd.Timestamp(as_of.latest).normalize() + pd.Timedelta(days=1)
    # the latest time is one the exports hold, in the file the description names
    table, column = as_of.latest_in.split(".")
    held = pd.to_datetime(pd.read_parquet(home / "raw" / f"{table}.parquet")[column], utc=True)
    assert held.max() == as_of.latest
    assert "from the data" in as_of.describe() and "2025-03-1" in as_of.describe()


def test_the_setting_wins_and_a_time_without_zone_is_utc(home: Path) -> None:
    as_of = resolve_as_of(get_settings(home=home, as_of="2026-11-01"))
    assert (as_of.origin, as_of.time) == ("setting", datetime(2026, 11, 1, tzinfo=UTC))
    assert "NEXTBEST_AS_OF" in as_of.describe()


def test_the_staged_contract_gives_the_same_end_as_the_exports(home: Path, tmp_path: Path) -> None:
    stage = get_settings(home=tmp_path, sources=DEMO_SOURCES)
    stage_tables(load_source_files(DEMO_SOURCES, base_dir=home / "raw"), stage.contract_dir)
    from_stage = resolve_as_of(stage)
    from_exports = resolve_as_of(get_settings(home=home))
    assert (from_stage.time, from_stage.latest) == (from_exports.time, from_exports.latest)


def test_no_data_and_no_setting_is_one_message(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="NEXTBEST_AS_OF"):
        resolve_as_of(get_settings(home=tmp_path))
