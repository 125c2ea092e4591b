"""One synthetic store and two backtest runs (half_spread_ticks 2 and 1) shared by the analysis tests."""

from pathlib import Path

import pytest

HALF_SPREADS = (2.0, 1.0)


@pytest.fixture(scope="session")
def analysis_store(tmp_path_factory) -> Path:
    from mmlab.data.synth import synth

    root = tmp_path_factory.mktemp("analysis_store")
    synth(root, hours=0.05, seed=1, symbol="SYNTHUSDT", date="2024-01-01")
    return root


def run_config(root: Path, half_spread_ticks: float, symbols=("SYNTHUSDT",)):
    from mmlab.config import load_config

    return load_config({
        "data": {"root": str(root), "symbols": list(symbols)},
        "strategy": {"half_spread_ticks": half_spread_ticks, "order_qty": 0.01, "max_position": 0.05},
        "sim": {"maker_fee": -0.00005, "taker_fee": 0.0005, "initial_cash": 1000.0},
    })


@pytest.fixture(scope="session")
def run_dirs(analysis_store, tmp_path_factory) -> dict[float, Path]:
    """{half_spread_ticks: run directory} of two runs on the same data."""
    from mmlab.sim.engine import run_backtest, write_run

    out = tmp_path_factory.mktemp("analysis_runs")
    dirs = {}
    for hs in HALF_SPREADS:
        dirs[hs] = write_run(run_backtest(run_config(analysis_store, hs)), out / f"hs{hs:g}")
    return dirs


@pytest.fixture(scope="session")
def run_dir(run_dirs) -> Path:
    return run_dirs[HALF_SPREADS[0]]
