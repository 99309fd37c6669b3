"""Splink's training on small, clean data: an EM session whose estimates underflow is
left out, and resolution goes on from the model as it was before it."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from nextbest.customers.identity import ResolutionSettings, resolve_records
from nextbest.customers.quality import identity_quality
from nextbest.customers.sources.files import load_source_files
from nextbest.customers.sources.identity_records import CANONICAL_COLUMNS
from tests.params import EM_UNDERFLOW_SEED, THIRD_WORLD_PERSONS
from tests.worlds.retail_bank import write_retail_bank

pytestmark = pytest.mark.slow


def test_an_em_session_that_underflows_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # with this seed the EM session blocked on the date of birth drives an m probability
    # below 1e-300, which Splink refuses to store (a traceback before)
    world = write_retail_bank(tmp_path, persons=THIRD_WORLD_PERSONS, seed=EM_UNDERFLOW_SEED)
    records = load_source_files(world.sources)["identity_records"]
    with caplog.at_level(logging.WARNING, logger="nextbest.customers.linkage"):
        result = resolve_records(records[list(CANONICAL_COLUMNS)], ResolutionSettings(seed=42))
    assert any("left out" in r.getMessage() for r in caplog.records), "no session underflowed"
    quality = identity_quality(result.assignments, pd.read_csv(world.truth_dir / "records.csv"))
    assert quality["pairwise_precision"] >= 0.995, quality
