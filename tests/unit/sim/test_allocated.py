"""The allocated multi-symbol strategy in the event loop: hooks feed the scoreboard, weights size the orders.

A hand-built two-symbol tape: both books sit at 100/101 (ticks), a sell trade through the bid every second and
a buy trade through the ask half a second later fill the grid's touch quotes. Symbol A's book stays put (each
fill marks +0.5 tick: +50 bps); symbol B's book jumps 2 ticks against each fill (-150 bps, adverse), so the
allocator moves weight from B to A. Plus a two-symbol backtest on the shared BTCUSDT + ETHUSDT capture.
"""

import json

import numpy as np
import pytest
from simcase import ASK, BID, Tape

from mmlab.config import load_config
from mmlab.errors import ConfigError
from mmlab.sim.allocated_strategy import ALLOC_REASON_SHIFT, allocated_strategy_spec
from mmlab.sim.engine import SymbolSpec, run_backtest, write_run
from mmlab.types import AllocReason

SPECS = [SymbolSpec("A", tick_size=0.1, lot_size=0.001), SymbolSpec("B", tick_size=0.1, lot_size=0.001)]
S = 1_000_000_000
GRID = {"name": "grid", "grid_num": 1, "interval_ms": 100, "half_spread_ticks": 0, "skew_ticks": 0.0,
        "order_qty": 0.001, "max_position": 1.0}


def tape(seconds=20):
    t = Tape()
    for sid in (0, 1):
        t.book(0, {100: 1.0, 99: 1.0}, {101: 1.0, 102: 1.0}, symbol_id=sid)
    for k in range(1, seconds):
        ms = 1000 * k
        t.trade(ms, ASK, 99, 5.0, symbol_id=0)  # fills A's bid at 100; A's book stays 100/101
        t.trade(ms + 500, BID, 102, 5.0, symbol_id=0)  # fills A's ask at 101
        t.trade(ms, ASK, 99, 5.0, symbol_id=1)  # fills B's bid at 100 ...
        t.book(ms + 1, {98: 1.0, 97: 1.0}, {99: 1.0, 100: 1.0}, symbol_id=1)  # ... and B's book drops 2 ticks
        t.trade(ms + 500, BID, 100, 5.0, symbol_id=1)  # fills B's ask at 99 ...
        t.book(ms + 501, {100: 1.0, 99: 1.0}, {101: 1.0, 102: 1.0}, symbol_id=1)  # ... and B's book rises 2 ticks
    t.end(1000 * seconds, symbol_id=0)
    return t.events()


def config(**allocator):
    al = {"enabled": True, "rebalance_period_s": 5.0, "min_samples": 2, "markout_ms": 200.0, "ema_alpha": 0.5,
          "softmax_temperature": 0.5, "hysteresis_threshold": 0.0}
    al.update(allocator)
    return load_config({"strategy": GRID, "sim": {"maker_fee": 0.0, "taker_fee": 0.0}, "allocator": al})


@pytest.fixture(scope="module")
def result():
    return run_backtest(config(), events=tape(), symbols=SPECS)


def test_allocator_moves_weight_to_the_symbol_that_earns(result):
    a = result.extra["allocation"]
    assert a["ts_local"].min() > 0 and set(a["symbol"]) == {"A", "B"}
    last = a.filter(a["ts_local"] == a["ts_local"].max())
    w = dict(zip(last["symbol"], last["weight"]))
    assert w["A"] > 1.5 and w["B"] < 0.5 and w["A"] + w["B"] == pytest.approx(2.0)
    s = result.summary["allocator"]["per_symbol"]
    assert s["A"]["net_bps"] == pytest.approx(50.0, rel=0.05) and s["B"]["net_bps"] < -100.0
    assert s["A"]["adverse_penalty"] == 0.0 and s["B"]["adverse_penalty"] > 100.0
    assert result.summary["allocator"]["n_rebalances"] == len(a) // 2


def test_fill_hook_feeds_the_scoreboard(result):
    s = result.summary["allocator"]["per_symbol"]
    f = result.fills
    for sym in ("A", "B"):
        assert s[sym]["n_fills"] == f.filter(f["symbol"] == sym).height > 20


def test_orders_are_sized_by_the_weight(result):
    o = result.orders
    a = result.extra["allocation"]
    sent = o.filter(o["event"].str.to_lowercase() == "sent")
    first = int(a["ts_local"].min())
    before = sent.filter(sent["ts_local"] < first)
    assert set(np.round(before["qty"].to_numpy(), 12)) == {0.001}
    # Every order after a rebalance has order_qty times a weight that rebalance gave its symbol.
    for sym in ("A", "B"):
        weights = set(np.round(0.001 * a.filter(a["symbol"] == sym)["weight"].to_numpy(), 12))
        after = sent.filter((sent["symbol"] == sym) & (sent["ts_local"] >= first))
        assert after.height > 0 and set(np.round(after["qty"].to_numpy(), 12)) <= weights


def test_reason_top_byte_and_run_dir(result, tmp_path):
    reasons = result.state["reason"].to_numpy() if "reason" in result.state.columns else None
    if reasons is not None and reasons.dtype.kind == "i":
        assert set(np.unique(reasons >> ALLOC_REASON_SHIFT)) <= {int(r) for r in AllocReason}
    out = write_run(result, tmp_path / "run")
    assert (out / "allocation.parquet").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["allocator"]["per_symbol"]["A"]["weight_final"] > 1.5


def test_blacklisted_symbol_is_never_quoted():
    r = run_backtest(config(blacklist=["B"]), events=tape(8), symbols=SPECS)
    o = r.orders
    assert o.filter(o["symbol"] == "B").height == 0 and o.filter(o["symbol"] == "A").height > 0
    a = r.extra["allocation"]
    assert set(a.filter(a["symbol"] == "B")["reason"]) == {"BLACKLISTED"}


def test_non_pipeline_strategy_is_refused():
    from mmlab.sim.strategies import StrategySpec, get_strategy

    grid = get_strategy("grid")
    spec = StrategySpec(name="plain", decide=grid.decide, params_dtype=grid.params_dtype, build_params=grid.build_params)
    with pytest.raises(ConfigError, match=r"\[allocator\] enabled = true needs a pipeline strategy.*'plain'"):
        allocated_strategy_spec(spec)


@pytest.mark.real_data
def test_two_symbol_real_capture_shifts_weight(real_data, tmp_path):
    """BTCUSDT + ETHUSDT (Binance USD-M, the same 8 minutes) in one run: weights move with the scores."""
    import polars as pl

    from mmlab.data.ingest import IngestOptions, ingest

    src = real_data / "binance_usdm"
    root = tmp_path / "store"
    for sym in ("btcusdt", "ethusdt"):
        ingest([src / f"usdm_{sym}_20240718.gz", src / f"usdm_{sym}_20240719.gz"], "binance-usdm", root,
               IngestOptions())
    cfg = load_config({
        "data": {"root": str(root), "venue": "binance-usdm", "symbols": ["BTCUSDT", "ETHUSDT"]},
        "strategy": {"name": "grid", "grid_num": 5, "interval_ms": 100, "half_spread_ticks": 2, "skew_ticks": 1.0,
                     "order_qty": 0.001, "max_position": 0.01},
        "sim": {"maker_fee": -0.00005, "taker_fee": 0.0007},
        "allocator": {"enabled": True, "rebalance_period_s": 30, "min_samples": 5, "softmax_temperature": 0.25,
                      "hysteresis_threshold": 0.02},
    })
    r = run_backtest(cfg)
    a = r.extra["allocation"]
    s = r.summary["allocator"]
    assert s["n_rebalances"] == 15 and a.height == 30
    assert s["per_symbol"]["BTCUSDT"]["n_fills"] > 100 and s["per_symbol"]["ETHUSDT"]["n_fills"] > 100
    w = a.filter(a["reason"] != "WARMING")["weight"].to_numpy()
    assert np.abs(w - 1.0).max() > 0.1  # weight moved between the symbols
    # Weights of one rebalance sum to the number of scored symbols (no clamp hit here).
    ok = a.filter(pl.col("reason") == "OK")
    sums = ok.group_by("ts_local").agg(pl.col("weight").sum().alias("w"), pl.len().alias("n")).filter(pl.col("n") == 2)
    assert sums.height > 0 and np.allclose(sums["w"].to_numpy(), 2.0)
    # The better score gets the larger weight.
    last = a.filter(pl.col("ts_local") == a["ts_local"].max()).sort("score")
    assert last["weight"][1] > last["weight"][0]
    # Rerun is identical.
    again = run_backtest(cfg)
    assert again.extra["allocation"].equals(a) and again.fills.equals(r.fills)
