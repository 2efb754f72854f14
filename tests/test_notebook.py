"""The evaluation notebook runs top to bottom (so it cannot rot)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_evaluation_notebook_executes() -> None:
    notebook = nbformat.read(REPO / "notebooks" / "evaluation.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.get("output_type") == "error"]
    assert any("image/png" in output.get("data", {}) for output in outputs)  # the precision-recall curves
    printed = "".join(str(output.get("text", "")) for output in outputs)
    assert "trained" in printed and "P@5" in printed
