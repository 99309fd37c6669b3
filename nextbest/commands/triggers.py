"""`nextbest triggers run|check|pending` and `nextbest outbox list|retry`: the triggers
worker alone, its trigger file, its pending triggers and its webhook deliveries."""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from nextbest.commands.common import CleanTyper, console, load_settings

triggers_app = CleanTyper(no_args_is_help=True, help="Triggers: decisions started by events.")
outbox_app = CleanTyper(no_args_is_help=True, help="The outbox of triggered deliveries.")

#: The signals that stop the worker (after its current turn).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _iso(t: float | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


@triggers_app.command("run")
def triggers_run_cmd() -> None:
    """Run the triggers worker alone (``nextbest serve`` runs it beside the service when
    webhooks are configured): read the ledger, fire and cancel triggers, decide at send
    time, deliver the outbox. Stops after its current turn on SIGTERM/SIGINT."""
    from nextbest.decisions.runtime import StartupError
    from serving.trigger_worker import TriggerWorker

    settings = load_settings()
    # One line per webhook call would drown the worker's own log (failures are logged).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        worker = TriggerWorker(settings)
    except StartupError as exc:
        # The marker `nextbest serve` watches for in a worker's output.
        console.print(f"StartupError: {escape(str(exc))}", markup=False)
        raise typer.Exit(1) from exc
    stop = threading.Event()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"triggers worker over {settings.root} (ledger {settings.ledger_path.name})")
    try:
        worker.run(stop)
    finally:
        worker.close()


@triggers_app.command("check")
def triggers_check_cmd() -> None:
    """Validate the trigger file against the catalog, the event types and the feature
    schema; exit 1 naming the file, trigger and field of every problem."""
    from nextbest.customers.feature_schema import all_feature_names
    from nextbest.decisions.catalog import ConfigError, load_catalog
    from nextbest.decisions.ledger import Vocabulary
    from nextbest.decisions.triggers import load_triggers

    settings = load_settings()
    try:
        catalog = load_catalog(settings.catalog)
        spec = load_triggers(
            settings.triggers_file,
            event_types=Vocabulary.from_terms(catalog.terms()).types(),
            channels=catalog.channel_ids,
            purposes=catalog.purposes,
            features=all_feature_names(catalog.terms()),
        )
    except ConfigError as exc:
        console.print(escape(str(exc)), markup=False)
        raise typer.Exit(1) from exc
    console.print(
        f"{settings.triggers_file}: {len(spec.triggers)} triggers, {len(spec.journeys)} journeys"
    )


@triggers_app.command("pending")
def triggers_pending_cmd(
    status: Annotated[
        str | None, typer.Option(help="pending|sent|no_send|holdout|cancelled|expired")
    ] = None,
    customer: Annotated[str | None, typer.Option(help="A customer id.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List fired triggers with their state and reason."""
    import orjson

    from nextbest.decisions.trigger_store import TriggerStore

    store = TriggerStore(load_settings().triggers_db_path)
    rows = store.rows(customer, status)
    if as_json:
        for r in rows:
            typer.echo(orjson.dumps(r.__dict__).decode())
        return
    table = Table("trigger", "customer", "fired", "due", "state", "reason", "decision")
    for r in rows:
        table.add_row(
            r.trigger_id,
            r.customer_id,
            _iso(r.fired_at),
            _iso(r.due),
            r.status,
            escape(r.reason or ""),
            r.decision_id or "",
        )
    console.print(table)


@outbox_app.command("list")
def outbox_list_cmd(
    status: Annotated[str | None, typer.Option(help="queued|delivered|dead")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List the outbox's deliveries: decision, webhook, state, attempts, last error."""
    import orjson

    from nextbest.decisions.trigger_store import TriggerStore

    store = TriggerStore(load_settings().triggers_db_path)
    rows = store.outbox(status)
    if as_json:
        for r in rows:
            typer.echo(orjson.dumps({**r.as_dict(), "webhook": _host(r.webhook)}).decode())
        return
    table = Table("decision", "webhook", "customer", "action", "state", "attempts", "error")
    for r in rows:
        table.add_row(
            r.decision_id,
            escape(_host(r.webhook)),
            r.customer_id,
            f"{r.action_id} on {r.channel}",
            r.status,
            str(r.attempts),
            escape(r.last_error or ""),
        )
    console.print(table)


def _host(url: str) -> str:
    """A webhook as listed: scheme, host and port only (its path or query may hold a token)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


@outbox_app.command("retry")
def outbox_retry_cmd(
    decision_ids: Annotated[
        list[str] | None, typer.Argument(help="Decision ids to retry (default: every dead one).")
    ] = None,
) -> None:
    """Queue dead-lettered deliveries again (attempts reset); the worker sends them on its
    next turn."""
    from nextbest.decisions.trigger_store import TriggerStore

    store = TriggerStore(load_settings().triggers_db_path)
    n = store.retry(decision_ids or None, time.time())
    console.print(f"{n} dead deliveries queued again")
