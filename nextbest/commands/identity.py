"""`nextbest identity link|split|review`: human corrections to identity resolution, and
the identify events waiting for review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nextbest.commands.common import CleanTyper, SourcesOption, console, load_settings
from nextbest.core.errors import MissingInputError

identity_app = CleanTyper(
    no_args_is_help=True, help="Human corrections to identity resolution (link, split, review)."
)

ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Record a link the merge guard refuses (needs a reason; the conflict is kept).",
    ),
]


def _decide(
    record_a: str, record_b: str, decision: str, reason: str, force: bool, sources: Path | None
) -> None:
    from nextbest.customers.correction_checks import Request
    from nextbest.customers.corrections import decisions_path
    from nextbest.pipeline import correct_identity

    settings = load_settings(sources=sources)
    rows = correct_identity(settings, [Request(record_a, record_b, decision, reason)], force)
    conflict = rows["guard_conflict"].iloc[0]
    forced = f" (forced over the guard's {conflict} conflict)" if conflict else ""
    console.print(
        f"[green]recorded[/]: {decision} {record_a} {record_b}{forced}; every later "
        f"`nextbest resolve` honours it ({decisions_path(settings.root)})"
    )


@identity_app.command("link")
def identity_link_cmd(
    record_a: Annotated[str, typer.Argument(help="record_id of one record.")],
    record_b: Annotated[str, typer.Argument(help="record_id of the other record.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (listed with the link).")] = "",
    force: ForceOption = False,
    sources: SourcesOption = None,
) -> None:
    """Record that two records are one person; later runs merge them. Both records must
    exist, and a link the merge guard refuses needs --force and --reason."""
    _decide(record_a, record_b, "link", reason, force, sources)


@identity_app.command("split")
def identity_split_cmd(
    record_a: Annotated[str, typer.Argument(help="record_id of one record.")],
    record_b: Annotated[str, typer.Argument(help="record_id of the other record.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the decision).")] = "",
    sources: SourcesOption = None,
) -> None:
    """Record that two records are different people; later runs never merge them. Both
    records must exist."""
    _decide(record_a, record_b, "split", reason, False, sources)


@identity_app.command("review")
def identity_review_cmd(
    reviewed: Annotated[
        Path | None,
        typer.Argument(
            help="A review_pairs.csv with the decision column filled in; without it, list "
            "the identify events recorded for review."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="List as JSON lines.")] = False,
    force: ForceOption = False,
    sources: SourcesOption = None,
) -> None:
    """Record the link/split decisions of a filled-in review file (every row is checked
    as `link` and `split` check theirs, and one bad row records nothing); without a file,
    list the identify events that named an identifier of another customer (not linked;
    masked)."""
    if reviewed is None:
        _list_identify_reviews(as_json)
        return
    from nextbest.customers.correction_checks import review_requests
    from nextbest.customers.corrections import decisions_path
    from nextbest.pipeline import correct_identity

    settings = load_settings(sources=sources)
    if not reviewed.exists():
        raise MissingInputError(f"review file {reviewed} does not exist")
    rows = correct_identity(settings, review_requests(reviewed), force)
    forced = int((rows["guard_conflict"] != "").sum())
    note = f" ({forced:,} forced over the guard)" if forced else ""
    console.print(
        f"[green]recorded {len(rows):,} decisions[/]{note} in {decisions_path(settings.root)}"
    )


def _list_identify_reviews(as_json: bool) -> None:
    import orjson
    from rich.console import Console
    from rich.table import Table

    from nextbest.decisions.identity_links import IdentityLinks
    from nextbest.decisions.ledger import Ledger

    settings = load_settings()
    pending: list[dict] = []
    if settings.ledger_path.exists():
        ledger = Ledger(settings.ledger_path)
        try:
            pending = IdentityLinks(ledger).reviews()
        finally:
            ledger.close()
    if as_json:
        for entry in pending:
            typer.echo(orjson.dumps(entry).decode())
        return
    if not pending:
        console.print("no identify events waiting for review")
        return
    table = Table(
        "received",
        "identifier (masked)",
        "claimed by",
        "belongs to",
        "found in",
        "source",
        "actor",
        "event id",
        title="identify events recorded for review (not linked)",
    )
    for e in pending:
        table.add_row(
            e["received_time"],
            e["identifier"],
            e["customer_id"],
            e["owner_id"] or "",
            e["owner_source"],
            e["source"],
            e["actor"],
            e["event_id"],
        )
    Console().print(table)
