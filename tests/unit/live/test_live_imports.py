"""ARCHITECTURE.md rules 5 and 9 for live/: nothing imports the training-only labels; ``mmlab`` never imports live."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import live
import live.venues


def _loaded(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import json, sys; print(json.dumps(sorted(sys.modules)))"],
                         check=True, capture_output=True, text=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_live_modules_do_not_import_labels():
    mods = ["live." + m.name for m in pkgutil.iter_modules(live.__path__)]
    mods += ["live.venues." + m.name for m in pkgutil.iter_modules(live.venues.__path__)]
    loaded = _loaded("; ".join(f"import {m}" for m in mods))
    assert not [m for m in loaded if m == "mmlab.labels" or m.startswith("mmlab.labels.")]


def test_mmlab_cli_does_not_import_live():
    loaded = _loaded("import mmlab.cli, mmlab.cli_live")
    assert "live" not in loaded and "websockets" not in loaded and "prometheus_client" not in loaded
