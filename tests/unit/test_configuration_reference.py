"""docs/configuration.md is what ``Settings`` says today, and the docs name only real
settings.

The reference is generated (``python -m devtools.settings_reference``); these tests fail
when a setting was added, removed or changed without re-running it, and when a page names
a ``NEXTBEST_*`` variable that no setting reads.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from devtools import settings_reference
from nextbest.core.settings import PROJECT_ROOT, Settings

#: A variable as a page writes it; ``NEXTBEST_RETENTION_*_DAYS`` and ``NEXTBEST_<FIELD>``
#: are patterns, not names, and are left out.
VARIABLE = re.compile(r"\bNEXTBEST_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*<])")


def _pages() -> list[Path]:
    return [
        PROJECT_ROOT / "README.md",
        PROJECT_ROOT / "benchmarks" / "README.md",
        *sorted((PROJECT_ROOT / "docs").rglob("*.md")),
    ]


def test_the_configuration_reference_is_current() -> None:
    written = settings_reference.OUT.read_text()
    assert written == settings_reference.render(), (
        "docs/configuration.md is not current: run `python -m devtools.settings_reference`"
    )


def test_the_reference_has_one_row_per_setting() -> None:
    text = settings_reference.render()
    rows = [ln for ln in text.splitlines() if ln.startswith("| `NEXTBEST_")]
    assert len(rows) == len(Settings.model_fields)
    for name in Settings.model_fields:
        assert any(ln.startswith(f"| `NEXTBEST_{name.upper()}` | `{name}` |") for ln in rows), name


def test_every_variable_a_page_names_is_a_setting() -> None:
    known = {f"NEXTBEST_{name.upper()}" for name in Settings.model_fields}
    unknown = {
        (page.relative_to(PROJECT_ROOT).as_posix(), var)
        for page in _pages()
        for var in VARIABLE.findall(page.read_text())
        if var not in known
    }
    assert not unknown, f"variables no setting reads: {sorted(unknown)}"


def test_the_variable_pattern_skips_wildcards() -> None:
    text = "`NEXTBEST_HOME=var`, NEXTBEST_RETENTION_*_DAYS, NEXTBEST_<FIELD>, NEXTBEST_*."
    assert VARIABLE.findall(text) == ["NEXTBEST_HOME"]


class _Other(BaseSettings):
    """A settings class the generator has not seen: every kind of field it renders."""

    model_config = SettingsConfigDict(env_prefix="OTHER_")

    where: Path = Field(PROJECT_ROOT / "config" / "x.yaml", description="A file | a pipe.")
    maybe: int | None = Field(None, ge=1, description="Days.")
    mode: str = Field("a", pattern="^(a|b)$")
    names: list[str] = Field(default_factory=lambda: ["s", "t"], description="Names.")
    since: datetime = Field(datetime(2026, 1, 2, tzinfo=UTC), description="When.")
    on: bool = Field(False, description="A switch.")

    @property
    def out_dir(self) -> Path:
        """Where it writes."""
        return self.where.parent / "out"


def test_the_generator_renders_types_bounds_and_defaults() -> None:
    text = settings_reference.render(_Other)
    rows = {ln.split(" | ")[1]: ln for ln in text.splitlines() if ln.startswith("| `OTHER_")}
    assert list(rows) == ["`where`", "`maybe`", "`mode`", "`names`", "`since`", "`on`"]
    assert rows["`where`"] == (
        "| `OTHER_WHERE` | `where` | `Path` |  | `<project>/config/x.yaml` | A file \\| a pipe. |"
    )
    assert "| `int \\| None` | ≥ 1 | unset | Days. |" in rows["`maybe`"]
    assert "| matches `^(a\\|b)$` | `a` |" in rows["`mode`"]
    assert '| `["s", "t"]` | Names. |' in rows["`names`"]
    assert "| `2026-01-02T00:00:00+00:00` |" in rows["`since`"]
    assert "| `false` | A switch. |" in rows["`on`"]
    assert "| `out_dir` |" in text and "Where it writes." in text
    assert str(PROJECT_ROOT) not in text  # the same file in every checkout


def test_check_says_whether_the_file_is_current(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    assert settings_reference.main(["--out", str(out), "--check"]) == 1  # missing
    assert settings_reference.main(["--out", str(out)]) == 0
    assert out.read_text() == settings_reference.render()
    assert settings_reference.main(["--out", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace("NEXTBEST_SEED", "NEXTBEST_SEEDS"))
    assert settings_reference.main(["--out", str(out), "--check"]) == 1
