"""Two `mmlab hpo worker` processes on one study (journal file and SQLite storages), on the real BTCUSDT capture."""

import os
import subprocess
import sys

import pytest

from mmlab.data.ingest import IngestOptions, ingest
from mmlab.hpo.runner import create_study, load_stored_study
from mmlab.hpo.study import parse_study

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def study_cfg(real_data, tmp_path_factory):
    src = real_data / "binance_usdm"
    root = tmp_path_factory.mktemp("store")
    ingest([src / "usdm_btcusdt_20240718.gz", src / "usdm_btcusdt_20240719.gz"], "binance-usdm", root, IngestOptions())
    return parse_study({
        "study": {"name": "two_workers", "seed": 5, "split": "1min", "pruner": "none", "n_startup_trials": 1},
        "base": {"data": {"root": str(root), "venue": "binance-usdm", "symbols": ["BTCUSDT"],
                          "start": "2024-07-19T00:00:00Z", "end": "2024-07-19T00:02:00Z"},
                 "strategy": {"grid_num": 2}},
        "search": {"strategy.half_spread_ticks": {"low": 0.5, "high": 4.0}},
        "objective": {"metrics": ["pnl_net"], "directions": ["maximize"]},
    })


def run_workers(url: str, name: str, n_workers: int, n_trials: int, cwd) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "mmlab.cli", "hpo", "worker", "--study", name, "--storage", url,
                               "--n-trials", str(n_trials), "--worker-index", str(i + 1)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd)
             for i in range(n_workers)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out


@pytest.mark.parametrize("kind", ["journal", pytest.param("sqlite", marks=pytest.mark.slow)])
def test_two_worker_processes_share_one_study(study_cfg, tmp_path, kind):
    url = f"journal:{tmp_path / 'study.log'}" if kind == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    create_study(study_cfg, url)
    run_workers(url, "two_workers", 2, 2, tmp_path)
    study, sc = load_stored_study("two_workers", url)
    assert sc.to_json() == study_cfg.to_json()
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(study.trials) == len(done) == 4
    assert len({t.user_attrs["result"]["pid"] for t in done}) == 2
    assert len({t.number for t in done}) == 4
