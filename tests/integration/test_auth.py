"""API keys on the real service: every route but health needs a key of its scope; keys
are revoked without a restart, rate limited per key, and name the actor of an event.

One server (the session's); the keys each test needs are created in the world's key file
while it runs, which the server reads again within a second.
"""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest

from devtools.process import Server
from nextbest.core.api_keys import create_key, hash_key, revoke_key
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: The key file is stat'ed at most once a second per worker.
RELOAD_S = 1.2
#: (method, path) of every protected route, with the scope it needs (None: any key).
PROTECTED = [
    ("POST", "/decide", "decide"),
    ("GET", "/actions", "decide"),
    ("POST", "/events", "events"),
    ("GET", "/customers/C000001/consent", "admin"),
    ("POST", "/customers/lookup/consent", "admin"),
    ("GET", "/metrics", "admin"),
    ("GET", "/admin/stages", "admin"),
    ("GET", "/static_content/index.css", None),
]


def _send(server: Server, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = {"customer": {"id": "C000001"}, "channel": "email", "type": "complaint"}
    if path == "/events":
        body = {"customer": {"id": "nobody"}, "type": "complaint"}
    kw = {"json": body} if method == "POST" else {}
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kw)


def _customer(world: World) -> str:
    ids = pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
    ids = sorted(ids.unique())
    return ids[len(ids) // 2]  # other modules' event tests take from the ends


def test_every_protected_route_needs_a_key_health_does_not(service: Server) -> None:
    for method, path, _ in PROTECTED:
        for headers in (
            {},
            {"Authorization": "Bearer nb_" + "x" * 43},
            {"X-API-Key": "nb_wrong"},
            {"Authorization": "Basic dGVzdHM6dGVzdHM="},
        ):
            r = _send(service, method, path, headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["error"].endswith("API key: send Authorization: Bearer <key>")
    for path in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(f"{service.url}{path}", timeout=30).status_code == 200, path
    # the same key passes as X-API-Key
    key = service.headers["Authorization"].removeprefix("Bearer ")
    assert httpx.get(f"{service.url}/actions", headers={"X-API-Key": key}).status_code == 200


def test_scopes_revocation_and_what_is_stored_and_logged(world: World, service: Server) -> None:
    path = world.settings.api_keys_path
    key, record = create_key(path, "decide-only", ["decide"])
    stored = path.read_text()
    assert key not in stored and hash_key(key) in stored
    time.sleep(RELOAD_S)
    headers = {"Authorization": f"Bearer {key}"}
    for method, route, scope in PROTECTED:
        r = _send(service, method, route, headers)
        if scope in (None, "decide"):
            assert r.status_code == 200, (route, r.text)
        else:
            assert r.status_code == 403, (route, r.text)
            assert r.json() == {"error": f"this API key lacks the scope {scope!r}"}

    revoke_key(path, "decide-only")
    time.sleep(RELOAD_S)
    for _ in range(8):  # every worker has seen the change
        assert _send(service, "GET", "/actions", headers).status_code == 401

    # what the refusals log is checked in tests/unit/serving/test_auth.py
    log = service.log_path.read_text(errors="replace")
    for secret in (key, service.headers["Authorization"], "nb_wrong", "jane.doe@example.com"):
        assert secret not in log


def test_a_key_over_its_rate_is_refused_with_retry_after(world: World, service: Server) -> None:
    # 0.5/s and a burst of 2 over two workers: one at once per worker, one every 4 s
    key, _ = create_key(world.settings.api_keys_path, "slow", ["decide"], 0.5, 2)
    time.sleep(RELOAD_S)
    headers = {"X-API-Key": key}
    with httpx.Client(base_url=service.url, headers=headers, timeout=30) as client:
        answers = [client.get("/actions") for _ in range(10)]
    codes = [r.status_code for r in answers]
    assert codes[0] == 200 and 1 <= codes.count(200) <= 2 and codes.count(429) >= 8, codes
    refused = next(r for r in answers if r.status_code == 429)
    assert 1 <= int(refused.headers["retry-after"]) <= 4
    assert refused.json() == {"error": "rate limit of this API key exceeded"}
    # other keys are not slowed down
    assert httpx.get(f"{service.url}/actions", headers=service.headers).status_code == 200


def test_an_event_is_recorded_with_the_key_name_as_actor(world: World, service: Server) -> None:
    key, _ = create_key(world.settings.api_keys_path, "crm-sync", ["events", "admin"])
    time.sleep(RELOAD_S)
    cid = _customer(world)
    headers = {"Authorization": f"Bearer {key}"}
    event = {
        "customer": {"id": cid},
        "type": "consent_changed",
        "event_id": f"{cid}-auth-actor",
        "source": "crm",
        "payload": {"purpose": "service", "channel": "call_center", "granted": True},
    }
    r = httpx.post(f"{service.url}/events", headers=headers, json=event, timeout=30)
    assert r.status_code == 200 and r.json()["applied"], r.text
    r = httpx.get(f"{service.url}/customers/{cid}/consent", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    [change] = [c for c in r.json()["changes"] if c["event_id"] == event["event_id"]]
    assert (change["actor"], change["source"]) == ("crm-sync", "crm")


def test_the_spec_documents_the_bearer_key(service: Server) -> None:
    spec = httpx.get(f"{service.url}/docs.json", headers=service.headers, timeout=30).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    decide = spec["paths"]["/decide"]["post"]
    assert {"401", "403", "429"} <= set(decide["responses"])
    assert "`decide`" in decide["description"]
    assert spec["paths"]["/readyz"]["get"]["security"] == []
