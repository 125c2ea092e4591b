"""The engine on a synthetic store: windowed replay, several symbols, run directory, determinism, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from mmlab.config import load_config
from mmlab.data.synth import synth
from mmlab.errors import ConfigError, DataError
from mmlab.sim.engine import WALL_TIME_KEYS, run_backtest, write_run

SUMMARY_KEYS = ("events", "wall_s", "events_per_s", "n_orders", "n_fills", "n_maker_fills", "n_taker_fills",
                "volume_qty", "fees", "pnl_net", "position_final", "sharpe", "max_drawdown", "fill_rate", "taker_share",
                "markout_bps_100ms", "markout_bps_1s", "markout_bps_5s", "slippage_bps_mean", "queue_eta_ms_p50")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    synth(root, hours=0.04, seed=3, symbol="SYNTHUSDT", date="2024-01-01")
    synth(root, hours=0.04, seed=5, symbol="ALTUSDT", date="2024-01-01")
    return root


def _cfg(store, symbols=("SYNTHUSDT",), **sections):
    d = {
        "data": {"root": str(store), "venue": "binance-usdm", "symbols": list(symbols)},
        "strategy": {"grid_num": 5, "interval_ms": 100, "half_spread_ticks": 1.0, "skew_ticks": 1.0,
                     "order_qty": 0.01, "max_position": 0.05},
        "sim": {"entry_latency_ms": 5, "response_latency_ms": 5, "maker_fee": -0.00005, "taker_fee": 0.0005},
    }
    for k, v in sections.items():
        d.setdefault(k, {}).update(v)
    return load_config(d)


def _frames_equal(a, b):
    for name in ("fills", "orders", "state", "labels"):
        fa, fb = getattr(a, name), getattr(b, name)
        assert fa.equals(fb, null_equal=True), f"{name} differ"


def test_grid_run_produces_fills_and_consistent_frames(store):
    r = run_backtest(_cfg(store))
    s = r.summary
    for k in SUMMARY_KEYS:
        assert k in s
    assert s["n_fills"] > 0 and s["n_fills"] == r.fills.height == s["n_maker_fills"] + s["n_taker_fills"]
    assert s["n_orders"] == r.orders.filter(pl.col("event") == "sent").height == r.labels.height
    assert r.fills["qty"].sum() == pytest.approx(s["volume_qty"])
    # Every fill is matched by a FILLED order event with the same exchange time and quantity.
    fev = r.orders.filter(pl.col("event") == "filled")
    assert fev["ts_exch"].to_list() == r.fills["ts_exch"].to_list()
    assert fev["qty"].to_list() == r.fills["qty"].to_list()
    # Quotes never cross the local touch (post-only grid).
    st = r.state.drop_nulls()
    assert (st["quote_bid"].fill_nan(None).drop_nulls() <= st["best_bid"].max()).all()
    # The last state row's position agrees with the fills reported by then.
    assert r.labels["censored"].dtype == pl.Boolean
    assert {"filled_100ms", "filled_1s", "filled_5s", "queue_eta_ms", "mid_move_bps_1s"} <= set(r.labels.columns)
    assert {"markout_bps_100ms", "markout_bps_1s", "markout_bps_5s", "slippage_bps", "adverse_bps_1s"} <= set(r.fills.columns)
    eta = r.labels.filter(~pl.col("censored"))["queue_eta_ms"]
    assert (eta >= 0).all()


@pytest.mark.parametrize("window_s", [20, 7])
def test_windowed_replay_equals_one_window(store, window_s):
    cfg = _cfg(store)
    one = run_backtest(cfg)
    many = run_backtest(cfg, window_ns=window_s * 1_000_000_000)
    _frames_equal(one, many)
    for k, v in one.summary.items():
        if k not in WALL_TIME_KEYS:
            assert many.summary[k] == v, k


def test_several_symbols_run_independently(store):
    both = run_backtest(_cfg(store, symbols=("SYNTHUSDT", "ALTUSDT")))
    assert set(both.fills["symbol"].unique()) == {"SYNTHUSDT", "ALTUSDT"}
    for sym in ("SYNTHUSDT", "ALTUSDT"):
        solo = run_backtest(_cfg(store, symbols=(sym,)))
        cols = ["ts_exch", "ts_local", "order_id", "side", "price", "qty", "maker", "fee", "queue_ahead_qty"]
        assert both.fills.filter(pl.col("symbol") == sym).select(cols).equals(solo.fills.select(cols))
        assert both.summary["per_symbol"][sym]["pnl_net"] == pytest.approx(solo.summary["pnl_net"])


def test_write_run_layout(store, tmp_path):
    cfg = _cfg(store)
    r = run_backtest(cfg)
    out = write_run(r, tmp_path / "run")
    for name in ("config.toml", "manifest.json", "summary.json", "fills.parquet", "orders.parquet", "state.parquet",
                 "labels.parquet"):
        assert (out / name).exists(), name
    assert load_config(out / "config.toml") == cfg
    man = json.loads((out / "manifest.json").read_text())
    assert man["config_id"] == cfg.config_id and man["seed"] == cfg.sim.seed and man["events"] == r.summary["events"]
    assert set(man["versions"]) >= {"numpy", "numba", "polars", "python"}
    assert "binance-usdm/SYNTHUSDT" in man["data_meta_sha256"]
    assert pl.read_parquet(out / "fills.parquet").equals(r.fills)


_RUN_SCRIPT = """
import sys
from mmlab.config import load_config
from mmlab.sim.engine import run_backtest, write_run
cfg = load_config(sys.argv[1], overrides=sys.argv[3:])
write_run(run_backtest(cfg), sys.argv[2])
"""


def test_two_processes_write_bit_identical_runs(store, tmp_path):
    cfg = _cfg(store, sim={"latency_model": "random", "latency_jitter_ms": 2.0, "shock_prob": 0.05, "seed": 11})
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(cfg.to_toml())
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        subprocess.run([sys.executable, "-c", _RUN_SCRIPT, str(cfg_path), str(out)], check=True, capture_output=True)
    for name in ("fills.parquet", "orders.parquet", "state.parquet", "labels.parquet", "config.toml"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    sa, sb = (json.loads((o / "summary.json").read_text()) for o in outs)
    ma, mb = (json.loads((o / "manifest.json").read_text()) for o in outs)
    for k in WALL_TIME_KEYS:
        sa.pop(k, None), sb.pop(k, None)
    ma.pop("wall_s"), mb.pop("wall_s")
    assert sa == sb and ma == mb
    assert sa["n_fills"] > 0


def test_random_latency_depends_on_the_seed(store):
    a = run_backtest(_cfg(store, sim={"latency_model": "random", "latency_jitter_ms": 3.0, "seed": 1}))
    b = run_backtest(_cfg(store, sim={"latency_model": "random", "latency_jitter_ms": 3.0, "seed": 2}))
    assert not a.orders["ts_exch"].equals(b.orders["ts_exch"])


def test_empirical_latency_table_file(store, tmp_path):
    t0 = 1_704_067_200_000_000_000  # 2024-01-01
    tab = pl.DataFrame({"req_ts": [t0, t0 + 10**12], "exch_ts": [t0 + 3_000_000, t0 + 10**12 + 3_000_000],
                        "resp_ts": [t0 + 5_000_000, t0 + 10**12 + 5_000_000]})
    p = tmp_path / "lat.csv"
    tab.write_csv(p)
    emp = run_backtest(_cfg(store, sim={"latency_model": "empirical", "latency_table": str(p)}))
    const = run_backtest(_cfg(store, sim={"entry_latency_ms": 3, "response_latency_ms": 2}))
    _frames_equal(emp, const)


def test_bad_inputs_name_the_fix(store, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("req_ts,exch_ts,resp_ts\n10,5,20\n")
    with pytest.raises(DataError, match=r"row 0: req_ts=10 exch_ts=5 .*drop or fix"):
        run_backtest(_cfg(store, sim={"latency_model": "empirical", "latency_table": str(bad)}))
    with pytest.raises(DataError, match="does not exist"):
        run_backtest(_cfg(store, sim={"latency_model": "empirical", "latency_table": str(tmp_path / "none.parquet")}))
    with pytest.raises(ConfigError, match="not a known strategy"):
        run_backtest(_cfg(store, strategy={"name": "nope"}))
    with pytest.raises(DataError, match="no events"):
        run_backtest(_cfg(store, data={"start": "2030-01-01"}))


def test_cli_backtest_writes_the_run_and_prints_the_summary(store, tmp_path):
    from mmlab.cli import app

    cfg_path = tmp_path / "grid.toml"
    cfg_path.write_text(_cfg(store).to_toml())
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["backtest", "--config", str(cfg_path), "--out", str(out), "--set", "strategy.grid_num=3",
                                   "--json"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.output)
    assert printed["run_dir"] == str(out)
    assert json.loads((out / "summary.json").read_text())["n_fills"] == printed["n_fills"]
    assert load_config(out / "config.toml").strategy.grid_num == 3
    res = CliRunner().invoke(app, ["backtest", "--config", str(cfg_path), "--set", "sim.queue_modle='x'"])
    assert res.exit_code == 2 and "did you mean 'queue_model'" in res.output
