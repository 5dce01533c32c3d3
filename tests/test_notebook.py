"""notebooks/analysis.ipynb runs top to bottom on a synthetic sweep."""

import nbformat
from nbclient import NotebookClient

from tests.conftest import ROOT
from tests.fake_sweep import gold_budget_sweep


def test_analysis_notebook_executes(tmp_path, monkeypatch):
    gold_budget_sweep(tmp_path / "sweep")
    monkeypatch.setenv("NERDISTILL_SWEEP", str(tmp_path / "sweep"))
    notebook = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        o.get("data", {}).get("text/markdown", "") for o in outputs
    )
    assert "3 runs in 3 groups" in text and "| schedule=sequential, gold_budget=100 |" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4  # test F1, share, val F1, gold budget
