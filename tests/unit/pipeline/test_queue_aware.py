"""queue_aware: one test per QueueReason, fill-probability values, model score thresholds."""

import math

import numpy as np
import pytest

from mmlab.pipeline import fill_prob_nb, queue_aware_nb
from mmlab.types import QueueReason, QuoteAction

BID, ASK = 1, -1


def set_quotes(t, quotes):
    for i, (side, price, qty) in enumerate(quotes):
        q = t.b.quotes[i]
        q["side"], q["price_ticks"], q["qty"], q["level"] = side, price, qty, i
        q["keep_order_id"] = -1
    t.out["n_quotes"] = len(quotes)


def run(t, quotes, flow=1.0, k=np.nan, action=QuoteAction.QUOTE):
    pl, b = t.pl, t.b
    set_quotes(t, quotes)
    o = t.out
    o["quote_action"] = action
    o["flow_bid_qty_per_s"] = flow
    o["flow_ask_qty_per_s"] = flow
    o["intensity_k_per_tick"] = k
    return QueueReason(queue_aware_nb(np.int64(0), t.inp, *t.depth(), b.orders,
                                      t.n_orders, pl.params("queue_aware"), pl.state("queue_aware"), t.out, b.quotes))


def test_fill_prob_values():
    # 2 ahead, 1/s over 1 s: exp(-2); 3 ticks behind with k = 0.5: * exp(-1.5)
    assert fill_prob_nb(2.0, 0, 1.0, 1.0, 0.5) == pytest.approx(math.exp(-2.0))
    assert fill_prob_nb(2.0, 3, 1.0, 1.0, 0.5) == pytest.approx(math.exp(-3.5))
    assert fill_prob_nb(0.0, 0, 0.0, 1.0, 0.5) == 1.0  # nothing ahead at the touch
    assert fill_prob_nb(1.0, 0, 0.0, 1.0, 0.5) == 0.0  # volume needed, none flows


def test_pass_when_inactive(tick):
    t = tick()
    t.add_order(7, BID, 99)
    assert run(t, [(BID, 100, 1.0)]) == QueueReason.PASS
    assert t.quotes() == [(BID, 100, 1.0)]


def test_kept_instead_of_chasing_a_one_tick_move(tick):
    t = tick(queue_aware=dict(keep_ticks=1))
    t.add_order(7, BID, 99, queue_ahead_qty=0.5)
    t.add_order(8, ASK, 104, queue_ahead_qty=0.5)
    assert run(t, [(BID, 100, 1.0), (ASK, 102, 1.0)]) == QueueReason.KEPT
    # the bid keeps its spot at 99; the ask is two ticks away: not kept
    assert t.quotes() == [(BID, 99, 1.0), (ASK, 102, 1.0)]
    assert int(t.b.quotes[0]["keep_order_id"]) == 7
    assert t.out["n_kept"] == 1 and int(t.pl.state("queue_aware")["kept"]) == 1


def test_retreat_is_not_kept_unless_configured(tick):
    t = tick(queue_aware=dict(keep_ticks=1))
    t.add_order(7, BID, 100, queue_ahead_qty=0.5)
    assert run(t, [(BID, 99, 1.0)]) == QueueReason.PASS
    assert t.quotes() == [(BID, 99, 1.0)]
    t2 = tick(queue_aware=dict(keep_ticks=1, keep_back_ticks=1))
    t2.add_order(7, BID, 100, queue_ahead_qty=0.5)
    assert run(t2, [(BID, 99, 1.0)]) == QueueReason.KEPT
    assert t2.quotes() == [(BID, 100, 1.0)]


def test_keep_needs_a_short_eta(tick):
    t = tick(queue_aware=dict(keep_ticks=1, keep_eta_ms=1000.0))
    t.add_order(7, BID, 99, queue_ahead_qty=3.0)  # ETA 3 s at 1/s
    assert run(t, [(BID, 100, 1.0)]) == QueueReason.PASS
    t.b.orders[0]["queue_ahead_qty"] = 1.0  # ETA 1 s
    assert run(t, [(BID, 100, 1.0)]) == QueueReason.KEPT


def test_dropped_hold(tick):
    t = tick(queue_aware=dict(tau_hold=0.2, horizon_ms=1000.0))
    t.add_order(7, BID, 100, queue_ahead_qty=2.0)  # p = exp(-2) = 0.135 < 0.2
    t.add_order(8, ASK, 101, queue_ahead_qty=1.0)  # p = exp(-1) = 0.368
    assert run(t, [(BID, 100, 1.0), (ASK, 101, 1.0)]) == QueueReason.DROPPED_HOLD
    assert t.quotes() == [(ASK, 101, 1.0)]
    assert t.b.quotes[0]["p_fill"] == pytest.approx(math.exp(-1.0))
    assert int(t.pl.state("queue_aware")["dropped_hold"]) == 1 and t.out["n_dropped"] == 1


def test_dropped_entry(tick):
    t = tick(queue_aware=dict(tau_entry=0.05, depth_decay_per_tick=1.0))
    # new bid 3 ticks behind the touch (level qty 1.0 ahead): exp(-1) * exp(-3) = 0.018 < 0.05
    # new ask at the touch behind 1.0: exp(-1) = 0.37
    assert run(t, [(BID, 97, 1.0), (ASK, 101, 1.0)]) == QueueReason.DROPPED_ENTRY
    assert t.quotes() == [(ASK, 101, 1.0)]
    assert t.b.quotes[0]["queue_ahead_qty"] == 1.0


def test_calibrated_k_replaces_the_fallback_decay(tick):
    t = tick(queue_aware=dict(tau_entry=0.05, depth_decay_per_tick=1.0))
    assert run(t, [(BID, 97, 1.0)], k=0.1) == QueueReason.PASS  # exp(-1) * exp(-0.3) = 0.27


def test_model_score_replaces_fill_probability(tick):
    t = tick(queue_aware=dict(tau_entry=0.5, use_model_score=True))
    t.inp["model_score"] = 0.9
    assert run(t, [(BID, 97, 1.0)]) == QueueReason.PASS
    t.inp["model_score"] = 0.4
    assert run(t, [(BID, 97, 1.0)]) == QueueReason.DROPPED_ENTRY
    t.inp["model_score"] = np.nan  # no score: p_fill = exp(-1) * exp(-3)
    assert run(t, [(BID, 97, 1.0)]) == QueueReason.DROPPED_ENTRY


def test_halt_passes_through(tick):
    t = tick(queue_aware=dict(tau_entry=0.9))
    assert run(t, [(BID, 97, 1.0)], action=QuoteAction.HALT) == QueueReason.PASS
