"""The ``nextbest`` command line: thin shells around the pipeline steps.

Each command parses its options, reads the settings once and calls one typed
function from a package; no logic lives here. The commands live in
``nextbest.commands``, one module per group; this module assembles them into the
app in the order ``nextbest --help`` lists them.
"""

from __future__ import annotations

from nextbest.commands import (
    bench,
    consent,
    data,
    decide_batch,
    features,
    identity,
    keys,
    measure,
    pipeline,
    privacy,
    serve,
    train,
    triggers,
)
from nextbest.commands.common import CleanTyper

app = CleanTyper(no_args_is_help=True, help="nextbest: next-best-action service.")

app.command("generate")(data.generate_cmd)
app.command("resolve")(data.resolve_cmd)
app.command("ingest")(data.ingest_cmd)
app.command("forget")(privacy.forget_cmd)
app.command("decide-batch")(decide_batch.decide_batch_cmd)
app.command("score", hidden=True)(decide_batch.score_cmd)
app.command("serve")(serve.serve_cmd)
app.command("report")(measure.report_cmd)
app.command("evaluate-policy")(measure.evaluate_policy_cmd)
app.command("bench")(bench.bench_cmd)
app.command("train")(train.train_cmd)
app.command("pipeline")(pipeline.pipeline_cmd)

app.add_typer(features.features_app, name="features")
app.add_typer(train.uplift_app, name="uplift")
app.add_typer(bench.benchmark_app, name="benchmark")
app.add_typer(consent.consent_app, name="consent")
app.add_typer(identity.identity_app, name="identity")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(privacy.retention_app, name="retention")
app.add_typer(triggers.triggers_app, name="triggers")
app.add_typer(triggers.outbox_app, name="outbox")


def main() -> None:
    """Entry point for ``python -m nextbest``."""
    app()
