"""Validation: the grid on the real BTCUSDT capture gives the same local state as hftbacktest 2.4.4 at every tick.

hftbacktest runs the same grid in ticks (its ``elapse(interval)`` processes events up to the tick, then the
strategy acts) on the same normalized events, with a constant latency, its L2 queue models and its
NoPartialFillExchange. Position, balance and fees as the strategy sees them must agree at every decision tick
(balance and fees to float rounding: simultaneous fills may be summed in another order).
"""

import numpy as np
import pytest

from mmlab.config import load_config
from mmlab.data.bridge import load_events
from mmlab.data.ingest import IngestOptions, ingest
from mmlab.sim.engine import SymbolSpec, run_backtest
from mmlab.types import Kind

hbt = pytest.importorskip("hftbacktest")
numba = pytest.importorskip("numba")

pytestmark = [pytest.mark.slow, pytest.mark.real_data]


def _to_hftbacktest(ev, tick):
    keep = ev[ev["kind"] != Kind.BBO]
    base = np.zeros(len(keep), hbt.event_dtype)
    flags = np.zeros(len(keep), np.uint64)
    flags[keep["side"] == 1] = hbt.BUY_EVENT
    flags[keep["side"] == -1] = hbt.SELL_EVENT
    base["ev"] = keep["kind"].astype(np.uint64) | flags
    base["exch_ts"] = keep["ts_exch"]
    base["local_ts"] = keep["ts_local"]
    base["px"] = keep["price_ticks"] * tick
    base["px"][keep["kind"] == Kind.CLEAR] = np.nan
    base["qty"] = keep["qty"]
    # One copy of each row for the exchange (in exchange-time order), one for the local side (local-time order).
    exch = base[np.argsort(keep["ts_exch"], kind="stable")].copy()
    exch["ev"] |= hbt.EXCH_EVENT
    local = base.copy()
    local["ev"] |= hbt.LOCAL_EVENT
    return np.concatenate([exch, local])


@numba.njit
def _grid_hbt(bt, grid_num, gi, hs, skew, qty, maxpos, interval, out):
    tick = bt.depth(0).tick_size
    k = 0
    while bt.elapse(interval) == 0:
        bt.clear_inactive_orders(0)
        depth = bt.depth(0)
        position = bt.position(0)
        orders = bt.orders(0)
        bb = depth.best_bid_tick
        ba = depth.best_ask_tick
        bids = np.zeros(grid_num, np.int64)
        asks = np.zeros(grid_num, np.int64)
        nb = 0
        na = 0
        if bb > -(2**62) and ba < 2**62:
            res = 0.5 * (bb + ba) - skew * position / qty
            bid_tick = min(np.int64(np.floor(res - hs)), bb)
            ask_tick = max(np.int64(np.ceil(res + hs)), ba)
            if position < maxpos:
                for i in range(grid_num):
                    bids[nb] = bid_tick - i * gi
                    nb += 1
            if position > -maxpos:
                for i in range(grid_num):
                    asks[na] = ask_tick + i * gi
                    na += 1
        vals = orders.values()
        while vals.has_next():
            o = vals.get()
            if o.cancellable:
                keep = False
                if o.side == hbt.BUY:
                    for i in range(nb):
                        keep = keep or bids[i] == o.order_id
                else:
                    for i in range(na):
                        keep = keep or asks[i] == o.order_id
                if not keep:
                    bt.cancel(0, o.order_id, False)
        for i in range(nb):
            if numba.uint64(bids[i]) not in orders:
                bt.submit_buy_order(0, numba.uint64(bids[i]), bids[i] * tick, qty, hbt.GTX, hbt.LIMIT, False)
        for i in range(na):
            if numba.uint64(asks[i]) not in orders:
                bt.submit_sell_order(0, numba.uint64(asks[i]), asks[i] * tick, qty, hbt.GTX, hbt.LIMIT, False)
        sv = bt.state_values(0)
        out[k, 0] = sv.position
        out[k, 1] = sv.balance
        out[k, 2] = sv.fee
        out[k, 3] = sv.num_trades
        k += 1
    return k


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
    st, sm = cfg.strategy, cfg.sim
    data = _to_hftbacktest(ev, tick)  # must outlive the backtest: hftbacktest reads it in place
    asset = hbt.BacktestAsset().data([data]).linear_asset(1.0).constant_order_latency(10_000_000, 10_000_000)
    qm = {"risk_averse": "risk_adverse_queue_model", "power_prob": "power_prob_queue_model",
          "power_prob2": "power_prob_queue_model2", "power_prob3": "power_prob_queue_model3",
          "log_prob": "log_prob_queue_model", "log_prob2": "log_prob_queue_model2"}[queue_model]
    asset = getattr(asset, qm)(*([sm.queue_power] if queue_model.startswith("power") else []))
    asset = asset.no_partial_fill_exchange().trading_value_fee_model(sm.maker_fee, sm.taker_fee).tick_size(tick).lot_size(lot)
    bt = hbt.HashMapMarketDepthBacktest([asset])
    out = np.zeros((20_000, 4))
    n = _grid_hbt(bt, st.grid_num, st.grid_interval_ticks, st.half_spread_ticks, st.skew_ticks, st.order_qty,
                  st.max_position, int(st.interval_ms * 1e6), out)
    bt.close()
    ours = run_backtest(cfg, events=ev, symbols=[SymbolSpec("BTCUSDT", tick, lot)])
    s = ours.state
    assert s.height == n
    assert ours.summary["n_fills"] == int(out[n - 1, 3]) > 100
    np.testing.assert_array_equal(s["position"].to_numpy(), out[:n, 0])
    np.testing.assert_allclose(s["cash"].to_numpy(), out[:n, 1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(s["fees"].to_numpy(), out[:n, 2], rtol=0, atol=1e-12)
