"""FastDecideMiddleware answers only ``POST /decide`` in JSON and hands the rest on untouched."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from serving.fast_http import FastDecideMiddleware, json_body, validation_error_body


async def _behind(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(f"app {request.method} {request.url.path} {len(body)}")


def _client(handler: Any) -> httpx.AsyncClient:
    app = Starlette(
        routes=[Route("/{p:path}", _behind, methods=["GET", "POST"])],
        middleware=[Middleware(FastDecideMiddleware, get_handler=lambda: handler, server="Test/1")],
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_post_decide_in_json_goes_to_the_handler_with_the_whole_body() -> None:
    seen: list[bytes] = []

    async def handler(body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        seen.append(body)
        return 201, b'{"ok":true}', [(b"retry-after", b"5")]

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
            ]

    for r in _run(go()):
        assert r.status_code == 201 and r.content == b'{"ok":true}'
        assert r.headers["content-type"] == "application/json"
        assert r.headers["server"] == "Test/1"
        assert r.headers["retry-after"] == "5"  # the handler's own headers go out too
        assert int(r.headers["content-length"]) == len(r.content)
    assert seen == [b'{"x": 1}', b"{}", b'{"a":1}']


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/decide", {}),
        ("POST", "/decide/", {}),
        ("POST", "/events", {}),
        ("POST", "/decide", {"content-type": "multipart/form-data; boundary=x"}),
        ("POST", "/decide", {"content-type": "text/plain"}),
    ],
)
def test_everything_else_reaches_the_app(method: str, path: str, headers: dict) -> None:
    async def handler(body: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        raise AssertionError("the fast path must not answer this")

    async def go() -> httpx.Response:
        async with _client(handler) as c:
            return await c.request(method, path, content=b"abc", headers=headers)

    r = _run(go())
    assert r.status_code == 200
    assert r.text == f"app {method} {path} 3"


def test_no_handler_means_the_app_answers() -> None:
    async def go() -> httpx.Response:
        async with _client(None) as c:
            return await c.post("/decide", content=b"{}")

    assert _run(go()).text == "app POST /decide 2"


def test_error_bodies_are_starlettes_json() -> None:
    class In(BaseModel):
        k: int = Field(3, ge=1)

    with pytest.raises(ValidationError) as err:
        In.model_validate_json(b'{"k": 0}')
    body = validation_error_body(err.value)
    assert body.startswith(b'{"error":"1 validation error for In","detail":[{"type":"greater_than')
    assert b'"loc":["k"]' in body and b"input" not in body
    assert json_body([{"error": "é"}]) == '[{"error":"é"}]'.encode()
