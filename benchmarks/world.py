"""A benchmark world: generated sources, resolved identities, Feast stores and a champion.

The same package steps as ``tests/conftest.py::build_world``; a world is built once per
home and reused (a ``.bench_world`` marker records its size and seed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


def world_settings(home: Path, customers: int, seed: int = 42) -> Any:
    """Settings of a world under ``home`` (the learners the tests use: fast to train)."""
    from nextbest.core.settings import get_settings

    return get_settings(
        home=home, customers=customers, seed=seed, learners=["t_learner", "s_learner"]
    )


def ensure_world(home: Path, customers: int, seed: int = 42) -> Any:
    """Build the world under ``home`` unless one of this size and seed is already there."""
    from nextbest.customers.identity_io import resolve_generated
    from nextbest.demo.generate import generate
    from nextbest.pipeline import build_features
    from training.train import train

    home = Path(home)
    marker = home / ".bench_world"
    settings = world_settings(home, customers, seed)
    want = {"customers": customers, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return settings
    built_by_tests = (home / "feast" / "online.db").exists() and (home / "mlflow.db").exists()
    if not built_by_tests:
        generate(customers, seed, settings.raw_dir, as_of=settings.as_of)
        resolve_generated(settings.raw_dir, settings.unified_dir)
        build_features(settings)
        train(settings)
    marker.write_text(json.dumps(want))
    return settings


def sample_requests(settings: Any, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` request bodies for random customers, half by customer id and half by email."""
    import numpy as np
    import pandas as pd

    from nextbest.customers.sources.identity_records import load_canonical_records

    ids = pd.read_parquet(settings.unified_dir / "identity.parquet")
    recs = load_canonical_records(settings.raw_dir)
    recs = recs.merge(ids[["record_id", "customer_id"]], on="record_id", how="inner")
    emails = recs.dropna(subset=["email"])["email"].drop_duplicates().tolist()
    cids = ids["customer_id"].drop_duplicates().tolist()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            customer = {"id": str(cids[rng.integers(len(cids))]), "id_type": "customer_id"}
        else:
            customer = {"id": str(emails[rng.integers(len(emails))]), "id_type": "email"}
        out.append({"customer": customer, "channel": "email", "k": 3})
    return out
