"""MLflow: tracking set-up, logging the decision model, registry and the promotion gate."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Explicit requirements: inferring them makes every log_model slow (DESIGN.md).
PIP_REQUIREMENTS = [
    "mlflow==3.17.*",
    "lightgbm==4.7.*",
    "scikit-learn==1.9.*",
    "pandas>=2.3,<3",
    "numpy>=1.26,<3",
    "joblib",
]


def configure_mlflow(settings: Settings) -> Any:
    """Point MLflow at the configured tracking store and return the experiment id."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    settings.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    exp = mlflow.get_experiment_by_name(settings.experiment)
    if exp is None:
        location = None
        if settings.tracking_uri.startswith("sqlite:"):
            settings.artifact_root.mkdir(parents=True, exist_ok=True)
            location = settings.artifact_root.as_uri()
        exp_id = mlflow.create_experiment(settings.experiment, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def log_decision_model(model: Any, X_example: np.ndarray, tmp_dir: Path) -> Any:
    """Log ``model`` as one pyfunc with a signature and explicit requirements."""
    import joblib
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from models.decision_model import pyfunc_class

    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / "decision_model.pkl"
    joblib.dump(model, path)
    example = pd.DataFrame(X_example[:5], columns=model.feature_names)
    signature = infer_signature(example, model.predict_frame(X_example[:5]))
    return mlflow.pyfunc.log_model(
        name="decision_model",
        python_model=pyfunc_class()(),
        artifacts={"decision_model": str(path)},
        signature=signature,
        input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
        code_paths=[str(Path(__file__).resolve().parent), _package_dir("customers")],
    )


def _package_dir(name: str) -> str:
    import importlib

    return str(Path(importlib.import_module(name).__file__).resolve().parent)  # type: ignore[arg-type]


def load_model_by_alias(settings: Settings, alias: str = CHAMPION) -> tuple[Any, str]:
    """The :class:`~models.decision_model.DecisionModel` behind ``alias`` and its version.

    Raises ``LookupError`` with a clear message when nothing holds the alias, or when
    the SQLite tracking store does not exist yet: a reader never creates one (two service
    workers starting in an empty home each ran MLflow's schema migration on the same new
    file and left it half-migrated).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        raise LookupError(
            f"MLflow registry not found: {uri.removeprefix('sqlite:///')} (no model holds "
            f"the alias {alias!r}); run `nextbest train` first"
        )
    configure_mlflow(settings)
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as exc:
        raise LookupError(
            f"no model version of {settings.model_name!r} holds the alias {alias!r} in "
            f"{settings.tracking_uri}; run `nextbest train` first"
        ) from exc
    pyfunc = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@{alias}")
    model = pyfunc.unwrap_python_model().unwrap()
    model.version = f"{settings.model_name}/{mv.version}"
    return model, str(mv.version)


@dataclass
class PromotionDecision:
    """What the gate decided for a new model version, and why."""

    version: str
    alias: str
    new_value: float
    champion_value: float | None
    champion_version: str | None
    reason: str


def promote(
    settings: Settings,
    version: str,
    new_value: float,
    champion_value_fn: Any,
) -> PromotionDecision:
    """Give ``version`` the alias ``champion`` only if it beats the current champion.

    ``champion_value_fn(model)`` scores the current champion on the *same* held-out data
    the new version was scored on; a tie keeps the incumbent.
    """
    import mlflow

    client = mlflow.MlflowClient()
    try:
        current, current_version = load_model_by_alias(settings, CHAMPION)
    except LookupError:
        current, current_version = None, None
    if current is None:
        alias, champ_value = CHAMPION, None
        reason = "first registered version: no champion to beat"
    else:
        try:
            champ_value = float(champion_value_fn(current))
        except (KeyError, ValueError) as exc:
            champ_value = None
            reason = (
                f"champion v{current_version} cannot be scored on the new held-out data ({exc})"
            )
            alias = CHAMPION
        else:
            if new_value > champ_value:
                alias = CHAMPION
                reason = (
                    f"policy value {new_value:.5f} beats champion v{current_version} "
                    f"({champ_value:.5f}) on the same held-out data"
                )
            else:
                alias = CHALLENGER
                reason = (
                    f"policy value {new_value:.5f} does not beat champion v{current_version} "
                    f"({champ_value:.5f}) on the same held-out data; kept as challenger"
                )
    client.set_registered_model_alias(settings.model_name, alias, version)
    client.set_model_version_tag(settings.model_name, version, "promotion_reason", reason)
    log.info("model %s v%s -> %s: %s", settings.model_name, version, alias, reason)
    return PromotionDecision(version, alias, new_value, champ_value, current_version, reason)
