"""Binance USD-M resilience against a local venue (``live.replay.BinanceReplayVenue(current_book=True)``: real
websocket and HTTP over loopback) that keeps a current order book and answers ``GET /fapi/v1/depth`` with it, as
Binance does: a dropped diff (``pu`` break) -> REST re-snapshot and no quoting until the book is consistent; the
server dropping the connection -> reconnect, resubscribe and a fresh snapshot."""

from __future__ import annotations

import asyncio
import json

import polars as pl
import pytest

from live.replay import BinanceReplayVenue, load_timestamped

CONFIG = {
    "data": {"venue": "binance-usdm", "symbols": ["BTCUSDT"]},
    "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.001, "max_position": 0.01},
    "live": {"venue": "binance-usdm", "book_depth": 1000, "warmup_s": 0.0, "horizon_margin_ms": 300.0,
             "stale_ms": 20000.0, "step_ms": 10.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.4,
             "tick_sizes": {"BTCUSDT": 0.1}, "lot_sizes": {"BTCUSDT": 0.001}},
}


@pytest.fixture(scope="module")
def capture(real_data):
    return load_timestamped(real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz", max_lines=12_000)


def _session(rec, tmp_path, duration_s: float, **venue_kw):
    from live.runner import LiveRunner
    from mmlab.config import load_config

    async def main():
        v = await BinanceReplayVenue(rec, sizes={"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}}, speed=6.0,
                                     current_book=True, **venue_kw).start()
        raw = json.loads(json.dumps(CONFIG))
        raw["live"].update({"ws_url": v.url, "rest_url": v.rest_url})
        r = LiveRunner(load_config(raw), out_dir=tmp_path / "out")
        try:
            return await r.run(duration_s), v
        finally:
            await v.close()

    return asyncio.run(main())


def test_dropped_diff_resnapshots_over_rest_and_holds_quotes_until_consistent(capture, tmp_path):
    s, v = _session(capture, tmp_path, 3.5, drop_depth=(200,), snapshot_delay_s=0.4)
    assert s["gaps"] == 1 and s["connect_errors"] == 0
    gap = s["sequence_gaps"][0]
    assert gap["symbol"] == "BTCUSDT" and gap["got"] != gap["expected"]
    # Two REST snapshots: the initial sync and the re-sync after the gap, the second at a later update id.
    assert len(v.snapshots_served) == 2 and v.snapshots_served[1] > v.snapshots_served[0]
    assert s["per_symbol"]["BTCUSDT"]["book_valid"] and s["late_exch_events"] == 0
    ticks = pl.read_ndjson(tmp_path / "out" / "ticks.jsonl")
    held = ticks.filter(pl.col("gate") == "book_invalid")
    assert held.height >= 1 and (held["n_quotes_bid"] + held["n_quotes_ask"]).sum() == 0
    after = ticks.filter(pl.col("ts_local") > held["ts_local"].max())
    assert (after["gate"] == "open").sum() > 5  # quoting again on the re-synced book
    assert (after["best_bid"] < after["best_ask"]).all()  # never a crossed book after the re-sync


def test_server_closing_the_connection_reconnects_resubscribes_and_resyncs(capture, tmp_path):
    s, v = _session(capture, tmp_path, 4.5, close_after=500, snapshot_delay_s=0.4)
    assert v.connections == 2 and s["reconnects"] == 1 and s["gaps"] == 0
    assert len(v.snapshots_served) == 2  # a fresh snapshot for the new connection
    assert s["per_symbol"]["BTCUSDT"]["book_valid"]
    ticks = pl.read_ndjson(tmp_path / "out" / "ticks.jsonl")
    held = ticks.filter(pl.col("gate") == "book_invalid")
    assert held.height >= 1  # no quoting between the reconnect and the new snapshot
    after = ticks.filter(pl.col("ts_local") > held["ts_local"].max())
    assert (after["gate"] == "open").sum() >= 3 and (after["best_bid"] < after["best_ask"]).all()
