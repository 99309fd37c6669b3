"""The /decide answer rendered from a decision-log record."""

from __future__ import annotations

from typing import Any

from serving.responses import response_from_record


def _record(group: str) -> dict[str, Any]:
    ranked = {
        "action_id": "email_phone_upgrade",
        "rank": 1,
        "score": 12.5,
        "uplift": 0.05,
        "value": 250.0,
        "control_value": 240.0,
        "p_treated": 0.15,
        "p_control": 0.10,
        "cost": 0.05,
        "lever": 1.0,
    }
    return {
        "decision_id": "d1",
        "customer_id": "C1",
        "channel": "email",
        "group": group,
        "chosen_action": "no_action" if group == "holdout" else "email_phone_upgrade",
        "ranked": [ranked],
        "excluded": [],
    }


def test_a_holdout_answer_lists_no_actions_but_the_log_keeps_the_ranking() -> None:
    record = _record("holdout")
    answer = response_from_record(record)
    assert answer["actions"] == []
    assert answer["chosen_action"] == "no_action"
    assert answer["report_delivery"] is None
    assert record["ranked"][0]["action_id"] == "email_phone_upgrade"


def test_a_treatment_answer_lists_its_ranked_actions() -> None:
    answer = response_from_record(_record("decided"))
    assert [a["action_id"] for a in answer["actions"]] == ["email_phone_upgrade"]
    assert answer["report_delivery"]["payload"]["action_id"] == "email_phone_upgrade"
