"""Stage 5, ``queue_aware``: keep good queue spots, filter quotes by fill probability or model score.

Fill probability over ``horizon_ms`` of an order with ``qa`` quantity ahead, ``dist`` ticks behind the touch:
``p_fill = exp(-qa / (flow * H)) * exp(-k * dist)``, with ``flow`` the traded volume rate hitting that side
(spread stage estimate, base units/s), ``H = horizon_ms / 1000`` and ``k`` the calibrated intensity decay
(``depth_decay_per_tick`` until calibrated). It is the probability that an exponentially distributed traded volume
over H exceeds the queue ahead, discounted for depth. ETA = ``qa / flow``. A working order's ``qa`` is its
``queue_ahead_qty`` (the level's size when NaN); a new quote's ``qa`` is the level's current size.

With ``use_model_score`` and a non-NaN ``inp.model_score``, the thresholds compare the score instead of p_fill.

- Hold: a working order at a desired price whose value is below ``tau_hold`` is not kept (its quote is removed,
  so emit cancels it and does not re-place it this tick).
- Keep: a desired quote with no working order at its price takes the price of an unmatched working order on the
  same side when the desired price improves on it by 1..``keep_ticks`` ticks (or retreats by
  1..``keep_back_ticks``), its ETA is at most ``keep_eta_ms`` and its value is at least ``tau_hold``: a one-tick
  move does not cost the queue spot.
- Entry: a new quote whose value is below ``tau_entry`` is not placed.

Writes ``keep_order_id``, ``p_fill``, ``queue_ahead_qty`` of the quotes, compacts ``quotes[:n_quotes]``, and the
decision fields n_kept, n_dropped, queue_reason. Returns a ``QueueReason``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mmlab.features.imbalance import level_qty_at_nb
from mmlab.types import QueueReason, QuoteAction, Side

__all__ = ["fill_prob_nb", "queue_aware_nb"]

_BID = int(Side.BID)
_HALT = int(QuoteAction.HALT)
_SKIP = int(QuoteAction.SKIP)

_PASS = int(QueueReason.PASS)
_DROPPED_HOLD = int(QueueReason.DROPPED_HOLD)
_DROPPED_ENTRY = int(QueueReason.DROPPED_ENTRY)
_KEPT = int(QueueReason.KEPT)


@njit(cache=True, _nrt=False)
def fill_prob_nb(queue_ahead_qty, dist_ticks, flow_qty_per_s, horizon_s, k_per_tick):
    """``exp(-qa / (flow * H)) * exp(-k * dist)``; 0.0 when volume is needed and none flows."""
    depth_term = math.exp(-k_per_tick * dist_ticks) if dist_ticks > 0 else 1.0
    if queue_ahead_qty <= 0.0:
        return depth_term
    v = flow_qty_per_s * horizon_s
    if not v > 0.0:
        return 0.0
    return math.exp(-queue_ahead_qty / v) * depth_term


@njit(cache=True, _nrt=False)
def _level_qty_nb(side, price, x, bid_ticks, bid_qty, ask_ticks, ask_qty):
    """Book quantity at ``price`` on ``side`` among the held levels."""
    if side == _BID:
        return level_qty_at_nb(bid_ticks, bid_qty, x.n_bid_levels, price)
    return level_qty_at_nb(ask_ticks, ask_qty, x.n_ask_levels, price)


@njit(cache=True, _nrt=False)
def _used_nb(matched, nq, j):
    """Working order ``j`` already serves a quote."""
    for i in range(nq):
        if matched[i] == j:
            return True
    return False


# The stage is inlined into its callers and only its active part is a call: a pass-through tick (no rule on,
# nothing to quote, HALT/SKIP) costs no call, whose six array arguments are passed word by word.
@njit(cache=True, _nrt=False, inline="always")
def queue_aware_nb(now_ns, inp, bid_ticks, bid_qty, ask_ticks, ask_qty, orders, n_orders, params, state, out, quotes):
    """Stage 5: keep/drop decisions on the desired quotes against the working orders; returns a ``QueueReason``."""
    p = params
    o = out
    state.calls += 1
    o.n_kept = 0
    o.n_dropped = 0
    active = p.keep_ticks > 0 or p.keep_back_ticks > 0 or p.tau_entry > 0.0 or p.tau_hold > 0.0
    if o.n_quotes == 0 or o.quote_action == _HALT or o.quote_action == _SKIP or not active:
        o.queue_reason = _PASS
        return _PASS
    return _queue_aware_active_nb(now_ns, inp, bid_ticks, bid_qty, ask_ticks, ask_qty, orders, n_orders, params,
                                  state, out, quotes)


@njit(cache=True, _nrt=False)
def _queue_aware_active_nb(now_ns, inp, bid_ticks, bid_qty, ask_ticks, ask_qty, orders, n_orders, params, state, out,
                           quotes):
    """``queue_aware_nb`` past its pass-through checks (a rule is on and there are quotes to judge)."""
    p = params
    s = state
    x = inp
    o = out
    nq = o.n_quotes

    k = o.intensity_k_per_tick
    if np.isnan(k):
        k = p.depth_decay_per_tick
    horizon_s = p.horizon_ms * 1e-3
    score = x.model_score if p.use_model_score else np.nan
    use_score = not np.isnan(score)
    bb = x.best_bid_tick
    ba = x.best_ask_tick

    matched = s.scratch_match
    keep = s.scratch_keep
    for i in range(nq):
        matched[i] = -1
        keep[i] = 1
    dropped_hold = 0
    dropped_entry = 0
    kept = 0

    # Working orders at a desired price.
    for i in range(nq):
        q = quotes[i]
        for j in range(n_orders):
            w = orders[j]
            if w.cancel_pending or w.side != q.side or w.price_ticks != q.price_ticks or _used_nb(matched, i, j):
                continue
            matched[i] = j
            break

    for i in range(nq):
        q = quotes[i]
        flow = o.flow_bid_qty_per_s if q.side == _BID else o.flow_ask_qty_per_s
        j = matched[i]
        if j >= 0:
            w = orders[j]
            qa = w.queue_ahead_qty
            if np.isnan(qa):
                qa = _level_qty_nb(q.side, q.price_ticks, x, bid_ticks, bid_qty, ask_ticks, ask_qty)
            dist = bb - q.price_ticks if q.side == _BID else q.price_ticks - ba
            pf = fill_prob_nb(qa, dist, flow, horizon_s, k)
            q.p_fill = pf
            q.queue_ahead_qty = qa
            q.keep_order_id = w.order_id
            if p.tau_hold > 0.0 and (score if use_score else pf) < p.tau_hold:
                keep[i] = 0
                dropped_hold += 1
            continue
        # Look for a working order worth keeping instead of chasing the new price.
        best_j = -1
        best_d = 1 << 30
        best_qa = 0.0
        best_pf = 0.0
        for j2 in range(n_orders):
            w = orders[j2]
            if w.cancel_pending or w.side != q.side or _used_nb(matched, nq, j2):
                continue
            improve = q.price_ticks - w.price_ticks if q.side == _BID else w.price_ticks - q.price_ticks
            if improve > 0:
                if improve > p.keep_ticks:
                    continue
                d = improve
            elif improve < 0:
                if -improve > p.keep_back_ticks:
                    continue
                d = -improve
            else:
                continue
            # The kept price must not duplicate another desired quote on this side.
            dup = False
            for i2 in range(nq):
                if i2 != i and quotes[i2].side == q.side and quotes[i2].price_ticks == w.price_ticks:
                    dup = True
                    break
            if dup:
                continue
            qa = w.queue_ahead_qty
            if np.isnan(qa):
                qa = _level_qty_nb(w.side, w.price_ticks, x, bid_ticks, bid_qty, ask_ticks, ask_qty)
            if qa <= 0.0:
                eta_ms = 0.0
            elif flow > 0.0:
                eta_ms = qa / flow * 1e3
            else:
                eta_ms = np.inf
            if eta_ms > p.keep_eta_ms:
                continue
            dist = bb - w.price_ticks if w.side == _BID else w.price_ticks - ba
            pf = fill_prob_nb(qa, dist, flow, horizon_s, k)
            if p.tau_hold > 0.0 and (score if use_score else pf) < p.tau_hold:
                continue
            if d < best_d:
                best_d = d
                best_j = j2
                best_qa = qa
                best_pf = pf
        if best_j >= 0:
            matched[i] = best_j
            q.price_ticks = orders[best_j].price_ticks
            q.keep_order_id = orders[best_j].order_id
            q.p_fill = best_pf
            q.queue_ahead_qty = best_qa
            kept += 1
            continue
        # A new entry.
        qa = _level_qty_nb(q.side, q.price_ticks, x, bid_ticks, bid_qty, ask_ticks, ask_qty)
        dist = bb - q.price_ticks if q.side == _BID else q.price_ticks - ba
        pf = fill_prob_nb(qa, dist, flow, horizon_s, k)
        q.p_fill = pf
        q.queue_ahead_qty = qa
        if p.tau_entry > 0.0 and (score if use_score else pf) < p.tau_entry:
            keep[i] = 0
            dropped_entry += 1

    n = 0
    for i in range(nq):
        if keep[i] != 0:
            if n != i:
                quotes[n] = quotes[i]
            n += 1
    o.n_quotes = n
    o.n_kept = kept
    o.n_dropped = dropped_hold + dropped_entry
    s.kept += kept
    s.dropped_hold += dropped_hold
    s.dropped_entry += dropped_entry
    if dropped_hold > 0:
        reason = _DROPPED_HOLD
    elif dropped_entry > 0:
        reason = _DROPPED_ENTRY
    elif kept > 0:
        reason = _KEPT
    else:
        reason = _PASS
    o.queue_reason = reason
    return reason
