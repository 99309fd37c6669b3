"""Names, types and roles of every customer feature: the one list Feast, the feature
build, training and serving all derive theirs from.

A feature's *role* says who may use it: ``model`` features feed the response models,
``policy`` features feed only the rules (consent, caps, cooldowns), ``both`` feed both.
``sensitive`` features are personal data that may be used for modelling only where the
policy's purpose allows it.

Which channels, purposes, products, categories and actions exist is the business's,
declared in the action catalog: the functions here take them as a :class:`CatalogTerms`
value that the caller builds once from the loaded catalog (``Catalog.terms()``) and
passes down.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from nextbest.core.durations import duration_label

WINDOWS: tuple[int, ...] = (7, 30, 90, 365)
#: A feature that counts or sums events over a trailing window is named ``..._<w>d...``.
_WINDOWED = re.compile(rf"_({'|'.join(str(w) for w in WINDOWS)})d(_|$)")
#: Duration features use this value for "never happened".
NEVER_DAYS = 9999.0
#: Suffix of each view's lineage column (``<view>_as_of_ts``).
LINEAGE_SUFFIX = "_as_of_ts"
#: An optional contract column some features need, named like a table in
#: :func:`feature_tables`: absent when the holdings table is, or holds no balance at all.
HOLDING_BALANCE = "holdings.balance"

Role = Literal["model", "policy", "both", "lineage"]
Kind = Literal["float", "int", "string"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


@dataclass(frozen=True)
class BehaviourTerm:
    """One behaviour event the catalog declares and the features it feeds: counts over
    each window (seconds), the last time seen, distinct products over windows.

    ``export_types`` are the ``event_type`` values of the behaviour export that are this
    event (the export's history of it); the ledger's events carry ``name`` as their type.
    """

    name: str
    windows: tuple[int, ...]
    last_seen: bool = True
    distinct_products: tuple[int, ...] = ()
    export_types: tuple[str, ...] = ()

    def count_feature(self, window: int) -> str:
        """``<name>_count_<window>``: events in the window ending at the decision time."""
        return f"{self.name}_count_{duration_label(window)}"

    def products_feature(self, window: int) -> str:
        """``<name>_products_<window>``: distinct products the events named in the window."""
        return f"{self.name}_products_{duration_label(window)}"

    @property
    def last_feature(self) -> str:
        """``<name>_last_ts``: epoch seconds of the newest event (0 = never)."""
        return f"{self.name}_last_ts"

    def feature_names(self) -> list[str]:
        """Every feature this event feeds, counts first."""
        names = [self.count_feature(w) for w in self.windows]
        names += [self.products_feature(w) for w in self.distinct_products]
        return names + ([self.last_feature] if self.last_seen else [])


@dataclass(frozen=True)
class CatalogTerms:
    """The catalog's products, categories, action ids, channels and purposes, in catalog
    order: what the per-product, per-category, per-action, per-channel and per-purpose
    feature columns are named after."""

    products: tuple[str, ...]
    categories: tuple[str, ...]
    action_ids: tuple[str, ...]
    channels: tuple[str, ...]
    purposes: tuple[str, ...]
    #: Purposes whose consent is recorded once, on the channel where it was captured,
    #: and holds on every channel (the catalog's ``consent_scope: all_channels``).
    all_channel_purposes: tuple[str, ...] = ()
    #: Behaviour events (page views, eligibility checks...) and the features they feed.
    behaviour: tuple[BehaviourTerm, ...] = ()

    def __post_init__(self) -> None:
        for what in ("products", "categories", "action_ids", "channels", "purposes"):
            values = tuple(getattr(self, what))
            object.__setattr__(self, what, values)
            bad = [v for v in values if not isinstance(v, str) or not _NAME.match(v)]
            if bad:
                raise ValueError(f"{what}: not usable in a column name: {bad}")
            if len(set(values)) != len(values):
                raise ValueError(f"{what}: repeated values in {values}")
        scoped = tuple(self.all_channel_purposes)
        object.__setattr__(self, "all_channel_purposes", scoped)
        stray = [p for p in scoped if p not in self.purposes]
        if stray:
            raise ValueError(f"all_channel_purposes: not among the purposes: {stray}")
        object.__setattr__(self, "behaviour", tuple(self.behaviour))
        names = [b.name for b in self.behaviour]
        bad = [v for v in names if not _NAME.match(v)]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"behaviour: names must be distinct column-name words: {names}")

    def behaviour_term(self, name: str) -> BehaviourTerm | None:
        """The declared behaviour event called ``name``, or None."""
        return next((b for b in self.behaviour if b.name == name), None)

    def consent_columns(self, purpose: str, channel: str) -> tuple[str, ...]:
        """The consent features one record of ``purpose`` on ``channel`` sets: its own
        cell, or, for a purpose consented to once for all channels, every channel's."""
        if purpose in self.all_channel_purposes:
            return tuple(f"consent_{purpose}_{c}" for c in self.channels)
        return (f"consent_{purpose}_{channel}",)


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column."""

    name: str
    description: str
    kind: Kind = "float"
    role: Role = "both"
    sensitive: bool = False


@dataclass(frozen=True)
class ViewSpec:
    """One feature view: a parquet table keyed by customer and event time."""

    name: str
    description: str
    features: tuple[FeatureSpec, ...]
    pushable: bool = False
    ttl_days: int = 400
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def as_of_feature(self) -> FeatureSpec:
        """Lineage column: epoch seconds of the newest source event the row was built from.

        It must never exceed the row's event timestamp; training checks it on every joined
        row, so a feature computed from the future fails the build.
        """
        return FeatureSpec(
            f"{self.name}{LINEAGE_SUFFIX}",
            "Epoch seconds of the newest source data used for this row.",
            role="lineage",
        )

    @property
    def all_features(self) -> tuple[FeatureSpec, ...]:
        """Features plus the lineage column, as stored and served."""
        return (*self.features, self.as_of_feature)

    @property
    def feature_names(self) -> list[str]:
        """Stored column names (features and lineage) in declaration order."""
        return [f.name for f in self.all_features]


def _f(name: str, description: str, **kw: object) -> FeatureSpec:
    return FeatureSpec(name=name, description=description, **kw)  # type: ignore[arg-type]


def view_specs(terms: CatalogTerms) -> tuple[ViewSpec, ...]:
    """Every customer feature view, in a fixed order (per-category, per-product and
    per-action columns in the order of ``terms``)."""
    windows = WINDOWS
    profile = ViewSpec(
        "customer_profile",
        "Tenure, value tier and household of the unified customer.",
        (
            _f(
                "tenure_days", "Days since the customer's first record in any system.", role="model"
            ),
            _f(
                "value_tier",
                "Net spend tier over 365 days: 0 none, 1 low, 2 mid, 3 high.",
                kind="int",
            ),
            _f(
                "household_size",
                "Customers sharing the household address.",
                kind="int",
                role="model",
            ),
            _f("age", "Age in years from the CRM date of birth.", role="model", sensitive=True),
            _f(
                "n_source_records",
                "Source-system records resolved into this customer.",
                kind="int",
                role="model",
            ),
        ),
        tags={"domain": "profile", "personal": "true"},
    )
    txn = ViewSpec(
        "customer_transactions",
        "Purchases (POS baskets) over trailing windows, overall and by category.",
        tuple(
            _f(f"txn_count_{w}d", f"Purchases in the last {w} days.", role="model") for w in windows
        )
        + tuple(
            _f(f"txn_amount_{w}d", f"Spend in the last {w} days.", role="model") for w in windows
        )
        + (_f("last_purchase_ts", "Epoch seconds of the last purchase (0 = never).", role="model"),)
        + tuple(
            _f(f"spend_365d_{c}", f"Spend on {c} in the last 365 days.", role="model")
            for c in terms.categories
        ),
        pushable=True,
        tags={"domain": "transactions"},
    )
    behaviour = ViewSpec(
        "customer_behaviour",
        "Web and app behaviour: views by category and repeat interest.",
        tuple(
            _f(f"views_30d_{c}", f"Web/app views of {c} in the last 30 days.", role="model")
            for c in terms.categories
        )
        + (
            _f("config_views_7d", "Configurator views in the last 7 days.", role="model"),
            _f("loan_checks_7d", "Loan eligibility checks in the last 7 days.", role="model"),
            _f(
                "repeat_interest_7d",
                "Most views of one configuration in the last 7 days.",
                role="model",
            ),
            _f(
                "last_active_ts",
                "Epoch seconds of the last web/app/POS activity (0 = never).",
                role="model",
            ),
        ),
        tags={"domain": "behaviour"},
    )
    service = ViewSpec(
        "customer_service",
        "Call-centre service cases and complaints.",
        (
            _f("open_cases", "Service cases currently open.", kind="int"),
            _f("complaints_90d", "Complaints in the last 90 days.", kind="int"),
            _f(
                "last_complaint_ts",
                "Epoch seconds of the last complaint (0 = never).",
                role="policy",
            ),
        ),
        pushable=True,
        tags={"domain": "service"},
    )
    holdings = ViewSpec(
        "customer_holdings",
        "Products the customer holds, and their balances.",
        tuple(_f(f"holds_{p}", f"1 if the customer holds {p}.", kind="int") for p in terms.products)
        + tuple(
            _f(
                f"balance_{p}",
                f"Balance of {p} at its latest reading (0 if not held; null if held "
                "without a reading).",
            )
            for p in terms.products
        ),
        pushable=True,
        tags={"domain": "holdings"},
    )
    consent = ViewSpec(
        "customer_consent",
        "Consent per purpose and channel: 1 granted, 0 withdrawn or never recorded.",
        tuple(
            _f(f"consent_{p}_{c}", f"Consent to {p} by {c}.", kind="int", role="policy")
            for p in terms.purposes
            for c in terms.channels
        ),
        pushable=True,
        tags={"domain": "consent", "personal": "true"},
    )
    contacts = ViewSpec(
        "customer_contacts",
        "Contact history: contacts per channel and when each action was last shown.",
        tuple(
            _f(
                f"contacts_{c}_{w}d",
                f"Contacts by {c} in the last {w} days.",
                kind="int",
                role="policy",
            )
            for c in terms.channels
            for w in (7, 30)
        )
        + (
            _f(
                "contacts_total_7d",
                "Contacts on all channels in the last 7 days.",
                kind="int",
                role="policy",
            ),
        )
        + tuple(
            _f(
                f"last_shown_ts_{a}",
                f"Epoch seconds {a} was last shown (0 = never).",
                role="policy",
            )
            for a in terms.action_ids
        ),
        pushable=True,
        tags={"domain": "contacts"},
    )
    views = (profile, txn, behaviour, service, holdings, consent, contacts)
    return views + behaviour_event_views(terms)


#: The view of the catalog's behaviour events (only when the catalog declares some).
BEHAVIOUR_EVENTS_VIEW = "customer_behaviour_events"


def behaviour_event_views(terms: CatalogTerms) -> tuple[ViewSpec, ...]:
    """The view of the catalog's behaviour events, or none when it declares none.

    Its lineage column is the snapshot time itself: the export's behaviour is read up to
    it, and ledger events dated after it add to the counts at decision time
    (nextbest.decisions.behaviour).
    """
    if not terms.behaviour:
        return ()
    features: list[FeatureSpec] = []
    for b in terms.behaviour:
        for w in b.windows:
            label = duration_label(w)
            features.append(
                _f(b.count_feature(w), f"{b.name} events in the last {label}.", role="policy")
            )
        for w in b.distinct_products:
            label = duration_label(w)
            features.append(
                _f(
                    b.products_feature(w),
                    f"Distinct products of {b.name} events in the last {label}.",
                    role="policy",
                )
            )
        if b.last_seen:
            features.append(
                _f(
                    b.last_feature,
                    f"Epoch seconds of the last {b.name} (0 = never).",
                    role="policy",
                )
            )
    return (
        ViewSpec(
            BEHAVIOUR_EVENTS_VIEW,
            "Behaviour events the catalog declares: counts over its windows, distinct "
            "products, last seen; the live part comes from the event ledger.",
            tuple(features),
            tags={"domain": "behaviour"},
        ),
    )


#: The optional source-contract tables each source-derived feature needs (any one of them
#: present is enough). A feature whose tables are all absent is null, never 0.
def feature_tables(terms: CatalogTerms) -> dict[str, tuple[str, ...]]:
    """Feature name -> the contract tables (or optional columns, :data:`HOLDING_BALANCE`)
    it is computed from (features not listed come from ``identity_records`` alone, or are
    lineage)."""
    orders, behaviour = ("orders",), ("behaviour_events",)
    out: dict[str, tuple[str, ...]] = {"value_tier": orders}
    for w in WINDOWS:
        out[f"txn_count_{w}d"] = out[f"txn_amount_{w}d"] = orders
    out["last_purchase_ts"] = orders
    for c in terms.categories:
        out[f"spend_365d_{c}"] = orders
        out[f"views_30d_{c}"] = behaviour
    for name in ("config_views_7d", "loan_checks_7d", "repeat_interest_7d"):
        out[name] = behaviour
    out["last_active_ts"] = ("behaviour_events", "orders")
    out["open_cases"] = ("service_cases",)
    out["complaints_90d"] = out["last_complaint_ts"] = ("service_cases", "complaints")
    for p in terms.products:
        out[f"holds_{p}"] = ("holdings",)
    for p in terms.products:
        out[f"balance_{p}"] = (HOLDING_BALANCE,)
    for p in terms.purposes:
        for c in terms.channels:
            out[f"consent_{p}_{c}"] = ("consent_events",)
    for c in terms.channels:
        for w in (7, 30):
            out[f"contacts_{c}_{w}d"] = ("contact_history",)
    out["contacts_total_7d"] = ("contact_history",)
    for a in terms.action_ids:
        out[f"last_shown_ts_{a}"] = ("contact_history",)
    for b in terms.behaviour:
        for name in b.feature_names():
            out[name] = behaviour
    return out


def windowed_features(names: Iterable[str]) -> list[str]:
    """The features among ``names`` that count or sum events over a trailing window
    (``txn_count_30d``, ``views_30d_<category>``, ``contacts_<channel>_7d``...)."""
    return [n for n in names if _WINDOWED.search(n)]


def null_features(absent: Iterable[str], terms: CatalogTerms) -> list[str]:
    """Features that are null because every contract table they need is ``absent``."""
    gone = set(absent)
    if "holdings" in gone:
        gone.add(HOLDING_BALANCE)  # no holdings, no balances
    return [f for f, tables in feature_tables(terms).items() if gone.issuperset(tables)]


# Request-time features: days since a stored ``*_ts`` feature, computed by the on-demand
# view (and the fast paths) at the request time.
_DURATIONS: dict[str, tuple[str, Role]] = {
    "days_since_purchase": ("last_purchase_ts", "model"),
    "days_inactive": ("last_active_ts", "model"),
    "days_since_complaint": ("last_complaint_ts", "both"),
}
_SHOWN_TS, _SHOWN_DAYS = "last_shown_ts_", "days_since_shown_"


def request_time_features_of(columns: Iterable[str]) -> dict[str, str]:
    """Request-time feature -> its source ``*_ts`` column, for the sources among ``columns``
    (fixed durations first, then one ``days_since_shown_<action>`` per ``last_shown_ts_``
    column in column order).

    The one rule that names them: the Feast on-demand view applies it to its inputs and the
    schema to the stored columns, so both list the same features.
    """
    cols = list(columns)
    present = set(cols)
    out = {name: src for name, (src, _) in _DURATIONS.items() if src in present}
    out.update(
        {_SHOWN_DAYS + c.removeprefix(_SHOWN_TS): c for c in cols if c.startswith(_SHOWN_TS)}
    )
    return out


def request_time_features(terms: CatalogTerms) -> dict[str, str]:
    """Request-time feature -> source ``*_ts`` feature, in serving order."""
    return request_time_features_of(n for v in view_specs(terms) for n in v.feature_names)


def request_time_roles(terms: CatalogTerms) -> dict[str, Role]:
    """Role of each request-time feature (the shown-durations feed only the cooldowns)."""
    return {
        name: _DURATIONS[name][1] if name in _DURATIONS else "policy"
        for name in request_time_features(terms)
    }


def all_feature_names(terms: CatalogTerms) -> list[str]:
    """Every feature the decision service reads, in a fixed order (views, then request-time)."""
    names = [f.name for v in view_specs(terms) for f in v.all_features]
    return names + list(request_time_features(terms))


def model_feature_names(terms: CatalogTerms, allow_sensitive: bool = False) -> list[str]:
    """Features the response models may use, in a fixed order."""
    names = [
        f.name
        for v in view_specs(terms)
        for f in v.features
        if f.role in ("model", "both")
        and (allow_sensitive or not f.sensitive)
        and not f.name.endswith("_ts")
    ]
    return names + [n for n, r in request_time_roles(terms).items() if r in ("model", "both")]


def days_since(ts: object, request_ts: object) -> object:
    """Days between an epoch-seconds timestamp and the request time; ``NEVER_DAYS`` if 0/NaN.

    Works on numpy arrays and scalars alike; the on-demand view and the fast serving
    path both call it so they cannot disagree.
    """
    import numpy as np

    t = np.asarray(ts, dtype=np.float64)
    r = np.asarray(request_ts, dtype=np.float64)
    out = (r - t) / 86_400.0
    return np.where(np.isnan(t) | (t <= 0), NEVER_DAYS, np.maximum(out, 0.0))
