"""Stage 4, ``inventory``: reservation price, position limits, sizing and the desired quote ladder.

- Reservation: FIXED ``fair - skew_ticks * position / skew_unit_qty``; MODEL ``fair - position * skew`` with the
  spread model's skew per base unit.
- Prices: ``bid0 = floor(reservation - half)``, ``ask0 = ceil(reservation + half)`` with ``half`` the spread
  stage's half spread times the guards' ``widen_mult``; ``clamp_to_touch`` keeps ``bid0 <= best bid`` and
  ``ask0 >= best ask`` (otherwise quotes may improve the touch but never cross it). Level ``i < grid_num`` sits at
  ``bid0 - i * grid_interval_ticks`` / ``ask0 + i * grid_interval_ticks``.
- Limits: no bids at ``position >= max_position``, no asks at ``position <= -max_position``; a free balance below
  ``min_free_balance_usd`` drops the position-increasing side(s); SIDE guards drop their side.
  A size multiplier of 0 (an allocator weight of 0) drops both sides (``SIZE_ZERO``).
- Size: FIXED ``order_qty * size_mult * side factor``; BALANCE
  ``floor((min(notional_cap_usd, free_balance * leverage) * size_mult * side factor / price) / lot_step) * lot_step``
  with ``price = fair * tick_size``. Sizes are rounded down to ``lot_step`` (when > 0); a size below ``min_qty`` or
  ``min_notional_usd`` drops the side: never inflated to the venue minimum.

Writes ``quotes[:n_quotes]`` (bids by level, then asks by level) and decision fields reservation_ticks, bid_qty,
ask_qty, n_quotes, inventory_reason. Returns an ``InventoryReason``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mmlab.types import InventoryReason, QuoteAction, Side, SizingMode, SkewMode

__all__ = ["inventory_nb", "lot_floor_nb"]

_BID = int(Side.BID)
_ASK = int(Side.ASK)
_BALANCE = int(SizingMode.BALANCE)
_SKEW_MODEL = int(SkewMode.MODEL)
_HALT = int(QuoteAction.HALT)
_SKIP = int(QuoteAction.SKIP)

_OK = int(InventoryReason.OK)
_NO_QUOTES = int(InventoryReason.NO_QUOTES)
_BELOW_MIN = int(InventoryReason.BELOW_MIN)
_LOW_BALANCE = int(InventoryReason.LOW_BALANCE)
_MAX_LONG = int(InventoryReason.MAX_LONG)
_MAX_SHORT = int(InventoryReason.MAX_SHORT)
_GUARD_SIDE = int(InventoryReason.GUARD_SIDE)
_SIZE_ZERO = int(InventoryReason.SIZE_ZERO)


@njit(cache=True, _nrt=False)
def lot_floor_nb(qty, lot_step):
    """``qty`` rounded down to a multiple of ``lot_step`` (a relative 1e-9 slack absorbs float error: 0.3/0.1)."""
    if not lot_step > 0.0:
        return qty
    n = math.floor(qty / lot_step * (1.0 + 1e-9))
    if n <= 0.0:
        return 0.0
    return n * lot_step


@njit(cache=True, _nrt=False)
def _size_nb(p, base_qty, side_mult, price):
    """Size of one side: rounded down to the lot, 0.0 when below the venue minimum (never inflated)."""
    q = lot_floor_nb(base_qty * side_mult, p.lot_step)
    if not q > 0.0 or q < p.min_qty:
        return 0.0
    if p.min_notional_usd > 0.0 and q * price < p.min_notional_usd:
        return 0.0
    return q


@njit(cache=True, _nrt=False)
def inventory_nb(now_ns, inp, params, state, out, quotes):
    """Stage 4: build the desired quote ladder into ``quotes``; returns an ``InventoryReason``."""
    p = params
    s = state
    x = inp
    o = out
    s.calls += 1
    o.n_quotes = 0
    o.bid_qty = 0.0
    o.ask_qty = 0.0
    if o.quote_action == _HALT or o.quote_action == _SKIP:
        o.reservation_ticks = np.nan
        o.inventory_reason = _NO_QUOTES
        return _NO_QUOTES

    fair = o.fair_ticks
    half = o.half_spread_ticks * o.widen_mult
    pos = x.position
    if p.skew_mode == _SKEW_MODEL:
        reservation = fair - pos * o.skew_per_qty_ticks
    elif p.skew_unit_qty > 0.0:
        reservation = fair - p.skew_ticks * pos / p.skew_unit_qty
    else:
        reservation = fair
    o.reservation_ticks = reservation
    bb = x.best_bid_tick
    ba = x.best_ask_tick
    bid0 = np.int64(math.floor(reservation - half))
    ask0 = np.int64(math.ceil(reservation + half))
    if p.clamp_to_touch:
        bid0 = min(bid0, bb)
        ask0 = max(ask0, ba)
    else:
        bid0 = min(bid0, ba - 1)
        ask0 = max(ask0, bb + 1)
        if ask0 <= bid0:
            ask0 = bid0 + 1

    reason = _OK
    want_bid = True
    want_ask = True
    if not o.allow_bid:
        want_bid = False
        reason = _GUARD_SIDE
    if not o.allow_ask:
        want_ask = False
        reason = _GUARD_SIDE
    if pos <= -p.max_position:
        if want_ask:
            s.max_short += 1
        want_ask = False
        reason = _MAX_SHORT
    if pos >= p.max_position:
        if want_bid:
            s.max_long += 1
        want_bid = False
        reason = _MAX_LONG
    if p.min_free_balance_usd > 0.0 and not (x.free_balance >= p.min_free_balance_usd):
        dropped = False
        if pos >= 0.0 and want_bid:
            want_bid = False
            dropped = True
        if pos <= 0.0 and want_ask:
            want_ask = False
            dropped = True
        if dropped:
            s.low_balance += 1
            reason = _LOW_BALANCE
    if not (o.allow_bid and o.allow_ask):
        s.guard_side += 1

    price = fair * p.tick_size
    mult = x.size_mult
    if np.isnan(mult):
        mult = 1.0
    if not mult > 0.0:
        # A zero multiplier (allocator weight 0) quotes nothing; not counted as a venue-minimum drop.
        want_bid = False
        want_ask = False
        reason = _SIZE_ZERO
    if p.sizing == _BALANCE:
        notional = min(p.notional_cap_usd, max(x.free_balance, 0.0) * p.leverage)
        base_qty = notional * mult / price if price > 0.0 else 0.0
    else:
        base_qty = p.order_qty * mult
    qb = _size_nb(p, base_qty, o.size_mult_bid, price) if want_bid else 0.0
    qa = _size_nb(p, base_qty, o.size_mult_ask, price) if want_ask else 0.0
    if want_bid and qb == 0.0:
        want_bid = False
        s.below_min += 1
        reason = _BELOW_MIN
    if want_ask and qa == 0.0:
        want_ask = False
        s.below_min += 1
        reason = _BELOW_MIN

    n = 0
    cap = len(quotes)
    levels = min(p.grid_num, cap // 2)
    if want_bid:
        for i in range(levels):
            q = quotes[n]
            q.side = _BID
            q.level = i
            q.price_ticks = bid0 - i * p.grid_interval_ticks
            q.qty = qb
            q.keep_order_id = -1
            q.p_fill = np.nan
            q.queue_ahead_qty = np.nan
            n += 1
        o.bid_qty = qb
    if want_ask:
        for i in range(levels):
            q = quotes[n]
            q.side = _ASK
            q.level = i
            q.price_ticks = ask0 + i * p.grid_interval_ticks
            q.qty = qa
            q.keep_order_id = -1
            q.p_fill = np.nan
            q.queue_ahead_qty = np.nan
            n += 1
        o.ask_qty = qa
    o.n_quotes = n
    o.inventory_reason = reason
    return reason
