"""Which value per response the engine uses, by the catalog's value_source, and that every
ranked action and record says which one it was."""

from __future__ import annotations

import numpy as np
import pytest

from nextbest.decisions.catalog import Catalog, ConfigError, load_catalog
from nextbest.decisions.engine import decide
from nextbest.decisions.rules import compile_plan
from serving.responses import response_from_record
from tests.unit.decisions.conftest import ViewsModel, ctx, default_row, matrix

BUNDLE = "email_broadband_bundle"
UPGRADE = "email_phone_upgrade"
LEARNED = 1000.0  # ViewsModel's value for its value arm


def _with(catalog: Catalog, top: str | None = None, **bundle: object) -> Catalog:
    actions = [a.model_copy(update=bundle) if a.id == BUNDLE else a for a in catalog.actions]
    update: dict[str, object] = {"actions": actions}
    if top is not None:
        update["value_source"] = top
    return Catalog.model_validate({**catalog.model_dump(), **update})


def _bundle(catalog: Catalog, policy, names, cat: Catalog) -> dict:
    from tests.unit.decisions.test_engine import no_random

    plan = compile_plan(cat, no_random(policy), names, ViewsModel(cat.ids, value_arm=BUNDLE))
    rec = decide(matrix(names, [default_row(names)]), ["C1"], plan, ctx()).records()[0]
    return {r["action_id"]: r for r in rec["ranked"]} | {"_record": rec}


@pytest.mark.parametrize(
    ("rule", "rate", "value", "source"),
    [
        ("catalog", None, None, "catalog"),
        ("learned", None, LEARNED, "learned"),
        ("learned_x_margin_rate", 0.1, LEARNED * 0.1, "learned_x_margin_rate"),
        ("min", None, None, "catalog"),  # catalog value < 1000
        ("min", 0.01, LEARNED * 0.01, "learned_x_margin_rate"),  # 10 < catalog value
    ],
)
def test_each_rule_gives_its_value_and_says_so(catalog, policy, names, rule, rate, value, source):
    cat = _with(catalog, value_source=rule, margin_rate=rate)
    by_id = _bundle(catalog, policy, names, cat)
    expected = catalog.action(BUNDLE).value if value is None else value
    assert by_id[BUNDLE]["value"] == pytest.approx(expected)
    assert by_id[BUNDLE]["value_source"] == source
    # The model has no value for the other arms: the catalog's, whatever the rule.
    assert by_id[UPGRADE]["value_source"] == "catalog"
    assert by_id[UPGRADE]["value"] == catalog.action(UPGRADE).value
    r = by_id[BUNDLE]
    assert r["score"] == pytest.approx((r["uplift"] * r["value"] - r["cost"]) * r["lever"])


def test_the_answer_and_log_record_carry_the_chosen_value_source(catalog, policy, names):
    by_id = _bundle(catalog, policy, names, _with(catalog, top="learned"))
    rec = by_id["_record"]
    assert rec["chosen_action"] == BUNDLE  # 1000 per response outranks every margin
    assert rec["value_source"] == "learned"
    answer = response_from_record(rec)
    assert answer["value_source"] == "learned"
    assert {a["value_source"] for a in answer["actions"]} == {"learned", "catalog"}
    assert "learned value" in answer["actions"][0]["reasons"][0]


def test_learned_x_margin_rate_without_a_rate_is_refused(tmp_path):
    from tests.unit.decisions.conftest import ROOT

    text = (ROOT / "config" / "catalog.yaml").read_text()
    bad = tmp_path / "catalog.yaml"
    bad.write_text(
        text.replace("value_source: learned\n", "value_source: learned_x_margin_rate\n", 1)
    )
    with pytest.raises(ConfigError, match="margin_rate"):
        load_catalog(bad)


def test_no_learned_figure_falls_back_to_the_catalog_margin(catalog, policy, names):
    from nextbest.decisions.engine import response_value

    cat = _with(catalog, top="learned")
    plan = compile_plan(cat, policy, names, ViewsModel(cat.ids))
    cp = plan.channels["email"]
    learned = np.array([[np.nan] * len(cp.value), [-1.0] * len(cp.value), [5.0] * len(cp.value)])
    value, source = response_value(learned, cp)
    assert np.array_equal(value[:2], np.vstack([cp.value, cp.value]))
    assert (source[:2] == 0).all() and (value[2] == 5.0).all() and (source[2] == 1).all()
