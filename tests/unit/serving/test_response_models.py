"""The typed answers the spec declares fit the answers the service renders."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nextbest.decisions.catalog import load_catalog
from nextbest.decisions.engine import decide
from nextbest.decisions.policy import load_policy
from nextbest.decisions.rules import compile_plan
from serving.response_models import DecideResponse, EventResponse
from serving.responses import response_from_record
from tests.unit.decisions.conftest import ROOT, ViewsModel, ctx, default_row, feature_names, matrix


@pytest.mark.parametrize(("mode", "channel"), [("marketing", "email"), ("service", "call_center")])
def test_decide_answers_fit_the_declared_model(mode: str, channel: str) -> None:
    catalog = load_catalog(ROOT / "config" / "catalog.yaml")
    policy = load_policy(ROOT / "config" / "policy.yaml", catalog.terms())
    names = feature_names(catalog.ids)
    plan = compile_plan(catalog, policy, names, ViewsModel(catalog.ids), mode=mode)
    rows = [default_row(names), {**default_row(names), "open_cases": 1.0}]
    records = decide(matrix(names, rows), ["C0000001", None], plan, ctx(channel)).records()
    for record in records:
        answer = DecideResponse.model_validate(response_from_record(record))
        assert answer.mode == mode
    assert DecideResponse.model_validate(response_from_record(records[0])).actions


def test_an_answer_with_a_field_the_model_lacks_is_refused() -> None:
    stored = {
        "event_id": "e1",
        "customer_id": "C1",
        "type": "contact",
        "applied": True,
        "timestamp": "2026-01-01T00:00:00+00:00",
        "received": "2026-01-01T00:00:01+00:00",
    }
    assert EventResponse.model_validate(stored).applied
    with pytest.raises(ValidationError):
        EventResponse.model_validate({**stored, "email": "x@example.com"})
