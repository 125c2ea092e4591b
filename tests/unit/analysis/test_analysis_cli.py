"""`mmlab report`, `mmlab compare`, `mmlab perf-gate` and the laziness of their imports."""

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mmlab.cli import app

REPO = Path(__file__).resolve().parents[3]
BUDGETS = REPO / "benchmarks" / "stage_budgets.json"
runner = CliRunner()


def test_report_command(run_dir, tmp_path):
    r = runner.invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "rep")])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == str(tmp_path / "rep" / "report.html")
    assert (tmp_path / "rep" / "report.html").exists()


def test_report_command_on_a_missing_run_exits_2(tmp_path):
    r = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_compare_command_prints_the_delta_table(run_dirs, tmp_path):
    r = runner.invoke(app, ["compare", str(run_dirs[2.0]), str(run_dirs[1.0]), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    for needle in ("pnl_net", "n_fills", "b - a", "strategy.half_spread_ticks", "compare.html"):
        assert needle in r.output, needle
    r = runner.invoke(app, ["compare", str(run_dirs[2.0]), str(run_dirs[1.0]), "--out", str(tmp_path / "cmp"), "--json"])
    assert json.loads(r.output)["config_diff"] == {"strategy.half_spread_ticks": {"a": 2.0, "b": 1.0}}


def test_perf_gate_command_exit_codes(tmp_path):
    r = runner.invoke(app, ["perf-gate", "--baseline", str(BUDGETS), "--current", str(BUDGETS), "--threshold", "3"])
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output
    doc = json.loads(BUDGETS.read_text())
    doc["budgets"]["stage_emit"]["p95"] *= 1.10
    cur = tmp_path / "cur.json"
    cur.write_text(json.dumps(doc))
    md = tmp_path / "gate.md"
    r = runner.invoke(app, ["perf-gate", "--baseline", str(BUDGETS), "--current", str(cur), "--report", str(md)])
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.output and "`stage_emit`" in md.read_text()
    r = runner.invoke(app, ["perf-gate", "--baseline", str(tmp_path / "nope.json"), "--current", str(cur)])
    assert r.exit_code == 2 and "does not exist" in r.output


def _loaded_by(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    return set(json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout))


def test_cli_and_analysis_imports_stay_light():
    for module in ("mmlab.cli", "mmlab.analysis"):
        loaded = _loaded_by(module)
        for heavy in ("polars", "numba", "matplotlib"):
            assert heavy not in loaded, f"import {module} pulled in {heavy}"


def test_analysis_never_imports_the_simulator():
    loaded = _loaded_by("mmlab.analysis.report, mmlab.analysis.compare, mmlab.analysis.perf_gate")
    assert not any(m == "mmlab.sim" or m.startswith("mmlab.sim.") for m in loaded)
