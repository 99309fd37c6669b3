"""The API page at ``/`` (and ``/docs``): the served OpenAPI document rendered on the
server as one HTML page (Jinja2) with no script and nothing loaded from elsewhere.

Every operation shows its scope, its request fields, its examples and each answer with
its fields: the typed schemas of ``/decide`` and ``/events`` (``serving/response_models.py``)
read as tables of field, type and meaning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from serving.templating import templates

_METHODS = ("get", "post", "put", "delete", "patch")
#: Nested objects are shown to this depth (deeper ones read as their type's name).
_MAX_DEPTH = 3


@dataclass(frozen=True)
class FieldRow:
    """One field of a schema as the page lists it."""

    name: str
    type: str
    required: bool
    description: str
    depth: int


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A schema with its ``$ref`` followed, and the referenced model's name ("" if none)."""
    ref = schema.get("$ref")
    if not ref:
        return schema, ""
    name = ref.rsplit("/", 1)[-1]
    return spec.get("components", {}).get("schemas", {}).get(name, {}), name


def type_name(schema: dict[str, Any], spec: dict[str, Any]) -> str:
    """How a schema's type reads: ``string``, ``array of RankedAction``, ``one of a | b``."""
    target, name = _resolve(schema, spec)
    if name:
        return name
    if "enum" in target:
        return "one of " + ", ".join(json.dumps(v) for v in target["enum"])
    if "const" in target:
        return json.dumps(target["const"])
    for key in ("anyOf", "oneOf"):
        if key in target:
            parts = [type_name(s, spec) for s in target[key]]
            return " or ".join(p for p in parts if p != "null") + (
                " (or null)" if "null" in parts else ""
            )
    kind = target.get("type", "object")
    if kind == "array":
        return f"array of {type_name(target.get('items', {}), spec)}"
    return str(kind)


def field_rows(schema: dict[str, Any], spec: dict[str, Any], depth: int = 0) -> list[FieldRow]:
    """The fields of an object schema, nested objects (and arrays of them) indented."""
    target, _ = _resolve(schema, spec)
    rows: list[FieldRow] = []
    required = set(target.get("required", ()))
    for name, prop in target.get("properties", {}).items():
        resolved, _ = _resolve(prop, spec)
        description = prop.get("description") or resolved.get("description") or ""
        rows.append(
            FieldRow(name, type_name(prop, spec), name in required, description.strip(), depth)
        )
        inner = _inner_object(prop, spec)
        if inner is not None and depth + 1 < _MAX_DEPTH:
            rows.extend(field_rows(inner, spec, depth + 1))
    return rows


def _inner_object(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a field holds (itself, its array's items, or its one non-null
    branch), or None."""
    target, _ = _resolve(schema, spec)
    if target.get("type") == "array":
        target, _ = _resolve(target.get("items", {}), spec)
    branches = [s for s in target.get("anyOf", ()) if s.get("type") != "null"]
    if len(branches) == 1:
        target, _ = _resolve(branches[0], spec)
    return target if target.get("properties") else None


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation of the spec with what the page shows of it."""
    out = []
    for path, item in spec.get("paths", {}).items():
        for method in _METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            answers = []
            for status, answer in sorted(op.get("responses", {}).items()):
                content = answer.get("content", {})
                schema = next(iter(content.values()), {}).get("schema")
                answers.append(
                    {
                        "status": status,
                        "description": answer.get("description", ""),
                        "type": type_name(schema, spec) if schema else "",
                        "fields": field_rows(schema, spec) if schema and status == "200" else [],
                    }
                )
            out.append(
                {
                    "id": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary") or "",
                    "description": op.get("description") or "",
                    "public": op.get("security") == [],
                    "request": field_rows(body["schema"], spec) if "schema" in body else [],
                    "examples": [
                        (name, ex.get("summary", ""), json.dumps(ex.get("value"), indent=2))
                        for name, ex in body.get("examples", {}).items()
                    ],
                    "answers": answers,
                }
            )
    return out


#: The operations a reader looks for first; the rest (health, metrics) follow.
_FIRST = ("/decide", "/events", "/actions", "/customers/{customer_id}/consent", "/admin/forget")
_TAG = re.compile(r"<[^>]+>")


def render_api_page(spec: dict[str, Any]) -> str:
    """The HTML of the API page for ``spec`` (the served ``/docs.json``): the product's
    operations first; the framework's HTML in descriptions read as text."""
    ops = operations(spec)
    ops.sort(key=lambda op: _FIRST.index(op["path"]) if op["path"] in _FIRST else len(_FIRST))
    for op in ops:
        op["description"] = _TAG.sub("", op["description"])
    page = templates().get_template("api.html")
    return page.render(info=spec.get("info", {}), operations=ops)
