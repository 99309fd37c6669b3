"""``POST /decide`` through JsonApiMiddleware answers exactly as BentoML's own route.

Two real ``bentoml serve`` processes on the same world: the session's service (fast path
on, the default) and one with ``NEXTBEST_FAST_HTTP=0``. Every request is sent to both;
status, headers (but the date) and body must be equal (a decision's own ``decision_id``
aside), and both log every decision they answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from devtools.process import Server, start_server, stop_server
from nextbest.core.api_keys import create_key
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def bentoml_route(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same service with the fast path switched off."""
    log_path = tmp_path_factory.mktemp("slow_service") / "serve.log"
    server = start_server(
        "serving.service:NextBest", world.home, log_path, env={"NEXTBEST_FAST_HTTP": "0"}
    )
    try:
        yield server
    finally:
        stop_server(server.proc)


def _bodies(world: World) -> list[bytes]:
    ids = pd.read_parquet(world.settings.unified_dir / "identity.parquet")["customer_id"]
    cids = ids.drop_duplicates().head(12).tolist()
    good = [
        {"customer": {"id": c}, "channel": ch, "k": 1 + i % 5}
        for i, c in enumerate(cids)
        for ch in ("email", "web")
    ]
    good += [
        {"customer": {"id": "nobody@example.invalid", "id_type": "email"}, "channel": "email"},
        {"customer": {"id": cids[0], "id_type": "customer_id"}, "channel": "app", "k": 20},
        {"customer": {"id": cids[1]}, "channel": "email", "context": {"page": "home"}},
        {"customer": {"id": cids[2]}, "channel": "email", "unknown_field": 1},
    ]
    bad = [
        {"customer": {"id": "x", "id_type": "passport"}, "channel": "email"},
        {"customer": {"id": "x"}, "channel": "fax"},
        {"channel": "email"},
        {"customer": {"id": ""}, "channel": "email"},
        {"customer": {"id": "x"}, "channel": "email", "k": 0},
        {"customer": {"id": "x"}, "channel": "email", "k": 21},
        {"customer": {"id": "x"}, "channel": "email", "k": "three"},
        {"customer": {"id": "x"}, "channel": "email", "context": [1, 2]},
        {"customer": {"id": "x"}, "channel": "email", "context": {"page": "home", "n": [1]}},
        {"customer": {"id": "x"}, "channel": "email", "context": {"page": "a@example.com"}},
        {"customer": "x", "channel": "email"},
        [1, 2, 3],
    ]
    raw = [b"", b"not json", b'{"customer": {"id": "x"}, "channel": "email"', b"null"]
    return [json.dumps(b).encode() for b in good + bad] + raw


def _answer(r: httpx.Response) -> tuple[int, dict, object]:
    headers = {k: v for k, v in r.headers.items() if k != "date"}
    body: object = r.content
    if r.status_code == 200:
        body = r.json()
        assert isinstance(body, dict)
        decision = body.pop("decision_id")
        assert decision
        if body.get("report_delivery"):  # names the decision too
            body["report_delivery"] = json.loads(
                json.dumps(body["report_delivery"]).replace(decision, "<decision_id>")
            )
    return r.status_code, headers, body


def test_fast_path_answers_as_bentoml_route(
    world: World, service: Server, bentoml_route: Server
) -> None:
    statuses = []
    fast_ids, slow_ids = [], []
    for body in _bodies(world):
        for media in ({"content-type": "application/json"}, {}):
            headers = {**service.headers, **media}
            fast = httpx.post(f"{service.url}/decide", content=body, headers=headers, timeout=30)
            slow = httpx.post(
                f"{bentoml_route.url}/decide", content=body, headers=headers, timeout=30
            )
            assert _answer(fast) == _answer(slow), body
            statuses.append(fast.status_code)
            if fast.status_code == 200:
                fast_ids.append(fast.json()["decision_id"])
                slow_ids.append(slow.json()["decision_id"])
    assert statuses.count(200) >= 40 and statuses.count(400) >= 20
    assert set(statuses) <= {200, 400}
    logged = {
        json.loads(line)["decision_id"]
        for f in sorted(Path(world.settings.decision_log_dir).glob("*.jsonl"))
        for line in f.read_text().splitlines()
    }
    assert set(fast_ids) <= logged and set(slow_ids) <= logged


def test_other_media_types_are_refused_and_other_routes_reach_bentoml(service: Server) -> None:
    # the APIs are declared JSON only: a form body is refused before anything parses it
    url, headers = service.url, service.headers
    r = httpx.post(f"{url}/decide", headers=headers, data={"channel": "email"}, timeout=30)
    assert r.status_code == 415 and r.json() == {"error": "body: must be application/json"}
    assert httpx.get(f"{url}/decide", headers=headers, timeout=30).status_code == 405
    assert httpx.get(f"{url}/readyz", headers=headers, timeout=30).status_code == 200


def test_both_paths_refuse_a_request_without_the_decide_scope(
    world: World, service: Server, bentoml_route: Server
) -> None:
    """The key check runs before the fast path: both paths give the same refusals."""
    key, _ = create_key(world.settings.api_keys_path, "fast-http-events-only", ["events"])
    time.sleep(1.2)  # each worker re-reads the key file at most once a second
    body = _bodies(world)[0]
    for server in (service, bentoml_route):
        url = f"{server.url}/decide"
        none = httpx.post(url, content=body, timeout=30)
        wrong = httpx.post(url, content=body, headers={"X-API-Key": key + "x"}, timeout=30)
        scoped = httpx.post(url, content=body, headers={"X-API-Key": key}, timeout=30)
        assert (none.status_code, wrong.status_code, scoped.status_code) == (401, 401, 403)
        assert none.headers["www-authenticate"].startswith("Bearer")
        assert scoped.json() == {"error": "this API key lacks the scope 'decide'"}
        assert httpx.post(url, content=body, headers=server.headers, timeout=30).status_code == 200
