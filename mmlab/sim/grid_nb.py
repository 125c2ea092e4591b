"""The reference ``grid`` strategy (the benchmark workload), as a strategy decision kernel.

Every decision tick: ``mid = (best_bid + best_ask) / 2`` (ticks), ``reservation = mid - skew_ticks * position /
order_qty``, ``bid = min(floor(reservation - half_spread_ticks), best_bid)``, ``ask = max(ceil(reservation +
half_spread_ticks), best_ask)``; desired bids ``bid - i * grid_interval_ticks`` and asks ``ask + i *
grid_interval_ticks`` for ``i < grid_num`` (no bids when ``position >= max_position``, no asks when ``position
<= -max_position``, nothing when a side of the book is empty). The order id is the price tick. Working orders
whose id is not in the desired set of their side are canceled (only acknowledged orders without a request in
flight); desired prices without an active order of that id are placed as post-only (GTX) limit orders of
``order_qty``. This is the loop of hftbacktest's "High-Frequency Grid Trading" tutorial, in ticks.

Strategy kernels share one signature (see ``mmlab.sim.loop_nb``)::

    decide(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
           out_quotes, out_actions, out_n) -> reason

reading the local book ``b``, the symbol's active orders ``orders[:n_orders]`` (``order_view_dtype``), its
parameters ``params[symbol_id]`` and state ``state[symbol_id]``; writing ``out_n[0]`` quotes
(``quote_dtype``) and ``out_n[1]`` actions (``sim_action_dtype``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mmlab.data.book_nb import NO_ASK_TICK, NO_BID_TICK
from mmlab.types import ActionKind, OrderStatus, OrderType, RequestKind, Side, TimeInForce

_BID = int(Side.BID)
_ASK = int(Side.ASK)
_PLACE = int(ActionKind.PLACE)
_CANCEL = int(ActionKind.CANCEL)
_GTX = int(TimeInForce.GTX)
_LIMIT = int(OrderType.LIMIT)
_NEW = int(OrderStatus.NEW)
_PARTIAL = int(OrderStatus.PARTIALLY_FILLED)
_REQ_NONE = int(RequestKind.NONE)

#: Reason codes of the grid strategy.
GRID_OK = 0
GRID_NO_BOOK = 1  # a side of the local book is empty: no quotes, working orders canceled
GRID_TRUNCATED = 2  # an output buffer was too small


@njit(cache=True, _nrt=False, error_model="numpy")
def _has_quote(out_quotes, n_quotes, side, price_ticks):
    for k in range(n_quotes):
        if out_quotes[k].side == side and out_quotes[k].price_ticks == price_ticks:
            return True
    return False


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _cancel_action_nb(a, o):
    """Write into action ``a`` the cancel of working order ``o``."""
    a.order_id = o.order_id
    a.price_ticks = o.price_ticks
    a.qty = o.qty
    a.kind = _CANCEL
    a.side = o.side
    a.tif = o.tif
    a.flags = 0
    a.level = -1
    a.order_type = o.order_type


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _place_action_nb(a, q):
    """Write into action ``a`` a post-only limit order for quote ``q`` (its id is its price)."""
    a.order_id = q.price_ticks
    a.price_ticks = q.price_ticks
    a.qty = q.qty
    a.kind = _PLACE
    a.side = q.side
    a.tif = _GTX
    a.flags = 0
    a.level = q.level
    a.order_type = _LIMIT


@njit(cache=True, _nrt=False, error_model="numpy", inline="always")
def _ladder_index(top_tick, step_ticks, n_levels, away_ticks):
    """Level of a price ``away_ticks`` from the ladder's top (positive = away from the touch), -1 if none."""
    if n_levels <= 0 or away_ticks < 0 or away_ticks % step_ticks != 0:
        return -1
    i = away_ticks // step_ticks
    return i if i < n_levels else -1


@njit(cache=True, _nrt=False, error_model="numpy")
def grid_decide_nb(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
                   out_quotes, out_actions, out_n):
    """Desired grid quotes and the cancel/place actions reaching them; returns a reason code."""
    p = params[symbol_id]
    reason = GRID_OK
    n_q = 0
    n_bid = 0
    bid_tick = np.int64(0)
    ask_tick = np.int64(0)
    bb = book[b].best_bid_tick
    ba = book[b].best_ask_tick
    if bb == NO_BID_TICK or ba == NO_ASK_TICK:
        reason = GRID_NO_BOOK
    else:
        mid = 0.5 * (bb + ba)
        reservation = mid - p.skew_ticks * position / p.order_qty
        bid_tick = min(np.int64(np.floor(reservation - p.half_spread_ticks)), bb)
        ask_tick = max(np.int64(np.ceil(reservation + p.half_spread_ticks)), ba)
        cap = len(out_quotes)
        if position < p.max_position:
            for i in range(p.grid_num):
                if n_q >= cap:
                    reason = GRID_TRUNCATED
                    break
                q = out_quotes[n_q]
                q.price_ticks = bid_tick - i * p.grid_interval_ticks
                q.qty = p.order_qty
                q.keep_order_id = -1
                q.p_fill = np.nan
                q.queue_ahead_qty = np.nan
                q.level = i
                q.side = _BID
                n_q += 1
        n_bid = n_q
        if position > -p.max_position:
            for i in range(p.grid_num):
                if n_q >= cap:
                    reason = GRID_TRUNCATED
                    break
                q = out_quotes[n_q]
                q.price_ticks = ask_tick + i * p.grid_interval_ticks
                q.qty = p.order_qty
                q.keep_order_id = -1
                q.p_fill = np.nan
                q.queue_ahead_qty = np.nan
                q.level = i
                q.side = _ASK
                n_q += 1
    n_a = 0
    a_cap = len(out_actions)
    if reason != GRID_TRUNCATED and p.grid_num <= 64:
        return _grid_actions_ladder_nb(p, bid_tick, n_bid, ask_tick, n_q - n_bid, orders, n_orders, out_quotes, n_q,
                                       out_actions, out_n, reason)
    # Cancel acknowledged orders without a request in flight whose id is not desired on their side.
    for j in range(n_orders):
        o = orders[j]
        if (o.status == _NEW or o.status == _PARTIAL) and o.req == _REQ_NONE:
            if not _has_quote(out_quotes, n_q, o.side, o.order_id):
                if n_a >= a_cap:
                    reason = GRID_TRUNCATED
                    break
                _cancel_action_nb(out_actions[n_a], o)
                n_a += 1
    # Place desired prices that have no active order with that id (any status, any side).
    for k in range(n_q):
        q = out_quotes[k]
        found = False
        for j in range(n_orders):
            if orders[j].order_id == q.price_ticks:
                found = True
                break
        if found:
            continue
        if n_a >= a_cap:
            reason = GRID_TRUNCATED
            break
        _place_action_nb(out_actions[n_a], q)
        n_a += 1
    out_n[0] = n_q
    out_n[1] = n_a
    return reason


@njit(cache=True, _nrt=False, error_model="numpy")
def _grid_actions_ladder_nb(p, bid_tick, n_bid, ask_tick, n_ask, orders, n_orders, out_quotes, n_q, out_actions,
                            out_n, reason):
    """The cancel/place actions of ``grid_decide_nb`` when the desired quotes are the two whole ladders (bids
    ``bid_tick - i * step``, asks ``ask_tick + i * step``): a price's level is arithmetic, so each working order
    is matched in O(1) instead of against every quote. Same actions, in the same order."""
    step = p.grid_interval_ticks
    found_bid = np.uint64(0)  # bit i: an active order has the id (= price) of bid level i (any side, any status)
    found_ask = np.uint64(0)
    n_a = 0
    a_cap = len(out_actions)
    one = np.uint64(1)
    for j in range(n_orders):
        o = orders[j]
        ib = _ladder_index(bid_tick, step, n_bid, bid_tick - o.order_id)
        ia = _ladder_index(ask_tick, step, n_ask, o.order_id - ask_tick)
        if ib >= 0:
            found_bid |= one << np.uint64(ib)
        if ia >= 0:
            found_ask |= one << np.uint64(ia)
        # Cancel acknowledged orders without a request in flight whose id is not desired on their side.
        if (o.status == _NEW or o.status == _PARTIAL) and o.req == _REQ_NONE:
            wanted = ib >= 0 if o.side == _BID else (ia >= 0 if o.side == _ASK else False)
            if not wanted:
                if n_a >= a_cap:
                    # As the quote-by-quote path: no further cancel, but every order still counts as found.
                    reason = GRID_TRUNCATED
                    continue
                _cancel_action_nb(out_actions[n_a], o)
                n_a += 1
    # Place desired prices that have no active order with that id.
    for k in range(n_q):
        q = out_quotes[k]
        if k < n_bid:
            if (found_bid >> np.uint64(k)) & one:
                continue
        elif (found_ask >> np.uint64(k - n_bid)) & one:
            continue
        if n_a >= a_cap:
            reason = GRID_TRUNCATED
            break
        _place_action_nb(out_actions[n_a], q)
        n_a += 1
    out_n[0] = n_q
    out_n[1] = n_a
    return reason
