"""The decision log is durable, append-only, multi-process safe and refuses personal data."""

from __future__ import annotations

import json
import multiprocessing as mp
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from nextbest.decisions.decision_log import (
    DecisionLog,
    PersonalDataError,
    check_customer_id,
    read_log,
)
from nextbest.decisions.engine import decide
from nextbest.decisions.rules import compile_plan
from tests.unit.decisions.conftest import NOW, ViewsModel, ctx, default_row, matrix


def records(catalog, policy, names, n=20, now=NOW):
    plan = compile_plan(catalog, policy, names, ViewsModel(catalog.ids))
    X = matrix(names, [default_row(names)] * n)
    return decide(X, [f"C{i:05d}" for i in range(n)], plan, ctx(now=now)).records()


def test_append_then_read(tmp_path, catalog, policy, names):
    log = DecisionLog(tmp_path)
    recs = records(catalog, policy, names)
    assert log.append(recs) == len(recs)
    assert log.append([]) == 0
    df = read_log(tmp_path)
    assert list(df["decision_id"]) == [r["decision_id"] for r in recs]
    assert list(df["chosen_action"]) == [r["chosen_action"] for r in recs]
    assert set(df["group"]) <= {"decided", "holdout"}
    assert (df["propensity"] > 0).all() and str(df["decided_at"].dt.tz) == "UTC"
    assert (df["policy_version"] == policy.version).all()
    assert (df["n_ranked"] == [len(r["ranked"]) for r in recs]).all()
    lines = log.path_for(NOW.date()).read_text().splitlines()
    assert all(json.loads(line)["customer_id"] for line in lines)


def test_log_written_with_the_retired_group_name_reads_as_decided(tmp_path, catalog, policy, names):
    """A log from before the rename holds ``"group": "treatment"``; its files are never
    rewritten, and both readers (analysis and measurement) see ``decided``."""
    from nextbest.measurement.attribution import read_decisions

    new, old = tmp_path / "new", tmp_path / "old"
    DecisionLog(new, fsync=False).append(records(catalog, policy, names, 200))
    old.mkdir()
    for path in new.glob("*.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert {r["group"] for r in lines} == {"decided", "holdout"}
        text = "".join(
            json.dumps({**r, "group": "treatment" if r["group"] == "decided" else r["group"]})
            + "\n"
            for r in lines
        )
        (old / path.name).write_text(text)
    assert '"treatment"' in next(old.glob("*.jsonl")).read_text()
    assert list(read_log(old)["group"]) == list(read_log(new)["group"])
    assert list(read_decisions(old)["group"]) == list(read_decisions(new)["group"])
    assert "treatment" not in set(read_decisions(old)["group"])


def test_since_until(tmp_path, catalog, policy, names):
    log = DecisionLog(tmp_path, fsync=False)
    log.append(records(catalog, policy, names, 5, NOW))
    log.append(records(catalog, policy, names, 7, NOW + timedelta(hours=2)))
    assert len(read_log(tmp_path)) == 12
    assert len(read_log(tmp_path, since=NOW + timedelta(hours=1))) == 7
    assert len(read_log(tmp_path, until=NOW + timedelta(hours=1))) == 5
    log.append(records(catalog, policy, names, 3, NOW + timedelta(days=3)))
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    assert len(read_log(tmp_path, since=NOW + timedelta(days=2))) == 3


@pytest.mark.parametrize(
    "bad", ["jane.doe@example.com", "+44 7700 900123", "07700900123", "(555) 123-4567"]
)
def test_raw_email_or_phone_never_lands_in_the_log(tmp_path, catalog, policy, names, bad):
    log = DecisionLog(tmp_path)
    recs = records(catalog, policy, names, 3)
    recs[1]["customer_id"] = bad
    with pytest.raises(PersonalDataError):
        log.append(recs)
    assert not any(bad in p.read_text() for p in Path(tmp_path).glob("*.jsonl"))
    with pytest.raises(PersonalDataError):
        check_customer_id(bad)
    plan = compile_plan(catalog, policy, names, ViewsModel(catalog.ids))
    with pytest.raises(PersonalDataError):
        decide(matrix(names, [default_row(names)]), [bad], plan, ctx()).records()


def test_email_elsewhere_in_a_record_is_refused(tmp_path, catalog, policy, names):
    recs = records(catalog, policy, names, 2)
    recs[0]["context"] = {"note": "send to a.b@shop.io"}
    with pytest.raises(PersonalDataError):
        DecisionLog(tmp_path).append(recs)
    assert read_log(tmp_path).empty


@pytest.mark.parametrize(
    "ok",
    [
        "C0000123",
        "C0123456789ab",  # the form identity resolution issues
        "cust_9f2a",
        "4d3c2b1a-0000-4000-8000-000000000000",
        "123456",  # six digits: below the seven a phone number needs
    ],
)
def test_pseudonymous_ids_pass(tmp_path, catalog, policy, names, ok):
    assert check_customer_id(ok) is None
    recs = records(catalog, policy, names, 2)
    for r in recs:
        r["customer_id"] = ok
    assert DecisionLog(tmp_path).append(recs) == 2
    assert read_log(tmp_path)["customer_id"].tolist() == [ok, ok]


def _writer(directory: str, tag: int, batches: int) -> None:
    log = DecisionLog(directory, fsync=False)
    pad = "x" * 5000  # larger than a pipe buffer, so interleaving would show
    for b in range(batches):
        log.append(
            [
                {
                    "decision_id": f"{tag}-{b}-{i}",
                    "customer_id": f"C{tag}",
                    "pad": pad,
                    "decided_at": NOW.isoformat(),
                }
                for i in range(10)
            ]
        )


def test_concurrent_processes_do_not_interleave(tmp_path):
    procs = [
        mp.get_context("fork").Process(target=_writer, args=(str(tmp_path), t, 30))
        for t in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = [json.loads(x) for f in tmp_path.glob("*.jsonl") for x in f.read_text().splitlines()]
    assert len(lines) == 2 * 30 * 10
    assert len({r["decision_id"] for r in lines}) == len(lines)
    assert np.all([len(r["pad"]) == 5000 for r in lines])
