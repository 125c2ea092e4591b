"""The research notebooks run top to bottom on the shared real captures (executed with nbclient)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "experiments" / "notebooks"


def _execute(name: str, real_data: Path, tmp_path: Path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MMLAB_REAL_DATA", str(real_data))
    monkeypatch.setenv("MMLAB_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return nb


def _outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(json.dumps(out.get("data", {})))
    return "\n".join(parts)


@pytest.mark.real_data
def test_quickstart_notebook(real_data, tmp_path, monkeypatch):
    nb = _execute("quickstart", real_data, tmp_path, monkeypatch)
    text = _outputs_text(nb)
    assert "markout_bps_1s" in text and "p_fill_1s" in text
    run = tmp_path / "runs" / "grid_btc"
    summary = json.loads((run / "summary.json").read_text())
    # The reference grid on the shared BTCUSDT capture (README golden numbers).
    assert summary["events"] == 413_370 and summary["n_fills"] == 436
    assert (run / "report.html").exists() and (tmp_path / "quickstart.png").exists()


@pytest.mark.real_data
def test_strategy_comparison_notebook(real_data, tmp_path, monkeypatch):
    nb = _execute("strategy_comparison", real_data, tmp_path, monkeypatch)
    text = _outputs_text(nb)
    assert "grid" in text and "pnl_net" in text
    assert (tmp_path / "strategy_comparison.png").exists()


def test_notebooks_are_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: clear the outputs"
