"""A store of the shared BTCUSDT 2024-07-18/19 capture, one grid run on it and a model trained and exported from it."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CAPTURES = ("binance_usdm/usdm_btcusdt_20240718.gz", "binance_usdm/usdm_btcusdt_20240719.gz")


def grid_config(root: Path, *overrides: str):
    from mmlab.config import load_config

    return load_config(REPO / "experiments" / "grid_btcusdt.toml", overrides=[f'data.root="{root}"', *overrides])


@pytest.fixture(scope="session")
def grid_cfg():
    """``grid_cfg(root, *overrides)``: the reference grid config on a store."""
    return grid_config


@pytest.fixture(scope="session")
def btc_store(real_data, tmp_path_factory) -> Path:
    from typer.testing import CliRunner

    from mmlab.cli import app

    root = tmp_path_factory.mktemp("ml_store")
    r = CliRunner().invoke(app, ["data", "ingest", *[str(real_data / c) for c in CAPTURES], "--out", str(root), "--json"])
    assert r.exit_code == 0, r.output
    return root


@pytest.fixture(scope="session")
def btc_run(btc_store, tmp_path_factory) -> Path:
    """Run directory of the reference grid on the capture (1,407 orders, 436 fills)."""
    from mmlab.sim.engine import run_backtest, write_run

    return write_run(run_backtest(grid_config(btc_store)), tmp_path_factory.mktemp("ml_runs") / "grid")


@pytest.fixture(scope="session")
def trained(btc_run, tmp_path_factory) -> Path:
    """models/<id> trained on the grid run (filled_1s, tick features, seed 7) and exported to ONNX."""
    from mmlab.ml.export import export_onnx
    from mmlab.ml.train import train_model

    d = tmp_path_factory.mktemp("ml_models") / "models" / "m7"
    train_model([btc_run / "labels.parquet"], target="filled_1s", out=d, seed=7, num_boost_round=60)
    export_onnx(d)
    return d
