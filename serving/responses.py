"""The ``/decide`` answer, rendered from the decision-log record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nextbest.core.vocabulary import NO_ACTION


def response_from_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/decide`` answer built from the decision-log record (same facts, no copy).

    A holdout answer lists no actions: a channel that reads ``actions`` must not contact
    the holdout. Its counterfactual ranking stays in the decision log for measurement.
    """
    ranked = [] if record["group"] == "holdout" else record.get("ranked", [])
    across = (
        {"channel": record.get("channel"), "channels": record["channels"]}
        if "channels" in record
        else {}
    )
    return {
        "decision_id": record["decision_id"],
        "customer_id": record["customer_id"],
        "group": record["group"],
        "chosen_action": record.get("chosen_action"),
        "propensity": record.get("propensity"),
        "actions": [
            {
                "action_id": a["action_id"],
                "rank": a.get("rank"),
                "score": a["score"],
                "uplift": a["uplift"],
                "value": a["value"],
                "control_value": a.get("control_value"),
                "p_treated": a["p_treated"],
                "p_control": a["p_control"],
                "cost": a["cost"],
                "lever": a["lever"],
                "reasons": [score_sentence(a, record.get("channel"))],
            }
            for a in ranked
        ],
        "excluded": [
            {"action_id": e["action_id"], "reasons": [{"code": e["reason"], "text": e["sentence"]}]}
            for e in record.get("excluded", [])
        ],
        "reason": {"code": record.get("reason"), "text": record.get("reason_text")},
        "model_version": record.get("model_version"),
        "policy_version": record.get("policy_version"),
        "catalog_version": record.get("catalog_version"),
        "report_delivery": delivery_event(record),
        **across,
    }


def delivery_event(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``/events`` body that reports the chosen action as delivered (add its
    ``timestamp``), or None when nothing is to be delivered.

    Contact caps and cooldowns count delivered contacts only: a decision served but never
    reported counts as not contacted. The ``event_id`` is fixed per decision, so a channel
    that reports twice counts once.
    """
    chosen = record.get("chosen_action")
    if chosen in (None, NO_ACTION):
        return None
    decision = record["decision_id"]
    return {
        "customer": {"id": record["customer_id"]},
        "type": "contact",
        "event_id": f"delivered:{decision}",
        "payload": {"channel": record["channel"], "action_id": chosen, "decision_id": decision},
    }


def score_sentence(a: Mapping[str, Any], channel: str | None = None) -> str:
    """The score parts of a ranked action in words an agent can read; the cost is the
    action's on ``channel`` (the catalog's ``cost_by_channel``, else its ``cost``)."""
    v0 = a.get("control_value")
    worth = (
        f"worth {a['value']:.2f} per response"
        if v0 is None
        else f"worth {a['value']:.2f} per response to the offer and {v0:.2f} per response without"
    )
    on = f" on {channel}" if channel else ""
    return (
        f"Expected incremental value {a['score']:.2f}: response {a['p_treated']:.1%} if offered "
        f"vs {a['p_control']:.1%} if not (uplift {a['uplift']:+.1%}), {worth}, minus cost "
        f"{a['cost']:.2f}{on}, times business lever {a['lever']:g}."
    )
