"""Per-symbol feature collectors: causal, compiled, the same code in backtests, datasets and the live runner.

A collector is one ``collector_state_dtype`` record per symbol (its params one ``collector_params_dtype``
record), updated by four event kernels; every value uses only what happened up to the call:

- :func:`collector_on_book_nb` — a consistent book (top-N depth, best level first): spread, top quantities,
  imbalance at ``depth_levels`` (1, 5, 10 by default), micro-price offset, trade flow and absorption rate read
  at that time, ``liq_top_depth`` EMA, and a mid sample (:func:`collector_mid_sample_nb`: mid returns over
  ``ret_short_ns`` / ``ret_long_ns``, volatility of per-sample returns over ``vol_window_ns``, the
  ``vol_realized`` EMA, and the adverse-move bookkeeping of pending fills). Call it at decision ticks (that is
  what the datasets do) or at every consistent book; EMAs weigh each call as one sample.
- :func:`collector_on_trade_nb` — a public trade: decayed per-side quantity rates (trade flow) and the total
  traded quantity rate (``queue_absorb_rate``, qty per second).
- :func:`collector_on_fill_nb` — one of our fills: counts, ``taker_share``, ``slippage_bps`` and a pending
  adverse move, finalized ``adverse_horizon_ns`` later as the worst mid move against the fill
  (``side * (price - mid) / price``, bps; the label of :mod:`mmlab.labels.forward`, computed causally).
- :func:`collector_on_decision_nb` — a decision tick: ``fill_rate`` (EMA of fills per decision over EMA of
  orders placed per decision), ``latency_p95`` (nearest-rank quantile of the last ``window_n`` latency samples,
  then EMA), ``queue_eta_ms`` (queue ahead / absorption rate), ``pnl_dev`` (equity change per traded notional
  minus ``pnl_target_bps``).

EMAs are ``prev + alpha * (x - prev)`` per sample (:func:`mmlab.features.ema.ema_nb`), NaN until the first
sample. Rolling windows live in rings of :data:`~mmlab.types.COLLECTOR_RING_MAX` samples; a time window wider than
the ring is computed on the samples held and counted in ``window_overflows`` (a return whose reference sample
has left the ring is NaN).

:data:`METRICS` names the fields for live export (Prometheus gauges ``mm_symbol_*{symbol=...}``, help texts in
:data:`METRIC_HELP`); :func:`metric_values` reads them. :func:`collectors_on_trades_nb` feeds the public trades of
a block of event rows (the live runner's stream) to the collectors of their symbols. :func:`collector_tick_nb` gives the model's tick features of one decision tick
(live) and :func:`tick_features_nb` of a series of ticks in one call (what :mod:`mmlab.ml.dataset` uses): the
same kernel, so live rows equal training rows.

>>> params, state = new_collectors(1, alpha=0.5)
>>> bq, aq = np.array([3.0, 1.0]), np.array([1.0, 1.0])
>>> collector_on_book_nb(params[0], state[0], 0, 100, 102, bq, 2, aq, 2)
>>> float(state[0]["spread_ticks"]), float(state[0]["imbalance"][0]), float(state[0]["microprice_offset_ticks"])
(2.0, 0.5, 0.5)
>>> metric_values(state, 0)["mm_symbol_liq_top_depth"]
4.0
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mmlab.errors import ConfigError
from mmlab.features.ema import decayed_rate_add_nb, decayed_rate_at_nb, ema_nb
from mmlab.features.imbalance import book_imbalance_nb, micro_price_ticks_nb
from mmlab.types import (
    COLLECTOR_DEPTHS,
    COLLECTOR_PENDING_MAX,
    COLLECTOR_RING_MAX,
    Kind,
    collector_params_dtype,
    collector_state_dtype,
)

__all__ = [
    "METRICS",
    "METRIC_HELP",
    "TICK_COLUMNS",
    "collector_init_nb",
    "collector_mid_sample_nb",
    "collector_on_book_nb",
    "collector_on_decision_nb",
    "collector_on_fill_nb",
    "collector_on_trade_nb",
    "collector_tick_nb",
    "collectors_on_trades_nb",
    "metric_values",
    "new_collectors",
    "tick_features",
    "tick_features_nb",
]

NS_PER_MS = 1_000_000
_TRADE = int(Kind.TRADE)

#: Live metric name -> (state field, index into an array field or -1). Exported per symbol as a gauge.
METRICS = {
    "mm_symbol_vol_realized": ("vol_realized_bps", -1),
    "mm_symbol_liq_top_depth": ("liq_top_depth_qty", -1),
    "mm_symbol_latency_p95": ("latency_p95_ms", -1),
    "mm_symbol_pnl_dev": ("pnl_dev_bps", -1),
    "mm_symbol_fill_rate": ("fill_rate", -1),
    "mm_symbol_taker_share": ("taker_share", -1),
    "mm_symbol_queue_absorb_rate": ("queue_absorb_rate_qty_s", -1),
    "mm_symbol_queue_eta_ms": ("queue_eta_ms", -1),
    "mm_symbol_slippage_bps": ("slippage_bps", -1),
    "mm_symbol_adverse_move_bps": ("adverse_move_bps", -1),
    "mm_symbol_fills_total": ("fills_total", -1),
    "mm_symbol_fills_maker": ("fills_maker", -1),
    "mm_symbol_fills_taker": ("fills_taker", -1),
    "mm_symbol_spread_ticks": ("spread_ticks", -1),
    "mm_symbol_imbalance_depth0": ("imbalance", 0),  # depth_levels[0] levels (default 1)
    "mm_symbol_imbalance_depth1": ("imbalance", 1),  # default 5
    "mm_symbol_imbalance_depth2": ("imbalance", 2),  # default 10
    "mm_symbol_microprice_offset_ticks": ("microprice_offset_ticks", -1),
    "mm_symbol_trade_flow": ("trade_flow_qty_s", -1),
    "mm_symbol_trade_flow_imbalance": ("trade_flow_imbalance", -1),
    "mm_symbol_ret_bps_short": ("ret_bps_short", -1),
    "mm_symbol_ret_bps_long": ("ret_bps_long", -1),
}

#: Help text of each :data:`METRICS` gauge (units in the name or here).
METRIC_HELP = {
    "mm_symbol_vol_realized": "EMA of the mid-return volatility over vol_window (bps per sample)",
    "mm_symbol_liq_top_depth": "EMA of the touch quantity, bid + ask (base units)",
    "mm_symbol_latency_p95": "EMA of the p95 of the last window_n latency samples (ms)",
    "mm_symbol_pnl_dev": "EMA of equity change per traded notional minus the target (bps)",
    "mm_symbol_fill_rate": "EMA of fills per decision over EMA of orders placed per decision",
    "mm_symbol_taker_share": "EMA of the taker share of our fills",
    "mm_symbol_queue_absorb_rate": "decayed traded quantity rate (base units per second)",
    "mm_symbol_queue_eta_ms": "EMA of queue ahead / absorption rate (ms)",
    "mm_symbol_slippage_bps": "EMA of fill price vs mid at send, positive = worse (bps)",
    "mm_symbol_adverse_move_bps": "EMA of the worst mid move against a fill within adverse_horizon (bps)",
    "mm_symbol_fills_total": "fills counted by the collector",
    "mm_symbol_fills_maker": "maker fills counted by the collector",
    "mm_symbol_fills_taker": "taker fills counted by the collector",
    "mm_symbol_spread_ticks": "local book spread (ticks)",
    "mm_symbol_imbalance_depth0": "book imbalance over depth_levels[0] levels (default 1)",
    "mm_symbol_imbalance_depth1": "book imbalance over depth_levels[1] levels (default 5)",
    "mm_symbol_imbalance_depth2": "book imbalance over depth_levels[2] levels (default 10)",
    "mm_symbol_microprice_offset_ticks": "micro price minus mid (ticks)",
    "mm_symbol_trade_flow": "decayed buy minus sell traded quantity rate (base units per second)",
    "mm_symbol_trade_flow_imbalance": "(buy - sell) / (buy + sell) of the decayed trade rates",
    "mm_symbol_ret_bps_short": "mid return over ret_short (bps)",
    "mm_symbol_ret_bps_long": "mid return over ret_long (bps)",
}

#: Columns of :func:`tick_features_nb`'s output, in order.
TICK_COLUMNS = ("spread_ticks", "bid_qty", "ask_qty", "imbalance", "ret_bps_short", "ret_bps_long", "vol_bps")


# ----------------------------------------------------------------------------------------------- kernels


@njit(cache=True, error_model="numpy")
def collector_init_nb(s):
    """Reset one collector record: EMAs and last values NaN, counters and rings empty."""
    nan = np.nan
    s.vol_realized_bps = nan
    s.liq_top_depth_qty = nan
    s.latency_p95_ms = nan
    s.pnl_dev_bps = nan
    s.fill_rate = nan
    s.taker_share = nan
    s.queue_absorb_rate_qty_s = nan
    s.queue_eta_ms = nan
    s.slippage_bps = nan
    s.adverse_move_bps = nan
    s.mid = nan
    s.spread_ticks = nan
    s.bid_qty = nan
    s.ask_qty = nan
    for k in range(COLLECTOR_DEPTHS):
        s.imbalance[k] = nan
    s.microprice_offset_ticks = nan
    s.trade_flow_qty_s = nan
    s.trade_flow_imbalance = nan
    s.ret_bps_short = nan
    s.ret_bps_long = nan
    s.vol_bps = nan
    s.latency_q_ms = nan
    s.fills_total = 0
    s.fills_maker = 0
    s.fills_taker = 0
    s.quotes_total = 0
    s.decisions = 0
    s.trades = 0
    s.mid_samples = 0
    s.window_overflows = 0
    s.pending_dropped = 0
    s.fills_since_decision = 0
    s.ema_fills = nan
    s.ema_quotes = nan
    s.equity0 = nan
    s.buy_rate = 0.0
    s.sell_rate = 0.0
    s.absorb_rate = 0.0
    s.rate_ts = -1
    s.mid_head = 0
    s.mid_count = 0
    s.evicted_ts = -1
    s.evicted_mid = nan
    s.last_ts = -1
    s.lat_head = 0
    s.lat_count = 0
    s.pend_head = 0
    s.pend_count = 0


@njit(cache=True, error_model="numpy")
def _mid_at_or_before_nb(s, t_ns):
    """Mid of the newest sample at or before ``t_ns``; NaN when none is known (the second value flags overflow)."""
    cap = COLLECTOR_RING_MAX
    i = s.mid_head - 1
    for _ in range(s.mid_count):
        if i < 0:
            i += cap
        if s.mid_ts[i] <= t_ns:
            return s.mid_val[i], False
        i -= 1
    if s.evicted_ts >= 0:
        if s.evicted_ts <= t_ns:
            return s.evicted_mid, False
        return np.nan, True
    return np.nan, False


@njit(cache=True, error_model="numpy")
def _window_std_nb(s, t_lo_ns):
    """Std (ddof 1) of the non-NaN returns of samples with time > ``t_lo_ns``; the second value flags overflow."""
    cap = COLLECTOR_RING_MAX
    n = 0
    total = 0.0
    i = s.mid_head - 1
    m = 0
    for _ in range(s.mid_count):
        if i < 0:
            i += cap
        if s.mid_ts[i] <= t_lo_ns:
            break
        r = s.mid_ret[i]
        if not np.isnan(r):
            total += r
            n += 1
        m += 1
        i -= 1
    overflow = m == s.mid_count and s.evicted_ts > t_lo_ns
    if n < 2:
        return np.nan, overflow
    mean = total / n
    ss = 0.0
    i = s.mid_head - 1
    for _ in range(m):
        if i < 0:
            i += cap
        r = s.mid_ret[i]
        if not np.isnan(r):
            ss += (r - mean) * (r - mean)
        i -= 1
    return math.sqrt(ss / (n - 1)), overflow


@njit(cache=True, error_model="numpy")
def _finalize_pending_nb(p, s):
    """Adverse move of the oldest pending fill into the EMA."""
    w = s.pend_worst_bps[s.pend_head]
    if np.isfinite(w):
        s.adverse_move_bps = ema_nb(s.adverse_move_bps, w, p.alpha)
    s.pend_head += 1
    if s.pend_head >= COLLECTOR_PENDING_MAX:
        s.pend_head = 0
    s.pend_count -= 1


@njit(cache=True, error_model="numpy")
def collector_mid_sample_nb(p, s, now_ns, mid):
    """One mid sample (any price unit, NaN allowed): returns, window volatility, vol_realized, adverse moves."""
    # Fills whose horizon ended before this sample are final; the others see this mid.
    while s.pend_count > 0 and s.pend_due_ns[s.pend_head] < now_ns:
        _finalize_pending_nb(p, s)
    j = s.pend_head
    for _ in range(s.pend_count):
        if not np.isnan(mid):
            adv = s.pend_side[j] * (s.pend_price[j] - mid) / s.pend_price[j] * 1e4
            if not adv <= s.pend_worst_bps[j]:
                s.pend_worst_bps[j] = adv
        j += 1
        if j >= COLLECTOR_PENDING_MAX:
            j = 0
    cap = COLLECTOR_RING_MAX
    r = (np.log(mid) - np.log(s.mid)) * 1e4 if s.last_ts >= 0 else np.nan
    if s.mid_count == cap:
        s.evicted_ts = s.mid_ts[s.mid_head]
        s.evicted_mid = s.mid_val[s.mid_head]
    s.mid_ts[s.mid_head] = now_ns
    s.mid_val[s.mid_head] = mid
    s.mid_ret[s.mid_head] = r
    s.mid_head += 1
    if s.mid_head >= cap:
        s.mid_head = 0
    if s.mid_count < cap:
        s.mid_count += 1
    s.mid = mid
    s.last_ts = now_ns
    s.mid_samples += 1
    past, over_s = _mid_at_or_before_nb(s, now_ns - p.ret_short_ns)
    s.ret_bps_short = (mid / past - 1.0) * 1e4
    past, over_l = _mid_at_or_before_nb(s, now_ns - p.ret_long_ns)
    s.ret_bps_long = (mid / past - 1.0) * 1e4
    s.vol_bps, over_v = _window_std_nb(s, now_ns - p.vol_window_ns)
    if over_s or over_l or over_v:
        s.window_overflows += 1
    s.vol_realized_bps = ema_nb(s.vol_realized_bps, s.vol_bps, p.alpha)


@njit(cache=True, error_model="numpy")
def _top_features_nb(p, s, spread_ticks, bid_qty, n_bid, ask_qty, n_ask):
    """Spread, top quantities, imbalances, micro-price offset and the liq_top_depth EMA of one book view."""
    s.spread_ticks = spread_ticks
    s.bid_qty = bid_qty[0] if n_bid > 0 else 0.0
    s.ask_qty = ask_qty[0] if n_ask > 0 else 0.0
    for k in range(COLLECTOR_DEPTHS):
        s.imbalance[k] = book_imbalance_nb(bid_qty, n_bid, ask_qty, n_ask, p.depth_levels[k])
    # Micro price relative to the mid: the bid at 0, the ask at the spread.
    s.microprice_offset_ticks = micro_price_ticks_nb(0.0, spread_ticks, s.imbalance[0]) - 0.5 * spread_ticks
    s.liq_top_depth_qty = ema_nb(s.liq_top_depth_qty, s.bid_qty + s.ask_qty, p.alpha)


@njit(cache=True, error_model="numpy")
def _read_rates_nb(p, s, now_ns):
    """Trade flow and absorption rate decayed to ``now_ns``."""
    b = decayed_rate_at_nb(s.buy_rate, s.rate_ts, now_ns, p.flow_halflife_ns)
    a = decayed_rate_at_nb(s.sell_rate, s.rate_ts, now_ns, p.flow_halflife_ns)
    s.trade_flow_qty_s = b - a
    s.trade_flow_imbalance = (b - a) / (b + a) if b + a > 0.0 else np.nan
    s.queue_absorb_rate_qty_s = decayed_rate_at_nb(s.absorb_rate, s.rate_ts, now_ns, p.absorb_halflife_ns)


@njit(cache=True, error_model="numpy")
def collector_on_book_nb(p, s, now_ns, best_bid_tick, best_ask_tick, bid_qty, n_bid, ask_qty, n_ask):
    """A consistent book at local time ``now_ns``: top-N quantities per side (best first), ``n_*`` levels held."""
    ok = n_bid > 0 and n_ask > 0 and best_bid_tick < best_ask_tick
    spread = float(best_ask_tick - best_bid_tick) if ok else np.nan
    mid = 0.5 * (best_bid_tick + best_ask_tick) if ok else np.nan
    _top_features_nb(p, s, spread, bid_qty, n_bid, ask_qty, n_ask)
    _read_rates_nb(p, s, now_ns)
    collector_mid_sample_nb(p, s, now_ns, mid)


@njit(cache=True, error_model="numpy")
def collector_on_trade_nb(p, s, ts_ns, side, qty):
    """A public trade (``side`` = aggressor, +1 buyer / -1 seller) of ``qty`` base units at local time ``ts_ns``."""
    buy = qty if side > 0 else 0.0
    sell = qty if side < 0 else 0.0
    s.buy_rate = decayed_rate_add_nb(s.buy_rate, s.rate_ts, buy, ts_ns, p.flow_halflife_ns)
    s.sell_rate = decayed_rate_add_nb(s.sell_rate, s.rate_ts, sell, ts_ns, p.flow_halflife_ns)
    s.absorb_rate = decayed_rate_add_nb(s.absorb_rate, s.rate_ts, qty, ts_ns, p.absorb_halflife_ns)
    s.rate_ts = max(s.rate_ts, ts_ns)
    s.trades += 1


@njit(cache=True, error_model="numpy")
def collector_on_fill_nb(p, s, ts_ns, side, price, qty, maker, mid_send, mid_fill):
    """One of our fills (``side`` +1 buy / -1 sell; price and mids in one unit, e.g. ticks; NaN mids = unknown)."""
    s.fills_total += 1
    s.fills_since_decision += 1
    if maker:
        s.fills_maker += 1
    else:
        s.fills_taker += 1
    s.taker_share = ema_nb(s.taker_share, 0.0 if maker else 1.0, p.alpha)
    if mid_send > 0.0:
        s.slippage_bps = ema_nb(s.slippage_bps, side * (price - mid_send) / mid_send * 1e4, p.alpha)
    if s.pend_count == COLLECTOR_PENDING_MAX:
        _finalize_pending_nb(p, s)
        s.pending_dropped += 1
    j = s.pend_head + s.pend_count
    if j >= COLLECTOR_PENDING_MAX:
        j -= COLLECTOR_PENDING_MAX
    s.pend_due_ns[j] = ts_ns + p.adverse_horizon_ns
    s.pend_side[j] = side
    s.pend_price[j] = price
    s.pend_worst_bps[j] = side * (price - mid_fill) / price * 1e4 if mid_fill > 0.0 else -np.inf
    s.pend_count += 1


@njit(cache=True, error_model="numpy")
def collector_on_decision_nb(p, s, now_ns, n_placed, latency_ns, queue_ahead_qty, equity, traded_notional):
    """A decision tick: orders placed, a latency sample (ns, < 0 = none), queue ahead of our best quote (NaN =
    none), equity and cumulative traded notional (quote currency; NaN = unknown)."""
    s.decisions += 1
    s.quotes_total += n_placed
    s.ema_fills = ema_nb(s.ema_fills, float(s.fills_since_decision), p.alpha)
    s.ema_quotes = ema_nb(s.ema_quotes, float(n_placed), p.alpha)
    s.fills_since_decision = 0
    s.fill_rate = s.ema_fills / s.ema_quotes if s.ema_quotes > 0.0 else np.nan
    if latency_ns >= 0:
        w = min(max(p.window_n, 1), COLLECTOR_RING_MAX)
        s.lat_ms[s.lat_head] = latency_ns / NS_PER_MS
        s.lat_head += 1
        if s.lat_head >= w:
            s.lat_head = 0
        if s.lat_count < w:
            s.lat_count += 1
        n = s.lat_count
        for i in range(n):
            s.lat_sorted[i] = s.lat_ms[i]
        s.lat_sorted[:n].sort()
        k = int(math.ceil(p.latency_quantile * n - 1e-9)) - 1
        k = min(max(k, 0), n - 1)
        s.latency_q_ms = s.lat_sorted[k]
        s.latency_p95_ms = ema_nb(s.latency_p95_ms, s.latency_q_ms, p.alpha)
    s.queue_absorb_rate_qty_s = decayed_rate_at_nb(s.absorb_rate, s.rate_ts, now_ns, p.absorb_halflife_ns)
    if queue_ahead_qty >= 0.0 and s.queue_absorb_rate_qty_s > 0.0:
        s.queue_eta_ms = ema_nb(s.queue_eta_ms, queue_ahead_qty / s.queue_absorb_rate_qty_s * 1e3, p.alpha)
    if np.isfinite(equity):
        if np.isnan(s.equity0):
            s.equity0 = equity
        if traded_notional > 0.0:
            dev = (equity - s.equity0) / traded_notional * 1e4 - p.pnl_target_bps
            s.pnl_dev_bps = ema_nb(s.pnl_dev_bps, dev, p.alpha)


@njit(cache=True, error_model="numpy")
def collectors_on_trades_nb(params, state, ev, n):
    """Every TRADE row of the event rows ``ev[:n]`` (``event_dtype``, ts_local order) into the collector of its
    ``symbol_id`` (rows of symbols without a collector are skipped); returns the trades fed."""
    k = 0
    for j in range(n):
        r = ev[j]
        if r.kind == _TRADE:
            i = np.int64(r.symbol_id)
            if i < len(state):
                collector_on_trade_nb(params[i], state[i], r.ts_local, np.int64(r.side), r.qty)
                k += 1
    return k


@njit(cache=True, error_model="numpy")
def collector_tick_nb(p, s, now_ns, mid, spread_ticks, bid_qty, ask_qty, out_row):
    """One decision tick from its level-1 view into ``out_row`` (:data:`TICK_COLUMNS`): the model features.

    The live runner calls this once per decision tick on a record of its own (mid samples at decision ticks
    only) to get exactly the row :func:`tick_features_nb` gives the training set for the same ticks.
    """
    bq = np.empty(1)
    aq = np.empty(1)
    bq[0] = bid_qty
    aq[0] = ask_qty
    _top_features_nb(p, s, spread_ticks, bq, 1, aq, 1)
    collector_mid_sample_nb(p, s, now_ns, mid)
    out_row[0] = s.spread_ticks
    out_row[1] = s.bid_qty
    out_row[2] = s.ask_qty
    out_row[3] = s.imbalance[0]
    out_row[4] = s.ret_bps_short
    out_row[5] = s.ret_bps_long
    out_row[6] = s.vol_bps


@njit(cache=True, error_model="numpy")
def tick_features_nb(p, s, ts_ns, mid, spread_ticks, bid_qty, ask_qty, out):
    """:func:`collector_tick_nb` over one symbol's decision ticks (time order) into ``out`` (n, len(TICK_COLUMNS))."""
    for i in range(len(ts_ns)):
        collector_tick_nb(p, s, ts_ns[i], mid[i], spread_ticks[i], bid_qty[i], ask_qty[i], out[i])


# ---------------------------------------------------------------------------------------------- Python API


def new_collectors(n_symbols: int = 1, *, alpha: float = 0.1, window_n: int = 1000, ret_short_ms: float = 1000.0,
                   ret_long_ms: float = 5000.0, vol_window_ms: float = 5000.0, flow_halflife_ms: float = 1000.0,
                   absorb_halflife_ms: float = 1000.0, adverse_horizon_ms: float = 1000.0,
                   latency_quantile: float = 0.95, pnl_target_bps: float = 0.0,
                   depth_levels: tuple = (1, 5, 10)) -> tuple[np.ndarray, np.ndarray]:
    """Params and freshly reset state records of ``n_symbols`` collectors (one per symbol).

    Parameters
    ----------
    alpha : EMA weight of a new sample, in (0, 1] (the seed's default 0.1).
    window_n : samples of the rolling latency window, 1..COLLECTOR_RING_MAX.
    ret_short_ms, ret_long_ms, vol_window_ms : mid return windows and the volatility window, ms.
    flow_halflife_ms, absorb_halflife_ms : half-lives of the trade-flow and absorption rates, ms.
    adverse_horizon_ms : time after a fill over which its adverse move is measured, ms.
    latency_quantile : quantile of the latency window (nearest rank), in (0, 1].
    pnl_target_bps : target PnL per traded notional; ``pnl_dev`` is the deviation from it.
    depth_levels : the COLLECTOR_DEPTHS book depths of the imbalance features, levels >= 1.

    >>> p, s = new_collectors(2, alpha=0.2)
    >>> p.shape, float(p[1]["alpha"]), bool(np.isnan(s[0]["fill_rate"]))
    ((2,), 0.2, True)
    """
    def bad(name, value, rule):
        raise ConfigError(f"feature collector {name} must be {rule}, got {value!r}")

    if not 0.0 < alpha <= 1.0:
        bad("alpha", alpha, "in (0, 1]")
    if not 1 <= int(window_n) <= COLLECTOR_RING_MAX:
        bad("window_n", window_n, f"in [1, {COLLECTOR_RING_MAX}] (COLLECTOR_RING_MAX)")
    for name, v in (("ret_short_ms", ret_short_ms), ("ret_long_ms", ret_long_ms), ("vol_window_ms", vol_window_ms),
                    ("flow_halflife_ms", flow_halflife_ms), ("absorb_halflife_ms", absorb_halflife_ms)):
        if not v > 0:
            bad(name, v, "> 0 ms")
    if not adverse_horizon_ms >= 0:
        bad("adverse_horizon_ms", adverse_horizon_ms, ">= 0 ms")
    if not 0.0 < latency_quantile <= 1.0:
        bad("latency_quantile", latency_quantile, "in (0, 1]")
    depth = tuple(int(d) for d in depth_levels)
    if len(depth) != COLLECTOR_DEPTHS or min(depth) < 1:
        bad("depth_levels", depth_levels, f"{COLLECTOR_DEPTHS} book depths >= 1, e.g. (1, 5, 10)")
    if n_symbols < 1:
        bad("n_symbols", n_symbols, ">= 1")
    p = np.zeros(n_symbols, dtype=collector_params_dtype)
    p["alpha"] = alpha
    p["window_n"] = int(window_n)
    p["ret_short_ns"] = int(round(ret_short_ms * NS_PER_MS))
    p["ret_long_ns"] = int(round(ret_long_ms * NS_PER_MS))
    p["vol_window_ns"] = int(round(vol_window_ms * NS_PER_MS))
    p["flow_halflife_ns"] = int(round(flow_halflife_ms * NS_PER_MS))
    p["absorb_halflife_ns"] = int(round(absorb_halflife_ms * NS_PER_MS))
    p["adverse_horizon_ns"] = int(round(adverse_horizon_ms * NS_PER_MS))
    p["latency_quantile"] = latency_quantile
    p["pnl_target_bps"] = pnl_target_bps
    p["depth_levels"] = depth
    s = np.zeros(n_symbols, dtype=collector_state_dtype)
    for i in range(n_symbols):
        collector_init_nb(s[i])
    return p, s


def metric_values(state: np.ndarray, i: int = 0) -> dict[str, float]:
    """``{metric name: value}`` of symbol ``i``'s collector (the gauges of :data:`METRICS`)."""
    rec = state[i]
    out = {}
    for name, (fld, k) in METRICS.items():
        v = rec[fld] if k < 0 else rec[fld][k]
        out[name] = float(v)
    return out


def tick_features(ts_ns, mid, spread_ticks, bid_qty, ask_qty, *, ret_short_ms: float = 1000.0,
                  ret_long_ms: float = 5000.0, vol_window_ms: float = 5000.0) -> dict[str, np.ndarray]:
    """:data:`TICK_COLUMNS` (float64 arrays) of one symbol's decision ticks sorted by time, from a fresh collector."""
    p, s = new_collectors(1, ret_short_ms=ret_short_ms, ret_long_ms=ret_long_ms, vol_window_ms=vol_window_ms)
    n = len(ts_ns)
    out = np.empty((n, len(TICK_COLUMNS)), dtype=np.float64)
    tick_features_nb(p[0], s[0], np.ascontiguousarray(ts_ns, dtype=np.int64), np.ascontiguousarray(mid, dtype=np.float64),
                     np.ascontiguousarray(spread_ticks, dtype=np.float64), np.ascontiguousarray(bid_qty, dtype=np.float64),
                     np.ascontiguousarray(ask_qty, dtype=np.float64), out)
    return {c: out[:, j] for j, c in enumerate(TICK_COLUMNS)}
