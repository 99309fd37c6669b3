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
