"""`mmlab hpo` is a command and a group: the study run, `hpo worker` joining it, `hpo export`."""

import pytest
from typer.testing import CliRunner

from mmlab.cli import app

from conftest import WINDOW

pytestmark = pytest.mark.real_data


def study_toml(root) -> str:
    return f"""
[study]
name = "cli"
seed = 1
split = "1min"
pruner = "none"

[base.data]
root = "{root}"
venue = "binance-usdm"
symbols = ["BTCUSDT"]
start = "{WINDOW['start']}"
end = "{WINDOW['end']}"

[base.strategy]
grid_num = 2

[search]
"strategy.half_spread_ticks" = {{low = 0.5, high = 4.0}}

[objective]
metrics = ["pnl_net", "taker_share"]
directions = ["maximize", "minimize"]
"""


def test_hpo_runs_a_study_then_a_worker_joins_it_and_export_rewrites_the_folder(btc_store, tmp_path):
    cfg = tmp_path / "study.toml"
    cfg.write_text(study_toml(btc_store))
    url = f"journal:{tmp_path / 'journal.log'}"
    out = tmp_path / "studies" / "cli"
    r = CliRunner().invoke(app, ["hpo", "--config", str(cfg), "--n-trials", "2", "--storage", url, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "best.toml").exists() and (out / "pareto.png").exists()
    r = CliRunner().invoke(app, ["hpo", "worker", "--study", "cli", "--storage", url, "--n-trials", "1"])
    assert r.exit_code == 0, r.output
    assert "worker added 1 trial(s) to study cli" in r.output
    r = CliRunner().invoke(app, ["hpo", "export", "--study", "cli", "--storage", url, "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert '"n_trials": 3' in r.output
    assert "## Pareto front" in (out / "report.md").read_text()


def test_hpo_without_options_prints_help():
    r = CliRunner().invoke(app, ["hpo"])
    assert r.exit_code == 0 and "worker" in r.output


def test_worker_on_an_unknown_study_names_it(tmp_path):
    r = CliRunner().invoke(app, ["hpo", "worker", "--study", "nope", "--storage", f"journal:{tmp_path / 'j.log'}"])
    assert r.exit_code == 2 and "study 'nope' is not in" in r.output


def test_bad_study_file_exits_2_naming_the_key(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[search]\n"strategy.half_spred_ticks" = {low = 1.0, high = 2.0}\n')
    r = CliRunner().invoke(app, ["hpo", "--config", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "did you mean 'half_spread_ticks'" in r.output
