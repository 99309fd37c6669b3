import json

import numpy as np
import pandas as pd
import pytest

from nextbest.core.errors import InputError
from tests.params import SEED, UPLIFT_ROWS
from tests.unit.models.synthetic import ARMS, CONTROL, make_experiment
from training.generic import fit_uplift, predict_uplift


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("generic")
    df, _ = make_experiment(UPLIFT_ROWS, SEED)
    train_csv = tmp / "train.csv"
    df.to_csv(train_csv, index=False)
    summary = fit_uplift(
        train_csv,
        "arm",
        CONTROL,
        "bought",
        tmp / "model",
        value="revenue",
        features=["x1", "x2", "region"],
        seed=SEED,
    )
    return tmp, summary


@pytest.mark.slow
def test_round_trip_recovers_the_effects(fitted) -> None:
    tmp, summary = fitted
    assert summary.arms == ARMS and summary.control == CONTROL
    manifest = json.loads((tmp / "model" / "manifest.json").read_text())
    assert manifest["features"] == ["x1", "x2", "region"]
    assert manifest["categories"] == {"region": ["north", "south", "west"]}
    assert manifest["learner"] == summary.learner and manifest["outcome_kind"] == "binary"
    test, p = make_experiment(UPLIFT_ROWS // 2, SEED + 1)
    test_pq = tmp / "score.parquet"
    test.drop(columns=["arm", "bought", "revenue"]).to_parquet(test_pq)
    out = predict_uplift(tmp / "model", test_pq, tmp / "pred.csv", id_column="customer")
    expected = [
        "customer",
        *(f"pred_{a}" for a in [CONTROL, *ARMS]),
        *(f"uplift_{a}" for a in ARMS),
        *(f"value_{a}" for a in [CONTROL, *ARMS]),
    ]
    assert list(out.columns) == expected
    assert len(out) == len(test)
    written = pd.read_csv(tmp / "pred.csv")
    assert list(written.columns) == expected
    true_uplift = p[:, 1:] - p[:, [0]]
    for j, arm in enumerate(ARMS):
        assert np.corrcoef(out[f"uplift_{arm}"], true_uplift[:, j])[0, 1] > 0.3


@pytest.mark.slow
def test_predict_names_missing_features(fitted, tmp_path) -> None:
    tmp, _ = fitted
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"x1": [0.1], "region": ["north"]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="x2"):
        predict_uplift(tmp / "model", bad, tmp_path / "out.csv")


def test_fit_errors_are_clear(tmp_path) -> None:
    df, _ = make_experiment(300, SEED)
    path = tmp_path / "d.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match="outcome column 'sold'"):
        fit_uplift(path, "arm", CONTROL, "sold", tmp_path / "m")
    with pytest.raises(ValueError, match="control value 'nobody'"):
        fit_uplift(path, "arm", "nobody", "bought", tmp_path / "m")
    df.assign(p=0.0).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"propensity column 'p' must lie in \(0, 1\]"):
        fit_uplift(path, "arm", CONTROL, "bought", tmp_path / "m", propensity="p")
    df.assign(arm=CONTROL).to_csv(path, index=False)
    with pytest.raises(ValueError, match="single arm"):
        fit_uplift(path, "arm", CONTROL, "bought", tmp_path / "m")
    txt = tmp_path / "d.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        fit_uplift(txt, "arm", CONTROL, "bought", tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_careless_experiment_files_fail_before_anything_is_fitted(tmp_path) -> None:
    df, _ = make_experiment(300, SEED)
    path = tmp_path / "d.csv"
    careless = df.astype({"bought": object})
    careless.loc[[3, 7], "bought"] = "yes"
    careless.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"outcome column 'bought' is not numeric \(rows 5, 9\)"):
        fit_uplift(path, "arm", CONTROL, "bought", tmp_path / "m")
    careless = df.astype({"revenue": object})
    careless.loc[4, "revenue"] = "unknown"
    careless.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"value column 'revenue' is not numeric \(rows 6\)"):
        fit_uplift(path, "arm", CONTROL, "bought", tmp_path / "m", value="revenue")
    few = pd.concat([df[df["arm"] != ARMS[0]], df[df["arm"] == ARMS[0]].head(3)])
    few.to_csv(path, index=False)
    with pytest.raises(InputError, match=f"at least 5 rows per arm.*'{ARMS[0]}': 3"):
        fit_uplift(path, "arm", CONTROL, "bought", tmp_path / "m")
    assert not (tmp_path / "m").exists()
