"""A paper session against a local replay venue (loopback websocket), run in the test's own event loop."""

from __future__ import annotations

import asyncio
import json

import polars as pl
import pytest

BASE = {
    "data": {"venue": "bybit-linear", "symbols": ["BTCUSDT", "ETHUSDT"]},
    "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.01, "max_position": 1.0},
    "live": {"venue": "bybit-linear", "warmup_s": 0.0, "book_depth": 200, "horizon_margin_ms": 50.0,
             "stale_ms": 20000.0, "step_ms": 10.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.4,
             "tick_sizes": {"BTCUSDT": 0.1, "ETHUSDT": 0.01}, "lot_sizes": {"BTCUSDT": 0.001, "ETHUSDT": 0.01}},
}


@pytest.fixture(scope="session")
def bybit_linear(real_data):
    from live.replay import load_cryptofeed

    return load_cryptofeed(real_data / "bybit" / "BYBIT.jsonl.gz", "/v5/public/linear")


class Session:
    def __init__(self, out, summary, venue, runner):
        self.out = out
        self.summary = summary
        self.venue = venue
        self.runner = runner

    def ticks(self) -> pl.DataFrame:
        return pl.read_ndjson(self.out / "ticks.jsonl")

    def orders(self) -> pl.DataFrame:
        return pl.read_ndjson(self.out / "orders.jsonl")


@pytest.fixture
def session(bybit_linear, tmp_path):
    """``session(duration_s, venue={...}, live={...}, stop_after_s=None)`` -> Session."""
    from live.replay import ReplayVenue
    from live.runner import LiveRunner
    from mmlab.config import load_config

    def run(duration_s: float, *, venue: dict | None = None, live: dict | None = None, stop_after_s=None):
        async def main():
            v = await ReplayVenue(bybit_linear, **{"speed": 4.0, **(venue or {})}).start()
            raw = json.loads(json.dumps(BASE))
            raw["live"].update({"ws_url": v.url, **(live or {})})
            cfg = load_config(raw)
            r = LiveRunner(cfg, out_dir=tmp_path / "out")
            if stop_after_s is not None:
                asyncio.get_running_loop().call_later(stop_after_s, r.stop)
            try:
                s = await r.run(duration_s)
            finally:
                await v.close()
            return Session(tmp_path / "out", s, v, r)

        return asyncio.run(main())

    return run
