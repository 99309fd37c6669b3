"""`nextbest report` and `evaluate-policy`: lift over holdout and off-policy value."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
        str,
        typer.Option(
            help="Candidate policy YAML (levers) or a registered model "
            "(models:/nextbest-decision/N, models:/nextbest-decision@alias, runs:/...)."
        ),
    ],
    outcomes: Annotated[Path, typer.Option(help="Outcome events (parquet, csv or jsonl).")],
    log: Annotated[Path | None, typer.Option("--log", help="Decision-log directory.")] = None,
    since: Annotated[str | None, typer.Option(help="First decision time (ISO, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="End of the period (ISO, exclusive).")] = None,
    window_days: Annotated[float, typer.Option(help="Attribution window in days.")] = 14.0,
    reward: Annotated[str, typer.Option(help="responded, revenue or net_value.")] = "revenue",
    against: Annotated[
        str,
        typer.Option(help="A model candidate's gain is paired against this alias ('' : none)."),
    ] = "champion",
    promote: Annotated[
        bool,
        typer.Option(
            "--promote",
            help="A models:/NAME/N candidate becomes champion if its DR gain over the "
            "champion on the log has a one-sided 95 % lower bound above 0.",
        ),
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the estimates to this JSON file.")
    ] = None,
) -> None:
    """Off-policy value (IPS, SNIPS, doubly robust) of a candidate on the logged decisions."""
    from datetime import timedelta

    from nextbest.customers.id_map import IdMapFile
    from nextbest.measurement.model_candidate import is_model_uri
    from nextbest.measurement.policy_evaluation import evaluate_policy_file

    settings = load_settings()
    if promote and not is_model_uri(candidate):
        console.print("[red]--promote needs a registered model candidate (models:/NAME/N)[/]")
        raise typer.Exit(code=2)
    if is_model_uri(candidate):
        _evaluate_model_cmd(
            settings,
            candidate,
            outcomes,
            log,
            since,
            until,
            window_days,
            reward,
            against,
            promote,
            json_out,
        )
        return
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
    _print_values(res, f"value per decision ({reward})")


def _print_values(res: Any, title: str) -> None:
    table = Table(title=title)
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


def _evaluate_model_cmd(
    settings: Any,
    uri: str,
    outcomes: Path,
    log: Path | None,
    since: str | None,
    until: str | None,
    window_days: float,
    reward: str,
    against: str,
    promote: bool,
    json_out: Path | None,
) -> None:
    """``evaluate-policy`` of a registered model: re-scored on the offline features as of
    each decision, valued on the log, paired against ``against``, optionally promoted."""
    import json
    from datetime import timedelta

    from nextbest.core.errors import InputError
    from nextbest.customers.id_map import IdMapFile
    from nextbest.measurement.attribution import attributed_log
    from nextbest.measurement.model_candidate import evaluate_model_on_log

    if reward not in ("revenue", "net_value"):
        raise InputError(
            f"a model candidate is valued in money: reward revenue or net_value, not {reward!r}"
        )
    decisions = attributed_log(
        log or settings.decision_log_dir,
        outcomes,
        timedelta(days=window_days),
        since,
        until,
        IdMapFile(settings.root).get(),
    )
    with console.status("re-scoring the logged decisions with the candidate"):
        ev = evaluate_model_on_log(settings, uri, decisions, reward, against or None)  # type: ignore[arg-type]
    console.print(f"features: {ev.candidate.features_source} ({ev.decisions:,} treated decisions)")
    _print_values(ev.values, f"{uri}: value per decision ({reward})")
    for name, g in ev.gains.items():
        console.print(
            f"{name}: gain over {against} {g.gain:.4g} ± {g.se:.4g} (one-sided 95 % lower "
            f"bound {g.lower:.4g}): {'beats' if g.beats else 'does not beat'} it by more "
            "than the noise"
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "candidate": uri,
            "features": ev.candidate.features_source,
            "decisions": ev.decisions,
            "values": ev.values.to_dict(orient="records"),
            "against": against or None,
            "gains": {
                k: {**g.__dict__, "lower": g.lower, "beats": g.beats} for k, g in ev.gains.items()
            },
        }
        json_out.write_text(json.dumps(payload, indent=2, default=float), encoding="utf-8")
    if promote:
        _promote_from_log(settings, uri, ev)


def _promote_from_log(settings: Any, uri: str, ev: Any) -> None:
    """Gate ``uri`` (``models:/NAME/N``) against the champion with its DR gain on the log."""
    from nextbest.core.errors import InputError
    from nextbest.models.registry import promote

    prefix = f"models:/{settings.model_name}/"
    version = uri.removeprefix(prefix)
    if not uri.startswith(prefix) or not version.isdigit():
        raise InputError(f"--promote needs a version number: {prefix}N, not {uri}")
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        champion = mlflow.MlflowClient().get_model_version_by_alias(settings.model_name, "champion")
    except MlflowException:
        champion = None
    if champion is not None and str(champion.version) == version:
        console.print(f"v{version} is the champion already: nothing to promote")
        return
    dr = ev.values.set_index("estimator")["value"]["dr"]
    gain = ev.gains.get("dr")
    decision = promote(settings, version, float(dr), lambda _champion: gain)
    console.print(f"[bold]v{version} -> {decision.alias}[/]: {decision.reason}")
