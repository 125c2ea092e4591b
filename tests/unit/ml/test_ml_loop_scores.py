"""Model scores in the backtest loop: every tick scored, batch = row-by-row, orders gated by tau_entry/tau_hold."""

import json
import shutil

import numpy as np
import pytest

from mmlab.errors import ConfigError
from mmlab.ml.dataset import tick_features
from mmlab.ml.loop_scores import score_layout, tick_score_nb
from mmlab.ml.registry import Registry
from mmlab.sim.engine import run_backtest


def test_score_layout_round_trips_tick_times():
    first = 1_721_347_022_859_000_000
    interval = 100_000_000
    ts = first + interval * np.array([0, 1, 2, 5, 0, 2])
    sym = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    block = score_layout(ts, sym, scores, 2, interval)
    row = np.concatenate([np.zeros(7), block[0]])  # the pipeline's own columns come first
    assert tick_score_nb(row, first) == 0.1 and tick_score_nb(row, first + 5 * interval) == 0.6
    assert np.isnan(tick_score_nb(row, first + 3 * interval))  # an unscored tick
    assert np.isnan(tick_score_nb(row, first - interval)) and np.isnan(tick_score_nb(row, first + 6 * interval))
    assert tick_score_nb(np.concatenate([np.zeros(7), block[1]]), first + 2 * interval) == 0.9


@pytest.fixture(scope="module")
def registry(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("loop_models") / "models"
    shutil.copytree(trained, root / "m7")
    reg = Registry(root / "registry")
    reg.register(root / "m7")
    reg.promote("m7", to="active")
    reg.register(root / "m7")  # re-registering keeps the slot
    return root / "registry"


@pytest.fixture(scope="module")
def base_and_scored(btc_store, btc_run, registry, grid_cfg):
    grid_config = grid_cfg
    base = run_backtest(grid_config(btc_store))
    scored = run_backtest(grid_config(btc_store, 'model.id="active"', f'model.registry="{registry}"',
                                      'model.shadow_id="m7"'))
    return base, scored


def test_every_tick_is_scored_and_the_gate_removes_orders(base_and_scored, trained):
    base, scored = base_and_scored
    info = scored.summary["model"]
    meta = json.loads((trained / "lgbm_meta.json").read_text())
    assert info["id"] == "m7" and info["requested"] == "active"
    assert info["n_ticks_scored"] == scored.summary["n_decisions"] == base.summary["n_decisions"] == 4795
    assert info["tau_entry"] == meta["thresholds"]["tau_entry"] and info["tau_hold"] == meta["thresholds"]["tau_hold"]
    assert info["shadow_score_distribution"] == info["model_score_distribution"]  # same model in the shadow slot
    assert 0 < scored.summary["n_orders"] < base.summary["n_orders"] == 1407
    assert scored.summary["events"] == base.summary["events"]


def test_market_features_do_not_depend_on_our_orders(base_and_scored):
    base, scored = base_and_scored
    a, b = tick_features(base.state), tick_features(scored.state)
    assert a.equals(b)


def test_row_scoring_gives_the_same_decisions_as_batch(base_and_scored, btc_store, registry, grid_cfg):
    grid_config = grid_cfg
    _, scored = base_and_scored
    row = run_backtest(grid_config(btc_store, 'model.id="m7"', f'model.registry="{registry}"', 'model.scoring="row"'))
    assert row.summary["model"]["model_score_distribution"] == scored.summary["model"]["model_score_distribution"]
    assert row.orders.equals(scored.orders) and row.fills.equals(scored.fills)
    assert row.decisions.equals(scored.decisions)


def test_threshold_overrides_and_errors(btc_store, registry, grid_cfg):
    grid_config = grid_cfg
    off = run_backtest(grid_config(btc_store, 'model.id="m7"', f'model.registry="{registry}"', "model.tau_entry=0.0",
                                   "model.tau_hold=0.0"))
    assert off.summary["n_orders"] == 1407  # thresholds off: the grid's own decisions
    with pytest.raises(ConfigError, match="model.tau_entry|tau_entry must be a probability"):
        grid_config(btc_store, "model.tau_entry=2")
    with pytest.raises(ConfigError, match="'nope' is not in"):
        run_backtest(grid_config(btc_store, 'model.id="nope"', f'model.registry="{registry}"'))


def test_order_feature_models_are_refused_in_the_loop(btc_run, btc_store, tmp_path, grid_cfg):
    grid_config = grid_cfg
    from mmlab.ml.export import export_onnx
    from mmlab.ml.train import train_model

    d = tmp_path / "om"
    train_model([btc_run / "labels.parquet"], out=d, features="order", num_boost_round=10)
    export_onnx(d)
    with pytest.raises(ConfigError, match="uses order features .*--features tick"):
        run_backtest(grid_config(btc_store, f'model.id="{d}"'))
