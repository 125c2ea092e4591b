"""PSI / KS drift per feature, Brier / ECE online, metric names, and `mmlab drift`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmlab.analysis.drift import DriftThresholds, drift_report, ks_statistic, psi, report_markdown
from mmlab.cli import app
from mmlab.errors import ConfigError

runner = CliRunner()


def test_psi_and_ks_values():
    rng = np.random.default_rng(0)
    a = rng.normal(size=20_000)
    assert psi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert psi(a, rng.normal(size=20_000)) < 0.01
    assert psi(a, rng.normal(1.0, size=20_000)) > 0.3
    assert ks_statistic(a, a) == 0.0
    assert ks_statistic(np.zeros(10), np.ones(10)) == 1.0
    assert np.isnan(psi([], a)) and np.isnan(ks_statistic(a, [np.nan]))


def test_report_names_and_blocks():
    rng = np.random.default_rng(1)
    tr = {"x": rng.normal(size=5000), "y": rng.normal(size=5000)}
    nw = {"x": rng.normal(size=5000), "y": rng.normal(2.0, size=5000)}
    y = rng.random(5000) < 0.3
    rep = drift_report(tr, nw, y_new=y, p_new=np.full(5000, 0.3))
    assert set(rep["metrics"]) == {'psi_feature{feature="x"}', 'ks_feature{feature="x"}', 'psi_feature{feature="y"}',
                                   'ks_feature{feature="y"}', "brier_online", "ece_online"}
    assert rep["drift"] and rep["features"]["y"]["drift"] and not rep["features"]["x"]["drift"]
    assert rep["calibration"]["ece_online"] < 0.05 and not rep["calibration"]["out_of_spec"]
    assert "| y |" in report_markdown(rep) and "Drift: YES" in report_markdown(rep)
    with pytest.raises(ConfigError, match="psi_block must be > 0"):
        DriftThresholds(psi_block=0)
    with pytest.raises(ConfigError, match="no common features"):
        drift_report({"a": [1.0]}, {"b": [1.0]})


def test_drift_cli_on_the_real_run(trained, btc_run, tmp_path):
    out = tmp_path / "drift.md"
    r = runner.invoke(app, ["drift", "--train", str(trained), "--new", str(btc_run / "labels.parquet"),
                            "--model", str(trained), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "brier_online=" in r.output and "ece_online=" in r.output
    rep = json.loads(out.with_suffix(".json").read_text())
    assert 'psi_feature{feature="spread_ticks"}' in rep["metrics"] and rep["model"] == "m7"
    assert out.read_text().startswith("# Drift report")
    r = runner.invoke(app, ["drift", "--train", str(btc_run), "--new", str(btc_run), "--fail-on-drift", "--json"])
    assert r.exit_code == 0 and not json.loads(r.output)["drift"]  # a window against itself
    r = runner.invoke(app, ["drift", "--train", str(btc_run), "--new", str(btc_run), "--psi-block", "1e-9",
                            "--ks-block", "1e-9", "--fail-on-drift"])
    assert r.exit_code == 0  # identical windows: psi 0 and ks 0 do not exceed any block
