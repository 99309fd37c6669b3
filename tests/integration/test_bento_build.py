"""``bentoml build`` packages the decision service from ``bentofile.yaml``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_bentoml_build_packages_the_service(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True"}
    done = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    bentos = list((tmp_path / "bentos" / "nextbest").glob("*/bento.yaml"))
    assert len(bentos) == 1
    bento = yaml.safe_load(bentos[0].read_text())
    assert bento["service"] == "serving.service:NextBest"
    src = bentos[0].parent / "src"
    for path in (
        "serving/service.py",
        "nextbest/decisions/engine.py",
        "feature_repo/definitions.py",
        "config/catalog.yaml",
        "config/policy.yaml",
    ):
        assert (src / path).is_file(), path
    assert not (src / "var").exists() and not (src / "tests").exists()
