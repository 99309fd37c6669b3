"""No import cycle between our modules, including imports inside functions.

import-linter checks the layers of docs/architecture.md in ``make lint``; a layers contract
cannot see a cycle between two modules of one package, this test does.
"""

from __future__ import annotations

import grimp

PACKAGES = (
    "core",
    "customers",
    "models",
    "decisions",
    "training",
    "serving",
    "batch",
    "measurement",
    "demo",
    "nextbest",
)


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
