"""MLflow, the one module that calls it for training: tracking set-up, a run and what is
logged to it, the decision model logged and registered, loading by alias and the
promotion gate."""

from __future__ import annotations

import importlib
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import joblib
import numpy as np
import pandas as pd

from nextbest.core.settings import Settings
from nextbest.core.sqlite_tx import immediate_transaction
from nextbest.models.decision_model import pyfunc_class
from nextbest.models.ope_estimators import PairedGain

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


def _mlflow() -> Any:
    """MLflow, imported on first use with its telemetry off."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow  # lazy: seconds to import, needed only where a run or the registry is used

    return mlflow


def configure_mlflow(settings: Settings) -> Any:
    """Point MLflow at the configured tracking store and return the experiment id.

    The home's own SQLite store is first made to point at this home's artifacts
    (:func:`relocate_artifacts`), so a copied or moved home never reads or writes the
    artifacts of the home it was copied from.
    """
    mlflow = _mlflow()
    settings.root.mkdir(parents=True, exist_ok=True)
    relocate_artifacts(settings)
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


def _home_store(settings: Settings) -> Path | None:
    """The home's own SQLite tracking file, if that is the store and it exists."""
    if settings.mlflow_tracking_uri is not None:
        return None
    path = settings.root / "mlflow.db"
    return path if path.exists() else None


def relocate_artifacts(settings: Settings) -> int:
    """Rewrite the artifact locations recorded in the home's SQLite tracking store to this
    home; returns the number of values changed (0 when they already point here).

    MLflow records absolute artifact locations (the experiment's artifact location, every
    run's artifact URI, every logged model's and model version's location, and each
    ``MLmodel`` file its own) and has no API to move them. The home that wrote them is
    found from the experiment's artifact location (``<home>/mlartifacts``); every text
    value naming that home, as a ``file:`` URI or a path, is rewritten to this home in one
    transaction, which a second process repeats as a no-op. A store configured elsewhere
    (``mlflow_tracking_uri``) is left alone.
    """
    path = _home_store(settings)
    if path is None:
        return 0
    with immediate_transaction(path) as conn:
        row = conn.execute(
            "SELECT artifact_location FROM experiments WHERE name = ?", (settings.experiment,)
        ).fetchone()
        new_uri = settings.artifact_root.as_uri()
        if row is None or not row[0] or row[0] == new_uri or not row[0].startswith("file:"):
            return 0  # nothing to move; the empty transaction ends with the block
        old_root = Path(unquote(urlparse(row[0]).path)).parent
        # One pass over both spellings, so a new home inside the old one is not rewritten
        # twice.
        swap = {old_root.as_uri(): settings.root.as_uri(), str(old_root): str(settings.root)}
        pattern = re.compile("|".join(re.escape(k) for k in sorted(swap, key=len, reverse=True)))
        changed = 0
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (table,) in tables:
            columns = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            for col in (c[1] for c in columns if "CHAR" in c[2].upper() or "TEXT" in c[2].upper()):
                hits = conn.execute(
                    f'SELECT rowid, "{col}" FROM "{table}" WHERE instr("{col}", ?) > 0',
                    (str(old_root),),
                ).fetchall()
                for rowid, value in hits:
                    conn.execute(
                        f'UPDATE "{table}" SET "{col}" = ? WHERE rowid = ?',
                        (pattern.sub(lambda m: swap[m.group(0)], value), rowid),
                    )
                changed += len(hits)
        # Each logged model's MLmodel file names its own location too; rewritten before the
        # store's commit, so an interrupted move is redone by the next start.
        for mlmodel in settings.artifact_root.rglob("MLmodel"):
            text = mlmodel.read_text()
            if str(old_root) in text:
                tmp = mlmodel.with_name(".MLmodel.moving")
                tmp.write_text(pattern.sub(lambda m: swap[m.group(0)], text))
                os.replace(tmp, mlmodel)
    log.info(
        "MLflow store moved from %s to %s: %d values rewritten", old_root, settings.root, changed
    )
    return changed


def log_decision_model(model: Any, X_example: np.ndarray, tmp_dir: Path) -> Any:
    """Log ``model`` as one pyfunc with a signature and explicit requirements.

    The input example is one row of per-feature medians of ``X_example``, not a
    customer's row: MLflow keeps it with the model, and an erased customer must not stay
    behind in the registry (docs/privacy.md).
    """
    mlflow = _mlflow()
    from mlflow.models import infer_signature  # lazy: with mlflow

    tmp_dir.mkdir(parents=True, exist_ok=True)
    path = tmp_dir / "decision_model.pkl"
    joblib.dump(model, path)
    rows = np.asarray(X_example, dtype=np.float64)
    with warnings.catch_warnings():  # an all-NaN column's median is NaN, then 0
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(rows, axis=0, keepdims=True) if len(rows) else rows[:1]
    example = pd.DataFrame(np.nan_to_num(medians, nan=0.0), columns=model.feature_names)
    signature = infer_signature(example, model.predict_frame(example.to_numpy()))
    return mlflow.pyfunc.log_model(
        name="decision_model",
        python_model=pyfunc_class()(),
        artifacts={"decision_model": str(path)},
        signature=signature,
        input_example=example,
        pip_requirements=PIP_REQUIREMENTS,
        code_paths=[_package_dir("nextbest")],
    )


def _package_dir(name: str) -> str:
    return str(Path(importlib.import_module(name).__file__).resolve().parent)  # type: ignore[arg-type]


def load_model_by_alias(settings: Settings, alias: str = CHAMPION) -> tuple[Any, str]:
    """The :class:`~nextbest.models.decision_model.DecisionModel` behind ``alias`` and its version.

    Raises ``LookupError`` with a clear message when nothing holds the alias, or when
    the SQLite tracking store does not exist yet: a reader never creates one (two service
    workers starting in an empty home each ran MLflow's schema migration on the same new
    file and left it half-migrated).
    """
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException  # lazy: with mlflow

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
    gain: float | None = None
    gain_se: float | None = None


def promote(
    settings: Settings,
    version: str,
    new_value: float,
    champion_value_fn: Any,
) -> PromotionDecision:
    """Give ``version`` the alias ``champion`` only if it beats the current champion by
    more than the noise.

    ``champion_value_fn(model)`` scores the current champion on the *same* held-out data
    the new version was scored on. It returns a :class:`~nextbest.models.ope_estimators.PairedGain`
    (the new version's value minus the champion's, row by row, with its SE): the new
    version is promoted when the lower bound of the one-sided 95 % interval of that gain
    is above 0 (docs/measurement.md, "Promotion"). A plain number (the champion's value
    alone, no rows to pair) is compared as a point: the new value must exceed it.
    """
    client = _mlflow().MlflowClient()
    try:
        current, current_version = load_model_by_alias(settings, CHAMPION)
    except LookupError:
        current, current_version = None, None
    gain: float | None = None
    gain_se: float | None = None
    if current is None:
        alias, champ_value = CHAMPION, None
        reason = "first registered version: no champion to beat"
    else:
        try:
            compared = champion_value_fn(current)
        except (KeyError, ValueError) as exc:
            champ_value = None
            reason = (
                f"champion v{current_version} cannot be scored on the new held-out data ({exc})"
            )
            alias = CHAMPION
        else:
            if not isinstance(compared, PairedGain):
                champ = float(compared)
                compared = PairedGain(new_value, champ, new_value - champ, 0.0)
            champ_value, gain, gain_se = compared.incumbent, compared.gain, compared.se
            margin = (
                f"gain {compared.gain:.5f} ± {compared.se:.5f}, one-sided 95 % lower bound "
                f"{compared.lower:.5f}"
            )
            if compared.beats:
                alias = CHAMPION
                reason = (
                    f"policy value {new_value:.5f} beats champion v{current_version} "
                    f"({champ_value:.5f}) by more than the noise on the same held-out data "
                    f"({margin})"
                )
            else:
                alias = CHALLENGER
                reason = (
                    f"policy value {new_value:.5f} does not beat champion v{current_version} "
                    f"({champ_value:.5f}) by more than the noise on the same held-out data "
                    f"({margin}); kept as challenger"
                )
    client.set_registered_model_alias(settings.model_name, alias, version)
    client.set_model_version_tag(settings.model_name, version, "promotion_reason", reason)
    log.info("model %s v%s -> %s: %s", settings.model_name, version, alias, reason)
    return PromotionDecision(
        version, alias, new_value, champ_value, current_version, reason, gain, gain_se
    )


# --- runs ----------------------------------------------------------------------------------


@contextmanager
def tracked_run(settings: Settings, name: str) -> Iterator[str]:
    """An MLflow run named ``name`` in the settings' experiment, active inside the block;
    yields its id."""
    mlflow = _mlflow()
    configure_mlflow(settings)
    with mlflow.start_run(run_name=name) as run:
        yield run.info.run_id


@contextmanager
def reopened_run(settings: Settings, run_id: str) -> Iterator[str]:
    """The finished run ``run_id`` active again inside the block (to log what a later step
    found about it); yields its id."""
    mlflow = _mlflow()
    configure_mlflow(settings)
    with mlflow.start_run(run_id=run_id):
        yield run_id


def log_run(
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    dicts: Mapping[str, Any] | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
    texts: Mapping[str, str] | None = None,
) -> None:
    """Log to the active run: params, metrics, tags, and JSON dicts, tables and text files
    by their artifact path."""
    mlflow = _mlflow()
    if params:
        mlflow.log_params(dict(params))
    if metrics:
        mlflow.log_metrics(dict(metrics))
    if tags:
        mlflow.set_tags(dict(tags))
    for path, content in (dicts or {}).items():
        mlflow.log_dict(content, path)
    for path, table in (tables or {}).items():
        mlflow.log_table(table, path)
    for path, text in (texts or {}).items():
        mlflow.log_text(text, path)


def log_files(paths: Sequence[Path], artifact_dir: str) -> None:
    """Files as artifacts of the active run, under ``artifact_dir``."""
    mlflow = _mlflow()
    for path in paths:
        mlflow.log_artifact(str(path), artifact_path=artifact_dir)


def version_of_alias(settings: Settings, alias: str = CHAMPION) -> str:
    """The model version holding ``alias``; ``LookupError`` naming the store when none does."""
    mlflow = _mlflow()
    from mlflow.exceptions import MlflowException  # lazy: with mlflow

    configure_mlflow(settings)
    try:
        mv = mlflow.MlflowClient().get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as exc:
        raise LookupError(
            f"no model version of {settings.model_name!r} holds the alias {alias!r} in "
            f"{settings.tracking_uri}; run `nextbest train` first"
        ) from exc
    return str(mv.version)


def log_figure(figure: Any, path: str) -> None:
    """A matplotlib figure as an artifact of the active run."""
    _mlflow().log_figure(figure, path)


def register_logged_model(settings: Settings, model_uri: str, tags: Mapping[str, str]) -> str:
    """Register the logged model ``model_uri`` under the settings' model name with version
    ``tags``; returns the new version."""
    mlflow = _mlflow()
    mv = mlflow.register_model(model_uri, settings.model_name)
    client = mlflow.MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, mv.version, key, value)
    return str(mv.version)
