"""The catalog loads from YAML and bad files fail naming the file, the entry and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nextbest.decisions.catalog import ConfigError, load_catalog
from tests.conftest import demo_terms
from tests.unit.decisions.conftest import ROOT, feature_names


def write(tmp_path: Path, data: object, name: str = "catalog.yaml") -> Path:
    """Write a catalog; a mapping without them gets the default channels, purposes,
    categories and products."""
    p = tmp_path / name
    if isinstance(data, dict):
        default = yaml.safe_load((ROOT / "config" / "catalog.yaml").read_text())
        keys = ("channels", "purposes", "categories", "products")
        data = {k: default[k] for k in keys} | data
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def base_actions() -> list[dict]:
    return yaml.safe_load((ROOT / "config" / "catalog.yaml").read_text())["actions"]


def test_default_catalog_matches_contract_arms():
    cat = load_catalog(ROOT / "config" / "catalog.yaml")
    assert cat.ids == [
        "email_phone_upgrade",
        "email_broadband_bundle",
        "sms_accessory_discount",
        "push_insurance_offer",
        "web_loan_banner",
        "app_loyalty_bonus",
        "call_retention_offer",
        "email_service_tips",
        "call_fee_refund",
        "call_callback",
        "call_fix",
    ]
    # The agent's service actions are never campaigned: they score with the tips' arm.
    arms = {a.id: a.arm for a in cat.actions}
    assert all(arms[a] == a for a in cat.ids[:8])
    assert {arms[a] for a in cat.ids[8:]} == {"email_service_tips"}
    assert cat.action("email_phone_upgrade").needs_stock
    cat.validate_features(feature_names(cat.ids))


def test_default_configs_fit_the_generator_and_feature_schema():
    from nextbest.customers.feature_schema import all_feature_names
    from nextbest.decisions.policy import load_policy
    from nextbest.decisions.rules import compile_plan
    from nextbest.demo.generate import ACTIONS, CHANNELS, PURPOSES
    from tests.unit.decisions.conftest import ViewsModel

    cat = load_catalog(ROOT / "config" / "catalog.yaml")
    # the demo's feature columns are unchanged: same channels and purposes, same order
    assert (tuple(cat.channel_ids), tuple(cat.purposes)) == (CHANNELS, PURPOSES)
    for g in ACTIONS:
        a = cat.action(g.action_id)
        assert (a.channels, a.purpose, a.kind) == ([g.channel], g.purpose, g.kind)
        assert (a.category, a.product) == (g.category, g.product_id)
    pol = load_policy(ROOT / "config" / "policy.yaml", cat.terms())
    names = all_feature_names(demo_terms())
    model = ViewsModel(cat.ids)
    model.feature_names = [f for f in model.feature_names if f in names]
    plan = compile_plan(cat, pol, names, model)  # strict: every rule's feature exists
    assert plan.missing_features == []


def test_margin_is_an_alias_of_value(tmp_path):
    actions = base_actions()
    actions[0]["margin"] = actions[0].pop("value")
    cat = load_catalog(write(tmp_path, {"version": 1, "actions": actions}))
    assert cat.actions[0].value == base_actions()[0]["value"]
    assert cat.version == "1"


@pytest.mark.parametrize(
    ("mutate", "entry", "field"),
    [
        (
            lambda a: a[1].update(channels=["fax"]),
            "actions[1] (id 'email_broadband_bundle')",
            "channels.0",
        ),
        (
            lambda a: a[2].update(purpose="sales"),
            "actions[2] (id 'sms_accessory_discount')",
            "purpose",
        ),
        (
            lambda a: a[0].update(eligibility=[{"feature": "age", "op": "between", "value": 1}]),
            "actions[0] (id 'email_phone_upgrade')",
            "eligibility.0.op",
        ),
        (
            lambda a: a[3].update(valid_from="2025-02-01", valid_to="2025-01-01"),
            "actions[3] (id 'push_insurance_offer')",
            "(entry)",
        ),
        (lambda a: a[4].update(id="no_action"), "actions[4] (id 'no_action')", "(entry)"),
        (lambda a: a[5].update(id=a[0]["id"]), "actions[5] (id 'email_phone_upgrade')", "id"),
        (lambda a: a[6].update(cost=-1), "actions[6] (id 'call_retention_offer')", "cost"),
        (lambda a: a[7].update(colour="red"), "actions[7] (id 'email_service_tips')", "colour"),
        (
            lambda a: a[1].update(needs_stock=True, product=None),
            "actions[1] (id 'email_broadband_bundle')",
            "(entry)",
        ),
    ],
)
def test_bad_catalog_names_file_entry_and_field(tmp_path, mutate, entry, field):
    actions = base_actions()
    mutate(actions)
    path = write(tmp_path, {"version": "x", "actions": actions})
    with pytest.raises(ConfigError) as err:
        load_catalog(path)
    msg = str(err.value)
    assert str(path) in msg and entry in msg and f"field '{field}'" in msg


def test_unknown_feature_in_predicate(tmp_path):
    actions = base_actions()
    actions[4]["eligibility"] = [{"feature": "credit_score", "op": "ge", "value": 600}]
    path = write(tmp_path, {"version": "x", "actions": actions})
    names = feature_names([a["id"] for a in actions])
    with pytest.raises(
        ConfigError,
        match=r"action 'web_loan_banner'.*eligibility\[0\]"
        r".*credit_score",
    ) as err:
        load_catalog(path, feature_names=names)
    assert str(path) in str(err.value)
    load_catalog(write(tmp_path, {"version": "x", "actions": base_actions()}), names)


def test_broken_yaml_and_wrong_shape_name_the_file(tmp_path):
    bad = write(tmp_path, "version: [1\nactions: x", "broken.yaml")
    with pytest.raises(ConfigError, match="broken.yaml: invalid YAML"):
        load_catalog(bad)
    with pytest.raises(ConfigError, match="list.yaml: top level"):
        load_catalog(write(tmp_path, "- a\n- b\n", "list.yaml"))
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_catalog(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("mutate", "entry", "field"),
    [
        (lambda d: d["actions"][1].update(product="bb_gigabit"), "actions[1]", "product"),
        (lambda d: d["actions"][2].update(category="toys"), "actions[2]", "category"),
        (lambda d: d["actions"][0].update(category="loans"), "actions[0]", "category"),
        (lambda d: d["products"][3].update(category="toys"), "products[3]", "category"),
        (lambda d: d["products"].append(dict(d["products"][0])), "products[12]", "id"),
        (lambda d: d["products"][0].update(id="Phone Basic"), "products[0]", "id"),
        (lambda d: d["categories"].append("phones"), "top level", "categories"),
    ],
)
def test_products_and_categories_are_checked_naming_file_entry_and_field(
    tmp_path, mutate, entry, field
):
    data = yaml.safe_load((ROOT / "config" / "catalog.yaml").read_text())
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_catalog(path)
    msg = str(err.value)
    assert str(path) in msg and entry in msg and f"field '{field}'" in msg, msg


def test_terms_follow_the_file_order():
    cat = load_catalog(ROOT / "config" / "catalog.yaml")
    terms = cat.terms()
    assert terms.action_ids == tuple(cat.ids)
    assert terms.categories == ("phones", "accessories", "broadband", "insurance", "loans")
    assert terms.channels == ("email", "sms", "push", "web", "app", "call_center")
    assert terms.purposes == ("marketing", "profiling", "service")
    assert terms.products[:2] == ("phone_basic", "phone_premium") and len(terms.products) == 12
    assert cat.product("bb_fibre").category == "broadband"


@pytest.mark.parametrize(
    ("mutate", "entry", "field", "says"),
    [
        (
            lambda d: d["actions"][1].update(channels=["email", "branch"]),
            "actions[1] (id 'email_broadband_bundle')",
            "channels.1",
            "'branch' is not declared in channels",
        ),
        (
            lambda d: d["actions"][6].update(purpose="advice"),
            "actions[6] (id 'call_retention_offer')",
            "purpose",
            "'advice' is not declared in purposes",
        ),
        (
            lambda d: d.update(channels=[c for c in d["channels"] if c["id"] != "push"]),
            "actions[3]",
            "channels.0",
            "'push'",
        ),
        (
            lambda d: d["channels"].append("Branch Office"),
            "channels[6] (id 'Branch Office')",
            "id",
            "pattern",
        ),
        (
            lambda d: d["channels"].append({"id": "branch", "phrse": "in a branch"}),
            "channels[6] (id 'branch')",
            "phrse",
            "Extra inputs are not permitted",
        ),
        (
            lambda d: d["channels"].append({"id": "branch", "phrase": "  "}),
            "channels[6] (id 'branch')",
            "phrase",
            "at least 1 character",
        ),
        (
            lambda d: d["channels"].append({"id": "branch", "phrase": 7}),
            "channels[6] (id 'branch')",
            "phrase",
            "valid string",
        ),
        (
            lambda d: d["channels"].append({"id": "email"}),
            "top level",
            "channels",
            "repeat: email",
        ),
        (lambda d: d["purposes"].append("service"), "top level", "purposes", "repeat: service"),
        (lambda d: d.pop("channels"), "top level", "channels", "required"),
        (lambda d: d.update(purposes=[]), "top level", "purposes", "at least 1"),
    ],
)
def test_channels_and_purposes_are_declared_and_checked(tmp_path, mutate, entry, field, says):
    data = yaml.safe_load((ROOT / "config" / "catalog.yaml").read_text())
    mutate(data)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_catalog(path)
    msg = str(err.value)
    assert str(path) in msg and entry in msg and f"field '{field}'" in msg and says in msg, msg


def test_a_channel_and_purpose_the_generator_never_made_name_their_features(tmp_path):
    from nextbest.customers.feature_schema import all_feature_names, view_specs

    data = yaml.safe_load((ROOT / "config" / "catalog.yaml").read_text())
    data["channels"].append("branch")
    data["purposes"].append("advice")
    data["actions"].append(
        {
            "id": "branch_loan_advice",
            "name": "Loan advice at the branch",
            "channels": ["branch"],
            "purpose": "advice",
            "kind": "service",
            "value": 10.0,
        }
    )
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    terms = load_catalog(path).terms()
    assert terms.channels[-1] == "branch" and terms.purposes[-1] == "advice"
    views = {v.name: v.feature_names for v in view_specs(terms)}
    assert "consent_advice_branch" in views["customer_consent"]
    assert "consent_marketing_branch" in views["customer_consent"]
    assert "consent_advice_email" in views["customer_consent"]
    assert {"contacts_branch_7d", "contacts_branch_30d"} <= set(views["customer_contacts"])
    assert "last_shown_ts_branch_loan_advice" in views["customer_contacts"]
    # the demo's columns keep their names and order; the new ones come after
    demo = all_feature_names(demo_terms())
    names = all_feature_names(terms)
    assert [n for n in names if n in set(demo)] == demo
    # consent: advice on 7 channels, 3 purposes on branch; contacts 7/30d; shown ts/days
    assert len(names) - len(demo) == 7 + 3 + 2 + 2


def test_channels_are_plain_ids_or_entries_with_a_phrase_mixed(tmp_path):
    data = yaml.safe_load((ROOT / "config" / "catalog.yaml").read_text())
    data["channels"] = [
        "email",
        {"id": "sms", "phrase": "  by text message "},
        {"id": "push"},
        *data["channels"][3:],
    ]
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    cat = load_catalog(path)
    # the ids, their order and so every derived column are those of the plain list
    assert cat.terms().channels == demo_terms().channels
    phrases = cat.channel_phrases
    assert phrases["sms"] == "by text message"  # trimmed
    assert "email" not in phrases and "push" not in phrases  # no phrase: the fallback
    assert phrases["call_center"] == "by phone call"


def test_the_demo_catalog_declares_the_demo_wording_and_the_bank_its_own():
    from tests.worlds.bank import CONFIG_DIR

    demo = load_catalog(ROOT / "config" / "catalog.yaml")
    assert demo.channel_phrases == {
        "email": "by email",
        "sms": "by SMS",
        "push": "by push notification",
        "web": "on the website",
        "app": "in the app",
        "call_center": "by phone call",
    }
    bank = load_catalog(CONFIG_DIR / "catalog.yaml")
    assert bank.channel_ids == ["email", "sms", "branch", "web"]
    assert bank.channel_phrases["branch"] == "in a branch" and "email" not in bank.channel_phrases
