"""JsonApiMiddleware answers only ``POST`` to its JSON APIs and hands the rest on untouched."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from serving.fast_http import (
    VALIDATED,
    Forward,
    JsonApiMiddleware,
    json_body,
    validation_error_body,
)


async def _behind(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(f"app {request.method} {request.url.path} {len(body)}")


def _client(handler: Any, retry_after: str = "") -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/{p:path}", _behind, methods=["GET", "POST"])],
        middleware=[
            Middleware(
                JsonApiMiddleware,
                get_handler=lambda: handler,
                paths=("/decide", "/events"),
                server="Test/1",
                retry_after=retry_after,
            )
        ],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_post_decide_in_json_goes_to_the_handler_with_the_whole_body() -> None:
    seen: list[tuple[str, bytes]] = []

    async def handler(path: str, body: bytes) -> tuple[int, bytes]:
        seen.append((path, body))
        return 201, b'{"ok":true}'

    async def go() -> list[httpx.Response]:
        async with _client(handler) as c:

            async def chunks() -> Any:  # a body in several ASGI messages is joined
                for part in (b'{"a":', b"1", b"}"):
                    yield part

            return [
                await c.post("/decide", content=b'{"x": 1}'),
                await c.post(
                    "/decide",
                    content=b"{}",
                    headers={"content-type": "application/json; charset=utf-8"},
                ),
                await c.post("/decide", content=chunks()),
                await c.post("/events", content=b"[]"),
            ]

    for r in _run(go()):
        assert r.status_code == 201 and r.content == b'{"ok":true}'
        assert r.headers["content-type"] == "application/json"
        assert r.headers["server"] == "Test/1"
        assert int(r.headers["content-length"]) == len(r.content)
    assert seen == [
        ("/decide", b'{"x": 1}'),
        ("/decide", b"{}"),
        ("/decide", b'{"a":1}'),
        ("/events", b"[]"),
    ]


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/decide", {}),
        ("POST", "/decide/", {}),
        ("POST", "/actions", {}),
        ("GET", "/events", {}),
    ],
)
def test_everything_else_reaches_the_app(method: str, path: str, headers: dict) -> None:
    async def handler(path: str, body: bytes) -> tuple[int, bytes]:
        raise AssertionError("the fast path must not answer this")

    async def go() -> httpx.Response:
        async with _client(handler) as c:
            return await c.request(method, path, content=b"abc", headers=headers)

    r = _run(go())
    assert r.status_code == 200
    assert r.text == f"app {method} {path} 3"


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain"]
)
def test_other_media_types_are_refused_with_415(content_type: str) -> None:
    async def handler(path: str, body: bytes) -> tuple[int, bytes]:
        raise AssertionError("a body that is not JSON must not reach the handler")

    async def go() -> httpx.Response:
        async with _client(handler) as c:
            return await c.post("/events", content=b"abc", headers={"content-type": content_type})

    r = _run(go())
    assert r.status_code == 415
    assert r.json() == {"error": "body: must be application/json"}


def test_a_handler_may_hand_the_body_on_to_the_app() -> None:
    async def handler(path: str, body: bytes) -> None:
        return None

    async def go() -> httpx.Response:
        async with _client(handler) as c:
            return await c.post("/decide", content=b'{"k": 1}')

    assert _run(go()).text == "app POST /decide 8"


def test_no_handler_means_the_app_answers() -> None:
    async def go() -> httpx.Response:
        async with _client(None) as c:
            return await c.post("/decide", content=b"{}")

    assert _run(go()).text == "app POST /decide 2"


def test_error_bodies_name_the_fields_and_never_the_values() -> None:
    class Ctx(BaseModel, extra="forbid"):
        page: str | None = None

    class In(BaseModel):
        k: int = Field(3, ge=1)
        context: Ctx = Field(default_factory=Ctx)

    with pytest.raises(ValidationError) as err:
        In.model_validate_json(b'{"k": 0, "context": {"email": "ann@example.com"}}')
    body = json.loads(validation_error_body(err.value))
    assert body == {
        "error": "k: Input should be greater than or equal to 1; "
        "context.email: not allowed by the policy",
        "detail": [
            {
                "loc": ["k"],
                "msg": "Input should be greater than or equal to 1",
                "type": "greater_than_equal",
            },
            {
                "loc": ["context", "email"],
                "msg": "not allowed by the policy",
                "type": "extra_forbidden",
            },
        ],
    }
    assert json_body({"error": "é"}) == '{"error":"é"}'.encode()


def test_a_503_answer_carries_retry_after_and_no_other_does() -> None:
    async def handler(path: str, body: bytes) -> tuple[int, bytes]:
        status = 503 if path == "/decide" else 200
        return status, b'{"reason":"features_unavailable"}'

    async def go() -> list[httpx.Response]:
        async with _client(handler, retry_after="7") as c:
            return [await c.post("/decide", content=b"{}"), await c.post("/events", content=b"{}")]

    down, up = _run(go())
    assert down.status_code == 503 and down.headers["retry-after"] == "7"
    assert up.status_code == 200 and "retry-after" not in up.headers


class _Body(BaseModel):
    x: int


def test_a_forwarded_body_reaches_the_app_unchanged_with_the_model_it_was_validated_into() -> None:
    seen: list[tuple[bytes, Any]] = []

    async def handler(path: str, body: bytes) -> Forward:
        return Forward(_Body.model_validate_json(body))

    async def behind(request: Request) -> PlainTextResponse:
        seen.append((await request.body(), request.state._state.get(VALIDATED)))
        return PlainTextResponse("app")

    app = Starlette(
        routes=[Route("/decide", behind, methods=["POST"])],
        middleware=[Middleware(JsonApiMiddleware, get_handler=lambda: handler)],
    )

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post("/decide", content=b'{"x": 3}')

    assert _run(go()).text == "app"
    assert seen == [(b'{"x": 3}', _Body(x=3))]


def test_the_route_takes_the_validated_model_and_parses_only_a_body_that_was_not() -> None:
    from serving.service import validated_once

    parsed: list[bytes] = []

    class Spec(BaseModel):
        x: int

        @classmethod
        async def from_http_request(cls, request: Request, serde: Any) -> Any:
            body = await request.body()
            parsed.append(body)
            return cls.model_validate_json(body)

    spec = validated_once(Spec)

    def request(body: bytes, state: dict[str, Any]) -> Request:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "path": "/decide", "headers": []}
        return Request({**scope, "state": state}, receive)

    validated = spec(x=1)
    got = _run(spec.from_http_request(request(b'{"x": 1}', {VALIDATED: validated}), None))
    assert got is validated and parsed == []
    got = _run(spec.from_http_request(request(b'{"x": 2}', {}), None))
    assert got == spec(x=2) and parsed == [b'{"x": 2}']
