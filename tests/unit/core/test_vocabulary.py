"""The shared vocabulary is defined once: no product module spells out a copy of it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from nextbest.core import vocabulary
from nextbest.core.settings import PROJECT_ROOT
from tests.unit.test_architecture import PACKAGES

PRODUCT_PACKAGES = (*PACKAGES, "feature_repo")
HOME = PROJECT_ROOT / "nextbest" / "core" / "vocabulary.py"
VOCABULARY = {
    name: frozenset(value)
    for name, value in vars(vocabulary).items()
    if name.isupper() and isinstance(value, tuple)
}


def _sources() -> list[Path]:
    return sorted(p for pkg in PRODUCT_PACKAGES for p in (PROJECT_ROOT / pkg).rglob("*.py"))


def _strings(node: ast.AST) -> list[str] | None:
    """The elements of a tuple/list/set display when every one is a string constant."""
    if not isinstance(node, ast.Tuple | ast.List | ast.Set):
        return None
    values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
    return [v for v in values if isinstance(v, str)] if len(values) == len(node.elts) else None


def copies_in(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every "no_action" literal and every literal list holding a whole
    vocabulary tuple (a copy, possibly with extras such as ``"all"``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value == vocabulary.NO_ACTION:
            found.append((node.lineno, "the 'no_action' literal"))
        elif (items := _strings(node)) is not None:
            for name, words in VOCABULARY.items():
                if len(words) > 1 and words <= set(items):
                    found.append((node.lineno, f"a copy of {name}"))
    return found


def test_the_scan_sees_copies() -> None:
    tree = ast.parse(
        'X = "no_action"\n'
        'C = Literal["email", "sms", "push", "web", "app", "call_center", "all"]\n'
        'P = ["service", "profiling", "marketing"]\n'
        'ok = ("email", "push")\n'
    )
    assert sorted(line for line, _ in copies_in(tree)) == [1, 2, 3]


def test_vocabulary_is_defined_only_in_core() -> None:
    problems = [
        f"{path.relative_to(PROJECT_ROOT)}:{line}: {what}"
        for path in _sources()
        if path != HOME
        for line, what in copies_in(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not problems, "import these from nextbest.core.vocabulary instead:\n" + "\n".join(
        problems
    )


@pytest.mark.parametrize("name", sorted(VOCABULARY))
def test_vocabulary_tuples_do_not_repeat(name: str) -> None:
    values = getattr(vocabulary, name)
    assert len(set(values)) == len(values)


def test_only_the_demo_generator_reads_the_demo_channels_and_purposes() -> None:
    # Everything else takes channels and purposes from the catalog (Catalog.terms()).
    demo_words = {"DEMO_CHANNELS", "DEMO_PURPOSES"}
    readers = {
        str(path.relative_to(PROJECT_ROOT))
        for path in _sources()
        if path != HOME
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
        and node.module == "nextbest.core.vocabulary"
        and demo_words & {a.name for a in node.names}
    }
    assert readers == {"nextbest/demo/generate/catalog.py"}, readers
