"""`nextbest features build|apply|materialize|show`: feature tables and the Feast stores."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nextbest.commands.common import (
    AsOfOption,
    CleanTyper,
    SourcesOption,
    console,
    customer_of,
    load_settings,
    progress_bar,
    show_as_of,
)

features_app = CleanTyper(no_args_is_help=True, help="Build and serve features with Feast.")


@features_app.command("build")
def features_build(sources: SourcesOption = None, as_of: AsOfOption = None) -> None:
    """Build feature tables from the unified record at monthly snapshots up to the as-of
    time, apply the Feast repo and materialise."""
    from nextbest.customers.as_of import resolve_as_of
    from nextbest.customers.features import snapshot_times
    from nextbest.pipeline import build_features

    settings = load_settings(sources=sources, as_of=as_of)
    when = resolve_as_of(settings)
    show_as_of(when)
    times = snapshot_times(when.time, settings.snapshot_months)
    with progress_bar() as bar:
        task = bar.add_task("feature snapshots", total=None)
        out = build_features(
            settings, progress=lambda i, n: bar.update(task, completed=i, total=n), as_of=when
        )
    console.print(
        f"[green]features built[/]: {len(out['tables'])} tables, {len(times)} snapshots "
        f"from {times[0]:%Y-%m-%d} to {times[-1]:%Y-%m-%d %H:%M}Z, online store materialised"
    )
    for table, (unresolved, ambiguous) in out["left_out"].items():
        console.print(
            f"[yellow]left out[/] {unresolved + ambiguous:,} rows of {table} that name no "
            f"customer ({unresolved:,} unresolved, {ambiguous:,} ambiguous identifiers)"
        )


@features_app.command("apply")
def features_apply() -> None:
    """Register the Feast definitions (entities, views, feature service) in the registry."""
    from nextbest.customers.feast_store import apply
    from nextbest.decisions.catalog import load_catalog

    settings = load_settings()
    apply(settings, load_catalog(settings.catalog).terms())
    console.print("[green]feast apply done[/]")


@features_app.command("materialize")
def features_materialize(as_of: AsOfOption = None) -> None:
    """Load the latest feature values up to the as-of time into the online store."""
    from nextbest.customers.as_of import resolve_as_of
    from nextbest.customers.feast_store import materialize

    settings = load_settings(as_of=as_of)
    when = resolve_as_of(settings)
    show_as_of(when)
    with console.status("materialising"):
        materialize(settings, end=when.time)
    console.print("[green]materialised[/]")


@features_app.command("show")
def features_show(
    customer: Annotated[str, typer.Argument(help="Identifier value, e.g. a customer id or email.")],
    id_type: Annotated[
        str, typer.Option(help="customer_id|email|phone|crm_id|loyalty_id|device_id")
    ] = "customer_id",
    as_of: AsOfOption = None,
) -> None:
    """Print one customer's unified record as the online store serves it (durations such
    as days since the last purchase counted at the as-of time)."""
    from nextbest.customers.as_of import resolve_as_of
    from nextbest.customers.feast_store import feature_store, online_features
    from nextbest.customers.feature_schema import all_feature_names
    from nextbest.decisions.catalog import load_catalog

    settings = load_settings(as_of=as_of)
    when = resolve_as_of(settings)
    show_as_of(when)
    store = feature_store(settings)
    cid = customer_of(settings, store, id_type, customer)
    if cid is None:
        console.print(f"[red]no customer for that {id_type}[/]")
        raise typer.Exit(1)
    names = all_feature_names(load_catalog(settings.catalog).terms())
    row = online_features(store, [cid], when.time.timestamp(), names)[0]
    table = Table("feature", "value", title=f"customer {cid}")
    for n, v in zip(names, row, strict=True):
        table.add_row(n, f"{v:g}")
    Console().print(table)
