"""The model round-trip notebook runs top to bottom on the shared BTCUSDT capture (executed with nbclient)."""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "experiments" / "notebooks" / "model_roundtrip.ipynb"


@pytest.mark.real_data
def test_model_roundtrip_notebook(real_data, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MMLAB_REAL_DATA", str(real_data))
    monkeypatch.setenv("MMLAB_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "store the notebook without outputs"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    out = json.loads((tmp_path / "model_roundtrip.json").read_text())
    assert out["parity"] is True and out["active"] == "m1"
    assert 0 < out["model"] < out["base"] and out["ticks_scored"] > 0
    manifest = json.loads((tmp_path / "models" / "registry" / "manifest.json").read_text())
    assert manifest["active"] == "m1"
    assert (tmp_path / "models" / "m1" / "model.onnx").exists()
    assert (tmp_path / "runs" / "model" / "summary.json").exists()
    text = "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "PASS" in text and "max |batch - row|" in text
