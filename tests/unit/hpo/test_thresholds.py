"""`mmlab thresholds build`: per regime, the thresholds of the best feasible trial of a sweep."""

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from mmlab.cli import app
from mmlab.errors import ConfigError, DataError
from mmlab.hpo.thresholds import build_thresholds

TAU = "pipeline.queue_aware.tau_entry"


def write_sweep(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "study.toml").write_text('[study]\nname = "tau"\n[objective]\nmetrics = ["net_bps"]\n'
                                  'directions = ["maximize"]\nconstraints = ["taker_share <= 0.09"]\n')
    pl.DataFrame({
        "number": [0, 1, 2, 3],
        "state": ["complete", "complete", "complete", "pruned"],
        f"param.{TAU}": [0.3, 0.5, 0.7, 0.9],
        "m.taker_share": [0.0, 0.0, 0.0, 0.0],
        "regime.normal.net_bps": [1.0, 2.0, 0.5, 9.0],
        "regime.normal.taker_share": [0.0, 0.0, 0.0, 0.0],
        "regime.high_vol.net_bps": [3.0, 1.0, 2.0, 9.0],
        "regime.high_vol.taker_share": [0.2, 0.0, 0.0, 0.0],  # trial 0 is infeasible in high_vol
    }).write_parquet(d / "trials.parquet")


def test_best_feasible_trial_per_regime(tmp_path):
    write_sweep(tmp_path / "s")
    res = build_thresholds(tmp_path / "s")
    assert res["regimes"]["normal"]["params"] == {TAU: 0.5}
    assert res["regimes"]["high_vol"]["params"] == {TAU: 0.7}  # 0.3 breaks taker_share there; 0.9 was pruned
    assert '"pipeline.queue_aware.tau_entry" = 0.7' in (tmp_path / "s" / "thresholds.toml").read_text()
    assert json.loads((tmp_path / "s" / "thresholds.json").read_text())["metric"] == "net_bps"


def test_cli_and_errors(tmp_path):
    write_sweep(tmp_path / "s")
    r = CliRunner().invoke(app, ["thresholds", "build", "--study-dir", str(tmp_path / "s"), "--out",
                                 str(tmp_path / "t.toml")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t.toml").exists()
    with pytest.raises(ConfigError, match="were not searched"):
        build_thresholds(tmp_path / "s", params=["strategy.grid_num"])
    with pytest.raises(DataError, match="is not a study folder"):
        build_thresholds(tmp_path)
