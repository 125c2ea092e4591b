"""The simulator's event loop: one compiled kernel over the normalized event array, two clocks.

The exchange processes market events at ``ts_exch`` on its own book (``b = symbol_id``); the strategy sees them
at ``ts_local`` on the local book (``b = n_symbols + symbol_id``), built by the same book kernel from the same
rows in local-time order. Requests the strategy sends at local time t reach the exchange at t + entry latency;
reports come back at exchange time + response latency. Each direction delivers in order, per symbol (a message
never overtakes an earlier one: its arrival is at least the previous arrival), as in hftbacktest's order bus.

Four streams of intents are merged by time; at equal times the order is: local market event, report arrival,
exchange market event, request arrival, decision tick (hftbacktest's order for one asset, with the strategy
acting after ``elapse`` has processed everything up to the tick). Decision k is at ``t0 + k * interval_ns``
(t0 = the first event time of the run); it happens only while something (events, messages) remains after it.

The kernel works on windows: ``local_ev`` (events in ts_local order) and ``exch_ev`` (the same kind of rows in
ts_exch order), processing intents strictly before ``horizon`` (``INT64_MAX`` for the last window) and
returning ``LoopStatus.HORIZON``; the caller carries the unprocessed rows into the next window. It also returns
``LoopStatus.FLUSH`` when an output buffer is nearly full. All state is in arrays, so calling again resumes.

Fills of resting orders follow hftbacktest's documented conditions: a buy fills when the best ask falls to or
below its price, when a sell trade prints below its price, or when it is at the front of the queue and a sell
trade prints at its price (sells mirrored). ``NO_PARTIAL`` fills the whole order then; ``PARTIAL`` fills at the
queue front only what the trade reached. One trade's quantity is consumed by our queue-front fills at its price
(several own orders at one price share it, never reuse it); taker fills in ``PARTIAL`` consume level liquidity
until the level's next depth update.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mmlab.data.book_nb import (
    NO_ASK_TICK,
    NO_BID_TICK,
    book_apply_nb,
    book_level_qty_nb,
)
from mmlab.pipeline.fetch_md import count_book_message_nb
from mmlab.sim.clock_nb import cycles_nb
from mmlab.sim.fees_nb import fee_nb, notional_nb, pnl_nb
from mmlab.sim.latency_nb import entry_latency_nb, response_latency_nb
from mmlab.sim.queue_nb import queue_exec_qty_nb, queue_on_depth_nb, queue_on_trade_nb
from mmlab.types import (
    STAGE_TIMERS_MAX,
    ActionKind,
    ExchangeModelId,
    HookEvents,
    Kind,
    LoopStatus,
    OrderEventKind,
    OrderFlag,
    OrderStatus,
    OrderType,
    RejectReason,
    RequestKind,
    Side,
    TimeInForce,
)

INT64_MAX = np.iinfo(np.int64).max


#: Most resting/active orders per symbol (capacity of the exchange and local order lists).
LIST_CAP = 1024
#: Messages in flight per symbol and direction.
RING_CAP = 1 << 14
#: Levels of the consumed-liquidity table per symbol.
CONSUMED_CAP = 64
#: Most levels one taker order sweeps (a bound on fills per request).
MAX_SWEEP_LEVELS = 256

_DEPTH = int(Kind.DEPTH)
_TRADE = int(Kind.TRADE)
_CLEAR = int(Kind.CLEAR)
_SNAPSHOT = int(Kind.SNAPSHOT)
_BID = int(Side.BID)
_ASK = int(Side.ASK)
_BOTH = int(Side.BOTH)

_NO_PARTIAL = int(ExchangeModelId.NO_PARTIAL)
_PARTIAL_MODEL = int(ExchangeModelId.PARTIAL)

_ST_NONE = int(OrderStatus.NONE)
_ST_NEW = int(OrderStatus.NEW)
_ST_PARTIAL = int(OrderStatus.PARTIALLY_FILLED)
_ST_FILLED = int(OrderStatus.FILLED)
_ST_CANCELED = int(OrderStatus.CANCELED)
_ST_REJECTED = int(OrderStatus.REJECTED)
_ST_EXPIRED = int(OrderStatus.EXPIRED)

_REQ_NONE = int(RequestKind.NONE)
_REQ_NEW = int(RequestKind.NEW)
_REQ_CANCEL = int(RequestKind.CANCEL)
_REQ_MODIFY = int(RequestKind.MODIFY)

_EV_SENT = int(OrderEventKind.SENT)
_EV_ACCEPTED = int(OrderEventKind.ACCEPTED)
_EV_REJECTED = int(OrderEventKind.REJECTED)
_EV_MODIFIED = int(OrderEventKind.MODIFIED)
_EV_CANCELED = int(OrderEventKind.CANCELED)
_EV_FILLED = int(OrderEventKind.FILLED)
_EV_EXPIRED = int(OrderEventKind.EXPIRED)
_EV_CANCEL_SENT = int(OrderEventKind.CANCEL_SENT)
_EV_MODIFY_SENT = int(OrderEventKind.MODIFY_SENT)
_EV_CANCEL_REJECTED = int(OrderEventKind.CANCEL_REJECTED)
_EV_MODIFY_REJECTED = int(OrderEventKind.MODIFY_REJECTED)

_R_NONE = int(RejectReason.NONE)
_R_POST_ONLY = int(RejectReason.POST_ONLY_WOULD_CROSS)
_R_NOT_WORKING = int(RejectReason.ORDER_NOT_WORKING)
_R_DUPLICATE = int(RejectReason.DUPLICATE_ORDER_ID)
_R_UNKNOWN = int(RejectReason.UNKNOWN_ORDER_ID)
_R_IN_FLIGHT = int(RejectReason.REQUEST_IN_FLIGHT)
_R_CAPACITY = int(RejectReason.CAPACITY)
_R_INVALID = int(RejectReason.INVALID_ORDER)
_R_NO_LIQUIDITY = int(RejectReason.NO_LIQUIDITY)

_LIMIT = int(OrderType.LIMIT)
_MARKET = int(OrderType.MARKET)
_GTC = int(TimeInForce.GTC)
_GTX = int(TimeInForce.GTX)
_IOC = int(TimeInForce.IOC)
_FOK = int(TimeInForce.FOK)
_POST_ONLY_FLAG = int(OrderFlag.POST_ONLY)

_PLACE = int(ActionKind.PLACE)
_CANCEL = int(ActionKind.CANCEL)
_MODIFY = int(ActionKind.MODIFY)

_HOOK_BOOK_ROWS = int(HookEvents.BOOK_ROWS)
_HOOK_BOOK_MESSAGES = int(HookEvents.BOOK_MESSAGES)
_HOOK_TRADES = int(HookEvents.TRADES)

_HORIZON = int(LoopStatus.HORIZON)
_FLUSH = int(LoopStatus.FLUSH)
_FINISHED = int(LoopStatus.FINISHED)
_RESPONSE_QUEUE_FULL = int(LoopStatus.RESPONSE_QUEUE_FULL)


# ----------------------------------------------------------------------------------------------- small helpers


@njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def _level_qty_nb(book, bid_qty, ask_qty, b, side, price_ticks):
    """book_level_qty_nb inlined into the hot loop (``book_dtype`` layout: index = price_ticks - base_tick)."""
    if not book[b].initialized:
        return 0.0
    idx = price_ticks - book[b].base_tick
    if idx < 0 or idx >= book[b].n_levels:
        return 0.0
    if side == _BID:
        return bid_qty[b, idx]
    return ask_qty[b, idx]


@njit(cache=True, _nrt=False, error_model="numpy")
def _mid_ticks_nb(book, b):
    bb = book[b].best_bid_tick
    ba = book[b].best_ask_tick
    if bb == NO_BID_TICK or ba == NO_ASK_TICK:
        return np.nan
    return 0.5 * (bb + ba)


@njit(cache=True, _nrt=False, error_model="numpy")
def _write_order_event_nb(oev, rs, orders, slot, ts_local, ts_exch, kind, price_ticks, qty, leaves_qty, reason,
                          mid_ticks, queue_ahead_qty):
    i = rs[0].n_order_event_rows
    e = oev[i]
    o = orders[slot]
    e.ts_local = ts_local
    e.ts_exch = ts_exch
    e.order_id = o.order_id
    e.order_seq = o.order_seq
    e.symbol_id = o.symbol_id
    e.price_ticks = price_ticks
    e.qty = qty
    e.leaves_qty = leaves_qty
    e.mid_ticks = mid_ticks
    e.queue_ahead_qty = queue_ahead_qty
    e.kind = kind
    e.side = o.side
    e.reason = reason
    e.order_type = o.order_type
    e.tif = o.tif
    rs[0].n_order_event_rows = i + 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _write_local_reject_nb(oev, rs, ss, ts_local, symbol_id, action, kind, reason):
    """An action refused before it left the strategy (no order slot involved)."""
    i = rs[0].n_order_event_rows
    e = oev[i]
    e.ts_local = ts_local
    e.ts_exch = -1
    e.order_id = action.order_id
    e.order_seq = -1
    e.symbol_id = symbol_id
    e.price_ticks = action.price_ticks
    e.qty = action.qty
    e.leaves_qty = 0.0
    e.mid_ticks = np.nan
    e.queue_ahead_qty = np.nan
    e.kind = kind
    e.side = action.side
    e.reason = reason
    e.order_type = action.order_type
    e.tif = action.tif
    rs[0].n_order_event_rows = i + 1
    rs[ss[symbol_id].group].n_local_rejects += 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _ring_head_ts_nb(ss, ring, requests):
    """Earliest arrival time at the heads of the per-symbol message rings: the request rings (``requests``) or
    the report rings; ``INT64_MAX`` when every ring is empty."""
    t = INT64_MAX
    cap = ring.shape[1]
    for s in range(ss.shape[0]):
        if requests:
            head = ss[s].req_head
            tail = ss[s].req_tail
        else:
            head = ss[s].resp_head
            tail = ss[s].resp_tail
        if head < tail:
            ts = ring[s, head % cap].ts
            if ts < t:
                t = ts
    return t


@njit(cache=True, _nrt=False, inline="always", error_model="numpy")
def _ring_start_nb(s, cap):
    """Slot where instance ``s``'s empty ring starts again. Rows of a ring array are a multiple of 4 KiB apart:
    staggering the instances' first slots (24 messages, ~2.5 KB, apart) keeps their hot slots in different
    cache sets."""
    return (s * 24) % cap


@njit(cache=True, _nrt=False, error_model="numpy")
def _list_remove_nb(lst, s, n, slot):
    """Remove ``slot`` from row ``s`` of a list keeping the order of the rest; returns the new count."""
    j = 0
    while j < n and lst[s, j] != slot:
        j += 1
    if j == n:
        return n
    for k in range(j, n - 1):
        lst[s, k] = lst[s, k + 1]
    return n - 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _refresh_exch_bounds_nb(orders, exch_list, ss, s):
    n_buy = 0
    n_sell = 0
    min_buy = INT64_MAX
    max_buy = -INT64_MAX
    min_sell = INT64_MAX
    max_sell = -INT64_MAX
    for j in range(ss[s].n_exch):
        o = orders[exch_list[s, j]]
        p = o.exch_price_ticks
        if o.side == _BID:
            n_buy += 1
            min_buy = min(min_buy, p)
            max_buy = max(max_buy, p)
        else:
            n_sell += 1
            min_sell = min(min_sell, p)
            max_sell = max(max_sell, p)
    ss[s].n_buy = n_buy
    ss[s].n_sell = n_sell
    ss[s].min_buy_tick = min_buy
    ss[s].max_buy_tick = max_buy
    ss[s].min_sell_tick = min_sell
    ss[s].max_sell_tick = max_sell


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_add_resting_nb(orders, exch_list, ss, s, slot):
    n = ss[s].n_exch
    exch_list[s, n] = slot
    ss[s].n_exch = n + 1
    # The bounds take the new price in (what a rescan of the list gives).
    o = orders[slot]
    p = o.exch_price_ticks
    if o.side == _BID:
        if ss[s].n_buy == 0:
            ss[s].min_buy_tick = p
            ss[s].max_buy_tick = p
        else:
            ss[s].min_buy_tick = min(ss[s].min_buy_tick, p)
            ss[s].max_buy_tick = max(ss[s].max_buy_tick, p)
        ss[s].n_buy += 1
    else:
        if ss[s].n_sell == 0:
            ss[s].min_sell_tick = p
            ss[s].max_sell_tick = p
        else:
            ss[s].min_sell_tick = min(ss[s].min_sell_tick, p)
            ss[s].max_sell_tick = max(ss[s].max_sell_tick, p)
        ss[s].n_sell += 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_remove_resting_nb(orders, exch_list, ss, s, slot):
    ss[s].n_exch = _list_remove_nb(exch_list, s, ss[s].n_exch, slot)
    # Only an order at a bound (or the side's last one) moves the bounds: rescan then.
    o = orders[slot]
    p = o.exch_price_ticks
    if o.side == _BID:
        if ss[s].n_buy <= 1 or p == ss[s].min_buy_tick or p == ss[s].max_buy_tick:
            _refresh_exch_bounds_nb(orders, exch_list, ss, s)
        else:
            ss[s].n_buy -= 1
    else:
        if ss[s].n_sell <= 1 or p == ss[s].min_sell_tick or p == ss[s].max_sell_tick:
            _refresh_exch_bounds_nb(orders, exch_list, ss, s)
        else:
            ss[s].n_sell -= 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _maybe_free_slot_nb(orders, rs, slot):
    o = orders[slot]
    st = o.local_status
    if o.used and o.inflight == 0 and (st == _ST_FILLED or st == _ST_CANCELED or st == _ST_REJECTED or st == _ST_EXPIRED):
        o.used = False
        rs[0].n_slots_used -= 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _alloc_slot_nb(orders, rs):
    n = orders.shape[0]
    h = rs[0].slot_hint
    for k in range(n):
        i = (h + k) % n
        if not orders[i].used:
            rs[0].slot_hint = (i + 1) % n
            rs[0].n_slots_used += 1
            return i
    return -1


@njit(cache=True, _nrt=False, error_model="numpy")
def _alloc_batch_slot_nb(orders, rs, ss, s):
    """A parameter batch's slot for instance ``s``: the first free one of its own share of ``orders`` from the
    share's start (its orders stay in a few hot cache lines; a run's results never depend on which slot an order
    gets). Shares are a multiple of 4 KiB apart: the starts are staggered by 32 slots (6 KiB) so that the
    instances' hot slots fall in different cache sets."""
    share = orders.shape[0] // ss.shape[0]
    base = s * share
    start = (s * 32) % share
    for k in range(share):
        i = base + (start + k) % share
        if not orders[i].used:
            rs[0].n_slots_used += 1
            return i
    return -1


# ------------------------------------------------------------------------------------------------ messaging


@njit(cache=True, _nrt=False, error_model="numpy")
def _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t_exch, kind, status, reason,
                      price_ticks, qty, leaves_qty, fee, maker, req_seq):
    """Queue a report to the strategy and log it as an order event; returns its arrival time (-1: queue full)."""
    cap = resp_ring.shape[1]
    if ss[s].resp_tail - ss[s].resp_head >= cap:
        return -1
    lat = response_latency_nb(sp, rs, lat_table, t_exch)
    ts = max(t_exch + lat, ss[s].last_resp_ts)
    ss[s].last_resp_ts = ts
    m = resp_ring[s, ss[s].resp_tail % cap]
    m.ts = ts
    m.ts_origin = t_exch
    m.slot = slot
    m.req_seq = req_seq
    m.price_ticks = price_ticks
    m.qty = qty
    m.leaves_qty = leaves_qty
    m.fee = fee
    m.kind = kind
    m.status = status
    m.reason = reason
    m.maker = maker
    ss[s].resp_tail += 1
    orders[slot].inflight += 1
    if ts < rs[0].next_resp_ts:
        rs[0].next_resp_ts = ts
    if kind == _EV_FILLED:
        ev_qty = qty
    else:
        ev_qty = leaves_qty
    queue = np.nan
    if (kind == _EV_ACCEPTED or kind == _EV_MODIFIED) and orders[slot].accept_ts == t_exch:
        queue = orders[slot].queue_ahead_entry_qty
    _write_order_event_nb(oev, rs, orders, slot, ts, t_exch, kind, price_ticks, ev_qty, leaves_qty, reason,
                          _mid_ticks_nb(book, ss[s].book_id), queue)
    return ts


@njit(cache=True, _nrt=False, error_model="numpy")
def _push_request_nb(sp, rs, ss, req_ring, lat_table, orders, s, slot, t_local, kind, price_ticks, qty, req_seq):
    """Queue a request to the exchange; returns its arrival time (-1: queue full)."""
    cap = req_ring.shape[1]
    if ss[s].req_tail - ss[s].req_head >= cap:
        return -1
    lat = entry_latency_nb(sp, rs, lat_table, t_local, kind)
    ts = max(t_local + lat, ss[s].last_req_ts)
    ss[s].last_req_ts = ts
    m = req_ring[s, ss[s].req_tail % cap]
    m.ts = ts
    m.ts_origin = t_local
    m.slot = slot
    m.req_seq = req_seq
    m.price_ticks = price_ticks
    m.qty = qty
    m.leaves_qty = qty
    m.fee = 0.0
    m.kind = kind
    m.status = 0
    m.reason = 0
    m.maker = False
    ss[s].req_tail += 1
    orders[slot].inflight += 1
    if ts < rs[0].next_req_ts:
        rs[0].next_req_ts = ts
    rs[ss[s].group].n_requests += 1
    return ts


# ---------------------------------------------------------------------------------------------------- fills


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_fill_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, slot, t,
                  maker, price_ticks, qty, req_seq):
    """One fill at the exchange: order, exchange account, fill row and report. Returns False if the report queue is full."""
    o = orders[slot]
    spar = sym[ss[s].book_id]
    o.exch_leaves_qty -= qty
    o.exch_filled_qty += qty
    o.n_fills += 1
    if o.first_fill_ts < 0:
        o.first_fill_ts = t
    was_resting = o.exch_status == _ST_NEW or o.exch_status == _ST_PARTIAL
    # Leaves below half a lot are nothing left (hftbacktest rounds leaves to lots).
    if np.floor(o.exch_leaves_qty / spar.lot_size + 0.5) > 0.0:
        o.exch_status = _ST_PARTIAL
    else:
        o.exch_leaves_qty = 0.0
        o.exch_status = _ST_FILLED
    price = price_ticks * spar.tick_size
    notional = notional_nb(spar.contract_type, spar.contract_size, price, qty)
    fee = fee_nb(spar.contract_type, spar.contract_size, price, qty, maker, spar.maker_fee, spar.taker_fee)
    ss[s].exch_position += o.side * qty
    ss[s].exch_balance -= o.side * notional
    ss[s].exch_fees += fee
    ss[s].exch_volume += qty
    ss[s].exch_n_fills += 1
    ts_local = _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_FILLED,
                                 o.exch_status, _R_NONE, price_ticks, qty, o.exch_leaves_qty, fee, maker, req_seq)
    if ts_local < 0:
        return False
    i = rs[0].n_fill_rows
    f = fills[i]
    f.ts_exch = t
    f.ts_local = ts_local
    f.order_id = o.order_id
    f.order_seq = o.order_seq
    f.symbol_id = s
    f.price_ticks = price_ticks
    f.qty = qty
    f.fee = fee
    if maker:
        f.queue_ahead_qty = o.queue_ahead_entry_qty
        f.time_in_queue_ns = t - o.accept_ts
    else:
        f.queue_ahead_qty = 0.0
        f.time_in_queue_ns = 0
    f.sent_ts = o.sent_ts
    f.mid_send_ticks = o.mid_send_ticks
    f.mid_fill_ticks = _mid_ticks_nb(book, ss[s].book_id)
    f.position_after = ss[s].exch_position
    f.leaves_qty = o.exch_leaves_qty
    f.side = o.side
    f.maker = maker
    rs[0].n_fill_rows = i + 1
    # The report carries the rest of the fill row (the strategy's on_fill hook receives it whole).
    m = resp_ring[s, (ss[s].resp_tail - 1) % resp_ring.shape[1]]
    m.fill_queue_ahead_qty = f.queue_ahead_qty
    m.fill_time_in_queue_ns = f.time_in_queue_ns
    m.fill_mid_ticks = f.mid_fill_ticks
    m.fill_position_after = f.position_after
    if was_resting and o.exch_status == _ST_FILLED:
        _exch_remove_resting_nb(orders, exch_list, ss, s, slot)
    return True


@njit(cache=True, _nrt=False, error_model="numpy")
def _consumed_qty_nb(consumed, ss, s, side, price_ticks):
    for k in range(ss[s].n_consumed):
        c = consumed[s, k]
        if c.side == side and c.price_ticks == price_ticks:
            return c.qty
    return 0.0


@njit(cache=True, _nrt=False, error_model="numpy")
def _consume_nb(consumed, ss, s, side, price_ticks, qty):
    n = ss[s].n_consumed
    for k in range(n):
        c = consumed[s, k]
        if c.side == side and c.price_ticks == price_ticks:
            c.qty += qty
            return
    if n < consumed.shape[1]:
        c = consumed[s, n]
        c.side = side
        c.price_ticks = price_ticks
        c.qty = qty
        ss[s].n_consumed = n + 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _forget_consumed_nb(consumed, ss, s, side, price_ticks):
    n = ss[s].n_consumed
    k = 0
    while k < n:
        c = consumed[s, k]
        if (side == _BOTH or c.side == side) and (price_ticks == INT64_MAX or c.price_ticks == price_ticks):
            for j in range(k, n - 1):
                consumed[s, j] = consumed[s, j + 1]
            n -= 1
        else:
            k += 1
    ss[s].n_consumed = n


@njit(cache=True, _nrt=False, error_model="numpy")
def _take_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty, ask_qty, consumed, oev,
             fills, s, slot, t, req_seq):
    """Execute an order that takes liquidity on arrival; its status afterwards says what is left."""
    o = orders[slot]
    bk = ss[s].book_id  # the instance's symbol: its book and symbol parameters
    lot = sym[bk].lot_size
    if o.side == _BID:
        best = book[bk].best_ask_tick
        has_best = best != NO_ASK_TICK
        book_side = _ASK
    else:
        best = book[bk].best_bid_tick
        has_best = best != NO_BID_TICK
        book_side = _BID
    if not has_best:
        o.exch_status = _ST_EXPIRED
        _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_EXPIRED, _ST_EXPIRED,
                          _R_NO_LIQUIDITY, o.exch_price_ticks, 0.0, o.exch_leaves_qty, 0.0, False, req_seq)
        return True
    if sp[0].exchange_model == _NO_PARTIAL:
        # Takers fill fully at the best price, whatever the size there (hftbacktest's NoPartialFillExchange).
        return _exch_fill_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, slot,
                             t, False, best, o.exch_leaves_qty, req_seq)
    # PARTIAL: sweep level by level from the best.
    if o.order_type == _MARKET:
        n_ticks = sp[0].max_sweep_ticks
    elif o.side == _BID:
        n_ticks = o.exch_price_ticks - best + 1
    else:
        n_ticks = best - o.exch_price_ticks + 1
    if o.order_type == _LIMIT and o.tif == _GTC:
        n_ticks -= 1  # the limit price itself is filled with the remainder below
    if o.order_type == _LIMIT and o.tif == _FOK:
        avail = 0.0
        enough = False
        for k in range(n_ticks):
            p = best + k if o.side == _BID else best - k
            q = book_level_qty_nb(book, bid_qty, ask_qty, bk, book_side, p) - _consumed_qty_nb(consumed, ss, s, book_side, p)
            if q > 0.0:
                avail += q
            if np.floor(avail / lot + 0.5) >= np.floor(o.exch_leaves_qty / lot + 0.5):
                enough = True
                break
        if not enough:
            o.exch_status = _ST_EXPIRED
            _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_EXPIRED, _ST_EXPIRED,
                              _R_NO_LIQUIDITY, o.exch_price_ticks, 0.0, o.exch_leaves_qty, 0.0, False, req_seq)
            return True
    n_levels = 0
    for k in range(n_ticks):
        if n_levels >= MAX_SWEEP_LEVELS:
            break
        p = best + k if o.side == _BID else best - k
        q = book_level_qty_nb(book, bid_qty, ask_qty, bk, book_side, p) - _consumed_qty_nb(consumed, ss, s, book_side, p)
        if q > 0.0:
            exec_qty = min(q, o.exch_leaves_qty)
            _consume_nb(consumed, ss, s, book_side, p, exec_qty)
            n_levels += 1
            if not _exch_fill_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, slot,
                                 t, False, p, exec_qty, req_seq):
                return False
            if o.exch_status == _ST_FILLED:
                return True
    if o.order_type == _LIMIT and o.tif == _GTC:
        # A crossing GTC order cannot rest inside the opposite side of a replayed book: the rest fills at its price.
        return _exch_fill_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, slot,
                             t, False, o.exch_price_ticks, o.exch_leaves_qty, req_seq)
    o.exch_status = _ST_EXPIRED
    reason = _R_NO_LIQUIDITY if o.exch_filled_qty == 0.0 else _R_NONE
    _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_EXPIRED, _ST_EXPIRED, reason,
                      o.exch_price_ticks, 0.0, o.exch_leaves_qty, 0.0, False, req_seq)
    return True


# --------------------------------------------------------------------------------------- exchange: requests


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_enter_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty, ask_qty, consumed,
                   oev, fills, s, slot, t, req_seq, accept_kind):
    """A new (or re-queued) order meets the book: rest, take, expire or reject. Returns False on a full queue."""
    o = orders[slot]
    price = o.exch_price_ticks
    if o.order_type == _MARKET:
        return _take_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty, ask_qty, consumed,
                        oev, fills, s, slot, t, req_seq)
    if o.side == _BID:
        crosses = price >= book[ss[s].book_id].best_ask_tick
        book_side = _BID
    else:
        crosses = price <= book[ss[s].book_id].best_bid_tick
        book_side = _ASK
    if crosses:
        if o.tif == _GTX:
            o.exch_status = _ST_REJECTED
            return _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_REJECTED,
                                     _ST_REJECTED, _R_POST_ONLY, price, 0.0, o.exch_leaves_qty, 0.0, False,
                                     req_seq) >= 0
        return _take_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty, ask_qty, consumed,
                        oev, fills, s, slot, t, req_seq)
    if o.tif == _IOC or o.tif == _FOK:
        o.exch_status = _ST_EXPIRED
        return _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_EXPIRED,
                                 _ST_EXPIRED, _R_NO_LIQUIDITY, price, 0.0, o.exch_leaves_qty, 0.0, False,
                                 req_seq) >= 0
    if ss[s].n_exch >= exch_list.shape[1]:
        o.exch_status = _ST_REJECTED
        return _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_REJECTED,
                                 _ST_REJECTED, _R_CAPACITY, price, 0.0, o.exch_leaves_qty, 0.0, False,
                                 req_seq) >= 0
    # Join the back of the level's queue.
    level = book_level_qty_nb(book, bid_qty, ask_qty, ss[s].book_id, book_side, price)
    o.front_qty = level
    o.cum_trade_qty = 0.0
    o.queue_ahead_entry_qty = level
    o.accept_ts = t
    o.exch_status = _ST_NEW
    _exch_add_resting_nb(orders, exch_list, ss, s, slot)
    return _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, accept_kind, _ST_NEW,
                             _R_NONE, price, 0.0, o.exch_leaves_qty, 0.0, False, req_seq) >= 0


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_on_request_nb(sp, sym, rs, ss, orders, exch_list, req_ring, resp_ring, lat_table, book, bid_qty, ask_qty,
                        consumed, oev, fills, s, t):
    cap = req_ring.shape[1]
    m = req_ring[s, ss[s].req_head % cap]
    ss[s].req_head += 1
    if ss[s].req_head == ss[s].req_tail:
        # An empty queue starts again at its first slot: the few slots in use stay in cache (``m`` is read below;
        # nothing is queued to this ring before it returns).
        ss[s].req_head = _ring_start_nb(s, cap)
        ss[s].req_tail = ss[s].req_head
    slot = m.slot
    kind = m.kind
    req_seq = m.req_seq
    orders[slot].inflight -= 1
    o = orders[slot]
    ok = True
    working = o.exch_status == _ST_NEW or o.exch_status == _ST_PARTIAL
    if kind == _REQ_NEW:
        o.exch_price_ticks = m.price_ticks
        o.exch_leaves_qty = m.qty
        ok = _exch_enter_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty, ask_qty,
                            consumed, oev, fills, s, slot, t, req_seq, _EV_ACCEPTED)
    elif kind == _REQ_CANCEL:
        if working:
            _exch_remove_resting_nb(orders, exch_list, ss, s, slot)
            o.exch_status = _ST_CANCELED
            ok = _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_CANCELED,
                                   _ST_CANCELED, _R_NONE, o.exch_price_ticks, 0.0, o.exch_leaves_qty, 0.0, False,
                                   req_seq) >= 0
        else:
            ok = _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_CANCEL_REJECTED,
                                   o.exch_status, _R_NOT_WORKING, o.exch_price_ticks, 0.0, o.exch_leaves_qty, 0.0,
                                   False, req_seq) >= 0
    else:
        if not working:
            ok = _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_MODIFY_REJECTED,
                                   o.exch_status, _R_NOT_WORKING, m.price_ticks, 0.0, o.exch_leaves_qty, 0.0, False,
                                   req_seq) >= 0
        elif m.price_ticks != o.exch_price_ticks or m.qty > o.exch_leaves_qty:
            # A new price or a larger size loses the queue spot: cancel and enter again.
            _exch_remove_resting_nb(orders, exch_list, ss, s, slot)
            o.exch_price_ticks = m.price_ticks
            o.exch_leaves_qty = m.qty
            ok = _exch_enter_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty, ask_qty,
                                consumed, oev, fills, s, slot, t, req_seq, _EV_MODIFIED)
        else:
            # A smaller size at the same price keeps the queue spot.
            o.exch_leaves_qty = m.qty
            ok = _push_response_nb(sp, rs, ss, resp_ring, lat_table, orders, oev, book, s, slot, t, _EV_MODIFIED,
                                   o.exch_status, _R_NONE, o.exch_price_ticks, 0.0, o.exch_leaves_qty, 0.0, False,
                                   req_seq) >= 0
    return ok


# ---------------------------------------------------------------------------------- exchange: market events


@njit(cache=True, _nrt=False, error_model="numpy")
def _fill_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, t, side,
                     best_tick):
    """Resting orders of ``side`` the opposite best price has reached fill fully, at their price, as makers."""
    j = 0
    while j < ss[s].n_exch:
        slot = exch_list[s, j]
        o = orders[slot]
        hit = False
        if o.side == side:
            if side == _BID:
                hit = o.exch_price_ticks >= best_tick
            else:
                hit = o.exch_price_ticks <= best_tick
        if hit:
            if not _exch_fill_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s,
                                 slot, t, True, o.exch_price_ticks, o.exch_leaves_qty, -1):
                return False
            # The fill removed the order from the list: the same index now holds the next one.
        else:
            j += 1
    return True


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_on_trade_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, t, aggressor,
                      price_ticks, trade_qty):
    # A buyer-aggressor trade reaches resting sells at or below its price; a seller-aggressor trade, buys at or above.
    if aggressor == _BID:
        if ss[s].n_sell == 0 or ss[s].min_sell_tick > price_ticks:
            return True
        side = _ASK
    elif aggressor == _ASK:
        if ss[s].n_buy == 0 or ss[s].max_buy_tick < price_ticks:
            return True
        side = _BID
    else:
        return True
    lot = sym[ss[s].book_id].lot_size
    partial = sp[0].exchange_model == _PARTIAL_MODEL
    avail = trade_qty  # quantity of this trade not yet used by our queue-front fills at its price
    j = 0
    while j < ss[s].n_exch:
        slot = exch_list[s, j]
        o = orders[slot]
        n_before = ss[s].n_exch
        if o.side == side:
            p = o.exch_price_ticks
            through = (side == _ASK and p < price_ticks) or (side == _BID and p > price_ticks)
            if through:
                if not _exch_fill_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s,
                                     slot, t, True, p, o.exch_leaves_qty, -1):
                    return False
            elif p == price_ticks:
                front, cum = queue_on_trade_nb(o.front_qty, o.cum_trade_qty, avail)
                o.front_qty = front
                o.cum_trade_qty = cum + (trade_qty - avail)
                exec_qty = queue_exec_qty_nb(o.front_qty, lot)
                if exec_qty > 0.0:
                    o.front_qty = 0.0
                    if partial:
                        fill_qty = min(exec_qty, o.exch_leaves_qty)
                    else:
                        fill_qty = o.exch_leaves_qty
                    avail = max(avail - fill_qty, 0.0)
                    if not _exch_fill_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills,
                                         s, slot, t, True, p, fill_qty, -1):
                        return False
        if ss[s].n_exch == n_before:
            j += 1
    return True


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_on_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, t, bb0, ba0):
    """The best bid rose to / the best ask fell to resting orders of ours: they fill (after a depth update)."""
    bb1 = book[ss[s].book_id].best_bid_tick
    ba1 = book[ss[s].book_id].best_ask_tick
    if bb1 > bb0 and ss[s].n_sell > 0 and ss[s].min_sell_tick <= bb1:
        if not _fill_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, t,
                                _ASK, bb1):
            return False
    if ba1 < ba0 and ss[s].n_buy > 0 and ss[s].max_buy_tick >= ba1:
        if not _fill_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, t,
                                _BID, ba1):
            return False
    return True


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_on_depth_queue_nb(sp, orders, exch_list, ss, s, side, price_ticks, prev_qty, new_qty):
    model = sp[0].queue_model
    power = sp[0].queue_power
    for j in range(ss[s].n_exch):
        o = orders[exch_list[s, j]]
        if o.side == side and o.exch_price_ticks == price_ticks:
            front, cum = queue_on_depth_nb(model, power, o.front_qty, o.cum_trade_qty, prev_qty, new_qty)
            o.front_qty = front
            o.cum_trade_qty = cum


@njit(cache=True, _nrt=False, error_model="numpy")
def _write_mid_nb(mids, rs, t, s, bb, ba):
    i = rs[0].n_mid_rows
    r = mids[i]
    r.ts_exch = t
    r.symbol_id = s
    r.best_bid_ticks = bb
    r.best_ask_ticks = ba
    rs[0].n_mid_rows = i + 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_on_event_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty, ask_qty, consumed,
                      oev, fills, mids, ev):
    s = np.int64(ev.symbol_id)
    kind = ev.kind
    t = ev.ts_exch
    if kind == _TRADE:
        if ss[s].n_exch > 0:
            return _exch_on_trade_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s,
                                     t, np.int64(ev.side), ev.price_ticks, ev.qty)
        return True
    if kind == _DEPTH or kind == _SNAPSHOT:
        side = np.int64(ev.side)
        p = ev.price_ticks
        bb0 = book[s].best_bid_tick
        ba0 = book[s].best_ask_tick
        at_orders = False
        if side == _BID:
            at_orders = ss[s].n_buy > 0 and ss[s].min_buy_tick <= p and p <= ss[s].max_buy_tick
        elif side == _ASK:
            at_orders = ss[s].n_sell > 0 and ss[s].min_sell_tick <= p and p <= ss[s].max_sell_tick
        prev_qty = 0.0
        if at_orders:
            prev_qty = book_level_qty_nb(book, bid_qty, ask_qty, s, side, p)
        book_apply_nb(book, bid_qty, ask_qty, s, kind, side, p, ev.qty)
        if ss[s].n_consumed > 0:
            _forget_consumed_nb(consumed, ss, s, side, p)
        if at_orders:
            new_qty = book_level_qty_nb(book, bid_qty, ask_qty, s, side, p)
            _exch_on_depth_queue_nb(sp, orders, exch_list, ss, s, side, p, prev_qty, new_qty)
        bb1 = book[s].best_bid_tick
        ba1 = book[s].best_ask_tick
        if bb1 > bb0 and ss[s].n_sell > 0 and ss[s].min_sell_tick <= bb1:
            if not _fill_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, t,
                                    _ASK, bb1):
                return False
        if ba1 < ba0 and ss[s].n_buy > 0 and ss[s].max_buy_tick >= ba1:
            if not _fill_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, t,
                                    _BID, ba1):
                return False
        if bb1 != bb0 or ba1 != ba0:
            _write_mid_nb(mids, rs, t, s, bb1, ba1)
        return True
    if kind == _CLEAR:
        bb0 = book[s].best_bid_tick
        ba0 = book[s].best_ask_tick
        book_apply_nb(book, bid_qty, ask_qty, s, kind, np.int64(ev.side), ev.price_ticks, ev.qty)
        if ss[s].n_consumed > 0:
            _forget_consumed_nb(consumed, ss, s, np.int64(ev.side), INT64_MAX)
        if book[s].best_bid_tick != bb0 or book[s].best_ask_tick != ba0:
            _write_mid_nb(mids, rs, t, s, book[s].best_bid_tick, book[s].best_ask_tick)
    return True


#: Columns of a batch's per-symbol summary of its instances' resting orders (``_batch_bounds_nb``).
_AGG_MIN_BUY, _AGG_MAX_BUY, _AGG_MIN_SELL, _AGG_MAX_SELL, _AGG_CONSUMED = 0, 1, 2, 3, 4


@njit(cache=True, _nrt=False, error_model="numpy")
def _batch_bounds_nb(ss, n_sym, agg):
    """Per symbol, the price range of the resting orders of all its instances and whether any of them holds
    consumed liquidity. Between request arrivals orders only leave (fills), so the ranges stay a superset."""
    for s in range(n_sym):
        agg[s, _AGG_MIN_BUY] = INT64_MAX
        agg[s, _AGG_MAX_BUY] = -INT64_MAX
        agg[s, _AGG_MIN_SELL] = INT64_MAX
        agg[s, _AGG_MAX_SELL] = -INT64_MAX
        agg[s, _AGG_CONSUMED] = 0
    for i in range(ss.shape[0]):
        s = ss[i].book_id
        if ss[i].n_buy > 0:
            agg[s, _AGG_MIN_BUY] = min(agg[s, _AGG_MIN_BUY], ss[i].min_buy_tick)
            agg[s, _AGG_MAX_BUY] = max(agg[s, _AGG_MAX_BUY], ss[i].max_buy_tick)
        if ss[i].n_sell > 0:
            agg[s, _AGG_MIN_SELL] = min(agg[s, _AGG_MIN_SELL], ss[i].min_sell_tick)
            agg[s, _AGG_MAX_SELL] = max(agg[s, _AGG_MAX_SELL], ss[i].max_sell_tick)
        agg[s, _AGG_CONSUMED] += ss[i].n_consumed


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_batch_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills, s, n_sym,
                           n_inst, t, bb0, ba0, bb1, ba1):
    """The best prices of symbol ``s`` moved from (bb0, ba0) to (bb1, ba1): every instance of it whose resting
    orders the new touch crosses fills them. Returns False when a report queue is full."""
    for i in range(s, n_inst, n_sym):
        if (bb1 > bb0 and ss[i].n_sell > 0 and ss[i].min_sell_tick <= bb1) or (
                ba1 < ba0 and ss[i].n_buy > 0 and ss[i].max_buy_tick >= ba1):
            if not _exch_on_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills,
                                       i, t, bb0, ba0):
                return False
    return True


@njit(cache=True, _nrt=False, error_model="numpy")
def _exch_batch_event_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty, ask_qty, consumed,
                         oev, fills, mids, ev, n_sym, n_inst, agg):
    """One market event at the exchange of a parameter batch: the symbol's book applies it once, then each
    instance of the symbol (rows ``s, s + n_sym, ...`` of ``ss``) updates its queues and fills as a run of its
    own would; ``agg`` (``_batch_bounds_nb``) skips the instances when none can be concerned. Returns False
    when a report queue is full."""
    s = np.int64(ev.symbol_id)
    k = ev.kind
    t = ev.ts_exch
    side = np.int64(ev.side)
    p = ev.price_ticks
    if k == _DEPTH or k == _SNAPSHOT:
        if side == _BID:
            near = agg[s, _AGG_MIN_BUY] <= p and p <= agg[s, _AGG_MAX_BUY]
        else:
            near = agg[s, _AGG_MIN_SELL] <= p and p <= agg[s, _AGG_MAX_SELL]
        if not near and agg[s, _AGG_CONSUMED] == 0:
            # No instance has an order at p or consumed liquidity: the book, then crossed orders if any.
            bb0 = book[s].best_bid_tick
            ba0 = book[s].best_ask_tick
            book_apply_nb(book, bid_qty, ask_qty, s, k, side, p, ev.qty)
            bb1 = book[s].best_bid_tick
            ba1 = book[s].best_ask_tick
            if bb1 == bb0 and ba1 == ba0:
                return True
            if (bb1 > bb0 and agg[s, _AGG_MIN_SELL] <= bb1) or (ba1 < ba0 and agg[s, _AGG_MAX_BUY] >= ba1):
                if not _exch_batch_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev,
                                              fills, s, n_sym, n_inst, t, bb0, ba0, bb1, ba1):
                    return False
            _write_mid_nb(mids, rs, t, s, bb1, ba1)
            return True
    if k == _TRADE:
        if (side == _BID and agg[s, _AGG_MIN_SELL] > p) or (side == _ASK and agg[s, _AGG_MAX_BUY] < p) or (
                side != _BID and side != _ASK):
            return True
        for i in range(s, n_inst, n_sym):
            if (side == _BID and ss[i].n_sell > 0 and ss[i].min_sell_tick <= p) or (
                    side == _ASK and ss[i].n_buy > 0 and ss[i].max_buy_tick >= p):
                if not _exch_on_trade_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, oev, fills,
                                         i, t, side, p, ev.qty):
                    return False
        return True
    bb0 = book[s].best_bid_tick
    ba0 = book[s].best_ask_tick
    if k == _DEPTH or k == _SNAPSHOT:
        any_at = False
        for i in range(s, n_inst, n_sym):
            if ss[i].n_consumed > 0:
                _forget_consumed_nb(consumed, ss, i, side, p)
            if side == _BID:
                any_at |= ss[i].n_buy > 0 and ss[i].min_buy_tick <= p and p <= ss[i].max_buy_tick
            else:
                any_at |= ss[i].n_sell > 0 and ss[i].min_sell_tick <= p and p <= ss[i].max_sell_tick
        prev_qty = 0.0
        if any_at:
            prev_qty = _level_qty_nb(book, bid_qty, ask_qty, s, side, p)
        book_apply_nb(book, bid_qty, ask_qty, s, k, side, p, ev.qty)
        if any_at:
            new_qty = _level_qty_nb(book, bid_qty, ask_qty, s, side, p)
            for i in range(s, n_inst, n_sym):
                if side == _BID:
                    at = ss[i].n_buy > 0 and ss[i].min_buy_tick <= p and p <= ss[i].max_buy_tick
                else:
                    at = ss[i].n_sell > 0 and ss[i].min_sell_tick <= p and p <= ss[i].max_sell_tick
                if at:
                    _exch_on_depth_queue_nb(sp, orders, exch_list, ss, i, side, p, prev_qty, new_qty)
        bb1 = book[s].best_bid_tick
        ba1 = book[s].best_ask_tick
        if bb1 != bb0 or ba1 != ba0:
            if bb1 > bb0 or ba1 < ba0:
                for i in range(s, n_inst, n_sym):
                    if (bb1 > bb0 and ss[i].n_sell > 0 and ss[i].min_sell_tick <= bb1) or (
                            ba1 < ba0 and ss[i].n_buy > 0 and ss[i].max_buy_tick >= ba1):
                        if not _exch_on_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book,
                                                   oev, fills, i, t, bb0, ba0):
                            return False
            _write_mid_nb(mids, rs, t, s, bb1, ba1)
        return True
    if k == _CLEAR:
        book_apply_nb(book, bid_qty, ask_qty, s, k, side, p, ev.qty)
        for i in range(s, n_inst, n_sym):
            if ss[i].n_consumed > 0:
                _forget_consumed_nb(consumed, ss, i, side, INT64_MAX)
        if book[s].best_bid_tick != bb0 or book[s].best_ask_tick != ba0:
            _write_mid_nb(mids, rs, t, s, book[s].best_bid_tick, book[s].best_ask_tick)
    return True


@njit(cache=True, _nrt=False, error_model="numpy")
def _finish_groups_nb(rs, ss, n_sym, t_dc, interval, t_market):
    """At a decision tick after the last market event: each parameter set without requests or reports in flight
    is done (its own run would have ended here) and gets its final time; returns the number still running."""
    n_grp = rs.shape[0]
    running = 0
    for g in range(n_grp):
        i0 = g * n_sym
        if ss[i0].done:
            continue
        idle = True
        last = t_market
        for i in range(i0, i0 + n_sym):
            if ss[i].req_head < ss[i].req_tail or ss[i].resp_head < ss[i].resp_tail:
                idle = False
                break
            last = max(last, ss[i].last_msg_ts)
        if not idle:
            running += 1
            continue
        if rs[g].n_decisions > 0:
            last = max(last, t_dc - interval)
        rs[g].now = last
        for i in range(i0, i0 + n_sym):
            ss[i].done = True
    return running


# ------------------------------------------------------------------------------------------- local: reports


@njit(cache=True, _nrt=False, error_model="numpy")
def _local_remove_nb(local_list, ss, s, slot):
    ss[s].n_local = _list_remove_nb(local_list, s, ss[s].n_local, slot)


@njit(cache=True, _nrt=False, error_model="numpy")
def _local_on_response_nb(sym, rs, ss, orders, local_list, resp_ring, s):
    cap = resp_ring.shape[1]
    m = resp_ring[s, ss[s].resp_head % cap]
    ss[s].resp_head += 1
    if ss[s].resp_head == ss[s].resp_tail:
        # An empty queue starts again at its first slot (see _exch_on_request_nb).
        ss[s].resp_head = _ring_start_nb(s, cap)
        ss[s].resp_tail = ss[s].resp_head
    slot = m.slot
    o = orders[slot]
    o.inflight -= 1
    kind = m.kind
    answers = m.req_seq == o.req_seq
    if kind == _EV_FILLED:
        spar = sym[ss[s].book_id]
        price = m.price_ticks * spar.tick_size
        notional = notional_nb(spar.contract_type, spar.contract_size, price, m.qty)
        ss[s].position += o.side * m.qty
        ss[s].balance -= o.side * notional
        ss[s].fees += m.fee
        o.local_leaves_qty = m.leaves_qty
        o.local_filled_qty += m.qty
        if m.status == _ST_FILLED:
            o.local_status = _ST_FILLED
            o.local_req = _REQ_NONE
        else:
            o.local_status = _ST_PARTIAL
            if o.local_req == _REQ_NEW:
                o.local_req = _REQ_NONE
    elif kind == _EV_ACCEPTED:
        o.local_status = _ST_NEW
        o.local_leaves_qty = m.leaves_qty
        if answers:
            o.local_req = _REQ_NONE
    elif kind == _EV_REJECTED:
        o.local_status = _ST_REJECTED
        o.local_req = _REQ_NONE
    elif kind == _EV_EXPIRED:
        o.local_status = _ST_EXPIRED
        o.local_req = _REQ_NONE
    elif kind == _EV_CANCELED:
        o.local_status = _ST_CANCELED
        o.local_req = _REQ_NONE
    elif kind == _EV_MODIFIED:
        o.local_status = m.status
        o.local_price_ticks = m.price_ticks
        o.local_leaves_qty = m.leaves_qty
        if answers:
            o.local_req = _REQ_NONE
    elif kind == _EV_CANCEL_REJECTED:
        if answers:
            o.local_req = _REQ_NONE
    elif kind == _EV_MODIFY_REJECTED:
        if answers:
            o.local_req = _REQ_NONE
            if o.local_status == _ST_NEW or o.local_status == _ST_PARTIAL:
                o.local_price_ticks = o.prev_price_ticks
                o.local_leaves_qty = o.prev_leaves_qty
    st = o.local_status
    if st == _ST_FILLED or st == _ST_CANCELED or st == _ST_REJECTED or st == _ST_EXPIRED:
        _local_remove_nb(local_list, ss, s, slot)
        _maybe_free_slot_nb(orders, rs, slot)


# ------------------------------------------------------------------------------------------ local: actions


@njit(cache=True, _nrt=False, error_model="numpy")
def _find_local_nb(orders, local_list, ss, s, order_id):
    for j in range(ss[s].n_local):
        slot = local_list[s, j]
        if orders[slot].order_id == order_id:
            return slot
    return -1


@njit(cache=True, _nrt=False, error_model="numpy")
def _apply_action_nb(sp, rs, ss, orders, local_list, req_ring, lat_table, oev, s, t, a, mid):
    kind = a.kind
    if kind == _PLACE:
        valid = a.qty > 0.0 and (a.side == _BID or a.side == _ASK) and (a.order_type == _LIMIT or a.order_type == _MARKET)
        if not valid or a.tif < _GTC or a.tif > _FOK:
            _write_local_reject_nb(oev, rs, ss, t, s, a, _EV_REJECTED, _R_INVALID)
            return
        if _find_local_nb(orders, local_list, ss, s, a.order_id) >= 0:
            _write_local_reject_nb(oev, rs, ss, t, s, a, _EV_REJECTED, _R_DUPLICATE)
            return
        if ss[s].n_local >= local_list.shape[1]:
            _write_local_reject_nb(oev, rs, ss, t, s, a, _EV_REJECTED, _R_CAPACITY)
            return
        if rs.shape[0] > 1:
            slot = _alloc_batch_slot_nb(orders, rs, ss, s)
        else:
            slot = _alloc_slot_nb(orders, rs)
        if slot < 0:
            _write_local_reject_nb(oev, rs, ss, t, s, a, _EV_REJECTED, _R_CAPACITY)
            return
        o = orders[slot]
        o.used = True
        o.order_id = a.order_id
        o.order_seq = rs[ss[s].group].order_seq
        o.symbol_id = s
        o.side = a.side
        o.order_type = a.order_type
        o.tif = _GTX if (a.flags & _POST_ONLY_FLAG) != 0 else a.tif
        o.local_status = _ST_NONE
        o.local_req = _REQ_NEW
        o.local_price_ticks = a.price_ticks
        o.local_leaves_qty = a.qty
        o.local_filled_qty = 0.0
        o.prev_price_ticks = a.price_ticks
        o.prev_leaves_qty = a.qty
        o.req_seq = 1
        o.sent_ts = t
        o.last_req_ts = t
        o.inflight = 0
        o.exch_status = _ST_NONE
        o.exch_price_ticks = a.price_ticks
        o.exch_leaves_qty = 0.0
        o.exch_filled_qty = 0.0
        o.front_qty = 0.0
        o.cum_trade_qty = 0.0
        o.queue_ahead_entry_qty = 0.0
        o.accept_ts = -1
        o.first_fill_ts = -1
        o.n_fills = 0
        o.mid_send_ticks = mid
        ts = _push_request_nb(sp, rs, ss, req_ring, lat_table, orders, s, slot, t, _REQ_NEW, a.price_ticks, a.qty, 1)
        if ts < 0:
            o.used = False
            rs[0].n_slots_used -= 1
            _write_local_reject_nb(oev, rs, ss, t, s, a, _EV_REJECTED, _R_CAPACITY)
            return
        rs[ss[s].group].order_seq += 1
        rs[ss[s].group].n_orders += 1
        local_list[s, ss[s].n_local] = slot
        ss[s].n_local += 1
        _write_order_event_nb(oev, rs, orders, slot, t, ts, _EV_SENT, a.price_ticks, a.qty, a.qty, _R_NONE, mid,
                              np.nan)
        return
    if kind == _CANCEL or kind == _MODIFY:
        rej_kind = _EV_CANCEL_REJECTED if kind == _CANCEL else _EV_MODIFY_REJECTED
        slot = _find_local_nb(orders, local_list, ss, s, a.order_id)
        if slot < 0:
            _write_local_reject_nb(oev, rs, ss, t, s, a, rej_kind, _R_UNKNOWN)
            return
        o = orders[slot]
        if o.local_req != _REQ_NONE or o.local_status == _ST_NONE:
            _write_local_reject_nb(oev, rs, ss, t, s, a, rej_kind, _R_IN_FLIGHT)
            return
        if kind == _MODIFY and not (a.qty > 0.0):
            _write_local_reject_nb(oev, rs, ss, t, s, a, rej_kind, _R_INVALID)
            return
        req_seq = o.req_seq + 1
        if kind == _CANCEL:
            ts = _push_request_nb(sp, rs, ss, req_ring, lat_table, orders, s, slot, t, _REQ_CANCEL,
                                  o.local_price_ticks, o.local_leaves_qty, req_seq)
        else:
            ts = _push_request_nb(sp, rs, ss, req_ring, lat_table, orders, s, slot, t, _REQ_MODIFY, a.price_ticks,
                                  a.qty, req_seq)
        if ts < 0:
            _write_local_reject_nb(oev, rs, ss, t, s, a, rej_kind, _R_CAPACITY)
            return
        o.req_seq = req_seq
        o.last_req_ts = t
        if kind == _CANCEL:
            o.local_req = _REQ_CANCEL
            _write_order_event_nb(oev, rs, orders, slot, t, ts, _EV_CANCEL_SENT, o.local_price_ticks,
                                  o.local_leaves_qty, o.local_leaves_qty, _R_NONE, mid, np.nan)
        else:
            o.local_req = _REQ_MODIFY
            o.prev_price_ticks = o.local_price_ticks
            o.prev_leaves_qty = o.local_leaves_qty
            o.local_price_ticks = a.price_ticks
            o.local_leaves_qty = a.qty
            _write_order_event_nb(oev, rs, orders, slot, t, ts, _EV_MODIFY_SENT, a.price_ticks, a.qty, a.qty,
                                  _R_NONE, mid, np.nan)
        return
    _write_local_reject_nb(oev, rs, ss, t, s, a, _EV_REJECTED, _R_INVALID)


@njit(cache=True, _nrt=False, error_model="numpy")
def _build_view_nb(orders, local_list, ss, s, view):
    n = min(ss[s].n_local, view.shape[0])
    for j in range(n):
        o = orders[local_list[s, j]]
        v = view[j]
        v.order_id = o.order_id
        v.price_ticks = o.local_price_ticks
        v.qty = o.local_leaves_qty
        v.queue_ahead_qty = np.nan
        v.sent_ts_ns = o.last_req_ts
        v.side = o.side
        v.cancel_pending = o.local_req == _REQ_CANCEL
        v.status = o.local_status
        v.req = o.local_req
        v.order_type = o.order_type
        v.tif = o.tif
        v.order_seq = o.order_seq
        v.filled_qty = o.local_filled_qty
    return n


@njit(cache=True, _nrt=False, error_model="numpy")
def _write_state_nb(sp, sym, rs, ss, book, bid_qty, ask_qty, states, s, t, quotes, n_quotes, n_actions, n_working,
                    reason):
    n_sym = sp[0].n_symbols
    bk = ss[s].book_id
    b = n_sym + bk
    i = rs[0].n_state_rows
    r = states[i]
    r.ts_local = t
    r.symbol_id = s
    bb = book[b].best_bid_tick
    ba = book[b].best_ask_tick
    r.best_bid_ticks = bb
    r.best_ask_ticks = ba
    mid = _mid_ticks_nb(book, b)
    r.mid_ticks = mid
    r.bid_qty = book_level_qty_nb(book, bid_qty, ask_qty, b, _BID, bb) if bb != NO_BID_TICK else 0.0
    r.ask_qty = book_level_qty_nb(book, bid_qty, ask_qty, b, _ASK, ba) if ba != NO_ASK_TICK else 0.0
    qb = -1
    qa = -1
    nb = 0
    na = 0
    for k in range(n_quotes):
        q = quotes[k]
        if q.side == _BID:
            nb += 1
            if qb < 0 or q.price_ticks > qb:
                qb = q.price_ticks
        else:
            na += 1
            if qa < 0 or q.price_ticks < qa:
                qa = q.price_ticks
    r.quote_bid_ticks = qb
    r.quote_ask_ticks = qa
    r.n_quotes_bid = nb
    r.n_quotes_ask = na
    r.n_actions = n_actions
    r.n_working = n_working
    r.position = ss[s].position
    r.balance = ss[s].balance
    r.fees = ss[s].fees
    spar = sym[bk]
    if np.isnan(mid):
        r.pnl = np.nan
    else:
        r.pnl = pnl_nb(spar.contract_type, spar.contract_size, ss[s].balance, ss[s].position, ss[s].fees,
                       mid * spar.tick_size)
    r.reason = reason
    rs[0].n_state_rows = i + 1


@njit(cache=True, _nrt=False, error_model="numpy")
def _write_decision_nb(decisions, dec_quotes, dec_actions, rs, strat_state, s, t, quotes, n_quotes, actions,
                       n_actions, reason, tick_ns, timed, n_timers, ns_per_cycle):
    """One decisions row plus its desired quotes and emitted actions; collects the strategy's stage timers."""
    i = rs[0].n_decision_rows
    d = decisions[i]
    d.ts_local = t
    d.symbol_id = s
    d.n_quotes = n_quotes
    d.n_actions = n_actions
    d.reason = reason
    d.tick_ns = tick_ns
    for k in range(STAGE_TIMERS_MAX):
        if timed and k < n_timers:
            d.stage_ns[k] = np.int64(strat_state[s, 1 + k] * ns_per_cycle + 0.5)
        else:
            d.stage_ns[k] = -1
    if timed and n_timers > 0:
        strat_state[s, 0] = 0.0
    rs[0].n_decision_rows = i + 1
    j = rs[0].n_decision_quote_rows
    for k in range(n_quotes):
        q = quotes[k]
        r = dec_quotes[j + k]
        r.price_ticks = q.price_ticks
        r.qty = q.qty
        r.level = q.level
        r.side = q.side
    rs[0].n_decision_quote_rows = j + n_quotes
    j = rs[0].n_decision_action_rows
    for k in range(n_actions):
        dec_actions[j + k] = actions[k]
    rs[0].n_decision_action_rows = j + n_actions


@njit(cache=True, _nrt=False, error_model="numpy")
def _fill_record_nb(fill_rec, m, o, s):
    """The fill row (``fill_dtype``) of fill report ``m`` of order slot ``o``, for the on_fill hook."""
    f = fill_rec[0]
    f.ts_exch = m.ts_origin
    f.ts_local = m.ts
    f.order_id = o.order_id
    f.order_seq = o.order_seq
    f.symbol_id = s
    f.price_ticks = m.price_ticks
    f.qty = m.qty
    f.fee = m.fee
    f.queue_ahead_qty = m.fill_queue_ahead_qty
    f.time_in_queue_ns = m.fill_time_in_queue_ns
    f.sent_ts = o.sent_ts
    f.mid_send_ticks = o.mid_send_ticks
    f.mid_fill_ticks = m.fill_mid_ticks
    f.position_after = m.fill_position_after
    f.leaves_qty = m.leaves_qty
    f.side = o.side
    f.maker = m.maker


@njit(cache=True, _nrt=False)
def noop_on_event_nb(symbol_id, ev, book, bid_qty, ask_qty, b, params, state):
    """The on_event hook of strategies without one (never called: ``has_on_event`` is False)."""
    return


@njit(cache=True, _nrt=False)
def noop_on_fill_nb(symbol_id, now_ns, fill, params, state):
    """The on_fill hook of strategies without one (never called: ``has_on_fill`` is False)."""
    return


# -------------------------------------------------------------------------------------------------- the loop


@njit(cache=True, nogil=True, error_model="numpy")
def run_loop_nb(local_ev, exch_ev, horizon, is_final, sp, sym, rs, ss, book, bid_qty, ask_qty, orders, exch_list,
                local_list, req_ring, resp_ring, consumed, lat_table, decide, on_event, on_fill, strat_params,
                strat_state, view, quotes, actions, counts, fills, oev, states, mids, decisions, dec_quotes,
                dec_actions, fill_rec):
    """Run the event loop over one window until ``horizon`` (exclusive); returns a ``LoopStatus``.

    ``decide`` is a first-class strategy function (signature in ``mmlab.sim.grid_nb``), called once per symbol
    at each decision tick with the local book, the symbol's active orders and its params/state rows. The hooks
    ``on_event(symbol_id, ev, book, bid_qty, ask_qty, b, params, state)`` (every local market event, after the
    local book ``b`` applied it) and ``on_fill(symbol_id, now_ns, fill, params, state)`` (every fill report, at
    its arrival, after the local account took it) are called only when ``sp.has_on_event`` / ``has_on_fill``;
    ``on_event`` only for the events ``sp.on_event_mask`` selects (``HookEvents``: every row by default).
    Each decision writes a row to ``decisions`` with its quotes and actions in ``dec_quotes`` / ``dec_actions``
    (none when ``decisions`` has no rows: the caller keeps no decision rows);
    a fraction ``sp.trace_fraction`` of the ticks is timed (cycle counter): the tick's time, and the strategy's
    ``sp.n_stage_timers`` stage timers, read from ``strat_state[s, 1:]`` after the loop set ``strat_state[s, 0]``
    to 1 (cycles; the loop converts them to ns with ``sp.ns_per_cycle``).

    The four streams only meet at decision ticks and at the exchange: local market events touch only the local
    books, reports only the local order view and account, market events and requests only the exchange side.
    So each stream runs in long batches in its own time order (market events before requests at equal
    times), and a decision tick runs once every stream has passed it; the result is the same as one merged
    time order with hftbacktest's tie rules, at a fraction of the switching cost.

    Parameter batches: with ``rs`` of K records, the rows of ``ss`` (and of the order lists, rings, consumed
    table, strategy params/state) are K * n_symbols instances, instance ``i`` = parameter set ``i // n_symbols``
    (``ss[i].group``) on symbol ``i % n_symbols`` (``ss[i].book_id``). Our orders never move the replayed market,
    so the books apply each event once and every instance of the symbol reacts to it as its own run would; each
    parameter set counts its orders in ``rs[group]`` and stops deciding at the tick where its own run would end.
    Output rows carry the instance in ``symbol_id``. With one record (K = 1) instance = symbol.
    """
    n_sym = sp[0].n_symbols
    n_inst = ss.shape[0]
    batch = rs.shape[0] > 1
    agg = np.empty((n_sym if batch else 0, 5), dtype=np.int64)
    interval = sp[0].interval_ns
    nl = local_ev.shape[0]
    ne = exch_ev.shape[0]
    fill_room = exch_list.shape[1] + MAX_SWEEP_LEVELS + 8
    oev_room = n_inst * (actions.shape[0] + 8) + 2 * exch_list.shape[1] + MAX_SWEEP_LEVELS + 8
    fill_cap = fills.shape[0] - fill_room
    oev_cap = oev.shape[0] - oev_room
    mid_cap = mids.shape[0] - 2
    has_on_event = sp[0].has_on_event
    ev_mask = sp[0].on_event_mask
    hook_book_rows = (ev_mask & _HOOK_BOOK_ROWS) != 0
    hook_book_msgs = (ev_mask & _HOOK_BOOK_MESSAGES) != 0
    hook_trades = (ev_mask & _HOOK_TRADES) != 0
    has_on_fill = sp[0].has_on_fill
    n_timers = min(sp[0].n_stage_timers, STAGE_TIMERS_MAX)
    trace_fraction = sp[0].trace_fraction
    ns_per_cycle = sp[0].ns_per_cycle
    dq_room = n_inst * quotes.shape[0]
    da_room = n_inst * actions.shape[0]
    # Empty decision buffers: the caller keeps no decision rows (nothing else changes).
    keep_dec = decisions.shape[0] > 0
    i_l = rs[0].i_local
    i_e = rs[0].i_exch
    n_local_events = 0
    n_exch_events = 0
    now = rs[0].now
    status = _HORIZON
    while True:
        if (rs[0].n_fill_rows > fill_cap or rs[0].n_order_event_rows > oev_cap
                or rs[0].n_state_rows + n_inst > states.shape[0] or rs[0].n_mid_rows >= mid_cap
                or (keep_dec and (rs[0].n_decision_rows + n_inst > decisions.shape[0]
                                  or rs[0].n_decision_quote_rows + dq_room > dec_quotes.shape[0]
                                  or rs[0].n_decision_action_rows + da_room > dec_actions.shape[0]))):
            status = _FLUSH
            break
        t_dc = rs[0].next_decision_ts
        t_eo = rs[0].next_req_ts
        # Everything up to the decision tick (inclusive) and before the horizon may run.
        lim = min(t_dc, horizon - 1)
        t_ed = exch_ev[i_e].ts_exch if i_e < ne else INT64_MAX
        if t_ed <= t_eo and t_ed <= lim:
            # Exchange market events up to the next request arrival (they win ties) or the decision tick. The
            # common case (no own order concerned) is handled inline: a call per event costs more than the book.
            lim_e = min(t_eo, lim)
            ok = True
            if batch:
                _batch_bounds_nb(ss, n_sym, agg)
            while batch:
                # A parameter batch: the book applies each event once, then every instance of its symbol. The
                # common case (no instance's order near the event, no consumed liquidity) is handled inline: a
                # call per event costs more than the book.
                ev = exch_ev[i_e]
                s = np.int64(ev.symbol_id)
                k = ev.kind
                if (k == _DEPTH or k == _SNAPSHOT) and agg[s, _AGG_CONSUMED] == 0:
                    p = ev.price_ticks
                    if ev.side == _BID:
                        near = agg[s, _AGG_MIN_BUY] <= p and p <= agg[s, _AGG_MAX_BUY]
                    else:
                        near = agg[s, _AGG_MIN_SELL] <= p and p <= agg[s, _AGG_MAX_SELL]
                    if not near:
                        bb0 = book[s].best_bid_tick
                        ba0 = book[s].best_ask_tick
                        book_apply_nb(book, bid_qty, ask_qty, s, k, np.int64(ev.side), p, ev.qty)
                        bb1 = book[s].best_bid_tick
                        ba1 = book[s].best_ask_tick
                        if bb1 != bb0 or ba1 != ba0:
                            if (bb1 > bb0 and agg[s, _AGG_MIN_SELL] <= bb1) or (ba1 < ba0 and agg[s, _AGG_MAX_BUY] >= ba1):
                                ok = _exch_batch_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table,
                                                            book, oev, fills, s, n_sym, n_inst, ev.ts_exch, bb0, ba0,
                                                            bb1, ba1)
                            im = rs[0].n_mid_rows
                            mr = mids[im]
                            mr.ts_exch = ev.ts_exch
                            mr.symbol_id = s
                            mr.best_bid_ticks = bb1
                            mr.best_ask_ticks = ba1
                            rs[0].n_mid_rows = im + 1
                    else:
                        ok = _exch_batch_event_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book,
                                                  bid_qty, ask_qty, consumed, oev, fills, mids, ev, n_sym, n_inst, agg)
                elif k == _TRADE and ((ev.side == _BID and agg[s, _AGG_MIN_SELL] > ev.price_ticks) or (
                        ev.side == _ASK and agg[s, _AGG_MAX_BUY] < ev.price_ticks)):
                    pass
                else:
                    ok = _exch_batch_event_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty,
                                              ask_qty, consumed, oev, fills, mids, ev, n_sym, n_inst, agg)
                i_e += 1
                n_exch_events += 1
                if not ok or i_e >= ne or rs[0].n_mid_rows >= mid_cap:
                    break
                if rs[0].n_fill_rows > fill_cap or rs[0].n_order_event_rows > oev_cap:
                    break
                if exch_ev[i_e].ts_exch > lim_e:
                    break
            while not batch:
                ev = exch_ev[i_e]
                s = np.int64(ev.symbol_id)
                k = ev.kind
                slow = False
                if k == _DEPTH or k == _SNAPSHOT:
                    side = np.int64(ev.side)
                    p = ev.price_ticks
                    bb0 = book[s].best_bid_tick
                    ba0 = book[s].best_ask_tick
                    if side == _BID:
                        at_orders = ss[s].n_buy > 0 and ss[s].min_buy_tick <= p and p <= ss[s].max_buy_tick
                    else:
                        at_orders = ss[s].n_sell > 0 and ss[s].min_sell_tick <= p and p <= ss[s].max_sell_tick
                    if ss[s].n_consumed > 0:
                        _forget_consumed_nb(consumed, ss, s, side, p)
                    prev_qty = 0.0
                    if at_orders:
                        prev_qty = _level_qty_nb(book, bid_qty, ask_qty, s, side, p)
                    book_apply_nb(book, bid_qty, ask_qty, s, k, side, p, ev.qty)
                    if at_orders:
                        _exch_on_depth_queue_nb(sp, orders, exch_list, ss, s, side, p, prev_qty,
                                                _level_qty_nb(book, bid_qty, ask_qty, s, side, p))
                    bb1 = book[s].best_bid_tick
                    ba1 = book[s].best_ask_tick
                    if bb1 != bb0 or ba1 != ba0:
                        if (bb1 > bb0 and ss[s].n_sell > 0 and ss[s].min_sell_tick <= bb1) or (
                                ba1 < ba0 and ss[s].n_buy > 0 and ss[s].max_buy_tick >= ba1):
                            slow = True
                            ok = _exch_on_crossed_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table,
                                                     book, oev, fills, s, ev.ts_exch, bb0, ba0)
                        im = rs[0].n_mid_rows
                        mr = mids[im]
                        mr.ts_exch = ev.ts_exch
                        mr.symbol_id = s
                        mr.best_bid_ticks = bb1
                        mr.best_ask_ticks = ba1
                        rs[0].n_mid_rows = im + 1
                elif k == _TRADE:
                    side = np.int64(ev.side)
                    p = ev.price_ticks
                    if (side == _BID and ss[s].n_sell > 0 and ss[s].min_sell_tick <= p) or (
                            side == _ASK and ss[s].n_buy > 0 and ss[s].max_buy_tick >= p):
                        slow = True
                        ok = _exch_on_event_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book,
                                               bid_qty, ask_qty, consumed, oev, fills, mids, ev)
                elif k == _CLEAR:
                    slow = True
                    ok = _exch_on_event_nb(sp, sym, rs, ss, orders, exch_list, resp_ring, lat_table, book, bid_qty,
                                           ask_qty, consumed, oev, fills, mids, ev)
                i_e += 1
                n_exch_events += 1
                if not ok or i_e >= ne or rs[0].n_mid_rows >= mid_cap:
                    break
                if slow and (rs[0].n_fill_rows > fill_cap or rs[0].n_order_event_rows > oev_cap):
                    break
                if exch_ev[i_e].ts_exch > lim_e:
                    break
            now = max(now, exch_ev[i_e - 1].ts_exch)
            if not ok:
                status = _RESPONSE_QUEUE_FULL
                break
            continue
        if t_eo <= lim:
            # Every request due now, symbol by symbol (hftbacktest takes all of one asset's due requests at once).
            qcap = req_ring.shape[1]
            for s in range(n_inst):
                if ss[s].req_head < ss[s].req_tail and req_ring[s, ss[s].req_head % qcap].ts == t_eo:
                    ss[s].last_msg_ts = t_eo
                while ss[s].req_head < ss[s].req_tail and req_ring[s, ss[s].req_head % req_ring.shape[1]].ts == t_eo:
                    if rs[0].n_fill_rows > fill_cap or rs[0].n_order_event_rows > oev_cap:
                        break
                    if not _exch_on_request_nb(sp, sym, rs, ss, orders, exch_list, req_ring, resp_ring, lat_table,
                                               book, bid_qty, ask_qty, consumed, oev, fills, s, t_eo):
                        status = _RESPONSE_QUEUE_FULL
                        break
                if status == _RESPONSE_QUEUE_FULL:
                    break
            # The next arrival once per step, not per message (a scan over every instance's ring).
            rs[0].next_req_ts = _ring_head_ts_nb(ss, req_ring, True)
            if status == _RESPONSE_QUEUE_FULL:
                break
            now = max(now, t_eo)
            continue
        t_ld = local_ev[i_l].ts_local if i_l < nl else INT64_MAX
        if t_ld <= lim:
            # Local market events (the strategy's books) up to the decision tick.
            while True:
                ev = local_ev[i_l]
                k = ev.kind
                if k == _DEPTH or k == _SNAPSHOT or k == _CLEAR:
                    book_apply_nb(book, bid_qty, ask_qty, n_sym + np.int64(ev.symbol_id), k, np.int64(ev.side),
                                  ev.price_ticks, ev.qty)
                    if ev.batch_end:
                        count_book_message_nb(book[n_sym + np.int64(ev.symbol_id)], ev.ts_local, ev.ts_exch,
                                              ev.update_id, k == _SNAPSHOT or k == _CLEAR)
                    if has_on_event and (hook_book_rows or (hook_book_msgs and ev.batch_end)):
                        sid = np.int64(ev.symbol_id)
                        for inst in range(sid, n_inst, n_sym):
                            on_event(inst, ev, book, bid_qty, ask_qty, n_sym + sid, strat_params, strat_state)
                elif k == _TRADE and has_on_event and hook_trades:
                    sid = np.int64(ev.symbol_id)
                    for inst in range(sid, n_inst, n_sym):
                        on_event(inst, ev, book, bid_qty, ask_qty, n_sym + sid, strat_params, strat_state)
                i_l += 1
                n_local_events += 1
                if i_l >= nl or local_ev[i_l].ts_local > lim:
                    break
            now = max(now, local_ev[i_l - 1].ts_local)
            continue
        t_lo = rs[0].next_resp_ts
        if t_lo <= lim:
            # Every report due now reaches the strategy (symbol by symbol, in arrival order).
            rcap = resp_ring.shape[1]
            for s in range(n_inst):
                if ss[s].resp_head < ss[s].resp_tail and resp_ring[s, ss[s].resp_head % rcap].ts == t_lo:
                    ss[s].last_msg_ts = t_lo
                while ss[s].resp_head < ss[s].resp_tail and resp_ring[s, ss[s].resp_head % resp_ring.shape[1]].ts == t_lo:
                    if has_on_fill:
                        m = resp_ring[s, ss[s].resp_head % resp_ring.shape[1]]
                        is_fill = m.kind == _EV_FILLED
                        if is_fill:
                            _fill_record_nb(fill_rec, m, orders[m.slot], s)
                        _local_on_response_nb(sym, rs, ss, orders, local_list, resp_ring, s)
                        if is_fill:
                            on_fill(np.int64(s), t_lo, fill_rec[0], strat_params, strat_state)
                    else:
                        _local_on_response_nb(sym, rs, ss, orders, local_list, resp_ring, s)
            rs[0].next_resp_ts = _ring_head_ts_nb(ss, resp_ring, False)
            now = max(now, t_lo)
            continue
        # Nothing else is due before the decision tick (or the horizon).
        if t_dc >= horizon:
            break
        if is_final and t_ld == INT64_MAX and t_ed == INT64_MAX and t_lo == INT64_MAX and t_eo == INT64_MAX:
            # The tick happens only while something is left to happen after it (hftbacktest's elapse).
            status = _FINISHED
            if batch:
                t_market = max(local_ev[nl - 1].ts_local, exch_ev[ne - 1].ts_exch) if nl > 0 and ne > 0 else now
                _finish_groups_nb(rs, ss, n_sym, t_dc, interval, t_market)
            break
        if batch and is_final and t_ld == INT64_MAX and t_ed == INT64_MAX:
            # Each parameter set ends where its own run would: at the first tick with nothing of its own left.
            t_market = max(local_ev[nl - 1].ts_local, exch_ev[ne - 1].ts_exch) if nl > 0 and ne > 0 else now
            if _finish_groups_nb(rs, ss, n_sym, t_dc, interval, t_market) == 0:
                status = _FINISHED
                break
        # Ticks timed: an even spread of trace_fraction of them (deterministic).
        timed = False
        if trace_fraction > 0.0:
            kd = rs[0].n_decisions
            timed = np.floor((kd + 1) * trace_fraction) > np.floor(kd * trace_fraction)
        for s in range(n_inst):
            if ss[s].done:
                continue
            b = n_sym + ss[s].book_id
            c0 = np.int64(0)
            if timed:
                if n_timers > 0:
                    strat_state[s, 0] = 1.0
                c0 = cycles_nb()
            n_view = _build_view_nb(orders, local_list, ss, s, view)
            counts[0] = 0
            counts[1] = 0
            reason = decide(s, t_dc, book, bid_qty, ask_qty, b, ss[s].position, view, n_view, strat_params,
                            strat_state, quotes, actions, counts)
            n_q = min(counts[0], quotes.shape[0])
            n_a = min(counts[1], actions.shape[0])
            mid = _mid_ticks_nb(book, b)
            for k in range(n_a):
                _apply_action_nb(sp, rs, ss, orders, local_list, req_ring, lat_table, oev, s, t_dc, actions[k], mid)
            tick_ns = np.int64(-1)
            if timed:
                tick_ns = np.int64((cycles_nb() - c0) * ns_per_cycle + 0.5)
            _write_state_nb(sp, sym, rs, ss, book, bid_qty, ask_qty, states, s, t_dc, quotes, n_q, n_a, n_view,
                            reason)
            if keep_dec:
                _write_decision_nb(decisions, dec_quotes, dec_actions, rs, strat_state, s, t_dc, quotes, n_q,
                                   actions, n_a, reason, tick_ns, timed, n_timers, ns_per_cycle)
            elif timed and n_timers > 0:
                strat_state[s, 0] = 0.0
        if timed:
            rs[0].n_timed_ticks += 1
        for g in range(rs.shape[0]):
            if not ss[g * n_sym].done:
                rs[g].n_decisions += 1
        rs[0].next_decision_ts = t_dc + interval
        now = max(now, t_dc)
    rs[0].i_local = i_l
    rs[0].i_exch = i_e
    rs[0].n_local_events += n_local_events
    rs[0].n_exch_events += n_exch_events
    if not batch:
        rs[0].now = now  # (a batch records each parameter set's final time when it finishes)
    return status


@njit(cache=True, _nrt=False, error_model="numpy")
def rows_by_set_nb(words, grp, starts, out):
    """Stable counting sort of a parameter batch's output rows by set: row i of ``words`` (records as uint64
    words) goes to ``out[starts[grp[i]]]``, which then advances (``starts``: each set's first row, updated)."""
    w = words.shape[1]
    for i in range(words.shape[0]):
        g = grp[i]
        d = starts[g]
        for j in range(w):
            out[d, j] = words[i, j]
        starts[g] = d + 1
