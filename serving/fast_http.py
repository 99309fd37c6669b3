"""``POST /decide`` answered by a plain ASGI middleware inside the BentoML app.

BentoML's route for an API costs more CPU per request than the decision itself once the
decision is micro-batched: starlette's router and request objects, BentoML's context
middleware, ``api_endpoint_wrapper`` (an ``inspect.signature`` of the method and a
``RemoteProxy`` attribute per request, a pydantic deprecation warning built when it reads
``model_fields`` from the instance) and a background task to close the request.
:class:`FastDecideMiddleware` sits in BentoML's own middleware chain (added with
``Service.add_asgi_middleware``), so the server, the Prometheus request metrics, the
tracing exclusion, the timeout and the concurrency limit still wrap every request; it answers
``POST /decide`` with a JSON body itself and hands every other request (and a ``/decide``
in another media type) to BentoML unchanged.

The answer is BentoML's, byte for byte: the body is validated by the very pydantic input
model BentoML generated for the API (same rules, same 400 body naming the bad field), a
:class:`~bentoml.exceptions.InvalidArgument` is a 400 with BentoML's ``[{"error": ...}]``
body, anything else a 500 with BentoML's message, and the ``Server`` header is the one
BentoML sets. ``tests/integration/test_fast_http.py`` holds the two paths equal on good,
unknown and malformed requests.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse

log = logging.getLogger(__name__)

#: What a handler returns: HTTP status, the JSON body and any further headers.
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]
Handler = Callable[[bytes], Awaitable[Answer]]

_JSON = b"application/json"
#: BentoML's message for an unexpected error (``api_endpoint_wrapper``).
UNEXPECTED = "An unexpected error has occurred, please check the server log."


def json_body(content: Any) -> bytes:
    """``content`` encoded exactly as BentoML's error responses (starlette ``JSONResponse``)."""
    return bytes(JSONResponse(content).body)


def validation_error_body(exc: Any) -> bytes:
    """BentoML's 400 body for a pydantic ``ValidationError`` of the request."""
    return json_body(
        {
            "error": f"{exc.error_count()} validation error for {exc.title}",
            "detail": exc.errors(include_context=False, include_input=False),
        }
    )


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether BentoML would read the body as JSON: no Content-Type, or application/json."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip() == _JSON
    return True


class FastDecideMiddleware:
    """Answer ``POST <path>`` with ``handler``; pass everything else to the app.

    ``handler`` is looked up per request through ``get_handler``: None (the service
    instance not built yet, or the fast path switched off) means BentoML answers.
    """

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        get_handler: Callable[[], Handler | None],
        path: str = "/decide",
        server: str = "",
    ) -> None:
        self.app = app
        self.get_handler = get_handler
        self.path = path
        self._extra = [(b"server", server.encode("latin-1"))] if server else []

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        """The ASGI entry point."""
        handler = None
        if (
            scope["type"] == "http"
            and scope["path"] == self.path
            and scope["method"] == "POST"
            and _is_json(scope["headers"])
        ):
            handler = self.get_handler()
        if handler is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":  # the client went away: nobody to answer
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, body, headers = await handler(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", _JSON),
                    *self._extra,
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
