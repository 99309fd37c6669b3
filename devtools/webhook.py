"""A local webhook receiver on 127.0.0.1 for tests and benchmarks of the outbox.

It checks each delivery's HMAC signature, answers 500 to the first ``fail_first``
attempts of every decision id (then 200), and keeps every request, so a test can count
attempts and accepted deliveries per ``decision_id`` as a real receiver deduplicates
them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """One request as received."""

    decision_id: str
    body: dict[str, Any]
    signed: bool
    status: int
    at: float


@dataclass
class Receiver:
    """A running receiver: its URL and what it received."""

    secret: bytes
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def accepted(self) -> dict[str, int]:
        """Decision id -> how many of its deliveries were answered 200."""
        out: dict[str, int] = {}
        with self.lock:
            for r in self.requests:
                if r.status == 200:
                    out[r.decision_id] = out.get(r.decision_id, 0) + 1
        return out

    def attempts(self, decision_id: str) -> int:
        """How many requests carried ``decision_id``."""
        with self.lock:
            return sum(r.decision_id == decision_id for r in self.requests)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_receiver(secret: bytes, fail_first: int = 0) -> Receiver:
    """Start a receiver on a free loopback port, in a thread."""
    rec = Receiver(secret, fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            want = "sha256=" + hmac.new(rec.secret, body, hashlib.sha256).hexdigest()
            signed = hmac.compare_digest(want, self.headers.get("X-Nextbest-Signature", ""))
            did = self.headers.get("X-Nextbest-Decision-Id", "")
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {}
            with rec.lock:
                seen = sum(r.decision_id == did for r in rec.requests)
                status = 200 if signed and seen >= rec.fail_first else (500 if signed else 401)
                rec.requests.append(Received(did, parsed, signed, status, time.time()))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    rec.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=rec.server.serve_forever, daemon=True).start()
    return rec
