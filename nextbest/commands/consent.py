"""`nextbest consent history`: a customer's consent changes kept in the event ledger, and
the identifiers attached to the customer through identify events."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nextbest.commands.common import CleanTyper, console, customer_of, load_settings

consent_app = CleanTyper(no_args_is_help=True, help="Consent kept in the event ledger.")


@consent_app.command("history")
def consent_history_cmd(
    customer: Annotated[str, typer.Argument(help="Identifier value, e.g. a customer id or email.")],
    id_type: Annotated[
        str, typer.Option(help="customer_id|email|phone|crm_id|loyalty_id|device_id")
    ] = "customer_id",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Print a customer's consent changes sent to the service, in event time, with source
    and actor (the export's records are in ``raw/consent.parquet``), then the identifiers
    attached to the customer through identify events (masked). ``--json``: one line per
    entry, ``type`` consent_changed or identify."""
    import orjson

    from nextbest.decisions.identity_links import IDENTIFY_EVENT, IdentityLinks
    from nextbest.decisions.ledger import Ledger, consent_history

    settings = load_settings()
    store = None
    if id_type != "customer_id":
        from nextbest.customers.feast_store import feature_store

        store = feature_store(settings)
    cid = customer_of(settings, store, id_type, customer)  # an earlier id: the customer now
    if cid is None:
        console.print(f"[red]no customer for that {id_type}[/]")
        raise typer.Exit(1)
    history: list[dict] = []
    identifiers: list[dict] = []
    if settings.ledger_path.exists():
        ledger = Ledger(settings.ledger_path)
        history = consent_history(ledger, cid)
        identifiers = IdentityLinks(ledger).history(cid)
    if as_json:
        for h in history:
            typer.echo(orjson.dumps({"type": "consent_changed", **h}).decode())
        for h in identifiers:
            typer.echo(orjson.dumps({"type": IDENTIFY_EVENT, **h}).decode())
        return
    table = Table(
        "event time",
        "purpose",
        "channel",
        "granted",
        "legal basis",
        "source",
        "actor",
        "event id",
        "recorded under",
        title=f"consent changes of {cid}",
    )
    for h in history:
        table.add_row(
            h["event_time"],
            h["purpose"],
            h["channel"],
            str(h["granted"]).lower(),
            h["legal_basis"] or "",
            h["source"],
            h["actor"],
            h["event_id"],
            h["recorded_under"] + (f" ({h['carried']})" if h["carried"] else ""),
        )
    Console().print(table)
    if identifiers:
        links = Table(
            "event time",
            "identifier (masked)",
            "outcome",
            "source",
            "actor",
            "event id",
            title=f"identifiers attached to {cid} by identify events",
        )
        for h in identifiers:
            links.add_row(
                h["event_time"],
                h["identifier"],
                h["status"] or "",
                h["source"],
                h["actor"],
                h["event_id"],
            )
        Console().print(links)
