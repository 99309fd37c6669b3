"""`nextbest bench` (the benchmark suite) and `benchmark hillstrom` (external data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from nextbest.commands.common import CleanTyper, console, load_settings
from nextbest.core.settings import PROJECT_ROOT

benchmark_app = CleanTyper(no_args_is_help=True, help="External benchmarks.")


def bench_cmd(
    home: Annotated[Path, typer.Option(help="World to benchmark (built if missing).")] = Path(
        "/tmp/bench_world"
    ),
    customers: Annotated[int, typer.Option(help="Customers in the world.")] = 20_000,
    parts: Annotated[
        str, typer.Option(help="Comma list of http,inprocess,batch,pipeline,allocation.")
    ] = "http,inprocess,batch,pipeline,allocation",
    pipeline_size: Annotated[
        list[int] | None, typer.Option(help="Pipeline sizes (repeatable).")
    ] = None,
    batch_customers: Annotated[int, typer.Option(help="Customers in the batch bench.")] = 1_000_000,
    spark: Annotated[bool, typer.Option(help="Also the Spark batch path.")] = True,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Run nothing: list the results files older than the source they measure "
            "(exit 1 if any).",
        ),
    ] = False,
) -> None:
    """Run the benchmark suite; tables print, figures go to benchmarks/results/*.json."""
    import sys

    if str(PROJECT_ROOT) not in sys.path:  # benchmarks/ lives beside the packages
        sys.path.insert(0, str(PROJECT_ROOT))
    from benchmarks.suite import SuiteConfig, run_suite

    if check:
        _check_results(SuiteConfig().results_dir)
        return

    cfg = SuiteConfig(
        home=home,
        customers=customers,
        parts=tuple(p.strip() for p in parts.split(",") if p.strip()),
        pipeline_sizes=pipeline_size or [100_000],
        batch_customers=batch_customers,
        batch_spark=spark,
    )
    run_suite(cfg)
    console.print(f"[green]results in[/] {cfg.results_dir}")


def _check_results(results_dir: Path) -> None:
    """Print every stale results file with why; exit 1 if there is one."""
    from benchmarks.sources import stale_results

    stale = stale_results(results_dir)
    if not stale:
        console.print(f"every results file in {results_dir} measures the current source")
        return
    table = Table(title=f"stale results in {results_dir}")
    table.add_column("results file")
    table.add_column("why")
    for name, why in stale.items():
        table.add_row(f"{name}.json", why)
    console.print(table)
    raise typer.Exit(1)


@benchmark_app.command("hillstrom")
def benchmark_hillstrom(
    json_out: Annotated[Path, typer.Option("--json", help="Write every figure to this file.")],
    data: Annotated[Path | None, typer.Option(help="Hillstrom CSV (default: shared data).")] = None,
    outcome: Annotated[
        list[str] | None, typer.Option(help="Outcome(s): visit, conversion, spend (default all).")
    ] = None,
) -> None:
    """Run our learners and the causalml/sklift references on the Hillstrom split."""
    from training.hillstrom import DEFAULT_HILLSTROM_PATH, OUTCOMES, run_hillstrom

    load_settings()
    outcomes = outcome or list(OUTCOMES)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("hillstrom", total=None)
        result = run_hillstrom(
            data or DEFAULT_HILLSTROM_PATH,
            outcomes=outcomes,
            json_path=json_out,
            on_step=lambda label: progress.update(task, description=label),
        )
    for name, res in result["outcomes"].items():
        table = Table(title=f"Hillstrom {name} (test rows); selected: {res['selected']}")
        for col in (
            "learner",
            "qini W",
            "qini M",
            "auuc W",
            "auuc M",
            "up@30 W",
            "up@30 M",
            "IPS value",
            "SE",
            "DR value",
            "fit s",
        ):
            table.add_column(col, justify="right" if col != "learner" else "left")
        for r in res["learners"]:
            dr = "" if r["dr_value"] is None else f"{r['dr_value']:.4f}"
            table.add_row(
                r["learner"] + (" *" if r["selected"] else ""),
                *(
                    f"{r[f'{m}_{a}']:.4f}"
                    for m in ("qini", "auuc", "uplift_at_30")
                    for a in ("Womens E-Mail", "Mens E-Mail")
                ),
                f"{r['ips_value']:.4f}",
                f"{r['ips_se']:.4f}",
                dr,
                f"{r['fit_seconds']:.1f}",
            )
        for b, v in res["baselines"].items():
            if "ips_value" in v:
                ips = (f"{v['ips_value']:.4f}", f"{v['ips_se']:.4f}")
                table.add_row(b, *[""] * 6, *ips, "", "")
            else:  # random scores: Qini only (mean over draws), no policy
                qini = (f"{v[f'qini_{a}']:.4f}" for a in ("Womens E-Mail", "Mens E-Mail"))
                table.add_row(b, *qini, *[""] * 8)
        console.print(table)
        console.print(f"selection: {res['selection_reason']}")
    console.print(f"figures written to {json_out}")
