"""The customer-number rule (docs/identity.md): precision and recall at each evidence level.

Usage: ``python -m benchmarks.identity_crm``.

A second customer number (``crm_id``) is strong evidence of a second person; a name
change (first name and date of birth agree, the surname differs) outweighs it when at
least ``crm_name_change_evidence`` of phone, e-mail and address agree. This measures the
whole resolver (Splink model, guard and merge) at evidence 1, 2 (the default), 3 and 4
(4 of 3: no name change is ever merged, the rule before) on:

- **Generated worlds** of the sizes and seeds of ``tests/params.py`` (2,000 persons,
  seeds 7 and 1234; 20,000 persons, seed 42), as generated (they hold duplicate CRM
  accounts but no name change: any new merge there is a false one or a duplicate the old
  rule missed) and with name changes added: for 5 % of the persons with a CRM account a
  second account under a new customer number, the same first name and date of birth,
  another person's surname, the mobile kept with probability 0.8, the address with 0.6,
  a new e-mail address. ``name_change_joined`` is the share of those accounts that end
  in their person's customer.
- **FEBRL 1 and 2** with every record its own customer number: every merge crosses a
  number, so the rule alone decides what is joined; FEBRL has no phone or e-mail, so
  only the address can count, and its replaced surnames are the name changes.

Figures go to ``benchmarks/results/identity_crm.json`` with the load average.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import febrl
from benchmarks.common import write_result
from nextbest.customers.identity import ResolutionSettings, resolve_records

#: tests/params.py: SMALL_CUSTOMERS with SEED and SECOND_SEED, DEMO_CUSTOMERS with DEFAULT_SEED.
WORLDS: tuple[tuple[int, int], ...] = ((2_000, 7), (2_000, 1234), (20_000, 42))
EVIDENCE: tuple[int, ...] = (1, 2, 3, 4)
NAME_CHANGE_SHARE = 0.05
KEEP_PHONE, KEEP_ADDRESS = 0.8, 0.6


def _world(persons: int, seed: int, work: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from nextbest.customers.sources.identity_records import load_canonical_records
    from nextbest.demo.generate import generate

    raw = work / f"generated_{persons}_{seed}"
    generate(persons, seed, raw)
    truth = pd.read_parquet(raw / "truth" / "records.parquet")[["record_id", "person_id"]]
    return load_canonical_records(raw), truth


def add_name_changes(
    records: pd.DataFrame, truth: pd.DataFrame, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records and truth with a second, renamed CRM account for some persons (docstring)."""
    rng = np.random.default_rng(seed)
    crm = records[records["source"] == "crm"].merge(truth, on="record_id")
    first = crm.sort_values("record_id").drop_duplicates("person_id")
    chosen = first[rng.random(len(first)) < NAME_CHANGE_SHARE].reset_index(drop=True)
    n = len(chosen)
    donors = crm.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    movers = crm.sample(n=n, replace=True, random_state=seed + 1).reset_index(drop=True)
    new = chosen[list(records.columns)].copy()
    new["record_id"] = [f"crm:NC{i:07d}" for i in range(n)]
    new["crm_id"] = [f"NC{i:07d}" for i in range(n)]
    new["last_name"] = donors["last_name"].to_numpy()
    new["email"] = [f"renamed{i}@mail.test" for i in range(n)]
    new.loc[rng.random(n) >= KEEP_PHONE, "phone"] = None
    moved = rng.random(n) >= KEEP_ADDRESS
    for c in ("street", "city", "postcode"):
        new.loc[moved, c] = movers.loc[moved, c].to_numpy()
    for c in ("loyalty_id", "app_account_id", "device_id"):
        if c in new.columns:
            new[c] = None
    # A donor of the same surname would make no name change.
    same = new["last_name"].str.lower().to_numpy() == chosen["last_name"].str.lower().to_numpy()
    new, chosen = new[~same], chosen[~same]
    added = pd.DataFrame({"record_id": new["record_id"], "person_id": chosen["person_id"].values})
    return pd.concat([records, new], ignore_index=True), pd.concat([truth, added])


def _score(records: pd.DataFrame, truth: pd.DataFrame, settings: ResolutionSettings) -> dict:
    result = resolve_records(records, settings)
    m = result.assignments.merge(truth, on="record_id")
    q = febrl.pairwise_quality(m["customer_id"].to_numpy(), m["person_id"].to_numpy())
    out: dict = {k: round(v, 5) for k, v in q.items()}
    refused = result.refused_links
    out["refused_crm_id"] = int((refused["conflict_field"] == "crm_id").sum())
    renamed = m["record_id"].str.startswith("crm:NC")
    if renamed.any():
        # A renamed account is joined when its customer holds another record of its person.
        per = m.groupby(["customer_id", "person_id"])["record_id"].transform("size")
        out["name_change_accounts"] = int(renamed.sum())
        out["name_change_joined"] = round(float((per[renamed] > 1).mean()), 4)
    return out


def main() -> None:
    """Score every data set at every evidence level and save the figures."""
    load_start = [round(x, 2) for x in os.getloadavg()]
    base = ResolutionSettings()
    sets: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for persons, seed in WORLDS:
            records, truth = _world(persons, seed, Path(tmp))
            renamed = add_name_changes(records, truth, seed)
            for variant, (r, t) in (("as_generated", (records, truth)), ("name_changes", renamed)):
                key = f"generated_{persons}_seed{seed}_{variant}"
                sets[key] = {}
                for ev in EVIDENCE:
                    s = replace(base, seed=seed, crm_name_change_evidence=ev)
                    sets[key][str(ev)] = _score(r, t, s)
                    print(key, ev, sets[key][str(ev)], flush=True)
    for name in febrl.DATASETS:
        records, truth = febrl.load(name)
        records = records.assign(crm_id=records["record_id"])
        key = f"{name}_one_customer_number_per_record"
        sets[key] = {}
        for ev in EVIDENCE:
            sets[key][str(ev)] = _score(records, truth, replace(base, crm_name_change_evidence=ev))
            print(key, ev, sets[key][str(ev)], flush=True)
    path = write_result(
        "identity_crm",
        {
            "load_average_at_start": load_start,
            "what": __doc__.split("\n\n")[2].replace("\n", " "),
            "default_evidence": base.crm_name_change_evidence,
            "by_evidence": sets,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
