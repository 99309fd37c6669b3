"""The event table: what each event type changes, resolved against the feature schema."""

from __future__ import annotations

import dataclasses

import pytest

from core.vocabulary import CHANNELS
from customers.feature_schema import WINDOWS, view_specs
from serving.events import event_table
from serving.requests import EVENT_TYPES
from tests.conftest import demo_terms


def _columns(event_type: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """View -> filled-in pattern -> columns, for one event type."""
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for spec, changes in event_table(view_specs(demo_terms()))[event_type]:
        for c in changes:
            out.setdefault(spec.name, {}).update(c.columns)
    return out


def test_every_event_type_updates_pushable_views_by_schema_columns() -> None:
    specs = {v.name: v for v in view_specs(demo_terms())}
    table = event_table(view_specs(demo_terms()))
    assert set(table) == set(EVENT_TYPES)
    for steps in table.values():
        for spec, changes in steps:
            assert specs[spec.name].pushable
            for c in changes:
                for cols in c.columns.values():
                    assert set(cols) <= set(spec.feature_names)


def test_windowed_changes_cover_every_window_the_schema_has() -> None:
    txn = _columns("purchase")["customer_transactions"]
    assert txn["txn_count_*d"] == tuple(f"txn_count_{w}d" for w in WINDOWS)
    contacts = _columns("contact")["customer_contacts"]
    for ch in CHANNELS:
        assert contacts[f"contacts_{ch}_*d"] == (f"contacts_{ch}_7d", f"contacts_{ch}_30d")


def test_a_rule_on_a_view_that_is_not_pushable_fails_at_start_up() -> None:
    specs = tuple(
        dataclasses.replace(v, pushable=False) if v.name == "customer_service" else v
        for v in view_specs(demo_terms())
    )
    with pytest.raises(ValueError, match="customer_service, which is not pushable"):
        event_table(specs)
