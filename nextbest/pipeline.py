"""The end-to-end job on embedded defaults: generate, resolve, build features, train, score.

Each step is one typed function call; ``run_pipeline`` chains them and reports progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def build_features(settings: Settings, progress: Progress | None = None) -> dict[str, Any]:
    """Feature tables from the unified record, ``feast apply`` and materialisation.

    Returns the written tables and the wall seconds of each part (``build``, ``apply``,
    ``materialize``).
    """
    import pandas as pd

    from customers.feast_store import apply, materialize
    from customers.features import build_feature_tables
    from decisions.catalog import load_catalog
    from decisions.ledger import Ledger, consent_records

    seconds: dict[str, float] = {}
    terms = load_catalog(settings.catalog).terms()
    t = time.perf_counter()
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
        settings.as_of,
        months=settings.snapshot_months,
        progress=progress,
        workers=settings.feature_workers,
        extra_consent=extra,
        terms=terms,
        salt=settings.identifier_salt,
    )
    seconds["build"] = time.perf_counter() - t
    t = time.perf_counter()
    apply(settings, terms)
    seconds["apply"] = time.perf_counter() - t
    t = time.perf_counter()
    materialize(settings, end=settings.as_of)
    seconds["materialize"] = time.perf_counter() - t
    if ledger is not None:
        ledger.record_build(watermark)
    return {
        "tables": {k: str(v) for k, v in paths.items()},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


@dataclass
class PipelineReport:
    """What each step of the pipeline produced."""

    steps: dict[str, Any] = field(default_factory=dict)


def run_pipeline(
    settings: Settings, on_step: Callable[[str], None] | None = None, channel: str = "email"
) -> PipelineReport:
    """Generate data, resolve identities, build features, train and batch-score."""
    from batch.run import score_customers
    from customers.corrections import decisions_path, load_decisions
    from customers.identity import resolve_generated
    from demo.generate import generate
    from training.train import train

    report = PipelineReport()

    def step(name: str, fn: Callable[[], Any]) -> None:
        if on_step:
            on_step(name)
        report.steps[name] = fn()
        log.info("pipeline step %s done", name)

    step(
        "generate",
        lambda: generate(settings.customers, settings.seed, settings.raw_dir, as_of=settings.as_of),
    )
    # Human link/split decisions of this home are honoured here as in `nextbest resolve`.
    decisions = load_decisions(decisions_path(settings.root))
    step(
        "resolve",
        lambda: resolve_generated(settings.raw_dir, settings.unified_dir, decisions=decisions),
    )
    step("features", lambda: build_features(settings))
    step("train", lambda: train(settings))
    step(
        "score",
        lambda: score_customers(
            settings,
            channel=channel,
            as_of=settings.as_of,
            out=settings.root / "scores" / f"{channel}.parquet",
        ),
    )
    return report
