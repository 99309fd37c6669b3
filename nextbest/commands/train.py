"""`nextbest train` and `uplift fit|predict`: models of the home and of your own experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nextbest.commands.common import (
    CleanTyper,
    SourcesOption,
    console,
    load_settings,
    show_as_of,
)

uplift_app = CleanTyper(no_args_is_help=True, help="Uplift models on your own experiment export.")


def train_cmd(
    sources: SourcesOption = None,
    from_log: Annotated[
        bool,
        typer.Option(
            "--from-log",
            help="Learn from the decision log's own decisions (holdout, exploration, greedy) "
            "with their logged propensities, joined to --outcomes.",
        ),
    ] = False,
    with_history: Annotated[
        bool, typer.Option("--with-history", help="With --from-log: add the campaign history.")
    ] = False,
    outcomes: Annotated[
        Path | None,
        typer.Option(help="With --from-log: outcome events (parquet, csv or jsonl)."),
    ] = None,
    log: Annotated[
        Path | None, typer.Option("--log", help="Decision-log directory (default: the home's).")
    ] = None,
    since: Annotated[str | None, typer.Option(help="First decision time (ISO, UTC).")] = None,
    until: Annotated[str | None, typer.Option(help="End of the period (ISO, exclusive).")] = None,
    window_days: Annotated[float, typer.Option(help="Attribution window in days.")] = 14.0,
    propensity_floor: Annotated[
        float,
        typer.Option(help="Logged propensities below this are raised to it for weighting."),
    ] = 0.01,
) -> None:
    """Train, evaluate, log to MLflow, register, and gate promotion to ``champion``; on
    generated data, then log the regret against the generator's truth to the run.

    The exposures must fall within the feature snapshots (built up to the as-of time);
    otherwise the command stops with exit status 2 and registers nothing. With
    ``--from-log`` the exposures are the logged decisions (too few: exit 2, nothing
    registered)."""
    import pandas as pd

    from nextbest.core.errors import InputError
    from nextbest.customers.as_of import resolve_as_of
    from nextbest.customers.features import snapshot_range
    from nextbest.decisions.catalog import load_catalog
    from training.truth_evaluation import evaluate_against_truth

    settings = load_settings(sources=sources)
    if (with_history or outcomes is not None) and not from_log:
        raise InputError("--with-history and --outcomes go with --from-log")
    if from_log and outcomes is None:
        raise InputError("--from-log needs --outcomes: the outcome events to attribute")
    first, last = snapshot_range(settings.features_dir, load_catalog(settings.catalog).terms())
    when = resolve_as_of(settings)
    show_as_of(when)
    console.print(f"feature snapshots from {first:%Y-%m-%d %H:%M}Z to {last:%Y-%m-%d %H:%M}Z")
    if last != pd.Timestamp(when.time):
        console.print(
            f"[yellow]the features were built as of {last:%Y-%m-%d %H:%M}Z, not at this "
            "as-of time: `nextbest features build` rebuilds them[/]"
        )
    if from_log:
        from datetime import timedelta

        from nextbest.customers.id_map import IdMapFile
        from nextbest.measurement.attribution import attributed_log
        from training.from_log import train_from_log

        assert outcomes is not None
        window = timedelta(days=window_days)
        decisions = attributed_log(
            log or settings.decision_log_dir,
            outcomes,
            window,
            since,
            until,
            IdMapFile(settings.root).get(),
        )
        with console.status("training from the decision log (Feast, learners, MLflow)"):
            result, exposures = train_from_log(
                settings,
                decisions,
                window=window,
                with_history=with_history,
                propensity_floor=propensity_floor,
            )
        console.print(
            f"decision log: {exposures.decisions:,} decisions, {exposures.responded:,} with an "
            f"outcome; propensity floor {exposures.propensity_floor:g} clipped "
            f"{100 * exposures.clipped_share:.1f}% of them"
        )
    else:
        from training.train import train

        with console.status("training (Feast training set, learners, MLflow)"):
            result = train(settings)
    console.print(
        f"[green]model v{result.model_version}[/] ({result.learner}) -> "
        f"[bold]{result.alias}[/]: {result.reason}"
    )
    regret = evaluate_against_truth(settings, result)
    if "regret_model" in regret:
        console.print(f"regret against the generator's truth: {regret['regret_model']:.5f}")


@uplift_app.command("fit")
def uplift_fit(
    data: Annotated[Path, typer.Option(help="Experiment export (CSV or parquet).")],
    treatment: Annotated[str, typer.Option(help="Column with the arm of each row.")],
    control: Annotated[str, typer.Option(help="Value of the treatment column for control.")],
    outcome: Annotated[str, typer.Option(help="Outcome column (binary or continuous).")],
    model_out: Annotated[Path, typer.Option(help="Directory to save the model in.")],
    value: Annotated[str | None, typer.Option(help="Optional value column (e.g. revenue).")] = None,
    features: Annotated[
        str | None, typer.Option(help="Comma-separated feature columns (default: all others).")
    ] = None,
    propensity: Annotated[
        str | None,
        typer.Option(
            help="Optional column: each row's assignment probability (default: arm shares)."
        ),
    ] = None,
) -> None:
    """Select (cross-fitted on the file's rows), fit and save an uplift learner on your own
    experiment export."""
    from training.generic import fit_uplift

    settings = load_settings()
    feats = [f.strip() for f in features.split(",") if f.strip()] if features else None
    with console.status("fitting and selecting uplift learners"):
        summary = fit_uplift(
            data,
            treatment,
            control,
            outcome,
            model_out,
            value=value,
            features=feats,
            seed=settings.seed,
            propensity=propensity,
        )
    table = Table(title=f"uplift learners (5-fold cross-fitted), selected: {summary.learner}")
    for col in ("learner", "ips_value", "ips_se", "qini_mean", "reason"):
        table.add_column(col)
    for row in summary.selection.to_dict(orient="records"):
        table.add_row(
            row["learner"],
            f"{row['ips_value']:.5f}",
            f"{row['ips_se']:.5f}",
            f"{row['qini_mean']:.4f}",
            row["reason"],
        )
    console.print(table)
    console.print(f"saved to {summary.model_dir} (arms {summary.arms}, control {summary.control})")


@uplift_app.command("predict")
def uplift_predict(
    model: Annotated[Path, typer.Option(help="Directory written by `uplift fit`.")],
    data: Annotated[Path, typer.Option(help="Rows to score (CSV or parquet).")],
    out: Annotated[Path, typer.Option(help="Output file (CSV or parquet by suffix).")],
    id_column: Annotated[str | None, typer.Option(help="Id column to copy through.")] = None,
) -> None:
    """Predict outcomes per arm and uplift per treatment arm for every row."""
    from training.generic import predict_uplift

    load_settings()
    with console.status("scoring"):
        result = predict_uplift(model, data, out, id_column=id_column)
    console.print(f"wrote {len(result)} rows x {result.shape[1]} columns to {out}")
