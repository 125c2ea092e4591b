"""``batch_config`` / ``replace_keys``: replacing only the changed sections gives ``load_config``'s config and errors."""

import pytest

from mmlab.config import load_config, replace_keys
from mmlab.errors import ConfigError
from mmlab.sim.engine import batch_config, override_via_load

BASE = load_config({"strategy": {"grid_num": 2, "skew_ticks": 1.0}, "sim": {"maker_fee": -0.00005}})

CASES = [
    {"strategy.half_spread_ticks": 2.0, "strategy.grid_num": 3}, {"strategy.grid_num": 2.0},
    {"strategy.grid_num": 2.5}, {"strategy.grid_numm": 2}, {"strategy.grid_num": -1}, {"sim.queue_power": 2},
    {"strategy.half_spread_ticks": "x"}, {"foo.bar": 1}, {"pipeline.spread.risk_factor": 0.1},
    {"strategy.grid_num": True}, {"sim.seed": 3, "strategy.skew_ticks": 0}, {"strategy": 1}, {"strategy.a.b": 1},
    {"sim.latency_model": "nope"}, {"strategy.grid_num": 0, "sim.taker_fee": "x"},
    {"data.symbols": "BTCUSDT,ETHUSDT"},
]


def _slow(cfg, override):
    """What batch_config does without the fast path: the whole dict through load_config."""
    return override_via_load(cfg, override)


def _outcome(f):
    try:
        c = f()
        return "ok", c.to_dict(), c.config_id
    except ConfigError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("override", CASES, ids=[",".join(c) for c in CASES])
def test_fast_parameter_sets_equal_load_config(override):
    assert _outcome(lambda: batch_config(BASE, override)) == _outcome(lambda: _slow(BASE, override))


def test_replace_keys_leaves_other_shapes_and_errors_to_load_config():
    assert replace_keys(BASE, {"pipeline.spread.risk_factor": 0.1}) is None
    assert replace_keys(BASE, {"strategy.grid_num": -1}) is None
    got = replace_keys(BASE, {"strategy.grid_num": 4})
    assert got.strategy.grid_num == 4 and got.sim is BASE.sim and BASE.strategy.grid_num == 2
