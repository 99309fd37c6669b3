"""The floor: an empty BentoML endpoint of the decision service's configuration.

``POST /decide`` takes a body of the same shape as the product's (BentoML parses and
validates it with its generated input model) and answers a fixed JSON body from an async
handler: no authentication, no features, no engine, no log. Same options as
``serving.service.service_options`` (2 workers, 4 threads, access log off, 30 s timeout,
no tracing span for /decide; ``tests/unit/benchmarks/test_floor_service.py`` holds them
equal). What BentoML costs for one request on this machine: ``benchmarks/http_bench.py``
measures it in the same run as the product and states the product's figures as ratios
to it.

Start: ``bentoml serve benchmarks.floor_service:Floor``.
"""

from __future__ import annotations

from typing import Any

import bentoml
from pydantic import Field
from starlette.responses import Response

#: The options of ``bentoml.service`` (the product's, see the module docstring).
OPTIONS: dict[str, Any] = {
    "name": "nextbest-floor",
    "logging": {"access": {"enabled": False}},
    "traffic": {"timeout": 30},
    "tracing": {"excluded_urls": ["/decide"]},
    "workers": 2,
    "threads": 4,
}

#: The answer: the size of a typical decision (three ranked actions with reasons).
BODY = (
    b'{"decision_id":"00000000-0000-0000-0000-000000000000","customer_id":"C00000000",'
    b'"actions":[' + b",".join([b'{"action_id":"floor","score":0.0,"reasons":[]}'] * 3) + b"]}"
)


@bentoml.service(**OPTIONS)
class Floor:
    """A fixed answer to a /decide-shaped body."""

    @bentoml.api(route="/decide")
    async def decide(
        self,
        customer: dict[str, Any],
        channel: str,
        k: int = Field(3, ge=1, le=20),
        context: dict[str, Any] = Field(default_factory=dict),
    ) -> dict[str, Any]:
        """The same bytes for every valid body."""
        return Response(BODY, media_type="application/json")  # type: ignore[return-value]
