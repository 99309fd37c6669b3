"""One typed settings object for paths and sizes, read once at start-up.

Every value can be set by an environment variable with the prefix ``NEXTBEST_``
(for example ``NEXTBEST_CUSTOMERS=100000``) or in a ``.env`` file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from nextbest.core.api_keys import ApiKeyRecord
from nextbest.core.errors import NextbestError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Paths and sizes for every nextbest step."""

    model_config = SettingsConfigDict(env_prefix="NEXTBEST_", env_file=".env", extra="ignore")

    home: Path = Field(Path("var"), description="Working directory for data, stores and logs.")
    customers: int = Field(20_000, gt=0, description="Persons in the generated demo data.")
    seed: int = Field(42, description="Seed for generation, splits and learners.")
    feature_repo: Path = Field(PROJECT_ROOT / "feature_repo", description="Feast repository.")
    catalog: Path = Field(
        PROJECT_ROOT / "config" / "catalog.yaml",
        description="Action catalog (every field: docs/reference/catalog.md).",
    )
    policy: Path = Field(
        PROJECT_ROOT / "config" / "policy.yaml",
        description="Contact policy (every field: docs/reference/policy.md).",
    )
    sources: Path | None = Field(
        None,
        description="Sources file mapping a team's exports onto the source contract "
        "(docs/bring-your-own-data.md, every field: docs/reference/sources.md); unset: the "
        "demo generator's exports under raw/.",
    )
    stock_file: Path | None = Field(
        None,
        description="Stock table (parquet: product_id, stock; docs/data-dictionary.md); "
        "default the demo generator's raw/products.parquet under home.",
    )
    default_time_zone: str = Field(
        "UTC",
        min_length=1,
        description="IANA time zone (e.g. Europe/Berlin) the policy's quiet hours are read "
        "in for a customer whose decision names no time zone of its own.",
    )
    identifier_salt: str = Field(
        "nextbest-identity-v1",
        min_length=1,
        description="Salt of the hashed identifier keys in the online store; changing it "
        "needs a feature rebuild, or lookups by email, phone, ... find nobody.",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default a SQLite file under home."
    )
    model_name: str = Field("nextbest-decision", description="Registered MLflow model name.")
    experiment: str = Field("nextbest", description="MLflow experiment name.")
    online_store: str = Field("sqlite", pattern="^(sqlite|redis)$")
    redis_connection: str = Field("localhost:6379")
    chunk_size: int = Field(100_000, gt=0, description="Rows per chunk in batch jobs.")
    as_of: datetime | None = Field(
        None,
        description="The as-of time: the last feature snapshot, what the online store is "
        "materialised up to, the time of batch decisions (and the end of generated data). "
        "Unset: the data's own end, the midnight (UTC) after the latest event or exposure "
        "(nextbest.customers.as_of.resolve_as_of).",
    )
    snapshot_months: int = Field(
        13,
        gt=0,
        description="Feature snapshots: the as-of time and the first of each month before "
        "it, this many months back; training exposures must fall in their range.",
    )
    feature_workers: int = Field(
        2,
        ge=1,
        description="Processes that build the feature snapshots (forked; 1: in this process).",
    )
    learners: list[str] = Field(
        ["t_learner", "s_learner", "s_learner_reg"],
        description="Candidate uplift learners (also x_learner, dr_learner: slower).",
    )
    host: str = Field("127.0.0.1", description="Address the decision service binds.")
    port: int = Field(3000, description="Port of the decision service.")
    max_request_bytes: int = Field(
        64 * 1024,
        ge=1024,
        description="The largest request body the service reads (any route); a larger one "
        "is answered 413 (docs/api-limits.md).",
    )
    trace_decide: bool = Field(
        False,
        description="Put /decide into BentoML's OpenTelemetry spans (off: a span less to build per "
        "request, and no exporter is configured by default).",
    )
    online_compiled_trees: bool = Field(
        True,
        description="Score online decisions through the compiled trees (numba; checked "
        "against LightGBM bit for bit at start-up, LightGBM for good on a difference or "
        "without numba). Off: LightGBM for every call.",
    )
    fast_http: bool = Field(
        True,
        description="Answer POST /decide in a plain ASGI middleware inside the BentoML app "
        "(same validation, status codes and bodies, less CPU per request). Off, or "
        "with trace_decide: BentoML's route.",
    )
    inline_log_sync: bool = Field(
        True,
        description="When a /decide batch is alone on its worker (nothing else in flight), "
        "write and sync its log lines on the event loop's thread instead of handing them to "
        "the writer thread (off: always the writer thread).",
    )
    fast_features: bool = Field(
        True,
        description="Read online features straight from Feast's SQLite tables (off: the "
        "Feast SDK path; Redis always uses the SDK).",
    )
    store_timeout_seconds: float = Field(
        2.0,
        gt=0,
        description="Bound on every online-store call of the service: Redis socket and "
        "connect timeouts, SQLite busy timeout and query time limit (features, ledger). A "
        'call past it is answered 503 (docs/operations.md, "Failure modes").',
    )
    retry_after_seconds: int = Field(
        5, ge=1, description="The Retry-After of a 503 answer (a dependency is down)."
    )
    serve_start_timeout_seconds: float = Field(
        180.0,
        gt=0,
        description="`nextbest serve` stops the server and exits 1 when it is not up in this time.",
    )
    feast_type_checks: bool = Field(
        False,
        description="Keep typeguard's checks on Feast's constructors (on: importing Feast "
        "costs several times more CPU at every process start).",
    )
    retention_decision_log_days: int | None = Field(
        None,
        ge=1,
        description="`nextbest retention apply` deletes decision records whose decision "
        "day and write day are both older than this (None: keep all).",
    )
    retention_ledger_days: int | None = Field(
        None,
        ge=1,
        description="`nextbest retention apply` deletes ledger events older than this, "
        "consent changes excepted (proof of consent; None: keep all).",
    )
    retention_raw_days: int | None = Field(
        None,
        ge=1,
        description="`nextbest retention apply` deletes source-export events (raw/, contract/) "
        "older than this; identity records and consent are kept (None: keep all).",
    )
    spark_master: str = Field(
        "local[2]",
        min_length=1,
        description="Master URL of every Spark session nextbest starts (`resolve --engine "
        "spark`, `score --engine spark`): local[N] in this process, or a cluster's "
        "(spark://host:7077, yarn, k8s://...).",
    )
    spark_remote: str | None = Field(
        None,
        validation_alias=AliasChoices("spark_remote", "NEXTBEST_SPARK_REMOTE", "SPARK_REMOTE"),
        description="A Spark Connect URL (also read from the standard SPARK_REMOTE). "
        "nextbest's Spark jobs need a classic session, so a Spark command refuses to run "
        "while it is set (use spark_master).",
    )

    triggers_file: Path = Field(
        PROJECT_ROOT / "config" / "triggers.yaml",
        description="Trigger file: the triggers and journeys the triggers worker runs "
        "(every field: docs/reference/triggers.md; docs/triggers.md).",
    )
    triggers_worker: bool = Field(
        True,
        description="`nextbest serve` also runs the triggers worker (`nextbest triggers run`) "
        "when webhooks are configured.",
    )
    webhooks: list[str] = Field(
        default_factory=list,
        description="URLs (http or https) the outbox delivers every triggered decision to "
        '(JSON list, e.g. ["https://crm.example/nba"]).',
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="Key of the HMAC-SHA256 signature of each delivery's body "
        "(X-Nextbest-Signature: sha256=<hex>); required with webhooks.",
    )
    webhook_timeout_seconds: float = Field(
        5.0, gt=0, description="Bound on one webhook call; past it the attempt failed."
    )
    outbox_max_attempts: int = Field(
        8, ge=1, description="Attempts per delivery before it is dead-lettered."
    )
    outbox_backoff_seconds: float = Field(
        2.0,
        gt=0,
        description="Wait before the first retry of a failed delivery; doubled after each "
        "failed attempt, up to outbox_backoff_max_seconds.",
    )
    outbox_backoff_max_seconds: float = Field(
        600.0, gt=0, description="The longest wait between two attempts of a delivery."
    )
    triggers_poll_seconds: float = Field(
        0.5,
        gt=0,
        description="How often the triggers worker reads new ledger events, due triggers "
        "and due deliveries when it found nothing to do.",
    )

    api_keys_file: Path | None = Field(
        None,
        description="The API key file of the decision service (hashes, names, scopes, rate "
        "limits; docs/security.md); default api_keys.json under home.",
    )
    api_keys: list[ApiKeyRecord] = Field(
        default_factory=list,
        description="API keys configured inline (JSON list of {name, sha256, scopes, "
        "rate_per_second, burst}), beside those of the key file.",
    )
    console_secret: SecretStr | None = Field(
        None,
        description="Secret that signs the agent console's session cookies and CSRF tokens "
        "(at least 32 characters); default a random one kept in console-secret under home "
        "(mode 0600), shared by the service's workers.",
    )
    console_session_minutes: int = Field(
        480, ge=5, le=1440, description="How long a console sign-in lasts."
    )
    console_channel: str = Field(
        "call_center",
        min_length=1,
        description="The channel the agent console decides for by default (a catalog channel).",
    )

    @field_validator("webhooks")
    @classmethod
    def _webhook_urls(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            if not url.startswith(("http://", "https://")) or len(url) > 2048:
                # The URL is not echoed: it may carry a token.
                raise ValueError(f"webhooks[{i}]: must be an http:// or https:// URL")
        return value

    @field_validator("default_time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a known IANA time zone") from exc
        return value

    @field_validator("as_of")
    @classmethod
    def _as_of_in_utc(cls, value: datetime | None) -> datetime | None:
        # A time without a zone (NEXTBEST_AS_OF=2025-11-01) is UTC, as everywhere else.
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @cached_property
    def root(self) -> Path:
        """Absolute working directory."""
        return self.home.resolve()

    @property
    def raw_dir(self) -> Path:
        """The raw source-system exports."""
        return self.root / "raw"

    @property
    def contract_dir(self) -> Path:
        """The validated source-contract tables staged from ``sources``."""
        return self.root / "contract"

    @property
    def stock_path(self) -> Path:
        """The stock table the decision paths read: ``stock_file``, else the staged
        ``product_stock`` with ``sources``, else the demo generator's export."""
        if self.stock_file is not None:
            return self.stock_file
        if self.sources is not None:
            return self.contract_dir / "product_stock.parquet"
        return self.raw_dir / "products.parquet"

    @property
    def unified_dir(self) -> Path:
        """Identity resolution output and the unified customer record."""
        return self.root / "unified"

    @property
    def features_dir(self) -> Path:
        """Event-timestamped feature tables read by Feast."""
        return self.root / "features"

    @property
    def feast_dir(self) -> Path:
        """Feast registry and SQLite online store."""
        return self.root / "feast"

    @property
    def decision_log_dir(self) -> Path:
        """Append-only decision log."""
        return self.root / "decisions"

    @property
    def ledger_path(self) -> Path:
        """The event ledger: every accepted customer event (one SQLite file)."""
        return self.root / "ledger.db"

    @property
    def triggers_db_path(self) -> Path:
        """Pending triggers and the delivery outbox (one SQLite file beside the ledger)."""
        return self.root / "triggers.db"

    @property
    def api_keys_path(self) -> Path:
        """The API key file: ``api_keys_file``, else ``api_keys.json`` under home."""
        return self.api_keys_file or self.root / "api_keys.json"

    @property
    def console_secret_path(self) -> Path:
        """Where the console's generated signing secret is kept (when none is configured)."""
        return self.root / "console-secret"

    @property
    def demo_key_path(self) -> Path:
        """Where the demo pipeline writes the raw key it created (mode 0600)."""
        return self.root / "demo-api-key"

    @property
    def privacy_dir(self) -> Path:
        """The erasure tombstone and the append-only privacy audit log."""
        return self.root / "privacy"

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI (SQLite under home unless configured)."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        """Local MLflow artifact root used with the default SQLite store."""
        return self.root / "mlartifacts"

    def spark_master_url(self) -> str:
        """The master URL every Spark session of the product is built with.

        Raises :class:`~nextbest.core.errors.NextbestError` when ``spark_remote`` (``SPARK_REMOTE``)
        is set: Splink's Spark backend (its Java similarity functions, checkpoints) and the
        batch job (a broadcast plan) use the classic Spark API, which Spark Connect lacks,
        and PySpark refuses a master beside a remote.
        """
        if self.spark_remote:
            raise NextbestError(
                # The URL itself is not shown: a Spark Connect URL may carry a token.
                "SPARK_REMOTE is set: nextbest's Spark jobs need a "
                "classic Spark session, not Spark Connect; unset it and set "
                "NEXTBEST_SPARK_MASTER to the cluster's master URL (spark://..., yarn, k8s://...)"
            )
        return self.spark_master


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
