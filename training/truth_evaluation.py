"""Evaluation against the generator's ground truth (``raw/truth/``).

Only evaluation code reads the truth: the regret of a policy against the true best one is
computed here, never in training or serving. :func:`evaluate_against_truth` is the
evaluation step the pipeline and ``nextbest train`` run beside training: it logs the
regret to the training run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.core.settings import Settings
from nextbest.core.vocabulary import NO_ACTION
from nextbest.models.evaluation import evaluate_policies
from nextbest.models.registry import log_run, reopened_run
from training.train import TrainResult


def true_response(raw_dir: Path) -> pd.DataFrame:
    """The generator's ``truth/response`` table (``person_id``, then ``p_<arm>`` and
    ``value_<arm>`` per arm): each person's true response probability and value."""
    path = Path(raw_dir) / "truth" / "response.parquet"
    if not path.exists():
        raise FileNotFoundError(f"truth table {path} does not exist (run nextbest generate)")
    return pd.read_parquet(path)


def true_outcomes_for_exposures(
    raw_dir: Path, exposure_ids: pd.Series | Sequence[str], arms: Sequence[str]
) -> np.ndarray | None:
    """True response probability under control and each arm for the given exposures,
    ``[n, 1 + A]``; None when the data has no truth (a user's own data)."""
    truth_dir = raw_dir / "truth"
    resp_path, link_path = truth_dir / "response.parquet", truth_dir / "campaign_truth.parquet"
    if not (resp_path.exists() and link_path.exists()):
        return None
    link = pd.read_parquet(link_path, columns=["exposure_id", "person_id"])
    link["exposure_id"] = link["exposure_id"].astype(str)
    person = link.set_index("exposure_id")["person_id"].reindex(pd.Index(exposure_ids).astype(str))
    resp = true_response(raw_dir).set_index("person_id")
    cols = [f"p_{NO_ACTION}", *[f"p_{a}" for a in arms]]
    missing = [c for c in cols if c not in resp]
    if missing:
        raise KeyError(f"truth response table lacks columns {missing}")
    return resp.reindex(person.to_numpy())[cols].to_numpy(dtype=np.float64)


def truth_regret(settings: Settings, result: TrainResult) -> pd.DataFrame | None:
    """Each policy's true value and regret against the true best policy on the run's
    held-out rows (:func:`nextbest.models.evaluation.evaluate_policies` given the truth,
    with the policies training compared); None when the data has no truth."""
    h = result.held_out
    truth = true_outcomes_for_exposures(settings.raw_dir, h.exposure_ids, h.arms)
    if truth is None:
        return None
    table = evaluate_policies(
        h.treatment,
        h.y,
        h.propensity,
        h.arms,
        NO_ACTION,
        h.outcomes,
        truth=truth,
        seed=settings.seed,
    )
    return table[["policy", "detail", "true_value", "regret"]]


def evaluate_against_truth(settings: Settings, result: TrainResult) -> dict[str, float]:
    """The evaluation step beside training: with a generator's truth, each policy's regret
    logged to the training run (``regret_<policy>`` metrics and the table
    ``evaluation/policy_regret.json``) and returned; nothing without a truth."""
    table = truth_regret(settings, result)
    if table is None:
        return {}
    metrics = {
        f"regret_{row.policy}": float(row.regret)
        for row in table.itertuples()
        if pd.notna(row.regret)
    }
    with reopened_run(settings, result.run_id):
        log_run(metrics=metrics, tables={"evaluation/policy_regret.json": table})
    return metrics
