"""The /decide context model is the policy's allow-list: bounded values, no personal data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from nextbest.decisions.catalog import ConfigError
from nextbest.decisions.context_schema import context_dict, context_model
from nextbest.decisions.policy import load_policy
from tests.unit.decisions.conftest import ROOT


def _model(tmp_path: Path, context: dict) -> type:
    data = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
    data["context"] = context
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return context_model(load_policy(path))


ALLOWED = {
    "placement": {"type": "string", "max_length": 16},
    "tier": {"type": "string", "enum": ["gold", "silver"]},
    "basket": {"type": "number", "minimum": 0, "maximum": 1000},
    "visits": {"type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_992},
    "returning": {"type": "boolean"},
}


def test_allowed_keys_with_valid_values_pass_and_only_sent_keys_are_kept(tmp_path: Path) -> None:
    m = _model(tmp_path, ALLOWED)
    ctx = m.model_validate_json(b'{"placement": "home", "basket": 12.5, "returning": true}')
    assert context_dict(ctx) == {"placement": "home", "basket": 12.5, "returning": True}
    assert context_dict(m()) == {}


@pytest.mark.parametrize(
    ("body", "field", "kind"),
    [
        (b'{"email": "x"}', "email", "extra_forbidden"),
        (b'{"placement": "' + b"h" * 17 + b'"}', "placement", "string_too_long"),
        (b'{"tier": "bronze"}', "tier", "literal_error"),
        (b'{"basket": 1e20}', "basket", "less_than_equal"),
        (b'{"basket": NaN}', "basket", "finite_number"),
        (b'{"basket": "12"}', "basket", "float_type"),
        (b'{"visits": 99999999999999999999999}', "visits", "less_than_equal"),
        (b'{"returning": "yes"}', "returning", "bool_type"),
        (b'{"placement": "ann.lee@example.com"}', "placement", "value_error"),
        (b'{"placement": "+44 20 7946 0958"}', "placement", "value_error"),
    ],
)
def test_anything_else_is_refused_naming_the_key_without_the_value(
    tmp_path: Path, body: bytes, field: str, kind: str
) -> None:
    m = _model(tmp_path, ALLOWED)
    with pytest.raises(ValidationError) as err:
        m.model_validate_json(body)
    (e,) = err.value.errors()
    assert e["loc"] == (field,) and e["type"] == kind
    assert "example.com" not in str(err.value) and "7946" not in str(err.value)


def test_the_default_policy_allows_what_the_engine_reads(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "config" / "policy.yaml")
    assert "placement" in policy.context
    schema = context_model(policy).model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["placement"]["anyOf"][0]["maxLength"] == 64


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"Bad Key": {"type": "boolean"}}, "Bad Key"),
        ({"n": {"type": "number", "minimum": 5, "maximum": 1}}, "context.n: field 'minimum'"),
        ({"n": {"type": "object"}}, "context"),
        ({"n": {"type": "integer", "maximum": 2**60}}, "context"),
    ],
)
def test_a_bad_context_section_fails_naming_the_key(
    tmp_path: Path, context: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _model(tmp_path, context)


def test_a_stock_key_is_a_bounded_map_of_units_and_needs_the_override_switch(
    tmp_path: Path,
) -> None:
    m = _model(tmp_path, {"stock": {"type": "stock", "max_products": 2}})
    assert context_dict(m.model_validate_json(b'{"stock": {"card": 0, "loan": 2.5}}')) == {
        "stock": {"card": 0.0, "loan": 2.5}
    }
    for bad in (b'{"stock": {"card": -1}}', b'{"stock": {"a": 1, "b": 1, "c": 1}}'):
        with pytest.raises(ValidationError):
            m.model_validate_json(bad)
    data = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
    data["suppression"]["context_stock"] = False
    path = tmp_path / "off.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="context.stock is of type stock but"):
        load_policy(path)
