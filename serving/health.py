"""Fail closed: the store errors that make a dependency unavailable, and the cached,
time-bounded readiness of the service's dependencies (``/readyz``).

A dependency that cannot be read or written is answered 503 with the reason
``<dependency>_unavailable`` (:class:`nextbest.core.errors.DependencyUnavailable`), never a 500 and
never a decision taken without its data; docs/operations.md, "Failure modes".
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping

from nextbest.core.errors import DependencyUnavailable

log = logging.getLogger(__name__)


def store_errors() -> tuple[type[BaseException], ...]:
    """What a store call raises when its store is down, hung or unreadable: SQLite's
    errors, OS errors (missing file, full disk, refused or timed-out socket) and Redis's."""
    errors: list[type[BaseException]] = [sqlite3.Error, OSError]
    try:
        # lazy: redis is an optional extra
        import redis
    except ImportError:  # the Redis extra is not installed: no Redis store either
        pass
    else:
        errors.append(redis.RedisError)
    return tuple(errors)


class Readiness:
    """The first unavailable dependency, probed at most once per ``ttl`` seconds.

    ``checks`` maps a dependency to a cheap probe that raises when it is unavailable;
    each probe is bounded by its store's timeout. Concurrent callers never queue behind a
    probe in progress: they get the last result.
    """

    def __init__(self, checks: Mapping[str, Callable[[], None]], ttl: float = 1.0) -> None:
        self.checks = dict(checks)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._result: DependencyUnavailable | None = None
        self._at = -float("inf")

    def status(self) -> DependencyUnavailable | None:
        """None when every dependency answers; else the first that does not."""
        if time.monotonic() - self._at < self.ttl or not self._lock.acquire(blocking=False):
            return self._result
        try:
            self._result = self._probe()
            self._at = time.monotonic()
        finally:
            self._lock.release()
        return self._result

    def _probe(self) -> DependencyUnavailable | None:
        for name, check in self.checks.items():
            try:
                check()
            except DependencyUnavailable as exc:
                return exc
            except Exception as exc:  # a probe's unexpected failure still means "not ready"
                log.warning("readiness probe of %s failed: %s", name, type(exc).__name__)
                return DependencyUnavailable(name, f"{name} cannot be used")
        return None
