"""``POST /decide`` and ``POST /events`` answered by a plain ASGI middleware inside the BentoML app.

BentoML's route for an API costs more CPU per request than the decision itself once the
decision is micro-batched: starlette's router and request objects, BentoML's context
middleware, ``api_endpoint_wrapper`` (an ``inspect.signature`` of the method and a
``RemoteProxy`` attribute per request) and a background task to close the request. It
also logs every client error as an ERROR with a traceback, whose pydantic message may
quote the request's values. :class:`JsonApiMiddleware` sits in BentoML's own middleware
chain (added with ``Service.add_asgi_middleware``), so the server, the Prometheus request
metrics, the tracing exclusion, the timeout and the concurrency limit still wrap every
request; it answers ``POST`` to its paths itself and hands every other request to BentoML
unchanged.

A body is validated by the very pydantic input model BentoML generated for the API (one
model, the one the OpenAPI spec shows); a refused body is answered 400 with
:func:`validation_error_body`, logged at INFO by field name only. A body in another media
type than JSON is answered 415: the APIs are declared JSON only. The handler may hand a
valid body on to BentoML's route (the ``/decide`` fast path switched off or traced): the
body is replayed to it unchanged, and the model it was validated into goes with it
(:class:`Forward`), so it is validated once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from serving.stages import CLOCKS, now_ns

log = logging.getLogger(__name__)

#: What a handler returns: HTTP status and the JSON body.
Answer = tuple[int, bytes]
#: The key of the ASGI scope's ``state`` under which a body validated here reaches
#: BentoML's route (read by the input model's ``from_http_request``, serving/service.py).
VALIDATED = "nextbest.validated"


@dataclass(frozen=True)
class Forward:
    """A handler's hand-off of a valid body to BentoML's route, with the input model it was
    validated into, so that the route does not validate it a second time."""

    data: Any


#: ``(path, body)`` -> the answer; a :class:`Forward` or None: BentoML's route answers
#: (with the same body; None: not validated here).
Handler = Callable[[str, bytes], Awaitable[Answer | Forward | None]]

_JSON = b"application/json"
#: BentoML's message for an unexpected error (``api_endpoint_wrapper``).
UNEXPECTED = "An unexpected error has occurred, please check the server log."
#: The message of a context key the policy does not list (pydantic's ``extra_forbidden``).
NOT_ALLOWED = "not allowed by the policy"
#: At most this many problems are listed in one 400 body.
MAX_ISSUES = 20


def json_body(content: Any) -> bytes:
    """``content`` encoded exactly as BentoML's error responses (starlette ``JSONResponse``)."""
    return bytes(JSONResponse(content).body)


def error_body(message: str) -> bytes:
    """The body of a refused request (the ``Error`` schema of the OpenAPI spec)."""
    return json_body({"error": message})


def _issue(err: Any) -> dict[str, Any]:
    loc = list(err["loc"])
    msg = err["msg"]
    if err["type"] == "extra_forbidden" and loc[:1] == ["context"]:
        msg = NOT_ALLOWED
    elif err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    return {"loc": loc, "msg": msg, "type": err["type"]}


def refused_fields(exc: Any) -> list[str]:
    """The dotted names of the fields a pydantic ``ValidationError`` refused (no values)."""
    return sorted({".".join(map(str, e["loc"])) or "body" for e in exc.errors()})


def validation_error_body(exc: Any) -> bytes:
    """The 400 body of a pydantic ``ValidationError`` of the request: ``error`` names each
    refused field with its rule, ``detail`` lists them (never the values sent)."""
    issues = [
        _issue(e) for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ][:MAX_ISSUES]
    summary = "; ".join(f"{'.'.join(map(str, i['loc'])) or 'body'}: {i['msg']}" for i in issues)
    return json_body({"error": summary, "detail": issues})


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether BentoML would read the body as JSON: no Content-Type, or application/json."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == _JSON
    return True


class JsonApiMiddleware:
    """Answer ``POST`` to ``paths`` with ``handler``; pass everything else to the app.

    ``handler`` is looked up per request through ``get_handler``: None (the service
    instance not built yet) means BentoML answers.
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        get_handler: Callable[[], Handler | None],
        paths: Iterable[str] = ("/decide", "/events"),
        server: str = "",
        retry_after: str = "",
    ) -> None:
        self.app = app
        #: The ``Retry-After`` of a 503 answer (a dependency down); empty: none.
        self._retry = [(b"retry-after", retry_after.encode("latin-1"))] if retry_after else []
        self.get_handler = get_handler
        self.paths = frozenset(paths)
        self._extra = [(b"server", server.encode("latin-1"))] if server else []

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        """The ASGI entry point."""
        handler = None
        if scope["type"] == "http" and scope["path"] in self.paths and scope["method"] == "POST":
            handler = self.get_handler()
        if handler is None:
            await self.app(scope, receive, send)
            return
        if not _is_json(scope["headers"]):
            log.info("%s [POST] 415: body not JSON", scope["path"])
            await self._send(send, 415, error_body("body: must be application/json"))
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":  # the client went away: nobody to answer
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        answer = await handler(scope["path"], body)
        if answer is None or isinstance(answer, Forward):
            if answer is not None:
                scope.setdefault("state", {})[VALIDATED] = answer.data
            await self.app(scope, replay_body(body, receive), send)
            return
        start = now_ns()
        await self._send(send, *answer)
        if scope["path"] == "/decide":
            CLOCKS.add("send", start)

    async def _send(
        self, send: Callable[[dict[str, Any]], Awaitable[None]], status: int, body: bytes
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", _JSON),
                    *self._extra,
                    *(self._retry if status == 503 else []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def replay_body(
    body: bytes, receive: Callable[[], Awaitable[dict[str, Any]]]
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A ``receive`` that gives ``body`` once, then what the client sends next."""
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again
