"""`nextbest identity link|split|review`: human corrections to identity resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import MissingInputError
from nextbest.commands.common import CleanTyper, SourcesOption, console, load_settings

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
    from customers.correction_checks import Request
    from customers.corrections import decisions_path
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
        Path, typer.Argument(help="A review_pairs.csv with the decision column filled in.")
    ],
    force: ForceOption = False,
    sources: SourcesOption = None,
) -> None:
    """Record the link/split decisions of a filled-in review file: every row is checked
    as `link` and `split` check theirs, and one bad row records nothing."""
    from customers.correction_checks import review_requests
    from customers.corrections import decisions_path
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
