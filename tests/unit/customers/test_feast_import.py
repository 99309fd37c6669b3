"""Feast imported without typeguard's instrumentation, unless the settings keep it.

Each case runs in a fresh interpreter: the import happens once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

_PROBE = """
import json, typeguard, typeguard._decorators
from nextbest.core.settings import get_settings
from nextbest.customers.feast_import import import_feast
from nextbest.customers.feast_definitions import build_definitions
from nextbest.decisions.catalog import load_catalog
settings = get_settings()
feast = import_feast(settings)
try:
    feast.Entity(name=123, join_keys=["customer_id"])
    error = None
except typeguard.TypeCheckError as exc:
    error = str(exc)
defs = build_definitions(settings, load_catalog(settings.catalog).terms())
print(json.dumps({
    "error": error,
    "decorator_restored": typeguard.typechecked is typeguard._decorators.typechecked,
    "feature_service": any(isinstance(v, feast.FeatureService) for v in defs.objects),
}))
"""


def _probe(type_checks: bool) -> dict:
    env = {**os.environ, "NEXTBEST_FEAST_TYPE_CHECKS": "1" if type_checks else "0"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("type_checks", [False, True])
def test_type_checks_follow_the_setting_and_the_definitions_load(type_checks: bool) -> None:
    out = _probe(type_checks)
    # On: Feast's constructors reject a wrongly typed argument, and the project's
    # definitions still load, so they are type-correct. Off: the check is gone.
    if type_checks:
        assert out["error"] and '"name" (int) is not an instance of str' in out["error"]
    else:
        assert out["error"] is None
    assert out["decorator_restored"] and out["feature_service"]
