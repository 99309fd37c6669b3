"""Every reason code has a readable sentence."""

from serving.reasons import CHANNEL_PHRASES, SENTENCES, Reason, code, row_sentence, sentence


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
    for ch, phrase in CHANNEL_PHRASES.items():
        assert phrase in sentence(Reason.NO_CONSENT, {"purpose": "marketing", "channel": ch})
