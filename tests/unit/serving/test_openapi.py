"""The served spec declares every error answer from one table, with the one Error body."""

from __future__ import annotations

from pydantic import BaseModel

from serving.openapi import ERROR_RESPONSES, ERROR_SCHEMA, document_spec


class _Input(BaseModel):
    when: str | float | None = None


def _spec() -> dict:
    invalid = {"description": "Bad Request", "content": {"application/json": {"schema": {}}}}
    return {
        "openapi": "3.0.2",
        "paths": {
            "/decide": {"post": {"responses": {200: {"description": "ok"}, 400: invalid}}},
            "/events": {"post": {"requestBody": {"content": {}}, "responses": {}}},
            "/customers/{customer_id}/consent": {
                "get": {"responses": {"422": {"description": "Validation Error"}}}
            },
            "/readyz": {"get": {"responses": {"200": {"description": "ok"}}}},
        },
        "components": {"schemas": {}},
    }


def test_every_operation_gets_the_table_rows_with_the_error_schema() -> None:
    original = _spec()
    out = document_spec(original, {"/events": _Input})
    assert out["components"]["schemas"]["Error"] == ERROR_SCHEMA
    for path, item in out["paths"].items():
        for method, op in item.items():
            rows = {**ERROR_RESPONSES[("*", "*")], **ERROR_RESPONSES.get((method, path), {})}
            assert all(isinstance(k, str) for k in op["responses"])
            for status, answer in rows.items():
                declared = op["responses"][str(status)]
                assert declared["description"] == answer.description
                ref = declared["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/Error"
    decide = out["paths"]["/decide"]["post"]["responses"]
    # the 200 answer is the typed DecideResponse (serving/response_models.py)
    assert decide["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/DecideResponse"
    }
    assert "413" in decide and "415" in decide
    answer = out["components"]["schemas"]["DecideResponse"]
    assert {"decision_id", "actions", "excluded", "mode"} <= set(answer["properties"])
    assert out["info"]["title"] == "nextbest decision service"
    assert out["info"]["version"] not in ("None", "", None)
    consent = out["paths"]["/customers/{customer_id}/consent"]["get"]["responses"]
    assert consent["422"] == {"description": "Validation Error"}  # FastAPI's own, kept
    assert set(consent["404"]["content"]) == {"application/json", "text/plain"}
    # the request body is the input model's own schema (every branch of a union kept)
    body = out["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]
    kinds = [b.get("type") for b in body["schema"]["properties"]["when"]["anyOf"]]
    assert kinds == ["string", "number", "null"]
    assert original == _spec()  # the input is not changed
