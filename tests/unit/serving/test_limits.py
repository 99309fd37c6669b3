"""BodyLimitMiddleware: a body above the limit is a 413 with a JSON error, declared or streamed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from serving.limits import BodyLimitMiddleware

LIMIT = 1024
reached: list[int] = []


async def _behind(request: Request) -> PlainTextResponse:
    body = await request.body()
    reached.append(len(body))
    return PlainTextResponse(f"app {len(body)}")


def _post(content: Any, path: str = "/decide") -> httpx.Response:
    app = Starlette(
        routes=[Route("/{p:path}", _behind, methods=["GET", "POST"])],
        middleware=[Middleware(BodyLimitMiddleware, max_bytes=LIMIT)],
    )

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.post(path, content=content)

    return asyncio.run(go())


def test_bodies_up_to_the_limit_reach_the_app_whole() -> None:
    reached.clear()
    assert _post(b"x" * LIMIT).text == f"app {LIMIT}"

    async def chunks() -> Any:
        for _ in range(4):
            yield b"y" * (LIMIT // 4)

    assert _post(chunks(), "/customers/c/consent").text == f"app {LIMIT}"
    assert reached == [LIMIT, LIMIT]


def test_a_declared_or_streamed_body_above_the_limit_is_413_and_reaches_nothing() -> None:
    reached.clear()

    async def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b"z" * 512

    for content in (b"x" * (LIMIT + 1), chunks()):
        r = _post(content, "/events")
        assert r.status_code == 413
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {"error": f"body: larger than {LIMIT} bytes"}
    assert reached == []
