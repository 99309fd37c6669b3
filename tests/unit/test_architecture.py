"""No import cycle between our modules, including imports inside functions; every product
module named in docs/architecture.md.

import-linter checks the layers of docs/architecture.md in ``make lint``; a layers contract
cannot see a cycle between two modules of one package, this test does. A newcomer finds a
module from the architecture doc: a new module fails here until it has its line there, and
a path the doc names that no longer exists fails too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARCHITECTURE = ROOT / "docs" / "architecture.md"

PACKAGES = (
    "training",
    "serving",
    "nextbest",
)

#: The folders whose modules are the product (tests, benchmarks and devtools are not).
PRODUCT_DIRS = (*PACKAGES, "feature_repo")

#: A repository path of a Python file as the doc writes it, e.g. `nextbest/customers/identity.py`.
DOC_PATH = re.compile(r"`((?:[a-z_]+/)+[a-z_]+\.py)(?!\w)")


def _cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(imports):
        if root in index:
            continue
        work = [(root, iter(sorted(imports[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imports[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _module_imports() -> dict[str, set[str]]:
    """Each module's direct imports of our modules; a package's ``__init__`` importing its
    own modules is not a cycle of code, so package nodes are left out."""
    graph = grimp.build_graph(*PACKAGES)
    packages = {m.rsplit(".", 1)[0] for m in graph.modules if "." in m}
    modules = {m for m in graph.modules if m not in packages}
    return {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}


def test_no_import_cycle_between_modules() -> None:
    imports = _module_imports()
    assert len(imports) > 40
    assert _cycles(imports) == []


def test_cycle_finder_sees_a_cycle() -> None:
    imports = {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a", "p.d"}, "p.d": set()}
    assert _cycles(imports) == [["p.a", "p.b", "p.c"]]


def _has_code(path: Path) -> bool:
    """A file with a statement beyond its docstring (an ``__init__`` that re-exports)."""
    body = ast.parse(path.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return bool(body)


def product_modules() -> list[str]:
    """Every product module by its repository path; an ``__init__.py`` only when it has
    code (an empty one or a docstring says nothing a newcomer must find)."""
    found = []
    for folder in PRODUCT_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name != "__init__.py" or _has_code(path):
                found.append(path.relative_to(ROOT).as_posix())
    return found


def test_every_product_module_is_named_in_the_architecture_doc() -> None:
    modules = product_modules()
    assert len(modules) > 100 and "nextbest/customers/identity.py" in modules
    named = set(DOC_PATH.findall(ARCHITECTURE.read_text()))
    missing = [m for m in modules if m not in named]
    assert not missing, f"docs/architecture.md does not name: {missing}"


def test_every_module_the_architecture_doc_names_exists() -> None:
    named = set(DOC_PATH.findall(ARCHITECTURE.read_text()))
    ours = {p for p in named if p.split("/", 1)[0] in PRODUCT_DIRS}
    assert len(ours) > 100
    gone = sorted(p for p in ours if not (ROOT / p).is_file())
    assert not gone, f"docs/architecture.md names modules that do not exist: {gone}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- `nextbest/customers/identity.py`: resolution", ["nextbest/customers/identity.py"]),
        (
            "(`nextbest/decisions/ledger_state.py::apply_ledger`)",
            ["nextbest/decisions/ledger_state.py"],
        ),
        ("`identity.py` alone, `core/` a folder, `x/y.pyc`", []),
    ],
)
def test_the_doc_path_pattern_reads_repository_paths_only(text: str, expected: list[str]) -> None:
    assert DOC_PATH.findall(text) == expected
