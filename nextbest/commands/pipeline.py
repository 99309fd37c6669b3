"""`nextbest pipeline`: every step from data to batch scores on embedded defaults."""

from __future__ import annotations

from typing import Annotated

import typer

from nextbest.commands.common import (
    AsOfOption,
    SourcesOption,
    console,
    load_settings,
    progress_bar,
    show_as_of,
)


def pipeline_cmd(
    customers: Annotated[int | None, typer.Option(help="Persons to generate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    sources: SourcesOption = None,
    channel: Annotated[
        str, typer.Option(help="Channel the batch decisions are made for.")
    ] = "email",
    as_of: AsOfOption = None,
) -> None:
    """Generate (or, with --sources, validate and stage your exports), resolve, build
    features, train, evaluate against the generator's truth (generated data) and
    decide in batch on embedded defaults."""
    from nextbest.pipeline import run_pipeline

    settings = load_settings(customers=customers, seed=seed, sources=sources, as_of=as_of)
    first = "generate" if sources is None else "ingest"
    steps = [first, "resolve", "features", "train", "evaluate", "decide-batch"]
    with progress_bar() as bar:
        task = bar.add_task("pipeline", total=len(steps))

        def on_step(name: str) -> None:
            bar.update(task, description=f"pipeline: {name}", completed=steps.index(name))

        report = run_pipeline(settings, on_step=on_step, channel=channel, on_as_of=show_as_of)
        bar.update(task, completed=len(steps), description="pipeline: done")
    console.print(f"[green]pipeline done[/] in {settings.root}")
    if report.demo_key is not None:
        console.print(
            f"API key [bold]demo[/] (every scope; shown once, saved to "
            f"{settings.demo_key_path}):\n{report.demo_key}",
            highlight=False,
            soft_wrap=True,
        )
