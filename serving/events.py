"""Customer events for the online service: checked, resolved and appended to the ledger.

``/events`` writes nothing but the event ledger (:mod:`nextbest.decisions.ledger`): the event is
validated completely, its customer resolved, and it is appended durably, once per
``event_id``, before the answer. Decisions read the ledger's state for their customers at
decision time (:func:`nextbest.decisions.ledger_state.apply_overrides`), so nothing is
read-modified-written: concurrent events for one customer, from any worker, all count, and
a refused event changes nothing.

An ``identify`` event attaches an identifier to the customer
(:mod:`nextbest.decisions.identity_links`): its value is hashed before validation, the identity
lookup is asked who has it already, and the event and its outcome (linked, known, or
review when another customer has it) are stored in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any

from nextbest.core.vocabulary import PRODUCT_EVENT_TYPES
from nextbest.decisions.catalog import Catalog
from nextbest.decisions.identity_links import IdentityLinks, identify_payload
from nextbest.decisions.ledger import (
    EVENT_TYPES,
    IDENTIFY_EVENT,
    NO_CUSTOMER,
    ConflictError,
    EventError,
    Ledger,
    Vocabulary,
    validate_event,
)
from serving.requests import CustomerRef, RequestError


class EventConflict(RequestError):
    """An ``event_id`` already used for a different event (answered with 409)."""

    status = HTTPStatus.CONFLICT


def event_vocabulary(catalog: Catalog) -> Vocabulary:
    """What events may name: the catalog's channels, purposes, products, categories and
    actions."""
    return Vocabulary.from_terms(catalog.terms())


class EventHandler:
    """Events for the online service: validate, resolve, append to the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        resolve: Callable[[CustomerRef], str | None],
        vocab: Vocabulary | None = None,
        lookup: Callable[[str], str | None] | None = None,
        salt: str | None = None,
        links: IdentityLinks | None = None,
    ) -> None:
        """``resolve``: identifier -> customer (lookup, then identify links);
        ``lookup``: identifier key -> customer of the identity lookup alone, and ``salt``
        the identifier salt (both needed for identify events only); ``links``: the
        resolver's own identify links (default: those of ``ledger``)."""
        self.ledger = ledger
        self.resolve = resolve
        self.vocab = vocab or Vocabulary()
        self.lookup = lookup
        self.salt = salt
        self.links = links or IdentityLinks(ledger)

    def apply(
        self,
        customer: CustomerRef | None,
        event_type: str,
        timestamp: Any = None,
        payload: Mapping[str, Any] | None = None,
        event_id: str | None = None,
        source: str | None = None,
        actor: str = "anonymous",
    ) -> dict[str, Any]:
        """Append one event; the answer says whether this call stored it (``applied``) or
        the ledger held it already under its ``event_id`` (a retry: ``applied`` false).

        A product-level event (``stock_changed``) is sent without a customer. An identify
        event's answer adds ``status`` (linked, known, review) and, unless linked, a
        ``reason``. Raises :class:`RequestError` naming the field for anything malformed, and
        :class:`EventConflict` for an ``event_id`` reused with other content.
        """
        if event_type not in EVENT_TYPES and event_type not in self.vocab.behaviour:
            raise RequestError(f"type: must be one of {', '.join(self.vocab.types())}")
        if event_type in PRODUCT_EVENT_TYPES:
            if customer is not None:
                raise RequestError(
                    f"customer: {event_type} is about a product: send it without a customer"
                )
            cid: str | None = NO_CUSTOMER
        elif customer is None:
            raise RequestError(f"customer: required for {event_type}")
        else:
            cid = self.resolve(customer)
        if cid is None:
            raise RequestError("customer: identifier does not resolve to a known customer")
        extra: dict[str, Any] = {}
        try:
            if event_type == IDENTIFY_EVENT:
                if self.lookup is None or self.salt is None:
                    raise RequestError("type: identify events are not accepted here")
                payload = identify_payload(payload or {}, self.salt)
            event = validate_event(
                cid, event_type, timestamp, payload, event_id, source, actor, self.vocab
            )
            if event_type == IDENTIFY_EVENT:
                owner = self.lookup(event.payload["id_key"])  # asked before anything is written
                appended, outcome = self.links.append(event, owner)
                extra = outcome.answer()
            else:
                appended = self.ledger.append(event)
        except ConflictError as exc:
            raise EventConflict(str(exc)) from exc
        except EventError as exc:
            raise RequestError(str(exc)) from exc
        stored = appended.event
        return {
            "event_id": stored.event_id,
            "customer_id": stored.customer_id,
            "type": stored.type,
            "applied": appended.applied,
            "timestamp": stored.as_dict()["event_time"],
            "received": stored.as_dict()["received_time"],
            **extra,
        }
