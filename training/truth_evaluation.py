"""Evaluation against the generator's ground truth (``raw/truth/``).

Only evaluation code reads the truth: the regret of a policy against the true best one is
computed here, never in training or serving.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from nextbest.core.vocabulary import NO_ACTION


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
