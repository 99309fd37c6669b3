"""The OpenAPI spec the service serves at ``/docs.json``, completed after BentoML built it.

BentoML generates the spec from the service's APIs and mounted apps, and its model has no
place for security schemes. :func:`postprocess_spec` is the one function that completes
the generated spec (as a JSON dict); :class:`OpenAPIMiddleware` applies it to the answer
of ``GET /docs.json``.

What it adds: the API key schemes (``Authorization: Bearer`` and ``X-API-Key``), the key
requirement of every operation (none for the health routes, see
:func:`serving.auth.required_scope`) with the scope it needs in its description, and the
401, 403 and 429 answers with their JSON body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from serving.auth import ANY_KEY, PUBLIC, required_scope

SPEC_PATH = "/docs.json"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuthError"}}},
    }
    if headers:
        answer["headers"] = headers
    return answer


AUTH_RESPONSES: dict[str, dict[str, Any]] = {
    "Unauthorized": _error(
        "No API key, or an unknown (revoked) one.",
        {"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "Forbidden": _error("The API key lacks the scope this route needs."),
    "TooManyRequests": _error(
        "The API key is over its rate limit; retry after the given seconds.",
        {"Retry-After": {"schema": {"type": "integer"}}},
    ),
}
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (nextbest keys create) as a bearer token.",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def add_security(spec: dict[str, Any]) -> dict[str, Any]:
    """The key schemes, each operation's key requirement and its 401/403/429 answers."""
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    components.setdefault("schemas", {})["AuthError"] = _ERROR_SCHEMA
    components.setdefault("responses", {}).update(AUTH_RESPONSES)
    spec["security"] = [{"bearer": []}, {"apiKey": []}]
    for path, item in spec.get("paths", {}).items():
        rule = required_scope(path.split("{", 1)[0])  # a template: its fixed prefix
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            if rule.scope == PUBLIC:
                op["security"] = []
                continue
            responses = op.setdefault("responses", {})
            responses["401"] = {"$ref": "#/components/responses/Unauthorized"}
            responses["429"] = {"$ref": "#/components/responses/TooManyRequests"}
            if rule.scope != ANY_KEY:
                responses["403"] = {"$ref": "#/components/responses/Forbidden"}
                note = f"Needs an API key with the scope `{rule.scope}`."
                op["description"] = f"{op.get('description') or ''}\n\n{note}".strip()
    return spec


def postprocess_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The served spec: BentoML's generated one, completed (the one post-processing hook)."""
    return add_security(spec)


class OpenAPIMiddleware:
    """Answer ``GET /docs.json`` with BentoML's spec passed through :func:`postprocess_spec`."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http" or scope["path"] != SPEC_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = orjson.dumps(postprocess_spec(orjson.loads(body)))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
