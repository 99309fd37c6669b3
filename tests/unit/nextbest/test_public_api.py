"""The public API: ``nextbest.__all__`` names the steps a user scripts, each defined
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
    assert {"get_settings", "resolve", "build_features", "train", "decide"} <= set(nextbest.__all__)
    assert "decide_customers" in nextbest.__all__
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
