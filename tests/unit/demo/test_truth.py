"""The product's forget leaves the generator's truth alone; the demo's eraser, passed in as
``nextbest forget`` does, takes the person out of every truth table. On the hand-made
world of ``test_erasure`` (customer CA is truth person P1, CB is P2)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pandas as pd

from nextbest.customers.erasure import find_person
from nextbest.decisions.privacy import forget, read_audit
from nextbest.demo.truth import erase_person
from tests.unit.customers.test_erasure import _home


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _with_households(truth: Path) -> None:
    pd.DataFrame({"household_id": ["H1", "H2"], "person_id": ["P1", "P2"]}).to_parquet(
        truth / "households.parquet"
    )
    # A truth table without persons is not touched.
    pd.DataFrame({"arm": ["a", "b"]}).to_parquet(truth / "arms.parquet")


def test_the_products_forget_never_reads_the_truth(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    truth = settings.raw_dir / "truth"
    _with_households(truth)
    before = _hashes(truth)
    report = forget(settings, "ca@x.com", "email", "erasure request 1", "tester")
    assert report.removed["raw"] > 0 and "truth" not in report.removed
    assert _hashes(truth) == before


def test_the_demos_eraser_takes_the_person_out_of_every_truth_table(tmp_path: Path) -> None:
    settings = _home(tmp_path)
    truth = settings.raw_dir / "truth"
    _with_households(truth)
    arms = (truth / "arms.parquet").read_bytes()
    person = find_person(settings, "email", "ca@x.com")
    also = functools.partial(erase_person, truth)
    report = forget(settings, "ca@x.com", "email", "erasure request 1", "tester", also=also)
    # records: crm:K1 and web:D1; persons and households: one row each.
    assert report.removed["truth"] == 4
    assert read_audit(settings)[-1]["removed"]["truth"] == 4
    for name in ("records", "persons", "households"):
        assert list(pd.read_parquet(truth / f"{name}.parquet")["person_id"]) == ["P2"], name
    assert (truth / "arms.parquet").read_bytes() == arms
    # The person is gone: a second eraser run finds nothing and changes nothing.
    before = _hashes(truth)
    assert erase_person(truth, person) == {"truth": 0}
    assert _hashes(truth) == before
