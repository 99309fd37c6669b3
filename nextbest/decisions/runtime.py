"""What every decision path builds once at start-up: the champion model, the validated
catalog and policy, the compiled plan and the stock levels.

The BentoML service, batch decisions and the in-process benchmark all start from
:func:`load_runtime`, so they decide with the same objects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from nextbest.core.settings import Settings
from nextbest.customers.feature_schema import CatalogTerms, all_feature_names
from nextbest.decisions.catalog import Catalog, ConfigError, load_catalog
from nextbest.decisions.policy import Policy, load_policy
from nextbest.decisions.rules import Plan, compile_plan
from nextbest.models.registry import load_model_by_alias, version_of_alias

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
    #: The catalog's products, categories and actions the feature columns are named after.
    terms: CatalogTerms
    #: The plan of a live customer-initiated contact (``mode: service``): service actions
    #: first, sales only as the policy's service_to_sales rule allows.
    service_plan: Plan | None = None


def _require_files(settings: Settings) -> None:
    for path, what in ((settings.catalog, "action catalog"), (settings.policy, "policy")):
        if not Path(path).exists():
            raise StartupError(f"{what} file not found: {path}")


def load_catalog_and_policy(settings: Settings) -> tuple[Catalog, Policy]:
    """The settings' catalog, and their policy checked against it (its channels, purposes
    and actions must be the catalog's).

    Training, the service and every decision path load them through here, so a policy
    naming something the catalog lacks fails each of them with the same
    :class:`ConfigError`; a missing file raises :class:`StartupError`.
    """
    _require_files(settings)
    catalog = load_catalog(settings.catalog)
    return catalog, load_policy(settings.policy, catalog.terms())


def preflight(settings: Settings, alias: str = "champion") -> None:
    """Check, cheaply, that a decision service can start: catalog and policy files, a Feast
    registry, and a model version holding ``alias``. Raises :class:`StartupError` saying what
    is missing and how to make it."""
    _require_files(settings)
    registry = settings.feast_dir / "registry.db"
    if not registry.exists():
        raise StartupError(
            f"Feast registry not found at {registry}; run `nextbest features build` first"
        )
    try:
        version_of_alias(settings, alias)
    except LookupError as exc:
        raise StartupError(str(exc)) from exc


STOCK_COLUMNS = ("product_id", "stock")


def load_stock(path: Path) -> dict[str, float]:
    """Units in stock per product from the stock table (docs/data-dictionary.md, "Stock").

    An absent file means no stock is known (the policy's ``missing_stock_is_out`` says
    what unknown stock means); a file that is there must be valid. Raises
    :class:`ConfigError` naming the file, the column and the offending product ids.
    """
    path = Path(path)
    if not path.exists():
        log.warning("stock file not found: %s; stock of every product unknown", path)
        return {}
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"{path}: cannot read the stock table: {exc}") from exc
    missing = [c for c in STOCK_COLUMNS if c not in table.column_names]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = table.select(list(STOCK_COLUMNS)).to_pandas()
    ids = frame["product_id"]
    if ids.isna().any():
        raise ConfigError(f"{path}: column 'product_id': {int(ids.isna().sum())} empty value(s)")
    ids = ids.astype(str)
    repeated = sorted(set(ids[ids.duplicated()]))
    if repeated:
        raise ConfigError(f"{path}: column 'product_id': repeated {', '.join(repeated)}")
    stock = pd.to_numeric(frame["stock"], errors="coerce").astype(float)
    bad = ids[stock.isna() | ~np.isfinite(stock) | (stock < 0)].tolist()
    if bad:
        raise ConfigError(
            f"{path}: column 'stock': not a finite number >= 0 for {', '.join(bad[:10])}"
        )
    return dict(zip(ids, stock, strict=True))


def load_runtime(settings: Settings, model: Any | None = None, alias: str = "champion") -> Runtime:
    """Load the model by alias (unless given), the catalog and policy, and compile the plan.

    Raises :class:`StartupError` naming what is missing (no champion, no catalog file, a
    catalog that does not fit the model).
    """
    catalog, policy = load_catalog_and_policy(settings)
    terms = catalog.terms()
    feature_names = all_feature_names(terms)
    catalog.validate_features(feature_names, source=str(settings.catalog))
    if model is None:
        try:
            model, version = load_model_by_alias(settings, alias)
        except LookupError as exc:
            raise StartupError(str(exc)) from exc
    else:
        version = str(getattr(model, "version", "unregistered"))
    try:
        plan = compile_plan(catalog, policy, feature_names, model)
        service_plan = compile_plan(catalog, policy, feature_names, model, mode="service")
    except ValueError as exc:
        raise StartupError(f"catalog/policy do not fit model {version}: {exc}") from exc
    stock = load_stock(settings.stock_path)
    log.info(
        "runtime ready: model %s, catalog %s, policy %s, %d actions",
        version,
        catalog.version,
        policy.version,
        len(catalog.ids),
    )
    return Runtime(
        settings, catalog, policy, model, version, plan, feature_names, stock, terms, service_plan
    )


def stock_vector(runtime: Runtime) -> np.ndarray:
    """Stock aligned with ``plan.stock_products`` (NaN where unknown)."""
    return np.array([runtime.stock.get(p, np.nan) for p in runtime.plan.stock_products])
