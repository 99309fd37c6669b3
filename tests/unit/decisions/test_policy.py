"""The policy loads from YAML and bad files fail naming the file, the entry and the field."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from nextbest.decisions.catalog import ConfigError
from nextbest.decisions.policy import load_policy
from tests.conftest import demo_terms
from tests.unit.decisions.conftest import ROOT


def base() -> dict:
    return yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_default_policy_values():
    pol = load_policy(ROOT / "config" / "policy.yaml")
    caps = {(c.channel, c.period_days): c.max_contacts for c in pol.caps}
    assert caps == {("email", 7): 1, ("sms", 7): 1, ("push", 7): 2, ("all", 7): 3}
    assert pol.holdout.share == 0.05 and pol.exploration.epsilon == 0.05
    assert pol.complaint_block.days == 30 and pol.case_pause.purposes == ["marketing"]
    assert pol.consent_feature("email_phone_upgrade", "marketing", "email") == (
        "consent_marketing_email"
    )
    assert [c.feature() for c in pol.caps][-1] == "contacts_total_7d"


def test_consent_override(tmp_path):
    data = base()
    data["consent"] = {
        "overrides": {
            "email_service_tips": {"purpose": "service"},
            "web_loan_banner": {"channel": "email"},
        }
    }
    pol = load_policy(write(tmp_path, data), demo_terms())
    assert pol.consent_feature("email_service_tips", "marketing", "email") == (
        "consent_service_email"
    )
    assert pol.consent_feature("web_loan_banner", "marketing", "web") == "consent_marketing_email"
    with pytest.raises(ConfigError, match=r"consent.overrides: field 'web_loan_banner'"):
        load_policy(
            write(tmp_path, data), replace(demo_terms(), action_ids=("email_service_tips",))
        )


@pytest.mark.parametrize(
    ("mutate", "entry", "field"),
    [
        (lambda d: d["holdout"].update(share=1.5), "holdout", "holdout.share"),
        (lambda d: d["holdout"].pop("salt"), "holdout", "holdout.salt"),
        (lambda d: d["caps"][1].update(channel="fax"), "caps[1]", "channel"),
        (lambda d: d["caps"][0].update(period_days=14), "caps[0]", "period_days"),
        (lambda d: d["caps"][3].update(period_days=30), "caps[3]", "period_days"),
        (lambda d: d["caps"].append(dict(d["caps"][0])), "caps[4]", "channel"),
        (lambda d: d["exploration"].update(epsilon=-0.1), "exploration", "exploration.epsilon"),
        (
            lambda d: d["complaint_block"].update(kinds=["spam"]),
            "complaint_block",
            "complaint_block.kinds.0",
        ),
        (lambda d: d.update(speed="fast"), "top level", "speed"),
    ],
)
def test_bad_policy_names_file_entry_and_field(tmp_path, mutate, entry, field):
    data = base()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_policy(path, demo_terms())
    msg = str(err.value)
    assert str(path) in msg and f"{entry}:" in msg and f"field '{field}'" in msg


@pytest.mark.parametrize(
    ("mutate", "entry", "field", "value"),
    [
        (lambda d: d["caps"][1].update(channel="branch"), "caps[1]", "channel", "branch"),
        (
            lambda d: d["consent"].update(overrides={"email_service_tips": {"purpose": "advice"}}),
            "consent.overrides.email_service_tips",
            "purpose",
            "advice",
        ),
        (
            lambda d: d["consent"].update(overrides={"web_loan_banner": {"channel": "branch"}}),
            "consent.overrides.web_loan_banner",
            "channel",
            "branch",
        ),
        (
            lambda d: d["case_pause"].update(purposes=["marketing", "advice"]),
            "case_pause",
            "case_pause.purposes.1",
            "advice",
        ),
        (
            lambda d: d["modelling"].update(model_sensitive_features_require="advice"),
            "modelling",
            "modelling.model_sensitive_features_require",
            "advice",
        ),
    ],
)
def test_channels_and_purposes_must_be_the_catalog_s(tmp_path, mutate, entry, field, value):
    data = base()
    mutate(data)
    path = write(tmp_path, data)
    load_policy(path)  # well-formed on its own: which channels exist is the catalog's
    with pytest.raises(ConfigError) as err:
        load_policy(path, demo_terms())
    msg = str(err.value)
    assert f"{path}: {entry}: field '{field}': '{value}' is not declared in the catalog's" in msg
    bank = replace(
        demo_terms(),
        channels=(*demo_terms().channels, "branch"),
        purposes=(*demo_terms().purposes, "advice"),
    )
    assert load_policy(path, bank).version == data["version"]
