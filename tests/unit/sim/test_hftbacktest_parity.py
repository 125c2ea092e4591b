"""Validation: the grid on the real BTCUSDT capture gives the same local state as hftbacktest 2.4.4 at every tick.

hftbacktest runs the same grid in ticks (its ``elapse(interval)`` processes events up to the tick, then the
strategy acts) on the same normalized events, with a constant latency, its L2 queue models and its
NoPartialFillExchange. Position, balance and fees as the strategy sees them must agree at every decision tick
(balance and fees to float rounding: simultaneous fills may be summed in another order).
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from mmlab.config import load_config
from mmlab.data.bridge import load_events
from mmlab.data.ingest import IngestOptions, ingest
from mmlab.sim.engine import SymbolSpec, run_backtest

hbt = pytest.importorskip("hftbacktest")
numba = pytest.importorskip("numba")

pytestmark = [pytest.mark.slow, pytest.mark.real_data]

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
from _hbt_grid import run_grid_hbt


@pytest.fixture(scope="module")
def btc(real_data, tmp_path_factory):
    src = real_data / "binance_usdm"
    root = tmp_path_factory.mktemp("store")
    ingest([src / "usdm_btcusdt_20240718.gz", src / "usdm_btcusdt_20240719.gz"], "binance-usdm", root, IngestOptions())
    return load_events(root, "binance-usdm", ["BTCUSDT"])


@pytest.mark.parametrize("queue_model", ["risk_averse", "power_prob", "power_prob2", "power_prob3", "log_prob", "log_prob2"])
def test_grid_matches_hftbacktest_at_every_decision(btc, queue_model):
    ev, infos = btc
    tick, lot = infos[0].tick_size, infos[0].lot_size
    cfg = load_config({
        "strategy": {"grid_num": 5, "interval_ms": 100, "half_spread_ticks": 2, "skew_ticks": 1.0, "order_qty": 0.001,
                     "max_position": 0.01},
        "sim": {"queue_model": queue_model, "queue_power": 2.0, "entry_latency_ms": 10, "response_latency_ms": 10,
                "maker_fee": -0.00005, "taker_fee": 0.0007},
    })
    out, _ = run_grid_hbt(ev, tick, lot, cfg)
    n = len(out)
    ours = run_backtest(cfg, events=ev, symbols=[SymbolSpec("BTCUSDT", tick, lot)])
    s = ours.state
    assert s.height == n
    assert ours.summary["n_fills"] == int(out[n - 1, 3]) > 100
    np.testing.assert_array_equal(s["position"].to_numpy(), out[:n, 0])
    np.testing.assert_allclose(s["cash"].to_numpy(), out[:n, 1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(s["fees"].to_numpy(), out[:n, 2], rtol=0, atol=1e-12)
