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
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

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


@app.command("generate")
def generate_cmd(
    customers: Annotated[
        int | None, typer.Option("--customers", help="Persons to generate (default: settings).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed (default: settings).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: settings raw_dir).")
    ] = None,
) -> None:
    """Generate synthetic source-system exports (and their truth under truth/)."""
    from customers.generate import OUTPUT_FILES, generate

    settings = _settings(customers=customers, seed=seed)
    out_dir = out or settings.raw_dir
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"generating {settings.customers:,} persons", total=len(OUTPUT_FILES))
        summary = generate(
            settings.customers,
            settings.seed,
            out_dir,
            progress=lambda name: bar.update(task, advance=1, description=f"wrote {name}"),
        )
    table = Table("file", "rows", title=f"{summary.n_persons:,} persons -> {out_dir}")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


# --- resolve (customers.identity) ---------------------------------------------------------
# --- features (customers.features, feature_repo) ------------------------------------------


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@features_app.command("build")
def features_build() -> None:
    """Build feature tables from the unified record, apply the Feast repo and materialise."""
    from nextbest.pipeline import build_features

    settings = _settings()
    with _progress() as bar:
        task = bar.add_task("feature snapshots", total=None)
        out = build_features(settings, progress=lambda i, n: bar.update(task, completed=i, total=n))
    console.print(
        f"[green]features built[/]: {len(out['tables'])} tables, online store materialised"
    )


@features_app.command("apply")
def features_apply() -> None:
    """Register the Feast definitions in ``feature_repo/``."""
    from customers.feast_store import apply

    apply(_settings())
    console.print("[green]feast apply done[/]")


@features_app.command("materialize")
def features_materialize() -> None:
    """Load the latest feature values up to ``as_of`` into the online store."""
    from customers.feast_store import materialize

    settings = _settings()
    with console.status("materialising"):
        materialize(settings, end=settings.as_of)
    console.print("[green]materialised[/]")


@features_app.command("show")
def features_show(
    customer: Annotated[str, typer.Argument(help="Identifier value, e.g. a customer id or email.")],
    id_type: Annotated[
        str, typer.Option(help="customer_id|email|phone|crm_id|loyalty_id|device_id")
    ] = "customer_id",
) -> None:
    """Print one customer's unified record as the online store serves it."""
    from customers.normalise import identifier_key

    from customers.feast_store import feature_store, lookup_customer, online_features
    from customers.feature_schema import all_feature_names

    settings = _settings()
    store = feature_store(settings)
    cid = (
        customer
        if id_type == "customer_id"
        else lookup_customer(store, identifier_key(id_type, customer))
    )
    if cid is None:
        console.print(f"[red]no customer for that {id_type}[/]")
        raise typer.Exit(1)
    names = all_feature_names()
    row = online_features(store, [cid], settings.as_of.timestamp(), names)[0]
    table = Table("feature", "value", title=f"customer {cid}")
    for n, v in zip(names, row, strict=True):
        table.add_row(n, f"{v:g}")
    Console().print(table)


# --- train, uplift, benchmark (training) ---------------------------------------------------
# --- decide, serve, score (serving) -------------------------------------------------------
# --- report, evaluate-policy (measurement) --------------------------------------------------
# --- pipeline --------------------------------------------------------------------------------


@app.command("train")
def train_cmd() -> None:
    """Train, evaluate, log to MLflow, register, and gate promotion to ``champion``."""
    from training.train import train

    settings = _settings()
    with console.status("training (Feast training set, learners, MLflow)"):
        result = train(settings)
    console.print(
        f"[green]model v{result.model_version}[/] ({result.learner}) -> "
        f"[bold]{result.alias}[/]: {result.reason}"
    )


@app.command("pipeline")
def pipeline_cmd(
    customers: Annotated[int | None, typer.Option(help="Persons to generate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
) -> None:
    """Generate, resolve, build features, train and batch-score on embedded defaults."""
    from nextbest.pipeline import run_pipeline

    settings = _settings(customers=customers, seed=seed)
    steps = ["generate", "resolve", "features", "train", "score"]
    with _progress() as bar:
        task = bar.add_task("pipeline", total=len(steps))

        def on_step(name: str) -> None:
            bar.update(task, description=f"pipeline: {name}", completed=steps.index(name))

        run_pipeline(settings, on_step=on_step)
        bar.update(task, completed=len(steps), description="pipeline: done")
    console.print(f"[green]pipeline done[/] in {settings.root}")


def main() -> None:
    """Entry point for ``python -m nextbest``."""
    app()
