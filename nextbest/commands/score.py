"""`nextbest score`: batch decisions for every customer (or a list) on a channel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nextbest.commands.common import (
    AsOfOption,
    SourcesOption,
    console,
    load_settings,
    progress_bar,
    show_as_of,
)


def score_cmd(
    out: Annotated[Path, typer.Option(help="Decisions parquet file to write.")],
    channel: Annotated[str | None, typer.Option(help="Channel to decide for, e.g. email.")] = None,
    channels: Annotated[
        str | None,
        typer.Option(
            help="Decide across channels instead: a comma-separated list (email,sms) or "
            "'any'; writes the best action x channel pair per customer."
        ),
    ] = None,
    as_of: AsOfOption = None,
    customers: Annotated[
        Path | None, typer.Option(help="File of customer ids (one a line, or parquet).")
    ] = None,
    engine: Annotated[str, typer.Option(help="local or spark.")] = "local",
    log_decisions: Annotated[bool, typer.Option(help="Append records to the log.")] = False,
    sources: SourcesOption = None,
) -> None:
    """Batch-score every customer (or a list) on a channel (or the best of several) with
    the shared decision engine."""
    from nextbest.batch.run import score_customers
    from nextbest.customers.as_of import resolve_as_of

    if (channel is None) == (channels is None):
        raise typer.BadParameter("give either --channel or --channels", param_hint="--channel")
    settings = load_settings(sources=sources, as_of=as_of)
    when = resolve_as_of(settings)
    show_as_of(when)
    if channels is not None:
        _score_across(settings, channels, when.time, out, customers, engine, log_decisions)
        return
    assert channel is not None
    with progress_bar() as bar:
        task = bar.add_task(f"scoring {channel}", total=None)
        summary = score_customers(
            settings,
            channel,
            when.time,
            out,
            customer_ids=customers,
            engine=engine,  # type: ignore[arg-type]
            log_decisions=log_decisions,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = Table(title=f"{summary.customers:,} customers on {channel} ({summary.engine})")
    table.add_column("action")
    table.add_column("chosen", justify="right")
    table.add_column("excluded by rule", justify="left")
    for action, n in summary.chosen.items():
        why = ", ".join(f"{r} {c:,}" for r, c in summary.excluded.get(action, {}).items())
        table.add_row(action, f"{n:,}", why)
    for action, reasons in summary.excluded.items():
        if action not in summary.chosen:
            table.add_row(action, "0", ", ".join(f"{r} {c:,}" for r, c in reasons.items()))
    console.print(table)
    console.print(
        f"holdout {summary.holdout:,}, explored {summary.explored:,}; "
        f"{summary.timings_s.get('total', 0):.1f} s ({summary.decisions_per_second:,.0f}/s); "
        f"wrote {summary.out}"
    )


def _score_across(
    settings: Any,
    channels: str,
    as_of: Any,
    out: Path,
    customers: Path | None,
    engine: str,
    log_decisions: bool,
) -> None:
    """``--channels``: every channel scored, the best pair per customer written."""
    from nextbest.batch.channels import score_across_channels

    asked = [c.strip() for c in channels.split(",") if c.strip()]
    with progress_bar() as bar:
        task = bar.add_task(f"scoring {channels}", total=None)
        result = score_across_channels(
            settings,
            asked,
            as_of,
            out,
            customer_ids=customers,
            engine=engine,
            log_decisions=log_decisions,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = Table(title=f"{len(result):,} customers, best of {channels}")
    table.add_column("channel")
    table.add_column("chosen an action", justify="right")
    chosen = result.loc[result["chosen_action"] != "no_action", "channel"].value_counts()
    for c, n in chosen.items():
        table.add_row(str(c), f"{n:,}")
    console.print(table)
    console.print(f"wrote {out}")
