"""One decision across channels: the best pair kept, the others explained."""

from nextbest.decisions.channel_choice import LOWER_VALUE, choose_channel


def rec(channel: str, chosen: str, score: float | None, reason: str = "BEST_VALUE", **kw):
    ranked = [] if score is None else [{"action_id": chosen, "score": score}]
    return {
        "channel": channel,
        "chosen_action": chosen,
        "group": kw.get("group", "treatment"),
        "ranked": ranked,
        "excluded": kw.get("excluded", []),
        "reason": reason,
        "reason_text": f"{reason} text",
    }


def test_the_most_valuable_channel_wins_and_the_others_say_why() -> None:
    records = {
        "email": rec("email", "a", 1.5),
        "sms": rec(
            "sms",
            "no_action",
            None,
            "NO_ELIGIBLE_ACTION",
            excluded=[{"action_id": "b", "reason": "QUIET_HOURS"}],
        ),
        "push": rec("push", "c", 2.5),
        "web": rec("web", "no_action", None, "NO_ELIGIBLE_ACTION"),
    }
    out = choose_channel(records, ["email", "sms", "push", "web"])
    assert out["channel"] == "push" and out["chosen_action"] == "c"
    why = {o["channel"]: o["reason"] for o in out["channels"]}
    assert why == {"email": LOWER_VALUE, "sms": "QUIET_HOURS", "web": "NO_ELIGIBLE_ACTION"}
    assert out["channels_asked"] == ["email", "sms", "push", "web"]


def test_ties_go_to_the_channel_asked_first_and_nothing_chosen_answers_the_first() -> None:
    records = {"email": rec("email", "a", 2.0), "push": rec("push", "c", 2.0)}
    assert choose_channel(records, ["push", "email"])["channel"] == "push"
    none = {
        "sms": rec("sms", "no_action", None, "HOLDOUT", group="holdout"),
        "email": rec("email", "no_action", None, "HOLDOUT", group="holdout"),
    }
    out = choose_channel(none, ["sms", "email"])
    assert out["channel"] == "sms" and out["chosen_action"] == "no_action"
    assert out["channels"][0]["reason"] == "HOLDOUT"
