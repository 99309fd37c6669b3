"""The OpenAPI spec the service serves at ``/docs.json``: BentoML's, made exact.

BentoML generates the spec from the APIs' input and output models (and the mounted FastAPI
app's routes), but it keeps only the first branch of a top-level optional or union field
(``timestamp`` would read as text only) and declares error bodies the service does not
send. :func:`document_spec` takes each JSON API's request schema from its input model (the
model that validates it) and declares the error answers from one table,
:data:`ERROR_RESPONSES` (a row per operation, and ``*`` for what every route may answer),
all with the one :data:`ERROR_SCHEMA` body; :func:`add_security` adds the API key schemes,
each operation's key requirement (none for the health routes, see
:func:`serving.auth.required_scope`) and its 401, 403 and 429 answers.
:class:`OpenAPIMiddleware` serves the result in place of BentoML's.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from pydantic import BaseModel

from serving.api_page import render_api_page
from serving.auth import ANY_KEY, PUBLIC, required_scope
from serving.response_models import REQUEST_EXAMPLES, RESPONSE_MODELS

#: Every error body: ``error`` names the field and the rule; a 400 of a body that breaks
#: the request model lists each problem in ``detail`` (location, message, kind).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What is wrong, naming the field."},
        "reason": {
            "type": "string",
            "description": "A 503's cause: `<dependency>_unavailable` (features, ledger, "
            "decision_log, model); retry after `Retry-After` seconds (docs/operations.md).",
        },
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


@dataclass(frozen=True)
class ErrorAnswer:
    """One error answer of an operation: what it means, and whether the router may send it
    as plain text (starlette's own 404 for a path no route matches)."""

    description: str
    plain_text_too: bool = False


_BAD_BODY = ErrorAnswer("The body breaks the request model or a rule; `error` names the field.")
_NOT_JSON = ErrorAnswer("The body is not application/json.")

#: (method, path) -> {status: answer}; ``("*", "*")`` applies to every operation.
ERROR_RESPONSES: dict[tuple[str, str], dict[int, ErrorAnswer]] = {
    ("*", "*"): {
        413: ErrorAnswer("The request body is larger than the service reads (max_request_bytes)."),
        503: ErrorAnswer(
            "A store the answer needs cannot be read or written now (`reason` names it; "
            "retry after `Retry-After`), or the service is starting or stopping."
        ),
        504: ErrorAnswer("The request took longer than the service's timeout."),
    },
    ("post", "/decide"): {400: _BAD_BODY, 415: _NOT_JSON},
    ("post", "/events"): {
        400: _BAD_BODY,
        409: ErrorAnswer("The event_id was already used for an event with other content."),
        415: _NOT_JSON,
    },
    ("post", "/admin/forget"): {
        400: ErrorAnswer("The identifier or the reason is not valid (nothing was erased)."),
        404: ErrorAnswer("No customer has this identifier (nothing was erased)."),
    },
    ("get", "/customers/{customer_id}/consent"): {
        400: ErrorAnswer("The customer id is not a valid customer id."),
        404: ErrorAnswer(
            "No customer has this customer id (plain text: the path matches no route, as "
            "with a control character in the customer id).",
            plain_text_too=True,
        ),
    },
    ("post", "/customers/lookup/consent"): {
        400: ErrorAnswer("The identifier is not a valid value of its id_type."),
        404: ErrorAnswer("No customer has this identifier."),
    },
}

_REF = "#/components/schemas/{model}"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def document_spec(
    spec: dict[str, Any], inputs: Mapping[str, type[BaseModel]] | None = None
) -> dict[str, Any]:
    """A copy of BentoML's ``spec`` with the request body of each ``POST`` path in
    ``inputs`` taken from its input model, and the error answers of
    :data:`ERROR_RESPONSES` declared on every operation (they replace what BentoML
    declares for the same status; a status the table does not name, as FastAPI's 422, is
    kept)."""
    out = copy.deepcopy(spec)
    out["info"] = service_info()
    schemas = out.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    paths = out.get("paths", {})
    for path, model in (inputs or {}).items():
        body = model.model_json_schema(ref_template=_REF)
        schemas.update(body.pop("$defs", {}))
        paths[path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    _typed_answers(paths, schemas)
    json_error = {"schema": {"$ref": _REF.format(model="Error")}}
    for path, item in paths.items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = {str(k): v for k, v in operation.get("responses", {}).items()}
            rows = {**ERROR_RESPONSES[("*", "*")], **ERROR_RESPONSES.get((method, path), {})}
            for status, answer in sorted(rows.items()):
                content: dict[str, Any] = {"application/json": copy.deepcopy(json_error)}
                if answer.plain_text_too:
                    content["text/plain"] = {"schema": {"type": "string"}}
                responses[str(status)] = {"description": answer.description, "content": content}
            operation["responses"] = responses
    return add_security(out)


def service_info() -> dict[str, Any]:
    """The spec's ``info``: nextbest's title, the installed package's version and what the
    service does."""
    return {
        "title": "nextbest decision service",
        "version": package_version(),
        "description": DESCRIPTION,
        "license": {"name": "Apache-2.0"},
    }


def package_version() -> str:
    """The installed nextbest package's version ("unknown" when run from a bare tree)."""
    try:
        return version("nextbest")
    except PackageNotFoundError:
        return "unknown"


DESCRIPTION = (
    "Next-best-action decisions under consent, suppression and contact rules. "
    "`POST /decide` ranks the catalog's actions for one customer on one channel, says why "
    "each other action is excluded and logs the decision for measurement; `mode: service` "
    "decides for a live contact the customer started (service actions first). "
    "`POST /events` records what happened (cases, complaints, purchases, consent, "
    "contacts, identifiers) in the event ledger; the next decision sees it. The agent's "
    "screen is at `/console`. Every route but the health checks and this page needs an API "
    "key (`Authorization: Bearer <key>`) with the route's scope."
)


def _typed_answers(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """The 200 answers of /decide and /events from their response models, and the request
    examples, in place."""
    for (method, path), model in RESPONSE_MODELS.items():
        operation = paths.get(path, {}).get(method)
        if operation is None:
            continue
        body = model.model_json_schema(ref_template=_REF)
        schemas.update(body.pop("$defs", {}))
        name = model.__name__
        schemas[name] = body
        operation.setdefault("responses", {})["200"] = {
            "description": body.get("description", "OK"),
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
        }
    for (method, path), examples in REQUEST_EXAMPLES.items():
        operation = paths.get(path, {}).get(method)
        content = (operation or {}).get("requestBody", {}).get("content", {})
        if "application/json" in content:
            content["application/json"]["examples"] = copy.deepcopy(examples)


SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`nextbest keys create`, docs/security.md).",
    },
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
_UNAUTHORIZED = ErrorAnswer("No API key, or an unknown (revoked) one.")
_TOO_MANY = ErrorAnswer("The API key is over its rate limit; retry after Retry-After seconds.")


def _answer(description: str, header: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }
    if header:
        answer["headers"] = {header: {"schema": {"type": "string"}}}
    return answer


def add_security(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the API key schemes, every operation's key requirement (the scope in
    its description) and its 401, 403 and 429 answers; health routes need no key."""
    components = spec.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
    components.setdefault("schemas", {}).setdefault("Error", ERROR_SCHEMA)
    spec["security"] = [{"bearer": []}, {"apiKey": []}]
    for path, item in spec.get("paths", {}).items():
        rule = required_scope(path.split("{", 1)[0])  # a template: its fixed prefix
        for method in _METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            if rule.scope == PUBLIC:
                operation["security"] = []
                continue
            responses = operation.setdefault("responses", {})
            responses["401"] = _answer(_UNAUTHORIZED.description, "WWW-Authenticate")
            responses["429"] = _answer(_TOO_MANY.description, "Retry-After")
            if rule.scope != ANY_KEY:
                responses["403"] = _answer(f"The API key lacks the scope `{rule.scope}`.")
                note = f"Needs an API key with the scope `{rule.scope}`."
                operation["description"] = f"{operation.get('description') or ''}\n\n{note}"
                operation["description"] = operation["description"].strip()
    return spec


#: The API page loads nothing from elsewhere and runs no script.
PAGE_CSP = b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"
#: Where the API page is served (the same page at both).
PAGE_PATHS = ("/", "/docs")


class OpenAPIMiddleware:
    """Answer ``GET /docs.json`` with BentoML's spec passed through :func:`document_spec`,
    and ``GET /`` (and ``/docs``) with the API page rendered from it
    (:mod:`serving.api_page`: no script, no asset from elsewhere); both built on the first
    request, then kept."""

    def __init__(
        self, app: Callable[..., Awaitable[None]], service: Any, path: str = "/docs.json"
    ) -> None:
        self.app = app
        self.service = service
        self.path = path
        self._body: bytes | None = None
        self._page: bytes | None = None

    def spec(self) -> bytes:
        """The served spec, built once."""
        if self._body is None:
            inputs = {api.route: api.input_spec for api in self.service.apis.values()}
            self._body = orjson.dumps(document_spec(self.service.openapi_spec.asdict(), inputs))
        return self._body

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        """The ASGI entry point."""
        path = scope.get("path") if scope["type"] == "http" else None
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or path
            not in (
                self.path,
                *PAGE_PATHS,
            )
        ):
            await self.app(scope, receive, send)
            return
        if path == self.path:
            body, kind = self.spec(), b"application/json"
        else:
            if self._page is None:
                self._page = render_api_page(orjson.loads(self.spec())).encode()
            body, kind = self._page, b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", kind),
                    (b"content-security-policy", PAGE_CSP),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
