"""Every reason code has a readable sentence."""

from nextbest.decisions.reasons import (
    SENTENCES,
    Reason,
    channel_phrase,
    code,
    row_sentence,
    sentence,
)


def test_every_reason_has_a_sentence():
    assert set(SENTENCES) == set(Reason)
    for r in Reason:
        text = sentence(r, {"action": "Phone upgrade offer", "channel": "sms"})
        assert text.endswith(".") and "{" not in text
        assert row_sentence(r).endswith(".")
        assert code(int(r)) == r.name


def test_sentence_fills_action_feature_and_value():
    text = sentence(
        Reason.NOT_ELIGIBLE,
        {
            "action": "Loan banner",
            "feature": "value_tier",
            "op": "ge",
            "threshold": 1.0,
            "observed": 0.0,
        },
    )
    assert text == "Loan banner requires value_tier to be at least 1; the customer has 0."


def test_a_channel_reads_as_the_catalog_words_it_or_neutrally():
    fields = {"purpose": "advice", "channel": "branch"}
    phrases = {"branch": "in a branch", "sms": "by SMS"}
    assert (
        sentence(Reason.NO_CONSENT, fields, phrases)
        == "Customer has not consented to advice in a branch."
    )
    # without the catalog's phrases, or for a channel they lack: "by <channel>"
    assert sentence(Reason.NO_CONSENT, fields) == "Customer has not consented to advice by branch."
    assert channel_phrase("web", phrases) == "by web"
    capped = {"observed": 3.0, "days": 7, "threshold": 2, "channel": "sms"}
    assert "3 times by SMS in the last 7 days" in sentence(Reason.CHANNEL_CAP, capped, phrases)
    assert row_sentence(Reason.NOT_ON_CHANNEL, {"action": "X", "channel": "branch"}, phrases) == (
        "X is not offered in a branch."
    )


def test_sentences_read_as_the_string_formatter_would_render_them() -> None:
    """``sentence`` fills templates with ``str.format_map``; the words must equal those of
    ``string.Formatter`` (which it replaced), with every field given, some, or none."""
    import string

    from nextbest.decisions.reasons import SENTENCES, Reason, _Blank, _fmt, sentence

    full = {
        "action": "Phone upgrade",
        "channel": "email",
        "placement": "home",
        "purpose": "marketing",
        "product": "phone_premium",
        "feature": "tenure_days",
        "op": "ge",
        "threshold": 180,
        "observed": float("nan"),
        "score": -0.125,
        "days": 7,
        "kind": "upsell",
    }
    for reason in SENTENCES:
        for fields in (full, {"action": "X", "observed": -0.0}, {}):
            values = _Blank({k: _fmt(v) for k, v in fields.items()})
            if "channel" in values:
                values["channel_phrase"] = "by email"
            if "op" in values:
                from nextbest.decisions.reasons import OP_PHRASES

                values["op_phrase"] = OP_PHRASES.get(values["op"], values["op"])
            expected = string.Formatter().vformat(SENTENCES[Reason(reason)], (), values)
            assert sentence(reason, fields) == expected
