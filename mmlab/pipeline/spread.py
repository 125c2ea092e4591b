"""Stage 2, ``spread``: fair price, half spread and the model's inventory skew.

Models (``SpreadModel``), in ticks, with ``sigma`` the mid volatility in ticks per sqrt(second), ``q = position
/ unit_qty``, ``gamma = risk_factor``:

- FIXED: ``half = half_spread_ticks``.
- VOL_SCALED: ``half = vol_mult * sigma * sqrt(vol_horizon_ms / 1000)``.
- AVELLANEDA_STOIKOV: ``skew = gamma sigma^2 T`` per unit of q (``T = horizon_s``),
  ``half = (gamma sigma^2 T + 2 / gamma * ln(1 + gamma / kappa)) / 2``, ``kappa`` = calibrated k or
  ``intensity_k_per_tick``; ``order_amount_shape`` (eta) scales the inventory-increasing side's size by
  ``exp(-eta |q|)``.
- GLFT: ``c1 = ln(1 + gamma / k) / gamma``, ``c2 = sqrt(gamma / (2 A k) * (1 + gamma / k)^(k / gamma + 1))``,
  ``half = c1 + sigma c2 / 2``, ``skew = sigma c2`` per unit of q, with A (1/s) and k (1/tick) calibrated online
  from trades (``spread_on_trade_nb``) or the fixed values.

The fair price (mid or micro price) moves by ``imbalance_skew_ticks * imbalance`` (book imbalance over
``imbalance_levels`` levels, in [-1, 1]) when that key is not 0.

Until sigma (or A, k) is available the fixed ``half_spread_ticks`` is used (WARMING). An optional model score
(``inp.model_score``, NaN = none) shifts the fair price by ``score_skew_ticks * score`` and widens by
``1 + score_widen * |score|``. A stale pricing view (``pricing_stale == 1``) multiplies the half spread by
``stale_widen_mult``; then the half spread is kept within [max(min_half_spread_ticks, min_spread_bps of fair / 2),
max_half_spread_ticks].

Volatility is sampled from the mid at decisions with a fresh view (at most every ``vol_sample_ms``); trade
arrival intensity (kept only with ``calibrate_intensity``) and per-side traded volume rates come from
``spread_on_trade_nb``, called by the event loop at every public trade.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mmlab.features.ema import decayed_rate_add_nb, decayed_rate_at_nb
from mmlab.features.imbalance import book_imbalance_nb, micro_price_ticks_nb
from mmlab.features.intensity import intensity_fit_nb, intensity_push_nb, trade_depth_bucket_nb
from mmlab.features.volatility import realized_push_nb
from mmlab.types import FairPrice, SpreadModel, SpreadReason

__all__ = ["spread_nb", "spread_on_trade_nb"]

_FIXED = int(SpreadModel.FIXED)
_VOL_SCALED = int(SpreadModel.VOL_SCALED)
_AS = int(SpreadModel.AVELLANEDA_STOIKOV)
_GLFT = int(SpreadModel.GLFT)
_MICRO = int(FairPrice.MICRO)

_OK = int(SpreadReason.OK)
_SKIPPED = int(SpreadReason.SKIPPED)
_WARMING = int(SpreadReason.WARMING)
_MIN_SPREAD = int(SpreadReason.MIN_SPREAD)
_MAX_SPREAD = int(SpreadReason.MAX_SPREAD)
_WIDENED_STALE = int(SpreadReason.WIDENED_STALE)

_PRICING_FRESH = 0
_PRICING_WIDEN = 1
_PRICING_SKIP = 2


@njit(cache=True, _nrt=False)
def spread_on_trade_nb(params, state, ts_local_ns, side, price_ticks, qty, best_bid_tick, best_ask_tick):
    """Feed one public trade (aggressor ``side``) seen at ``ts_local_ns``; the book is the one before the trade."""
    p = params
    s = state
    hl_ns = p.flow_halflife_ms * 1e6
    if side < 0:
        s.flow_bid_rate = decayed_rate_add_nb(s.flow_bid_rate, s.flow_bid_ts, qty, ts_local_ns, hl_ns)
        s.flow_bid_ts = ts_local_ns
    else:
        s.flow_ask_rate = decayed_rate_add_nb(s.flow_ask_rate, s.flow_ask_ts, qty, ts_local_ns, hl_ns)
        s.flow_ask_ts = ts_local_ns
    s.n_trades += 1
    if not p.calibrate_intensity:
        return  # the intensity ring feeds only the online (A, k) calibration
    bucket = trade_depth_bucket_nb(side, price_ticks, best_bid_tick, best_ask_tick, p.intensity_buckets)
    if bucket >= 0:
        s.tr_head, s.tr_count = intensity_push_nb(
            s.tr_ts, s.tr_bucket, s.tr_bucket_count, s.tr_head, s.tr_count, p.intensity_buffer_size, ts_local_ns, bucket
        )


@njit(cache=True, _nrt=False)
def _calibrate_nb(p, s, now_ns):
    """Refit (A, k) from the trade ring at ``now_ns``; NaNs until ``intensity_min_trades`` trades are held."""
    if s.tr_count < p.intensity_min_trades or s.tr_count < 2:
        return np.nan, np.nan
    oldest = s.tr_head - s.tr_count
    if oldest < 0:
        oldest += p.intensity_buffer_size
    window_s = (now_ns - s.tr_ts[oldest]) * 1e-9
    return intensity_fit_nb(s.tr_bucket_count, p.intensity_buckets, window_s)


@njit(cache=True, _nrt=False)
def spread_nb(now_ns, inp, bid_ticks, bid_qty, ask_ticks, ask_qty, params, state, out):
    """Stage 2: fair price, half spread, model skew and estimator outputs; returns a ``SpreadReason``."""
    p = params
    s = state
    x = inp
    o = out
    s.calls += 1

    hl_ns = p.flow_halflife_ms * 1e6
    o.flow_bid_qty_per_s = decayed_rate_at_nb(s.flow_bid_rate, s.flow_bid_ts, now_ns, hl_ns)
    o.flow_ask_qty_per_s = decayed_rate_at_nb(s.flow_ask_rate, s.flow_ask_ts, now_ns, hl_ns)
    if p.calibrate_intensity:
        a_fit, k_fit = _calibrate_nb(p, s, now_ns)
        s.intensity_a_per_s = a_fit
        s.intensity_k_per_tick = k_fit
    o.intensity_a_per_s = s.intensity_a_per_s
    o.intensity_k_per_tick = s.intensity_k_per_tick
    o.imbalance = book_imbalance_nb(bid_qty, x.n_bid_levels, ask_qty, x.n_ask_levels, p.imbalance_levels)
    o.size_mult_bid = 1.0
    o.size_mult_ask = 1.0
    o.skew_per_qty_ticks = 0.0

    if o.pricing_stale == _PRICING_SKIP:
        o.fair_ticks = np.nan
        o.half_spread_ticks = np.nan
        o.sigma_ticks_1s = s.sigma_ticks_1s
        o.vol_bps_1s = np.nan
        o.spread_reason = _SKIPPED
        return _SKIPPED

    mid = (x.best_bid_tick + x.best_ask_tick) / 2
    # Volatility: sample the mid of fresh views only (a stale view repeats an old mid).
    if o.pricing_stale == _PRICING_FRESH:
        if s.vol_count == 0:
            last_ts = np.int64(-(2**62))
        else:
            last = s.vol_head - 1
            if last < 0:
                last += p.vol_buffer_size
            last_ts = s.vol_ts[last]
        if now_ns > last_ts and (now_ns - last_ts) >= p.vol_sample_ms * 1e6:
            s.vol_head, s.vol_count, s.vol_sum_sq, s.vol_sum_dt_ns = realized_push_nb(
                s.vol_mid, s.vol_ts, s.vol_head, s.vol_count, p.vol_buffer_size, mid, now_ns, s.vol_sum_sq, s.vol_sum_dt_ns
            )
            if s.vol_count >= p.vol_min_samples and s.vol_sum_dt_ns > 0:
                s.sigma_ticks_1s = math.sqrt(s.vol_sum_sq / (s.vol_sum_dt_ns * 1e-9))
    sigma = s.sigma_ticks_1s
    o.sigma_ticks_1s = sigma

    if p.fair == _MICRO:
        fair = micro_price_ticks_nb(x.best_bid_tick, x.best_ask_tick, o.imbalance)
    else:
        fair = mid
    if p.imbalance_skew_ticks != 0.0 and not np.isnan(o.imbalance):
        fair = fair + p.imbalance_skew_ticks * o.imbalance
    score = x.model_score
    if not np.isnan(score) and p.score_skew_ticks != 0.0:
        fair = fair + p.score_skew_ticks * score
    o.fair_ticks = fair
    o.vol_bps_1s = sigma / fair * 1e4 if fair > 0.0 else np.nan

    reason = _OK
    model = p.model
    gamma = p.risk_factor
    half = p.half_spread_ticks
    skew_unit = 0.0
    if model == _VOL_SCALED:
        if np.isnan(sigma):
            reason = _WARMING
        else:
            half = p.vol_mult * sigma * math.sqrt(p.vol_horizon_ms * 1e-3)
    elif model == _AS:
        kappa = s.intensity_k_per_tick if p.calibrate_intensity else np.nan
        if np.isnan(kappa):
            kappa = p.intensity_k_per_tick
        if np.isnan(sigma) or not kappa > 0.0:
            reason = _WARMING
        else:
            var_t = sigma * sigma * p.horizon_s
            skew_unit = gamma * var_t
            half = 0.5 * (gamma * var_t + 2.0 / gamma * math.log(1.0 + gamma / kappa))
    elif model == _GLFT:
        a = s.intensity_a_per_s if p.calibrate_intensity else np.nan
        k = s.intensity_k_per_tick if p.calibrate_intensity else np.nan
        if np.isnan(a) or np.isnan(k):
            a = p.intensity_a_per_s
            k = p.intensity_k_per_tick
        if np.isnan(sigma) or not a > 0.0 or not k > 0.0:
            reason = _WARMING
        else:
            c1 = math.log(1.0 + gamma / k) / gamma
            c2 = math.sqrt(gamma / (2.0 * a * k) * (1.0 + gamma / k) ** (k / gamma + 1.0))
            half = c1 + 0.5 * sigma * c2
            skew_unit = sigma * c2
    if p.unit_qty > 0.0:
        o.skew_per_qty_ticks = skew_unit / p.unit_qty

    if p.order_amount_shape > 0.0 and p.unit_qty > 0.0:
        q = x.position / p.unit_qty
        if q > 0.0:
            o.size_mult_bid = math.exp(-p.order_amount_shape * q)
        elif q < 0.0:
            o.size_mult_ask = math.exp(p.order_amount_shape * q)

    if not np.isnan(score) and p.score_widen != 0.0:
        half = half * (1.0 + p.score_widen * abs(score))
    if o.pricing_stale == _PRICING_WIDEN:
        half = half * p.stale_widen_mult
        if reason == _OK:
            reason = _WIDENED_STALE
    lo = p.min_half_spread_ticks
    if p.min_spread_bps > 0.0:
        lo = max(lo, 0.5 * p.min_spread_bps * 1e-4 * fair)
    if half < lo:
        half = lo
        if reason == _OK:
            reason = _MIN_SPREAD
    elif half > p.max_half_spread_ticks:
        half = p.max_half_spread_ticks
        if reason == _OK:
            reason = _MAX_SPREAD
    o.half_spread_ticks = half
    o.spread_reason = reason
    return reason
