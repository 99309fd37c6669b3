"""The configuration reference, written from the schemas in code.

Every configuration file nextbest reads is a pydantic model: the catalog
(:class:`nextbest.decisions.catalog.Catalog`), the policy
(:class:`nextbest.decisions.policy.Policy`), the sources file
(:class:`nextbest.customers.sources.files.SourcesFile`) and the trigger file
(:class:`nextbest.decisions.triggers.TriggerFile`). This script turns each model into a JSON
Schema (``docs/reference/schema/<file>.schema.json``, for editors that validate YAML) and a page
listing every field with its type, default, meaning and an example (``docs/reference/<file>.md``).
Nothing is written by hand: a field's meaning is its ``description``, its example its ``examples``
or else the first value the shipped files give it (``config/``, ``nextbest/demo/sources.yaml``,
``tests/worlds/bank/``).

    python -m devtools.config_reference            # write docs/reference/
    python -m devtools.config_reference --check    # exit 1 naming the files not current

``tests/unit/test_config_files_reference.py`` fails when the written files are not
what this script writes, so a changed schema is a changed reference in the same commit.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "reference"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class ConfigFile:
    """One kind of configuration file: its model, its page and the files it is shown by."""

    name: str
    title: str
    model: str  # "module:Class"
    intro: str
    examples: tuple[str, ...]  # shipped files (relative to the repository root)

    def model_class(self) -> type[BaseModel]:
        module, _, cls = self.model.partition(":")
        return getattr(__import__(module, fromlist=[cls]), cls)


FILES: tuple[ConfigFile, ...] = (
    ConfigFile(
        "catalog",
        "Action catalog",
        "nextbest.decisions.catalog:Catalog",
        "Every action the decision engine may choose, and the channels, purposes, "
        "categories and products they are declared against. Set with `NEXTBEST_CATALOG` "
        "(default `config/catalog.yaml`). Feature columns, contract values and the "
        "service's API enums are derived from it.",
        ("config/catalog.yaml", "tests/worlds/bank/catalog.yaml"),
    ),
    ConfigFile(
        "policy",
        "Contact policy",
        "nextbest.decisions.policy:Policy",
        "Consent, contact caps, case pauses, complaint blocks, suppression, holdout, "
        "exploration, the modelling consent and the request context the service accepts. "
        "Set with `NEXTBEST_POLICY` (default `config/policy.yaml`). Every channel, purpose "
        "and action it names must be the catalog's.",
        ("config/policy.yaml", "tests/worlds/bank/policy.yaml"),
    ),
    ConfigFile(
        "sources",
        "Sources file",
        "nextbest.customers.sources.schema:SourcesFile",
        "Where a team's exports are and how their columns map onto the source contract "
        "(`--sources` or `NEXTBEST_SOURCES`; docs/bring-your-own-data.md walks through "
        "one, and [its source contract](../bring-your-own-data.md#the-source-contract) "
        "lists every table and column). Paths are relative to the sources file.",
        ("nextbest/demo/sources.yaml", "tests/worlds/bank/sources.yaml"),
    ),
    ConfigFile(
        "triggers",
        "Trigger file",
        "nextbest.decisions.triggers:TriggerFile",
        "Triggers and journeys: decisions started by a customer's events or an inactivity "
        "scan, decided at send time and delivered through the outbox (docs/triggers.md). Set "
        "with `NEXTBEST_TRIGGERS_FILE` (default `config/triggers.yaml`). Channels and purposes "
        "must be the catalog's, event types those /events accepts, features the service's.",
        ("config/triggers.yaml",),
    ),
)


# --- JSON Schema --------------------------------------------------------------------------


def json_schema(cf: ConfigFile) -> dict[str, Any]:
    """The JSON Schema of one configuration file, from its model (validation mode)."""
    schema = cf.model_class().model_json_schema(mode="validation")
    _close_pattern_maps(schema)
    if cf.name == "sources":
        _sources_tables(schema)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": f"nextbest {cf.name} file", **schema}


def _close_pattern_maps(node: Any) -> None:
    """A mapping whose keys are constrained (``patternProperties``) refuses other keys, as
    the model does."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            _close_pattern_maps(v)
    elif isinstance(node, list):
        for v in node:
            _close_pattern_maps(v)


def _sources_tables(schema: dict[str, Any]) -> None:
    """Name the contract's tables and, per table, its columns (the model checks both in a
    validator, which JSON Schema cannot see); left as it is if the shape differs."""
    from nextbest.customers.contract import TABLES

    tables = schema.get("properties", {}).get("tables", {})
    entry = tables.get("additionalProperties")
    if not (isinstance(entry, dict) and entry.get("type") == "array"):
        return
    props = {}
    for name, model in TABLES.items():
        cols = sorted(set(model.to_schema().columns) | {"record_id"})
        props[name] = {
            "type": "array",
            "items": {
                "allOf": [
                    entry["items"],
                    {"properties": {"columns": {"propertyNames": {"enum": cols}}}},
                ]
            },
        }
    tables["properties"] = props
    tables["additionalProperties"] = False


# --- defaults and examples ----------------------------------------------------------------


def _models(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model reachable from ``model``'s fields, by class name (the schema's $defs)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ in found:
                return
            found[tp.__name__] = tp
            for f in tp.model_fields.values():
                visit(f.annotation)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    visit(model)
    return found


def _defaults(model: type[BaseModel]) -> dict[tuple[str, str], Any]:
    """(model name, field) -> default value, ``...`` for required fields."""
    out: dict[tuple[str, str], Any] = {}
    for name, m in _models(model).items():
        for fname, f in m.model_fields.items():
            key = f.validation_alias if isinstance(f.validation_alias, str) else fname
            out[(name, key)] = ... if f.is_required() else f.get_default(call_default_factory=True)
    return out


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        return name, defs.get(name, {})
    return None, node


def _collect(node: Any, value: Any, defs: dict[str, Any], owner: str | None, found: dict) -> None:
    """Walk a YAML value alongside its schema, keeping the first value of each field."""
    if not isinstance(node, dict):
        return
    name, node = _resolve(node, defs)
    owner = name or owner
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, []):
            _collect(branch, value, defs, owner, found)
    if isinstance(value, dict) and "properties" in node:
        props = node["properties"]
        consts = {k: p["const"] for k, p in props.items() if isinstance(p, dict) and "const" in p}
        if any(value.get(k) != c for k, c in consts.items()):
            return  # another branch of a discriminated union
        for k, v in value.items():
            if k in props:
                found.setdefault((owner, k), v)
                _collect(props[k], v, defs, owner, found)
    elif isinstance(value, dict):
        for sub in _map_values(node):
            for v in value.values():
                _collect(sub, v, defs, owner, found)
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for v in value:
            _collect(node["items"], v, defs, owner, found)


def _map_values(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield extra
    yield from node.get("patternProperties", {}).values()


def _file_examples(cf: ConfigFile, schema: dict[str, Any]) -> dict[tuple[str, str], Any]:
    root = cf.model_class().__name__
    found: dict[tuple[str, str], Any] = {}
    for rel in cf.examples:
        doc = yaml.safe_load((ROOT / rel).read_text(encoding="utf-8"))
        _collect({**schema, "$defs": {}}, doc, schema.get("$defs", {}), root, found)
    return found


# --- rendering ----------------------------------------------------------------------------


def _flow(value: Any) -> str:
    """``value`` as one line of YAML (flow style)."""
    if (
        isinstance(value, str)
        and value
        and value.strip() == value
        and not any(c in value for c in ":#{}[],&*!|>'\"%@`")
    ):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _short(value: Any, limit: int = 90) -> str:
    """``value`` as one line of YAML, its lists and mappings cut to fit ``limit``."""
    text = _flow(value)
    if len(text) <= limit:
        return text
    if isinstance(value, list) and value:
        first = _short(value[0], max(limit - 7, 20))
        return f"[{first}, ...]" if len(value) > 1 else f"[{first}]"
    if isinstance(value, dict) and value:
        keep: dict[str, Any] = {}
        for k, v in value.items():
            if len(_flow({**keep, k: v})) > limit - 6:
                break
            keep[k] = v
        if keep:
            return _flow(keep).removesuffix("}") + ", ...}"
        k, v = next(iter(value.items()))
        inner = _short(v, max(limit - len(str(k)) - 9, 20))
        return f"{{{_flow(k)}: {inner}" + (", ...}" if len(value) > 1 else "}")
    return text


_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr):`([^`]+)`")
_DOUBLE = re.compile(r"``([^`]+)``")


def _cell(text: str) -> str:
    """One table cell: one line, docstring markup as Markdown, pipes escaped."""
    text = _DOUBLE.sub(r"`\1`", _ROLE.sub(r"`\1`", text))
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"``{text}``"


def _anchor(name: str) -> str:
    return name.lower()


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """A field's type in words, with its constraints; links to the sections of models."""
    name, resolved = _resolve(node, defs)
    if name is not None:
        return f"[{name}](#{_anchor(name)})"
    node = resolved
    for key in ("anyOf", "oneOf"):
        if key in node:
            parts = [b for b in node[key] if b.get("type") != "null"]
            return " or ".join(_type(b, defs) for b in parts)
    if "allOf" in node:
        # refinements beside a model (a table's own columns) are the model's, narrowed
        return " and ".join(_type(b, defs) for b in node["allOf"] if "$ref" in b) or "mapping"
    if "const" in node:
        return _code(_flow(node["const"]))
    if "enum" in node:
        return "one of " + ", ".join(_code(_flow(v)) for v in node["enum"])
    kind = node.get("type")
    if kind == "string":
        if node.get("format") == "date-time":
            return "date and time (ISO 8601)"
        out = "text"
        limits = []
        if "pattern" in node:
            limits.append(f"matching {_code(node['pattern'])}")
        if node.get("minLength") == 1:
            out = "non-empty text"
        elif node.get("minLength", 0) > 1:
            limits.append(f"at least {node['minLength']} characters")
        if "maxLength" in node:
            limits.append(f"at most {node['maxLength']} characters")
        return out + (" " + ", ".join(limits) if limits else "")
    if kind in ("number", "integer"):
        out = "number" if kind == "number" else "whole number"
        bounds = [
            f"{sym} {_flow(node[key])}"
            for key, sym in (
                ("minimum", ">="),
                ("exclusiveMinimum", ">"),
                ("maximum", "<="),
                ("exclusiveMaximum", "<"),
            )
            if key in node
        ]
        return out + (" " + ", ".join(bounds) if bounds else "")
    if kind == "boolean":
        return "true or false"
    if kind == "array":
        out = "list of " + _type(node.get("items", {}), defs)
        if node.get("minItems"):
            out += f" (at least {node['minItems']})"
        return out
    if kind == "object":
        named = node.get("properties", {})
        if named and node.get("additionalProperties") is False:
            kinds = {_type(v, defs) for v in named.values()}
            keys = ", ".join(_code(k) for k in named)
            if len(kinds) == 1:
                return f"mapping of one of {keys} to {kinds.pop()}"
            return f"mapping of {keys}"
        values = list(_map_values(node))
        if values:
            keys = node.get("patternProperties", {})
            key = f"key matching {_code(next(iter(keys)))}" if keys else "text"
            return f"mapping of {key} to {_type(values[0], defs)}"
        return "mapping"
    if "anyOf" not in node and not kind:
        return "any"
    return str(kind)


def _default(value: Any) -> str:
    if value is ...:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        return "see its section"
    return _code(_short(value))


def _example(owner: str, field: str, prop: dict[str, Any], found: dict, default: Any) -> str:
    """The field's own example, else the first value a shipped file gives it, else a
    value its type allows (the last of an enum, a constant, a non-empty default)."""
    if prop.get("examples"):
        return _code(_short(prop["examples"][0]))
    if (owner, field) in found:
        return _code(_short(found[(owner, field)]))
    if "const" in prop:
        return _code(_flow(prop["const"]))
    enum = prop.get("enum") or next((b["enum"] for b in prop.get("anyOf", []) if "enum" in b), None)
    if enum:
        return _code(_flow(enum[-1]))
    if default not in (..., None, "") and not isinstance(default, BaseModel):
        return _code(_short(_plain(default)))
    return "-"


def _plain(value: Any) -> Any:
    """Defaults in the types YAML writes (tuples as lists, models as mappings)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _meaning(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A field's description, else that of the model it holds."""
    if prop.get("description"):
        return prop["description"]
    for node in (prop, *prop.get("anyOf", [])):
        name, resolved = _resolve(node, defs)
        if name is not None and resolved.get("description"):
            return resolved["description"]
    return ""


def _order(root: str, schema: dict[str, Any]) -> list[str]:
    """Sections in the order a reader meets them: depth-first from the top level."""
    defs = schema.get("$defs", {})
    seen: list[str] = [root]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                yield ref.removeprefix("#/$defs/")
            for k, v in node.items():
                if k != "$defs":
                    yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    def visit(node: Any) -> None:
        for name in refs(node):
            if name not in seen:
                seen.append(name)
                visit(defs.get(name, {}))

    visit({k: v for k, v in schema.items() if k != "$defs"})
    return seen + sorted(set(defs) - set(seen))


def markdown(cf: ConfigFile, schema: dict[str, Any]) -> str:
    """The reference page of one configuration file."""
    model = cf.model_class()
    root = model.__name__
    defs = schema.get("$defs", {})
    defaults = _defaults(model)
    found = _file_examples(cf, schema)
    shipped = ", ".join(f"[`{p}`](../../{p})" for p in cf.examples)
    lines = [
        f"# {cf.title} (`{cf.name}` file)",
        "",
        "<!-- Written by `python -m devtools.config_reference` from the schema in code "
        f"(`{cf.model.replace(':', '.')}`); do not edit by hand. -->",
        "",
        cf.intro,
        "",
        f"Shipped examples: {shipped}. JSON Schema (for editors that validate YAML): "
        f"[`schema/{cf.name}.schema.json`](schema/{cf.name}.schema.json); with the YAML "
        "language server, a first line "
        f"`# yaml-language-server: $schema=<path to>/docs/reference/schema/{cf.name}"
        ".schema.json` turns it on.",
        "",
        "Each section is one mapping of the file; a field that is not required may be left "
        "out and takes its default.",
        "",
    ]
    for name in _order(root, schema):
        node = schema if name == root else defs[name]
        title = "Top level" if name == root else name
        lines += [f'<a id="{_anchor(name)}"></a>', "", f"## {title}", ""]
        if node.get("description") and name != root:
            lines += [_cell(node["description"]), ""]
        props = node.get("properties", {})
        if not props:
            lines += [f"{_cell(_type(node, defs))}.", ""]
            continue
        lines += [
            "| field | type | default | meaning | example |",
            "|---|---|---|---|---|",
        ]
        for field, prop in props.items():
            default = defaults.get((name, field), None)
            lines.append(
                f"| `{field}` | {_cell(_type(prop, defs))} | {_cell(_default(default))} | "
                f"{_cell(_meaning(prop, defs))} | "
                f"{_cell(_example(name, field, prop, found, default))} |"
            )
        lines.append("")
    return "\n".join(lines)


def index() -> str:
    """docs/reference/README.md: the list of configuration files."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Written by `python -m devtools.config_reference`; do not edit by hand. -->",
        "",
        "Every configuration file nextbest reads, field by field, written from the schemas "
        "in code (`python -m devtools.config_reference`; a test fails when these pages are "
        "not current).",
        "",
        "| file | reference | JSON Schema |",
        "|---|---|---|",
    ]
    for cf in FILES:
        lines.append(
            f"| {cf.title} | [{cf.name}.md]({cf.name}.md) | "
            f"[schema/{cf.name}.schema.json](schema/{cf.name}.schema.json) |"
        )
    return "\n".join(lines) + "\n"


def render() -> dict[str, str]:
    """Every file of the reference: relative path -> text."""
    out = {"README.md": index()}
    for cf in FILES:
        schema = json_schema(cf)
        out[f"schema/{cf.name}.schema.json"] = json.dumps(schema, indent=2) + "\n"
        out[f"{cf.name}.md"] = markdown(cf, schema)
    return out


def stale(out_dir: Path = OUT) -> list[str]:
    """Files under ``out_dir`` that differ from what :func:`render` writes (or are missing)."""
    return [
        rel
        for rel, text in render().items()
        if not (out_dir / rel).exists() or (out_dir / rel).read_text(encoding="utf-8") != text
    ]


def write(out_dir: Path = OUT) -> list[Path]:
    """Write the reference under ``out_dir``; returns the files written."""
    written = []
    for rel, text in render().items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder to write (docs/reference)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is not current"
    )
    args = parser.parse_args(argv)
    if args.check:
        old = stale(args.out)
        for rel in old:
            print(f"not current: {args.out / rel}", file=sys.stderr)
        if old:
            print("run: python -m devtools.config_reference", file=sys.stderr)
        return 1 if old else 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
