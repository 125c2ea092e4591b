"""Strategy presets of strategies/: stage choices, [strategy] keys, [pipeline.*] overrides, lookup by name."""

import dataclasses

import pytest

from mmlab.config import load_config
from mmlab.errors import ConfigError
from mmlab.pipeline_config import grid_pipeline
from mmlab.sim.pipeline_strategy import pipeline_sim_decide_nb
from mmlab.sim.strategies import get_strategy
from mmlab.types import SkewMode, SpreadModel

PRESETS = ("avellaneda_stoikov", "glft", "queue_mm", "imbalance_alpha", "example_custom", "strategies.grid")


def _preset(name):
    import importlib

    return importlib.import_module(name if name.startswith("strategies.") else f"strategies.{name}").PRESET


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_builds_with_the_strategy_defaults(name):
    cfg = load_config({"strategy": {"name": name}})
    pl = _preset(name).build(cfg, 2)
    assert len(pl.arr) == 2
    inv = pl.params("inventory")
    assert float(inv["order_qty"]) == cfg.strategy.order_qty
    assert float(inv["max_position"]) == cfg.strategy.max_position


@pytest.mark.parametrize(
    "name,model,skew_mode",
    [("avellaneda_stoikov", SpreadModel.AVELLANEDA_STOIKOV, SkewMode.MODEL), ("glft", SpreadModel.GLFT, SkewMode.MODEL),
     ("queue_mm", SpreadModel.FIXED, SkewMode.FIXED), ("imbalance_alpha", SpreadModel.FIXED, SkewMode.FIXED)],
)
def test_stage_choices(name, model, skew_mode):
    pl = _preset(name).build(load_config({"strategy": {"name": name}}), 1)
    assert int(pl.params("spread")["model"]) == model
    assert int(pl.params("inventory")["skew_mode"]) == skew_mode


def test_queue_mm_quotes_at_the_touch_and_keeps_queue_spots():
    pl = _preset("queue_mm").build(load_config({"strategy": {"name": "queue_mm"}}), 1)
    assert float(pl.params("spread")["half_spread_ticks"]) == 0.0
    q = pl.params("queue_aware")
    assert int(q["keep_ticks"]) > 0 and float(q["tau_entry"]) > 0.0


def test_imbalance_alpha_skews_the_fair_price_by_book_imbalance():
    sp = _preset("imbalance_alpha").build(load_config({"strategy": {"name": "imbalance_alpha"}}), 1).params("spread")
    assert float(sp["imbalance_skew_ticks"]) > 0.0 and int(sp["imbalance_levels"]) > 1


def test_strategy_keys_map_into_the_stages():
    cfg = load_config({"strategy": {"name": "imbalance_alpha", "half_spread_ticks": 3.5, "skew_ticks": 0.5,
                                    "order_qty": 0.002, "max_position": 0.02}})
    pl = _preset("imbalance_alpha").build(cfg, 1)
    assert float(pl.params("spread")["half_spread_ticks"]) == 3.5
    assert float(pl.params("inventory")["skew_ticks"]) == 0.5
    assert float(pl.params("inventory")["skew_unit_qty"]) == 0.002
    assert float(pl.params("spread")["unit_qty"]) == 0.002


def test_pipeline_tables_apply_on_top_of_the_preset_and_strategy_keys():
    cfg = load_config({"strategy": {"name": "glft", "order_qty": 0.002}, "pipeline": {"inventory": {"order_qty": 0.003}}},
                      overrides=["pipeline.spread.risk_factor=0.25", "pipeline.guards.warmup_s=5"])
    pl = _preset("glft").build(cfg, 1)
    assert float(pl.params("spread")["risk_factor"]) == 0.25
    assert float(pl.params("guards")["warmup_s"]) == 5.0
    assert float(pl.params("inventory")["order_qty"]) == 0.003


@pytest.mark.parametrize("name,key,value", [("glft", "skew_ticks", 1.0), ("avellaneda_stoikov", "grid_num", 3),
                                            ("queue_mm", "half_spread_ticks", 1.0)])
def test_a_strategy_key_that_does_not_apply_is_an_error(name, key, value):
    cfg = load_config({"strategy": {"name": name, key: value}})
    with pytest.raises(ConfigError, match=rf"\[strategy\] {key} = {value!r} does not apply to strategy '{name}'"):
        _preset(name).build(cfg, 1)


def test_cross_key_errors_name_the_stage_key():
    cfg = load_config({"strategy": {"name": "glft"}, "pipeline": {"spread": {"intensity_min_trades": 5000}}})
    with pytest.raises(ConfigError, match=r"\[pipeline.spread\] intensity_min_trades must be <= intensity_buffer_size"):
        _preset("glft").build(cfg, 1)


def test_grid_preset_builds_the_same_records_as_the_reference_grid_pipeline():
    # grid_pipeline makes the reference grid's decisions (tests/unit/pipeline/test_grid_preset.py); the preset's
    # records are byte-identical and run by the same decision function.
    cfg = load_config({"strategy": {"grid_num": 3, "half_spread_ticks": 1.5, "skew_ticks": 0.7, "order_qty": 0.5,
                                    "max_position": 2.0, "grid_interval_ticks": 2}})
    ref = grid_pipeline(**dataclasses.asdict(cfg.strategy), n_symbols=2)
    got = _preset("strategies.grid").build(cfg, 2)
    assert ref.arr.tobytes() == got.arr.tobytes()
    assert get_strategy("strategies.grid").decide is pipeline_sim_decide_nb


def test_get_strategy_resolves_presets_lazily_and_keeps_the_builtin_grid():
    from mmlab.sim.grid_nb import grid_decide_nb

    assert get_strategy("grid").decide is grid_decide_nb
    spec = get_strategy("glft")
    assert spec.name == "glft" and spec.decide is pipeline_sim_decide_nb


def test_unknown_strategy_lists_builtins_and_presets():
    with pytest.raises(ConfigError, match=r"'glfx' is not a known strategy.*grid.*strategies/ \(.*glft"):
        get_strategy("glfx")
