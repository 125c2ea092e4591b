"""`mmlab validate symbols` / `mmlab validate config`: reference table, store facts, config cross-checks."""

import json

import pytest
from conftest import WINDOW
from typer.testing import CliRunner

from mmlab.cli import app
from mmlab.data.store import empty_meta, write_meta
from mmlab.errors import ConfigError, DataError
from mmlab.hpo.validate import load_reference, validate_config, validate_symbols


def fake_store(root, venue="binance-usdm", symbol="BTCUSDT", **facts):
    meta = empty_meta(venue, symbol)
    meta.update({"tick_size": 0.1, "lot_size": 0.001, **facts})
    write_meta(root, venue, symbol, meta)
    return root


def by_check(res):
    return {(r["item"], r["check"]): r for r in res["checks"]}


def test_reference_table_holds_the_shared_symbols():
    ref = load_reference()
    for key in [("binance-usdm", "BTCUSDT"), ("binance-usdm", "ETHUSDT"), ("bybit-linear", "BTCUSDT"),
                ("bybit-linear", "ETHUSDT")]:
        assert key in ref and ref[key]["maker_fee"] < ref[key]["taker_fee"]
    assert ref[("bybit-linear", "ETHUSDT")]["lot_size"] == 0.01


def test_reference_table_errors(tmp_path):
    p = tmp_path / "ref.toml"
    p.write_text('[binance-usdm.BTCUSDT]\ntick_size = 0.1\nlot_size = 0.001\ntick = 1\n')
    with pytest.raises(ConfigError, match="unknown keys.*tick"):
        load_reference(p)
    p.write_text('[binance-usdm.BTCUSDT]\ntick_size = 0\nlot_size = 0.001\n')
    with pytest.raises(ConfigError, match="tick_size must be a number > 0"):
        load_reference(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_reference(tmp_path / "none.toml")


def test_symbols_match_on_the_real_store(btc_store):
    res = validate_symbols(btc_store)
    assert res["ok"] and res["counts"]["fail"] == 0
    c = by_check(res)
    assert c[("binance-usdm/BTCUSDT", "tick_size")]["status"] == "ok"


def test_symbol_mismatch_fails_and_fee_difference_warns(tmp_path):
    fake_store(tmp_path, tick_size=0.01, fees={"maker_fee": 0.0001, "taker_fee": 0.0005})
    fake_store(tmp_path, "binance-usdm", "NEWUSDT")
    res = validate_symbols(tmp_path)
    c = by_check(res)
    assert not res["ok"]
    assert c[("binance-usdm/BTCUSDT", "tick_size")]["status"] == "fail"
    assert "re-ingest" in c[("binance-usdm/BTCUSDT", "tick_size")]["message"]
    assert c[("binance-usdm/BTCUSDT", "lot_size")]["status"] == "ok"
    assert c[("binance-usdm/BTCUSDT", "maker_fee")]["status"] == "warn"
    assert c[("binance-usdm/BTCUSDT", "taker_fee")]["status"] == "ok"
    assert c[("binance-usdm/NEWUSDT", "reference")]["status"] == "warn"
    r = CliRunner().invoke(app, ["validate", "symbols", "--root", str(tmp_path), "--json"])
    assert r.exit_code == 1 and json.loads(r.output)["counts"]["fail"] == 1
    assert CliRunner().invoke(app, ["validate", "symbols", "--root", str(tmp_path), "--symbol", "NEWUSDT"]).exit_code == 0
    with pytest.raises(DataError, match="no symbols"):
        validate_symbols(tmp_path, venue="bybit-linear")


def _cfg(tmp_path, root, extra=""):
    p = tmp_path / "c.toml"
    p.write_text(f"""
[data]
root = "{root}"
venue = "binance-usdm"
symbols = ["BTCUSDT"]
start = "{WINDOW['start']}"
end = "{WINDOW['end']}"
[sim]
maker_fee = 0.0002
taker_fee = 0.0005
{extra}
""")
    return p


def test_validate_config_passes_on_real_store(btc_store, tmp_path):
    res = validate_config(_cfg(tmp_path, btc_store))
    assert res["ok"] and res["counts"]["warn"] == 0, res
    c = by_check(res)
    assert c[("binance-usdm/BTCUSDT", "data present for the window")]["status"] == "ok"
    assert c[("binance-usdm/BTCUSDT", "[sim] maker_fee vs reference")]["status"] == "ok"


@pytest.mark.parametrize("overrides, check, status", [
    (['data.start="2024-08-01T00:00:00Z"', 'data.end="2024-08-02T00:00:00Z"'], "data present for the window", "fail"),
    (['data.end="2024-07-20T00:00:00Z"'], "data present for the window", "warn"),
    (["sim.taker_fee=0.005"], "|taker_fee| <= 0.002", "warn"),
    (["sim.maker_fee=0.001"], "maker_fee <= taker_fee", "warn"),
    (["sim.entry_latency_ms=5000"], "0 <= entry_latency_ms <= 1000", "warn"),
    (["strategy.order_qty=0.0015"], "order_qty on the lot grid", "warn"),
    (["strategy.max_position=0.0005"], "max_position >= order_qty", "warn"),
    (['rollout.mode="canary"', "rollout.winrate_horizon_ms=2000"], "winrate_horizon_ms among [labels] horizons_ms", "fail"),
    (['strategy.name="nope"'], "name registered", "fail"),
    (['data.symbols=["XYZUSDT"]'], "data present", "fail"),
    (["sim.entry_latency_ms=-1"], "load", "fail"),
])
def test_validate_config_cross_checks(btc_store, tmp_path, overrides, check, status):
    res = validate_config(_cfg(tmp_path, btc_store), overrides=overrides)
    hits = [r for r in res["checks"] if r["check"] == check]
    assert hits and hits[0]["status"] == status, res
    assert res["ok"] == (status != "fail")


def test_validate_config_cli(btc_store, tmp_path):
    p = _cfg(tmp_path, btc_store)
    r = CliRunner().invoke(app, ["validate", "config", str(p)])
    assert r.exit_code == 0 and "OK" in r.output
    r = CliRunner().invoke(app, ["validate", "config", str(p), "--set", "sim.entry_latency_ms=-1", "--json"])
    assert r.exit_code == 1
    assert "entry_latency_ms must be >= 0" in json.loads(r.output)["checks"][0]["message"]
