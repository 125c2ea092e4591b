"""Live/backtest parity: a local websocket venue replays the shared Bybit v5 recording to ``mmlab live --paper``;
``mmlab data ingest`` of what the runner recorded + ``mmlab backtest`` with the same config give the same
decisions (quotes per tick) and the same paper fills."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

CONFIG = """
[data]
venue = "bybit-linear"
symbols = ["BTCUSDT", "ETHUSDT"]

[sim]
entry_latency_ms = 10.0
response_latency_ms = 10.0

[strategy]
name = "{strategy}"
interval_ms = 100.0
grid_num = 3
half_spread_ticks = 1.0
order_qty = 0.01
max_position = 1.0

[live]
warmup_s = 0.0
book_depth = 200
horizon_margin_ms = 300.0
stale_ms = 20000.0
"""


@pytest.mark.parametrize("strategy", ["grid", "grid_pipeline"])
def test_live_paper_session_replays_to_identical_backtest_decisions_and_fills(bybit_recording, live_then_backtest,
                                                                              tmp_path, strategy):
    from live.replay import ReplayVenue

    cfg_path = tmp_path / "live.toml"
    cfg_path.write_text(CONFIG.replace("{strategy}", strategy))
    venue = ReplayVenue(bybit_recording, speed=12.0)
    summary, live_out, store, run = live_then_backtest(cfg_path, venue, venue_name="bybit-linear",
                                                       symbols="BTCUSDT,ETHUSDT")
    assert venue.done.is_set(), "the replay did not finish within the session"
    assert summary["late_exch_events"] == 0 and summary["gaps"] == 0 and summary["reconnects"] == 0
    assert summary["n_fills"] > 0 and summary["n_decisions"] > 50
    assert summary["working_orders_after_cancel_all"] == 0
    meta = json.loads((store / "bybit-linear" / "BTCUSDT" / "_meta.json").read_text())
    assert meta["tick_size"] == 0.1 and meta["tick_size_source"] == "source"  # from the recorded REST response
    assert json.loads((run / "summary.json").read_text())["events"] == summary["events"]

    # Decisions: every backtest decision tick equals the live one (the live session runs on after the replay).
    bt = pl.read_parquet(run / "state.parquet")
    lv = pl.read_ndjson(live_out / "ticks.jsonl")
    t_end = bt["ts_local"].max()
    lv = lv.filter(pl.col("ts_local") <= t_end)
    assert lv.height == bt.height > 50
    for col in ("ts_local", "symbol", "n_quotes_bid", "n_quotes_ask", "n_actions", "n_working", "position"):
        assert lv[col].to_list() == bt[col].to_list(), col
    for col in ("quote_bid", "quote_ask"):
        np.testing.assert_array_equal(lv[col].fill_null(np.nan).to_numpy(), bt[col].to_numpy())
    assert (lv["reason"].to_numpy() >= 0).all()  # no live gate held a tick in the compared span
    # decisions.parquet: the same columns, row for row (wall-time stage timings aside).
    bd = pl.read_parquet(run / "decisions.parquet")
    ld = pl.read_parquet(live_out / "decisions.parquet").filter(pl.col("ts_local") <= t_end)
    assert ld.columns == bd.columns and ld.height == bd.height == bt.height
    same = [c for c in bd.columns if not c.endswith("_ns")]
    assert ld.select(same).equals(bd.select(same))

    # Paper fills: the same fills, one for one.
    bf = pl.read_parquet(run / "fills.parquet")
    lf = pl.read_ndjson(live_out / "fills.jsonl").filter(pl.col("ts_local") <= t_end)
    assert lf.height == bf.height > 0
    for col in ("ts_exch", "ts_local", "symbol", "order_id", "side", "price_ticks", "qty", "maker", "fee"):
        assert lf[col].to_list() == bf[col].to_list(), col


BINANCE_CONFIG = """
[data]
venue = "binance-usdm"
symbols = ["BTCUSDT"]

[strategy]
name = "grid"
interval_ms = 100.0
grid_num = 3
half_spread_ticks = 1.0
order_qty = 0.01
max_position = 1.0

[live]
venue = "binance-usdm"
book_depth = 1000
warmup_s = 0.0
horizon_margin_ms = 300.0
stale_ms = 20000.0
"""


def test_binance_usdm_live_paper_session_matches_the_backtest_of_its_recording(real_data, live_then_backtest, tmp_path):
    from live.replay import BinanceReplayVenue, load_timestamped

    rec = load_timestamped(real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz", max_lines=12_000)
    assert rec.instruments, "the capture's inline REST snapshot is expected in its first lines"
    cfg_path = tmp_path / "live.toml"
    cfg_path.write_text(BINANCE_CONFIG)
    venue = BinanceReplayVenue(rec, sizes={"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}}, speed=6.0)
    summary, live_out, _store, run = live_then_backtest(cfg_path, venue, venue_name="binance-usdm", symbols="BTCUSDT",
                                                       duration="6s",
                                                       ingest_args=("--tick-size", "0.1", "--lot-size", "0.001"))
    assert summary["gaps"] == 0 and summary["late_exch_events"] == 0 and summary["n_decisions"] > 20
    assert summary["per_symbol"]["BTCUSDT"]["book_valid"]
    assert json.loads((run / "summary.json").read_text())["events"] == summary["events"]
    # Compared span: up to the last live tick before the shutdown ticks (which cancel everything) and the
    # backtest's last tick (the live session may end while the replay still runs).
    ticks = pl.read_ndjson(live_out / "ticks.jsonl")
    t_end = min(ticks.filter(pl.col("gate") != "shutdown")["ts_local"].max(),
                pl.read_parquet(run / "decisions.parquet")["ts_local"].max())
    bd = pl.read_parquet(run / "decisions.parquet").filter(pl.col("ts_local") <= t_end)
    ld = pl.read_parquet(live_out / "decisions.parquet").filter(pl.col("ts_local") <= t_end)
    same = [c for c in bd.columns if not c.endswith("_ns")]
    assert ld.height == bd.height > 20
    diff = [c for c in same if not ld[c].equals(bd[c])]
    assert not diff, diff
    bf = pl.read_parquet(run / "fills.parquet")
    bf = bf.filter(pl.col("ts_local") <= t_end)
    text = (live_out / "fills.jsonl").read_text()
    lf = pl.read_ndjson(live_out / "fills.jsonl").filter(pl.col("ts_local") <= t_end) if text else pl.DataFrame()
    assert lf.height == bf.height
    if bf.height:
        for col in ("ts_exch", "order_id", "side", "price_ticks", "qty", "maker"):
            assert lf[col].to_list() == bf[col].to_list(), col
