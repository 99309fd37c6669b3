"""What every decision path builds once at start-up: the champion model, the validated
catalog and policy, the compiled plan and the stock levels.

The BentoML service, batch scoring and the in-process benchmark all start from
:func:`load_runtime`, so they decide with the same objects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.settings import Settings
from customers.feature_schema import all_feature_names
from decisions.catalog import Catalog, load_catalog
from decisions.policy import Policy, load_policy
from decisions.rules import Plan, compile_plan

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The decision runtime cannot start; the message says what is missing."""


@dataclass
class Runtime:
    """Objects a decision path needs, built once."""

    settings: Settings
    catalog: Catalog
    policy: Policy
    model: Any
    model_version: str
    plan: Plan
    feature_names: list[str]
    stock: dict[str, float]


def preflight(settings: Settings, alias: str = "champion") -> None:
    """Check, cheaply, that a decision service can start: catalog and policy files, a Feast
    registry, and a model version holding ``alias``. Raises :class:`StartupError` saying what
    is missing and how to make it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from models.registry import configure_mlflow

    for path, what in ((settings.catalog, "action catalog"), (settings.policy, "policy")):
        if not Path(path).exists():
            raise StartupError(f"{what} file not found: {path}")
    registry = settings.feast_dir / "registry.db"
    if not registry.exists():
        raise StartupError(
            f"Feast registry not found at {registry}; run `nextbest features build` first"
        )
    configure_mlflow(settings)
    try:
        mlflow.MlflowClient().get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as exc:
        raise StartupError(
            f"no model version of {settings.model_name!r} holds the alias {alias!r} in "
            f"{settings.tracking_uri}; run `nextbest train` first"
        ) from exc


def load_stock(raw_dir: Path) -> dict[str, float]:
    """Units in stock per product from the product catalogue export (empty if absent)."""
    path = raw_dir / "products.parquet"
    if not path.exists():
        return {}
    products = pd.read_parquet(path, columns=["product_id", "stock"])
    return dict(
        zip(products["product_id"].astype(str), products["stock"].astype(float), strict=True)
    )


def load_runtime(settings: Settings, model: Any | None = None, alias: str = "champion") -> Runtime:
    """Load the model by alias (unless given), the catalog and policy, and compile the plan.

    Raises :class:`StartupError` naming what is missing (no champion, no catalog file, a
    catalog that does not fit the model).
    """
    from models.registry import load_model_by_alias

    for path, what in ((settings.catalog, "action catalog"), (settings.policy, "policy")):
        if not Path(path).exists():
            raise StartupError(f"{what} file not found: {path}")
    feature_names = all_feature_names()
    catalog = load_catalog(settings.catalog, feature_names=feature_names)
    policy = load_policy(settings.policy, action_ids=catalog.ids)
    if model is None:
        try:
            model, version = load_model_by_alias(settings, alias)
        except LookupError as exc:
            raise StartupError(str(exc)) from exc
    else:
        version = str(getattr(model, "version", "unregistered"))
    try:
        plan = compile_plan(catalog, policy, feature_names, model)
    except ValueError as exc:
        raise StartupError(f"catalog/policy do not fit model {version}: {exc}") from exc
    stock = load_stock(settings.raw_dir)
    log.info(
        "runtime ready: model %s, catalog %s, policy %s, %d actions",
        version,
        catalog.version,
        policy.version,
        len(catalog.ids),
    )
    return Runtime(settings, catalog, policy, model, version, plan, feature_names, stock)


def stock_vector(runtime: Runtime) -> np.ndarray:
    """Stock aligned with ``plan.stock_products`` (NaN where unknown)."""
    return np.array([runtime.stock.get(p, np.nan) for p in runtime.plan.stock_products])
