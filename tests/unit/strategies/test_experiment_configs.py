"""Every experiments/<strategy>_btcusdt.toml loads and builds its strategy's pipeline."""

from pathlib import Path

import pytest

from mmlab.config import load_config
from mmlab.sim.strategies import get_strategy

EXPERIMENTS = Path(__file__).resolve().parents[3] / "experiments"
CONFIGS = sorted(p for p in EXPERIMENTS.glob("*_btcusdt.toml") if not p.name.startswith("study_"))


def test_there_is_one_config_per_strategy():
    names = {p.name for p in CONFIGS}
    for strategy in ("grid", "avellaneda_stoikov", "glft", "queue_mm", "imbalance_alpha", "example_custom"):
        assert f"{strategy}_btcusdt.toml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_experiment_config_loads_and_builds(path):
    cfg = load_config(path)
    assert cfg.data.symbols == ("BTCUSDT",)
    spec = get_strategy(cfg.strategy.name)
    params = spec.build_params(cfg, [_Symbol()])
    assert len(params) == 1


class _Symbol:
    symbol = "BTCUSDT"
    tick_size = 0.1
    lot_size = 0.001
