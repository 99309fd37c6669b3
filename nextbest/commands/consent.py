"""`nextbest consent history`: a customer's consent changes kept in the event ledger."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nextbest.commands.common import CleanTyper, console, load_settings

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
    and actor (the export's records are in ``raw/consent.parquet``)."""
    import orjson

    from decisions.ledger import Ledger, consent_history

    settings = load_settings()
    cid = customer
    if id_type != "customer_id":
        from customers.feast_store import feature_store, lookup_customer
        from customers.normalise import identifier_key

        cid = lookup_customer(feature_store(settings), identifier_key(id_type, customer))
        if cid is None:
            console.print(f"[red]no customer for that {id_type}[/]")
            raise typer.Exit(1)
    ledger = Ledger(settings.ledger_path) if settings.ledger_path.exists() else None
    if ledger is not None:
        cid = ledger.ids.get().current(cid)  # an earlier id shows the customer it is now
    history = consent_history(ledger, cid) if ledger is not None else []
    if as_json:
        for h in history:
            typer.echo(orjson.dumps(h).decode())
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
