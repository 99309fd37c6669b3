"""Delivery of triggered decisions to the configured webhooks, from the durable outbox.

Each queued row (one decision, one webhook) is POSTed with its JSON body and

- ``X-Nextbest-Decision-Id`` and ``Idempotency-Key``: the ``decision_id`` (also in the
  body), the same on every attempt, so a receiver drops a repeat;
- ``X-Nextbest-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body bytes with
  ``NEXTBEST_WEBHOOK_SECRET``.

A 2xx is a delivery: the contact is appended to the ledger (``delivered:<decision_id>``,
once whatever the number of webhooks or attempts, dated when the decision was queued), so
caps and cooldowns count it, and then the row is marked delivered. A crash between the
two sends the row again (at least once). Anything else (another status, a refused or
timed-out connection) is retried after ``outbox_backoff_seconds`` doubled per failed
attempt (up to ``outbox_backoff_max_seconds``), and dead-lettered after
``outbox_max_attempts``; ``nextbest outbox retry`` queues it again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

import httpx

from nextbest.decisions.ledger import ConflictError, Ledger, Vocabulary, validate_event
from nextbest.decisions.trigger_store import OutboxRow, TriggerStore

log = logging.getLogger(__name__)

#: Header names of a delivery.
DECISION_HEADER = "X-Nextbest-Decision-Id"
SIGNATURE_HEADER = "X-Nextbest-Signature"


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=`` and the HMAC's hex digest."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison); what a
    receiver does before trusting a delivery."""
    return hmac.compare_digest(sign(secret, body), header)


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: base, 2 base, 4 base, ...
    up to ``cap``."""
    return float(min(base * 2 ** max(attempts - 1, 0), cap))


class Outbox:
    """Delivers due outbox rows and records each delivery as a contact in the ledger."""

    def __init__(
        self,
        store: TriggerStore,
        ledger: Ledger,
        vocab: Vocabulary,
        secret: bytes,
        timeout: float = 5.0,
        max_attempts: int = 8,
        backoff_s: float = 2.0,
        backoff_max_s: float = 600.0,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.vocab = vocab
        self.secret = secret
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()

    def headers(self, row: OutboxRow) -> dict[str, str]:
        """The headers of a delivery of ``row``."""
        return {
            "Content-Type": "application/json",
            DECISION_HEADER: row.decision_id,
            "Idempotency-Key": row.decision_id,
            SIGNATURE_HEADER: sign(self.secret, bytes(row.body)),
            "User-Agent": "nextbest-outbox",
        }

    def deliver_due(self, now: float, limit: int = 64) -> int:
        """Attempt every due row once; returns how many were attempted."""
        rows = self.store.outbox_due(now, limit)
        for row in rows:
            self.attempt(row, now)
        return len(rows)

    def attempt(self, row: OutboxRow, now: float) -> bool:
        """One delivery attempt of ``row``; returns whether the webhook took it."""
        error: str | None
        try:
            answer = self.client.post(
                row.webhook, content=bytes(row.body), headers=self.headers(row)
            )
            error = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            # The URL is not logged: it may carry a token.
            error = f"{type(exc).__name__}"
        if error is None:
            self.record_contact(row)
            self.store.delivered(row, now)
            return True
        attempts = row.attempts + 1
        retry_at = (
            None
            if attempts >= self.max_attempts
            else now + backoff(attempts, self.backoff_s, self.backoff_max_s)
        )
        log.warning(
            "delivery of decision %s failed (attempt %d of %d): %s%s",
            row.decision_id,
            attempts,
            self.max_attempts,
            error,
            "" if retry_at is not None else "; dead-lettered",
        )
        self.store.failed(row, error, retry_at)
        return False

    def record_contact(self, row: OutboxRow) -> None:
        """Append the delivery to the ledger as the customer's contact (once per decision)."""
        payload: dict[str, Any] = {
            "channel": row.channel,
            "action_id": row.action_id,
            "decision_id": row.decision_id,
        }
        event = validate_event(
            row.customer_id,
            "contact",
            row.created,
            payload,
            f"delivered:{row.decision_id}",
            "triggers",
            "triggers",
            self.vocab,
        )
        try:
            self.ledger.append(event)
        except ConflictError:
            # A channel reported the same decision itself: its contact counts, once.
            log.info("contact of decision %s was already reported", row.decision_id)
