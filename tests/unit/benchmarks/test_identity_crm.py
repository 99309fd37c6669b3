"""The customer-number benchmark's name changes, and the rule on them without Splink."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchmarks.identity_crm import add_name_changes
from nextbest.customers.identity import ResolutionSettings, normalise_records, resolve_records
from tests.params import SEED

PERSONS = 400


def test_renamed_accounts_join_their_person_at_the_default_evidence_only(tmp_path: Path) -> None:
    from nextbest.customers.sources.identity_records import load_canonical_records
    from nextbest.demo.generate import generate

    generate(PERSONS, SEED, tmp_path)
    records = load_canonical_records(tmp_path)
    truth = pd.read_parquet(tmp_path / "truth" / "records.parquet")[["record_id", "person_id"]]
    renamed, renamed_truth = add_name_changes(records, truth, SEED)

    new = renamed[renamed["record_id"].str.startswith("crm:NC")]
    assert len(new) > 0 and len(renamed) == len(records) + len(new)
    assert new["crm_id"].is_unique and not new["crm_id"].isin(records["crm_id"]).any()
    person = renamed_truth.set_index("record_id")["person_id"]
    # Each renamed account keeps its person's first name and date of birth, not the surname.
    norm = normalise_records(renamed).set_index("record_id")
    crm = norm[norm["source"] == "crm"].assign(person=lambda d: person[d.index].to_numpy())
    old = crm[~crm.index.str.startswith("crm:NC")].groupby("person").first()
    for rid, row in norm.loc[new["record_id"]].iterrows():
        first = old.loc[person[rid]]
        assert row["first_name"] == first["first_name"]
        assert row["date_of_birth"] == first["date_of_birth"]
        assert row["last_name"] != first["last_name"]

    def joined(evidence: int) -> pd.Series:
        settings = replace(ResolutionSettings(use_splink=False), crm_name_change_evidence=evidence)
        customer = resolve_records(renamed, settings).assignments.set_index("record_id")
        customer = customer["customer_id"]
        others = customer[~customer.index.str.startswith("crm:NC")]
        by_person = others.groupby(person[others.index].to_numpy()).agg(set)
        return pd.Series(
            {rid: customer[rid] in by_person.get(person[rid], set()) for rid in new["record_id"]}
        )

    at_default, at_four = joined(ResolutionSettings().crm_name_change_evidence), joined(4)
    assert not at_four.any()
    assert at_default.any()
