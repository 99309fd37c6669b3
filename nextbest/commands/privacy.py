"""`nextbest forget` and `retention apply`: erasure and retention (nextbest.decisions.privacy)."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from nextbest.commands.common import CleanTyper, load_settings

retention_app = CleanTyper(no_args_is_help=True, help="Delete what is older than retention allows.")


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def forget_cmd(
    identifier: Annotated[str, typer.Argument(help="The person's e-mail, phone, customer id, ...")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")],
    id_type: Annotated[
        str,
        typer.Option(help="email|phone|customer_id|crm_id|loyalty_id|app_account_id|device_id"),
    ] = "email",
) -> None:
    """Erase a person from every store of the home, keep them out of later builds
    (tombstone) and write an audit entry (docs/privacy.md); a generated home's ``truth/``
    goes too."""
    import orjson

    from nextbest.decisions.privacy import forget

    settings = load_settings()
    also = None
    truth = settings.raw_dir / "truth"
    if truth.is_dir():
        # The product never reads the generator's truth; the generator erases its own.
        from nextbest.demo.truth import erase_person

        also = functools.partial(erase_person, truth)
    report = forget(settings, identifier, id_type, reason, _actor(), also=also)
    typer.echo(orjson.dumps(report.__dict__).decode())


@retention_app.command("apply")
def retention_apply_cmd() -> None:
    """Delete decision-log days, ledger events and source-export events older than the
    retention settings (NEXTBEST_RETENTION_*_DAYS); consent is kept. Audited."""
    import orjson

    from nextbest.decisions.privacy import apply_retention

    report = apply_retention(load_settings(), _actor())
    typer.echo(orjson.dumps(report.__dict__).decode())
