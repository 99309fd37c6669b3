"""Fixtures for the batch-scoring tests: a small real world (generated sources, resolved
identities, feature tables) and a real T-learner + value model trained on the exposures
joined point-in-time to the offline features. No MLflow: the model goes to
``load_runtime(model=...)``. Import the fixtures explicitly where they are used."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import demo_terms
from tests.params import SEED, SMALL_CUSTOMERS


@dataclass
class BatchWorld:
    """Generated data, features and a fitted decision model under ``home``."""

    home: Path
    settings: object
    model: object
    runtime: object
    as_of: datetime


def exposure_matrix(settings: object) -> tuple[pd.DataFrame, np.ndarray]:
    """Exposures and their features at exposure time, in ``all_feature_names()`` order.

    Feature rows are monthly snapshots, so the latest row at or before an exposure is the
    snapshot of its month: features as of that snapshot, request-time features at the
    exposure itself.
    """
    from nextbest.batch.io import add_request_time_features, offline_feature_matrix
    from nextbest.customers.feature_schema import all_feature_names
    from training.dataset import exposures_entity_df

    exp = exposures_entity_df(settings.raw_dir, settings.unified_dir)
    month = exp["event_timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M")
    snap = month.dt.to_timestamp().dt.tz_localize("UTC")
    names = all_feature_names(demo_terms())
    X = np.full((len(exp), len(names)), np.nan)
    for t, idx in exp.groupby(snap).groups.items():
        rows = exp.index.get_indexer(idx)
        ids = exp["customer_id"].to_numpy()[rows]
        uniq = list(dict.fromkeys(ids))
        _, Xs, _ = offline_feature_matrix(
            settings.features_dir, uniq, t.to_pydatetime(), demo_terms()
        )
        where = pd.Index(uniq).get_indexer(ids)
        X[rows] = Xs[where]
        # Request-time features at each exposure, as the Feast on-demand view computes them.
        for r, ts in zip(rows, exp["request_ts"].to_numpy()[rows], strict=True):
            add_request_time_features(X[r : r + 1], names, float(ts))
    return exp, X


def train_model(settings: object, seed: int = SEED) -> object:
    """A small real decision model: T-learner response + LightGBM value per arm."""
    from nextbest.core.vocabulary import NO_ACTION
    from nextbest.customers.feature_schema import all_feature_names, model_feature_names
    from nextbest.models.decision_model import DecisionModel, ValueModel
    from nextbest.models.learners import TLearner

    exp, X = exposure_matrix(settings)
    names = model_feature_names(demo_terms())
    pos = {n: i for i, n in enumerate(all_feature_names(demo_terms()))}
    Xm = X[:, [pos[n] for n in names]]
    t = exp["action_id"].to_numpy()
    response = TLearner(control=NO_ACTION, n_estimators=40, num_leaves=15, random_state=seed).fit(
        Xm, t, exp["responded"].to_numpy()
    )
    value = ValueModel(n_estimators=40, random_state=seed).fit(Xm, t, exp["revenue"].to_numpy())
    return DecisionModel(
        response=response,
        value=value,
        feature_names=names,
        learner_name="t_learner",
        version="batch-test-1",
    )


def build_batch_world(home: Path, customers: int = SMALL_CUSTOMERS, seed: int = SEED) -> BatchWorld:
    """Generate, resolve, build feature tables and fit the model under ``home``."""
    from nextbest.core.settings import get_settings
    from nextbest.customers.as_of import resolve_as_of
    from nextbest.customers.features import build_feature_tables
    from nextbest.customers.identity_io import resolve_generated
    from nextbest.decisions.runtime import load_runtime
    from nextbest.demo.generate import generate

    settings = get_settings(home=home, customers=customers, seed=seed, chunk_size=1_000)
    generate(customers, seed, settings.raw_dir)
    resolve_generated(settings.raw_dir, settings.unified_dir)
    as_of = resolve_as_of(settings).time
    build_feature_tables(
        settings.raw_dir,
        settings.unified_dir,
        settings.features_dir,
        as_of,
        months=settings.snapshot_months,
        terms=demo_terms(),
        salt=settings.identifier_salt,
    )
    model = train_model(settings, seed)
    runtime = load_runtime(settings, model=model)
    return BatchWorld(home, settings, model, runtime, as_of.astimezone(UTC))


@pytest.fixture(scope="session", name="batch_world")
def batch_world_fixture(tmp_path_factory: pytest.TempPathFactory) -> BatchWorld:
    """The batch tests' world, built once per session (a few seconds)."""
    return build_batch_world(tmp_path_factory.mktemp("batch_world"))
