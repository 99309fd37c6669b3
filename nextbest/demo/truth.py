"""Erasure of a person from the generator's ``truth/`` tables.

The product's erasure (:mod:`nextbest.decisions.privacy`) never reads the truth: it is synthetic
ground truth for evaluation that only a generated home has, and its folder is marked as
erased by its owner (:func:`mark_own_eraser`). The generator knows its
format, so it erases it here: ``truth/records`` maps the person's record ids to their
``person_id``, and every truth table names persons by that column. ``nextbest forget``
passes :func:`erase_person` to the product's ``forget`` when the home has a truth folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from nextbest.customers.erasure import OWN_ERASER, erase_tables

if TYPE_CHECKING:
    from nextbest.customers.erasure import Person

#: The truth table that maps each record id to its person.
RECORDS = "records.parquet"


def mark_own_eraser(truth_dir: Path) -> None:
    """Mark ``truth_dir`` as erased by :func:`erase_person`, so the product's forget, which
    walks the home, leaves it unread (:data:`nextbest.customers.erasure.OWN_ERASER`)."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    (truth_dir / OWN_ERASER).write_text("nextbest.demo.truth.erase_person\n")


def erase_person(truth_dir: Path, person: Person) -> dict[str, int]:
    """Remove every row of ``person`` (the persons of their record ids) from each truth
    table under ``truth_dir`` (each file rewritten atomically, synced); returns
    ``{"truth": rows removed}``.

    ``records`` goes last: until it is rewritten the person ids can be found again, so a
    run that fails midway can be repeated.
    """
    records = truth_dir / RECORDS
    if not records.exists():
        return {"truth": 0}
    ids = pd.read_parquet(records, columns=["record_id", "person_id"])
    persons = set(ids.loc[ids["record_id"].isin(person.record_ids), "person_id"].dropna())
    plan: dict[Path, np.ndarray] = {}
    if persons:
        tables = sorted(truth_dir.glob("*.parquet"), key=lambda p: (p.name == RECORDS, p.name))
        for path in tables:
            if "person_id" not in pq.read_schema(path).names:
                continue
            mask = pd.read_parquet(path, columns=["person_id"])["person_id"].isin(persons)
            if mask.any():
                plan[path] = mask.to_numpy()
    return {"truth": sum(erase_tables(plan).values())}
