"""Feast definitions for nextbest: entities, feature views, push sources, the request-time
on-demand view and the feature service each model version uses.

Feature names and types come from ``customers.feature_schema``; data lives under
``$NEXTBEST_HOME/features`` (default ``var/features`` beside this folder).
"""

import os
from datetime import timedelta
from pathlib import Path

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from customers.feature_schema import (
    REQUEST_TIME_FEATURES,
    view_specs,
)

OWNER = "customer-data@nextbest.example"
_HOME = Path(os.environ.get("NEXTBEST_HOME", Path(__file__).resolve().parent.parent / "var"))
FEATURES_DIR = _HOME.resolve() / "features"
_DTYPES = {"float": Float64, "int": Int64, "string": String}

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A unified customer: one person after identity resolution.",
    owner=OWNER,
)
identifier = Entity(
    name="identifier",
    join_keys=["identifier"],
    value_type=ValueType.STRING,
    description="A hashed identifier (id type + salted sha256 of the normalised value).",
    owner=OWNER,
)


def _field(spec):
    tags = {"role": spec.role}
    if spec.sensitive:
        tags["sensitive"] = "true"
    return Field(name=spec.name, dtype=_DTYPES[spec.kind], description=spec.description, tags=tags)


views: dict[str, FeatureView] = {}
push_sources: dict[str, PushSource] = {}
for _spec in view_specs():
    _batch = FileSource(
        name=f"{_spec.name}_source",
        path=str(FEATURES_DIR / f"{_spec.name}.parquet"),
        timestamp_field="event_timestamp",
    )
    _source = _batch
    if _spec.pushable:
        _source = PushSource(name=f"{_spec.name}_push", batch_source=_batch)
        push_sources[_spec.name] = _source
    views[_spec.name] = FeatureView(
        name=_spec.name,
        entities=[customer],
        ttl=timedelta(days=_spec.ttl_days),
        schema=[_field(f) for f in _spec.all_features],
        source=_source,
        online=True,
        description=_spec.description,
        owner=OWNER,
        tags={**_spec.tags, "pushable": str(_spec.pushable).lower()},
    )

customer_profile = views["customer_profile"]
customer_transactions = views["customer_transactions"]
customer_behaviour = views["customer_behaviour"]
customer_service = views["customer_service"]
customer_holdings = views["customer_holdings"]
customer_consent = views["customer_consent"]
customer_contacts = views["customer_contacts"]

identity_lookup = FeatureView(
    name="identity_lookup",
    entities=[identifier],
    ttl=timedelta(days=3650),
    schema=[Field(name="customer_id", dtype=String, description="Unified customer id.")],
    source=FileSource(
        name="identity_lookup_source",
        path=str(FEATURES_DIR / "identity_lookup.parquet"),
        timestamp_field="event_timestamp",
    ),
    online=True,
    description="Which customer an identifier (email, phone, crm, loyalty, app, device) is.",
    owner=OWNER,
    tags={"domain": "identity", "personal": "true"},
)

request_time = RequestSource(
    name="request_time",
    schema=[Field(name="request_ts", dtype=Float64, description="Request time, epoch seconds.")],
)

_ts_sources = {src for src in REQUEST_TIME_FEATURES.values()}


@on_demand_feature_view(
    sources=[
        customer_transactions,
        customer_behaviour,
        customer_service,
        customer_contacts,
        request_time,
    ],
    # Feast compares declared and inferred on-demand fields including description and tags,
    # so these carry neither; their roles live in customers.feature_schema.
    schema=[Field(name=name, dtype=Float64) for name in REQUEST_TIME_FEATURES],
    mode="python",
    description="Durations that depend on the request time (days since purchase, complaint, ...).",
    owner=OWNER,
)
def request_time_features(inputs: dict) -> dict:
    # Feast serialises this function: everything it uses is imported inside it.
    import numpy as np

    from customers.feature_schema import REQUEST_TIME_FEATURES as durations
    from customers.feature_schema import days_since

    request_ts = np.asarray(inputs["request_ts"], dtype=np.float64)
    out = {}
    for name, src in durations.items():
        ts = np.asarray([np.nan if x is None else x for x in inputs[src]], dtype=np.float64)
        out[name] = np.atleast_1d(days_since(ts, request_ts)).tolist()
    return out


#: The feature service of decision model v1: training and serving both read it.
nba_v1 = FeatureService(
    name="nba_v1",
    features=[*views.values(), request_time_features],
    description="Everything decision model v1 and its policy read for a customer.",
    owner=OWNER,
    tags={"model": "nextbest-decision", "version": "1"},
)
