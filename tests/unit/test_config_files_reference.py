"""The configuration reference is current, and its JSON Schemas accept what the loaders
accept and refuse what they refuse."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from devtools.config_reference import FILES, OUT, ROOT, json_schema, main, render, stale
from nextbest.decisions.catalog import ConfigError, load_catalog
from nextbest.decisions.policy import load_policy

SCHEMAS = {cf.name: json_schema(cf) for cf in FILES}


def test_the_written_reference_is_current():
    old = stale()
    assert not old, f"not current: {old}; run: python -m devtools.config_reference"


def test_check_mode_names_a_stale_file_and_writes_nothing(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--out", str(tmp_path), "--check"]) == 0
    page = tmp_path / "policy.md"
    page.write_text(page.read_text().replace("complaint", "grievance"))
    assert main(["--out", str(tmp_path), "--check"]) == 1
    assert "policy.md" in capsys.readouterr().err
    assert "grievance" in page.read_text()  # --check wrote nothing


@pytest.mark.parametrize("cf", FILES, ids=[cf.name for cf in FILES])
def test_every_field_has_a_type_default_meaning_and_example(cf):
    """Every field has a row with its type, default, meaning and example: a new field
    without a ``description`` or ``examples`` (and no value in the shipped files) fails."""
    page = render()[f"{cf.name}.md"]
    schema = SCHEMAS[cf.name]
    sections = {"Top level": schema, **schema.get("$defs", {})}
    for title, node in sections.items():
        heading = f"## {title}"
        assert heading in page, heading
        body = page.split(heading, 1)[1].split("\n## ", 1)[0]
        for field in node.get("properties", {}):
            row = next(line for line in body.splitlines() if line.startswith(f"| `{field}` |"))
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
            assert len(cells) == 5 and all(cells[:3]), row
            if field != "margin":  # margin: the alias of value
                assert cells[3] and cells[4] != "-", (
                    f"{row}: give the Field a description and examples"
                )


@pytest.mark.parametrize(("name", "rel"), [(cf.name, rel) for cf in FILES for rel in cf.examples])
def test_the_shipped_files_pass_their_json_schema(name, rel):
    Draft202012Validator.check_schema(SCHEMAS[name])
    doc = yaml.safe_load((ROOT / rel).read_text())
    errors = [e.message for e in Draft202012Validator(SCHEMAS[name]).iter_errors(doc)]
    assert errors == []


def _bank_catalog() -> dict:
    return yaml.safe_load((ROOT / "tests/worlds/bank/catalog.yaml").read_text())


def _edit(doc: dict, path: str, value) -> dict:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


# (edit, accepted by the loader) on the bank's catalog
CATALOG_CASES = {
    "upper-case id": ("actions.0.id", "EMAIL_SAVINGS-OFFER", True),
    "id with a slash": ("actions.0.id", "EMAIL/SAVINGS", False),
    "numeric version": ("version", 2026.1, True),
    "negative channel cost": ("actions.2.cost_by_channel", {"branch": -1.0}, False),
    "channel cost": ("actions.2.cost_by_channel", {"branch": 9.5}, True),
    "unknown field": ("actions.0.colour", "red", False),
    "upper-case channel": ("channels.0", "EMAIL", False),
    "all channels consent": ("consent_scope", {"profiling": "all_channels"}, True),
    "unknown consent scope": ("consent_scope", {"profiling": "sometimes"}, False),
    "no holding suppresses": ("actions.2.suppress_if_holds", [], True),
    "margin instead of value": (
        "actions.3",
        {
            "id": "email_metal_card",
            "name": "Metal",
            "channels": ["email"],
            "purpose": "marketing",
            "kind": "upsell",
            "product": "metal_card",
            "margin": 150.0,
        },
        True,
    ),
    "no value": (
        "actions.3",
        {
            "id": "email_metal_card",
            "name": "Metal",
            "channels": ["email"],
            "purpose": "marketing",
            "kind": "upsell",
            "product": "metal_card",
        },
        False,
    ),
}


@pytest.mark.parametrize("case", list(CATALOG_CASES))
def test_the_catalog_schema_agrees_with_the_loader(case, tmp_path):
    path, value, accepted = CATALOG_CASES[case]
    doc = _edit(_bank_catalog(), path, value)
    schema_ok = Draft202012Validator(SCHEMAS["catalog"]).is_valid(doc)
    f = tmp_path / "catalog.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        load_catalog(f)
        loader_ok = True
    except ConfigError:
        loader_ok = False
    assert (schema_ok, loader_ok) == (accepted, accepted)


POLICY_CASES = {
    "complaint rule by action": ("complaint_block.actions", {"SMS_CARD_UPGRADE": 90}, True),
    "complaint days 0": ("complaint_block.actions", {"SMS_CARD_UPGRADE": 0}, False),
    "case rule by action": ("case_pause.actions", ["Branch-Mortgage-Review"], True),
    "holdout share 1": ("holdout.share", 1.0, False),
    "context key with a capital": ("context", {"Page": {"type": "string"}}, False),
    "unknown context type": ("context", {"page": {"type": "colour"}}, False),
}


@pytest.mark.parametrize("case", list(POLICY_CASES))
def test_the_policy_schema_agrees_with_the_loader(case, tmp_path):
    path, value, accepted = POLICY_CASES[case]
    base = yaml.safe_load((ROOT / "tests/worlds/bank/policy.yaml").read_text())
    doc = _edit(base, path, value)
    schema_ok = Draft202012Validator(SCHEMAS["policy"]).is_valid(doc)
    f = tmp_path / "policy.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    catalog = load_catalog(ROOT / "tests/worlds/bank/catalog.yaml")
    try:
        load_policy(f, catalog.terms())
        loader_ok = True
    except ConfigError:
        loader_ok = False
    assert (schema_ok, loader_ok) == (accepted, accepted)


def test_the_sources_schema_knows_the_contract_tables_and_columns():
    doc = yaml.safe_load((ROOT / "tests/worlds/bank/sources.yaml").read_text())
    v = Draft202012Validator(SCHEMAS["sources"])
    assert v.is_valid(doc)
    bad_table = copy.deepcopy(doc)
    bad_table["tables"]["loyalty_cards"] = []
    assert not v.is_valid(bad_table)
    bad_column = copy.deepcopy(doc)
    bad_column["tables"]["orders"][0]["columns"]["colour"] = "Colour"
    assert not v.is_valid(bad_column)


def test_the_guide_links_the_reference():
    guide = (ROOT / "docs" / "bring-your-own-data.md").read_text()
    for name in (
        "reference/README.md",
        "reference/catalog.md",
        "reference/policy.md",
        "reference/sources.md",
    ):
        assert f"]({name})" in guide, name
        assert (ROOT / "docs" / name).exists()
    written = json.loads((OUT / "schema" / "catalog.schema.json").read_text())
    assert written == SCHEMAS["catalog"]
    assert Path(OUT / "README.md").read_text() == render()["README.md"]
