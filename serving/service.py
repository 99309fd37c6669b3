"""The nextbest decision service (BentoML): ``POST /decide``, ``POST /events``, ``GET /actions``,
``GET /customers/{id}/consent``.

It fails closed: when the online features, the event ledger or the decision log cannot be
read or written, /decide (and /events, the consent history) answer 503 with
``{"error": ..., "reason": "<dependency>_unavailable"}`` and ``Retry-After``, and
``/readyz`` answers 503 naming the dependency while ``/livez`` stays 200
(docs/operations.md, "Failure modes").

A thin shell around :class:`serving.decider.OnlineDecider`, which is built once at
start-up from the settings (champion model by MLflow alias, Feast store, catalog, policy,
decision log). BentoML also serves ``/healthz``, ``/livez``, ``/readyz``, ``/metrics``
(Prometheus) and the OpenAPI page at ``/`` (spec at ``/docs.json``). Every route but the
health checks needs an API key of the route's scope (:mod:`serving.auth`).

Start it with ``bentoml serve serving.service:NextBest`` or ``nextbest serve``.

Settings are read at start-up, never at import. The instance reads them in its
``__init__``; the options of ``bentoml.service`` (workers, traffic, access log, the tracing
exclusion of /decide) are read by BentoML when the class is decorated, so the class is
decorated by :func:`nextbest_service`, which reads the settings then; it also reads the
action catalog then, so the ``channel`` of ``/decide`` and the ``channel`` and ``purpose``
of the ``/events`` payload are enums of the catalog's channels and purposes, in the
OpenAPI document and in the validation alike (BentoML's routes and the JSON fast path both
validate with these input models). ``NextBest`` is that
service, built on first access (a module ``__getattr__``, PEP 562): when ``bentoml serve``
(or ``bentoml build``) looks up ``serving.service:NextBest`` in a worker, before it builds
the worker's app. Importing the module (for its helpers) reads nothing.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from http import HTTPStatus
from typing import Annotated, Any, Literal

import bentoml
import orjson
from bentoml import get_current_service
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI
from fastapi import Path as PathParam
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
)
from starlette.exceptions import HTTPException
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nextbest.core.api_keys import KeyRing
from nextbest.core.errors import DependencyUnavailable, InputError
from nextbest.core.settings import Settings, get_settings
from nextbest.core.vocabulary import EVENT_TYPES
from nextbest.customers.feature_schema import CatalogTerms
from nextbest.decisions.catalog import Catalog
from nextbest.decisions.context_schema import context_dict, context_model
from nextbest.decisions.ledger import TOKEN_PATTERN
from nextbest.decisions.policy import Policy
from serving.auth import AuthMiddleware, caller, required_scope
from serving.batching import MicroBatcher
from serving.decider import OnlineDecider
from serving.events import EventConflict
from serving.fast_http import (
    UNEXPECTED,
    Answer,
    Handler,
    JsonApiMiddleware,
    error_body,
    json_body,
    refused_fields,
    validation_error_body,
)
from serving.limits import BodyLimitMiddleware
from serving.openapi import OpenAPIMiddleware
from serving.requests import CustomerRef, DecideRequest, RequestError
from serving.responses import response_from_record
from serving.schemas import (
    MAX_ID_LENGTH,
    Customer,
    EventPayload,
    ForgetRequest,
    IdType,
    Timestamp,
)

log = logging.getLogger(__name__)

EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
#: ``channels`` of /decide: a list of catalog channels, or "any" (checked by the decider).
Channels = Annotated[
    list[Annotated[str, StringConstraints(max_length=40)]] | Literal["any"] | None,
    Field(max_length=32),
]
TimeZoneName = Annotated[str | None, StringConstraints(min_length=1, max_length=64)]


def _tuple(values: Any) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


def tracing_config(settings: Settings) -> dict[str, Any]:
    """BentoML's ``tracing`` option: /decide is excluded unless ``settings.trace_decide``."""
    return {"excluded_urls": [] if settings.trace_decide else ["/decide"]}


def fast_http_enabled(settings: Settings) -> bool:
    """Whether /decide is answered by JsonApiMiddleware: unless switched off, or traced
    (a span wants BentoML's request context and its request-id header)."""
    return settings.fast_http and not settings.trace_decide


def refused(route: str, status: int, fields: str) -> None:
    """Log a refused request at INFO by the fields it got wrong (never their values)."""
    log.info("%s [POST] %d: invalid %s", route, status, fields)


#: Our loggers whose INFO lines the server log shows (none of them logs a request value).
_SERVICE_LOGGERS = ("serving", "nextbest.decisions")


def _field_of(exc: Exception) -> str:
    """The field a :class:`RequestError` names (its message starts with it)."""
    return str(exc).split(":", 1)[0]


#: Plain routes beside the BentoML APIs (mounted at the root).
extras = FastAPI(title="nextbest catalog")


@extras.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own refusals (a body it cannot parse, a route or method it does not have)
    in the one error body of the spec (``{"error": ...}``, serving/openapi.py)."""
    route = required_scope(request.url.path).pattern  # the path may hold an identifier
    log.info("%s [%s] %d: %s", route, request.method, exc.status_code, exc.detail)
    return JSONResponse(
        {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


@bentoml.asgi_app(extras, path="/")
class NextBestService:
    """Next-best-action decisions under consent, suppression and contact rules."""

    def __init__(self) -> None:
        settings = get_settings()
        svc = nextbest_service()
        #: BentoML's pydantic input model of each JSON API (what its route validates with).
        self.inputs = {f"/{name}": svc.apis[name].input_spec for name in ("decide", "events")}
        self.decider = OnlineDecider(settings)
        #: The ``Retry-After`` of a 503 answer: seconds before the caller tries again.
        self.retry_after = str(settings.retry_after_seconds)
        # Reads over the network (Redis through the SDK) decide off the event loop, so a
        # hung store never holds up /livez or the other routes.
        self.batcher = MicroBatcher(
            self.decider, inline_sync=settings.inline_log_sync, offload=self.decider.fast is None
        )
        # The loaded heap is large and long-lived; freezing it keeps full GC passes (and the
        # p99 spikes they cause) away from requests.
        gc.collect()
        gc.freeze()
        #: Whether JsonApiMiddleware answers a valid /decide itself (else BentoML's route):
        #: the same answers at a fraction of the framework's CPU, unless switched off or
        #: traced (a span wants BentoML's request context).
        self.fast_decide = fast_http_enabled(settings)
        # BentoML's server logging keeps the root at WARNING: without this the service's
        # INFO lines (refused requests by field name, start-up, stock reloads) are dropped.
        for name in _SERVICE_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
        log.info("nextbest service ready: model %s", self.decider.runtime.model_version)

    @bentoml.api(route="/decide")
    async def decide(
        self,
        customer: Customer,
        channel: str | None = Field(
            None,
            description="The channel to decide for: one of the catalog's channels "
            "(the enum is set from the catalog by nextbest_service). Give this or channels.",
        ),
        k: int = Field(3, ge=1, le=20, description="How many ranked actions to return."),
        context: dict[str, Any] = Field(default_factory=dict),
        channels: Channels = Field(
            None,
            description='Decide across these channels (a list, or "any": every catalog '
            "channel): the best action x channel pair, each channel under its own rules; "
            "the answer's channels lists the others with their reasons. Give this or channel.",
        ),
        time_zone: TimeZoneName = Field(
            None,
            description="The customer's IANA time zone (Europe/Berlin) for the quiet hours; "
            "default NEXTBEST_DEFAULT_TIME_ZONE.",
        ),
    ) -> dict[str, Any]:
        """Rank the actions worth taking for this customer on this channel (or the best
        channel of several), and log why."""
        # One JSON encoding straight into the body: BentoML's dict output path validates
        # the dict again and streams it in chunks, which costs more than the decision.
        status, body = await self._decide_answer(customer, channel, k, context, channels, time_zone)
        return self._response(status, body)

    def _response(self, status: int, body: bytes) -> Response:
        """A JSON answer of BentoML's routes; a 503 carries ``Retry-After``."""
        headers = {"retry-after": self.retry_after} if status == 503 else None
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    def _unavailable(self, exc: DependencyUnavailable, route: str) -> Answer:
        """The 503 answer for a dependency that is down (logged by its reason only).

        503, not a logged ``no_action``: with the decision log down nothing could be
        logged, and with features or ledger down consent and suppression are unknown.
        """
        log.warning("%s 503: %s", route, exc.reason)
        return 503, json_body({"error": str(exc), "reason": exc.reason})

    def __is_ready__(self) -> bool:
        """BentoML's readiness hook (``/readyz``): 503 naming the dependency that is down.

        Probes are cheap, bounded by the store timeout and cached for a second. BentoML
        answers a ``False`` with a fixed text; raising its own ``HTTPException`` instead
        gives the body that names the dependency.
        """
        down = self.decider.readiness.status()
        if down is None:
            return True
        raise HTTPException(
            503,
            detail=orjson.dumps({"error": str(down), "reason": down.reason}).decode(),
            headers={"content-type": "application/json", "retry-after": self.retry_after},
        )

    @bentoml.on_shutdown
    def _sync_decision_log(self) -> None:
        """At shutdown: every queued decision-log line on disk, files closed."""
        self.decider.log.close()

    async def _decide_answer(
        self,
        customer: Customer,
        channel: str | None,
        k: int,
        context: Any,
        channels: Any = None,
        time_zone: str | None = None,
    ) -> Answer:
        request = DecideRequest(
            CustomerRef(customer.id, customer.id_type),
            channel,
            k,
            context_dict(context),
            channels=(channels,) if isinstance(channels, str) else _tuple(channels),
            time_zone=time_zone,
        )
        try:
            # Decided with the other requests of this loop turn, answered once on disk.
            record = await self.batcher.decide(request)
        except RequestError as exc:
            refused("/decide", 400, _field_of(exc))
            return 400, error_body(str(exc))
        except DependencyUnavailable as exc:
            return self._unavailable(exc, "/decide [POST]")
        return 200, orjson.dumps(response_from_record(record))

    async def answer_json(self, path: str, body: bytes) -> Answer | None:
        """``POST /decide`` or ``/events`` from its raw JSON body (JsonApiMiddleware).

        The body is validated by BentoML's own input model of the API; None hands a valid
        /decide to BentoML's route (fast path off).
        """
        try:
            data = self.inputs[path].model_validate_json(body or b"{}")
        except ValidationError as exc:
            refused(path, 400, ", ".join(refused_fields(exc)))
            return 400, validation_error_body(exc)
        try:
            if path == "/events":
                return await asyncio.to_thread(self._event_answer, data)
            if not self.fast_decide:
                return None
            return await self._decide_answer(
                data.customer,
                data.channel,
                data.k,
                data.context,
                data.channels,
                data.time_zone,
            )
        except Exception:
            log.error("Exception on %s [POST]", path, exc_info=True)
            return 500, json_body({"error": UNEXPECTED})

    @bentoml.api(route="/events")
    def events(
        self,
        type: EventType,
        customer: Customer | None = Field(
            None, description="Who the event is about (omitted for stock_changed)."
        ),
        timestamp: Timestamp = Field(
            None,
            description="When it happened: ISO 8601 or epoch seconds, between 2000-01-01 and "
            "5 minutes after now (default: now).",
        ),
        payload: EventPayload = Field(default_factory=EventPayload),
        event_id: str | None = Field(
            None,
            max_length=128,
            pattern=TOKEN_PATTERN,
            description="Your idempotency key: an event sent again with the same id and "
            "content is acknowledged and not applied twice; other content under a used id "
            "is refused with 409. Default: a fresh id (a retry would count again).",
        ),
        source: str | None = Field(
            None,
            max_length=128,
            pattern=TOKEN_PATTERN,
            description="The system the event comes from (default api).",
        ),
    ) -> dict[str, Any]:
        """Record a customer event (or a product's ``stock_changed``) in the ledger (on
        disk before the answer); the next decision for the customer sees it, by its event
        time (stock: within a second, for every customer). The event's actor is the name
        of the API key that sent it.

        ``identify`` (payload ``id_type``, ``id_value``) attaches an identifier to the
        customer at once: the next request by it resolves to the customer. The value is
        kept only as its salted hash. The answer adds ``status``: ``linked``, ``known``
        (already this customer's) or ``review`` (another customer's: not linked, recorded
        for review; ``reason`` says so). Answers are 200 in all three cases."""
        data = self.inputs["/events"].model_construct(
            customer=customer,
            type=type,
            timestamp=timestamp,
            payload=payload,
            event_id=event_id,
            source=source,
        )
        return self._response(*self._event_answer(data))

    def _event_answer(self, data: Any) -> Answer:
        """Apply one validated /events body: 200, 400 naming the field, 409, or 503 (a
        store down)."""
        payload = data.payload
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(exclude_unset=True)
        customer = data.customer
        try:
            answer = self.decider.apply_event(
                None if customer is None else CustomerRef(customer.id, customer.id_type),
                data.type,
                data.timestamp,
                payload,
                event_id=data.event_id,
                source=data.source,
                actor=caller(),
            )
        except DependencyUnavailable as exc:
            return self._unavailable(exc, "/events [POST]")
        except EventConflict as exc:
            refused("/events", HTTPStatus.CONFLICT, "event_id (reused)")
            return HTTPStatus.CONFLICT, error_body(str(exc))
        except RequestError as exc:
            refused("/events", 400, _field_of(exc))
            return 400, error_body(str(exc))
        return 200, orjson.dumps(answer)

    def _catalog(self) -> dict[str, Any]:
        cat = self.decider.runtime.catalog
        return {
            "version": cat.version,
            "actions": [a.model_dump(mode="json") for a in cat.actions],
        }

    @extras.get("/actions")
    def get_actions(self) -> dict[str, Any]:
        """The action catalog."""
        return self._catalog()

    @extras.get("/customers/{customer_id}/consent")
    def get_consent(
        self,
        customer_id: str = PathParam(min_length=1, max_length=MAX_ID_LENGTH),
        id_type: IdType = "customer_id",
    ) -> Any:
        """A customer's consent changes recorded through ``/events``, in event time, with
        source and actor."""
        try:
            return self.decider.consent_history(CustomerRef(customer_id, id_type))
        except DependencyUnavailable as exc:
            return self._response(*self._unavailable(exc, "/customers/{id}/consent [GET]"))
        except RequestError as exc:
            status = 404 if str(exc).startswith("customer:") else 400
            log.info("/customers/{id}/consent [GET] %d: invalid %s", status, _field_of(exc))
            return JSONResponse({"error": str(exc)}, status_code=status)

    @extras.post("/admin/forget")
    def admin_forget(self, request: ForgetRequest) -> Any:
        """Erase a person from every store of the home and keep them out of later builds
        (docs/privacy.md); 404 when nobody has the identifier, 400 for a bad one or a bad
        reason, nothing changed either way. The answer holds counts and hashes only."""
        from nextbest.customers.erasure import UnknownPersonError
        from nextbest.decisions.privacy import forget

        try:
            report = forget(
                self.decider.settings,
                request.customer.id,
                request.customer.id_type,
                request.reason,
                request.actor,
            )
        except UnknownPersonError as exc:
            log.info("/admin/forget [POST] 404: unknown customer.id")
            return JSONResponse({"error": str(exc)}, status_code=404)
        except InputError as exc:
            log.info("/admin/forget [POST] 400: invalid %s", str(exc).split(":", 1)[0])
            return JSONResponse({"error": str(exc)}, status_code=400)
        log.info("/admin/forget [POST] 200: erased, audit entry written")
        return report.__dict__


#: Worker processes of the service (one per core); per-key rate limits are divided by it.
WORKERS = 2


def service_options(settings: Settings) -> dict[str, Any]:
    """The options of ``bentoml.service`` for the decision service."""
    return {
        "name": "nextbest",
        "logging": {"access": {"enabled": False}},
        "traffic": {"timeout": 30},
        # No trace exporter is configured by default, yet BentoML's OpenTelemetry middleware
        # builds a span for every request: half of the framework's CPU per request on a
        # 2-core machine. /decide skips it unless NEXTBEST_TRACE_DECIDE=1; every other route
        # keeps its spans.
        "tracing": tracing_config(settings),
        # One worker per core. /decide is async: its CPU work runs on the worker's event loop
        # and it awaits the decision log's writer thread, so while one decision waits for its
        # disk sync the worker decides the next ones, which join the next group commit.
        "workers": WORKERS,
        # Threads of BentoML's route for the sync endpoints. JsonApiMiddleware answers /events
        # (which waits on the ledger's synced commit) in the event loop's default executor.
        "threads": 4,
    }


def json_api_handler() -> Handler | None:
    """The running service instance's handler for JsonApiMiddleware; None (BentoML answers)
    before the instance is built."""
    try:
        instance = get_current_service()
    except BentoMLException:  # not built yet
        return None
    return getattr(instance, "answer_json", None)


def decide_input_model(base: type[BaseModel], policy: Policy) -> type[BaseModel]:
    """BentoML's input model of /decide with ``context`` typed by the policy's allow-list
    (so validation and the OpenAPI spec show the allowed keys and their limits)."""
    context = context_model(policy)
    model = create_model(  # type: ignore[call-overload]
        base.__name__,
        __base__=base,
        __module__=base.__module__,
        context=(
            context,
            Field(
                default_factory=context,
                description="Facts about the moment of the decision: only the keys the "
                "policy allows; text that looks like an e-mail address or a phone number "
                "is refused.",
            ),
        ),
    )
    model.model_config = ConfigDict(**{**model.model_config, "hide_input_in_errors": True})
    model.model_rebuild(force=True)
    return model  # type: ignore[no-any-return]


def with_choices(spec: type[BaseModel], **choices: tuple[str, ...]) -> type[BaseModel]:
    """``spec`` with each named field narrowed to its ``choices`` (optional fields stay
    optional): an enum in the OpenAPI document and a 400 naming the field for anything
    else. Everything else (fields, limits, config) is ``spec``'s."""
    fields: dict[str, Any] = {}
    for name, values in choices.items():
        field = spec.model_fields[name]
        kind: Any = Literal[values]  # type: ignore[valid-type]
        fields[name] = (kind if field.is_required() else kind | None, field)
    return create_model(  # type: ignore[call-overload,no-any-return]
        spec.__name__, __base__=spec, __module__=spec.__module__, **fields
    )


def events_input_model(base: type[BaseModel], terms: CatalogTerms) -> type[BaseModel]:
    """BentoML's input model of /events with the payload's ``channel`` and ``purpose``
    narrowed to the catalog's, and its ``type`` widened to the catalog's behaviour events
    (the ledger checks them against the same terms)."""
    payload = with_choices(EventPayload, channel=terms.channels, purpose=terms.purposes)
    field = base.model_fields["payload"]
    types = (*EVENT_TYPES, *(b.name for b in terms.behaviour))
    return create_model(  # type: ignore[call-overload,no-any-return]
        base.__name__,
        __base__=with_choices(base, type=types),
        __module__=base.__module__,
        payload=(payload, Field(default_factory=payload, description=field.description)),
    )


def catalog_and_policy(settings: Settings) -> tuple[Catalog, Policy]:
    """The settings' catalog and their policy checked against it; a file that cannot be
    read, or a policy naming what the catalog lacks, stops the service before it starts
    with the loader's message."""
    from nextbest.decisions.catalog import ConfigError
    from nextbest.decisions.runtime import StartupError, load_catalog_and_policy

    try:
        return load_catalog_and_policy(settings)
    except ConfigError as exc:
        raise StartupError(str(exc)) from exc


@functools.cache
def nextbest_service() -> bentoml.Service[NextBestService]:
    """The BentoML service, decorated with :func:`service_options` of the current settings;
    its input models take the policy's context allow-list and the catalog's channels and
    purposes."""
    settings = get_settings()
    catalog, policy = catalog_and_policy(settings)
    terms = catalog.terms()
    svc = bentoml.service(**service_options(settings))(NextBestService)
    api = svc.apis["decide"]
    api.input_spec = with_choices(
        decide_input_model(api.input_spec, policy), channel=terms.channels
    )
    events = svc.apis["events"]
    events.input_spec = events_input_model(events.input_spec, terms)
    # Inside BentoML's middleware chain (the first added is the outermost): metrics,
    # tracing exclusion, timeout and concurrency limit still apply; only the router and
    # BentoML's API wrapper are skipped for the JSON APIs. The key check comes first:
    # nothing of a request without a valid key is read.
    keys = KeyRing(settings.api_keys_path, settings.api_keys)
    if not keys.records():
        log.warning(
            "no API keys in %s or the settings: every route but health answers 401 "
            "(create one with `nextbest keys create`)",
            settings.api_keys_path,
        )
    svc.add_asgi_middleware(AuthMiddleware, keys=keys, workers=WORKERS)
    svc.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    svc.add_asgi_middleware(OpenAPIMiddleware, service=svc)
    svc.add_asgi_middleware(
        JsonApiMiddleware,
        get_handler=json_api_handler,
        paths=("/decide", "/events"),
        server=f"BentoML Service/{svc.name}",
        retry_after=str(settings.retry_after_seconds),
    )
    return svc


def __getattr__(name: str) -> Any:
    """``NextBest``: the service, built (settings read) on first access."""
    if name == "NextBest":
        svc = nextbest_service()
        globals()["NextBest"] = svc  # BentoML finds a service by its module attribute
        return svc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
