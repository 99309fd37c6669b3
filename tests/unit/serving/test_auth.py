"""The route -> scope table, the rate limits and AuthMiddleware in front of a small app."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from nextbest.core.api_keys import ApiKeyRecord, KeyRing, create_key, hash_key
from nextbest.core.vocabulary import API_SCOPES
from serving.auth import (
    ANY_KEY,
    KEY_NAME,
    PUBLIC,
    AuthMiddleware,
    RateLimits,
    presented_key,
    required_scope,
)
from serving.openapi import add_security


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/healthz", PUBLIC),
        ("/livez", PUBLIC),
        ("/readyz", PUBLIC),
        ("/decide", "decide"),
        ("/actions", "decide"),
        ("/events", "events"),
        ("/customers/C1/consent", "admin"),
        ("/customers/lookup/consent", "admin"),
        ("/customers", "admin"),
        ("/admin/anything", "admin"),
        ("/metrics", "admin"),
        ("/", PUBLIC),  # the API page and its spec: a browser shows them without a key
        ("/docs.json", PUBLIC),
        ("/docs", PUBLIC),
        ("/docs/", ANY_KEY),  # not listed: a key is still needed
        ("/console", PUBLIC),  # the console checks its own signed session cookie
        ("/console/customers/C1", PUBLIC),
        ("/consoles", ANY_KEY),
        ("/healthz/", ANY_KEY),
        ("/decide/", ANY_KEY),
    ],
)
def test_every_route_has_its_scope(path: str, scope: str) -> None:
    assert required_scope(path).scope == scope


def test_routes_log_their_pattern_not_their_values() -> None:
    assert required_scope("/customers/jane@example.com/consent").pattern == "/customers/"


def test_the_key_comes_from_bearer_or_x_api_key() -> None:
    assert presented_key([(b"authorization", b"Bearer nb_a")]) == "nb_a"
    assert presented_key([(b"authorization", b"bearer  nb_a ")]) == "nb_a"
    assert presented_key([(b"x-api-key", b"nb_b")]) == "nb_b"
    assert presented_key([(b"x-api-key", b"nb_b"), (b"authorization", b"Bearer nb_a")]) == "nb_a"
    assert presented_key([(b"authorization", b"Basic dXNlcjpwYXNz")]) is None
    assert presented_key([(b"authorization", b"Bearer ")]) is None
    assert presented_key([]) is None


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _record(rate: float | None, burst: int | None = None) -> ApiKeyRecord:
    return ApiKeyRecord(
        name="k", sha256=hash_key("k"), scopes=("decide",), rate_per_second=rate, burst=burst
    )


def test_each_worker_admits_its_share_of_a_keys_rate_and_burst() -> None:
    clock = Clock()
    limits = RateLimits(workers=2, clock=clock)
    key = _record(rate=10, burst=6)  # per worker: 5/s, 3 at once
    assert [limits.wait(key) for _ in range(3)] == [0.0] * 3
    assert limits.wait(key) == pytest.approx(0.2)  # the next token in 1/5 s
    clock.t += 0.2
    assert limits.wait(key) == 0.0
    clock.t += 10.0  # the bucket fills up to the burst, no further
    assert [limits.wait(key) for _ in range(4)].count(0.0) == 3
    unlimited = _record(rate=None)
    assert all(limits.wait(unlimited) == 0.0 for _ in range(1000))
    tiny = RateLimits(workers=2, clock=clock)
    assert tiny.wait(_record(rate=0.5)) == 0.0  # a burst of at least one per worker
    assert tiny.wait(_record(rate=0.5)) == pytest.approx(4.0)


async def _echo(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.url.path} by {getattr(request.state, KEY_NAME, None)}")


def _app(keys: KeyRing, clock: Clock) -> Starlette:
    return Starlette(
        routes=[Route("/{p:path}", _echo, methods=["GET", "POST"])],
        middleware=[Middleware(AuthMiddleware, keys=keys, workers=1, clock=clock)],
    )


def _get(app: Starlette, path: str, headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(go())


def test_the_middleware_refuses_by_key_scope_and_rate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.json"
    decide, _ = create_key(path, "decider", ["decide"], rate_per_second=1, burst=2)
    admin, _ = create_key(path, "ops", list(API_SCOPES))
    clock = Clock()
    app = _app(KeyRing(path, clock=clock), clock)
    caplog.set_level(logging.INFO, logger="serving.auth")

    r = _get(app, "/healthz", {})
    assert (r.status_code, r.text) == (200, "/healthz by None")
    for headers in ({}, {"Authorization": f"Bearer {decide}x"}, {"X-API-Key": "nb_nope"}):
        r = _get(app, "/actions", headers)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"].endswith("API key: send Authorization: Bearer <key>")
    r = _get(app, "/customers/jane@example.com/consent", {"X-API-Key": decide})
    assert r.status_code == 403 and r.json() == {"error": "this API key lacks the scope 'admin'"}
    for _ in range(2):  # the burst
        r = _get(app, "/actions", {"Authorization": f"Bearer {decide}"})
        assert (r.status_code, r.text) == (200, "/actions by decider")
    r = _get(app, "/actions", {"Authorization": f"Bearer {decide}"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json() == {"error": "rate limit of this API key exceeded"}
    r = _get(app, "/customers/C1/consent", {"X-API-Key": admin})
    assert (r.status_code, r.text) == (200, "/customers/C1/consent by ops")

    logged = caplog.text
    assert "lacks scope admin" in logged and "decider" in logged and "429" in logged
    for secret in (decide, admin, "nb_nope", "jane@example.com"):
        assert secret not in logged


def _spec() -> dict[str, Any]:
    def op() -> dict[str, Any]:
        return {"responses": {"200": {"description": "ok"}}}

    return {
        "openapi": "3.0.2",
        "paths": {
            "/decide": {"post": op()},
            "/customers/{customer_id}/consent": {"get": op()},
            "/docs.json": {"get": op()},
            "/healthz": {"get": op()},
        },
        "components": {"schemas": {}},
    }


def test_the_spec_documents_the_key_and_the_refusals() -> None:
    spec = add_security(_spec())
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["security"] == [{"bearer": []}, {"apiKey": []}]
    decide = spec["paths"]["/decide"]["post"]
    assert {"200", "401", "403", "429"} == set(decide["responses"])
    assert "`decide`" in decide["description"]
    assert "`admin`" in spec["paths"]["/customers/{customer_id}/consent"]["get"]["description"]
    # the spec itself is public: a browser reads the API page without a key
    assert set(spec["paths"]["/docs.json"]["get"]["responses"]) == {"200"}
    assert spec["paths"]["/docs.json"]["get"]["security"] == []
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    assert "401" not in spec["paths"]["/healthz"]["get"]["responses"]
    assert "WWW-Authenticate" in decide["responses"]["401"]["headers"]
    assert "Retry-After" in decide["responses"]["429"]["headers"]
    assert "`decide`" in decide["responses"]["403"]["description"]
