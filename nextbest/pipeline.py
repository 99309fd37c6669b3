"""The end-to-end job on embedded defaults: generate (or ingest), resolve, build features,
train, score.

Each step is one typed function call; ``run_pipeline`` chains them and reports progress.
With ``settings.sources`` (a sources file) the data are a team's exports: ``ingest``
validates them against the source contract and stages them, and every later step reads
the staged tables instead of the demo generator's exports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nextbest.batch.run import decide_customers
from nextbest.core.api_keys import create_key, write_secret
from nextbest.core.errors import InputError
from nextbest.core.settings import Settings
from nextbest.core.vocabulary import API_SCOPES
from nextbest.customers.as_of import AsOf, resolve_as_of
from nextbest.customers.contract import Terms
from nextbest.customers.correction_checks import CurrentIdentity, check_requests
from nextbest.customers.corrections import decisions_path, load_decisions, record_decisions
from nextbest.customers.feast_store import apply, materialize
from nextbest.customers.features import build_feature_tables
from nextbest.customers.identity import ResolutionSettings, resolve_records
from nextbest.customers.identity_io import with_stable_ids, write_result
from nextbest.customers.sources.coded_contract import contract_source_data
from nextbest.customers.sources.files import load_source_files, read_staged, stage_tables
from nextbest.customers.sources.identity_records import CANONICAL_COLUMNS, load_canonical_records
from nextbest.customers.tombstone import home_tombstone, tombstoned_records
from nextbest.decisions.catalog import load_catalog
from nextbest.decisions.ledger import Ledger, consent_records
from nextbest.demo.generate import generate
from training.train import train
from training.truth_evaluation import evaluate_against_truth

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def contract_terms(settings: Settings) -> Any:
    """The catalog's channels, purposes, action ids (with the response models they name)
    and products: the values the contract allows."""

    catalog = load_catalog(settings.catalog)
    terms = catalog.terms()
    arms = {a.id for a in catalog.actions} | {a.arm for a in catalog.actions}
    return Terms(
        terms.channels, terms.purposes, action_ids=tuple(sorted(arms)), products=terms.products
    )


def ingest(settings: Settings, data_dir: Path | None = None) -> dict[str, Any]:
    """Read the files named by ``settings.sources``, validate every table against the
    source contract and the catalog, and only then stage them under
    ``settings.contract_dir`` (a bad file raises and leaves the previous stage as it was).

    ``data_dir``: the folder the sources file's paths are relative to (default: its own).
    """

    if settings.sources is None:
        raise InputError("no sources file: pass --sources or set NEXTBEST_SOURCES")
    tables = load_source_files(settings.sources, base_dir=data_dir, terms=contract_terms(settings))
    stage_tables(tables, settings.contract_dir)
    return {"tables": {k: len(v) for k, v in tables.items()}, "dir": str(settings.contract_dir)}


#: The staged contract's identity records (under ``settings.contract_dir``).
STAGED = "identity_records.parquet"


def identity_records(settings: Settings) -> Any:
    """The canonical identity records the next resolve reads, the product's record ids:
    the staged contract's ``identity_records`` with ``settings.sources``, else the demo
    generator's exports under ``raw/``; records of erased persons (the tombstone) left out.
    """

    if settings.sources is not None:
        records = read_staged(settings.contract_dir)["identity_records"]
        records = records.loc[:, list(CANONICAL_COLUMNS)]
    elif not settings.raw_dir.exists() and (settings.contract_dir / STAGED).exists():
        raise InputError(
            f"no generated exports under {settings.raw_dir}; this home's records are staged "
            "from a sources file: pass --sources (or set NEXTBEST_SOURCES)"
        )
    else:
        records = load_canonical_records(settings.raw_dir)
    erased = tombstoned_records(records, home_tombstone(settings), settings.identifier_salt)
    return records.loc[~erased].reset_index(drop=True) if erased.any() else records


def resolve(
    settings: Settings,
    progress: Callable[[str], None] | None = None,
    engine: str = "duckdb",
    use_splink: bool = True,
) -> Any:
    """Identity resolution of :func:`identity_records`, written to
    ``settings.unified_dir``; the human link/split decisions of this home are honoured as
    in ``nextbest resolve``. ``engine`` is Splink's backend (``duckdb`` or ``spark`` on
    ``settings.spark_master``)."""

    decisions = load_decisions(decisions_path(settings.root))
    rs = ResolutionSettings(
        use_splink=use_splink,
        seed=settings.seed,
        engine=engine,
        spark_master=settings.spark_master_url() if engine == "spark" else None,
    )
    result = resolve_records(identity_records(settings), rs, progress, decisions)
    previous = settings.unified_dir / "identity.parquet"
    result = with_stable_ids(result, settings.root, previous, decisions)
    write_result(result, settings.unified_dir)
    return result


def current_identity(settings: Settings) -> Any:
    """What a human decision is checked against
    (:class:`nextbest.customers.correction_checks.CurrentIdentity`): :func:`identity_records` and
    the customers of the last resolve (``unified/identity.parquet``, none before the first)."""

    path = settings.unified_dir / "identity.parquet"
    if path.exists():
        last = pd.read_parquet(path, columns=["record_id", "customer_id"])
        customer_of = pd.Series(last["customer_id"].to_numpy(), index=last["record_id"].astype(str))
    else:
        customer_of = pd.Series(dtype=object)
    return CurrentIdentity(identity_records(settings), customer_of)


def correct_identity(settings: Settings, requests: list[Any], force: bool = False) -> Any:
    """Check human link/split requests (:func:`nextbest.customers.correction_checks.check_requests`)
    against :func:`current_identity` and, only when every one passes, record them in the
    home's decisions file; returns the recorded rows."""

    path = decisions_path(settings.root)
    rows = check_requests(requests, current_identity(settings), load_decisions(path), force)
    record_decisions(path, rows)
    return rows


def build_features(
    settings: Settings, progress: Progress | None = None, as_of: AsOf | None = None
) -> dict[str, Any]:
    """Feature tables from the unified record at the snapshots up to the as-of time,
    ``feast apply`` and materialisation up to it.

    ``as_of``: default :func:`nextbest.customers.as_of.resolve_as_of` (the setting, else the
    data's end). Returns the written tables, the as-of used (``as_of``) and the wall
    seconds of each part (``build``, ``apply``, ``materialize``).
    """

    seconds: dict[str, float] = {}
    terms = load_catalog(settings.catalog).terms()
    as_of = as_of or resolve_as_of(settings)
    t = time.perf_counter()
    sources = None
    if settings.sources is not None:
        staged = read_staged(settings.contract_dir)
        sources = contract_source_data(staged, settings.unified_dir, salt=settings.identifier_salt)
    # Consent sent to the service lives in the ledger: the build reads it beside the
    # export, so a withdrawal survives every rebuild.
    ledger = Ledger(settings.ledger_path) if settings.ledger_path.exists() else None
    records, watermark = consent_records(ledger) if ledger else ([], 0)
    extra = pd.DataFrame.from_records(records) if records else None
    if extra is not None:
        extra["ts"] = pd.to_datetime(extra["ts"], unit="s", utc=True)
    paths = build_feature_tables(
        settings.raw_dir,
        settings.unified_dir,
        settings.features_dir,
        as_of.time,
        months=settings.snapshot_months,
        progress=progress,
        workers=settings.feature_workers,
        sources=sources,
        extra_consent=extra,
        terms=terms,
        salt=settings.identifier_salt,
        tombstone=home_tombstone(settings),
    )
    seconds["build"] = time.perf_counter() - t
    t = time.perf_counter()
    apply(settings, terms)
    seconds["apply"] = time.perf_counter() - t
    t = time.perf_counter()
    materialize(settings, end=as_of.time)
    seconds["materialize"] = time.perf_counter() - t
    if ledger is not None:
        ledger.record_build(watermark)
    left_out = sources[0].left_out if sources is not None else {}
    return {
        "tables": {k: str(v) for k, v in paths.items()},
        "as_of": as_of,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        # rows that named no customer, per table: unresolved and ambiguous identifiers
        "left_out": {t: [n.unresolved, n.ambiguous] for t, n in left_out.items()},
    }


@dataclass
class PipelineReport:
    """What each step of the pipeline produced."""

    steps: dict[str, Any] = field(default_factory=dict)
    #: The demo API key created by this run (shown once), None if a key file existed.
    demo_key: str | None = field(default=None, repr=False)
    #: The as-of time the features and the scoring used.
    as_of: AsOf | None = None


def ensure_demo_key(settings: Settings) -> str | None:
    """A ``demo`` key with every scope when there is no key file yet: created, written to
    ``settings.demo_key_path`` (0600) and returned; None when a key file exists."""

    if settings.api_keys_path.exists():
        return None
    key, _ = create_key(settings.api_keys_path, "demo", API_SCOPES)
    write_secret(settings.demo_key_path, key)
    return key


def run_pipeline(
    settings: Settings,
    on_step: Callable[[str], None] | None = None,
    channel: str = "email",
    on_as_of: Callable[[AsOf], None] | None = None,
) -> PipelineReport:
    """Generate (or, with ``settings.sources``, ingest) data, resolve identities, build
    features, train, evaluate against the generator's truth (generated data only) and
    decide in batch; without a key file, create the ``demo`` API key
    (:func:`ensure_demo_key`).

    The as-of time is resolved once the data is in (:func:`nextbest.customers.as_of.resolve_as_of`),
    handed to ``on_as_of`` and used by the features and the scoring.
    """

    report = PipelineReport()

    def step(name: str, fn: Callable[[], Any]) -> None:
        if on_step:
            on_step(name)
        report.steps[name] = fn()
        log.info("pipeline step %s done", name)

    if settings.sources is None:
        step(
            "generate",
            lambda: generate(
                settings.customers, settings.seed, settings.raw_dir, as_of=settings.as_of
            ),
        )
    else:
        step("ingest", lambda: ingest(settings))
    as_of = resolve_as_of(settings)
    report.as_of = as_of
    if on_as_of:
        on_as_of(as_of)
    step("resolve", lambda: resolve(settings))
    step("features", lambda: build_features(settings, as_of=as_of))
    step("train", lambda: train(settings))
    # Beside training, not in it: only evaluation reads a generator's truth.
    step("evaluate", lambda: evaluate_against_truth(settings, report.steps["train"]))
    step(
        "decide-batch",
        lambda: decide_customers(
            settings,
            channel=channel,
            as_of=as_of.time,
            out=settings.root / "scores" / f"{channel}.parquet",
        ),
    )
    report.demo_key = ensure_demo_key(settings)
    return report
