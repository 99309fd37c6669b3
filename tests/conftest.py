"""Shared fixtures: one small real world (generated sources, resolved identities, Feast
stores, an MLflow registry with a champion) built once per test session, and a real
``bentoml serve`` process over it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devtools.process import Server, start_server, stop_server
from tests.params import SEED, SMALL_CUSTOMERS

if TYPE_CHECKING:
    from nextbest.customers.feature_schema import CatalogTerms

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

ROOT = Path(__file__).resolve().parent.parent


@cache
def demo_terms() -> CatalogTerms:
    """The default catalog's products, categories and actions: the demo world's columns."""
    from nextbest.decisions.catalog import load_catalog

    return load_catalog(ROOT / "config" / "catalog.yaml").terms()


@dataclass
class World:
    """A built demo world under ``home``."""

    home: Path
    settings: object
    train_result: object


def build_world(home: Path, customers: int = SMALL_CUSTOMERS, seed: int = SEED) -> World:
    """Generate, resolve, build features and train a champion under ``home``."""
    from nextbest.core.settings import get_settings
    from nextbest.customers.as_of import resolve_as_of
    from nextbest.customers.identity_io import resolve_generated
    from nextbest.demo.generate import generate
    from nextbest.pipeline import build_features
    from training.train import train
    from training.truth_evaluation import evaluate_against_truth

    options = {"customers": customers, "seed": seed, "learners": ["t_learner", "s_learner"]}
    generate(customers, seed, get_settings(home=home, **options).raw_dir)
    # the world's as-of time is its data's end (the generator's as_of), fixed in its settings
    settings = get_settings(home=home, **options)
    settings = get_settings(home=home, as_of=resolve_as_of(settings).time, **options)
    resolve_generated(settings.raw_dir, settings.unified_dir)
    build_features(settings)
    result = train(settings)
    evaluate_against_truth(settings, result)
    return World(home=home, settings=settings, train_result=result)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The session's small real world (built once; about a minute)."""
    home = tmp_path_factory.mktemp("world")
    old = os.environ.get("NEXTBEST_HOME")
    os.environ["NEXTBEST_HOME"] = str(home)
    try:
        yield build_world(home)
    finally:
        if old is None:
            os.environ.pop("NEXTBEST_HOME", None)
        else:
            os.environ["NEXTBEST_HOME"] = old


def start_service(home: Path, log_path: Path, timeout: float = 120.0) -> Server:
    """The product's service over ``home`` (see :func:`devtools.process.start_server`)."""
    return start_server("serving.service:NextBest", home, log_path, timeout=timeout)


@pytest.fixture(scope="session")
def service(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``bentoml serve`` over the session world."""
    log_path = tmp_path_factory.mktemp("service") / "serve.log"
    server = start_service(world.home, log_path)
    try:
        yield server
    finally:
        stop_server(server.proc)
