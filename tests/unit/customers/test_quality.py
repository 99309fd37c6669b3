"""Pairwise identity quality on a tiny example counted by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from customers.quality import identity_quality


def test_metrics_match_hand_counts() -> None:
    # Persons: P1 = {r1, r2, r3}, P2 = {r4, r5}, P3 = {r6}.
    truth = pd.DataFrame(
        {
            "record_id": ["r1", "r2", "r3", "r4", "r5", "r6"],
            "person_id": ["P1", "P1", "P1", "P2", "P2", "P3"],
        }
    )
    # Customers: A = {r1, r2}, B = {r3, r4, r5}, C = {r6}.
    assignments = pd.DataFrame(
        {
            "record_id": ["r1", "r2", "r3", "r4", "r5", "r6"],
            "customer_id": ["A", "A", "B", "B", "B", "C"],
        }
    )
    q = identity_quality(assignments, truth)
    # True pairs: P1 has 3, P2 has 1 -> 4. Predicted: A 1, B 3 -> 4.
    # Correct: (r1, r2) and (r4, r5) -> 2.
    assert q["true_pairs"] == 4 and q["predicted_pairs"] == 4 and q["true_positive_pairs"] == 2
    assert q["pairwise_precision"] == pytest.approx(2 / 4)
    assert q["pairwise_recall"] == pytest.approx(2 / 4)
    assert q["persons_split_share"] == pytest.approx(1 / 3)  # P1 over A and B
    assert q["customers_merged_share"] == pytest.approx(1 / 3)  # B holds P1 and P2
    assert q["resolution_rate"] == pytest.approx(5 / 6)  # all but r6
    excl = identity_quality(assignments, truth, exclude_record_ids=["r3"])
    assert excl["pairwise_precision"] == 1.0 and excl["pairwise_recall"] == 1.0


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="person_id"):
        identity_quality(
            pd.DataFrame({"record_id": ["a"], "customer_id": ["C"]}),
            pd.DataFrame({"record_id": ["a"]}),
        )
