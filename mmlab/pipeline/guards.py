"""Stage 3, ``guards``: halts, gates and the tick's ``QuoteAction``.

Each guard that trips sets bit ``1 << GuardReason`` of ``guard_mask``; the returned reason is the tripped guard
of lowest enum value (the enum is ordered by precedence). Severities (``GuardLevel``):

- HARD (stop quoting, cancel every working order): KILL_SWITCH (latched drawdown from peak equity),
  STALE_BOOK (``fresh_only`` and the fetch_md view is not fresh), VOL_HALT, LATENCY (order round trip),
  WARMUP (first ``warmup_s`` after the first decision; counts ``warmup_skip``);
- ``deadline_level`` (SOFT by default): DEADLINE_MISS (decision more than ``deadline_ms`` late);
- SIDE (block one side): NEAR_LIQ — entries on the position's side are blocked when
  ``(entry - liq) / entry < sl_buffer_multiplier * assumed_sl_pct`` (long; mirrored for short), the liquidation
  price being ``inp.liq_price`` or, when NaN, ``entry * (1 -+ 1 / leverage +- maint_margin_rate)``;
  LIQUIDITY — a side whose top ``liq_gate_levels`` levels hold less than ``liq_gate_alpha * liq_gate_qty``
  is not quoted (the position it adds could not be unwound by a taker order on that side);
- SOFT (half spread * ``widen_mult``): VOL_WIDEN, and DEADLINE_MISS by default.

The tick's ``quote_action``: HALT on a HARD outcome, else SKIP when fetch_md gave no pricing view, else WIDEN
when the view is stale-widened or a SOFT guard tripped, else QUOTE.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mmlab.features.imbalance import depth_sum_nb
from mmlab.types import GuardLevel, GuardReason, QuoteAction

__all__ = ["guards_nb"]

_NONE = int(GuardReason.NONE)
_KILL = int(GuardReason.KILL_SWITCH)
_STALE = int(GuardReason.STALE_BOOK)
_VOL_HALT = int(GuardReason.VOL_HALT)
_LATENCY = int(GuardReason.LATENCY)
_WARMUP = int(GuardReason.WARMUP)
_DEADLINE = int(GuardReason.DEADLINE_MISS)
_NEAR_LIQ = int(GuardReason.NEAR_LIQ)
_LIQUIDITY = int(GuardReason.LIQUIDITY)
_VOL_WIDEN = int(GuardReason.VOL_WIDEN)
_N_REASONS = 10

_LV_NONE = int(GuardLevel.NONE)
_LV_SOFT = int(GuardLevel.SOFT)
_LV_SIDE = int(GuardLevel.SIDE)
_LV_HARD = int(GuardLevel.HARD)

_QUOTE = int(QuoteAction.QUOTE)
_WIDEN = int(QuoteAction.WIDEN)
_SKIP = int(QuoteAction.SKIP)
_HALT = int(QuoteAction.HALT)

_PRICING_WIDEN = 1
_PRICING_SKIP = 2


@njit(cache=True, _nrt=False)
def guards_nb(now_ns, inp, bid_ticks, bid_qty, ask_ticks, ask_qty, params, state, out):
    """Stage 3: evaluate every guard; writes guard_mask/level/reason, allow_bid/ask, widen_mult, quote_action."""
    p = params
    s = state
    x = inp
    o = out
    s.calls += 1
    if s.start_ns < 0:
        s.start_ns = now_ns
    mask = 0
    soft = False
    allow_bid = True
    allow_ask = True

    eq = x.equity
    if not np.isnan(eq):
        if np.isnan(s.peak_equity) or eq > s.peak_equity:
            s.peak_equity = eq
        dd = s.peak_equity - eq
        if dd >= p.kill_drawdown_usd or (s.peak_equity > 0.0 and dd / s.peak_equity >= p.kill_drawdown_pct):
            s.killed = True
    if s.killed:
        mask |= 1 << _KILL
    if p.fresh_only and not o.guard_fresh:
        mask |= 1 << _STALE
    vol = o.vol_bps_1s
    if not np.isnan(vol):
        if vol >= p.vol_halt_bps:
            mask |= 1 << _VOL_HALT
        elif vol >= p.vol_widen_bps:
            mask |= 1 << _VOL_WIDEN
            soft = True
    if x.order_rtt_ns >= 0 and x.order_rtt_ns > p.latency_halt_ms * 1e6:
        mask |= 1 << _LATENCY
    if now_ns - s.start_ns < p.warmup_s * 1e9:
        mask |= 1 << _WARMUP
        s.warmup_skip += 1
    deadline_hard = False
    if x.tick_lag_ns > p.deadline_ms * 1e6:
        mask |= 1 << _DEADLINE
        s.deadline_miss += 1
        if p.deadline_level == _LV_HARD:
            deadline_hard = True
        elif p.deadline_level == _LV_SOFT:
            soft = True

    pos = x.position
    entry = x.entry_price
    if p.near_liq_enabled and pos != 0.0 and entry > 0.0:
        liq = x.liq_price
        if np.isnan(liq):
            if pos > 0.0:
                liq = entry * (1.0 - 1.0 / p.leverage + p.maint_margin_rate)
            else:
                liq = entry * (1.0 + 1.0 / p.leverage - p.maint_margin_rate)
        buffer = p.sl_buffer_multiplier * p.assumed_sl_pct
        if pos > 0.0 and (entry - liq) / entry < buffer:
            allow_bid = False
            mask |= 1 << _NEAR_LIQ
        elif pos < 0.0 and (liq - entry) / entry < buffer:
            allow_ask = False
            mask |= 1 << _NEAR_LIQ

    if p.liq_gate_alpha > 0.0 and p.liq_gate_qty > 0.0:
        need = p.liq_gate_alpha * p.liq_gate_qty
        if depth_sum_nb(bid_qty, x.n_bid_levels, p.liq_gate_levels) < need:
            allow_bid = False
            mask |= 1 << _LIQUIDITY
        if depth_sum_nb(ask_qty, x.n_ask_levels, p.liq_gate_levels) < need:
            allow_ask = False
            mask |= 1 << _LIQUIDITY

    hard_bits = (1 << _KILL) | (1 << _STALE) | (1 << _VOL_HALT) | (1 << _LATENCY) | (1 << _WARMUP)
    if (mask & hard_bits) != 0 or deadline_hard:
        level = _LV_HARD
    elif (mask & ((1 << _NEAR_LIQ) | (1 << _LIQUIDITY))) != 0:
        level = _LV_SIDE
    elif soft:
        level = _LV_SOFT
    else:
        level = _LV_NONE
    reason = _NONE
    for r in range(1, _N_REASONS if mask != 0 else 1):
        if (mask >> r) & 1:
            s.trips[r] += 1
            if reason == _NONE:
                reason = r
    if level == _LV_HARD:
        s.hard += 1
    elif level == _LV_SIDE:
        s.side += 1
    if soft:
        s.soft += 1

    o.guard_mask = mask
    o.guard_level = level
    o.guard_reason = reason
    o.allow_bid = allow_bid and level != _LV_HARD
    o.allow_ask = allow_ask and level != _LV_HARD
    o.widen_mult = p.widen_mult if soft else 1.0
    if level == _LV_HARD:
        o.quote_action = _HALT
    elif o.pricing_stale == _PRICING_SKIP:
        o.quote_action = _SKIP
    elif o.pricing_stale == _PRICING_WIDEN or soft:
        o.quote_action = _WIDEN
    else:
        o.quote_action = _QUOTE
    return reason
