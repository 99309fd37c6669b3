"""The ``nextbest`` command line: thin shells around the pipeline steps.

Each command parses its options, reads the settings once and calls one typed
function from a package; no logic lives here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from nextbest.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, help="nextbest: next-best-action service.")
features_app = typer.Typer(no_args_is_help=True, help="Build and serve features with Feast.")
uplift_app = typer.Typer(no_args_is_help=True, help="Uplift models on your own experiment export.")
benchmark_app = typer.Typer(no_args_is_help=True, help="External benchmarks.")
app.add_typer(features_app, name="features")
app.add_typer(uplift_app, name="uplift")
app.add_typer(benchmark_app, name="benchmark")

console = Console(stderr=True)


def _settings(**overrides: object) -> Settings:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return get_settings(**{k: v for k, v in overrides.items() if v is not None})


# --- generate (customers.generate) -------------------------------------------------------
# --- resolve (customers.identity) ---------------------------------------------------------
# --- features (customers.features, feature_repo) ------------------------------------------
# --- train, uplift, benchmark (training) ---------------------------------------------------
# --- decide, serve, score (serving) -------------------------------------------------------
# --- report, evaluate-policy (measurement) --------------------------------------------------
# --- pipeline --------------------------------------------------------------------------------


def main() -> None:
    """Entry point for ``python -m nextbest``."""
    app()
