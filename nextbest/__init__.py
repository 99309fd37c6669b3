"""nextbest: the steps a user scripts, from one settings object.

``import nextbest`` loads nothing but this file: each name below is imported from its
module on first use (pandas, Feast, MLflow and LightGBM stay unloaded until a step needs
them). The CLI and the service import the modules directly.

    import nextbest

    settings = nextbest.get_settings(home="var")  # NEXTBEST_* variables, then these
    nextbest.resolve(settings)  # identity resolution of the exports under raw/
    nextbest.build_features(settings)  # feature tables, feast apply, materialise
    nextbest.train(settings)  # fit, evaluate, register; promote when better
    runtime = nextbest.load_runtime(settings)  # champion, catalog, policy, rule plan
    nextbest.decide_customers(settings, "email", None, settings.root / "email.parquet")

``decide`` is the one decision engine over feature arrays (``runtime.plan`` and a
``DecisionContext``); ``decide_customers`` runs it for every customer (``nextbest decide-batch``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nextbest.batch.run import decide_customers
    from nextbest.core.settings import Settings, get_settings
    from nextbest.decisions.engine import decide
    from nextbest.decisions.outcome import DecisionContext
    from nextbest.decisions.runtime import load_runtime
    from nextbest.pipeline import build_features, ingest, resolve, run_pipeline
    from training.train import train

#: Each public name and the module that defines it.
_SOURCES = {
    "Settings": "nextbest.core.settings",
    "get_settings": "nextbest.core.settings",
    "ingest": "nextbest.pipeline",
    "resolve": "nextbest.pipeline",
    "build_features": "nextbest.pipeline",
    "train": "training.train",
    "load_runtime": "nextbest.decisions.runtime",
    "DecisionContext": "nextbest.decisions.outcome",
    "decide": "nextbest.decisions.engine",
    "decide_customers": "nextbest.batch.run",
    "run_pipeline": "nextbest.pipeline",
}

__all__ = [
    "Settings",
    "get_settings",
    "ingest",
    "resolve",
    "build_features",
    "train",
    "load_runtime",
    "DecisionContext",
    "decide",
    "decide_customers",
    "run_pipeline",
]


def __getattr__(name: str) -> Any:
    """The public ``name``, imported from its module on first use and kept."""
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
