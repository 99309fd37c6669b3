"""`nextbest serve`: start the decision service and watch over it."""

from __future__ import annotations

import functools
import sys
from typing import Annotated

import typer
from rich.markup import escape

from nextbest.commands.common import SourcesOption, console, load_settings
from nextbest.core.settings import PROJECT_ROOT


def serve_cmd(
    port: Annotated[int | None, typer.Option(help="Port (default settings.port).")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default settings.host).")] = None,
    sources: SourcesOption = None,
) -> None:
    """Start the BentoML decision service (``bentoml serve serving.service:NextBest``).

    Exits 1 with the message when the service cannot start (also when its workers fail),
    and stops the whole server on SIGTERM/SIGINT (exit status 128 + the signal). With
    webhooks configured (and ``triggers_worker`` on), the triggers worker
    (``nextbest triggers run``) runs beside it, restarted if it ends.
    """
    import os

    from nextbest.decisions.runtime import StartupError, preflight
    from nextbest.supervise import supervise

    settings = load_settings(port=port, host=host, sources=sources)
    try:
        preflight(settings)
    except StartupError as exc:
        console.print(f"[red]cannot start the decision service[/]: {escape(str(exc))}")
        raise typer.Exit(1) from exc
    env = {
        **os.environ,
        **({"NEXTBEST_SOURCES": str(settings.sources)} if settings.sources else {}),
        "NEXTBEST_HOME": str(settings.root),
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:NextBest",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]
    console.print(f"serving on http://{settings.host}:{settings.port} (OpenAPI page at /)")
    # The triggers worker runs beside the server when there is somewhere to deliver to.
    companions = []
    if settings.triggers_worker and settings.webhooks:
        companions.append([sys.executable, "-m", "nextbest", "triggers", "run"])
        console.print(
            f"triggers worker: {settings.triggers_file} -> {len(settings.webhooks)} webhooks"
        )
    outcome = supervise(
        cmd,
        env,
        PROJECT_ROOT,
        is_up=functools.partial(_serving, settings.host, settings.port),
        start_timeout=settings.serve_start_timeout_seconds,
        companions=companions,
    )
    if outcome.message:
        console.print(f"[red]{escape(outcome.message)}[/]")
    raise typer.Exit(outcome.code)


def _serving(host: str, port: int) -> bool:
    """Whether a worker of the service at host:port answers ``/livez``."""
    import httpx

    probe = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    try:
        return httpx.get(f"http://{probe}:{port}/livez", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
