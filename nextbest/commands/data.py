"""`nextbest generate`, `resolve` and `ingest`: the data in (demo exports or yours)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nextbest.commands.common import SourcesOption, console, load_settings, progress_bar
from nextbest.core.settings import Settings


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
    from nextbest.demo.generate import OUTPUT_FILES, generate

    settings = load_settings(customers=customers, seed=seed)
    out_dir = out or settings.raw_dir
    with progress_bar() as bar:
        task = bar.add_task(f"generating {settings.customers:,} persons", total=len(OUTPUT_FILES))
        summary = generate(
            settings.customers,
            settings.seed,
            out_dir,
            as_of=settings.as_of,
            progress=lambda name: bar.update(task, advance=1, description=f"wrote {name}"),
        )
    table = Table("file", "rows", title=f"{summary.n_persons:,} persons -> {out_dir}")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


def resolve_cmd(
    records: Annotated[
        Path | None,
        typer.Option("--records", help="Canonical records (CSV/parquet); default: generated."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Assignments file (CSV/parquet).")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Truth (record_id, person_id) for quality.")
    ] = None,
    no_splink: Annotated[
        bool, typer.Option("--no-splink", help="Deterministic links only.")
    ] = False,
    engine: Annotated[
        str, typer.Option("--engine", help="Splink backend: duckdb (in process) or spark.")
    ] = "duckdb",
    sources: SourcesOption = None,
) -> None:
    """Resolve records into customers (record_id, customer_id, match_rule, probability).

    With --sources: validate and stage your exports first, then resolve their identity
    records into the unified record the later steps read.
    """
    from nextbest.customers.corrections import decisions_path
    from nextbest.customers.identity import ENGINES, ResolutionSettings
    from nextbest.customers.identity_io import run_resolve
    from nextbest.customers.quality import evaluate_resolution, log_quality
    from nextbest.customers.tombstone import home_tombstone

    if engine not in ENGINES:
        console.print(f"[red]--engine must be one of {', '.join(ENGINES)}, not {engine!r}[/red]")
        raise typer.Exit(2)
    settings = load_settings(sources=sources)
    spark_master = settings.spark_master_url() if engine == "spark" else None
    if settings.sources is not None and records is None:
        _resolve_sources(settings, engine, not no_splink)
        return
    steps = ["normalise", "deterministic links", "probabilistic links (splink)"]
    with progress_bar() as bar:
        task = bar.add_task("resolving", total=len(steps) + 1)

        def on_step(name: str) -> None:
            done = steps.index(name) if name in steps else len(steps)
            bar.update(task, description=f"resolve: {name}", completed=done)

        run = run_resolve(
            records,
            out,
            settings.raw_dir,
            settings.unified_dir,
            ResolutionSettings(
                use_splink=not no_splink,
                seed=settings.seed,
                engine=engine,
                spark_master=spark_master,
                tombstone=home_tombstone(settings),
                tombstone_salt=settings.identifier_salt,
            ),
            progress=on_step,
            decisions_path=decisions_path(settings.root),
            home=settings.root,
        )
        bar.update(task, completed=len(steps) + 1, description="resolve: done")
    s = run.result.stats
    console.print(
        f"[green]{s['n_records']:,} records -> {s['n_customers']:,} customers[/], "
        f"{s['n_households']:,} households, {s['n_refused_links']:,} refused links, "
        f"{s['n_forced_links']:,} forced links, {s['n_review_pairs']:,} pairs to review "
        f"({s['total_s']:.1f} s); wrote {', '.join(str(p) for p in run.written.values())}"
    )
    quality = evaluate_resolution(run.result, truth, settings.raw_dir if records is None else None)
    if quality is not None:
        all_records, linkable = quality
        table = Table("metric", "all records", "linkable records", title="identity quality")
        for k, v in all_records.items():
            w = linkable.get(k, "")
            fmt = (lambda x: f"{x:.4f}") if isinstance(v, float) else (lambda x: f"{x:,}")
            table.add_row(k, fmt(v), fmt(w) if w != "" else "")
        Console().print(table)
        log_quality(
            all_records,
            settings.tracking_uri,
            settings.experiment,
            linkable=linkable,
            extra={k: v for k, v in s.items() if isinstance(v, int | float)},
        )


def _resolve_sources(settings: Settings, engine: str, use_splink: bool) -> None:
    from nextbest.pipeline import ingest, resolve

    with console.status(f"validating and staging {settings.sources}"):
        staged = ingest(settings)
    rows = ", ".join(f"{k} {v:,}" for k, v in staged["tables"].items())
    console.print(f"[green]staged[/] {rows} in {staged['dir']}")
    with console.status(f"resolving identities (splink on {engine})"):
        s = resolve(settings, engine=engine, use_splink=use_splink).stats
    console.print(
        f"[green]{s['n_records']:,} records -> {s['n_customers']:,} customers[/], "
        f"{s['n_households']:,} households; wrote {settings.unified_dir}"
    )


def ingest_cmd(
    sources: Annotated[Path, typer.Option("--sources", help="Sources file (sources.yaml).")],
) -> None:
    """Validate your exports against the source contract and stage them (nothing is
    written unless every table is valid)."""
    from nextbest.pipeline import ingest

    settings = load_settings(sources=sources)
    staged = ingest(settings)
    rows = ", ".join(f"{k} {v:,}" for k, v in staged["tables"].items())
    console.print(f"[green]valid[/]: {rows}; staged in {staged['dir']}")
