"""What every command shares: the console, the settings, the one-message error printer.

Only typer, rich and the settings load here; each command imports its heavy packages
inside its function, so ``nextbest --help`` stays fast.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from nextbest.core.settings import Settings, get_settings

if TYPE_CHECKING:
    from nextbest.customers.as_of import AsOf

console = Console(stderr=True)

# Exceptions that are the user's to fix, by the module that defines them: one loaded
# only if that module was imported (an error of a type never imported cannot occur).
_USER_ERRORS = (
    ("nextbest.core.errors", "NextbestError"),
    ("nextbest.decisions.catalog", "ConfigError"),
    ("nextbest.decisions.runtime", "StartupError"),
    ("nextbest.batch.io", "BatchInputError"),
    # A file that is not there is the user's to provide or to build with an earlier step;
    # the message names the path.
    ("builtins", "FileNotFoundError"),
)


def _user_error_types() -> tuple[type[BaseException], ...]:
    found = (getattr(sys.modules.get(m), name, None) for m, name in _USER_ERRORS)
    return tuple(t for t in found if isinstance(t, type))


def fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command; a user error is printed as one message and exits non-zero."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not isinstance(exc, _user_error_types()):
                raise
            console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None

    return run


class CleanTyper(typer.Typer):
    """A Typer app whose every command reports user errors without a traceback."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        """Register a command wrapped in :func:`fail_cleanly`."""
        register = super().command(*args, **kwargs)
        return lambda fn: register(fail_cleanly(fn))


SourcesOption = Annotated[
    Path | None,
    typer.Option(
        "--sources",
        help="Sources file mapping your exports onto the source contract "
        "(docs/bring-your-own-data.md); default: the demo generator's exports.",
    ),
]


AsOfOption = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"],
        help="The as-of time (ISO, UTC unless it names a zone): the last feature snapshot "
        "and the decision time. Default NEXTBEST_AS_OF, else the data's end (the midnight "
        "after its latest event or exposure).",
    ),
]


def show_as_of(as_of: AsOf) -> None:
    """Print the as-of time a command uses and where it came from (setting or data)."""
    console.print(f"[bold]{escape(as_of.describe())}[/]", highlight=False, soft_wrap=True)


#: Libraries whose INFO lines say nothing to a user of the CLI (Feast refreshes its registry
#: cache on every lookup and says so each time).
_QUIET_LOGGERS = ("feast.infra.registry.registry",)


def load_settings(**overrides: object) -> Settings:
    """The settings with the options the user gave (``None`` = not given); logging set up."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return get_settings(**{k: v for k, v in overrides.items() if v is not None})


def progress_bar() -> Progress:
    """A progress bar (spinner, description, bar, share, elapsed time) on the console."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def customer_of(settings: Settings, store: Any, id_type: str, value: str) -> str | None:
    """The customer an identifier names, as the service resolves it: a customer id as
    given; any other identifier by the identity lookup of ``store`` (a Feast store), then
    the identify links of the event ledger (:func:`nextbest.decisions.identity_links.resolve_key`);
    either way through the id map (an id a merge retired: the customer it is now).
    A value that is not an identifier of its type raises
    :class:`nextbest.core.errors.InputError`."""
    from nextbest.core.errors import InputError
    from nextbest.customers.feast_store import lookup_customer
    from nextbest.customers.id_map import IdMapFile
    from nextbest.customers.normalise import identifier_key
    from nextbest.decisions.identity_links import IdentityLinks, resolve_key
    from nextbest.decisions.ledger import Ledger

    id_map = IdMapFile(settings.root).get()
    if id_type == "customer_id":
        return id_map.current(value)
    try:
        key = identifier_key(id_type, value, settings.identifier_salt)
    except ValueError as exc:
        raise InputError(f"customer: {exc}") from None
    ledger = Ledger(settings.ledger_path) if settings.ledger_path.exists() else None

    def lookup(k: str) -> str | None:
        found = lookup_customer(store, k)
        return None if found is None else id_map.current(found)

    def linked(k: str) -> str | None:  # IdentityLinks follows the id map itself
        return None if ledger is None else IdentityLinks(ledger).customer_of(k)

    try:
        return resolve_key(key, lookup, linked)
    finally:
        if ledger is not None:
            ledger.close()
