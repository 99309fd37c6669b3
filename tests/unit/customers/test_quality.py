"""Pairwise identity quality on a tiny example counted by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from nextbest.customers.quality import identity_quality


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


def test_missed_pairs_are_counted_by_source_pair_and_cause() -> None:
    from nextbest.customers.identity import normalise_records, validate_records
    from nextbest.customers.quality import missed_pairs

    records = pd.DataFrame(
        {
            "record_id": ["crm:1", "lead:1", "loy:1", "app:1", "crm:2"],
            "source": ["crm", "email_lead", "loyalty", "app", "crm"],
            "email": ["a@x.test", "b@x.test", None, "A@X.test", "c@x.test"],
            "phone": ["07700900001", None, "07700900002", None, None],
            "first_name": ["Ann", "Ann", "Ann", None, "Bob"],
            "last_name": ["Hill", "Hill", None, None, "Day"],
        }
    )
    norm = normalise_records(validate_records(records))
    truth = pd.DataFrame(
        {"record_id": records["record_id"], "person_id": ["P1", "P1", "P1", "P1", "P2"]}
    )
    # crm:1 and app:1 were merged; lead:1 and loy:1 were left alone.
    assignments = pd.DataFrame(
        {"record_id": records["record_id"], "customer_id": ["A", "B", "C", "A", "D"]}
    )
    table = missed_pairs(assignments, truth, norm)
    got = {(r.source_pair, r.cause, r.names): r.missed_pairs for r in table.itertuples()}
    assert got == {
        ("crm-email_lead", "different_emails", "first+last"): 1,
        ("crm-loyalty", "different_phones", "first"): 1,
        ("email_lead-loyalty", "no_common_identifier", "first"): 1,
        ("app-email_lead", "different_emails", "none"): 1,
        ("app-loyalty", "no_common_identifier", "none"): 1,
    }
    # 6 true pairs in P1, 1 found (crm:1-app:1): the table holds the other 5.
    assert table["missed_pairs"].sum() == 5
