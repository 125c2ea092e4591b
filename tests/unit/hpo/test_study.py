"""Study files: search spaces over any config key, objectives, constraints, and errors naming the fix."""

import pytest

from mmlab.errors import ConfigError
from mmlab.hpo.study import Constraint, apply_params, load_study, parse_study


def _raw(**over):
    raw = {"base": {"data": {"symbols": ["BTCUSDT"]}},
           "search": {"strategy.half_spread_ticks": {"low": 0.5, "high": 5.0}},
           "objective": {"metrics": ["pnl_net"], "directions": ["maximize"]}}
    raw.update(over)
    return raw


def test_search_space_kinds_follow_config_types_and_entries():
    sc = parse_study(_raw(search={
        "strategy.half_spread_ticks": {"low": 0.5, "high": 5.0},
        "strategy.grid_num": {"low": 1, "high": 8},
        "sim.queue_power": {"low": 0.5, "high": 4.0, "log": True},
        "sim.queue_model": {"choices": ["risk_averse", "power_prob"]},
        "pipeline.queue_aware.tau_entry": {"low": 0.1, "high": 0.9, "step": 0.1},
    }))
    kinds = {p.key: p.kind for p in sc.params}
    assert kinds == {"strategy.half_spread_ticks": "float", "strategy.grid_num": "int", "sim.queue_power": "float",
                     "sim.queue_model": "categorical", "pipeline.queue_aware.tau_entry": "float"}
    cfg = sc.trial_config({"strategy.grid_num": 4, "pipeline.queue_aware.tau_entry": 0.6, "sim.queue_model": "power_prob"})
    assert cfg.strategy.grid_num == 4 and cfg.sim.queue_model == "power_prob"
    assert cfg.pipeline.queue_aware == {"tau_entry": 0.6}


def test_apply_params_sets_dotted_keys_without_touching_the_base():
    base = {"strategy": {"grid_num": 2}}
    out = apply_params(base, {"strategy.grid_num": 5, "pipeline.spread.half_spread_ticks": 3.0})
    assert out == {"strategy": {"grid_num": 5}, "pipeline": {"spread": {"half_spread_ticks": 3.0}}}
    assert base == {"strategy": {"grid_num": 2}}


def test_study_round_trips_through_its_stored_dict():
    sc = parse_study(_raw(objective={"metrics": ["pnl_net", "taker_share"], "directions": ["maximize", "minimize"],
                                     "constraints": ["slippage_bps_mean <= 1.8"]}))
    again = parse_study(sc.to_dict())
    assert again.to_json() == sc.to_json()
    assert again.multi_objective and again.constraints == (Constraint("slippage_bps_mean", "<=", 1.8),)


@pytest.mark.parametrize("over, match", [
    ({"search": {"strategy.half_spred_ticks": {"low": 1, "high": 2}}}, "did you mean 'half_spread_ticks'"),
    ({"search": {"stratgy.grid_num": {"low": 1, "high": 2}}}, "did you mean 'strategy'"),
    ({"search": {"pipeline.queue_aware.tau_entri": {"low": 0.1, "high": 0.5}}}, "tau_entr"),
    ({"search": {"strategy.half_spread_ticks": {"low": 5, "high": 1}}}, "low must be < high, got low=5 high=1"),
    ({"search": {"strategy.half_spread_ticks": {"low": 0, "high": 1, "log": True}}}, "log = true needs low > 0"),
    ({"search": {"strategy.half_spread_ticks": {"low": 0.5, "hi": 1}}}, "unknown entry 'hi'"),
    ({"search": {"strategy.grid_num": {"low": 0, "high": 3}}}, r"grid_num must be >= 1"),
    ({"objective": {"metrics": ["pnl_nett"]}}, "did you mean 'pnl_net'"),
    ({"objective": {"metrics": ["pnl_net"], "directions": ["up"]}}, "maximize or minimize"),
    ({"objective": {"metrics": ["pnl_net"], "constraints": ["taker_share ~ 0.09"]}}, "must read 'metric <= number'"),
    ({"study": {"sampler": "tpee"}}, "did you mean 'tpe'"),
    ({"study": {"split": "2h"}}, "'day', 'none' or '<N>min'"),
    ({"searchh": {}}, "unknown section \\[searchh\\]"),
    ({"search": {}}, "no \\[search\\] entries"),
])
def test_bad_study_errors_name_key_value_and_fix(over, match):
    with pytest.raises(ConfigError, match=match):
        parse_study(_raw(**over))


def test_base_config_file_is_merged_under_base_tables(tmp_path):
    (tmp_path / "grid.toml").write_text('[data]\nsymbols = ["ETHUSDT"]\n[strategy]\ngrid_num = 3\n')
    (tmp_path / "s.toml").write_text('[study]\nbase_config = "grid.toml"\n[base.strategy]\ngrid_num = 4\n'
                                     '[search]\n"strategy.skew_ticks" = {low = 0.0, high = 2.0}\n')
    sc = load_study(tmp_path / "s.toml")
    assert sc.name == "s"
    cfg = sc.base_config()
    assert cfg.data.symbols == ("ETHUSDT",) and cfg.strategy.grid_num == 4


def test_constraint_violation_sign():
    c = Constraint("taker_share", "<=", 0.09)
    assert c.violation(0.05) < 0 < c.violation(0.1)
    assert Constraint("fill_rate", ">=", 0.2).violation(0.3) < 0
    assert c.violation(None) == float("inf")
