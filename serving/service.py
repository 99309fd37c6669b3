"""The nextbest decision service (BentoML): ``POST /decide``, ``POST /events``, ``GET /actions``,
``GET /customers/{id}/consent``.

A thin shell around :class:`serving.decider.OnlineDecider`, which is built once at
start-up from the settings (champion model by MLflow alias, Feast store, catalog, policy,
decision log). BentoML also serves ``/healthz``, ``/livez``, ``/readyz``, ``/metrics``
(Prometheus) and the OpenAPI page at ``/`` (spec at ``/docs.json``). Every route but the
health checks needs an API key of the route's scope (:mod:`serving.auth`).

Start it with ``bentoml serve serving.service:NextBest`` or ``nextbest serve``.

Settings are read at start-up, never at import. The instance reads them in its
``__init__``; the options of ``bentoml.service`` (workers, traffic, access log, the tracing
exclusion of /decide) are read by BentoML when the class is decorated, so the class is
decorated by :func:`nextbest_service`, which reads the settings then. ``NextBest`` is that
service, built on first access (a module ``__getattr__``, PEP 562): when ``bentoml serve``
(or ``bentoml build``) looks up ``serving.service:NextBest`` in a worker, before it builds
the worker's app. Importing the module (for its helpers) reads nothing.
"""

from __future__ import annotations

import functools
import gc
import logging
from http import HTTPStatus
from typing import Any, Literal

import bentoml
import orjson
from bentoml import get_current_service
from bentoml.exceptions import BentoMLException, InvalidArgument
from fastapi import FastAPI
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import JSONResponse, Response

from core.api_keys import KeyRing
from core.settings import Settings, get_settings
from core.vocabulary import CHANNELS, EVENT_TYPES, ID_TYPES
from serving.auth import KEY_NAME, AuthMiddleware
from serving.batching import MicroBatcher
from serving.decider import OnlineDecider
from serving.events import EventConflict
from serving.fast_http import (
    UNEXPECTED,
    Answer,
    FastDecideMiddleware,
    Handler,
    json_body,
    validation_error_body,
)
from serving.openapi import OpenAPIMiddleware
from serving.requests import CustomerRef, DecideRequest, RequestError
from serving.responses import response_from_record

log = logging.getLogger(__name__)

IdType = Literal[ID_TYPES]  # type: ignore[valid-type]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]


class Customer(BaseModel):
    """How the caller identifies the customer; raw values never reach the decision log."""

    id: str = Field(min_length=1, max_length=256, description="The identifier value.")
    id_type: IdType = Field("customer_id", description="What kind of identifier ``id`` is.")


def tracing_config(settings: Settings) -> dict[str, Any]:
    """BentoML's ``tracing`` option: /decide is excluded unless ``settings.trace_decide``."""
    return {"excluded_urls": [] if settings.trace_decide else ["/decide"]}


def fast_http_enabled(settings: Settings) -> bool:
    """Whether /decide is answered by FastDecideMiddleware: unless switched off, or traced
    (a span wants BentoML's request context and its request-id header)."""
    return settings.fast_http and not settings.trace_decide


#: Plain GET routes beside the BentoML APIs (mounted at the root).
extras = FastAPI(title="nextbest catalog")


@bentoml.asgi_app(extras, path="/")
class NextBestService:
    """Next-best-action decisions under consent, suppression and contact rules."""

    def __init__(self) -> None:
        settings = get_settings()
        #: BentoML's pydantic model of the /decide body (what its route validates with).
        self.decide_input = nextbest_service().apis["decide"].input_spec
        self.decider = OnlineDecider(settings)
        self.batcher = MicroBatcher(self.decider, inline_sync=settings.inline_log_sync)
        # The loaded heap is large and long-lived; freezing it keeps full GC passes (and the
        # p99 spikes they cause) away from requests.
        gc.collect()
        gc.freeze()
        # /decide through FastDecideMiddleware (same answers, a fraction of the framework's
        # CPU) unless switched off, or traced: a span wants BentoML's request context.
        #: The handler FastDecideMiddleware answers /decide with (None: BentoML answers).
        self.fast_decide: Handler | None = self.answer_json if fast_http_enabled(settings) else None
        log.info("nextbest service ready: model %s", self.decider.runtime.model_version)

    @bentoml.api(route="/decide")
    async def decide(
        self,
        customer: Customer,
        channel: Channel,
        k: int = Field(3, ge=1, le=20, description="How many ranked actions to return."),
        context: dict[str, Any] = Field(default_factory=dict),
    ) -> dict[str, Any]:
        """Rank the actions worth taking for this customer on this channel, and log why."""
        # One JSON encoding straight into the body: BentoML's dict output path validates
        # the dict again and streams it in chunks, which costs more than the decision.
        body = await self._decide_body(customer, channel, k, context)
        return Response(body, media_type="application/json")

    async def _decide_body(
        self, customer: Customer, channel: str, k: int, context: dict[str, Any]
    ) -> bytes:
        request = DecideRequest(CustomerRef(customer.id, customer.id_type), channel, k, context)
        try:
            # Decided with the other requests of this loop turn, answered once on disk.
            record = await self.batcher.decide(request)
        except RequestError as exc:
            raise InvalidArgument(str(exc)) from exc
        return orjson.dumps(response_from_record(record))

    async def answer_json(self, body: bytes) -> Answer:
        """``POST /decide`` from its raw JSON body, as BentoML's route would answer it.

        The body is validated by BentoML's own input model of :meth:`decide`; the status
        and body of every outcome are those of ``api_endpoint_wrapper``.
        """
        # A bad request is logged by the fields it got wrong only: pydantic's and the
        # resolver's messages may quote the input, which can be an email or a phone.
        try:
            data = self.decide_input.model_validate_json(body or b"{}")
        except ValidationError as exc:
            fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            log.info("/decide [POST] 400: invalid %s", ", ".join(fields))
            return 400, validation_error_body(exc)
        try:
            return 200, await self._decide_body(data.customer, data.channel, data.k, data.context)
        except InvalidArgument as exc:
            log.info("/decide [POST] 400: invalid %s", str(exc).split(":", 1)[0])
            # BentoML's body for a 4xx BentoMLException is a one-element list
            return int(exc.error_code), json_body([{"error": str(exc)}])
        except Exception:
            log.error("Exception on /decide [POST]", exc_info=True)
            return 500, json_body({"error": UNEXPECTED})

    @bentoml.api(route="/events")
    def events(
        self,
        ctx: bentoml.Context,
        customer: Customer,
        type: EventType,
        timestamp: str | float | None = Field(
            None, description="When it happened: ISO 8601 or epoch seconds (default: now)."
        ),
        payload: dict[str, Any] = Field(default_factory=dict),
        event_id: str | None = Field(
            None,
            max_length=128,
            description="Your idempotency key: an event sent again with the same id and "
            "content is acknowledged and not applied twice; other content under a used id "
            "is refused with 409. Default: a fresh id (a retry would count again).",
        ),
        source: str | None = Field(
            None, max_length=128, description="The system the event comes from (default api)."
        ),
    ) -> dict[str, Any]:
        """Record a customer event in the ledger (on disk before the answer); the next
        decision for the customer sees it, by its event time. The event's actor is the
        name of the API key that sent it."""
        try:
            return self.decider.apply_event(
                CustomerRef(customer.id, customer.id_type),
                type,
                timestamp,
                payload,
                event_id=event_id,
                source=source,
                actor=getattr(ctx.request.state, KEY_NAME, "anonymous"),
            )
        except EventConflict as exc:
            log.info("/events [POST] 409: event_id reused")
            raise BentoMLException(str(exc), error_code=HTTPStatus.CONFLICT) from exc
        except RequestError as exc:
            log.info("/events [POST] 400: invalid %s", str(exc).split(":", 1)[0])
            raise InvalidArgument(str(exc)) from exc

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
    def get_consent(self, customer_id: str, id_type: IdType = "customer_id") -> Any:
        """A customer's consent changes recorded through ``/events``, in event time, with
        source and actor."""
        try:
            return self.decider.consent_history(CustomerRef(customer_id, id_type))
        except RequestError as exc:
            status = 404 if str(exc).startswith("customer:") else 400
            return JSONResponse({"error": str(exc)}, status_code=status)


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
        # Threads for the sync endpoints only (/events waits on the ledger's synced commit).
        "threads": 4,
    }


def fast_decide_handler() -> Handler | None:
    """The running service instance's /decide handler for FastDecideMiddleware; None (BentoML
    answers) before the instance is built or when its fast path is off."""
    try:
        instance = get_current_service()
    except BentoMLException:  # not built yet
        return None
    return getattr(instance, "fast_decide", None)


@functools.cache
def nextbest_service() -> bentoml.Service[NextBestService]:
    """The BentoML service, decorated with :func:`service_options` of the current settings."""
    settings = get_settings()
    svc = bentoml.service(**service_options(settings))(NextBestService)
    # BentoML applies the service's middlewares in the order they are added, the first
    # outermost: the key check comes before everything of ours, the fast /decide path too.
    keys = KeyRing(settings.api_keys_path, settings.api_keys)
    if not keys.records():
        log.warning(
            "no API keys in %s or the settings: every route but health answers 401 "
            "(create one with `nextbest keys create`)",
            settings.api_keys_path,
        )
    svc.add_asgi_middleware(AuthMiddleware, keys=keys, workers=WORKERS)
    svc.add_asgi_middleware(OpenAPIMiddleware)
    # Inside BentoML's middleware chain: metrics, tracing exclusion, timeout and concurrency
    # limit still apply to /decide; only the router and BentoML's API wrapper are skipped.
    svc.add_asgi_middleware(
        FastDecideMiddleware,
        get_handler=fast_decide_handler,
        path="/decide",
        server=f"BentoML Service/{svc.name}",
    )
    return svc


def __getattr__(name: str) -> Any:
    """``NextBest``: the service, built (settings read) on first access."""
    if name == "NextBest":
        svc = nextbest_service()
        globals()["NextBest"] = svc  # BentoML finds a service by its module attribute
        return svc
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
