"""Multi-symbol scoreboard and dynamic allocator: per-symbol scores -> weights -> inventory size multipliers.

Scoreboard (one ``scoreboard_dtype`` record per symbol), EMAs with weight ``ema_alpha`` (the first observation
initializes each):

- ``scoreboard_on_fill_nb`` at each fill report: ``slippage_bps = side * (price - mid_send) / mid_send * 1e4``,
  ``queue_edge_score = exp(-time_in_queue / queue_edge_ns)`` for maker fills (0 for taker fills), counts the
  fill for the period's fill rate, and queues the fill for its mark ``markout_ns`` later.
- ``scoreboard_on_mark_nb`` with the local mid (every market event and decision): marks the fills that are due,
  ``net_bps = side * (mid - price) / price * 1e4 - fee / notional * 1e4`` and ``adverse_penalty = max(0, -side *
  (mid - mid_fill) / mid_fill * 1e4)`` (``mid_fill``: the fill record's mid at the fill, else the local mid at
  its report), and tracks how long the ``net_bps`` EMA has been below ``auto_blacklist_net_bps``.
- ``scoreboard_on_decision_nb``: orders placed, for ``fill_rate = min(1, fills / places)`` per rebalance period.

Allocator (``allocator_rebalance_nb``, every ``rebalance_period_ns`` of local time): composite score
``sum_k metric_weights[k] * norm_k`` with ``norm = clip(net_bps / net_bps_scale, -1, 1)``, ``fill_rate``,
``-clip(slippage_bps / slippage_bps_scale, -1, 1)``, ``queue_edge_score``, ``-clip(adverse_penalty /
adverse_bps_scale, -1, 1)``; the symbols with at least ``min_samples`` marked fills share a budget of one weight
each by softmax, ``w_i = n * exp(score_i / T) / sum_j exp(score_j / T)``, clamped to ``[min_weight,
max_weight]``; symbols still warming keep 1.0; blacklisted, not whitelisted and auto-blacklisted symbols get 0.
A new weight within ``hysteresis_threshold`` of the current one is not applied. The weight is the symbol's size
multiplier (``decide_input_dtype.size_mult`` of the inventory stage). Each decision returns an ``AllocReason``
per symbol and writes one ``alloc_hist_dtype`` row per symbol.

Imports only ``mmlab.types``, numpy and numba. Python constructors: :mod:`mmlab.allocator_config`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from mmlab.types import AllocListing, AllocReason, ScoreMetric

__all__ = [
    "allocator_due_nb",
    "allocator_rebalance_nb",
    "composite_score_nb",
    "ema_nb",
    "scoreboard_mark_nb",
    "scoreboard_on_decision_nb",
    "scoreboard_on_fill_nb",
    "scoreboard_on_mark_nb",
]

INT64_MAX = np.iinfo(np.int64).max

_NET = int(ScoreMetric.NET_BPS)
_FILL = int(ScoreMetric.FILL_RATE)
_SLIP = int(ScoreMetric.SLIPPAGE_BPS)
_QUEUE = int(ScoreMetric.QUEUE_EDGE)
_ADV = int(ScoreMetric.ADVERSE_PENALTY)

_BLACK = int(AllocListing.BLACKLISTED)
_NOT_WHITE = int(AllocListing.NOT_WHITELISTED)

_R_OK = int(AllocReason.OK)
_R_BLACK = int(AllocReason.BLACKLISTED)
_R_NOT_WHITE = int(AllocReason.NOT_WHITELISTED)
_R_AUTO = int(AllocReason.AUTO_BLACKLISTED)
_R_HYST = int(AllocReason.HYSTERESIS)
_R_WARM = int(AllocReason.WARMING)
_R_MAX = int(AllocReason.MAX_WEIGHT)
_R_MIN = int(AllocReason.MIN_WEIGHT)


@njit(cache=True)
def ema_nb(prev, x, alpha, n_prev):
    """One EMA step; the first observation (``n_prev == 0``) sets the value."""
    if n_prev == 0:
        return x
    return prev + alpha * (x - prev)


@njit(cache=True)
def _clip1_nb(x):
    return min(1.0, max(-1.0, x))


@njit(cache=True)
def _mark_oldest_nb(ap, bd, mid_ticks, now_ns):
    """Mark the oldest pending fill at ``mid_ticks``: net_bps and adverse_penalty EMAs, auto-blacklist clock."""
    cap = bd.pending.shape[0]
    p = bd.pending[bd.pend_head]
    side = float(p.side)
    net = side * (mid_ticks - p.price_ticks) / p.price_ticks * 1e4 - p.fee_bps
    ref = p.mid_ticks if p.mid_ticks > 0.0 else p.price_ticks
    adverse = max(0.0, -side * (mid_ticks - ref) / ref * 1e4)
    bd.net_bps = ema_nb(bd.net_bps, net, ap.ema_alpha, bd.n_marked)
    bd.adverse_penalty = ema_nb(bd.adverse_penalty, adverse, ap.ema_alpha, bd.n_marked)
    bd.n_marked += 1
    bd.pend_head = (bd.pend_head + 1) % cap
    bd.pend_count -= 1
    if bd.n_marked >= ap.min_samples and bd.net_bps < ap.auto_blacklist_net_bps:
        if bd.below_since_ns < 0:
            bd.below_since_ns = now_ns
    else:
        bd.below_since_ns = -1


@njit(cache=True)
def scoreboard_on_fill_nb(ap, board, i, now_ns, fill):
    """A fill report of symbol ``i`` (``fill_dtype`` record) reaches the strategy at ``now_ns``; returns pending fills."""
    bd = board[i]
    bd.n_fills += 1
    bd.period_fills += 1
    side = float(fill.side)
    price = float(fill.price_ticks)
    ms = fill.mid_send_ticks
    if ms > 0.0 and price > 0.0:
        bd.slippage_bps = ema_nb(bd.slippage_bps, side * (price - ms) / ms * 1e4, ap.ema_alpha, bd.n_slip)
        bd.n_slip += 1
    qe = 0.0
    if fill.maker:
        qe = math.exp(-max(fill.time_in_queue_ns, 0) / max(ap.queue_edge_ns, 1))
    bd.queue_edge_score = ema_nb(bd.queue_edge_score, qe, ap.ema_alpha, bd.n_queue)
    bd.n_queue += 1
    if not price > 0.0:
        return bd.pend_count
    px = price * bd.tick_size
    if bd.inverse:
        notional = fill.qty * bd.contract_size / px
    else:
        notional = fill.qty * bd.contract_size * px
    fee_bps = fill.fee / notional * 1e4 if notional > 0.0 else 0.0
    cap = bd.pending.shape[0]
    if bd.pend_count >= cap:
        # A full ring marks its oldest fill early, at the mid known now.
        mid = bd.mid_ticks if bd.mid_ticks > 0.0 else price
        _mark_oldest_nb(ap, bd, mid, now_ns)
        bd.n_forced_marks += 1
    k = (bd.pend_head + bd.pend_count) % cap
    p = bd.pending[k]
    p.due_ns = now_ns + ap.markout_ns
    p.price_ticks = price
    # The adverse move is measured from the mid at the fill when the report carries it, else from the mid now.
    p.mid_ticks = fill.mid_fill_ticks if fill.mid_fill_ticks > 0.0 else bd.mid_ticks
    p.fee_bps = fee_bps
    p.side = fill.side
    bd.pend_count += 1
    return bd.pend_count


@njit(cache=True)
def scoreboard_on_mark_nb(ap, board, i, now_ns, mid_ticks):
    """Local mid of symbol ``i`` at ``now_ns`` (NaN = none): marks the pending fills that are due; returns how many."""
    return scoreboard_mark_nb(ap, board[i], now_ns, mid_ticks)


@njit(cache=True)
def scoreboard_mark_nb(ap, bd, now_ns, mid_ticks):
    """``scoreboard_on_mark_nb`` on one scoreboard record ``bd`` (a hook holding the record skips the array view)."""
    if not mid_ticks > 0.0:
        return 0
    bd.mid_ticks = mid_ticks
    bd.last_mark_ns = now_ns
    n = 0
    while bd.pend_count > 0 and bd.pending[bd.pend_head].due_ns <= now_ns:
        _mark_oldest_nb(ap, bd, mid_ticks, now_ns)
        n += 1
    return n


@njit(cache=True)
def scoreboard_on_decision_nb(board, i, n_place):
    """Orders placed by symbol ``i``'s decision (the fill rate's denominator)."""
    board[i].period_places += n_place


@njit(cache=True)
def composite_score_nb(ap, bd):
    """Composite score of one scoreboard record (weights ``ap.metric_weights`` over the normalized metrics)."""
    w = ap.metric_weights
    return (w[_NET] * _clip1_nb(bd.net_bps / ap.net_bps_scale)
            + w[_FILL] * bd.fill_rate
            - w[_SLIP] * _clip1_nb(bd.slippage_bps / ap.slippage_bps_scale)
            + w[_QUEUE] * bd.queue_edge_score
            - w[_ADV] * _clip1_nb(bd.adverse_penalty / ap.adverse_bps_scale))


@njit(cache=True)
def allocator_due_nb(ap, ast, now_ns):
    """True when a rebalance is due at ``now_ns`` (the first call only starts the clock)."""
    if ast.next_rebalance_ns < 0:
        ast.next_rebalance_ns = now_ns + ap.rebalance_period_ns
        return False
    return now_ns >= ast.next_rebalance_ns


@njit(cache=True)
def _reset_board_nb(bd):
    """Forget a symbol's scores (re-admitted after an auto-blacklist cooldown: it warms up again)."""
    bd.net_bps = 0.0
    bd.fill_rate = 0.0
    bd.slippage_bps = 0.0
    bd.queue_edge_score = 0.0
    bd.adverse_penalty = 0.0
    bd.n_marked = 0
    bd.n_slip = 0
    bd.n_queue = 0
    bd.n_fill_rate = 0
    bd.below_since_ns = -1


@njit(cache=True)
def allocator_rebalance_nb(ap, ast, board, alloc, now_ns):
    """Recompute every symbol's weight and size multiplier from the scoreboard; returns the active symbols.

    Writes ``alloc[i].weight``/``size_mult``/``reason`` and one history row per symbol, ``board[i].score``.
    """
    n = board.shape[0]
    # Fill rate of the period that ends now.
    for i in range(n):
        bd = board[i]
        if bd.period_places > 0:
            fr = min(1.0, bd.period_fills / bd.period_places)
            bd.fill_rate = ema_nb(bd.fill_rate, fr, ap.ema_alpha, bd.n_fill_rate)
            bd.n_fill_rate += 1
        bd.period_places = 0
        bd.period_fills = 0
    # Eligibility and scores; reason OK marks the symbols that enter the softmax.
    n_scored = 0
    top = -np.inf
    for i in range(n):
        a = alloc[i]
        bd = board[i]
        bd.score = composite_score_nb(ap, bd)
        if a.listing == _BLACK:
            a.reason = _R_BLACK
        elif a.listing == _NOT_WHITE:
            a.reason = _R_NOT_WHITE
        elif a.auto_until_ns >= 0 and now_ns < a.auto_until_ns:
            a.reason = _R_AUTO
        else:
            if a.auto_until_ns >= 0:
                a.auto_until_ns = -1
                _reset_board_nb(bd)
                bd.score = composite_score_nb(ap, bd)
            if bd.below_since_ns >= 0 and now_ns - bd.below_since_ns >= ap.auto_blacklist_window_ns:
                cool = ap.auto_blacklist_cooldown_ns
                a.auto_until_ns = now_ns + cool if cool > 0 else INT64_MAX
                ast.n_auto_blacklisted += 1
                a.reason = _R_AUTO
            elif bd.n_marked < ap.min_samples:
                a.reason = _R_WARM
            else:
                a.reason = _R_OK
                n_scored += 1
                top = max(top, bd.score / ap.softmax_temperature)
    total = 0.0
    for i in range(n):
        if alloc[i].reason == _R_OK:
            total += math.exp(board[i].score / ap.softmax_temperature - top)
    n_active = 0
    n_out = 0
    for i in range(n):
        a = alloc[i]
        bd = board[i]
        r = a.reason
        if r == _R_BLACK or r == _R_NOT_WHITE or r == _R_AUTO:
            w = 0.0
            n_out += 1
        else:
            if r == _R_WARM:
                w = 1.0
            else:
                w = n_scored * math.exp(bd.score / ap.softmax_temperature - top) / total
                if w > ap.max_weight:
                    w = ap.max_weight
                    r = _R_MAX
                elif w < ap.min_weight:
                    w = ap.min_weight
                    r = _R_MIN
            if a.weight > 0.0 and w != a.weight and abs(w - a.weight) < ap.hysteresis_threshold:
                w = a.weight
                r = _R_HYST
                ast.n_hysteresis += 1
            n_active += 1
        a.weight = w
        a.size_mult = w if ap.enabled else 1.0
        a.reason = r
        h = a.hist[a.hist_head]
        h.ts_local_ns = now_ns
        h.weight = w
        h.score = bd.score
        h.net_bps = bd.net_bps
        h.fill_rate = bd.fill_rate
        h.slippage_bps = bd.slippage_bps
        h.queue_edge_score = bd.queue_edge_score
        h.adverse_penalty = bd.adverse_penalty
        h.n_marked = bd.n_marked
        h.reason = r
        a.hist_head = (a.hist_head + 1) % a.hist.shape[0]
        a.hist_count += 1
    ast.n_active = n_active
    ast.n_blacklisted = n_out
    ast.n_rebalances += 1
    ast.last_rebalance_ns = now_ns
    ast.next_rebalance_ns = now_ns + ap.rebalance_period_ns
    return n_active
