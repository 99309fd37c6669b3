"""One name per idea: the product code, its docs, notebooks and config hold none of the
retired spellings of the fixed terms (docs/glossary.md). A retired name may appear only
where it is declared retired, in the files :data:`DECLARED_IN` lists for it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What is searched: the product packages, the service, training, the feature repo, the
#: config, the docs and the notebooks (tests and benchmarks keep their own data labels).
SEARCHED = ("nextbest", "serving", "training", "feature_repo", "config", "docs", "notebooks")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".ipynb", ".json"}

#: Retired spelling -> the pattern that finds it and the name that replaced it.
RETIRED: dict[str, tuple[str, str]] = {
    "CONTROL_ARM": (r"\bCONTROL_ARM\b", "NO_ACTION"),
    "CONTROL_ACTION": (r"\bCONTROL_ACTION\b", "NO_ACTION"),
    "CONTROL": (r"^\s*CONTROL\s*=|import\b[^\n]*\bCONTROL\b|\bNO_ACTION as \w+", "NO_ACTION"),
    "treatment group": (
        r"""["']group["']\s*[:=]=?\s*["']treatment["']|["']treatment["'],\s*["']holdout["']"""
        r"""|["']holdout["'] if [^\n]* else ["']treatment["']|\btreatment[- ]group\b"""
        r"""|["']holdout["'],\s*["']treatment["']|== ["']treatment["']""",
        "decided (the decision log's group)",
    ),
    "campaign_history": (r"\bcampaign_history\b", "campaign_exposures"),
    "nextbest score": (r"\bnextbest score\b", "nextbest decide-batch"),
    "score_customers": (r"\bscore_customers\b", "decide_customers"),
    "consent?id_type": (r"/consent\?id_type", "POST /customers/lookup/consent"),
    "terms.arms": (r"\bterms\.arms\b|\bCatalogTerms\.arms\b", "Terms.action_ids"),
}

#: The glossary lists every retired name with the one that replaced it.
GLOSSARY = "docs/glossary.md"
#: Where else a retired name is declared retired: the mapping that reads old data, the
#: data dictionary that names the old file, the hidden CLI alias, the refusal of the old
#: consent form.
DECLARED_IN: dict[str, set[str]] = {
    "treatment group": {"nextbest/core/vocabulary.py"},
    "consent?id_type": {"serving/service.py"},
    "campaign_history": {
        "nextbest/customers/sources/files.py",
        "docs/data-dictionary.md",
    },
    "nextbest score": {
        "nextbest/commands/decide_batch.py",
        "docs/architecture.md",
    },
}


def _files() -> list[Path]:
    out: list[Path] = []
    for top in SEARCHED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in SUFFIXES and "__pycache__" not in path.parts and path.is_file():
                out.append(path)
    return [*out, ROOT / "README.md"]


@pytest.mark.parametrize("name", sorted(RETIRED))
def test_no_retired_spelling_outside_its_declaration(name: str) -> None:
    pattern, current = RETIRED[name]
    found = re.compile(pattern, re.MULTILINE)
    allowed = DECLARED_IN.get(name, set()) | {GLOSSARY}
    hits = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for path in _files()
        if str(path.relative_to(ROOT)) not in allowed
        for text in [path.read_text(encoding="utf-8", errors="replace")]
        for m in found.finditer(text)
    ]
    assert not hits, f"retired spelling {name!r} (use {current}):\n" + "\n".join(hits)


@pytest.mark.parametrize(
    "line",
    [
        "from nextbest.core.vocabulary import NO_ACTION as CONTROL",
        'CONTROL_ARM = "no_action"',
        '    "group": "holdout" if h else "treatment",',
        'np.where(holdout, "holdout", "treatment")',
        'if d["group"] == "treatment":',
        "Lift is treatment group against holdout.",
        "raw/campaign_history.parquet",
        "run `nextbest score --channel email`",
        "GET /customers/{id}/consent?id_type=email",
    ],
)
def test_the_patterns_find_a_retired_spelling(line: str) -> None:
    """Each pattern would fail the search on a line that brings a retired name back."""
    assert any(re.search(p, line, re.MULTILINE) for p, _ in RETIRED.values())


def test_the_current_words_pass() -> None:
    """The words that replaced them, and the uplift models' own "treatment" (the arm a
    row received), are not retired spellings."""
    fine = [
        "from nextbest.core.vocabulary import DECIDED, HOLDOUT, NO_ACTION",
        'roles = (("treatment", treatment), ("outcome", outcome))',
        "nextbest uplift fit --treatment arm --control no_action",
        "raw/campaign_exposures.parquet and nextbest decide-batch",
        "POST /customers/lookup/consent",
    ]
    for line in fine:
        assert not any(re.search(p, line, re.MULTILINE) for p, _ in RETIRED.values()), line
