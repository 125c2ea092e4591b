"""Kill switch (a file appears -> cancel all, no quotes; removed -> quoting again) and ``mmlab live
--metrics-port`` serving /metrics with the seed's names over HTTP during a session."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request

import polars as pl
from typer.testing import CliRunner

from mmlab.cli import app

BASE = {
    "data": {"venue": "bybit-linear", "symbols": ["BTCUSDT", "ETHUSDT"]},
    "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.01, "max_position": 1.0},
    "live": {"venue": "bybit-linear", "warmup_s": 0.0, "book_depth": 200, "horizon_margin_ms": 50.0,
             "stale_ms": 20000.0, "step_ms": 10.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.4,
             "tick_sizes": {"BTCUSDT": 0.1, "ETHUSDT": 0.01}, "lot_sizes": {"BTCUSDT": 0.001, "ETHUSDT": 0.01}},
}


def test_kill_switch_file_cancels_everything_and_holds_quotes_until_removed(bybit_linear, tmp_path):
    from live.replay import ReplayVenue
    from live.runner import LiveRunner
    from mmlab.config import load_config

    kill = tmp_path / "KILL"
    marks = {}

    async def main():
        v = await ReplayVenue(bybit_linear, speed=4.0).start()
        raw = json.loads(json.dumps(BASE))
        raw["live"].update({"ws_url": v.url, "kill_switch_file": str(kill)})
        r = LiveRunner(load_config(raw), out_dir=tmp_path / "out")

        async def operator():
            while r.counts["orders_sent"] < 4:  # quoting
                await asyncio.sleep(0.02)
            kill.write_text("stop")
            marks["on"] = time.time_ns()
            await asyncio.sleep(0.8)
            marks["working_while_killed"] = sum(r.paper.working_orders(i) for i in range(2))
            kill.unlink()
            marks["off"] = time.time_ns()

        t = asyncio.get_running_loop().create_task(operator())
        try:
            return await r.run(3.0)
        finally:
            t.cancel()
            await v.close()

    s = asyncio.run(main())
    assert s["halts"]["kill_switch"] >= 1 and marks["working_while_killed"] == 0
    ticks = pl.read_ndjson(tmp_path / "out" / "ticks.jsonl")
    held = ticks.filter(pl.col("gate") == "kill_switch")
    assert held.height >= 4 and (held["n_quotes_bid"] + held["n_quotes_ask"]).sum() == 0
    assert held["ts_local"].min() >= marks["on"] and held["ts_local"].max() <= marks["off"] + 100_000_000
    orders = pl.read_ndjson(tmp_path / "out" / "orders.jsonl")
    canceled = orders.filter((pl.col("event") == "canceled") & (pl.col("ts_local") >= marks["on"]))
    assert canceled.height > 0  # the working orders were canceled
    sent_during = orders.filter((pl.col("event") == "sent") & (pl.col("ts_local") > held["ts_local"].min())
                                & (pl.col("ts_local") <= held["ts_local"].max()))
    assert sent_during.height == 0  # nothing placed while the file exists
    after = ticks.filter(pl.col("ts_local") > marks["off"] + 100_000_000)
    assert (after["gate"] == "open").any()  # quoting again once the file is gone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_port_serves_the_seed_metric_names_during_a_session(bybit_linear, tmp_path):
    from live.replay import ReplayVenue

    loop = asyncio.new_event_loop()
    venue = ReplayVenue(bybit_linear, speed=4.0)
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(venue.start())
        ready.set()
        loop.run_forever()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    assert ready.wait(10)
    port = _free_port()
    scraped: list[str] = []

    def scrape():
        deadline = time.time() + 20
        while time.time() < deadline and len(scraped) < 3:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if "mm_decision_ticks_total{" in text:
                    scraped.append(text)
            except OSError:
                pass
            time.sleep(0.2)

    cfg = tmp_path / "live.toml"
    cfg.write_text('[strategy]\ngrid_num = 2\nhalf_spread_ticks = 1.0\norder_qty = 0.01\nmax_position = 1.0\n'
                   '[live]\nwarmup_s = 0.0\nbook_depth = 200\nhorizon_margin_ms = 50.0\nstep_ms = 10.0\n'
                   'stale_ms = 20000.0\n'
                   'tick_sizes = {BTCUSDT = 0.1, ETHUSDT = 0.01}\nlot_sizes = {BTCUSDT = 0.001, ETHUSDT = 0.01}\n')
    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    try:
        r = CliRunner().invoke(app, ["live", "--paper", "--config", str(cfg), "--venue", "bybit-linear",
                                     "--symbols", "BTCUSDT,ETHUSDT", "--ws-url", venue.url, "--duration", "3s",
                                     "--out", str(tmp_path / "out"), "--metrics-port", str(port), "--failsafe", "--json"])
        scraper.join(25)
    finally:
        asyncio.run_coroutine_threadsafe(venue.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)
    assert r.exit_code == 0, r.output
    assert scraped, "no /metrics answer during the session"
    text = scraped[-1]
    series = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for name in ("mm_md_cache_hit_total", "mm_md_cache_miss_total", "mm_md_cache_hit_ratio",
                 "mm_stage_duration_seconds_bucket", "mm_tick_total_seconds_bucket", "mm_deadline_miss_total",
                 "mm_symbol_mid", "mm_symbol_spread_ticks", "mm_symbol_imbalance", "trades_opened_total",
                 "fail_safe_active", "rollout_mode", "mm_ws_frames_total"):
        assert name in series, name
    for name in ("warmup_skip_total", "backpressure_total", "fail_safe_switch_total", "mode_switch_total",
                 "rollback_total", "mm_md_cache_invalidate_total", "mm_md_cache_depth_miss_total",
                 "mm_pricing_on_stale_total"):
        assert f"# TYPE {name} counter" in text, name  # declared even before a first sample
    assert 'mm_md_cache_hit_total{symbol="BTCUSDT"}' in text
    # The port is closed after the session.
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
        still_open = True
    except OSError:
        still_open = False
    assert not still_open
