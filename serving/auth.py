"""Authentication, scopes and per-key rate limits of the decision service (ASGI middleware).

Every route but the health checks needs an API key (:mod:`nextbest.core.api_keys`), sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, holding the scope the route needs
(:func:`required_scope`, the one route table). A missing or unknown key is a 401 with
``WWW-Authenticate: Bearer``, a key without the scope a 403 naming it, a key over its rate
a 429 with ``Retry-After``; the bodies are JSON ``{"error": ...}``. Refusals are logged at
INFO with the route's pattern and the key's name only: never the key, the path's values
or anything else of the request.

:class:`AuthMiddleware` is the outermost of the service's own middlewares, so it guards
the JSON APIs answered in ``serving.fast_http`` and BentoML's routes alike. It puts the
key's name into the request's ``scope["state"]`` (:data:`KEY_NAME`) and into the context
of the request's task (:func:`caller`, what ``/events`` records as the event's actor:
it reaches the handler however it runs, in the middleware, BentoML's route or a worker
thread, since asyncio and anyio copy the context into the threads they start).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson

from nextbest.core.api_keys import ApiKeyRecord, KeyRing
from serving.stages import CLOCKS, now_ns

log = logging.getLogger(__name__)

#: ``scope["state"]`` entry holding the authenticated key's name.
KEY_NAME = "api_key_name"
#: The name of the key the current request was authenticated with.
_CALLER: ContextVar[str] = ContextVar("nextbest_api_key_name", default="anonymous")
#: The route needs no key.
PUBLIC = "public"
#: The route needs a valid key, whatever its scopes.
ANY_KEY = "any"


@dataclass(frozen=True)
class Rule:
    """What a route needs: ``scope`` (a key scope, :data:`ANY_KEY` or :data:`PUBLIC`), and
    the route's pattern as logged (never the path itself, which may hold an identifier)."""

    pattern: str
    scope: str


#: The route table: exact paths, then path prefixes; anything else needs any valid key.
EXACT_ROUTES: dict[str, Rule] = {
    p: Rule(p, s)
    for p, s in (
        ("/healthz", PUBLIC),
        ("/livez", PUBLIC),
        ("/readyz", PUBLIC),
        ("/decide", "decide"),
        ("/actions", "decide"),
        ("/events", "events"),
        ("/metrics", "admin"),
        # The API page and its spec hold nothing secret: a browser shows them without a key.
        ("/", PUBLIC),
        ("/docs", PUBLIC),
        ("/docs.json", PUBLIC),
    )
}
PREFIX_ROUTES: tuple[Rule, ...] = (
    Rule("/customers/", "admin"),
    Rule("/admin/", "admin"),
    # The agent console signs in with a key once and checks its own signed session cookie
    # (and the key's agent scope) on every request: serving/console_session.py.
    Rule("/console/", PUBLIC),
)
DEFAULT_RULE = Rule("(other)", ANY_KEY)


def caller() -> str:
    """The name of the API key that sent the request being answered ("anonymous" outside
    a request)."""
    return _CALLER.get()


def required_scope(path: str) -> Rule:
    """The rule of a request path (the one route -> scope table)."""
    rule = EXACT_ROUTES.get(path)
    if rule is not None:
        return rule
    for prefix in PREFIX_ROUTES:
        if path.startswith(prefix.pattern) or path == prefix.pattern.rstrip("/"):
            return prefix
    return DEFAULT_RULE


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` held."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there is."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimits:
    """Per-key token buckets of one worker process.

    A key's ``rate_per_second`` and ``burst`` are for the whole service; each of its
    ``workers`` processes keeps its own buckets, so each gets ``1/workers`` of both (a
    burst of at least one). Connections are spread over the workers by the kernel, so
    the service as a whole admits about the configured rate.
    """

    def __init__(self, workers: int, clock: Callable[[], float]) -> None:
        self.workers = max(1, workers)
        self.clock = clock
        #: By hash and limits: a key whose limits change in the key file starts afresh.
        self._buckets: dict[tuple[str, float, int | None], TokenBucket] = {}

    def wait(self, key: ApiKeyRecord) -> float:
        """0.0 if ``key`` may go on now, else the seconds until it may."""
        if key.rate_per_second is None:
            return 0.0
        now = self.clock()
        ident = (key.sha256, key.rate_per_second, key.burst)
        bucket = self._buckets.get(ident)
        if bucket is None:
            rate = key.rate_per_second / self.workers
            burst = key.burst if key.burst is not None else max(1.0, key.rate_per_second)
            bucket = TokenBucket(rate, max(1.0, burst / self.workers), now)
            self._buckets[ident] = bucket
        return bucket.take(now)


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key of a request: ``Authorization: Bearer <key>``, else ``X-API-Key``."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip().decode("latin-1")
        elif name == b"x-api-key" and value.strip():
            api_key = value.strip().decode("latin-1")
    return api_key


Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _refuse(
    send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] = ()
) -> None:
    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_UNAUTHORIZED = [(b"www-authenticate", b'Bearer realm="nextbest"')]


class AuthMiddleware:
    """Refuse every request without a key of the route's scope, or over its key's rate."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        keys: KeyRing,
        workers: int = 1,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limits = RateLimits(workers, clock or keys.clock)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = now_ns()
        rule = required_scope(scope["path"])
        if rule.scope == PUBLIC:
            await self.app(scope, receive, send)
            return
        if self.keys.refresh() and self.keys.error is not None:
            log.error("API key file not reloaded, no file key accepted: %s", self.keys.error)
        key = presented_key(scope["headers"])
        record = None if key is None else self.keys.lookup(key)
        if record is None:
            why = "no API key" if key is None else "unknown API key"
            log.info("%s refused 401: %s", rule.pattern, why)
            await _refuse(send, 401, f"{why}: send Authorization: Bearer <key>", _UNAUTHORIZED)
            return
        if rule.scope != ANY_KEY and rule.scope not in record.scopes:
            log.info("%s refused 403: key %s lacks scope %s", rule.pattern, record.name, rule.scope)
            await _refuse(send, 403, f"this API key lacks the scope {rule.scope!r}")
            return
        wait = self.limits.wait(record)
        if wait > 0.0:
            log.info("%s refused 429: key %s over its rate", rule.pattern, record.name)
            retry = [(b"retry-after", str(max(1, math.ceil(wait))).encode())]
            await _refuse(send, 429, "rate limit of this API key exceeded", retry)
            return
        state = scope.get("state")
        if state is None:
            scope["state"] = state = {}
        state[KEY_NAME] = record.name
        token = _CALLER.set(record.name)
        timed = rule.pattern == "/decide"  # the stage clocks are /decide's (serving/stages.py)
        if timed:
            CLOCKS.add("auth", start)
        try:
            await self.app(scope, receive, send)
        finally:
            _CALLER.reset(token)
            if timed:
                CLOCKS.add("total", start)
