"""emit: one test per EmitReason, matching/tolerance, modify, rate limit, flags, ids."""

import numpy as np

from mmlab.pipeline import emit_nb
from mmlab.types import ActionKind, EmitReason, OrderFlag, QuoteAction, TimeInForce

BID, ASK = 1, -1
PLACE, CANCEL, MODIFY = int(ActionKind.PLACE), int(ActionKind.CANCEL), int(ActionKind.MODIFY)
S = 1_000_000_000
MS = 1_000_000


def set_quotes(t, quotes, keep=None):
    for i, (side, price, qty) in enumerate(quotes):
        q = t.b.quotes[i]
        q["side"], q["price_ticks"], q["qty"], q["level"] = side, price, qty, i
        q["keep_order_id"] = -1 if keep is None else keep[i]
    t.out["n_quotes"] = len(quotes)


def run(t, quotes, now_ns=S, action=QuoteAction.QUOTE, keep=None, actions=None):
    pl, b = t.pl, t.b
    set_quotes(t, quotes, keep)
    t.out["quote_action"] = action
    buf = b.actions if actions is None else actions
    r = EmitReason(emit_nb(np.int64(now_ns), t.inp, b.orders, t.n_orders, pl.params("emit"), pl.state("emit"), t.out, b.quotes, buf))
    return r


def test_ok_places_with_flags_and_client_ids(tick):
    t = tick(emit=dict(maker_only=True))
    assert run(t, [(BID, 99, 1.0), (BID, 98, 1.0), (ASK, 102, 1.0)]) == EmitReason.OK
    assert t.actions() == [(PLACE, 1, BID, 99, 1.0), (PLACE, 2, BID, 98, 1.0), (PLACE, 3, ASK, 102, 1.0)]
    a = t.b.actions[0]
    assert a["tif"] == TimeInForce.GTX and a["flags"] == OrderFlag.POST_ONLY and a["level"] == 0
    assert t.out["n_place"] == 3 and int(t.pl.state("emit")["next_order_id"]) == 4


def test_diff_keeps_matches_cancels_the_rest(tick):
    t = tick()
    t.add_order(10, BID, 99)
    t.add_order(11, BID, 97)
    t.add_order(12, ASK, 102, cancel_pending=True)  # going away: not matched, not canceled again
    assert run(t, [(BID, 99, 1.0), (BID, 98, 1.0), (ASK, 102, 1.0)]) == EmitReason.OK
    assert t.actions() == [(CANCEL, 11, BID, 97, 1.0), (PLACE, 1, BID, 98, 1.0), (PLACE, 2, ASK, 102, 1.0)]
    assert (t.out["n_cancel"], t.out["n_place"]) == (1, 2)


def test_halt_cancels_every_working_order_even_rate_limited(tick):
    t = tick(emit=dict(max_actions_per_s=1.0, burst_actions=1.0))
    t.add_order(10, BID, 99)
    t.add_order(11, ASK, 102)
    t.add_order(12, ASK, 103, cancel_pending=True)
    assert run(t, [], action=QuoteAction.HALT) == EmitReason.HALT_CANCEL
    assert t.actions() == [(CANCEL, 10, BID, 99, 1.0), (CANCEL, 11, ASK, 102, 1.0)]
    assert int(t.pl.state("emit")["halts"]) == 1
    assert t.pl.state("emit")["tokens"] == -1.0


def test_skip_emits_nothing(tick):
    t = tick()
    t.add_order(10, BID, 50)
    assert run(t, [(BID, 99, 1.0)], action=QuoteAction.SKIP) == EmitReason.SKIPPED
    assert t.actions() == []


def test_refresh_tolerance(tick):
    t = tick(emit=dict(price_tol_ticks=1))
    t.add_order(10, BID, 98)
    assert run(t, [(BID, 99, 1.0)]) == EmitReason.OK
    assert t.actions() == []
    t.b.orders[0]["price_ticks"] = 97  # 2 ticks away
    run(t, [(BID, 99, 1.0)])
    assert t.actions() == [(CANCEL, 10, BID, 97, 1.0), (PLACE, 1, BID, 99, 1.0)]


def test_qty_requote_cancel_place_or_modify(tick):
    t = tick(emit=dict(qty_tol_frac=0.1))
    t.add_order(10, BID, 99, qty=0.5)
    run(t, [(BID, 99, 1.0)])
    assert t.actions() == [(CANCEL, 10, BID, 99, 0.5), (PLACE, 1, BID, 99, 1.0)]
    t2 = tick(emit=dict(qty_tol_frac=0.1, use_modify=True))
    t2.add_order(10, BID, 99, qty=0.5)
    run(t2, [(BID, 99, 1.0)])
    assert t2.actions() == [(MODIFY, 10, BID, 99, 1.0)]
    t3 = tick(emit=dict(qty_tol_frac=0.6))
    t3.add_order(10, BID, 99, qty=0.5)
    run(t3, [(BID, 99, 1.0)])
    assert t3.actions() == []


def test_modify_reprices_leftover_orders(tick):
    t = tick(emit=dict(use_modify=True))
    t.add_order(10, BID, 97)
    t.add_order(11, ASK, 105)
    run(t, [(BID, 99, 1.0), (ASK, 102, 1.0), (ASK, 103, 1.0)])
    assert t.actions() == [(MODIFY, 10, BID, 99, 1.0), (MODIFY, 11, ASK, 102, 1.0), (PLACE, 1, ASK, 103, 1.0)]
    assert t.out["n_modify"] == 2


def test_keep_order_id_matches_a_kept_order(tick):
    t = tick()
    t.add_order(10, BID, 98)
    assert run(t, [(BID, 98, 1.0)], keep=[10]) == EmitReason.OK
    assert t.actions() == []


def test_rate_limited_token_bucket(tick):
    t = tick(emit=dict(max_actions_per_s=2.0, burst_actions=2.0))
    quotes = [(BID, 99, 1.0), (BID, 98, 1.0), (ASK, 102, 1.0)]
    assert run(t, quotes, now_ns=S) == EmitReason.RATE_LIMITED
    assert [a[3] for a in t.actions()] == [99, 98]
    assert t.out["n_deferred"] == 1
    # the placed orders are now working; 0.5 s later one token is back
    t.add_order(1, BID, 99)
    t.add_order(2, BID, 98)
    assert run(t, quotes, now_ns=S + 500 * MS) == EmitReason.OK
    assert t.actions() == [(PLACE, 3, ASK, 102, 1.0)]


def test_cancels_take_tokens_before_places(tick):
    t = tick(emit=dict(max_actions_per_s=1.0, burst_actions=1.0))
    t.add_order(10, BID, 90)
    assert run(t, [(BID, 99, 1.0)]) == EmitReason.RATE_LIMITED
    assert t.actions() == [(CANCEL, 10, BID, 90, 1.0)]


def test_truncated_when_the_action_buffer_is_full(tick):
    t = tick()
    small = np.zeros(2, dtype=t.b.actions.dtype)
    assert run(t, [(BID, 99, 1.0), (BID, 98, 1.0), (BID, 97, 1.0)], actions=small) == EmitReason.TRUNCATED
    assert t.out["n_actions"] == 2 and t.out["n_deferred"] == 1


def test_too_young_orders_stay(tick):
    t = tick(emit=dict(min_order_age_ms=100.0))
    t.add_order(10, BID, 90, sent_ts_ns=S - 50 * MS)
    assert run(t, [(BID, 99, 1.0)], now_ns=S) == EmitReason.TOO_YOUNG
    assert t.actions() == [(PLACE, 1, BID, 99, 1.0)]
    assert run(t, [(BID, 99, 1.0)], now_ns=S + 50 * MS) == EmitReason.OK  # 100 ms old now
    assert t.actions()[0] == (CANCEL, 10, BID, 90, 1.0)


def test_filtered_maker_only(tick):
    t = tick(emit=dict(maker_only=True))  # book 100 / 101
    assert run(t, [(BID, 101, 1.0), (ASK, 100, 1.0), (ASK, 102, 1.0)]) == EmitReason.FILTERED
    assert t.actions() == [(PLACE, 1, ASK, 102, 1.0)]
    assert t.out["n_quotes"] == 1
    t2 = tick(emit=dict(maker_only=False))
    run(t2, [(BID, 101, 1.0)])
    assert len(t2.actions()) == 1


def test_filtered_reduce_only(tick):
    t = tick(emit=dict(reduce_only=True))
    t.inp["position"] = 0.4
    assert run(t, [(BID, 99, 1.0), (ASK, 102, 1.0)]) == EmitReason.FILTERED
    assert t.actions() == [(PLACE, 1, ASK, 102, 0.4)]
    assert t.b.actions[0]["flags"] == OrderFlag.POST_ONLY | OrderFlag.REDUCE_ONLY


def test_in_flight_orders_are_not_canceled_yet(tick):
    from mmlab.types import OrderStatus, RequestKind

    t = tick()
    t.add_order(10, BID, 90, status=OrderStatus.NONE, req=RequestKind.NEW)  # not acknowledged yet
    t.add_order(11, BID, 91, req=RequestKind.MODIFY)  # waits on a modify
    t.add_order(12, BID, 92)
    assert run(t, [(BID, 99, 1.0)]) == EmitReason.IN_FLIGHT
    assert t.actions() == [(CANCEL, 12, BID, 92, 1.0), (PLACE, 1, BID, 99, 1.0)]
    assert t.out["n_deferred"] == 2 and int(t.pl.state("emit")["in_flight"]) == 2


def test_unacknowledged_order_at_a_desired_price_is_kept(tick):
    from mmlab.types import OrderStatus, RequestKind

    t = tick()
    t.add_order(10, BID, 99, status=OrderStatus.NONE, req=RequestKind.NEW)
    assert run(t, [(BID, 99, 1.0)]) == EmitReason.OK
    assert t.actions() == []


def test_cancel_on_skip(tick):
    t = tick(emit=dict(cancel_on_skip=True))
    t.add_order(10, BID, 99)
    t.add_order(11, ASK, 102, cancel_pending=True)
    assert run(t, [], action=QuoteAction.SKIP) == EmitReason.SKIPPED
    assert t.actions() == [(CANCEL, 10, BID, 99, 1.0)]
    assert int(t.pl.state("emit")["halts"]) == 0


def test_id_from_price(tick):
    t = tick(emit=dict(id_from_price=True))
    t.add_order(102, ASK, 102, cancel_pending=True)  # price 102 still held while its cancel is in flight
    t.add_order(98, BID, 98)
    assert run(t, [(BID, 99, 1.0), (BID, 98, 1.0), (ASK, 102, 1.0), (ASK, 103, 1.0)]) == EmitReason.IN_FLIGHT
    assert t.actions() == [(PLACE, 99, BID, 99, 1.0), (PLACE, 103, ASK, 103, 1.0)]
    assert int(t.pl.state("emit")["next_order_id"]) == 1  # client ids untouched
