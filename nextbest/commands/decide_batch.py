"""`nextbest decide-batch`: batch decisions for every customer (or a list) on a channel.

``nextbest score`` is its retired name, kept hidden for scripts that still call it: it
says so in one line and runs the same command (the API's ``score`` is an action's expected
incremental value, not a decision)."""

from __future__ import annotations

import functools
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

#: What ``nextbest score`` prints before it runs ``decide-batch``.
RETIRED_SCORE = "nextbest score is now nextbest decide-batch (score is the API's incremental value)"


def decide_batch_cmd(
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
    """Decide for every customer (or a list) on a channel (or the best of several) with
    the shared decision engine."""
    from nextbest.batch.run import decide_customers
    from nextbest.customers.as_of import resolve_as_of

    if (channel is None) == (channels is None):
        raise typer.BadParameter("give either --channel or --channels", param_hint="--channel")
    settings = load_settings(sources=sources, as_of=as_of)
    when = resolve_as_of(settings)
    show_as_of(when)
    if channels is not None:
        _decide_across(settings, channels, when.time, out, customers, engine, log_decisions)
        return
    assert channel is not None
    with progress_bar() as bar:
        task = bar.add_task(f"deciding {channel}", total=None)
        summary = decide_customers(
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


def _decide_across(
    settings: Any,
    channels: str,
    as_of: Any,
    out: Path,
    customers: Path | None,
    engine: str,
    log_decisions: bool,
) -> None:
    """``--channels``: every channel decided, the best pair per customer written."""
    from nextbest.batch.channels import decide_across_channels
    from nextbest.core.vocabulary import NO_ACTION

    asked = [c.strip() for c in channels.split(",") if c.strip()]
    with progress_bar() as bar:
        task = bar.add_task(f"deciding {channels}", total=None)
        result = decide_across_channels(
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
    chosen = result.loc[result["chosen_action"] != NO_ACTION, "channel"].value_counts()
    for c, n in chosen.items():
        table.add_row(str(c), f"{n:,}")
    console.print(table)
    console.print(f"wrote {out}")


@functools.wraps(decide_batch_cmd)
def score_cmd(*args: Any, **kwargs: Any) -> None:
    """The retired name ``nextbest score``: one line on stderr, then ``decide-batch``."""
    typer.echo(RETIRED_SCORE, err=True)
    decide_batch_cmd(*args, **kwargs)
