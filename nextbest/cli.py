"""The ``nextbest`` command line: thin shells around the pipeline steps.

Each command parses its options, reads the settings once and calls one typed
function from a package; no logic lives here.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

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
from rich.table import Table

from core.errors import MissingInputError
from core.settings import PROJECT_ROOT, Settings, get_settings

console = Console(stderr=True)

# Exceptions that are the user's to fix, by the module that defines them: one loaded
# only if that module was imported (an error of a type never imported cannot occur).
_USER_ERRORS = (
    ("core.errors", "NextbestError"),
    ("decisions.catalog", "ConfigError"),
    ("decisions.runtime", "StartupError"),
    ("batch.io", "BatchInputError"),
)


def _user_error_types() -> tuple[type[BaseException], ...]:
    found = (getattr(sys.modules.get(m), name, None) for m, name in _USER_ERRORS)
    return tuple(t for t in found if isinstance(t, type))


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
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


class _Typer(typer.Typer):
    """A Typer app whose every command reports user errors without a traceback."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        register = super().command(*args, **kwargs)
        return lambda fn: register(_fail_cleanly(fn))


app = _Typer(no_args_is_help=True, help="nextbest: next-best-action service.")
features_app = _Typer(no_args_is_help=True, help="Build and serve features with Feast.")
uplift_app = _Typer(no_args_is_help=True, help="Uplift models on your own experiment export.")
benchmark_app = _Typer(no_args_is_help=True, help="External benchmarks.")
identity_app = _Typer(
    no_args_is_help=True, help="Human corrections to identity resolution (link, split, review)."
)
app.add_typer(features_app, name="features")
app.add_typer(uplift_app, name="uplift")
app.add_typer(benchmark_app, name="benchmark")
consent_app = _Typer(no_args_is_help=True, help="Consent kept in the event ledger.")
app.add_typer(consent_app, name="consent")
app.add_typer(identity_app, name="identity")
keys_app = _Typer(no_args_is_help=True, help="API keys of the decision service.")
app.add_typer(keys_app, name="keys")
retention_app = _Typer(no_args_is_help=True, help="Delete what is older than retention allows.")
app.add_typer(retention_app, name="retention")

SourcesOption = Annotated[
    Path | None,
    typer.Option(
        "--sources",
        help="Sources file mapping your exports onto the source contract "
        "(docs/bring-your-own-data.md); default: the demo generator's exports.",
    ),
]


#: Libraries whose INFO lines say nothing to a user of the CLI (Feast refreshes its registry
#: cache on every lookup and says so each time).
_QUIET_LOGGERS = ("feast.infra.registry.registry",)


def _settings(**overrides: object) -> Settings:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return get_settings(**{k: v for k, v in overrides.items() if v is not None})


# --- generate (demo.generate) -------------------------------------------------------


@app.command("generate")
def generate_cmd(
    customers: Annotated[
        int | None, typer.Option("--customers", help="Persons to generate (default: settings).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Random seed (default: settings).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: settings raw_dir).")
    ] = None,
) -> None:
    """Generate synthetic source-system exports (and their truth under truth/)."""
    from demo.generate import OUTPUT_FILES, generate

    settings = _settings(customers=customers, seed=seed)
    out_dir = out or settings.raw_dir
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"generating {settings.customers:,} persons", total=len(OUTPUT_FILES))
        summary = generate(
            settings.customers,
            settings.seed,
            out_dir,
            progress=lambda name: bar.update(task, advance=1, description=f"wrote {name}"),
        )
    table = Table("file", "rows", title=f"{summary.n_persons:,} persons -> {out_dir}")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)


# --- resolve (customers.identity) ---------------------------------------------------------


@app.command("resolve")
def resolve_cmd(
    records: Annotated[
        Path | None,
        typer.Option("--records", help="Canonical records (CSV/parquet); default: generated."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Assignments file (CSV/parquet).")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Truth (record_id, person_id) for quality.")
    ] = None,
    no_splink: Annotated[
        bool, typer.Option("--no-splink", help="Deterministic links only.")
    ] = False,
    engine: Annotated[
        str, typer.Option("--engine", help="Splink backend: duckdb (in process) or spark.")
    ] = "duckdb",
    sources: SourcesOption = None,
) -> None:
    """Resolve records into customers (record_id, customer_id, match_rule, probability).

    With --sources: validate and stage your exports first, then resolve their identity
    records into the unified record the later steps read.
    """
    from customers.corrections import decisions_path
    from customers.identity import ENGINES, ResolutionSettings, run_resolve
    from customers.quality import evaluate_resolution, log_quality
    from customers.tombstone import home_tombstone

    if engine not in ENGINES:
        console.print(f"[red]--engine must be one of {', '.join(ENGINES)}, not {engine!r}[/red]")
        raise typer.Exit(2)
    settings = _settings(sources=sources)
    if sources is not None:
        _resolve_sources(settings)
        return
    steps = ["normalise", "deterministic links", "probabilistic links (splink)"]
    with _progress() as bar:
        task = bar.add_task("resolving", total=len(steps) + 1)

        def on_step(name: str) -> None:
            done = steps.index(name) if name in steps else len(steps)
            bar.update(task, description=f"resolve: {name}", completed=done)

        run = run_resolve(
            records,
            out,
            settings.raw_dir,
            settings.unified_dir,
            ResolutionSettings(
                use_splink=not no_splink,
                seed=settings.seed,
                engine=engine,
                tombstone=home_tombstone(settings),
                tombstone_salt=settings.identifier_salt,
            ),
            progress=on_step,
            decisions_path=decisions_path(settings.root),
        )
        bar.update(task, completed=len(steps) + 1, description="resolve: done")
    s = run.result.stats
    console.print(
        f"[green]{s['n_records']:,} records -> {s['n_customers']:,} customers[/], "
        f"{s['n_households']:,} households, {s['n_refused_links']:,} refused links, "
        f"{s['n_forced_links']:,} forced links, {s['n_review_pairs']:,} pairs to review "
        f"({s['total_s']:.1f} s); wrote {', '.join(str(p) for p in run.written.values())}"
    )
    quality = evaluate_resolution(run.result, truth, settings.raw_dir if records is None else None)
    if quality is not None:
        all_records, linkable = quality
        table = Table("metric", "all records", "linkable records", title="identity quality")
        for k, v in all_records.items():
            w = linkable.get(k, "")
            fmt = (lambda x: f"{x:.4f}") if isinstance(v, float) else (lambda x: f"{x:,}")
            table.add_row(k, fmt(v), fmt(w) if w != "" else "")
        Console().print(table)
        log_quality(
            all_records,
            settings.tracking_uri,
            settings.experiment,
            linkable=linkable,
            extra={k: v for k, v in s.items() if isinstance(v, int | float)},
        )


def _resolve_sources(settings: Settings) -> None:
    from nextbest.pipeline import ingest, resolve

    with console.status(f"validating and staging {settings.sources}"):
        staged = ingest(settings)
    rows = ", ".join(f"{k} {v:,}" for k, v in staged["tables"].items())
    console.print(f"[green]staged[/] {rows} in {staged['dir']}")
    with console.status("resolving identities"):
        s = resolve(settings).stats
    console.print(
        f"[green]{s['n_records']:,} records -> {s['n_customers']:,} customers[/], "
        f"{s['n_households']:,} households; wrote {settings.unified_dir}"
    )


@app.command("ingest")
def ingest_cmd(
    sources: Annotated[Path, typer.Option("--sources", help="Sources file (sources.yaml).")],
) -> None:
    """Validate your exports against the source contract and stage them (nothing is
    written unless every table is valid)."""
    from nextbest.pipeline import ingest

    settings = _settings(sources=sources)
    staged = ingest(settings)
    rows = ", ".join(f"{k} {v:,}" for k, v in staged["tables"].items())
    console.print(f"[green]valid[/]: {rows}; staged in {staged['dir']}")


def _decide(record_a: str, record_b: str, decision: str, reason: str) -> None:
    from customers.corrections import decisions_path, record_decision

    path = decisions_path(_settings().root)
    record_decision(path, record_a, record_b, decision, reason)
    console.print(
        f"[green]recorded[/]: {decision} {record_a} {record_b}; every later "
        f"`nextbest resolve` honours it ({path})"
    )


@identity_app.command("link")
def identity_link_cmd(
    record_a: Annotated[str, typer.Argument(help="record_id of one record.")],
    record_b: Annotated[str, typer.Argument(help="record_id of the other record.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (listed with the link).")] = "",
) -> None:
    """Record that two records are one person; later runs merge them whatever the guard says."""
    _decide(record_a, record_b, "link", reason)


@identity_app.command("split")
def identity_split_cmd(
    record_a: Annotated[str, typer.Argument(help="record_id of one record.")],
    record_b: Annotated[str, typer.Argument(help="record_id of the other record.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the decision).")] = "",
) -> None:
    """Record that two records are different people; later runs never merge them."""
    _decide(record_a, record_b, "split", reason)


@identity_app.command("review")
def identity_review_cmd(
    reviewed: Annotated[
        Path, typer.Argument(help="A review_pairs.csv with the decision column filled in.")
    ],
) -> None:
    """Record the link/split decisions of a filled-in review file."""
    from customers.corrections import decisions_from_review, decisions_path

    path = decisions_path(_settings().root)
    if not reviewed.exists():
        raise MissingInputError(f"review file {reviewed} does not exist")
    n = decisions_from_review(reviewed, path)
    console.print(f"[green]recorded {n:,} decisions[/] in {path}")


# --- features (customers.features, feature_repo) ------------------------------------------


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@features_app.command("build")
def features_build(sources: SourcesOption = None) -> None:
    """Build feature tables from the unified record, apply the Feast repo and materialise."""
    from nextbest.pipeline import build_features

    settings = _settings(sources=sources)
    with _progress() as bar:
        task = bar.add_task("feature snapshots", total=None)
        out = build_features(settings, progress=lambda i, n: bar.update(task, completed=i, total=n))
    console.print(
        f"[green]features built[/]: {len(out['tables'])} tables, online store materialised"
    )


@features_app.command("apply")
def features_apply() -> None:
    """Register the Feast definitions (entities, views, feature service) in the registry."""
    from customers.feast_store import apply
    from decisions.catalog import load_catalog

    settings = _settings()
    apply(settings, load_catalog(settings.catalog).terms())
    console.print("[green]feast apply done[/]")


@features_app.command("materialize")
def features_materialize() -> None:
    """Load the latest feature values up to ``as_of`` into the online store."""
    from customers.feast_store import materialize

    settings = _settings()
    with console.status("materialising"):
        materialize(settings, end=settings.as_of)
    console.print("[green]materialised[/]")


@features_app.command("show")
def features_show(
    customer: Annotated[str, typer.Argument(help="Identifier value, e.g. a customer id or email.")],
    id_type: Annotated[
        str, typer.Option(help="customer_id|email|phone|crm_id|loyalty_id|device_id")
    ] = "customer_id",
) -> None:
    """Print one customer's unified record as the online store serves it."""
    from customers.feast_store import feature_store, lookup_customer, online_features
    from customers.feature_schema import all_feature_names
    from customers.normalise import identifier_key
    from decisions.catalog import load_catalog

    settings = _settings()
    store = feature_store(settings)
    cid = (
        customer
        if id_type == "customer_id"
        else lookup_customer(store, identifier_key(id_type, customer, settings.identifier_salt))
    )
    if cid is None:
        console.print(f"[red]no customer for that {id_type}[/]")
        raise typer.Exit(1)
    names = all_feature_names(load_catalog(settings.catalog).terms())
    row = online_features(store, [cid], settings.as_of.timestamp(), names)[0]
    table = Table("feature", "value", title=f"customer {cid}")
    for n, v in zip(names, row, strict=True):
        table.add_row(n, f"{v:g}")
    Console().print(table)


@consent_app.command("history")
def consent_history_cmd(
    customer: Annotated[str, typer.Argument(help="Identifier value, e.g. a customer id or email.")],
    id_type: Annotated[
        str, typer.Option(help="customer_id|email|phone|crm_id|loyalty_id|device_id")
    ] = "customer_id",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Print a customer's consent changes sent to the service, in event time, with source
    and actor (the export's records are in ``raw/consent.parquet``)."""
    import orjson

    from decisions.ledger import Ledger, consent_history

    settings = _settings()
    cid = customer
    if id_type != "customer_id":
        from customers.feast_store import feature_store, lookup_customer
        from customers.normalise import identifier_key

        cid = lookup_customer(feature_store(settings), identifier_key(id_type, customer))
        if cid is None:
            console.print(f"[red]no customer for that {id_type}[/]")
            raise typer.Exit(1)
    history = (
        consent_history(Ledger(settings.ledger_path), cid) if settings.ledger_path.exists() else []
    )
    if as_json:
        for h in history:
            typer.echo(orjson.dumps(h).decode())
        return
    table = Table(
        "event time",
        "purpose",
        "channel",
        "granted",
        "legal basis",
        "source",
        "actor",
        "event id",
        title=f"consent changes of {cid}",
    )
    for h in history:
        table.add_row(
            h["event_time"],
            h["purpose"],
            h["channel"],
            str(h["granted"]).lower(),
            h["legal_basis"] or "",
            h["source"],
            h["actor"],
            h["event_id"],
        )
    Console().print(table)


# --- privacy: forget, retention (decisions.privacy) ----------------------------------------


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@app.command("forget")
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

    from decisions.privacy import forget

    settings = _settings()
    also = None
    truth = settings.raw_dir / "truth"
    if truth.is_dir():
        # The product never reads the generator's truth; the generator erases its own.
        from demo.truth import erase_person

        also = functools.partial(erase_person, truth)
    report = forget(settings, identifier, id_type, reason, _actor(), also=also)
    typer.echo(orjson.dumps(report.__dict__).decode())


@retention_app.command("apply")
def retention_apply_cmd() -> None:
    """Delete decision-log days, ledger events and source-export events older than the
    retention settings (NEXTBEST_RETENTION_*_DAYS); consent is kept. Audited."""
    import orjson

    from decisions.privacy import apply_retention

    report = apply_retention(_settings(), _actor())
    typer.echo(orjson.dumps(report.__dict__).decode())


# --- train, uplift, benchmark (training) ---------------------------------------------------


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

    settings = _settings()
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

    _settings()
    with console.status("scoring"):
        result = predict_uplift(model, data, out, id_column=id_column)
    console.print(f"wrote {len(result)} rows x {result.shape[1]} columns to {out}")


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

    _settings()
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


# --- decide, serve, score (serving) -------------------------------------------------------


@app.command("score")
def score_cmd(
    channel: Annotated[str, typer.Option(help="Channel to decide for, e.g. email.")],
    out: Annotated[Path, typer.Option(help="Decisions parquet file to write.")],
    as_of: Annotated[
        str | None, typer.Option(help="Decision/feature time (ISO); default settings.as_of.")
    ] = None,
    customers: Annotated[
        Path | None, typer.Option(help="File of customer ids (one a line, or parquet).")
    ] = None,
    engine: Annotated[str, typer.Option(help="local or spark.")] = "local",
    log_decisions: Annotated[bool, typer.Option(help="Append records to the log.")] = False,
    sources: SourcesOption = None,
) -> None:
    """Batch-score every customer (or a list) on a channel with the shared decision engine."""
    import pandas as pd

    from batch.run import score_customers

    settings = _settings(sources=sources)
    when = None
    if as_of is not None:
        t = pd.Timestamp(as_of)
        when = (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).to_pydatetime()
    with _progress() as bar:
        task = bar.add_task(f"scoring {channel}", total=None)
        summary = score_customers(
            settings,
            channel,
            when,
            out,
            customer_ids=customers,
            engine=engine,  # type: ignore[arg-type]
            log_decisions=log_decisions,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    table = Table(title=f"{summary.customers:,} customers on {channel} ({summary.engine})")
    table.add_column("action")
    table.add_column("chosen", justify="right")
    table.add_column("excluded by rule", justify="left")
    for action, n in summary.chosen.items():
        why = ", ".join(f"{r} {c:,}" for r, c in summary.excluded.get(action, {}).items())
        table.add_row(action, f"{n:,}", why)
    for action, reasons in summary.excluded.items():
        if action not in summary.chosen:
            table.add_row(action, "0", ", ".join(f"{r} {c:,}" for r, c in reasons.items()))
    console.print(table)
    console.print(
        f"holdout {summary.holdout:,}, explored {summary.explored:,}; "
        f"{summary.timings_s.get('total', 0):.1f} s ({summary.decisions_per_second:,.0f}/s); "
        f"wrote {summary.out}"
    )


@app.command("serve")
def serve_cmd(
    port: Annotated[int | None, typer.Option(help="Port (default settings.port).")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default settings.host).")] = None,
    sources: SourcesOption = None,
) -> None:
    """Start the BentoML decision service (``bentoml serve serving.service:NextBest``).

    Exits 1 with the message when the service cannot start (also when its workers fail),
    and stops the whole server on SIGTERM/SIGINT (exit status 128 + the signal).
    """
    import os

    from decisions.runtime import StartupError, preflight
    from nextbest.supervise import supervise

    settings = _settings(port=port, host=host, sources=sources)
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
    outcome = supervise(
        cmd,
        env,
        PROJECT_ROOT,
        is_up=functools.partial(_serving, settings.host, settings.port),
        start_timeout=settings.serve_start_timeout_seconds,
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


# --- report, evaluate-policy (measurement) --------------------------------------------------


@app.command("report")
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

    from measurement.report import run_report

    settings = _settings()
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


@app.command("evaluate-policy")
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

    from measurement.ope import evaluate_policy_file

    settings = _settings()
    try:
        res = evaluate_policy_file(
            candidate,
            log or settings.decision_log_dir,
            outcomes,
            window=timedelta(days=window_days),
            since=since,
            until=until,
            reward=reward,  # type: ignore[arg-type]
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


# --- bench (benchmarks/) ---------------------------------------------------------------------


@app.command("bench")
def bench_cmd(
    home: Annotated[Path, typer.Option(help="World to benchmark (built if missing).")] = Path(
        "/tmp/bench_world"
    ),
    customers: Annotated[int, typer.Option(help="Customers in the world.")] = 20_000,
    parts: Annotated[str, typer.Option(help="Comma list of http,inprocess,batch,pipeline.")] = (
        "http,inprocess,batch,pipeline"
    ),
    pipeline_size: Annotated[
        list[int] | None, typer.Option(help="Pipeline sizes (repeatable).")
    ] = None,
    batch_customers: Annotated[int, typer.Option(help="Customers in the batch bench.")] = 1_000_000,
    spark: Annotated[bool, typer.Option(help="Also the Spark batch path.")] = True,
) -> None:
    """Run the benchmark suite; tables print, figures go to benchmarks/results/*.json."""
    import sys

    if str(PROJECT_ROOT) not in sys.path:  # benchmarks/ lives beside the packages
        sys.path.insert(0, str(PROJECT_ROOT))
    from benchmarks.suite import SuiteConfig, run_suite

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


# --- pipeline --------------------------------------------------------------------------------


@app.command("train")
def train_cmd(sources: SourcesOption = None) -> None:
    """Train, evaluate, log to MLflow, register, and gate promotion to ``champion``."""
    from training.train import train

    settings = _settings(sources=sources)
    with console.status("training (Feast training set, learners, MLflow)"):
        result = train(settings)
    console.print(
        f"[green]model v{result.model_version}[/] ({result.learner}) -> "
        f"[bold]{result.alias}[/]: {result.reason}"
    )


@app.command("pipeline")
def pipeline_cmd(
    customers: Annotated[int | None, typer.Option(help="Persons to generate.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed.")] = None,
    sources: SourcesOption = None,
    channel: Annotated[str, typer.Option(help="Channel the batch scoring decides for.")] = "email",
) -> None:
    """Generate (or, with --sources, validate and stage your exports), resolve, build
    features, train and batch-score on embedded defaults."""
    from nextbest.pipeline import run_pipeline

    settings = _settings(customers=customers, seed=seed, sources=sources)
    first = "generate" if sources is None else "ingest"
    steps = [first, "resolve", "features", "train", "score"]
    with _progress() as bar:
        task = bar.add_task("pipeline", total=len(steps))

        def on_step(name: str) -> None:
            bar.update(task, description=f"pipeline: {name}", completed=steps.index(name))

        report = run_pipeline(settings, on_step=on_step, channel=channel)
        bar.update(task, completed=len(steps), description="pipeline: done")
    console.print(f"[green]pipeline done[/] in {settings.root}")
    if report.demo_key is not None:
        console.print(
            f"API key [bold]demo[/] (every scope; shown once, saved to "
            f"{settings.demo_key_path}):\n{report.demo_key}",
            highlight=False,
            soft_wrap=True,
        )


# --- keys (core.api_keys) -----------------------------------------------------------


@keys_app.command("create")
def keys_create_cmd(
    name: Annotated[str, typer.Argument(help="Who holds the key (logs, event actor).")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="decide, events or admin (repeat for more).")
    ],
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Requests per second over the whole service."),
    ] = None,
    burst: Annotated[
        int | None, typer.Option("--burst", help="Requests at once (default: the rate).")
    ] = None,
) -> None:
    """Create a key and print it once on stdout (only its hash is stored)."""
    from core.api_keys import create_key

    settings = _settings()
    key, record = create_key(settings.api_keys_path, name, scope, rate, burst)
    console.print(
        f"key [bold]{escape(record.name)}[/] ({', '.join(record.scopes)}) added to "
        f"{settings.api_keys_path}; it is shown once:",
        highlight=False,
    )
    typer.echo(key)


@keys_app.command("list")
def keys_list_cmd() -> None:
    """List the keys: names, scopes, rate limits, creation times."""
    from core.api_keys import load_keys

    settings = _settings()
    table = Table("name", "scopes", "rate/s", "burst", "created", "from")
    for source, records in (
        ("file", load_keys(settings.api_keys_path)),
        ("settings", settings.api_keys),
    ):
        for r in records:
            table.add_row(
                escape(r.name),
                ", ".join(r.scopes),
                "-" if r.rate_per_second is None else f"{r.rate_per_second:g}",
                "-" if r.burst is None else str(r.burst),
                "-" if r.created is None else r.created.isoformat(),
                escape(source),
            )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke_cmd(
    name: Annotated[str, typer.Argument(help="The key's name.")],
) -> None:
    """Remove a key from the key file; a running service refuses it within a second."""
    from core.api_keys import revoke_key

    settings = _settings()
    revoke_key(settings.api_keys_path, name)
    console.print(f"key [bold]{escape(name)}[/] revoked in {settings.api_keys_path}")


def main() -> None:
    """Entry point for ``python -m nextbest``."""
    app()
