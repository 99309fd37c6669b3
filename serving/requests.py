"""What the online service is asked: identifiers, decide requests, and their errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from nextbest.core.vocabulary import EVENT_TYPES, ID_TYPES

__all__ = ["EVENT_TYPES", "ID_TYPES", "CustomerRef", "DecideRequest", "RequestError"]


class RequestError(ValueError):
    """A request that cannot be answered as sent (answered with a 4xx naming the field)."""


@dataclass
class CustomerRef:
    """How the caller identifies the customer."""

    id: str
    id_type: str = "customer_id"


#: What ``channels`` may say instead of a list: every channel of the catalog.
ANY_CHANNEL = "any"


@dataclass(frozen=True)
class DecideRequest:
    """One ``/decide`` request: who, on which channel (or which channels: the best action
    x channel pair of them), how many ranked actions, context, and the customer's time
    zone for the quiet hours (None: the default setting)."""

    customer: CustomerRef
    channel: str | None
    k: int = 3
    context: Mapping[str, Any] | None = None
    channels: tuple[str, ...] | None = None
    time_zone: str | None = None


def request_time(ts: datetime | str | float | None) -> datetime:
    """A request's time in UTC: now when None, epoch seconds, a datetime or an ISO string."""
    if ts is None:
        return datetime.now(UTC)
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(float(ts), UTC)
    if isinstance(ts, datetime):  # as pandas would, without building a Timestamp
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    t = pd.Timestamp(ts)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.to_pydatetime()
