"""`nextbest keys create|list|revoke`: API keys of the decision service."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nextbest.commands.common import CleanTyper, console, load_settings

keys_app = CleanTyper(no_args_is_help=True, help="API keys of the decision service.")


@keys_app.command("create")
def keys_create_cmd(
    name: Annotated[str, typer.Argument(help="Who holds the key (logs, event actor).")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="decide, events or admin (repeat for more).")
    ],
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Requests per second over the whole service."),
    ] = None,
    burst: Annotated[
        int | None, typer.Option("--burst", help="Requests at once (default: the rate).")
    ] = None,
) -> None:
    """Create a key and print it once on stdout (only its hash is stored)."""
    from nextbest.core.api_keys import create_key

    settings = load_settings()
    key, record = create_key(settings.api_keys_path, name, scope, rate, burst)
    console.print(
        f"key [bold]{escape(record.name)}[/] ({', '.join(record.scopes)}) added to "
        f"{settings.api_keys_path}; it is shown once:",
        highlight=False,
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list_cmd() -> None:
    """List the keys: names, scopes, rate limits, creation times."""
    from nextbest.core.api_keys import load_keys

    settings = load_settings()
    table = Table("name", "scopes", "rate/s", "burst", "created", "from")
    for source, records in (
        ("file", load_keys(settings.api_keys_path)),
        ("settings", settings.api_keys),
    ):
        for r in records:
            table.add_row(
                escape(r.name),
                ", ".join(r.scopes),
                "-" if r.rate_per_second is None else f"{r.rate_per_second:g}",
                "-" if r.burst is None else str(r.burst),
                "-" if r.created is None else r.created.isoformat(),
                escape(source),
            )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke_cmd(
    name: Annotated[str, typer.Argument(help="The key's name.")],
) -> None:
    """Remove a key from the key file; a running service refuses it within a second."""
    from nextbest.core.api_keys import revoke_key

    settings = load_settings()
    revoke_key(settings.api_keys_path, name)
    console.print(f"key [bold]{escape(name)}[/] revoked in {settings.api_keys_path}")
