"""The uplift benchmark runs end to end at a tiny size and records what it claims."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import uplift_bench
from tests.unit.training.test_selection import SMALL, RecordingSLearner

METHODS = {"ours", *uplift_bench.REFERENCES}


@pytest.mark.slow  # causalml and sklift fits: ~10 s on a loaded machine
def test_tiny_run_writes_every_figure(tmp_path: Path) -> None:
    builders = [
        lambda: uplift_bench.synthetic(3, 700, seed=0),  # observational, continuous
        lambda: uplift_bench.classification(150, seed=0),  # four arms, binary
    ]
    out = uplift_bench.run(builders, draws=8, results_dir=tmp_path, on_step=lambda s: None)
    saved = json.loads((tmp_path / "uplift.json").read_text())
    assert saved["machine"]["load_average"] and saved["library_versions"]["causalml"]
    assert saved["selection_rule"] == out["selection_rule"]
    for name, arms in (("synthetic_mode3", 1), ("uplift_classification", 3)):
        d = saved["datasets"][name]
        assert len(d["arms"]) == arms and set(d["methods"]) == METHODS
        for row in d["methods"].values():
            for arm in d["arms"]:
                assert np.isfinite(row[f"qini_{arm}"]) and row[f"qini_{arm}_se"] >= 0
                assert f"uplift_at_30_{arm}" in row
            assert row["ips_value_se"] > 0 and row["seconds"] >= 0
        assert d["ours"]["selected"] in {r["learner"] for r in d["ours"]["selection_table"]}
        assert {"qini_met_every_arm", "policy_value"} <= set(d["targets"])
    assert not saved["datasets"]["synthetic_mode3"]["randomised"]
    for d in saved["datasets"].values():
        assert d["verdict"].startswith("Qini per arm:")
        assert np.isfinite(d["shrinkage_check"]["test_ips_value"])


def test_test_rows_never_reach_our_fit() -> None:
    ds = uplift_bench.classification(150, seed=1)
    RecordingSLearner.fitted_on.clear()
    result = uplift_bench.evaluate(
        ds, draws=4, candidates={"s": RecordingSLearner(control="control", **SMALL)}
    )
    test_labels = set(ds.X.index[ds.test])
    fits = RecordingSLearner.fitted_on
    assert len(fits) == 5  # one per fold; the final model averages them (no refit)
    assert all(not test_labels & set(rows) for rows in fits)
    assert set().union(*(set(rows) for rows in fits)) == set(ds.X.index[ds.train])
    assert result["ours"]["final_model"] == "average of the winner's fold models"
    assert result["test_rows"] == len(test_labels)


def _split_figures(ours: float, s: float, t: float, value: float, arm: float) -> dict:
    methods = {
        "ours": {"qini_a": ours, "ips_value": value},
        "causalml S": {"qini_a": s, "ips_value": 0.50},
        "causalml T": {"qini_a": t, "ips_value": 0.40},
    }
    return {"methods": methods, "single_arms": {"control": 0.1, "a": arm}}


def test_repeated_targets_pair_each_split_against_the_best_mean() -> None:
    # T has the best mean Qini (0.30) though S wins split 0; the best arm (0.55) beats
    # every reference's mean value, so it is the policy bar.
    splits = [
        _split_figures(0.28, 0.35, 0.30, 0.56, 0.55),
        _split_figures(0.27, 0.20, 0.29, 0.52, 0.54),
        _split_figures(0.29, 0.21, 0.31, 0.55, 0.56),
    ]
    tg = uplift_bench.repeated_targets(splits, ["a"])
    q = tg["qini_a"]
    assert q["best_reference"] == "causalml T"
    assert q["gap"] == pytest.approx(-0.02)
    assert q["gap_se"] == pytest.approx(0.0)  # ours is 0.02 below T in every split
    assert q["best_reference_se"] == pytest.approx(0.01 / np.sqrt(3))
    assert not q["met"]  # 0.28 < 0.30 - 0.0058
    pv = tg["policy_value"]
    assert pv["bar"] == "everyone a" and pv["best_reference"] == "causalml S"
    assert pv["gap"] == pv["gap_vs_best_single_arm"] == pytest.approx((0.01 - 0.02 - 0.01) / 3)
    assert pv["gap_vs_best_reference"] == pytest.approx((0.06 + 0.02 + 0.05) / 3)
    assert not pv["met"] and pv["met_within_se"] == (pv["gap"] >= -pv["gap_se"])
    assert uplift_bench.repeated_verdict(tg).startswith("Over 3 splits, Qini per arm: a MISSED")


def test_resplit_keeps_rows_and_changes_the_split() -> None:
    ds = uplift_bench.classification(100, seed=0)
    again = uplift_bench.resplit(ds, 101)
    assert len(again.train) == len(ds.train) and len(again.test) == len(ds.test)
    assert set(again.train) | set(again.test) == set(range(len(ds.t)))
    assert not set(again.train) & set(again.test)
    assert set(again.test) != set(ds.test)
    assert again.X is ds.X and (again.y == ds.y).all()


@pytest.mark.slow  # ours and four references fitted on two splits
def test_repeated_splits_record_each_split_and_the_targets(tmp_path: Path) -> None:
    builders = [lambda: uplift_bench.classification(150, seed=0)]
    out = uplift_bench.run(
        builders,
        draws=4,
        results_dir=tmp_path,
        on_step=lambda s: None,
        splits=2,
        selection_value="dr",
    )
    rep = out["datasets"]["uplift_classification"]["repeated"]
    assert [r["split_seed"] for r in rep["per_split"]] == [None, uplift_bench.SPLIT_SEED_BASE + 1]
    first, second = rep["per_split"]
    assert first["methods"]["ours"]["ips_value"] == pytest.approx(
        out["datasets"]["uplift_classification"]["methods"]["ours"]["ips_value"]
    )
    assert set(second["methods"]) == METHODS and second["selected"]
    assert set(second["candidates_refit"]) == {"s_learner", "t_learner", "x_learner"}
    assert rep["targets"]["splits"] == 2 and rep["verdict"].startswith("Over 2 splits")
    saved = json.loads((tmp_path / "uplift.json").read_text())
    assert saved["splits"] == 2 and "repeated" in saved["datasets"]["uplift_classification"]
    assert saved["selection_value"] == "dr"
    table = saved["datasets"]["uplift_classification"]["ours"]["selection_table"]
    assert {r["estimator"] for r in table} == {"dr"}
