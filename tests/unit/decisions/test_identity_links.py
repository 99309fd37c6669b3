"""Identify events: validated completely before writing, the raw identifier never stored,
idempotent on the event id, linked at once when nobody has the identifier, and recorded
for review (not linked) when another customer has it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nextbest.customers.normalise import identifier_key
from nextbest.decisions.identity_links import IdentityLinks, identify_payload, resolve_key
from nextbest.decisions.ledger import EventError, Ledger, validate_event
from serving.events import EventConflict, EventHandler
from serving.requests import CustomerRef, RequestError

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()
SALT = "test-salt"
# The identity lookup of a features build: an e-mail of C2, and every customer's own id.
KNOWN_EMAIL = "Bo.Known@Example.org"
LOOKUP = {identifier_key("email", KNOWN_EMAIL, SALT): "C2"} | {
    f"customer_id:C{i}": f"C{i}" for i in range(1, 10)
}
NEW_EMAIL = "ann.new@example.com"


def _handler(ledger: Ledger) -> EventHandler:
    links = IdentityLinks(ledger)

    def resolve(ref: CustomerRef) -> str | None:
        key = identifier_key(ref.id_type, ref.id, SALT)
        return resolve_key(key, LOOKUP.get, links.customer_of)

    return EventHandler(ledger, resolve, lookup=LOOKUP.get, salt=SALT, links=links)


def _identify(handler: EventHandler, cid: str, value: str, event_id: str, **kw) -> dict:
    payload = {"id_type": kw.pop("id_type", "email"), "id_value": value}
    return handler.apply(CustomerRef(cid), "identify", NOW - 60, payload, event_id, **kw)


def _resolve(handler: EventHandler, value: str, id_type: str = "email") -> str | None:
    return handler.resolve(CustomerRef(value, id_type))


def _link_rows(ledger: Ledger) -> int:
    return ledger.connection().execute("SELECT count(*) FROM identity_links").fetchone()[0]


def _files(ledger: Ledger) -> bytes:
    return b"".join(p.read_bytes() for p in ledger.path.parent.glob(ledger.path.name + "*"))


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (None, "payload"),
        ([NEW_EMAIL], "payload"),
        ({"id_type": "email"}, "payload.id_value"),
        ({"id_type": "email", "id_value": ""}, "payload.id_value"),
        ({"id_type": "email", "id_value": 42}, "payload.id_value"),
        ({"id_type": "email", "id_value": "x" * 257 + "@example.com"}, "payload.id_value"),
        ({"id_type": "email", "id_value": "not-an-email-address"}, "payload.id_value"),
        ({"id_type": "phone", "id_value": "12-34"}, "payload.id_value"),
        ({"id_type": "passport", "id_value": "X1"}, "payload.id_type"),
        ({"id_type": "customer_id", "id_value": "C3"}, "payload.id_type"),
        ({"id_value": NEW_EMAIL}, "payload.id_type"),
        ({"id_type": "email", "id_value": NEW_EMAIL, "name": "Ann"}, "payload.name"),
        ({"id_type": "email", "id_key": "email:" + "0" * 32}, "payload.id_key"),
    ],
)
def test_a_bad_identify_payload_is_refused_by_field_without_its_value(
    payload: object, field: str
) -> None:
    with pytest.raises(EventError) as err:
        identify_payload(payload, SALT)
    assert err.value.field == field
    value = payload.get("id_value") if isinstance(payload, dict) else None
    if isinstance(value, str) and value:
        assert value not in str(err.value)


def test_the_value_is_normalised_and_stored_as_the_lookup_key_only() -> None:
    a = identify_payload({"id_type": "email", "id_value": "  Ann.New@EXAMPLE.com "}, SALT)
    b = identify_payload({"id_type": "email", "id_value": NEW_EMAIL}, SALT)
    assert a == b == {"id_type": "email", "id_key": identifier_key("email", NEW_EMAIL, SALT)}
    phone = identify_payload({"id_type": "phone", "id_value": "07700 900123"}, SALT)
    assert phone["id_key"] == identifier_key("phone", "+44 7700 900123", SALT)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"id_type": "email", "id_value": NEW_EMAIL}, "payload.id_value"),  # raw: refused
        ({"id_type": "email", "id_key": NEW_EMAIL}, "payload.id_key"),
        ({"id_type": "email", "id_key": "phone:" + "a" * 32}, "payload.id_key"),
        ({"id_type": "email"}, "payload.id_key"),
        ({"id_type": "customer_id", "id_key": "customer_id:C1"}, "payload.id_type"),
    ],
)
def test_the_ledger_refuses_an_identify_event_that_is_not_hashed(payload: dict, field: str) -> None:
    with pytest.raises(EventError) as err:
        validate_event("C1", "identify", NOW, payload, event_id="i-1", received=NOW)
    assert err.value.field == field


def test_a_new_identifier_links_at_once_and_a_repeat_is_stored_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    handler = _handler(ledger)
    assert _resolve(handler, NEW_EMAIL) is None
    first = _identify(handler, "C1", NEW_EMAIL, "login-1")
    assert (first["applied"], first["status"], first["customer_id"]) == (True, "linked", "C1")
    # by any spelling that normalises alike, with no build in between
    assert _resolve(handler, " ANN.NEW@example.com") == "C1"
    again = _identify(handler, "C1", NEW_EMAIL.upper(), "login-1")
    assert (again["applied"], again["status"]) == (False, "linked")
    assert ledger.count() == 1 and _link_rows(ledger) == 1
    with pytest.raises(EventConflict):
        _identify(handler, "C3", NEW_EMAIL, "login-1")  # same id, other customer
    with pytest.raises(EventConflict):
        _identify(handler, "C1", "other@example.com", "login-1")  # same id, other value
    assert ledger.count() == 1 and _link_rows(ledger) == 1
    # another event with the identifier for the same customer: already known, no new link
    known = _identify(handler, "C1", NEW_EMAIL, "login-2")
    assert (known["applied"], known["status"]) == (True, "known")
    # the customer's own lookup identifier, too
    assert _identify(handler, "C2", KNOWN_EMAIL, "login-3")["status"] == "known"
    # the raw value is in neither the database nor its write-ahead log
    assert NEW_EMAIL.encode() not in _files(ledger).lower()


def test_an_identifier_of_another_customer_goes_to_review_not_linked(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    handler = _handler(ledger)
    links = IdentityLinks(ledger)
    # the identity lookup says C2
    answer = _identify(handler, "C1", KNOWN_EMAIL, "k-1", source="app")
    assert answer["applied"] and answer["status"] == "review"
    assert "another customer" in answer["reason"] and "C2" not in str(answer)
    assert _resolve(handler, KNOWN_EMAIL) == "C2"
    # an earlier identify link says C1
    assert _identify(handler, "C1", NEW_EMAIL, "k-2")["status"] == "linked"
    assert _identify(handler, "C3", NEW_EMAIL, "k-3")["status"] == "review"
    assert _resolve(handler, NEW_EMAIL) == "C1"
    # a repeat of a reviewed event answers the same, stored once
    repeat = _identify(handler, "C3", NEW_EMAIL, "k-3")
    assert (repeat["applied"], repeat["status"]) == (False, "review")
    pending = links.reviews()
    assert [(r["event_id"], r["customer_id"], r["owner_id"]) for r in pending] == [
        ("k-1", "C1", "C2"),
        ("k-3", "C3", "C1"),
    ]
    assert [r["owner_source"] for r in pending] == ["identity_lookup", "identify:k-2"]
    assert pending[0]["source"] == "app" and pending[0]["id_type"] == "email"
    listed = str(pending).lower()
    assert KNOWN_EMAIL.lower() not in listed and NEW_EMAIL not in listed
    key = identifier_key("email", NEW_EMAIL, SALT)
    assert key not in listed and key[:14] in listed  # masked: type and 8 hex digits
    history = links.history("C1")
    assert [(h["event_id"], h["status"]) for h in history] == [("k-1", "review"), ("k-2", "linked")]
    assert NEW_EMAIL not in str(history)


def test_concurrent_claims_on_one_identifier_link_exactly_one(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    handler = _handler(ledger)
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda i: _identify(handler, f"C{i}", NEW_EMAIL, f"race-{i}"), range(1, 9))
        )
    statuses = sorted(a["status"] for a in answers)
    assert statuses == ["linked"] + ["review"] * 7
    winner = next(a["customer_id"] for a in answers if a["status"] == "linked")
    assert _resolve(handler, NEW_EMAIL) == winner
    assert {r["owner_id"] for r in IdentityLinks(ledger).reviews()} == {winner}


def test_a_refused_identify_writes_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    handler = _handler(ledger)
    hashed = identify_payload({"id_type": "email", "id_value": NEW_EMAIL}, SALT)
    with pytest.raises(ValueError, match="identity_links"):  # no outcome, no event
        ledger.append(validate_event("C1", "identify", NOW, hashed, "raw-1", received=NOW))
    refused = [
        ("C1", {"id_type": "email", "id_value": "nobody-at-all"}),
        ("C1", {"id_type": "customer_id", "id_value": "C2"}),
        ("C1", {"id_type": "email", "id_value": NEW_EMAIL, "extra": 1}),
        ("Cunknown", {"id_type": "email", "id_value": NEW_EMAIL}),
    ]
    for cid, payload in refused:
        with pytest.raises(RequestError) as err:
            handler.apply(CustomerRef(cid), "identify", NOW, payload, "bad-1")
        assert str(err.value).split(":")[0] in {"customer", "payload.id_type"} | {
            f"payload.{k}" for k in payload
        }
    with pytest.raises(RequestError, match=r"^timestamp:"):
        payload = {"id_type": "email", "id_value": NEW_EMAIL}
        handler.apply(CustomerRef("C1"), "identify", "yesterday", payload, "bad-2")
    assert ledger.count() == 0 and _link_rows(ledger) == 0
    assert _resolve(handler, NEW_EMAIL) is None


def test_erasure_takes_the_links_and_retention_keeps_them(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    handler = _handler(ledger)
    _identify(handler, "C1", NEW_EMAIL, "e-1")
    _identify(handler, "C4", "dee@example.com", "e-2")
    _identify(handler, "C5", "dee@example.com", "e-3")  # review: owned by C4
    assert ledger.drop_before(NOW + 1) == 0  # identify events outlive retention
    assert _resolve(handler, NEW_EMAIL) == "C1"
    assert ledger.erase_customers(["C1", "C4"]) == 2
    assert _resolve(handler, NEW_EMAIL) is None
    assert _resolve(handler, "dee@example.com") is None
    [entry] = IdentityLinks(ledger).reviews()
    assert (entry["customer_id"], entry["owner_id"], entry["owner_source"]) == (
        "C5",
        None,
        "erased",
    )


def test_a_link_follows_its_customer_through_a_merge(tmp_path: Path) -> None:
    import numpy as np

    from nextbest.customers.id_map import stabilise

    records = np.array(["r1", "r2", "r3", "r4"], dtype=object)
    first = stabilise(tmp_path, records, np.array([0, 1, 2, 2]), now=1.0).customer_ids
    a, b, c = first[0], first[1], first[3]
    ledger = Ledger(tmp_path / "ledger.db")
    links = IdentityLinks(ledger)
    lookup = {f"customer_id:{x}": x for x in (a, b, c)}

    def resolve(ref: CustomerRef) -> str | None:
        return resolve_key(identifier_key(ref.id_type, ref.id, SALT), lookup.get, links.customer_of)

    handler = EventHandler(ledger, resolve, lookup=lookup.get, salt=SALT, links=links)
    assert _identify(handler, b, NEW_EMAIL, "m-1")["status"] == "linked"
    # r1 and r2 merge: a keeps its id, b is retired into it
    assert stabilise(tmp_path, records, np.array([0, 0, 1, 1]), now=2.0).customer_ids[1] == a
    assert _resolve(handler, NEW_EMAIL) == a
    assert _identify(handler, a, NEW_EMAIL, "m-2")["status"] == "known"
    assert _identify(handler, c, NEW_EMAIL, "m-3")["status"] == "review"
    assert [(r["event_id"], r["owner_id"]) for r in links.reviews()] == [("m-3", a)]
    assert [h["event_id"] for h in links.history(a)] == ["m-1", "m-2"]  # m-1 stored under b
    # erasing the person takes the link stored under the retired id too
    assert ledger.erase_customers([a]) == 2
    assert _resolve(handler, NEW_EMAIL) is None
