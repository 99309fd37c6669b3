"""The decision log's size check: refuse, naming what is short, before anything is fitted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.from_log import LogTooSmallError, check_log_size


def exposures(counts: dict[str, int], responders: int = 3) -> pd.DataFrame:
    arms = np.concatenate([[a] * n for a, n in counts.items()])
    responded = np.concatenate(
        [[1] * min(responders, n) + [0] * (n - min(responders, n)) for n in counts.values()]
    )
    return pd.DataFrame({"action_id": arms, "responded": responded})


def test_a_log_with_every_arm_passes():
    check_log_size(exposures({"no_action": 200, "a": 30, "b": 25}), ["a", "b"], 255)


@pytest.mark.parametrize(
    ("counts", "responders", "log_rows", "message"),
    [
        ({"no_action": 100, "a": 30, "b": 25}, 3, 155, "155 logged decisions, at least 200"),
        ({"no_action": 300, "a": 30, "b": 5}, 3, 335, "fewer than 20 exposures (b: 5)"),
        ({"no_action": 300, "a": 30}, 3, 330, "(b: 0)"),
        ({"no_action": 300, "a": 30, "b": 25}, 0, 355, "without a single response"),
    ],
)
def test_a_short_log_is_refused_naming_what_is_short(counts, responders, log_rows, message):
    with pytest.raises(LogTooSmallError) as err:
        check_log_size(exposures(counts, responders), ["a", "b"], log_rows)
    assert message in str(err.value)
    assert "--with-history" in str(err.value)
    assert "Nothing was trained or registered" in str(err.value)


def write_log(home, decisions: list[dict]) -> None:
    from nextbest.decisions.decision_log import DecisionLog

    DecisionLog(home / "decisions", fsync=False).append(decisions)


def decision(i: int, action: str, p: float, group: str = "decided") -> dict:
    return {
        "decision_id": f"d{i}",
        "decided_at": f"2026-10-0{1 + i % 5}T10:00:00+00:00",
        "customer_id": f"C{i:04d}",
        "channel": "email",
        "group": group,
        "chosen_action": action,
        "propensity": p,
        "ranked": [],
        "feature_snapshot_time": "2026-10-01T00:00:00+00:00",
    }


def attributed(settings, outcomes_path) -> pd.DataFrame:
    from datetime import timedelta

    from nextbest.measurement.attribution import attributed_log

    return attributed_log(settings.decision_log_dir, outcomes_path, timedelta(days=14))


def test_log_exposures_attribute_outcomes_and_clip_the_weights(tmp_path):
    from nextbest.core.settings import get_settings
    from training.from_log import log_exposures

    home = tmp_path / "home"
    logged = [
        decision(0, "no_action", 1.0, "holdout"),
        decision(1, "email_phone_upgrade", 0.95),
        decision(2, "email_service_tips", 0.004),  # explored: below the floor
        decision(3, "no_action", 0.02),
    ]
    write_log(home, logged)
    outcomes = pd.DataFrame(
        {
            "customer_id": ["C0001", "C0001", "C0002", "C0003"],
            "ts": pd.to_datetime(
                # two purchases within the window, one before the decision, one too late
                ["2026-10-03", "2026-10-05", "2026-10-02", "2026-11-20"],
                utc=True,
            ),
            "revenue": [10.0, 5.0, 7.0, 3.0],
        }
    )
    path = tmp_path / "outcomes.parquet"
    outcomes.to_parquet(path)
    settings = get_settings(home=home)
    got = log_exposures(settings, attributed(settings, path))
    df = got.entity_df.set_index("exposure_id")
    assert list(df.index) == ["log:d0", "log:d1", "log:d2", "log:d3"]
    assert df["action_id"].tolist() == [
        "no_action",
        "email_phone_upgrade",
        "email_service_tips",
        "no_action",
    ]
    assert df["responded"].tolist() == [0, 1, 0, 0]
    assert df["revenue"].tolist() == [0.0, 15.0, 0.0, 0.0]
    assert df["assignment_probability"].tolist() == [1.0, 0.95, 0.01, 0.02]
    assert got.clipped_share == 0.25 and got.propensity_floor == 0.01
    # the features row is the snapshot the decision saw, the request time its decision time
    assert (df["event_timestamp"] == pd.Timestamp("2026-10-01", tz="UTC")).all()
    assert df["request_ts"].iloc[1] == pd.Timestamp("2026-10-02T10:00:00Z").timestamp()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (decision(5, "email_phone_upgrade", 0.0), "propensity outside (0, 1]"),
        (decision(5, "email_phone_upgrade", 1.5), "propensity outside (0, 1]"),
        (decision(5, "not_in_catalog", 0.5), "not in the catalog"),
    ],
)
def test_bad_log_records_are_refused_by_name(tmp_path, bad, message):
    from nextbest.core.errors import InputError
    from nextbest.core.settings import get_settings
    from training.from_log import log_exposures

    home = tmp_path / "home"
    write_log(home, [decision(1, "email_phone_upgrade", 0.9), bad])
    path = tmp_path / "outcomes.parquet"
    pd.DataFrame(
        {"customer_id": ["C0001"], "ts": pd.to_datetime(["2026-10-03"], utc=True)}
    ).to_parquet(path)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings = get_settings(home=home)
        log_exposures(settings, attributed(settings, path))
