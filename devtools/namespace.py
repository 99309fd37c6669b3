"""Move the generic top-level packages under ``nextbest`` and rewrite every reference.

One-shot migration (issue 24, packaging), replayable on any later main:

    uv run --frozen python devtools/namespace.py

run from the repository root on a clean work tree. It

1. ``git mv``s ``core``, ``customers``, ``models``, ``decisions``, ``batch``,
   ``measurement`` and ``demo`` to ``nextbest/<name>`` (``training/``, ``serving/`` and
   ``feature_repo/`` stay at the root, as the project's layout requires; ``devtools/`` stays
   test tooling at the root, never packaged);
2. rewrites imports (``from core.x import`` -> ``from nextbest.core.x import``, ``import
   customers.x`` -> ``import nextbest.customers.x``) and dotted module names
   (``"customers.feast_store.lookup_customer"``, ``:func:`decisions.engine.decide```) in
   Python files, notebooks, YAML, TOML, Markdown, Makefile and ``.ci``; a dotted name is
   rewritten only when its second part is an existing module of the package;
3. rewrites repository paths (``customers/identity.py`` -> ``nextbest/customers/identity.py``)
   when the path exists, names a ``.py`` file or is a glob; a bare folder (```core/```) only
   in the README and docs/architecture.md, where it is the package (elsewhere ``decisions/``
   is the home's log folder); ``ROOT / "core" / "vocabulary.py"`` in code likewise; and
   ``Path(__file__)`` walks up to the root one level further in a moved file;
4. updates what names packages by themselves: the wheel's package list and the
   import-linter contracts in pyproject.toml, the architecture test's ``PACKAGES``, logger
   names, the MLflow model's ``code_paths``, bentofile.yaml's includes;
5. writes the public API (``nextbest/__init__.py``, ``__all__``, loaded lazily) and its test,
   names it in the README and docs/architecture.md;
6. re-wraps the comment and docstring lines the longer names pushed over 100 characters,
   sorts imports and formats (ruff), writes the generated references again
   (``devtools/*reference*.py``: docs/configuration.md, docs/reference/), and deletes itself.

It refuses to run twice (a package already under ``nextbest/``) or on a dirty tree, and
prints every file it changed and every mention it left alone on purpose, for review.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import tokenize
from collections import Counter, defaultdict
from io import StringIO
from pathlib import Path

NS = "nextbest"
MOVED = ("core", "customers", "models", "decisions", "batch", "measurement", "demo")
#: Files where a bare ``core/`` means the package (elsewhere it may be a home folder).
BARE_FOLDER_FILES = {"README.md", "docs/architecture.md"}
TEXT_SUFFIXES = {".py", ".ipynb", ".md", ".toml", ".yaml", ".yml"}
TEXT_NAMES = {"Makefile", ".ci/run"}
#: Dated records of past runs: they say what the code was called then.
SKIP_PREFIXES = ("benchmarks/results/",)
LINE = 100
SELF = Path(__file__).resolve()

PKGS = "|".join(MOVED)
#: ``from core.x import`` / ``from core import`` at the start of a line (code, doctest,
#: a code string or a Markdown block).
FROM_RE = re.compile(
    rf"^(?P<pre>[ \t]*(?:>>> |\.\.\. )?)from[ \t]+(?P<mod>(?:{PKGS})(?:\.\w+)*)"
    r"(?P<rest>[ \t]+import\b)",
    re.M,
)
IMPORT_RE = re.compile(
    rf"^(?P<pre>[ \t]*(?:>>> |\.\.\. )?)import[ \t]+(?P<mod>(?:{PKGS})(?:\.\w+)*)"
    r"(?P<alias>[ \t]+as[ \t]+\w+)?(?P<tail>[ \t]*(?:#.*)?)$",
    re.M,
)
COMMA_IMPORT_RE = re.compile(rf"^[ \t]*import[ \t]+[^\n#]*\b(?:{PKGS})\b[^\n#]*,", re.M)
#: ``core/...``: not inside a longer path, a word, a URL or a ``{home}/`` template.
PATH_RE = re.compile(rf"(?<![\w./\-~}}$@])(?P<pkg>{PKGS})/(?P<rest>[\w.*/{{}}-]*)")
#: A relative Markdown link into a package: ``](../core/settings.py)``.
MD_LINK_RE = re.compile(rf"(?P<head>\]\((?:\.\.?/)+)(?P<pkg>{PKGS})/(?P<rest>[\w.*/-]*)")
#: ``X / "core" / "vocabulary.py"`` in code.
CODE_PATH_RE = re.compile(
    rf"(?P<q>[\"'])(?P<pkg>{PKGS})(?P=q)(?P<sep>\s*/\s*)(?P<q2>[\"'])(?P<child>[\w.]+)(?P=q2)"
)
FILE_WALK_RE = re.compile(
    r"(?P<head>Path\(__file__\)(?:\.resolve\(\))?)(?P<walk>(?:\.parent(?!s))+|\.parents\[(?P<n>\d+)\])"
)
BOX = re.compile("[─│►◄┘└┐┌]")


class Report:
    """What the run changed and what it left alone, printed at the end."""

    def __init__(self) -> None:
        self.changed: dict[str, Counter[str]] = defaultdict(Counter)
        self.left: list[str] = []
        self.special: list[str] = []
        self.problems: list[str] = []

    def count(self, path: str, rule: str, n: int = 1) -> None:
        if n:
            self.changed[path][rule] += n


def run(*args: str, check: bool = True) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if check and done.returncode != 0:
        sys.exit(f"failed: {' '.join(args)}\n{done.stdout}{done.stderr}")
    return done.stdout


def refuse(message: str) -> None:
    sys.exit(f"namespace: refusing to run: {message}")


def preconditions(root: Path) -> None:
    if not (root / "pyproject.toml").is_file() or not (root / NS / "cli.py").is_file():
        refuse("run it from the repository root (pyproject.toml and nextbest/cli.py)")
    done = [p for p in MOVED if (root / NS / p / "__init__.py").exists()]
    if done:
        refuse(f"already applied: {', '.join(f'{NS}/{p}' for p in done)} exist")
    missing = [p for p in MOVED if not (root / p / "__init__.py").is_file()]
    if missing:
        refuse(f"not a package at the root: {', '.join(missing)}")
    me = SELF.relative_to(root).as_posix()
    dirty = [
        line
        for line in run("git", "status", "--porcelain", "--untracked-files=all").splitlines()
        if line[3:] != me
    ]
    if dirty:
        refuse("the work tree has changes; commit or stash them first:\n" + "\n".join(dirty))


# --- the inventory before the move ---------------------------------------------------


class Inventory:
    """The repository's paths and modules before the move."""

    def __init__(self, files: list[str]) -> None:
        self.files = set(files)
        self.dirs = {str(Path(f).parent.as_posix()) for f in files}
        for d in list(self.dirs):
            while "/" in d:
                d = d.rsplit("/", 1)[0]
                self.dirs.add(d)
        self.submodules: dict[str, set[str]] = {p: set() for p in MOVED}
        for f in files:
            parts = f.split("/")
            if parts[0] in self.submodules and len(parts) >= 2 and f.endswith(".py"):
                name = parts[1].removesuffix(".py")
                if name != "__init__":
                    self.submodules[parts[0]].add(name)
        alternatives = "|".join(
            rf"{p}\.(?:{'|'.join(sorted(subs, key=len, reverse=True))})"
            for p, subs in self.submodules.items()
            if subs
        )
        #: ``customers.feast_store``: a package and one of its modules, not part of a longer
        #: dotted name (``tests.unit.customers.x``) or a path.
        self.dotted = re.compile(rf"(?<![\w.\-/])(?:{alternatives})(?!\w)")

    def is_path(self, pkg: str, rest: str, bare_ok: bool) -> tuple[bool, str]:
        """Whether ``pkg/rest`` names our package's files; and the part that does."""
        stripped = rest.rstrip(".,;:)-")
        if not stripped:
            return bare_ok, stripped
        if "*" in stripped:
            return True, stripped
        target = f"{pkg}/{stripped}".rstrip("/")
        if target in self.files or target in self.dirs:
            return True, stripped
        if re.fullmatch(r"(?:\w+/)*\w+\.py", stripped):
            return True, stripped
        return False, stripped


# --- the rewrite rules ------------------------------------------------------------------


def rewrite_imports(text: str, path: str, report: Report) -> str:
    for m in COMMA_IMPORT_RE.finditer(text):
        report.problems.append(f"{path}: an import of several modules on one line: {m[0]!r}")

    def from_sub(m: re.Match[str]) -> str:
        report.count(path, "import")
        return f"{m['pre']}from {NS}.{m['mod']}{m['rest']}"

    def import_sub(m: re.Match[str]) -> str:
        report.count(path, "import")
        alias, tail = m["alias"] or "", m["tail"] or ""
        if "." not in m["mod"]:  # ``import core`` keeps the name ``core`` bound
            return f"{m['pre']}from {NS} import {m['mod']}{alias}{tail}"
        return f"{m['pre']}import {NS}.{m['mod']}{alias}{tail}"

    text = FROM_RE.sub(from_sub, text)
    return IMPORT_RE.sub(import_sub, text)


def rewrite_dotted(text: str, path: str, inv: Inventory, report: Report) -> str:
    def sub(m: re.Match[str]) -> str:
        report.count(path, "dotted name")
        return f"{NS}.{m[0]}"

    return inv.dotted.sub(sub, text)


def rewrite_paths(text: str, path: str, inv: Inventory, report: Report) -> str:
    bare_ok = path in BARE_FOLDER_FILES

    def sub(m: re.Match[str]) -> str:
        ok, stripped = inv.is_path(m["pkg"], m["rest"], bare_ok)
        if not ok:
            line = text.count("\n", 0, m.start()) + 1
            report.left.append(f"{path}:{line}: {m['pkg']}/{stripped}")
            return m[0]
        report.count(path, "path")
        return f"{NS}/{m[0]}"

    text = PATH_RE.sub(sub, text)
    if not path.endswith(".md"):
        return text

    def link(m: re.Match[str]) -> str:
        if not inv.is_path(m["pkg"], m["rest"], bare_ok=True)[0]:
            return m[0]
        report.count(path, "path")
        return f"{m['head']}{NS}/{m['pkg']}/{m['rest']}"

    return MD_LINK_RE.sub(link, text)


BARE_JOIN_RE = re.compile(
    rf"/\s*(?P<q>[\"'])(?P<pkg>{PKGS})(?P=q)|(?P<q3>[\"'])(?:{PKGS})(?P=q3)\s*/"
)


def rewrite_code_paths(text: str, path: str, inv: Inventory, report: Report) -> str:
    def sub(m: re.Match[str]) -> str:
        if f"{m['pkg']}/{m['child']}" not in inv.files | inv.dirs:
            return m[0]
        report.count(path, "path in code")
        return f"{m['q']}{NS}{m['q']}{m['sep']}{m[0]}"

    text = CODE_PATH_RE.sub(sub, text)
    # a package's name joined as a path and not rewritten: most are the home's folders
    # (``home / "decisions"``); listed for review
    for m in BARE_JOIN_RE.finditer(text):
        if re.search(rf"[\"']{NS}[\"']\s*$", text[: m.start()]):
            continue
        line = text.count("\n", 0, m.start()) + 1
        report.left.append(f"{path}:{line}: {m[0].strip()} (a folder of that name, not ours)")
    return text


def rewrite_file_walks(text: str, path: str, report: Report) -> str:
    """In a moved file, a walk from ``__file__`` that reached the root (or above) goes one
    level further; one that stays inside the package is unchanged."""
    old_depth = path.count("/") - 1  # nextbest/core/settings.py was core/settings.py: 1

    def sub(m: re.Match[str]) -> str:
        up = int(m["n"]) + 1 if m["n"] is not None else m["walk"].count(".parent")
        if up <= old_depth:
            return m[0]
        report.count(path, "__file__ walk")
        return f"{m['head']}.parents[{up}]"

    return FILE_WALK_RE.sub(sub, text)


def rewrite_markdown(text: str, path: str, inv: Inventory, report: Report) -> str:
    """Imports, dotted names and paths; a fenced diagram keeps its short names (its
    columns are drawn by hand)."""
    out, fence = [], re.compile(r"^(```|~~~)")
    blocks = re.split(r"(^```[^\n]*\n.*?^```[ \t]*$)", text, flags=re.M | re.S)
    for block in blocks:
        if fence.match(block) and BOX.search(block):
            if inv.dotted.search(block) or PATH_RE.search(block):
                line = text.count("\n", 0, text.find(block)) + 1
                report.left.append(f"{path}:{line}: a diagram block, names left short")
            out.append(block)
            continue
        block = rewrite_imports(block, path, report)
        block = rewrite_dotted(block, path, inv, report)
        out.append(rewrite_paths(block, path, inv, report))
    return "".join(out)


def rewrite_text(text: str, path: str, inv: Inventory, report: Report) -> str:
    if path.endswith(".md"):
        return rewrite_markdown(text, path, inv, report)
    text = rewrite_imports(text, path, report)
    text = rewrite_dotted(text, path, inv, report)
    text = rewrite_paths(text, path, inv, report)
    if path.endswith(".py"):
        text = rewrite_code_paths(text, path, inv, report)
        if path.split("/")[:2][-1] in MOVED and path.startswith(f"{NS}/"):
            text = rewrite_file_walks(text, path, report)
    return text


def rewrite_notebook(raw: str, path: str, inv: Inventory, report: Report) -> str:
    nb = json.loads(raw)
    if json.dumps(nb, indent=1, ensure_ascii=False) + "\n" != raw:
        report.problems.append(f"{path}: not in nbformat's layout; rewritten as plain text")
        return rewrite_text(raw, path + ".txt", inv, report)
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        joined = "".join(src) if isinstance(src, list) else src
        kind = ".md" if cell.get("cell_type") == "markdown" else ".py"
        new = rewrite_text(joined, path + kind, inv, report)
        if new != joined:
            cell["source"] = new.splitlines(keepends=True) if isinstance(src, list) else new
    # counts were kept under the cell kind; fold them into the notebook's name
    for kind in (".md", ".py", ".txt"):
        if path + kind in report.changed:
            for rule, n in report.changed.pop(path + kind).items():
                report.count(path, rule, n)
    report.left = [x.replace(path + ".md", path).replace(path + ".py", path) for x in report.left]
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


# --- what names packages by themselves --------------------------------------------------


def cli_modules(root: Path) -> list[str]:
    """The CLI's own modules: ``nextbest``'s children that are not moved packages."""
    names = []
    for child in sorted((root / NS).iterdir()):
        name = child.name.removesuffix(".py")
        if name.startswith("_") or name in MOVED or name.startswith("."):
            continue
        if child.suffix == ".py" or (child / "__init__.py").is_file():
            names.append(f"{NS}.{name}")
    return names


def _module_expr(expr: str, cli: list[str], in_layers: bool) -> str:
    """A contract's module expression (``"serving | batch"``, ``"a.b -> c"``) with moved
    packages prefixed; the layer ``nextbest`` (the CLI) becomes the CLI's own modules."""
    if expr.strip() == NS and in_layers:
        return " : ".join(cli)
    return re.sub(rf"(?<![\w.])({PKGS})(?![\w])", rf"{NS}.\1", expr)


def fix_pyproject(root: Path, report: Report) -> None:
    path = root / "pyproject.toml"
    text = path.read_text()
    cli = cli_modules(root)

    def wheel(m: re.Match[str]) -> str:
        names = [n for n in re.findall(r'"([^"]+)"', m["list"]) if n not in MOVED]
        if NS not in names:
            names.append(NS)
        report.special.append(f"pyproject.toml: wheel packages = {names}")
        return m["head"] + "[" + ", ".join(f'"{n}"' for n in names) + "]"

    text, n = re.subn(
        r"(?P<head>\[tool\.hatch\.build\.targets\.wheel\][^\[]*?packages\s*=\s*)\[(?P<list>[^\]]*)\]",
        wheel,
        text,
        flags=re.S,
    )
    if not n:
        report.problems.append("pyproject.toml: no [tool.hatch.build.targets.wheel] packages")

    start = text.find("[tool.importlinter]")
    if start < 0:
        report.problems.append("pyproject.toml: no [tool.importlinter] section")
        path.write_text(text)
        return
    nxt = re.search(r"^\[(?!\[?tool\.importlinter)", text[start + 1 :], re.M)
    end = start + 1 + nxt.start() if nxt else len(text)
    section = text[start:end]

    def roots(m: re.Match[str]) -> str:
        names = [n for n in re.findall(r'"([^"]+)"', m["list"]) if n not in MOVED]
        if NS not in names:
            names.insert(0, NS)
        body = "".join(f'    "{n}",\n' for n in names)
        return f"{m['head']}[\n{body}]"

    section, n = re.subn(
        r"(?P<head>root_packages\s*=\s*)\[(?P<list>[^\]]*)\]", roots, section, flags=re.S
    )
    if not n:
        report.problems.append("pyproject.toml: no import-linter root_packages")

    def array(m: re.Match[str]) -> str:
        """A contract's list of modules; the CLI package ``nextbest`` is its own modules
        now (one non-independent layer, or one entry each elsewhere)."""
        in_layers = m["key"] == "layers"
        items = m["list"]
        if not in_layers:
            items = items.replace(f'"{NS}"', ", ".join(f'"{c}"' for c in cli))
        items = re.sub(r'"([^"]*)"', lambda s: f'"{_module_expr(s[1], cli, in_layers)}"', items)
        return f"{m['head']}{items}]"

    section = re.sub(
        r"(?P<head>^(?P<key>(?!root_packages)\w+)\s*=\s*\[)(?P<list>[^\]]*)\]",
        array,
        section,
        flags=re.M | re.S,
    )
    report.special.append(f"pyproject.toml: import-linter CLI layer = {' : '.join(cli)}")
    text = text[:start] + section + text[end:]
    path.write_text(text)
    report.count("pyproject.toml", "packages and contracts")


def fix_architecture_test(root: Path, report: Report) -> None:
    path = root / "tests/unit/test_architecture.py"
    text = path.read_text()

    def sub(m: re.Match[str]) -> str:
        names = [n for n in re.findall(r'"([^"]+)"', m["list"]) if n not in MOVED]
        if NS not in names:
            names.append(NS)
        report.special.append(f"tests/unit/test_architecture.py: PACKAGES = {tuple(names)}")
        return "PACKAGES = (\n" + "".join(f'    "{n}",\n' for n in names) + ")"

    text, n = re.subn(r"^PACKAGES = \((?P<list>[^)]*)\)", sub, text, flags=re.M)
    if not n:
        report.problems.append("tests/unit/test_architecture.py: no PACKAGES tuple")
    path.write_text(text)


def fix_logger_names(root: Path, files: list[str], report: Report) -> None:
    """A logger is named by its module (``getLogger(__name__)``): where a package is named
    as a logger, it is ``nextbest.<package>`` now."""
    quoted = rf"(?P<q>[\"'])(?P<pkg>{PKGS})(?P=q)"
    patterns = [
        re.compile(rf"(?P<head>getLogger\(\s*){quoted}"),
        re.compile(rf"(?P<head>logger\s*=\s*){quoted}"),
    ]
    tuple_re = re.compile(r"^(?P<name>\w*LOGGERS\w*)(?P<ann>[^=\n]*)=\s*\((?P<body>[^)]*)\)", re.M)
    for rel in files:
        if not rel.endswith(".py"):
            continue
        path = root / rel
        text = path.read_text()
        new = text
        for pat in patterns:
            new = pat.sub(lambda m: f"{m['head']}{m['q']}{NS}.{m['pkg']}{m['q']}", new)

        def tup(m: re.Match[str]) -> str:
            body = re.sub(quoted, lambda s: f"{s['q']}{NS}.{s['pkg']}{s['q']}", m["body"])
            return f"{m['name']}{m['ann']}= ({body})"

        new = tuple_re.sub(tup, new)
        if new != text:
            path.write_text(new)
            report.count(rel, "logger name")
            report.special.append(f"{rel}: loggers named by package now under {NS}.")


CODE_PATHS_OLD = re.compile(
    r"code_paths=\[str\(Path\(__file__\)\.resolve\(\)\.parent\), _package_dir\(\"customers\"\)\]"
)


def fix_model_code_paths(root: Path, report: Report) -> None:
    """The pickled decision model names ``nextbest.models...``: the copy of our code MLflow
    keeps beside it must be the ``nextbest`` package (its subfolders copied alone would be
    top-level ``models`` and ``customers``, which nothing names now)."""
    path = root / NS / "models" / "registry.py"
    if not path.is_file():
        report.problems.append(f"{NS}/models/registry.py is gone: check MLflow's code_paths")
        return
    text = path.read_text()
    new, n = CODE_PATHS_OLD.subn(f'code_paths=[_package_dir("{NS}")]', text)
    if not n:
        left = re.findall(r"code_paths=.*", text)
        report.problems.append(f"{NS}/models/registry.py: code_paths not as expected: {left}")
        return
    path.write_text(new)
    report.count(f"{NS}/models/registry.py", "MLflow code_paths")
    report.special.append(f'{NS}/models/registry.py: code_paths=[_package_dir("{NS}")]')


def fix_bentofile(root: Path, report: Report) -> None:
    """``nextbest/**/*.py`` now holds the moved packages: the per-package includes are
    dropped, and the packages the service never had stay out (excluded)."""
    path = root / "bentofile.yaml"
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    whole = any(re.fullmatch(rf'\s*-\s*"{NS}/\*\*/\*\.py"\s*', ln) for ln in lines)
    if not whole:
        report.special.append("bentofile.yaml: includes rewritten as paths only")
        return
    had, out = set(), []
    for ln in lines:
        m = re.fullmatch(rf'\s*-\s*"{NS}/(?P<pkg>{PKGS})/\*\*/\*\.py"\s*', ln)
        if m:
            had.add(m["pkg"])
            continue
        out.append(ln)
    not_served = [p for p in MOVED if p not in had]
    text = "".join(out)
    if not_served:
        m = re.search(r"^exclude:\n(?P<items>(?:[ \t]+-[^\n]*\n)*)", text, re.M)
        entries = "".join(f'  - "{NS}/{p}/"\n' for p in not_served)
        if m:
            text = text[: m.end()] + entries + text[m.end() :]
        else:
            report.problems.append("bentofile.yaml: no exclude list for the packages not served")
    path.write_text(text)
    report.count("bentofile.yaml", "includes")
    report.special.append(f"bentofile.yaml: excludes {', '.join(f'{NS}/{p}/' for p in not_served)}")


# --- the public API -------------------------------------------------------------------

API: dict[str, str] = {
    "Settings": "nextbest.core.settings",
    "get_settings": "nextbest.core.settings",
    "ingest": "nextbest.pipeline",
    "resolve": "nextbest.pipeline",
    "build_features": "nextbest.pipeline",
    "train": "training.train",
    "load_runtime": "nextbest.decisions.runtime",
    "DecisionContext": "nextbest.decisions.outcome",
    "decide": "nextbest.decisions.engine",
    "score_customers": "nextbest.batch.run",
    "run_pipeline": "nextbest.pipeline",
}


def api_module() -> str:
    by_module: dict[str, list[str]] = defaultdict(list)
    for name, module in API.items():
        by_module[module].append(name)
    checking = "".join(
        f"    from {m} import {', '.join(sorted(names, key=str.lower))}\n"
        for m, names in sorted(by_module.items())
    )
    sources = "".join(f'    "{n}": "{m}",\n' for n, m in API.items())
    names = "".join(f'    "{n}",\n' for n in API)
    return f'''"""nextbest: the steps a user scripts, from one settings object.

``import nextbest`` loads nothing but this file: each name below is imported from its
module on first use (pandas, Feast, MLflow and LightGBM stay unloaded until a step needs
them). The CLI and the service import the modules directly.

    import nextbest

    settings = nextbest.get_settings(home="var")  # NEXTBEST_* variables, then these
    nextbest.resolve(settings)  # identity resolution of the exports under raw/
    nextbest.build_features(settings)  # feature tables, feast apply, materialise
    nextbest.train(settings)  # fit, evaluate, register; promote when better
    runtime = nextbest.load_runtime(settings)  # champion, catalog, policy, rule plan
    nextbest.score_customers(settings, "email", None, settings.root / "email.parquet")

``decide`` is the one decision engine over feature arrays (``runtime.plan`` and a
``DecisionContext``); ``score_customers`` runs it for every customer (``nextbest score``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
{checking}
#: Each public name and the module that defines it.
_SOURCES = {{
{sources}}}

__all__ = [
{names}]


def __getattr__(name: str) -> Any:
    """The public ``name``, imported from its module on first use and kept."""
    module = _SOURCES.get(name)
    if module is None:
        raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({{*globals(), *__all__}})
'''


API_TEST = '''"""The public API: ``nextbest.__all__`` names the steps a user scripts, each defined
once in its module, and ``import nextbest`` loads none of them (nor their heavy
dependencies)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nextbest
from tests.conftest import ROOT

HEAVY = ("pandas", "numpy", "pyarrow", "mlflow", "feast", "lightgbm", "bentoml", "sklearn")


@pytest.mark.parametrize("name", nextbest.__all__)
def test_every_public_name_is_its_module_s_own(name: str) -> None:
    value = getattr(nextbest, name)
    module = nextbest._SOURCES[name]
    assert value is getattr(sys.modules[module], name)
    assert value.__module__ == module
    assert name in dir(nextbest)


def test_the_api_names_settings_resolve_features_train_decide_score() -> None:
    assert {"get_settings", "resolve", "build_features", "train", "decide"} <= set(
        nextbest.__all__
    )
    assert "score_customers" in nextbest.__all__
    assert sorted(nextbest.__all__) == sorted(nextbest._SOURCES)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_step"):
        nextbest.no_such_step  # noqa: B018


def test_import_nextbest_loads_nothing_heavy() -> None:
    probe = (
        "import sys, nextbest; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); "
        "print(sorted(m for m in sys.modules if m.startswith(('nextbest.', 'training'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "[]"]
'''


def write_api(root: Path, report: Report) -> None:
    init = root / NS / "__init__.py"
    body = ast.parse(init.read_text()).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if body:
        report.problems.append(f"{NS}/__init__.py has code: the public API was not written")
        return
    init.write_text(api_module())
    test = root / "tests/unit/nextbest/test_public_api.py"
    test.write_text(API_TEST)
    run("git", "add", str(test))
    report.count(f"{NS}/__init__.py", "public API")
    report.count("tests/unit/nextbest/test_public_api.py", "new test")


def _insert(path: Path, anchor: str, text: str, report: Report, after: bool = True) -> None:
    body = path.read_text()
    rel = path.name if path.parent.name != "docs" else f"docs/{path.name}"
    if anchor not in body:
        report.problems.append(f"{rel}: anchor not found, not inserted: {text[:60]!r}")
        return
    i = body.index(anchor) + (len(anchor) if after else 0)
    path.write_text(body[:i] + text + body[i:])
    report.count(rel, "prose")


def _paragraph(text: str) -> str:
    return textwrap.fill(text, width=92, break_long_words=False, break_on_hyphens=False)


def document(root: Path, report: Report) -> None:
    moved = ", ".join(f"`{NS}.{p}`" for p in MOVED)
    _insert(
        root / "README.md",
        "\n| path | what |",
        "\n"
        + _paragraph(
            f"The installed package adds `{NS}`, `training` and `serving` to site-packages and "
            f"nothing else: the other packages live under `{NS}/` ({moved}); `training/`, "
            "`serving/` and `feature_repo/` stay at the root, as the project's layout "
            f"requires. From Python, `import {NS}` gives the steps a user scripts "
            f"(`{NS}.__all__`: settings, resolve, build features, train, decide, score), each "
            "loaded on first use."
        )
        + "\n",
        report,
        after=False,
    )
    _insert(
        root / "README.md",
        f"| `{NS}/` | the `{NS}` CLI (typer + rich) and the pipeline",
        f"; the public API (`{NS}/__init__.py`); every package above but `training/` and "
        "`serving/`",
        report,
    )
    arch = root / "docs" / "architecture.md"
    _insert(
        arch,
        "## Layers, lowest first",
        _paragraph(
            f"Every package but `training/` and `serving/` (kept at the root by the project's "
            f"layout) lives under `{NS}/`, so the installed wheel adds only `{NS}`, `training` "
            f"and `serving` to site-packages: `{NS}.core`, `{NS}.customers`, ... in imports, "
            f"`{NS}/core/` in paths (the data-flow diagram below leaves the prefix out). "
            f"`{NS}/__init__.py` is the public API."
        )
        + "\n\n",
        report,
        after=False,
    )
    _insert(
        arch,
        f"### `{NS}/`\n\n",
        f"- `{NS}/__init__.py`: the public API a user scripts (`__all__`: `Settings`, "
        "`get_settings`, `ingest`, `resolve`, `build_features`, `train`, `load_runtime`, "
        "`DecisionContext`, `decide`, `score_customers`, `run_pipeline`), each imported from "
        "its module on first use.\n",
        report,
    )


# --- long lines -------------------------------------------------------------------------


def _prose_lines(text: str) -> set[int]:
    """Line numbers (1-based) inside bare string statements: docstrings, never code."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _comment_lines(text: str) -> set[int]:
    """Line numbers holding only a comment."""
    found = set()
    for tok in tokenize.generate_tokens(StringIO(text).readline):
        if tok.type == tokenize.COMMENT and not tok.line[: tok.start[1]].strip():
            found.add(tok.start[0])
    return found


BLOCK_START = re.compile(r"^\s*(?:[-*+] |\d+\. |:\w|\.\. |>>> |```)")


def reflow(text: str) -> tuple[str, int]:
    """Push the words of a comment or docstring line over ``LINE`` characters onto the next
    line of the same paragraph (onto a new line when there is none)."""
    prose, comments = _prose_lines(text), _comment_lines(text)
    lines = text.split("\n")
    kinds = [
        "comment" if no in comments else "prose" if no in prose else None
        for no in range(1, len(lines) + 1)
    ]
    fixed, i = 0, 0
    while i < len(lines):
        line, kind = lines[i], kinds[i]
        if len(line) <= LINE or kind is None or line.lstrip().startswith(">>> "):
            i += 1
            continue
        pattern = r"^\s*#:? ?" if kind == "comment" else r"^\s*"
        prefix = re.match(pattern, line)[0]
        words = line[len(prefix) :].split(" ")
        head: list[str] = []
        for w in words:
            if head and len(prefix + " ".join([*head, w])) > LINE:
                break
            head.append(w)
        tail = words[len(head) :]
        if not tail:  # one word longer than the line: ruff's E501 check reports it
            i += 1
            continue
        fixed += 1
        ends_item = line.rstrip().endswith((".", ";", ":"))
        lines[i] = prefix + " ".join(head)
        j = i + 1
        nxt = lines[j] if j < len(lines) else ""
        rest = nxt[len(prefix) :]
        cont = (
            j < len(lines)
            and not ends_item
            and kinds[j] == kind
            and nxt.startswith(prefix)
            and rest.strip() != ""
            and not rest[:1].isspace()
            and not BLOCK_START.match(rest)
            and not rest.startswith(('"""', "'''"))
        )
        if kind == "comment" and cont:
            cont = re.match(pattern, nxt)[0] == prefix
        if cont:
            lines[j] = prefix + " ".join(tail) + " " + rest
        else:
            lines.insert(j, prefix + " ".join(tail))
            kinds.insert(j, kind)
        i += 1
    return "\n".join(lines), fixed


# --- the run ----------------------------------------------------------------------------


def main() -> None:
    root = Path.cwd()
    preconditions(root)
    me = SELF.relative_to(root).as_posix()
    before = run("git", "ls-files").splitlines()
    inv = Inventory(before)
    report = Report()

    # 1. the move
    for pkg in MOVED:
        run("git", "mv", pkg, f"{NS}/{pkg}")
        leftover = root / pkg
        if leftover.exists():  # ignored files only (__pycache__): the tree was clean
            for p in sorted(leftover.rglob("*"), reverse=True):
                p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()
            leftover.rmdir()
        report.special.append(f"git mv {pkg} {NS}/{pkg}")

    # 2-3. imports, dotted names, paths
    files = [
        f
        for f in run("git", "ls-files").splitlines()
        if f != me
        and not f.startswith(SKIP_PREFIXES)
        and (Path(f).suffix in TEXT_SUFFIXES or f in TEXT_NAMES)
    ]
    for rel in files:
        path = root / rel
        old = path.read_text(encoding="utf-8")
        if rel.endswith(".ipynb"):
            new = rewrite_notebook(old, rel, inv, report)
        else:
            new = rewrite_text(old, rel, inv, report)
        if new != old:
            path.write_text(new, encoding="utf-8")

    # 4-5. names of packages, the public API and its docs
    fix_pyproject(root, report)
    fix_architecture_test(root, report)
    fix_logger_names(root, files, report)
    fix_model_code_paths(root, report)
    fix_bentofile(root, report)
    write_api(root, report)
    document(root, report)

    # 6. long lines, import order, format, the generated configuration reference
    for rel in [f for f in files if f.endswith(".py")]:
        path = root / rel
        text = path.read_text(encoding="utf-8")
        new, n = reflow(text)
        if n:
            path.write_text(new, encoding="utf-8")
            report.count(rel, "re-wrapped long line", n)
    py = sys.executable
    run(py, "-m", "ruff", "check", "--select", "I", "--fix", "--quiet", ".", check=False)
    run(py, "-m", "ruff", "format", "--quiet", ".")
    # the generated references (docs/configuration.md, docs/reference/) written again from
    # the code: they name modules and paths too
    for generator in sorted((root / "devtools").glob("*reference*.py")):
        run(py, "-m", f"devtools.{generator.stem}")
        report.special.append(f"python -m devtools.{generator.stem}: written again")
    long_lines = run(py, "-m", "ruff", "check", "--select", "E501", "--quiet", ".", check=False)
    if long_lines.strip():
        report.problems.append("lines over 100 characters left:\n" + long_lines)
    if run("git", "ls-files", me).strip():
        run("git", "rm", "--quiet", "-f", me)
    else:
        SELF.unlink()
    run("git", "add", "-A")

    # the report
    print("== moved and special cases")
    for line in report.special:
        print(f"  {line}")
    print(f"== files changed ({len(report.changed)})")
    for rel in sorted(report.changed):
        counts = ", ".join(f"{n} {rule}" for rule, n in sorted(report.changed[rel].items()))
        print(f"  {rel}: {counts}")
    print(f"== left unchanged on purpose ({len(report.left)}): review")
    for line in report.left:
        print(f"  {line}")
    print(f"== needs a look ({len(report.problems)})")
    for line in report.problems:
        print(f"  {line}")
    print("== staged; next: uv sync, ruff check, lint-imports, pytest tests/unit, commit")
    if report.problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
