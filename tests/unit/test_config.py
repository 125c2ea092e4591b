import pytest

from mmlab.config import load_config
from mmlab.errors import ConfigError


def test_defaults_are_valid_and_hash_is_stable():
    assert load_config(None).config_id == load_config({}).config_id


def test_overrides_parse_toml_values_and_bare_strings():
    cfg = load_config({"data": {"symbols": ["BTCUSDT"]}}, overrides=["sim.entry_latency_ms=5", "data.venue=bybit-linear", "sim.queue_model='power_prob'"])
    assert cfg.sim.entry_latency_ms == 5.0
    assert cfg.data.venue == "bybit-linear"
    assert cfg.sim.queue_model == "power_prob"


def test_config_id_changes_with_values_not_with_output_dir():
    a = load_config({"strategy": {"half_spread_ticks": 2}})
    b = load_config({"strategy": {"half_spread_ticks": 3}})
    c = load_config({"strategy": {"half_spread_ticks": 2}, "output": {"dir": "elsewhere"}})
    assert a.config_id != b.config_id
    assert a.config_id == c.config_id


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown key sim.entry_latency .*did you mean 'entry_latency_ms'"):
        load_config({"sim": {"entry_latency": 1}})


def test_unknown_section_names_the_nearest_section():
    with pytest.raises(ConfigError, match=r"unknown section \[strategyy\].*'strategy'"):
        load_config({"strategyy": {}})


@pytest.mark.parametrize(
    "section,key,value,match",
    [
        ("sim", "queue_model", "fifo", "queue_model must be one of"),
        ("sim", "entry_latency_ms", -1, "entry_latency_ms must be >= 0"),
        ("strategy", "grid_num", 0, "grid_num must be >= 1"),
        ("strategy", "grid_num", 1.5, "grid_num expects int"),
        ("sim", "maker_fee", 2.0, "maker_fee must be a fraction"),
        ("data", "symbols", [], "symbols must name at least one symbol"),
    ],
)
def test_values_are_range_checked(section, key, value, match):
    with pytest.raises(ConfigError, match=match):
        load_config({section: {key: value}})


def test_toml_round_trip(tmp_path):
    cfg = load_config({"data": {"symbols": ["BTCUSDT", "ETHUSDT"], "start": "2024-07-18"}, "sim": {"exchange_model": "partial"}})
    p = tmp_path / "c.toml"
    p.write_text(cfg.to_toml())
    assert load_config(p) == cfg


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, overrides=["entry_latency_ms=5"])


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/x.toml")


def test_pipeline_stage_tables_are_checked_against_the_stage_keys():
    with pytest.raises(ConfigError, match=r"unknown key pipeline.spread.risk_facto; did you mean 'risk_factor'"):
        load_config({"pipeline": {"spread": {"risk_facto": 0.1}}})
    with pytest.raises(ConfigError, match=r"unknown key pipeline.sprad .*did you mean 'spread'"):
        load_config({"pipeline": {"sprad": {"risk_factor": 0.1}}})
    with pytest.raises(ConfigError, match=r"\[pipeline.guards\] warmup_s must be >= 0.0, got -1"):
        load_config({"pipeline": {"guards": {"warmup_s": -1}}})
    with pytest.raises(ConfigError, match=r"\[pipeline.spread\] model must be one of"):
        load_config({"pipeline": {"spread": {"model": "glfx"}}})


def test_dotted_overrides_reach_the_pipeline_stage_tables():
    raw = {"pipeline": {"spread": {"model": "glft"}}}
    cfg = load_config(raw, overrides=["pipeline.spread.risk_factor=0.1", "pipeline.guards.warmup_s=5"])
    assert cfg.pipeline.spread == {"model": "glft", "risk_factor": 0.1}
    assert cfg.pipeline.guards == {"warmup_s": 5}
    assert raw == {"pipeline": {"spread": {"model": "glft"}}}  # the caller's dict is not modified
    with pytest.raises(ConfigError, match=r"unknown key pipeline.spread.risk; did you mean 'risk_factor'"):
        load_config(None, overrides=["pipeline.spread.risk=0.1"])
    with pytest.raises(ConfigError, match=r"pipeline.spread is not a table"):
        load_config({"pipeline": {"spread": 3}}, overrides=["pipeline.spread.risk_factor=0.1"])


def test_pipeline_tables_round_trip_through_toml(tmp_path):
    cfg = load_config({"strategy": {"name": "glft"}, "pipeline": {
        "spread": {"model": "glft", "risk_factor": 0.05, "max_half_spread_ticks": float("inf")},
        "emit": {"post_only": True, "max_actions_per_s": 20}}})
    p = tmp_path / "c.toml"
    p.write_text(cfg.to_toml())
    again = load_config(p)
    assert again == cfg
    assert again.config_id == cfg.config_id
    assert cfg.config_id != load_config({"strategy": {"name": "glft"}}).config_id
