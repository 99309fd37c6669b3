"""Hostile and malformed input over real HTTP (the session's ``bentoml serve``).

Every case of the bounded-input issue is a 4xx naming the field (or 413 for a body past
the size limit); a refused request writes nothing to the decision log or the ledger, and
the server log never holds the e-mail addresses and phone numbers that were sent. Then
Schemathesis generates requests from the served OpenAPI spec for every operation: no
answer is a 5xx, and every answer is one the spec declares, with a body of its schema.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from devtools.process import Server
from nextbest.decisions.ledger import Ledger
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]

EMAIL = "hostile.sentinel.4711@example.org"
PHONE = "020-7946-4711"
PHONE_INTL = "+44 20 7946 4712"
#: Examples Schemathesis generates per operation and mode (positive, negative): a fixed
#: budget that keeps the run under a minute on two loaded cores.
EXAMPLES = 50


@pytest.fixture(scope="module")
def customer(world: World) -> str:
    """A known customer of the session world."""
    ids = pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
    return str(ids.iloc[0])


def _cases(cid: str) -> list[tuple[str, bytes | dict, dict, int, str]]:
    """(path, body, headers, status, what the answer must name)."""
    who = {"customer": {"id": cid}}
    decide = {**who, "channel": "email"}
    purchase = {**who, "type": "purchase"}
    huge = {**decide, "context": {"page": "x" * (2 * 1024 * 1024)}}
    return [
        ("/events", {**purchase, "payload": {"amount": "12.5"}}, {}, 400, "payload.amount"),
        ("/events", {**purchase, "payload": {"amount": None}}, {}, 400, "payload.amount"),
        (
            "/events",
            json.dumps(purchase)[:-1].encode() + b', "payload": {"amount": NaN}}',
            {},
            400,
            "payload.amount",
        ),
        ("/events", {**purchase, "payload": {"amount": 1e20}}, {}, 400, "payload.amount"),
        ("/events", {**purchase, "timestamp": "yesterday at noon"}, {}, 400, "timestamp"),
        ("/events", {**purchase, "timestamp": "9999-12-31T00:00:00Z"}, {}, 400, "timestamp"),
        ("/events", {**purchase, "timestamp": "1677-09-22T00:00:00Z"}, {}, 400, "timestamp"),
        ("/events", {**purchase, "timestamp": 1e300}, {}, 400, "timestamp"),
        ("/events", {**who, "type": "complaint", "event_id": EMAIL}, {}, 400, "event_id"),
        ("/events", {**purchase, "payload": {"note": PHONE}}, {}, 400, "payload.note"),
        (
            "/events",
            b"--x\r\n",
            {"content-type": "multipart/form-data"},  # no boundary
            415,
            "application/json",
        ),
        ("/decide", {**decide, "context": {"n": 2**64 + 1}}, {}, 400, "context.n"),
        (
            "/decide",
            {**decide, "context": {"session_seconds": 2**64}},
            {},
            400,
            "context.session_seconds",
        ),
        (
            "/decide",
            {**decide, "context": {"session_seconds": 1e20}},
            {},
            400,
            "context.session_seconds",
        ),
        ("/decide", {**decide, "context": {"email": EMAIL}}, {}, 400, "context.email: not allowed"),
        ("/decide", {**decide, "context": {"page": EMAIL}}, {}, 400, "context.page"),
        ("/decide", {**decide, "context": {"page": PHONE}}, {}, 400, "context.page"),
        ("/decide", {**decide, "context": {"placement": PHONE_INTL}}, {}, 400, "context.placement"),
        ("/decide", {"customer": {"id": "c" * 257}, "channel": "email"}, {}, 400, "customer.id"),
        ("/decide", {**decide, "k": 2**70}, {}, 400, "k"),
        ("/decide", huge, {}, 413, "body"),
        (
            "/decide",
            b"--x\r\n",
            {"content-type": "multipart/form-data"},
            415,
            "application/json",
        ),
    ]


def _log_lines(world: World) -> int:
    return sum(
        len(f.read_bytes().splitlines())
        for f in Path(world.settings.decision_log_dir).glob("*.jsonl")
    )


def _stream(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


def test_hostile_requests_are_refused_naming_the_field_and_change_nothing(
    world: World, service: Server, customer: str
) -> None:
    log_at = service.log_path.stat().st_size
    decisions, events = _log_lines(world), Ledger(world.settings.ledger_path).count()
    for path, body, headers, status, named in _cases(customer):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = httpx.post(
            f"{service.url}{path}",
            content=content,
            headers={"content-type": "application/json", **headers, **service.headers},
            timeout=30,
        )
        assert r.status_code == status, (path, named, r.text)
        assert r.headers["content-type"] == "application/json"
        assert named in r.json()["error"], (path, r.text)
        for value in (EMAIL, PHONE, PHONE_INTL):
            assert value not in r.text
    # a streamed (chunked) body past the limit is refused as it arrives
    big = json.dumps(
        {"customer": {"id": customer}, "channel": "email", "context": {"page": "y" * 300_000}}
    )
    r = httpx.post(
        f"{service.url}/decide",
        content=_stream(big.encode()),
        headers={"content-type": "application/json", **service.headers},
        timeout=30,
    )
    assert r.status_code == 413 and r.json() == {"error": "body: larger than 65536 bytes"}
    # a GET of a customer id past its bound is refused too
    r = httpx.get(
        f"{service.url}/customers/{'c' * 300}/consent", headers=service.headers, timeout=30
    )
    assert r.status_code == 422 and "customer_id" in r.text
    # an allowed context is accepted and logged as sent
    ok = {"customer": {"id": customer}, "channel": "email", "context": {"placement": "home"}}
    r = httpx.post(f"{service.url}/decide", json=ok, headers=service.headers, timeout=30)
    assert r.status_code == 200, r.text
    assert _log_lines(world) == decisions + 1
    assert Ledger(world.settings.ledger_path).count() == events
    time.sleep(0.5)  # the workers' log lines reach the file
    with service.log_path.open("rb") as fh:
        fh.seek(log_at)
        logged = fh.read().decode("utf-8", "replace")
    for value in (EMAIL, PHONE, PHONE_INTL, "7946"):
        assert value not in logged
    assert "Traceback" not in logged and "ERROR" not in logged
    # the refusals are logged, at INFO, by the field they got wrong
    assert "/decide [POST] 400: invalid context.email" in logged, logged[-2000:]


def test_every_operation_answers_as_its_spec_says(service: Server) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis import checks as st_checks

    schema = schemathesis.openapi.from_url(
        f"{service.url}/docs.json", headers=service.headers, timeout=30
    )
    checks = [
        st_checks.not_a_server_error,
        st_checks.status_code_conformance,
        st_checks.content_type_conformance,
        st_checks.response_schema_conformance,
        st_checks.negative_data_rejection,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /decide", "POST /events", "GET /actions"} <= labels
    assert {"GET /customers/{customer_id}/consent", "POST /customers/lookup/consent"} <= labels
    failures: list[str] = []
    started = time.monotonic()
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                phases=[Phase.explicit, Phase.generate],
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    base_url=service.url, headers=service.headers, checks=checks, timeout=30
                )

            try:
                run()
            except Unsatisfiable:  # no parameters to break: nothing negative to send
                continue
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{op.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 120
