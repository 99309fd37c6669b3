"""Service mode (``/decide`` ``mode: service``): service actions first while a case is
open, sales after it only as the policy's service_to_sales rule allows; marketing mode
unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from nextbest.decisions.engine import decide
from nextbest.decisions.policy import Exploration, Holdout, Policy, ServiceToSales
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rules import compile_plan
from tests.unit.decisions.conftest import ViewsModel, ctx, default_row, matrix

RETENTION = "call_retention_offer"
SERVICE = ("call_fee_refund", "call_callback", "call_fix")


def quiet(policy: Policy, **update: object) -> Policy:
    """The policy without holdout and exploration, so the greedy ranking is logged."""
    return policy.model_copy(
        update={
            "holdout": Holdout(share=0.0, salt="x"),
            "exploration": Exploration(epsilon=0.0),
            **update,
        }
    )


def run(catalog, policy, names, overrides, mode="service"):
    plan = compile_plan(catalog, policy, names, ViewsModel(catalog.ids), mode=mode)
    rows = [{**default_row(names), **o} for o in overrides]
    ids = [f"C{i:07d}" for i in range(len(rows))]
    return decide(matrix(names, rows), ids, plan, ctx("call_center", k=5))


def ranked(d, row):
    return [d.plan.action_ids[c] for c in d.ranked[row] if c >= 0]


def reason(d, row, action):
    return Reason(int(d.codes[row, list(d.plan.action_ids).index(action)]))


def test_open_case_ranks_service_actions_first_and_pauses_sales(catalog, policy, names):
    d = run(catalog, quiet(policy), names, [{"open_cases": 1.0}])
    assert set(ranked(d, 0)) == set(SERVICE)
    assert reason(d, 0, RETENTION) == Reason.CASE_OPEN
    record = d.records()[0]
    assert record["mode"] == "service"
    assert all(a["mode_reason"].startswith("Service mode") for a in record["ranked"])


def test_resolved_case_allows_the_retention_offer_after_the_service_actions(catalog, policy, names):
    # The retention offer's value beats the service actions', yet it ranks after them.
    d = run(
        catalog, quiet(policy), names, [{"open_cases": 0.0, "consent_marketing_call_center": 0}]
    )
    order = ranked(d, 0)
    assert RETENTION in order
    assert order.index(RETENTION) == len(SERVICE)
    text = next(a for a in d.records()[0]["ranked"] if a["action_id"] == RETENTION)
    assert "service_to_sales" in text["mode_reason"]


def test_service_to_sales_needs_its_own_consent_and_caps(catalog, policy, names):
    p = quiet(policy)
    d = run(
        catalog,
        p,
        names,
        [{"consent_service_call_center": 0.0}, {"contacts_call_center_7d": 2.0}],
    )
    assert reason(d, 0, RETENTION) == Reason.NO_CONSENT
    excluded = next(e for e in d.records()[0]["excluded"] if e["action_id"] == RETENTION)
    assert "service_to_sales" in excluded["sentence"]
    assert reason(d, 1, RETENTION) == Reason.CHANNEL_CAP
    assert set(SERVICE) <= set(ranked(d, 1))  # the customer called: service is not capped


def test_without_the_rule_service_mode_offers_service_actions_only(catalog, policy, names):
    d = run(catalog, quiet(policy, service_to_sales=None), names, [{}])
    assert set(ranked(d, 0)) == set(SERVICE)
    assert reason(d, 0, RETENTION) == Reason.NOT_IN_SERVICE_MODE
    sentence = next(e for e in d.records()[0]["excluded"] if e["action_id"] == RETENTION)
    assert sentence["sentence"].startswith("Service mode")


@pytest.mark.parametrize("kinds", [["retention"], ["retention", "cross_sell"]])
def test_marketing_mode_is_unchanged_by_the_rule(catalog, policy, names, kinds):
    rule = ServiceToSales(kinds=kinds, consent_purpose="service")
    rows = [{}, {"open_cases": 1.0}, {"consent_marketing_call_center": 0.0}]
    with_rule = run(catalog, quiet(policy, service_to_sales=rule), names, rows, "marketing")
    without = run(catalog, quiet(policy, service_to_sales=None), names, rows, "marketing")
    np.testing.assert_array_equal(with_rule.codes, without.codes)
    np.testing.assert_array_equal(with_rule.ranked, without.ranked)
    assert "mode" not in with_rule.records()[0]
    assert reason(with_rule, 2, RETENTION) == Reason.NO_CONSENT


def test_service_only_actions_stay_out_of_campaigns(catalog, policy, names):
    d = run(catalog, quiet(policy), names, [{}], "marketing")
    assert not set(SERVICE) & set(ranked(d, 0))
    assert {reason(d, 0, a) for a in SERVICE} == {Reason.NOT_IN_SERVICE_MODE}
    excluded = {e["action_id"]: e["sentence"] for e in d.records()[0]["excluded"]}
    assert excluded["call_fix"] == (
        "Fix the reported fault now is proposed only in a live service contact "
        "(the catalog's modes)."
    )
    assert RETENTION in ranked(d, 0)  # campaigns keep their retention call
