"""Stage 6, ``emit``: diff the desired quotes against the working orders into order actions.

- HALT: every working order is canceled (``cancel_on_halt``); these cancels bypass the rate limit (they still
  take tokens, so the bucket may go negative). SKIP: no actions, or the same cancels with ``cancel_on_skip``.
- Filters: ``maker_only`` drops a desired quote that would cross the local book (bid >= best ask, ask <= best
  bid); ``reduce_only`` keeps only the position-reducing side, sized at most ``|position|``.
- Matching, per side: a quote carrying ``keep_order_id`` (queue_aware) matches that order; then exact prices;
  then the nearest unmatched order within ``price_tol_ticks`` (the refresh tolerance: no action). A matched
  order whose size differs from the quote's by more than ``qty_tol_frac`` of it is re-quoted.
- Actions, in this order: CANCEL of unmatched working orders (array order), MODIFY (``use_modify``: an
  unmatched order re-priced to an unmatched quote of its side, and size re-quotes), PLACE of unmatched quotes
  (bids by level, then asks). Orders with a cancel pending are not working: never matched, never canceled again.
  Only acknowledged orders (``status`` NEW / PARTIALLY_FILLED) with no request in flight (``req`` NONE) can be
  canceled or modified; the others wait for a later tick (IN_FLIGHT). An order younger than
  ``min_order_age_ms`` is left in place (not canceled or modified).
- Rate limit: a token bucket of capacity ``burst_actions`` refilled at ``max_actions_per_s``; each action takes
  one token; without one the action is deferred (not emitted this tick).
- PLACE carries ``tif``, ``OrderFlag.POST_ONLY`` when ``post_only`` and ``OrderFlag.REDUCE_ONLY`` when
  ``reduce_only``, and a client id from ``next_order_id`` — or, with ``id_from_price``, the price tick as id: a
  price still held by any active order (either side, any status) is then not placed this tick.

Writes ``actions[:n_actions]`` and decision fields n_place, n_cancel, n_modify, n_deferred, n_actions,
emit_reason. Returns an ``EmitReason``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mmlab.types import ActionKind, EmitReason, OrderFlag, OrderStatus, QuoteAction, RequestKind, Side

__all__ = ["emit_nb"]

_BID = int(Side.BID)
_ASK = int(Side.ASK)
_PLACE = int(ActionKind.PLACE)
_CANCEL = int(ActionKind.CANCEL)
_MODIFY = int(ActionKind.MODIFY)
_POST_ONLY = int(OrderFlag.POST_ONLY)
_REDUCE_ONLY = int(OrderFlag.REDUCE_ONLY)
_HALT = int(QuoteAction.HALT)
_SKIP = int(QuoteAction.SKIP)

_OK = int(EmitReason.OK)
_HALT_CANCEL = int(EmitReason.HALT_CANCEL)
_SKIPPED = int(EmitReason.SKIPPED)
_TRUNCATED = int(EmitReason.TRUNCATED)
_RATE_LIMITED = int(EmitReason.RATE_LIMITED)
_TOO_YOUNG = int(EmitReason.TOO_YOUNG)
_FILTERED = int(EmitReason.FILTERED)
_IN_FLIGHT = int(EmitReason.IN_FLIGHT)
_ST_NEW = int(OrderStatus.NEW)
_ST_PARTIAL = int(OrderStatus.PARTIALLY_FILLED)
_REQ_NONE = int(RequestKind.NONE)

_EMPTY_SIDE = 2**61


@njit(cache=True, _nrt=False)
def _refill_nb(p, s, now_ns):
    if math.isinf(p.max_actions_per_s):
        return
    if np.isnan(s.tokens):
        s.tokens = p.burst_actions
    elif now_ns > s.last_refill_ns:
        s.tokens = min(p.burst_actions, s.tokens + p.max_actions_per_s * (now_ns - s.last_refill_ns) * 1e-9)
    s.last_refill_ns = now_ns


@njit(cache=True, _nrt=False)
def _take_token_nb(p, s, force):
    if math.isinf(p.max_actions_per_s):
        return True
    if s.tokens >= 1.0 or force:
        s.tokens -= 1.0
        return True
    return False


@njit(cache=True, _nrt=False)
def _actionable_nb(w):
    """An order the venue can be asked to cancel/modify now: acknowledged, resting, no request in flight."""
    return (w.status == _ST_NEW or w.status == _ST_PARTIAL) and w.req == _REQ_NONE


@njit(cache=True, _nrt=False)
def _quote_of_nb(q_match, nq, j):
    """Index of the quote working order ``j`` serves, -1 if none."""
    for i in range(nq):
        if q_match[i] == j:
            return i
    return -1


# Working orders 0..62 carry their "serves a quote" flag in one int64 bit mask (a test instead of a scan of the
# quotes); orders further down the array fall back to the scan.
_MASK_BITS = 63


@njit(cache=True, _nrt=False)
def _used_nb(used, q_match, nq, j):
    """Working order ``j`` already serves a quote (``used``: bit mask of orders 0..62)."""
    if j < _MASK_BITS:
        return ((used >> j) & 1) != 0
    return _quote_of_nb(q_match, nq, j) >= 0


@njit(cache=True, _nrt=False)
def _bit_nb(j):
    """The ``used`` bit of working order ``j`` (0 beyond the mask)."""
    if j < _MASK_BITS:
        return np.int64(1) << j
    return np.int64(0)


@njit(cache=True, _nrt=False)
def _write_nb(actions, na, kind, order_id, side, price_ticks, qty, tif, flags, level):
    a = actions[na]
    a.kind = kind
    a.order_id = order_id
    a.side = side
    a.price_ticks = price_ticks
    a.qty = qty
    a.tif = tif
    a.flags = flags
    a.level = level


@njit(cache=True, _nrt=False)
def emit_nb(now_ns, inp, orders, n_orders, params, state, out, quotes, actions):
    """Stage 6: write the order actions that move the working orders to the desired quotes; returns an ``EmitReason``."""
    p = params
    s = state
    x = inp
    o = out
    s.calls += 1
    _refill_nb(p, s, now_ns)
    cap = len(actions)
    na = 0
    n_place = 0
    n_cancel = 0
    n_modify = 0
    deferred = 0
    truncated = False
    limited = False
    young = False
    filtered = False
    min_age_ns = p.min_order_age_ms * 1e6

    in_flight = False
    halt = o.quote_action == _HALT
    if halt or (o.quote_action == _SKIP and p.cancel_on_skip):
        o.n_quotes = 0
        if halt:
            s.halts += 1
        if p.cancel_on_halt or not halt:
            for j in range(n_orders):
                w = orders[j]
                if w.cancel_pending:
                    continue
                if not _actionable_nb(w):
                    in_flight = True
                    deferred += 1
                    s.in_flight += 1
                    continue
                if na >= cap:
                    truncated = True
                    deferred += 1
                    continue
                _take_token_nb(p, s, True)
                _write_nb(actions, na, _CANCEL, w.order_id, w.side, w.price_ticks, w.qty, 0, 0, -1)
                na += 1
                n_cancel += 1
        if truncated:
            reason = _TRUNCATED
        elif halt:
            reason = _HALT_CANCEL
        else:
            reason = _SKIPPED
        _finish_nb(s, o, na, n_place, n_cancel, n_modify, deferred, reason)
        return reason
    if o.quote_action == _SKIP:
        _finish_nb(s, o, 0, 0, 0, 0, 0, _SKIPPED)
        return _SKIPPED

    # Filters on the desired set.
    nq = o.n_quotes
    pos = x.position
    bb = x.best_bid_tick
    ba = x.best_ask_tick
    n = 0
    # Without maker_only / reduce_only every quote passes: the loop is skipped.
    for i in range(nq if (p.maker_only or p.reduce_only) else 0):
        q = quotes[i]
        ok = True
        if p.maker_only:
            if q.side == _BID and ba < _EMPTY_SIDE and q.price_ticks >= ba:
                ok = False
            elif q.side == _ASK and bb > -_EMPTY_SIDE and q.price_ticks <= bb:
                ok = False
        if p.reduce_only and ok:
            if q.side == _BID:
                if pos < 0.0:
                    q.qty = min(q.qty, -pos)
                else:
                    ok = False
            else:
                if pos > 0.0:
                    q.qty = min(q.qty, pos)
                else:
                    ok = False
        if ok:
            if n != i:
                quotes[n] = quotes[i]
            n += 1
        else:
            filtered = True
            s.filtered += 1
    if p.maker_only or p.reduce_only:
        nq = n
    o.n_quotes = nq

    # Matching (per-call scratch in the state: quotes are at most 2 * MAX_QUOTE_LEVELS).
    q_match = s.scratch_match
    modify = s.scratch_modify
    used = np.int64(0)
    n_used = 0  # matched pairs (quotes served = working orders serving)
    n_keep = 0
    for i in range(nq):
        q_match[i] = -1
        modify[i] = 0
        if quotes[i].keep_order_id >= 0:
            n_keep += 1
    for i in range(nq if n_keep > 0 else 0):
        kid = quotes[i].keep_order_id
        if kid < 0:
            continue
        for j in range(n_orders):
            w = orders[j]
            if (not w.cancel_pending and w.order_id == kid and w.side == quotes[i].side
                    and not _used_nb(used, q_match, nq, j)):
                q_match[i] = j
                used |= _bit_nb(j)
                n_used += 1
                break
    for i in range(nq):
        if q_match[i] >= 0:
            continue
        q = quotes[i]
        side = q.side
        price = q.price_ticks
        for j in range(n_orders):
            w = orders[j]
            if (w.price_ticks == price and w.side == side and not w.cancel_pending
                    and not _used_nb(used, q_match, nq, j)):
                q_match[i] = j
                used |= _bit_nb(j)
                n_used += 1
                break
    if p.price_tol_ticks > 0:
        for i in range(nq):
            if q_match[i] >= 0:
                continue
            q = quotes[i]
            best = -1
            best_d = p.price_tol_ticks + 1
            for j in range(n_orders):
                w = orders[j]
                if w.cancel_pending or w.side != q.side:
                    continue
                d = abs(w.price_ticks - q.price_ticks)
                if d < best_d and not _used_nb(used, q_match, nq, j):
                    best_d = d
                    best = j
            if best >= 0:
                q_match[i] = best
                used |= _bit_nb(best)
                n_used += 1

    # Size re-quotes of matched pairs: MODIFY, or CANCEL + PLACE.
    any_modify = False
    if not math.isinf(p.qty_tol_frac):
        for i in range(nq):
            j = q_match[i]
            if j >= 0 and abs(orders[j].qty - quotes[i].qty) > p.qty_tol_frac * quotes[i].qty:
                if p.use_modify:
                    modify[i] = 1
                    any_modify = True
                else:
                    q_match[i] = -1
                    used &= ~_bit_nb(j)
                    n_used -= 1

    # Re-pricing by MODIFY: pair leftover orders with leftover quotes of their side.
    if p.use_modify:
        for j in range(n_orders):
            w = orders[j]
            if w.cancel_pending or _used_nb(used, q_match, nq, j):
                continue
            for i in range(nq):
                if q_match[i] < 0 and quotes[i].side == w.side:
                    q_match[i] = j
                    used |= _bit_nb(j)
                    n_used += 1
                    modify[i] = 1
                    any_modify = True
                    break

    # CANCEL unmatched working orders (none when every working order serves a quote).
    for j in range(n_orders if n_used < n_orders else 0):
        w = orders[j]
        if w.cancel_pending or _used_nb(used, q_match, nq, j):
            continue
        if not _actionable_nb(w):
            in_flight = True
            deferred += 1
            s.in_flight += 1
            continue
        if now_ns - w.sent_ts_ns < min_age_ns:
            young = True
            deferred += 1
            continue
        if na >= cap:
            truncated = True
            deferred += 1
            continue
        if not _take_token_nb(p, s, False):
            limited = True
            deferred += 1
            continue
        _write_nb(actions, na, _CANCEL, w.order_id, w.side, w.price_ticks, w.qty, 0, 0, -1)
        na += 1
        n_cancel += 1

    flags = 0
    if p.post_only:
        flags |= _POST_ONLY
    if p.reduce_only:
        flags |= _REDUCE_ONLY

    # MODIFY.
    for j in range(n_orders if any_modify else 0):
        i = _quote_of_nb(q_match, nq, j)
        if i < 0 or modify[i] == 0:
            continue
        w = orders[j]
        q = quotes[i]
        if not _actionable_nb(w):
            in_flight = True
            deferred += 1
            s.in_flight += 1
            continue
        if now_ns - w.sent_ts_ns < min_age_ns:
            young = True
            deferred += 1
            continue
        if na >= cap:
            truncated = True
            deferred += 1
            continue
        if not _take_token_nb(p, s, False):
            limited = True
            deferred += 1
            continue
        _write_nb(actions, na, _MODIFY, w.order_id, q.side, q.price_ticks, q.qty, p.tif, flags, q.level)
        na += 1
        n_modify += 1

    # PLACE unmatched quotes (none when every quote is served).
    for i in range(nq if n_used < nq else 0):
        if q_match[i] >= 0:
            continue
        q = quotes[i]
        if p.id_from_price:
            taken = False
            for j in range(n_orders):
                if orders[j].order_id == q.price_ticks:
                    taken = True
                    break
            if taken:
                in_flight = True
                deferred += 1
                s.in_flight += 1
                continue
        if na >= cap:
            truncated = True
            deferred += 1
            continue
        if not _take_token_nb(p, s, False):
            limited = True
            deferred += 1
            continue
        if p.id_from_price:
            oid = q.price_ticks
        else:
            oid = s.next_order_id
            s.next_order_id += 1
        _write_nb(actions, na, _PLACE, oid, q.side, q.price_ticks, q.qty, p.tif, flags, q.level)
        na += 1
        n_place += 1

    if truncated:
        reason = _TRUNCATED
    elif limited:
        reason = _RATE_LIMITED
    elif young:
        reason = _TOO_YOUNG
    elif in_flight:
        reason = _IN_FLIGHT
    elif filtered:
        reason = _FILTERED
    else:
        reason = _OK
    _finish_nb(s, o, na, n_place, n_cancel, n_modify, deferred, reason)
    return reason


@njit(cache=True, _nrt=False)
def _finish_nb(s, o, na, n_place, n_cancel, n_modify, deferred, reason):
    o.n_actions = na
    o.n_place = n_place
    o.n_cancel = n_cancel
    o.n_modify = n_modify
    o.n_deferred = deferred
    o.emit_reason = reason
    s.placed += n_place
    s.canceled += n_cancel
    s.modified += n_modify
    s.deferred += deferred
