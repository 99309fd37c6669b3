"""Policy that says what a bank means: holdings that suppress an action, complaint and case
rules by action, costs per action and channel, action ids as the business writes them.

A bank-shaped catalog and policy, read from YAML as a team writes them, decided by the one
vectorised engine; every exclusion's sentence names the rule that made it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from nextbest.decisions.catalog import Catalog, ConfigError, load_catalog
from nextbest.decisions.engine import Decisions, decide
from nextbest.decisions.policy import Policy, load_policy
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rules import Plan, compile_plan
from nextbest.models.value import incremental_value
from tests.unit.decisions.conftest import ctx

CATALOG = """
version: bank-test
channels: [email, {id: call_center, phrase: by phone call}]
purposes: [marketing, profiling, service]
categories: [mortgages, savings, cards]
products:
  - {id: mortgage_fixed, name: Fixed-rate mortgage, category: mortgages}
  - {id: savings_plus, name: Savings Plus, category: savings}
  - {id: credit_card_gold, name: Gold card, category: cards}
actions:
  - id: MORTGAGE_REMORT          # the bank's code, as written
    name: Remortgage offer
    channels: [email, call_center]
    purpose: marketing
    kind: retention
    product: mortgage_fixed
    value: 50
    cost: 0.05
    cost_by_channel: {call_center: 8.0}
    suppress_if_holds: []         # for exactly the customers who hold a mortgage
    eligibility: [{feature: holds_mortgage_fixed, op: eq, value: 1}]
  - id: Savings-Offer
    name: Savings offer
    channels: [email]
    purpose: marketing
    kind: cross_sell
    product: savings_plus
    value: 80
    cost: 0.05
    suppress_if_holds: [savings_plus, mortgage_fixed]
  - id: CARD_UPGRADE
    name: Card upgrade
    channels: [email]
    purpose: marketing
    kind: upsell
    product: credit_card_gold
    value: 120
    cost: 0.05
  - id: SERVICE_CHECKIN
    name: Service check-in
    channels: [email, call_center]
    purpose: service
    kind: service
    value: 5
    cost: 0.01
"""

POLICY = """
version: bank-test
case_pause: {purposes: [marketing], actions: [Service-Checkin]}
complaint_block:
  days: 30
  kinds: [upsell, cross_sell]
  actions: {MORTGAGE_REMORT: 90}
holdout: {share: 0.0, salt: s}
exploration: {epsilon: 0.0}
"""

REMORT, SAVINGS, CARD, CHECKIN = (
    "mortgage_remort",
    "savings_offer",
    "card_upgrade",
    "service_checkin",
)


class FlatModel:
    """Every arm lifts the response from 2 % to 10 %; the catalog's values apply."""

    def __init__(self, arm_ids: list[str]) -> None:
        self.arm_ids, self.feature_names, self.version = list(arm_ids), ["tenure_days"], "flat-1"

    def predict_arms(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, a = X.shape[0], len(self.arm_ids)
        return np.full(n, 0.02), np.full((n, a), 0.10), np.zeros((n, a))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def load(tmp_path: Path, catalog: str = CATALOG, policy: str = POLICY) -> tuple[Catalog, Policy]:
    cat = load_catalog(_write(tmp_path, "catalog.yaml", catalog))
    return cat, load_policy(_write(tmp_path, "policy.yaml", policy), cat.terms())


def names_for(cat: Catalog) -> list[str]:
    t = cat.terms()
    names = [f"consent_{p}_{c}" for p in t.purposes for c in t.channels]
    names += [f"contacts_{c}_{w}d" for c in t.channels for w in (7, 30)]
    names += ["contacts_total_7d", "open_cases", "days_since_complaint", "tenure_days"]
    return names + [f"holds_{p}" for p in t.products]


@pytest.fixture()
def bank(tmp_path: Path) -> tuple[Plan, list[str]]:
    cat, pol = load(tmp_path)
    names = names_for(cat)
    return compile_plan(cat, pol, names, FlatModel(cat.ids)), names


def run(bank: tuple[Plan, list[str]], rows: list[dict[str, float]], channel="email") -> Decisions:
    plan, names = bank
    base = dict.fromkeys(names, 0.0)
    base.update({n: 1.0 for n in names if n.startswith("consent_")})
    base.update(days_since_complaint=9999.0, tenure_days=1000.0)
    X = np.array([[{**base, **r}[n] for n in names] for r in rows])
    return decide(X, [f"C{i}" for i in range(len(rows))], plan, ctx(channel, stock={}))


def excluded(d: Decisions, row: int, action: str) -> tuple[str, str] | None:
    """(code, sentence) of ``action``'s exclusion in row ``row``'s record, None if ranked."""
    for e in d.records()[row]["excluded"]:
        if e["action_id"] == action:
            return e["reason"], e["sentence"]
    return None


def test_action_ids_are_read_as_the_business_writes_them(bank):
    plan, _ = bank
    cat = plan.catalog
    assert cat.ids == [REMORT, SAVINGS, CARD, CHECKIN]
    assert cat.action("MORTGAGE_REMORT") is cat.action(" mortgage-remort ")
    assert plan.policy.case_pause.actions == [CHECKIN]
    assert plan.policy.complaint_block.actions == {REMORT: 90.0}
    d = run(bank, [{"holds_mortgage_fixed": 1.0}])
    ranked = [a["action_id"] for a in d.records()[0]["ranked"]]  # answers: normalised ids
    assert ranked == [CARD, REMORT, CHECKIN] and d.records()[0]["chosen_action"] == CARD


def test_a_remortgage_goes_to_exactly_the_customers_who_hold_a_mortgage(bank):
    d = run(bank, [{"holds_mortgage_fixed": 1.0}, {"holds_mortgage_fixed": 0.0}])
    assert excluded(d, 0, REMORT) is None
    assert REMORT in [d.plan.action_ids[c] for c in d.ranked[0] if c >= 0]
    code, text = excluded(d, 1, REMORT)
    assert code == "NOT_ELIGIBLE" and "holds_mortgage_fixed" in text


def test_declared_holdings_suppress_and_the_sentence_names_the_holding(bank):
    d = run(bank, [{"holds_mortgage_fixed": 1.0}, {"holds_savings_plus": 1.0}, {}])
    assert excluded(d, 0, SAVINGS) == (
        "ALREADY_HOLDS",
        "Customer holds mortgage_fixed; Savings offer is not offered to holders of mortgage_fixed.",
    )
    assert excluded(d, 1, SAVINGS)[0] == "ALREADY_HOLDS"
    assert excluded(d, 2, SAVINGS) is None
    # the default is unchanged: holding its own product suppresses the card upgrade
    code, text = excluded(run(bank, [{"holds_credit_card_gold": 1.0}]), 0, CARD)
    assert (code, text) == (
        "ALREADY_HOLDS",
        "Customer already holds credit_card_gold, so Card upgrade is not offered.",
    )


def test_no_holdings_table_is_no_problem_for_an_action_that_no_holding_suppresses(bank):
    d = run(bank, [{"holds_mortgage_fixed": 1.0, "holds_savings_plus": np.nan}])
    assert excluded(d, 0, REMORT) is None  # suppress_if_holds: [] reads no holding
    assert excluded(d, 0, SAVINGS)[0] == "MISSING_FEATURES"


def test_complaint_rule_by_action_beside_the_rule_by_kind(bank):
    # 45 days after a complaint: past the kinds' 30 days, inside the remortgage's 90
    d = run(bank, [{"holds_mortgage_fixed": 1.0, "days_since_complaint": 45.0}])
    assert excluded(d, 0, REMORT) == (
        "RECENT_COMPLAINT",
        "Customer complained 45 days ago; Remortgage offer is not offered within 90 days of "
        "a complaint.",
    )
    assert excluded(d, 0, CARD) is None
    assert excluded(d, 0, SAVINGS)[0] == "ALREADY_HOLDS"  # it holds a mortgage
    # 10 days: the kind rule blocks the upsell with its own sentence, the action rule its own
    d = run(bank, [{"holds_mortgage_fixed": 1.0, "days_since_complaint": 10.0}])
    assert excluded(d, 0, CARD) == (
        "RECENT_COMPLAINT",
        "Customer complained 10 days ago; no upsell offers within 30 days of a complaint.",
    )
    assert "within 90 days" in excluded(d, 0, REMORT)[1]
    assert (
        excluded(
            run(bank, [{"holds_mortgage_fixed": 1.0, "days_since_complaint": 95.0}]), 0, REMORT
        )
        is None
    )


def test_case_rule_by_action_beside_the_rule_by_purpose(bank):
    d = run(bank, [{"open_cases": 1.0, "holds_mortgage_fixed": 1.0}, {}])
    assert excluded(d, 0, CHECKIN) == (
        "CASE_OPEN",
        "Customer has an open service case, and Service check-in pauses while a case is open.",
    )
    assert excluded(d, 0, REMORT) == (  # by purpose, as before
        "CASE_OPEN",
        "Customer has an open service case, so marketing offers are paused.",
    )
    assert excluded(d, 1, CHECKIN) is None


def test_the_incremental_value_uses_the_cost_of_the_decision_s_channel(bank):
    rows = [{"holds_mortgage_fixed": 1.0}]
    email, call = run(bank, rows, "email"), run(bank, rows, "call_center")
    col = list(email.plan.action_ids).index(REMORT)
    # (0.10 - 0.02) * 50 = 4.00: worth it by e-mail (cost 0.05), not by a call (cost 8)
    assert email.score[0, col] == pytest.approx(4.0 - 0.05)
    assert call.score[0, col] == pytest.approx(4.0 - 8.0)
    assert REMORT in [email.plan.action_ids[c] for c in email.ranked[0] if c >= 0]
    rec = call.records()[0]
    assert excluded(call, 0, REMORT)[0] == "NEGATIVE_VALUE"
    assert rec["chosen_action"] == CHECKIN  # the same customer is called about service
    assert [a["cost"] for a in email.records()[0]["ranked"] if a["action_id"] == REMORT] == [0.05]
    checkin = next(a for a in rec["ranked"] if a["action_id"] == CHECKIN)
    assert checkin["cost"] == 0.01  # no cost_by_channel: its cost on every channel
    plan = call.plan
    cp = plan.channels["call_center"]
    assert cp.cost.tolist() == [8.0, 0.01]
    assert plan.channels["email"].cost.tolist() == [0.05, 0.05, 0.05, 0.01]
    np.testing.assert_allclose(
        incremental_value(np.array([0.02]), np.array([[0.1, 0.1]]), cp.value, cp.cost),
        [[4.0 - 8.0, 0.4 - 0.01]],
    )


def test_many_customers_at_once_decide_as_one_at_a_time(bank):
    rng = np.random.default_rng(7)
    plan, names = bank
    rows = [
        {
            "holds_mortgage_fixed": float(rng.integers(0, 2)),
            "holds_savings_plus": float(rng.integers(0, 2)),
            "days_since_complaint": float(rng.choice([5.0, 45.0, 9999.0])),
            "open_cases": float(rng.integers(0, 2)),
        }
        for _ in range(200)
    ]
    for channel in ("email", "call_center"):
        together = run(bank, rows, channel)
        alone = [run(bank, [r], channel) for r in rows[:40]]
        assert [a.codes[0].tolist() for a in alone] == together.codes[:40].tolist()
        assert [a.chosen[0] for a in alone] == together.chosen[:40].tolist()
        # every declared rule fired somewhere in the batch
    codes = set(run(bank, rows, "email").codes.ravel().tolist())
    assert {Reason.ALREADY_HOLDS, Reason.RECENT_COMPLAINT, Reason.CASE_OPEN} <= codes


def test_existing_catalogs_keep_their_decisions(tmp_path):
    """No declared rule: the plan of the demo catalog and policy is what it was (costs,
    holdings on the action's own product, no action rules)."""
    root = Path(__file__).resolve().parents[3]
    cat = load_catalog(root / "config" / "catalog.yaml")
    pol = load_policy(root / "config" / "policy.yaml", cat.terms())
    assert all(a.suppress_if_holds is None and not a.cost_by_channel for a in cat.actions)
    assert cat.consent_scope == {} and cat.terms().all_channel_purposes == ()
    assert pol.case_pause.actions == [] and pol.complaint_block.actions == {}
    for a in cat.actions:
        assert a.held_products == ([a.product] if a.product else [])
        assert all(a.cost_on(c) == a.cost for c in a.channels)


# --- bad input: clear errors naming the entry, the field and the id as written -------------


def _catalog_with(change) -> str:
    data = yaml.safe_load(CATALOG)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (
            lambda d: d["actions"][1].update(id="mortgage-remort"),
            "actions[1] (id 'mortgage-remort'): field 'id': duplicate of actions[0] "
            "(id 'MORTGAGE_REMORT'; ids are compared as 'mortgage_remort')",
        ),
        (lambda d: d["actions"][2].update(id="9LIVES"), "action id '9LIVES' is not usable"),
        (lambda d: d["actions"][2].update(id="CARD/UPGRADE"), "'CARD/UPGRADE'"),
        (lambda d: d["actions"][2].update(id="No_Action"), "'no_action' is implicit"),
        (
            lambda d: d["actions"][0].update(cost_by_channel={"sms": 1.0}),
            "cost_by_channel names sms, not among the action's channels (email, call_center)",
        ),
        (
            lambda d: d["actions"][0].update(cost_by_channel={"call_center": -1}),
            "field 'cost_by_channel.call_center'",
        ),
        (
            lambda d: d["actions"][1].update(suppress_if_holds=["mortgage"]),
            "actions[1] (id 'Savings-Offer'): field 'suppress_if_holds.0': 'mortgage' is not "
            "declared in products",
        ),
        (
            lambda d: d.update(consent_scope={"advice": "all_channels"}),
            "consent_scope names advice, not declared in purposes",
        ),
        (
            lambda d: d.update(consent_scope={"profiling": "everywhere"}),
            "field 'consent_scope.profiling'",
        ),
    ],
)
def test_a_bad_catalog_names_the_entry_field_and_id(tmp_path, change, says):
    with pytest.raises(ConfigError) as err:
        load_catalog(_write(tmp_path, "catalog.yaml", _catalog_with(change)))
    assert says in str(err.value)
    assert str(tmp_path / "catalog.yaml") in str(err.value)


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        (
            POLICY.replace("{MORTGAGE_REMORT: 90}", "{MORTGAGE_REMORTGAGE: 90}"),
            "complaint_block.actions: field 'mortgage_remortgage': not a catalog action",
        ),
        (
            POLICY.replace("[Service-Checkin]", "[Service-Checkin, CHECKOUT]"),
            "case_pause.actions: field 'checkout': not a catalog action",
        ),
        (
            POLICY.replace("{MORTGAGE_REMORT: 90}", "{MORTGAGE_REMORT: 90, mortgage_remort: 30}"),
            "'MORTGAGE_REMORT' and 'mortgage_remort' name the same action",
        ),
        (POLICY.replace("{MORTGAGE_REMORT: 90}", "{MORTGAGE_REMORT: 0}"), "greater than 0"),
        (
            POLICY.replace("[Service-Checkin]", "[Service-Checkin, SERVICE_CHECKIN]"),
            "actions must not repeat",
        ),
    ],
)
def test_a_bad_policy_names_the_entry_and_the_action(tmp_path, policy, says):
    cat = load_catalog(_write(tmp_path, "catalog.yaml", CATALOG))
    with pytest.raises(ConfigError, match="policy.yaml") as err:
        load_policy(_write(tmp_path, "policy.yaml", policy), cat.terms())
    assert says in str(err.value)


def test_declared_holdings_with_the_holdings_switch_off_are_refused(tmp_path):
    cat, pol = load(tmp_path, policy=POLICY + "suppression: {never_offer_held: false}\n")
    with pytest.raises(ConfigError, match="actions savings_offer: .*never_offer_held"):
        compile_plan(cat, pol, names_for(cat), FlatModel(cat.ids))
    # [] alone declares nothing to suppress: accepted with the switch off
    plain = CATALOG.replace("suppress_if_holds: [savings_plus, mortgage_fixed]", "")
    cat, pol = load(
        tmp_path, catalog=plain, policy=POLICY + "suppression: {never_offer_held: false}\n"
    )
    plan = compile_plan(cat, pol, names_for(cat), FlatModel(cat.ids))
    assert all(
        Reason.ALREADY_HOLDS not in [c.reason for c in cp.checks] for cp in plan.channels.values()
    )
