"""Small helpers the analysis notebooks import, so each notebook stays a few thin cells.

Every helper reads the project's own stores under ``settings.home`` (the generated sources
and their truth, the unified record, Feast, MLflow, the decision log). The notebooks take
their world from ``NEXTBEST_HOME`` through :func:`notebook_settings`, so CI points them
at a small world.

The demo measurement loop (:func:`ensure_demo_measurement`) decide in batchs the customers on
a few channels at a few decision times with the shared engine and the champion, appends
the records to the decision log, and draws outcomes for them from ``truth/`` (generated
data only), so ``nextbest report`` and ``nextbest evaluate-policy`` have something real
to measure.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nextbest.batch.io import offline_feature_matrix
from nextbest.batch.run import decide_customers
from nextbest.core.settings import PROJECT_ROOT, Settings, get_settings
from nextbest.core.vocabulary import NO_ACTION
from nextbest.customers.as_of import resolve_as_of
from nextbest.customers.feast_store import feature_store, online_features
from nextbest.customers.feature_schema import all_feature_names
from nextbest.customers.quality import identity_quality, load_truth
from nextbest.customers.sources.coded_exports import load_coded_sources
from nextbest.customers.sources.identity_records import load_canonical_records
from nextbest.decisions.catalog import load_catalog
from nextbest.decisions.engine import DecisionContext, decide
from nextbest.decisions.reasons import Reason
from nextbest.decisions.runtime import load_runtime, stock_vector
from nextbest.measurement.attribution import attribute_outcomes, read_decisions, read_outcomes
from nextbest.measurement.policy_evaluation import rerank_logged
from nextbest.measurement.simulate import simulate_policies
from nextbest.models.registry import configure_mlflow, load_model_by_alias
from training.truth_evaluation import true_response

log = logging.getLogger(__name__)

#: Channels scored by the demo measurement loop, one round each, ``DEMO_SPACING`` apart.
DEMO_CHANNELS: tuple[str, ...] = ("email", "push", "sms", "email")
DEMO_SPACING = timedelta(days=14)
#: Outcomes land strictly inside one round, so attribution is unambiguous.
DEMO_MAX_DELAY = timedelta(days=12)
DEMO_MARKER = "demo_measurement.json"
_PII_COLUMNS = ("email", "phone", "first_name", "last_name", "street", "date_of_birth")


class NotebookWorldError(RuntimeError):
    """The world under ``NEXTBEST_HOME`` lacks a step the notebook needs."""


def notebook_settings() -> Settings:
    """Settings from the environment (``NEXTBEST_HOME``); fails clearly on an empty home."""
    settings = get_settings()
    missing = [
        str(p)
        for p in (settings.raw_dir, settings.unified_dir, settings.features_dir)
        if not p.exists()
    ]
    if missing:
        raise NotebookWorldError(
            f"NEXTBEST_HOME={settings.root} has no {', '.join(missing)}; "
            "run `nextbest pipeline` (or set NEXTBEST_HOME to a built world) first"
        )
    return settings


# --- 01 the unified customer record --------------------------------------------------------


def source_summary(settings: Settings) -> pd.DataFrame:
    """Per source system: records and the share of records carrying each identifier."""
    recs = load_canonical_records(settings.raw_dir)
    ids = ["email", "phone", "crm_id", "loyalty_id", "app_account_id", "device_id"]
    present = recs[ids].notna() & (recs[ids].astype(str) != "")
    out = present.groupby(recs["source"]).mean().add_prefix("has_")
    out.insert(0, "records", recs.groupby("source").size())
    return out.reset_index()


def identity_summary(settings: Settings) -> dict[str, float | int]:
    """Pairwise precision/recall and resolution rate of the unified record against truth."""
    assignments = pd.read_parquet(settings.unified_dir / "identity.parquet")
    return identity_quality(assignments, load_truth(settings.raw_dir / "truth" / "records.parquet"))


def _mask(value: object) -> object:
    """Keep the shape of a personal value, never the value (notebook outputs travel)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text[:1] + "*" * max(len(text) - 1, 0) if text else text


def pick_customer(settings: Settings) -> str:
    """The customer whose record spans the most source systems (ties: most records)."""
    ident = pd.read_parquet(settings.unified_dir / "identity.parquet")
    recs = load_canonical_records(settings.raw_dir)[["record_id", "source"]]
    m = ident.merge(recs, on="record_id")
    spread = m.groupby("customer_id").agg(
        sources=("source", "nunique"), records=("record_id", "size")
    )
    return str(spread.sort_values(["sources", "records"], ascending=False).index[0])


def customer_records(settings: Settings, customer_id: str) -> pd.DataFrame:
    """Every source record resolved to ``customer_id``, with personal values masked."""
    ident = pd.read_parquet(settings.unified_dir / "identity.parquet")
    mine = ident.loc[ident["customer_id"] == customer_id]
    if mine.empty:
        raise KeyError(f"customer {customer_id!r} is not in {settings.unified_dir}")
    recs = load_canonical_records(settings.raw_dir).merge(mine, on="record_id")
    for col in _PII_COLUMNS:
        if col in recs:
            recs[col] = recs[col].map(_mask)
    return recs.sort_values(["source", "record_id"]).reset_index(drop=True)


def customer_timeline(settings: Settings, customer_id: str) -> pd.DataFrame:
    """The customer's events from every system (purchases, activity, cases, consent,
    campaign contacts) as one time-ordered table ``ts, system, event, detail``."""
    src, ids = load_coded_sources(
        settings.raw_dir,
        settings.unified_dir,
        terms=load_catalog(settings.catalog).terms(),
        salt=settings.identifier_salt,
    )
    code = ids.get_indexer([customer_id])[0]  # -1: not a unified customer, no events

    def part(df: pd.DataFrame, ts: str, system: str, event: Any, detail: Any) -> pd.DataFrame:
        d = df.loc[df["customer_id"] == code]
        return pd.DataFrame(
            {
                "ts": pd.to_datetime(d[ts], utc=True),
                "system": system,
                "event": event(d) if callable(event) else event,
                "detail": detail(d),
            }
        )

    parts = [
        part(
            src.baskets,
            "ts",
            "pos",
            "purchase",
            lambda d: d["category"] + " " + d["amount"].round(2).astype(str),
        ),
        part(
            src.activity,
            "ts",
            "web/app",
            lambda d: d["event_type"],
            lambda d: d["category"].astype(str),
        ),
        part(
            src.cases,
            "opened_at",
            "service",
            lambda d: np.where(d["complaint"].astype(bool), "complaint", "case opened"),
            lambda d: "closed " + d["closed_at"].astype(str),
        ),
        part(
            src.consent,
            "ts",
            "consent",
            lambda d: np.where(d["granted"].astype(bool), "granted", "withdrawn"),
            lambda d: d["purpose"] + "/" + d["channel"],
        ),
        part(
            src.contacts,
            "ts",
            "campaign",
            "contacted",
            lambda d: d["channel"] + " " + d["action_id"].astype(str),
        ),
    ]
    out = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    return out.sort_values("ts").reset_index(drop=True)


def customer_online_features(settings: Settings, customer_id: str) -> pd.Series:
    """The customer's features as the decision service reads them from Feast's online store."""
    names = all_feature_names(load_catalog(settings.catalog).terms())
    at = resolve_as_of(settings).time.timestamp()
    X = online_features(feature_store(settings), [customer_id], at, names)
    return pd.Series(X[0], index=names, name=customer_id)


# --- 02 model evaluation ---------------------------------------------------------------------


@dataclass
class ChampionRun:
    """The MLflow run behind the ``champion`` alias."""

    version: str
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]


def champion_run(settings: Settings) -> ChampionRun:
    """The champion's model version, its training run id, params and metrics."""
    # lazy: mlflow takes seconds to import
    import mlflow

    configure_mlflow(settings)
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias(settings.model_name, "champion")
    run = client.get_run(mv.run_id)
    return ChampionRun(str(mv.version), mv.run_id, dict(run.data.params), dict(run.data.metrics))


def run_table(settings: Settings, run_id: str, artifact: str) -> pd.DataFrame:
    """A table the training run logged with ``mlflow.log_table`` (e.g. evaluation/...json)."""
    # lazy: mlflow takes seconds to import
    import mlflow

    configure_mlflow(settings)
    return mlflow.load_table(artifact, run_ids=[run_id]).drop(columns=["run_id"], errors="ignore")


def run_figures(settings: Settings, run_id: str, folder: str = "plots") -> dict[str, Path]:
    """The run's logged figures downloaded to a local folder, by file name."""
    # lazy: mlflow takes seconds to import
    import mlflow

    configure_mlflow(settings)
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=folder))
    return {p.name: p for p in sorted(local.glob("*.png"))}


def champion_importance(settings: Settings, top: int = 20) -> pd.Series:
    """Gain importance of the champion's response model, by feature name."""
    model, _ = load_model_by_alias(settings)
    names = model.feature_names
    imp = model.response.feature_importances()
    # LightGBM and sklearn on numpy name columns ``Column_i`` or ``x<i>``.
    idx = [re.fullmatch(r"(?:Column_|x)(\d+)", str(i)) for i in imp.index]
    imp.index = [
        names[int(m[1])] if m and int(m[1]) < len(names) else i
        for m, i in zip(idx, imp.index, strict=True)
    ]
    return imp.sort_values(ascending=False).head(top)


def hillstrom_table(paths: Sequence[Path] | None = None) -> pd.DataFrame | None:
    """The Hillstrom benchmark figures (``nextbest benchmark hillstrom --json``), if saved.

    Looks in ``benchmarks/results/hillstrom.json`` and ``hillstrom.json`` at the project
    root unless told; returns None when none exists (the benchmark is slow, so the
    notebook does not run it).
    """
    candidates = paths or [
        PROJECT_ROOT / "benchmarks" / "results" / "hillstrom.json",
        PROJECT_ROOT / "hillstrom.json",
    ]
    for path in candidates:
        if Path(path).exists():
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            rows = []
            for outcome, res in data.get("outcomes", {}).items():
                for r in res.get("learners", res.get("table", [])) if isinstance(res, dict) else []:
                    rows.append({"outcome": outcome, **r})
            return pd.DataFrame(rows) if rows else pd.json_normalize(data)
    return None


# --- 03 policy analysis ------------------------------------------------------------------------


def sample_customers(settings: Settings, n: int, seed: int | None = None) -> list[str]:
    """``n`` unified customer ids, sampled reproducibly."""
    ids = pd.read_parquet(settings.unified_dir / "identity.parquet", columns=["customer_id"])
    uniq = np.sort(ids["customer_id"].unique())
    rng = np.random.default_rng(settings.seed if seed is None else seed)
    return rng.choice(uniq, size=min(n, len(uniq)), replace=False).tolist()


def engine_records(
    settings: Settings,
    channel: str,
    customer_ids: Sequence[str] | None = None,
    as_of: datetime | None = None,
    k: int = 10,
    runtime: Any | None = None,
) -> pd.DataFrame:
    """Decision records from the shared engine (``nextbest.decisions.engine.decide``) on offline
    point-in-time features, without writing to the decision log.

    ``k`` is large so every positive-score action is kept in ``ranked`` (for re-ranking).
    """
    runtime = runtime or load_runtime(settings)
    when = as_of or resolve_as_of(settings).time
    ids, X, snap = offline_feature_matrix(settings.features_dir, customer_ids, when, runtime.terms)
    ctx = DecisionContext(
        channel=channel, now=when, k=k, stock=stock_vector(runtime), feature_snapshot_time=snap
    )
    d = decide(X, ids, runtime.plan, ctx)
    return pd.DataFrame(d.records(deterministic_ids=True))


def reason_counts(records: pd.DataFrame) -> pd.DataFrame:
    """Which rule excluded which action how often: rows are actions, columns reason codes."""
    pairs = [
        (e["action_id"], e.get("reason") or e.get("code"))
        for lst in records["excluded"]
        for e in lst
    ]
    if not pairs:
        return pd.DataFrame()
    df = pd.DataFrame(pairs, columns=["action_id", "reason"])
    return pd.crosstab(df["action_id"], df["reason"])


def lever_tradeoff(records: pd.DataFrame, action: str, levers: Sequence[float]) -> pd.DataFrame:
    """Response against value as one action's business lever changes.

    For each lever the logged score parts are re-ranked
    (``nextbest.measurement.policy_evaluation.rerank_logged``) and the model's expectations
    summed per customer: ``share_<action>`` (customers who get it),
    ``incremental_response`` (mean uplift of the chosen action) and
    ``incremental_value`` (mean ``uplift * value - cost`` of the chosen action).
    """
    treated = records.loc[records["group"] != "holdout"].reset_index(drop=True)
    rows = []
    for lever in levers:
        chosen = rerank_logged(treated, {action: float(lever)})
        resp = np.zeros(len(treated))
        val = np.zeros(len(treated))
        for i, (a, ranked) in enumerate(zip(chosen, treated["ranked"], strict=True)):
            for e in ranked:
                if e["action_id"] == a:
                    resp[i] = e["uplift"]
                    val[i] = e["uplift"] * e["value"] - e["cost"]
        rows.append(
            {
                "lever": float(lever),
                f"share_{action}": float((chosen == action).mean()),
                "share_contacted": float((chosen != NO_ACTION).mean()),
                "incremental_response": float(resp.mean()),
                "incremental_value": float(val.mean()),
            }
        )
    return pd.DataFrame(rows)


# --- 04 measurement: the demo loop -------------------------------------------------------------


@dataclass
class DemoMeasurement:
    """Where the demo decisions and outcomes are, and the period they cover."""

    log_dir: Path
    outcomes_path: Path
    since: str
    until: str
    window_days: float
    seed: int
    decisions: int


def person_of_customer(settings: Settings) -> pd.Series:
    """Each unified customer's true person (the majority person of its records)."""
    ident = pd.read_parquet(
        settings.unified_dir / "identity.parquet", columns=["record_id", "customer_id"]
    )
    truth = load_truth(settings.raw_dir / "truth" / "records.parquet")[["record_id", "person_id"]]
    m = ident.merge(truth, on="record_id")
    counts = m.groupby(["customer_id", "person_id"]).size().rename("n").reset_index()
    top = counts.sort_values(["customer_id", "n", "person_id"], ascending=[True, False, True])
    return top.drop_duplicates("customer_id").set_index("customer_id")["person_id"]


def truth_expectations(
    settings: Settings, customer_ids: Sequence[str], actions: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """True response probability and value of ``actions[i]`` for ``customer_ids[i]``.

    ``no_action`` reads ``p_no_action`` and ``value_no_action``. Customers the truth cannot
    place get NaN.
    """
    resp = true_response(settings.raw_dir).set_index("person_id")
    person = person_of_customer(settings).reindex(pd.Index(customer_ids, dtype=object))
    rows = resp.reindex(person.to_numpy())
    p = np.full(len(actions), np.nan)
    v = np.full(len(actions), np.nan)
    acts = np.asarray(actions, dtype=object)
    for a in pd.unique(acts):
        m = acts == a
        if f"p_{a}" in rows:
            p[m] = rows[f"p_{a}"].to_numpy(dtype=float)[m]
            v[m] = rows[f"value_{a}"].to_numpy(dtype=float)[m]
    return p, v


def outcomes_from_truth(
    settings: Settings, decisions: pd.DataFrame, seed: int, max_delay: timedelta = DEMO_MAX_DELAY
) -> pd.DataFrame:
    """Outcome events for logged decisions, drawn from the true response of what was done.

    A decision's customer responds with the truth's probability for the chosen action
    (``p_no_action`` for no action and the holdout); a response is a purchase worth the
    truth's value times mean-one log-normal noise, at a uniform delay below ``max_delay``.
    Returns ``customer_id, ts, type, revenue``.
    """
    chosen = np.where(decisions["group"] == "holdout", NO_ACTION, decisions["chosen_action"])
    p, v = truth_expectations(settings, decisions["customer_id"].tolist(), chosen.tolist())
    rng = np.random.default_rng(seed)
    hit = rng.random(len(decisions)) < np.nan_to_num(p)
    delay = rng.uniform(0, max_delay.total_seconds(), len(decisions))
    noise = rng.lognormal(-0.045, 0.3, len(decisions))
    ts = pd.to_datetime(decisions["decided_at"], utc=True, format="ISO8601")
    return pd.DataFrame(
        {
            "customer_id": decisions["customer_id"].to_numpy()[hit],
            "ts": (ts + pd.to_timedelta(delay, unit="s")).to_numpy()[hit],
            "type": "purchase",
            "revenue": (v * noise)[hit],
        }
    ).assign(ts=lambda d: pd.to_datetime(d["ts"], utc=True))


def ensure_demo_measurement(
    settings: Settings,
    seed: int | None = None,
    channels: Sequence[str] = DEMO_CHANNELS,
    spacing: timedelta = DEMO_SPACING,
) -> DemoMeasurement:
    """Decide in batch for every customer once per channel in ``channels`` (one round every
    ``spacing`` before the as-of time, :func:`nextbest.customers.as_of.resolve_as_of`) with
    ``log_decisions=True``, and write outcomes drawn from the truth to
    ``home/measurement/outcomes.parquet``.

    Idempotent: a marker under ``home/measurement/`` records a finished run, which is
    returned as is. The rounds use ``nextbest.batch.run.decide_customers``, so the records are
    the engine's own, in the project's decision log.
    """
    out_dir = settings.root / "measurement"
    marker = out_dir / DEMO_MARKER
    if marker.exists():
        data = json.loads(marker.read_text(encoding="utf-8"))
        return DemoMeasurement(
            **{
                **data,
                "log_dir": Path(data["log_dir"]),
                "outcomes_path": Path(data["outcomes_path"]),
            }
        )
    seed = settings.seed if seed is None else seed
    out_dir.mkdir(parents=True, exist_ok=True)
    runtime = load_runtime(settings)
    start = resolve_as_of(settings).time - spacing * len(channels)
    times = [start + spacing * i for i in range(len(channels))]
    for when, channel in zip(times, channels, strict=True):
        decide_customers(
            settings,
            channel,
            when,
            out_dir / f"scores_{when:%Y%m%d}_{channel}.parquet",
            runtime=runtime,
            log_decisions=True,
        )
    since, until = times[0], times[-1] + spacing
    decisions = read_decisions(settings.decision_log_dir, since, until)
    outcomes = outcomes_from_truth(settings, decisions, seed)
    outcomes_path = out_dir / "outcomes.parquet"
    outcomes.to_parquet(outcomes_path, index=False)
    demo = DemoMeasurement(
        log_dir=settings.decision_log_dir,
        outcomes_path=outcomes_path,
        since=since.isoformat(),
        until=until.isoformat(),
        window_days=DEMO_MAX_DELAY.days,
        seed=seed,
        decisions=len(decisions),
    )
    marker.write_text(json.dumps(asdict(demo), default=str, indent=2), encoding="utf-8")
    log.info("demo measurement: %d decisions, %d outcomes", len(decisions), len(outcomes))
    return demo


def demo_decisions(settings: Settings, demo: DemoMeasurement) -> pd.DataFrame:
    """The demo period's decisions with ``responded`` and ``revenue`` attributed."""
    return attribute_outcomes(
        read_decisions(demo.log_dir, demo.since, demo.until),
        read_outcomes(demo.outcomes_path),
        timedelta(days=demo.window_days),
    )


def candidate_true_value(
    settings: Settings, decisions: pd.DataFrame, candidate_actions: Sequence[str]
) -> float:
    """The true expected revenue per decision of a candidate's actions (truth, not a log)."""
    p, v = truth_expectations(settings, decisions["customer_id"].tolist(), list(candidate_actions))
    return float(np.nanmean(p * v))


# --- the feedback-loop simulation with the engine and the champion ---------------------------


def engine_policy_scores(
    settings: Settings, as_of: datetime | None = None, runtime: Any | None = None
) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict[str, float]]:
    """Score matrices of the uplift, propensity-ranking and no-action policies from the
    engine and the champion, aligned with the truth, for :func:`simulate_policies`.

    For every channel the engine (``decide``) is run on everyone's point-in-time features;
    an action is eligible for a customer when its channel's rules let it through (ranked,
    or excluded only for a non-positive value). The uplift policy scores an eligible
    action by the champion's ``(p_treated - p_control) * value - cost`` times its lever
    (the engine's own score); propensity ranking by the champion's ``p_treated``;
    ineligible actions score ``-inf``. Returns ``(truth rows, scores, costs)``; the truth
    rows have one row per customer the truth can place, columns as in ``truth/response``.
    """
    runtime = runtime or load_runtime(settings)
    plan = runtime.plan
    when = as_of or resolve_as_of(settings).time
    ids, X, snap = offline_feature_matrix(settings.features_dir, None, when, runtime.terms)
    resp = true_response(settings.raw_dir).set_index("person_id")
    person = person_of_customer(settings).reindex(pd.Index(ids, dtype=object))
    keep = person.notna().to_numpy()
    ids, X = ids[keep], X[keep]
    truth = resp.reindex(person.to_numpy()[keep]).reset_index()
    actions = [c[2:] for c in truth.columns if c.startswith("p_") and c != f"p_{NO_ACTION}"]
    n = len(ids)
    uplift = np.full((n, len(actions)), -np.inf)
    propensity = np.full((n, len(actions)), -np.inf)
    costs: dict[str, float] = {}
    for channel, cp in plan.channels.items():
        ctx = DecisionContext(
            channel=channel, now=when, k=1, stock=stock_vector(runtime), feature_snapshot_time=snap
        )
        d = decide(X, ids, plan, ctx)
        for pos, c in enumerate(cp.action_idx):
            a = str(plan.action_ids[c])
            if a not in actions:
                continue
            costs[a] = float(cp.cost[pos])
            ok = (d.codes[:, c] == 0) | (d.codes[:, c] == int(Reason.NEGATIVE_VALUE))
            j = actions.index(a)
            uplift[ok, j] = d.score[ok, c]
            propensity[ok, j] = d.p_treated[ok, c]
    return (
        truth,
        {"uplift": uplift, "propensity": propensity, NO_ACTION: np.full((n, len(actions)), -1.0)},
        costs,
    )


def engine_simulation(
    settings: Settings, seed: int, holdout_share: float = 0.1, epsilon: float = 0.05
) -> pd.DataFrame:
    """The feedback loop with the engine and the champion: decide (:func:`engine_policy_scores`),
    draw outcomes from the truth, estimate lift from the log (``nextbest.measurement.simulate``)."""
    truth, scores, costs = engine_policy_scores(settings)
    return simulate_policies(truth, scores, seed, holdout_share, epsilon, costs)
