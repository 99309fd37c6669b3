"""`nextbest report` and `evaluate-policy`: lift over holdout and off-policy value."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nextbest.commands.common import console, load_settings


def report_cmd(
    out: Annotated[Path, typer.Option("--out", help="Directory for report.html and report.json.")],
    since: Annotated[str | None, typer.Option(help="First decision time (ISO, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="End of the period (ISO, exclusive).")] = None,
    log: Annotated[Path | None, typer.Option("--log", help="Decision-log directory.")] = None,
    outcomes: Annotated[
        Path | None, typer.Option(help="Outcome events (parquet, csv or jsonl).")
    ] = None,
    window_days: Annotated[float, typer.Option(help="Attribution window in days.")] = 14.0,
    mlflow: Annotated[bool, typer.Option(help="Log the report to MLflow.")] = True,
) -> None:
    """Lift of treated over holdout per action, channel and value tier, exclusions, drift."""
    from datetime import timedelta

    from nextbest.measurement.report import run_report

    settings = load_settings()
    with console.status("attributing outcomes and computing lift"):
        files = run_report(
            settings,
            out,
            since=since,
            until=until,
            log_dir=log,
            outcomes_path=outcomes,
            window=timedelta(days=window_days),
            log_to_mlflow=mlflow,
        )
    console.print(f"report: {files.html}  figures: {files.json}")
    if files.run_id:
        console.print(f"MLflow run {files.run_id} (lift-report)")


def evaluate_policy_cmd(
    candidate: Annotated[
        str, typer.Option(help="Candidate policy YAML (levers) or MLflow model URI.")
    ],
    outcomes: Annotated[Path, typer.Option(help="Outcome events (parquet, csv or jsonl).")],
    log: Annotated[Path | None, typer.Option("--log", help="Decision-log directory.")] = None,
    since: Annotated[str | None, typer.Option(help="First decision time (ISO, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="End of the period (ISO, exclusive).")] = None,
    window_days: Annotated[float, typer.Option(help="Attribution window in days.")] = 14.0,
    reward: Annotated[str, typer.Option(help="responded, revenue or net_value.")] = "revenue",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the estimates to this JSON file.")
    ] = None,
) -> None:
    """Off-policy value (IPS, SNIPS, doubly robust) of a candidate on the logged decisions."""
    from datetime import timedelta

    from nextbest.customers.id_map import IdMapFile
    from nextbest.measurement.policy_evaluation import evaluate_policy_file

    settings = load_settings()
    try:
        res = evaluate_policy_file(
            candidate,
            log or settings.decision_log_dir,
            outcomes,
            window=timedelta(days=window_days),
            since=since,
            until=until,
            reward=reward,  # type: ignore[arg-type]
            id_map=IdMapFile(settings.root).get(),
        )
    except (NotImplementedError, FileNotFoundError, ValueError) as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(code=2) from e
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        res.to_json(json_out, orient="records", indent=2)
    table = Table(title=f"value per decision ({reward})")
    for c in ("estimator", "value", "se", "ci_low", "ci_high", "match_rate", "effective_n"):
        table.add_column(c)
    for r in res.itertuples():
        table.add_row(
            r.estimator,
            *(f"{getattr(r, c):.4g}" for c in ("value", "se", "ci_low", "ci_high")),
            f"{r.match_rate:.3f}",
            f"{r.effective_n:.0f}",
        )
    console.print(table)
