"""Events for the online service: checked, resolved, appended to the ledger once; and every
feature the ledger's state can change is a column of the feature schema."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from nextbest.customers.feature_schema import all_feature_names
from nextbest.decisions.ledger import Ledger, Vocabulary, validate_event
from nextbest.decisions.ledger_state import derive
from serving.events import EventConflict, EventHandler
from serving.requests import CustomerRef, RequestError
from tests.conftest import demo_terms

NOW = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def _resolve(ref: CustomerRef) -> str | None:
    return ref.id if ref.id.startswith("C") else None


def test_every_feature_an_event_can_change_is_in_the_schema() -> None:
    terms = demo_terms()
    vocab = Vocabulary.from_terms(terms)
    payloads = [("complaint", {}), ("service_case_opened", {"case_id": "k"})]
    payloads += [("purchase", {"amount": 1, "category": c}) for c in terms.categories]
    payloads += [("purchase", {"amount": 1, "product_id": p}) for p in terms.products]
    payloads += [("contact", {"channel": ch}) for ch in terms.channels]
    payloads += [("contact", {"channel": "email", "action_id": a}) for a in terms.action_ids]
    payloads += [
        ("consent_changed", {"purpose": p, "channel": ch, "granted": True})
        for p in terms.purposes
        for ch in terms.channels
    ]
    names = set(all_feature_names(terms))
    for i, (type_, payload) in enumerate(payloads):
        e = validate_event(
            "C1", type_, NOW - 60, payload, event_id=f"e{i}", received=NOW, vocab=vocab
        )
        changed = derive([e], NOW, {})
        assert changed, (type_, payload)
        assert set(changed) <= names, set(changed) - names


def test_handler_appends_once_and_refuses_without_writing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    handler = EventHandler(ledger, _resolve)
    ok = handler.apply(CustomerRef("C1"), "complaint", None, {}, event_id="k-1")
    assert ok["applied"] and ok["customer_id"] == "C1"
    assert not handler.apply(CustomerRef("C1"), "complaint", None, {}, event_id="k-1")["applied"]
    with pytest.raises(EventConflict):
        handler.apply(CustomerRef("C1"), "purchase", None, {"amount": 3}, event_id="k-1")
    for args in (
        (CustomerRef("nobody"), "complaint", None, {}),
        (CustomerRef("C1"), "teleport", None, {}),
        (CustomerRef("C1"), "purchase", None, {"amount": float("nan")}),
    ):
        with pytest.raises(RequestError):
            handler.apply(*args)
    assert ledger.count() == 1
