"""Consent recorded once for all channels, at decision time: a consent event on any
channel sets every channel's cell for such a purpose (the ledger), the consent rule and
the modelling unlock read it on the decision's channel, and per channel stays the default.
Action ids sent to ``/events`` are read as the business writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from nextbest.decisions.catalog import load_catalog
from nextbest.decisions.engine import decide
from nextbest.decisions.ledger import EventError, Vocabulary, validate_event
from nextbest.decisions.ledger_state import derive
from nextbest.decisions.policy import load_policy
from nextbest.decisions.rules import compile_plan
from tests.unit.decisions.conftest import ctx

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp()
DAY = 86_400.0

CATALOG = """
version: scope-test
channels: [email, branch, web]
purposes: [marketing, profiling]
consent_scope: {profiling: all_channels}
actions:
  - {id: NEWSLETTER, name: Newsletter, channels: [email], purpose: marketing, kind: info,
     value: 10}
  - {id: Profile-Review, name: Profile review, channels: [email, web], purpose: profiling,
     kind: service, value: 10}
"""
POLICY = """
version: scope-test
holdout: {share: 0.0, salt: s}
exploration: {epsilon: 0.0}
case_pause: {enabled: false}
modelling: {sensitive_features: [age], model_sensitive_features_require: profiling}
"""


@pytest.fixture()
def catalog(tmp_path: Path):
    p = tmp_path / "catalog.yaml"
    p.write_text(CATALOG)
    return load_catalog(p)


def event(catalog, type_: str, payload: dict, t: float, seq: int):
    e = validate_event(
        "C1", type_, t, payload, received=NOW, vocab=Vocabulary.from_terms(catalog.terms())
    )
    return e.__class__(**{**e.__dict__, "seq": seq})


def test_a_consent_event_on_any_channel_sets_every_channel_for_an_all_channel_purpose(catalog):
    terms = catalog.terms()
    snapshot = {f"consent_profiling_{c}": 1.0 for c in terms.channels}
    snapshot |= {"consent_marketing_email": 1.0, "customer_consent_as_of_ts": NOW - 30 * DAY}
    withdrawn = event(
        catalog,
        "consent_changed",
        {"purpose": "profiling", "channel": "web", "granted": False},
        NOW - DAY,
        1,
    )
    out = derive([withdrawn], NOW, snapshot, terms=terms)
    assert {k: v for k, v in out.items() if k.startswith("consent_")} == {
        "consent_profiling_email": 0.0,
        "consent_profiling_branch": 0.0,
        "consent_profiling_web": 0.0,
    }
    # given again later in a branch: the newest on any channel wins, everywhere
    given = event(
        catalog,
        "consent_changed",
        {"purpose": "profiling", "channel": "branch", "granted": True},
        NOW - DAY / 2,
        2,
    )
    out = derive([given, withdrawn], NOW, snapshot, terms=terms)
    assert [out[f"consent_profiling_{c}"] for c in terms.channels] == [1.0, 1.0, 1.0]
    # a per-channel purpose, or no terms (the default): only the event's own cell
    mkt = event(
        catalog,
        "consent_changed",
        {"purpose": "marketing", "channel": "web", "granted": True},
        NOW - DAY,
        3,
    )
    assert {k for k in derive([mkt], NOW, snapshot, terms=terms) if k.startswith("consent_")} == {
        "consent_marketing_web"
    }
    assert {k for k in derive([withdrawn], NOW, snapshot) if k.startswith("consent_")} == {
        "consent_profiling_web"
    }


class AgeModel:
    """Scores rise with age; records what it saw."""

    feature_names = ["age"]
    version = "age-1"

    def __init__(self, arm_ids):
        self.arm_ids, self.seen = list(arm_ids), []

    def predict_arms(self, X):
        self.seen.append(X.copy())
        n, a = X.shape[0], len(self.arm_ids)
        return np.full(n, 0.02), np.full((n, a), 0.2), np.zeros((n, a))


def test_the_rule_and_the_modelling_unlock_read_the_all_channel_consent(catalog, tmp_path):
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    policy = load_policy(p, catalog.terms())
    names = [f"consent_{p}_{c}" for p in catalog.purposes for c in catalog.channel_ids] + ["age"]
    model = AgeModel(catalog.ids)
    plan = compile_plan(catalog, policy, names, model)
    assert plan.terms.all_channel_purposes == ("profiling",)
    # customer 0: profiling captured in a branch (every column 1 after the feature build);
    # customer 1: withdrawn (every column 0)
    rows = []
    for granted in (1.0, 0.0):
        row = dict.fromkeys(names, 0.0)
        row.update({f"consent_profiling_{c}": granted for c in catalog.channel_ids})
        row.update(consent_marketing_email=1.0, age=52.0)
        rows.append([row[n] for n in names])
    d = decide(np.array(rows), ["C0", "C1"], plan, ctx("email", stock={}))
    assert model.seen[-1][:, 0].tolist()[0] == 52.0 and np.isnan(model.seen[-1][1, 0])
    recs = d.records()
    assert [a["action_id"] for a in recs[0]["ranked"]] == ["newsletter", "profile_review"]
    (ex,) = [e for e in recs[1]["excluded"] if e["action_id"] == "profile_review"]
    assert ex["reason"] == "NO_CONSENT"
    assert ex["sentence"] == (
        "Customer has not consented to profiling; consent to profiling is recorded once for "
        "all channels."
    )


def test_contact_events_name_actions_as_the_business_writes_them(catalog):
    vocab = Vocabulary.from_terms(catalog.terms())
    e = validate_event(
        "C1", "contact", NOW, {"channel": "web", "action_id": " PROFILE-REVIEW"}, vocab=vocab
    )
    assert e.payload["action_id"] == "profile_review"
    assert "last_shown_ts_profile_review" in derive([e], NOW + 1, {})
    with pytest.raises(EventError, match="payload.action_id"):
        validate_event("C1", "contact", NOW, {"channel": "web", "action_id": "REVIEW"}, vocab=vocab)
