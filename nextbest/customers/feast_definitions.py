"""The Feast objects of nextbest (entities, feature views, push sources, the request-time
on-demand view and the feature service), built from settings and the catalog terms.

Feature names and types come from :mod:`nextbest.customers.feature_schema`; the data location from
``settings.features_dir``. :func:`nextbest.customers.feast_store.apply` registers what this builds;
``feature_repo/definitions.py`` calls it once with default settings for the plain ``feast``
CLI. Nothing here reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from nextbest.core.settings import Settings
from nextbest.customers.feast_import import import_feast
from nextbest.customers.feature_schema import (
    CatalogTerms,
    FeatureSpec,
    view_specs,
)
from nextbest.customers.feature_schema import request_time_features as request_time_columns

OWNER = "customer-data@nextbest.example"
FEATURE_SERVICE = "nba_v1"


@dataclass(frozen=True)
class FeastDefinitions:
    """Every Feast object of the project, by the name the feature repository gives it."""

    named: dict[str, Any]
    push_sources: dict[str, Any] = field(default_factory=dict)

    @property
    def objects(self) -> list[Any]:
        """What ``FeatureStore.apply`` registers: entities, views, push sources, the
        on-demand view and the feature service (request and file sources ride along)."""
        # lazy: feast loads after import_feast, and only where a store is used
        from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView, PushSource

        kinds = (Entity, FeatureView, OnDemandFeatureView, FeatureService, PushSource)
        found = [o for o in self.named.values() if isinstance(o, kinds)]
        return found + list(self.push_sources.values())


def build_definitions(settings: Settings, terms: CatalogTerms) -> FeastDefinitions:
    """The Feast objects reading the feature tables under ``settings.features_dir``, with
    the columns ``terms`` name. Over 100 lines on purpose: the objects are declared one
    after another, and Feast's on-demand function must be defined inside (Feast rebuilds
    it from its source)."""
    import_feast(settings)
    # lazy: feast loads after import_feast, and only where a store is used
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

    features_dir = settings.features_dir
    dtypes = {"float": Float64, "int": Int64, "string": String}

    def feast_field(spec: FeatureSpec) -> Any:
        tags = {"role": spec.role}
        if spec.sensitive:
            tags["sensitive"] = "true"
        return Field(
            name=spec.name, dtype=dtypes[spec.kind], description=spec.description, tags=tags
        )

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

    views: dict[str, Any] = {}
    push_sources: dict[str, Any] = {}
    for spec in view_specs(terms):
        batch = FileSource(
            name=f"{spec.name}_source",
            path=str(features_dir / f"{spec.name}.parquet"),
            timestamp_field="event_timestamp",
        )
        source: Any = batch
        if spec.pushable:
            source = PushSource(name=f"{spec.name}_push", batch_source=batch)
            push_sources[spec.name] = source
        views[spec.name] = FeatureView(
            name=spec.name,
            entities=[customer],
            ttl=timedelta(days=spec.ttl_days),
            schema=[feast_field(f) for f in spec.all_features],
            source=source,
            online=True,
            description=spec.description,
            owner=OWNER,
            tags={**spec.tags, "pushable": str(spec.pushable).lower()},
        )

    identity_lookup = FeatureView(
        name="identity_lookup",
        entities=[identifier],
        ttl=timedelta(days=3650),
        schema=[Field(name="customer_id", dtype=String, description="Unified customer id.")],
        source=FileSource(
            name="identity_lookup_source",
            path=str(features_dir / "identity_lookup.parquet"),
            timestamp_field="event_timestamp",
        ),
        online=True,
        description="Which customer an identifier (email, phone, crm, loyalty, app, device) is.",
        owner=OWNER,
        tags={"domain": "identity", "personal": "true"},
    )

    request_time = RequestSource(
        name="request_time",
        schema=[
            Field(name="request_ts", dtype=Float64, description="Request time, epoch seconds.")
        ],
    )
    durations = request_time_columns(terms)

    @on_demand_feature_view(  # type: ignore[misc]
        sources=[
            views["customer_transactions"],
            views["customer_behaviour"],
            views["customer_service"],
            views["customer_contacts"],
            request_time,
        ],
        # Feast compares declared and inferred on-demand fields including description and
        # tags, so these carry neither; their roles live in nextbest.customers.feature_schema.
        schema=[Field(name=name, dtype=Float64) for name in durations],
        mode="python",
        description="Durations that depend on the request time (days since purchase, "
        "complaint, ...).",
        owner=OWNER,
    )
    # The function's name is the on-demand view's name.
    def request_time_features(inputs: dict) -> dict:
        # Feast serialises this function: everything it uses is imported inside it.
        import numpy as np

        from nextbest.customers.feature_schema import days_since, request_time_features_of

        # Not a closure: Feast rebuilds the function from its source. The rule that named
        # the schema's fields names the outputs from the stored columns it is given.
        request_ts = np.asarray(inputs["request_ts"], dtype=np.float64)
        out = {}
        for name, src in request_time_features_of(inputs).items():
            ts = np.asarray([np.nan if x is None else x for x in inputs[src]], dtype=np.float64)
            out[name] = np.atleast_1d(days_since(ts, request_ts)).tolist()
        return out

    #: The feature service of decision model v1: training and serving both read it.
    nba_v1 = FeatureService(
        name=FEATURE_SERVICE,
        features=[*views.values(), request_time_features],
        description="Everything decision model v1 and its policy read for a customer.",
        owner=OWNER,
        tags={"model": "nextbest-decision", "version": "1"},
    )
    named = {
        "customer": customer,
        "identifier": identifier,
        **views,
        "identity_lookup": identity_lookup,
        "request_time": request_time,
        "request_time_features": request_time_features,
        FEATURE_SERVICE: nba_v1,
    }
    return FeastDefinitions(named=named, push_sources=push_sources)
