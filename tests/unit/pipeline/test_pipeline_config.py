"""Constructors of the pipeline records: seed defaults, range checks, unknown keys, presets."""

import math

import numpy as np
import pytest

from mmlab.errors import ConfigError
from mmlab.pipeline_config import PRESETS, STAGES, counters, grid_pipeline, make_params, make_pipeline
from mmlab.types import GuardLevel, SeqCheck, SizingMode, SpreadModel, TimeInForce, pipeline_dtype


def test_seed_defaults():
    pl = make_pipeline()
    f, g, inv = pl.params("fetch_md"), pl.params("guards"), pl.params("inventory")
    assert (f["ttl_ms"], f["fresh_ms_for_pricing"], f["stale_ok"], f["skip_pricing_on_stale"]) == (100.0, 60.0, True, False)
    assert f["seq_check"] == SeqCheck.MONOTONIC
    assert g["warmup_s"] == 90.0 and g["fresh_only"]
    assert (g["sl_buffer_multiplier"], g["assumed_sl_pct"]) == (1.5, 0.003)
    assert (g["liq_gate_alpha"], g["liq_gate_levels"]) == (1.5, 3)
    assert (inv["leverage"], inv["notional_cap_usd"], inv["min_free_balance_usd"]) == (10.0, 20_000.0, 200.0)
    e = pl.params("emit")
    assert e["post_only"] and e["maker_only"] and e["tif"] == TimeInForce.GTX
    assert math.isnan(pl.state("spread")["sigma_ticks_1s"]) and pl.state("guards")["start_ns"] == -1


def test_enum_names_and_aliases():
    assert make_params("spread", model="as")["model"][0] == SpreadModel.AVELLANEDA_STOIKOV
    assert make_params("spread", model="GLFT")["model"][0] == SpreadModel.GLFT
    assert make_params("spread", model=SpreadModel.VOL_SCALED)["model"][0] == SpreadModel.VOL_SCALED
    assert make_params("inventory", sizing="balance", lot_step=0.001)["sizing"][0] == SizingMode.BALANCE
    assert make_params("guards", deadline_level="hard")["deadline_level"][0] == GuardLevel.HARD


def test_unknown_key_names_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown key pipeline.spread.risk_facter; did you mean 'risk_factor'\?"):
        make_pipeline(spread={"risk_facter": 0.1})


def test_unknown_stage():
    with pytest.raises(ConfigError, match=r"unknown pipeline stage 'gaurds'; did you mean 'guards'\?"):
        make_params("gaurds")


@pytest.mark.parametrize(
    "stage, key, value, match",
    [
        ("fetch_md", "ttl_ms", -1.0, r"\[pipeline.fetch_md\] ttl_ms must be >= 0.0, got -1.0"),
        ("spread", "risk_factor", 0.0, r"\[pipeline.spread\] risk_factor must be > 0.0, got 0.0"),
        ("spread", "model", "avellaneda", r"\[pipeline.spread\] model must be one of fixed, vol_scaled, avellaneda_stoikov, glft"),
        ("spread", "vol_buffer_size", 5000, r"vol_buffer_size must be in \[2, 1024\], got 5000"),
        ("inventory", "grid_num", 40, r"grid_num must be in \[1, 32\], got 40"),
        ("inventory", "order_qty", "1", r"order_qty must be a number, got '1'"),
        ("guards", "fresh_only", 1, r"fresh_only must be true or false, got 1"),
        ("emit", "max_actions_per_s", 0, r"max_actions_per_s must be > 0.0, got 0"),
        ("queue_aware", "keep_ticks", 1.5, r"keep_ticks must be an integer, got 1.5"),
    ],
)
def test_range_checks_name_stage_key_and_value(stage, key, value, match):
    with pytest.raises(ConfigError, match=match):
        make_params(stage, **{key: value})


def test_cross_checks():
    with pytest.raises(ConfigError, match="vol_min_samples must be <= vol_buffer_size"):
        make_params("spread", vol_buffer_size=10, vol_min_samples=20)
    with pytest.raises(ConfigError, match="lot_step must be > 0 with sizing = 'balance'"):
        make_params("inventory", sizing="balance")
    with pytest.raises(ConfigError, match="depth_levels must be <= 64"):
        make_pipeline(fetch_md={"depth_levels": 65})


def test_cross_stage_defaults_and_burst():
    pl = make_pipeline(inventory={"order_qty": 0.25, "leverage": 5.0}, emit={"max_actions_per_s": 8.0})
    assert pl.params("spread")["unit_qty"] == 0.25 and pl.params("inventory")["skew_unit_qty"] == 0.25
    assert pl.params("guards")["leverage"] == 5.0
    assert pl.params("emit")["burst_actions"] == 8.0


def test_multi_symbol_records_and_views():
    pl = make_pipeline(n_symbols=3)
    assert pl.arr.dtype == pipeline_dtype and pl.arr.shape == (3,)
    pl.params("inventory", 1)["tick_size"] = 0.5
    assert pl.arr["inventory_params"]["tick_size"].tolist() == [1.0, 0.5, 1.0]


def test_grid_preset_accepts_strategy_config_keys():
    from dataclasses import asdict

    from mmlab.config import load_config

    st = load_config({"strategy": {"grid_num": 3}}).strategy
    pl = PRESETS["grid"](**asdict(st))
    assert pl.params("inventory")["grid_num"] == 3 and pl.params("spread")["half_spread_ticks"] == st.half_spread_ticks
    assert pl.params("emit")["id_from_price"] and pl.params("emit")["cancel_on_skip"]
    with pytest.raises(ConfigError, match="unknown grid key"):
        grid_pipeline(half_spread_ticks=1, skew_ticks=0, order_qty=1, max_position=1, grid_num=1, grid_interval_ticks=1,
                      grid_sise=2)


def test_counters_cover_every_stage():
    c = counters(make_pipeline())
    assert {k.split(".")[0] for k in c} == set(STAGES)
    assert c["fetch_md.pricing_on_stale.guard_block"] == 0 and c["guards.trips.near_liq"] == 0
    assert all(isinstance(v, int) for v in c.values())
    assert np.all(make_pipeline().arr["emit_state"]["next_order_id"] == 1)
