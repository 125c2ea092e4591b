"""The reference ``grid`` strategy written for hftbacktest 2.4.4, and the conversion of our events to its format.

Shared by ``tests/unit/sim/test_hftbacktest_parity.py``, ``benchmarks/validate_hftbacktest.py`` and
``benchmarks/bench_vs_hftbacktest.py``. hftbacktest runs the grid in ticks: ``elapse(interval)`` processes events
up to the tick, then the strategy acts on the local book and order states.
"""

from __future__ import annotations

import hftbacktest as hbt
import numba
import numpy as np

from mmlab.types import Kind

#: Queue model name in the config -> hftbacktest asset builder method.
HBT_QUEUE_MODELS = {
    "risk_averse": "risk_adverse_queue_model", "power_prob": "power_prob_queue_model",
    "power_prob2": "power_prob_queue_model2", "power_prob3": "power_prob_queue_model3",
    "log_prob": "log_prob_queue_model", "log_prob2": "log_prob_queue_model2",
}

#: Columns of the per-tick output of :func:`grid_hbt`.
OUT_POSITION, OUT_BALANCE, OUT_FEE, OUT_NUM_TRADES, OUT_MID = range(5)
#: Fills read from hftbacktest's order states (see :func:`run_grid_hbt`).
HBT_FILL_DTYPE = np.dtype([("ts_exch", np.int64), ("price_ticks", np.int64), ("side", np.int64), ("qty", np.float64)])


def to_hftbacktest(ev: np.ndarray, tick: float) -> np.ndarray:
    """Convert ``event_dtype`` rows (BBO rows dropped) to hftbacktest's ``event_dtype``.

    Each row appears twice: once as an exchange event (in exchange-time order) and once as a local event
    (local-time order), so the array holds ``2 * n_replayed`` rows. The result must outlive the backtest:
    hftbacktest reads it in place.
    """
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
    exch = base[np.argsort(keep["ts_exch"], kind="stable")].copy()
    exch["ev"] |= hbt.EXCH_EVENT
    local = base.copy()
    local["ev"] |= hbt.LOCAL_EVENT
    return np.concatenate([exch, local])


def hbt_backtest(data: np.ndarray, tick: float, lot: float, queue_model: str, queue_power: float,
                 maker_fee: float, taker_fee: float, entry_latency_ns: int, response_latency_ns: int):
    """A ``HashMapMarketDepthBacktest`` over ``data`` with a constant latency and the no-partial-fill exchange."""
    asset = hbt.BacktestAsset().data([data]).linear_asset(1.0).constant_order_latency(entry_latency_ns,
                                                                                      response_latency_ns)
    asset = getattr(asset, HBT_QUEUE_MODELS[queue_model])(*([queue_power] if queue_model.startswith("power") else []))
    asset = asset.no_partial_fill_exchange().trading_value_fee_model(maker_fee, taker_fee).tick_size(tick).lot_size(lot)
    return hbt.HashMapMarketDepthBacktest([asset])


@numba.njit
def _record_fills(orders, fills, fill_qty, nf):
    """Append the orders the local side sees as FILLED (each once: they are cleared right after)."""
    vals = orders.values()
    while vals.has_next():
        o = vals.get()
        if o.status == hbt.FILLED and nf < fills.shape[0]:
            fills[nf, 0] = o.exch_timestamp
            fills[nf, 1] = o.exec_price_tick
            fills[nf, 2] = 1 if o.side == hbt.BUY else -1
            fill_qty[nf] = o.exec_qty
            nf += 1
    return nf


@numba.njit
def grid_hbt(bt, grid_num, gi, hs, skew, qty, maxpos, interval, out, fills, fill_qty):
    """Run the grid; per tick ``out`` gets position, balance, fee, num_trades, mid; per fill read from the order
    states, int64 ``fills`` gets (exch_ts, exec price tick, side) and ``fill_qty`` the exec qty.
    Returns (ticks, fills)."""
    tick = bt.depth(0).tick_size
    k = 0
    nf = 0
    while bt.elapse(interval) == 0:
        nf = _record_fills(bt.orders(0), fills, fill_qty, nf)
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
        if k < out.shape[0]:
            sv = bt.state_values(0)
            out[k, 0] = sv.position
            out[k, 1] = sv.balance
            out[k, 2] = sv.fee
            out[k, 3] = sv.num_trades
            out[k, 4] = 0.5 * (bb + ba) * tick if (bb > -(2**62) and ba < 2**62) else np.nan
        k += 1
    nf = _record_fills(bt.orders(0), fills, fill_qty, nf)
    return k, nf


def run_grid_hbt(ev: np.ndarray, tick: float, lot: float, cfg, *, data: np.ndarray | None = None,
                 max_ticks: int = 1 << 20, max_fills: int = 1 << 20):
    """Convert (unless ``data`` is given), build the backtest from ``cfg.sim`` (constant latency) and run the grid of
    ``cfg.strategy``. Returns ``(out[:ticks], fills)`` with ``fills`` of :data:`HBT_FILL_DTYPE`."""
    st, sm = cfg.strategy, cfg.sim
    if data is None:
        data = to_hftbacktest(ev, tick)
    bt = hbt_backtest(data, tick, lot, sm.queue_model, sm.queue_power, sm.maker_fee, sm.taker_fee,
                      int(sm.entry_latency_ms * 1e6), int(sm.response_latency_ms * 1e6))
    out = np.zeros((max_ticks, 5))
    fills = np.zeros((max_fills, 3), np.int64)
    fill_qty = np.zeros(max_fills)
    n, nf = grid_hbt(bt, st.grid_num, st.grid_interval_ticks, st.half_spread_ticks, st.skew_ticks, st.order_qty,
                     st.max_position, int(st.interval_ms * 1e6), out, fills, fill_qty)
    bt.close()
    f = np.zeros(nf, HBT_FILL_DTYPE)
    f["ts_exch"], f["price_ticks"], f["side"], f["qty"] = fills[:nf, 0], fills[:nf, 1], fills[:nf, 2], fill_qty[:nf]
    return out[:min(n, max_ticks)], f
