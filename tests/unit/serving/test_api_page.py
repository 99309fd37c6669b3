"""The API page rendered from a spec: nextbest's operations first, typed answers as field
tables, no script, values escaped."""

from __future__ import annotations

from serving.api_page import render_api_page
from serving.openapi import document_spec


def _spec() -> dict:
    return {
        "openapi": "3.0.2",
        "info": {"title": "BentoML Prediction Service", "version": "None"},
        "paths": {
            "/healthz": {"get": {"description": "<b>stock</b> text", "responses": {}}},
            "/decide": {"post": {"responses": {"200": {"description": "ok"}}}},
            "/events": {"post": {"requestBody": {"content": {}}, "responses": {}}},
        },
        "components": {"schemas": {}},
    }


def test_the_page_is_nextbests_with_typed_answers_and_no_script() -> None:
    spec = document_spec(_spec())
    assert spec["info"]["title"] == "nextbest decision service"
    html = render_api_page(spec)
    assert "BentoML Prediction Service" not in html and "<script" not in html
    assert html.index("/decide") < html.index("/healthz")  # the product's operations first
    assert 'data-schema="DecideResponse"' in html and "report_delivery" in html
    assert "<b>stock</b>" not in html and "stock text" in html


def test_values_in_the_spec_are_escaped() -> None:
    spec = document_spec(_spec())
    spec["paths"]["/decide"]["post"]["summary"] = "<script>alert(1)</script>"
    html = render_api_page(spec)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
