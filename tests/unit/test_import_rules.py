"""ARCHITECTURE.md dependency rules 2, 5 and 8, checked by importing modules in a fresh interpreter."""

import json
import pkgutil
import subprocess
import sys

import pytest



def _modules_loaded_by(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


def _submodules(package: str) -> list[str]:
    try:
        pkg = __import__(package, fromlist=["_"])
    except ModuleNotFoundError:
        pytest.skip(f"{package} does not exist in this version")
    return [package] + [f"{package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)]


FORBIDDEN_FOR_PIPELINE = ("polars", "lightgbm", "onnxruntime", "mmlab.sim", "mmlab.data", "mmlab.labels")


@pytest.mark.parametrize("package", ["mmlab.pipeline", "mmlab.features"])
def test_pipeline_and_features_import_only_types_numpy_numba(package):
    for module in _submodules(package):
        loaded = _modules_loaded_by(module)
        bad = sorted(m for m in loaded for f in FORBIDDEN_FOR_PIPELINE if m == f or m.startswith(f + "."))
        assert not bad, f"{module} imports forbidden modules: {bad}"


@pytest.mark.parametrize("package", ["mmlab.pipeline", "mmlab.features", "mmlab.sim"])
def test_nothing_on_the_trading_path_imports_labels(package):
    for module in _submodules(package):
        loaded = _modules_loaded_by(module)
        assert not any(m == "mmlab.labels" or m.startswith("mmlab.labels.") for m in loaded), f"{module} imports mmlab.labels"


def test_mmlab_imports_no_live_strategies_or_experiments_and_no_io_heavy_deps():
    loaded = _modules_loaded_by("mmlab")
    for top in ("live", "strategies", "experiments", "polars", "numba", "lightgbm"):
        assert top not in loaded, f"import mmlab pulled in {top}"


def test_cli_import_is_lazy():
    loaded = _modules_loaded_by("mmlab.cli")
    for heavy in ("polars", "numba", "pyarrow", "lightgbm", "onnxruntime", "optuna", "live"):
        assert heavy not in loaded, f"mmlab.cli imports {heavy} at import time"
