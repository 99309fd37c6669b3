"""Behaviour of the decision engine: every rule, scoring, holdout, exploration, parity."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from nextbest.decisions.draws import in_holdout
from nextbest.decisions.engine import Decisions, decide
from nextbest.decisions.policy import Exploration, Holdout, Policy
from nextbest.decisions.reasons import Reason
from nextbest.decisions.rules import compile_plan
from tests.params import SECOND_SEED, SEED, SMALL_CUSTOMERS
from tests.unit.decisions.conftest import NOW, ViewsModel, ctx, default_row, matrix

UPGRADE = "email_phone_upgrade"
BUNDLE = "email_broadband_bundle"
TIPS = "email_service_tips"


def no_random(policy: Policy) -> Policy:
    """The policy without holdout and exploration, so the greedy choice is logged."""
    return policy.model_copy(
        update={"holdout": Holdout(share=0.0, salt="x"), "exploration": Exploration(epsilon=0.0)}
    )


def run(plan, names, overrides: list[dict[str, float]], channel="email", **kw) -> Decisions:
    rows = [{**default_row(names), **o} for o in overrides]
    ids = [f"C{i:07d}" for i in range(len(rows))]
    return decide(matrix(names, rows), ids, plan, ctx(channel, **kw))


def reason_of(d: Decisions, row: int, action: str) -> Reason:
    return Reason(int(d.codes[row, list(d.plan.action_ids).index(action)]))


@pytest.mark.parametrize(
    ("change", "expected", "affected", "unaffected"),
    [
        ({"consent_marketing_email": np.nan}, Reason.NO_CONSENT, UPGRADE, TIPS),
        ({"consent_marketing_email": 0.0}, Reason.NO_CONSENT, BUNDLE, TIPS),
        ({"consent_service_email": 0.0}, Reason.NO_CONSENT, TIPS, UPGRADE),
        ({"tenure_days": 100.0}, Reason.NOT_ELIGIBLE, UPGRADE, BUNDLE),
        ({"tenure_days": np.nan}, Reason.MISSING_FEATURES, UPGRADE, BUNDLE),
        ({"open_cases": 1.0}, Reason.CASE_OPEN, UPGRADE, TIPS),
        ({"days_since_complaint": 10.0}, Reason.RECENT_COMPLAINT, BUNDLE, TIPS),
        ({"holds_phone_premium": 1.0}, Reason.ALREADY_HOLDS, UPGRADE, BUNDLE),
        ({"days_since_shown_email_phone_upgrade": 3.0}, Reason.COOLDOWN, UPGRADE, BUNDLE),
        ({"contacts_email_7d": 1.0}, Reason.CHANNEL_CAP, BUNDLE, None),
        ({"contacts_total_7d": 3.0}, Reason.TOTAL_CAP, TIPS, None),
    ],
)
def test_each_rule_affects_only_the_customer_it_should(
    plan, names, change, expected, affected, unaffected
):
    d = run(plan, names, [{}, change])
    assert reason_of(d, 0, affected) == Reason.ELIGIBLE
    assert reason_of(d, 1, affected) == expected
    if unaffected is not None:
        assert reason_of(d, 1, unaffected) == Reason.ELIGIBLE
    assert affected not in [d.plan.action_ids[c] for c in d.ranked[1] if c >= 0]


@pytest.mark.parametrize(
    ("null", "expected", "affected"),
    [
        # features of an absent table are null; each rule that reads one says what null means
        ("consent_marketing_email", Reason.NO_CONSENT, UPGRADE),  # no record: no consent
        ("open_cases", Reason.MISSING_FEATURES, UPGRADE),  # unknown is not "no open case"
        ("holds_phone_premium", Reason.MISSING_FEATURES, UPGRADE),  # unknown is not "not held"
        ("contacts_email_7d", Reason.MISSING_FEATURES, BUNDLE),  # uncounted is not 0 contacts
    ],
)
def test_a_null_feature_is_never_read_as_zero(plan, names, null, expected, affected):
    d = run(plan, names, [{}, {null: np.nan}])  # the default row: consent 1, counts 0
    assert reason_of(d, 0, affected) == Reason.ELIGIBLE
    assert reason_of(d, 1, affected) == expected


def test_a_team_without_a_case_table_turns_the_case_pause_off(catalog, policy, names):
    off = no_random(policy)
    off = off.model_copy(
        update={"case_pause": off.case_pause.model_copy(update={"enabled": False})}
    )
    plan = compile_plan(catalog, off, names, ViewsModel(catalog.ids))
    assert reason_of(run(plan, names, [{"open_cases": np.nan}]), 0, UPGRADE) == Reason.ELIGIBLE


def test_consent_withdrawal_takes_effect_on_next_decision(catalog, policy, names):
    plan = compile_plan(catalog, no_random(policy), names, ViewsModel(catalog.ids))
    first = run(plan, names, [{}])
    assert first.chosen_action[0] != "no_action"
    withdrawn = run(plan, names, [{"consent_marketing_email": 0.0, "consent_service_email": 0.0}])
    assert withdrawn.chosen_action[0] == "no_action"
    assert withdrawn.records()[0]["reason"] == "NO_ELIGIBLE_ACTION"


def test_missing_consent_column_means_no_consent(catalog, policy, names):
    fewer = [n for n in names if n != "consent_marketing_email"]
    with pytest.raises(ValueError, match="consent_marketing_email"):
        compile_plan(catalog, policy, fewer, ViewsModel(catalog.ids))
    plan = compile_plan(catalog, policy, fewer, ViewsModel(catalog.ids), strict=False)
    d = run(plan, fewer, [{}])
    assert reason_of(d, 0, UPGRADE) == Reason.NO_CONSENT
    assert reason_of(d, 0, TIPS) == Reason.ELIGIBLE


def test_stock_from_context(plan, names):
    assert reason_of(run(plan, names, [{}], stock={"phone_premium": 3}), 0, UPGRADE) == 0
    assert reason_of(run(plan, names, [{}], stock={"phone_premium": 0}), 0, UPGRADE) == (
        Reason.OUT_OF_STOCK
    )
    assert reason_of(run(plan, names, [{}], stock={}), 0, UPGRADE) == Reason.OUT_OF_STOCK
    aligned = np.array([0.0 if p == "phone_premium" else 5.0 for p in plan.stock_products])
    d = run(plan, names, [{}], stock=aligned)
    assert reason_of(d, 0, UPGRADE) == Reason.OUT_OF_STOCK
    assert reason_of(d, 0, BUNDLE) == Reason.ELIGIBLE  # needs no stock


def test_first_failing_rule_in_order_is_reported(plan, names):
    d = run(
        plan,
        names,
        [
            {"consent_marketing_email": 0.0, "contacts_email_7d": 5.0},
            {"contacts_email_7d": 5.0, "contacts_total_7d": 5.0},
            {"open_cases": 1.0, "days_since_complaint": 1.0},
        ],
    )
    assert reason_of(d, 0, UPGRADE) == Reason.NO_CONSENT
    assert reason_of(d, 1, UPGRADE) == Reason.CHANNEL_CAP
    assert reason_of(d, 2, BUNDLE) == Reason.CASE_OPEN


def test_off_channel_actions_are_excluded(plan, names):
    d = run(plan, names, [{}], channel="sms")
    assert reason_of(d, 0, UPGRADE) == Reason.NOT_ON_CHANNEL
    assert reason_of(d, 0, "sms_accessory_discount") == Reason.ELIGIBLE


def test_dates_bound_the_campaign(catalog, policy, names):
    actions = list(catalog.actions)
    i = catalog.ids.index(BUNDLE)
    actions[i] = actions[i].model_copy(
        update={"valid_from": NOW - timedelta(days=10), "valid_to": NOW + timedelta(days=1)}
    )
    dated = catalog.model_copy(update={"version": "t", "actions": actions})
    plan = compile_plan(dated, policy, names, ViewsModel(catalog.ids))
    assert reason_of(run(plan, names, [{}]), 0, BUNDLE) == Reason.ELIGIBLE
    rows = matrix(names, [default_row(names)])
    later = decide(rows, ["C1"], plan, ctx(now=NOW + timedelta(days=2)))
    assert reason_of(later, 0, BUNDLE) == Reason.OUT_OF_DATES
    assert reason_of(later, 0, UPGRADE) == Reason.ELIGIBLE


def test_negative_value_gives_no_action(catalog, policy, names):
    plan = compile_plan(catalog, no_random(policy), names, ViewsModel(catalog.ids))
    d = run(plan, names, [{}, {"views_30d_phones": 0.0}])
    assert d.chosen_action[0] != "no_action"
    assert d.chosen_action[1] == "no_action"
    assert reason_of(d, 1, UPGRADE) == Reason.NEGATIVE_VALUE
    rec = d.records()[1]
    assert rec["reason"] == "NEGATIVE_VALUE" and rec["ranked"] == []


def test_score_parts_and_ranking(catalog, policy, names):
    # the model default (the demo catalog itself says learned)
    catalog = catalog.model_copy(update={"value_source": "catalog"})
    model = ViewsModel(catalog.ids, value_arm=BUNDLE)
    plan = compile_plan(catalog, no_random(policy), names, model)
    d = run(plan, names, [{}])
    rec = d.records()[0]
    scores = [r["score"] for r in rec["ranked"]]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    for r in rec["ranked"]:
        expected = (r["uplift"] * r["value"] - r["cost"]) * r["lever"]
        assert r["score"] == pytest.approx(expected)
        assert r["uplift"] == pytest.approx(r["p_treated"] - r["p_control"])
    by_id = {r["action_id"]: r for r in rec["ranked"]}
    # value_source catalog: its margin, whatever the model says.
    assert by_id[BUNDLE]["value"] == catalog.action(BUNDLE).value
    assert by_id[BUNDLE]["value_source"] == "catalog"
    assert by_id[UPGRADE]["value"] == catalog.action(UPGRADE).value
    assert rec["chosen_action"] == BUNDLE


def test_shared_response_model_and_cooldown_fallback(catalog, policy, names):
    extra = catalog.action(BUNDLE).model_copy(
        update={"id": "email_bundle_spring", "name": "Spring bundle", "response_model": BUNDLE}
    )
    cat = catalog.model_copy(update={"version": "t", "actions": [*catalog.actions, extra]})
    plan = compile_plan(cat, no_random(policy), names, ViewsModel(catalog.ids))
    d = run(plan, names, [{}, {f"days_since_shown_{BUNDLE}": 1.0}])
    cols = list(plan.action_ids)
    a, b = cols.index(BUNDLE), cols.index("email_bundle_spring")
    assert d.p_treated[0, a] == d.p_treated[0, b]  # one model arm, two catalog actions
    assert reason_of(d, 1, "email_bundle_spring") == Reason.COOLDOWN


def test_model_failure_falls_back_to_no_action(catalog, policy, names):
    class Broken(ViewsModel):
        def predict_arms(self, X):
            p_c, p_t, v = super().predict_arms(X)
            p_t[X[:, 0] < 0] = np.nan  # one row unscorable
            if (X[:, 0] == 42).any():
                raise RuntimeError("boom")
            return p_c, p_t, v

    plan = compile_plan(catalog, no_random(policy), names, Broken(catalog.ids))
    d = run(plan, names, [{}, {"tenure_days": -1.0}])
    assert d.chosen_action[0] != "no_action" and d.chosen_action[1] == "no_action"
    assert d.records()[1]["reason"] == "MODEL_ERROR"
    assert reason_of(d, 1, BUNDLE) == Reason.MODEL_ERROR
    d = run(plan, names, [{"tenure_days": 42.0}])
    assert d.chosen_action[0] == "no_action" and d.records()[0]["reason"] == "MODEL_ERROR"


def test_unknown_customer_gets_no_action(plan, names):
    rows = matrix(names, [default_row(names)] * 2)
    d = decide(rows, [None, "C1"], plan, ctx())
    assert d.chosen_action[0] == "no_action"
    assert (d.codes[0] == Reason.UNKNOWN_CUSTOMER).all()
    assert d.records()[0]["reason"] == "UNKNOWN_CUSTOMER"


def test_sensitive_features_need_profiling_consent(catalog, policy, names):
    model = ViewsModel(catalog.ids)
    plan = compile_plan(catalog, policy, names, model)
    run(plan, names, [{}, {"consent_profiling_email": 0.0}])
    seen = model.seen[-1]
    age = model.feature_names.index("age")
    assert seen[0, age] == 40.0 and np.isnan(seen[1, age])


def test_holdout_share_and_never_treated(catalog, policy, names):
    n = 100_000
    ids = np.array([f"C{i:07d}" for i in range(n)], dtype=object)
    share = policy.holdout.share
    h = in_holdout(policy.holdout.salt, ids, share)
    assert abs(h.mean() - share) < 4 * np.sqrt(share * (1 - share) / n)
    assert np.array_equal(h, in_holdout(policy.holdout.salt, ids, share))  # stable
    greedy = policy.model_copy(update={"exploration": Exploration(epsilon=1.0)})
    plan = compile_plan(catalog, greedy, names, ViewsModel(catalog.ids))
    X = np.repeat(matrix(names, [default_row(names)]), 20_000, axis=0)
    d = decide(X, ids[:20_000], plan, ctx())
    assert np.array_equal(d.holdout, h[:20_000])
    assert (d.chosen_action[d.holdout] == "no_action").all()
    assert (d.ranked[d.holdout, 0] >= 0).all()  # counterfactual ranking still recorded
    assert (d.propensity[d.holdout] == 1.0).all()
    assert {r["group"] for r in d.records()[:2000]} == {"holdout", "decided"}


def test_exploration_propensities(catalog, policy, names):
    rng = np.random.default_rng(SEED)
    eps = 0.5
    pol = policy.model_copy(update={"exploration": Exploration(epsilon=eps, salt="e")})
    plan = compile_plan(catalog, pol, names, ViewsModel(catalog.ids))
    rows = [
        {
            **default_row(names),
            "views_30d_phones": float(rng.integers(0, 10)),
            "contacts_email_7d": float(rng.random() < 0.2),
        }
        for _ in range(SMALL_CUSTOMERS)
    ]
    d = decide(matrix(names, rows), [f"C{i}" for i in range(len(rows))], plan, ctx())
    probs = d.action_probabilities()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    chosen_col = np.where(d.chosen < 0, probs.shape[1] - 1, d.chosen)
    np.testing.assert_allclose(d.propensity, probs[np.arange(d.n), chosen_col])
    treat = ~d.holdout
    assert abs(d.explored[treat].mean() - eps) < 0.05
    # Explored picks are uniform over the options: their mean propensity mass matches.
    ex = d.explored & treat
    n_opt = d.explore_options[ex].sum(axis=1) + 1
    is_control = d.chosen[ex] < 0
    assert abs(is_control.mean() - (1 / n_opt).mean()) < 0.05
    # A different time bucket draws differently, the same one identically.
    again = decide(matrix(names, rows), d.customer_ids, plan, ctx())
    assert np.array_equal(again.explored, d.explored)
    other = decide(matrix(names, rows), d.customer_ids, plan, ctx(now=NOW + timedelta(days=1)))
    assert not np.array_equal(other.explored, d.explored)


def test_single_calls_equal_one_batch(catalog, policy, names):
    rng = np.random.default_rng(SECOND_SEED)
    plan = compile_plan(catalog, policy, names, ViewsModel(catalog.ids))
    rows = []
    for _ in range(300):
        r = default_row(names)
        for f in (
            "consent_marketing_email",
            "holds_phone_premium",
            "open_cases",
            "contacts_email_7d",
        ):
            r[f] = (
                float(rng.random() < 0.2)
                if f != "consent_marketing_email"
                else float(rng.random() < 0.8)
            )
        r["views_30d_phones"] = float(rng.integers(0, 10))
        r["tenure_days"] = float(rng.integers(0, 2000))
        r["days_since_complaint"] = float(rng.choice([5.0, 9999.0]))
        rows.append(r)
    X = matrix(names, rows)
    ids = [f"C{i:05d}" for i in range(len(rows))]
    batch = decide(X, ids, plan, ctx()).records(deterministic_ids=True)
    single = [
        decide(X[i : i + 1], ids[i : i + 1], plan, ctx()).records(deterministic_ids=True)[0]
        for i in range(len(rows))
    ]
    assert single == batch
    assert len({r["chosen_action"] for r in batch}) > 2


def test_records_have_versions_and_sentences(plan, names):
    d = run(plan, names, [{"consent_marketing_email": 0.0}, {"tenure_days": 10.0}])
    recs = d.records(include_off_channel=True)
    for rec in recs:
        assert rec["model_version"] == "fixture-1"
        assert rec["policy_version"] == plan.policy.version
        assert rec["catalog_version"] == plan.catalog.version
        assert datetime.fromisoformat(rec["decided_at"]).tzinfo is not None
        for ex in rec["excluded"]:
            assert ex["sentence"].endswith(".") and "unknown" not in ex["sentence"]
            assert "{" not in ex["sentence"]
    no_consent = {e["action_id"]: e for e in recs[0]["excluded"]}[UPGRADE]
    assert no_consent["sentence"] == "Customer has not consented to marketing by email."
    not_elig = {e["action_id"]: e for e in recs[1]["excluded"]}[UPGRADE]
    assert "tenure_days" in not_elig["sentence"] and "10" in not_elig["sentence"]
    cols = d.to_columns()
    assert list(cols["chosen_action"]) == [r["chosen_action"] for r in recs]
    assert d.to_arrow().num_rows == 2


def test_cached_exclusion_sentences_equal_freshly_rendered_ones(plan, names, monkeypatch):
    """Sentences come from the plan's cache after the first decision; the words must not
    change, whatever the observed value (NaN, -0.0, counts)."""
    import nextbest.decisions.outcome as outcome

    overrides = [
        {},
        {"consent_marketing_email": np.nan},
        {"consent_marketing_email": 0.0},
        {"tenure_days": 100.0},
        {"tenure_days": np.nan},
        {"open_cases": 1.0},
        {"open_cases": 2.0},
        {"days_since_complaint": 10.0},
        {"days_since_complaint": -0.0},
        {"contacts_email_7d": 1.0},
        {"contacts_total_7d": 3.0},
    ]
    first = run(plan, names, overrides).records(deterministic_ids=True)
    assert plan.sentence_cache  # filled by the first call
    cached = run(plan, names, overrides).records(deterministic_ids=True)
    monkeypatch.setattr(outcome, "_SENTENCE_CACHE_LIMIT", 0)
    plan.sentence_cache.clear()
    fresh = run(plan, names, overrides).records(deterministic_ids=True)
    assert not plan.sentence_cache
    assert [r["excluded"] for r in first] == [r["excluded"] for r in fresh]
    assert [r["excluded"] for r in cached] == [r["excluded"] for r in fresh]


def test_a_bank_channel_reads_in_the_bank_s_words() -> None:
    """The bank's catalog words its branch channel; the engine's reason sentences use it."""
    from nextbest.customers.feature_schema import all_feature_names
    from nextbest.decisions.catalog import load_catalog
    from nextbest.decisions.policy import load_policy
    from tests.worlds.bank import CONFIG_DIR

    bank = load_catalog(CONFIG_DIR / "catalog.yaml")
    pol = load_policy(CONFIG_DIR / "policy.yaml", bank.terms())
    names = all_feature_names(bank.terms())
    model = ViewsModel(bank.ids)
    model.feature_names = ["tenure_days", "value_tier", "age", "views_30d_mortgages"]
    plan = compile_plan(bank, no_random(pol), names, model)
    row = {**default_row(names), "consent_advice_branch": 0.0}
    d = decide(matrix(names, [row]), ["C0000001"], plan, ctx("branch", stock={}))
    [record] = d.records()
    excluded = {e["action_id"]: e for e in record["excluded"]}
    assert excluded["branch_mortgage_review"]["reason"] == "NO_CONSENT"
    assert excluded["branch_mortgage_review"]["sentence"] == (
        "Customer has not consented to advice in a branch."
    )
    # email, which the bank's catalog gives no phrase, reads "by email"
    row = {**default_row(names), "consent_marketing_email": 0.0}
    [record] = decide(matrix(names, [row]), ["C0000001"], plan, ctx("email", stock={})).records()
    excluded = {e["action_id"]: e for e in record["excluded"]}
    assert excluded["email_savings_offer"]["sentence"] == (
        "Customer has not consented to marketing by email."
    )


def test_quiet_hours_exclude_what_the_rules_allowed_on_those_rows_only(catalog, policy, names):
    plan = compile_plan(catalog, no_random(policy), names, ViewsModel(catalog.ids))
    quiet = np.array([True, False, True])
    d = run(plan, names, [{}, {}, {"consent_marketing_email": 0.0}], quiet=quiet)
    assert reason_of(d, 0, UPGRADE) == Reason.QUIET_HOURS
    assert reason_of(d, 0, TIPS) == Reason.QUIET_HOURS
    assert d.chosen[0] == -1 and d.records()[0]["reason"] == "NO_ELIGIBLE_ACTION"
    assert reason_of(d, 1, UPGRADE) == Reason.ELIGIBLE and d.chosen[1] >= 0
    # A rule that excludes an action first keeps its own reason.
    assert reason_of(d, 2, UPGRADE) == Reason.NO_CONSENT
    assert reason_of(d, 2, TIPS) == Reason.QUIET_HOURS
    sentence = next(e for e in d.records()[0]["excluded"] if e["action_id"] == TIPS)["sentence"]
    assert sentence == "Nothing is sent by email during the customer's quiet hours (local time)."
