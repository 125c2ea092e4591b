"""Live/backtest parity: a local websocket venue replays the shared Bybit v5 recording to ``mmlab live --paper``;
``mmlab data ingest`` of what the runner recorded + ``mmlab backtest`` with the same config give the same
decisions (quotes per tick) and the same paper fills."""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mmlab.cli import app

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


class VenueThread:
    """A ReplayVenue on its own event loop in a daemon thread (the CLI runs its own loop)."""

    def __init__(self, rec, **kw):
        from live.replay import ReplayVenue

        self.loop = asyncio.new_event_loop()
        self.venue = ReplayVenue(rec, **kw)
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.venue.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.venue.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def bybit_recording(real_data):
    from live.replay import load_cryptofeed

    return load_cryptofeed(real_data / "bybit" / "BYBIT.jsonl.gz", "/v5/public/linear")


@pytest.mark.parametrize("strategy", ["grid", "grid_pipeline"])
def test_live_paper_session_replays_to_identical_backtest_decisions_and_fills(bybit_recording, tmp_path, strategy):
    cfg_path = tmp_path / "live.toml"
    cfg_path.write_text(CONFIG.replace("{strategy}", strategy))
    venue = VenueThread(bybit_recording, speed=12.0)
    cli = CliRunner()
    try:
        live_out = tmp_path / "live"
        r = cli.invoke(app, ["live", "--paper", "--config", str(cfg_path), "--venue", "bybit-linear",
                             "--symbols", "BTCUSDT,ETHUSDT", "--ws-url", venue.venue.url,
                             "--rest-url", venue.venue.rest_url, "--duration", "5.5s", "--out", str(live_out),
                             "--json"])
        assert r.exit_code == 0, r.output
    finally:
        venue.close()
    summary = json.loads((live_out / "summary.json").read_text())
    assert venue.venue.done.is_set(), "the replay did not finish within the session"
    assert summary["late_exch_events"] == 0 and summary["gaps"] == 0 and summary["reconnects"] == 0
    assert summary["n_fills"] > 0 and summary["n_decisions"] > 50
    assert summary["working_orders_after_cancel_all"] == 0

    store = tmp_path / "store"
    rec_files = sorted(str(p) for p in (live_out / "recording").glob("*.gz"))
    r = cli.invoke(app, ["data", "ingest", *rec_files, "--source", "bybit-linear", "--out", str(store)])
    assert r.exit_code == 0, r.output
    meta = json.loads((store / "bybit-linear" / "BTCUSDT" / "_meta.json").read_text())
    assert meta["tick_size"] == 0.1 and meta["tick_size_source"] == "source"  # from the recorded REST response

    run = tmp_path / "run"
    r = cli.invoke(app, ["backtest", "--config", str(cfg_path), "--data", str(store), "--out", str(run),
                         "--no-report", "--quiet"])
    assert r.exit_code == 0, r.output
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


def test_binance_usdm_live_paper_session_matches_the_backtest_of_its_recording(real_data, tmp_path):
    from live.replay import BinanceReplayVenue, load_timestamped

    rec = load_timestamped(real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz", max_lines=12_000)
    assert rec.instruments, "the capture's inline REST snapshot is expected in its first lines"
    cfg_path = tmp_path / "live.toml"
    cfg_path.write_text(BINANCE_CONFIG)
    th = VenueThread.__new__(VenueThread)
    th.loop = asyncio.new_event_loop()
    th.venue = BinanceReplayVenue(rec, sizes={"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}}, speed=6.0)
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(th.loop)
        th.loop.run_until_complete(th.venue.start())
        ready.set()
        th.loop.run_forever()

    th.thread = threading.Thread(target=run, daemon=True)
    th.thread.start()
    ready.wait(10)
    cli = CliRunner()
    live_out = tmp_path / "live"
    try:
        r = cli.invoke(app, ["live", "--paper", "--config", str(cfg_path), "--venue", "binance-usdm",
                             "--symbols", "BTCUSDT", "--ws-url", th.venue.url, "--rest-url", th.venue.rest_url,
                             "--duration", "6s", "--out", str(live_out), "--json"])
        assert r.exit_code == 0, r.output
    finally:
        th.close()
    summary = json.loads((live_out / "summary.json").read_text())
    assert summary["gaps"] == 0 and summary["late_exch_events"] == 0 and summary["n_decisions"] > 20
    assert summary["per_symbol"]["BTCUSDT"]["book_valid"]

    store = tmp_path / "store"
    rec_files = sorted(str(p) for p in (live_out / "recording").glob("*.gz"))
    r = cli.invoke(app, ["data", "ingest", *rec_files, "--source", "binance-usdm", "--tick-size", "0.1",
                         "--lot-size", "0.001", "--out", str(store)])
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    r = cli.invoke(app, ["backtest", "--config", str(cfg_path), "--data", str(store), "--out", str(run),
                         "--no-report", "--quiet"])
    assert r.exit_code == 0, r.output
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
