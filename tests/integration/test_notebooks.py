"""The analysis notebooks run top to bottom on the session's small world, and the
repository holds them without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT, World

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_notebooks_are_numbered_and_stripped() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert [n[:3] for n in names] == ["01_", "02_", "03_", "04_"], names
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [], f"{path.name}: a code cell holds outputs"
                assert cell.execution_count is None, f"{path.name}: execution count kept"


def run_notebook(path: Path, home: Path, timeout: int = 300) -> nbformat.NotebookNode:
    """Execute a notebook in a fresh kernel with ``NEXTBEST_HOME=home``; raises on a cell error."""
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "NEXTBEST_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    # nbclient passes extra keyword arguments of the kernel start to the kernel process.
    client.execute(env=env)
    return nb


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, world: World) -> None:
    nb = run_notebook(path, world.home)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{path.name}: a cell did not run"
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    # The last cell shows a result, so the notebook got to its point.
    assert code[-1].outputs, f"{path.name}: the last cell shows nothing"
