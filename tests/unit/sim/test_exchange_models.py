"""Exchange, queue and latency behaviour of the simulator on hand-built tapes with hand-computed outcomes."""

import numpy as np
import pytest
from simcase import ASK, BID, FOK, GTX, IOC, MARKET, MS, Tape, cancel, events_of, modify, place, run

BOOK_BIDS = {100: 5.0, 99: 5.0, 98: 5.0}
BOOK_ASKS = {101: 5.0, 102: 5.0, 103: 5.0}


def _tape(feed_ms=0.0):
    return Tape(feed_ms).book(0, BOOK_BIDS, BOOK_ASKS)


def test_risk_averse_queue_moves_only_on_trades_at_our_price_and_is_capped_by_the_level():
    tape = _tape()
    tape.depth(2, BID, 100, 3.0)  # level shrinks below our position (5): capped at 3
    tape.depth(3, BID, 100, 6.0)  # grows behind us: still 3
    tape.depth(4, BID, 100, 4.0)  # shrinks, not below 3: still 3 (cancellations count as behind us)
    tape.trade(5, ASK, 101, 9.0)  # trade at another price: no effect
    tape.trade(6, BID, 101, 9.0)
    tape.trade(7, ASK, 100, 2.0)  # at our price: 3 -> 1
    tape.trade(8, ASK, 100, 1.0)  # 1 -> 0: not yet beyond us
    tape.trade(9, ASK, 100, 0.0015)  # 0 -> -0.0015: 2 lots beyond us -> fill (no_partial: all of it)
    tape.end(12)
    r = run(tape, [place(1, 7, BID, 100, 1.0)])
    f = r.fills
    assert f.height == 1
    assert f["ts_exch"][0] == 9 * MS
    assert f["qty"][0] == 1.0 and f["price_ticks"][0] == 100 and f["maker"][0]
    assert f["queue_ahead_qty"][0] == 5.0
    assert f["time_in_queue_ns"][0] == 8 * MS


def test_half_a_lot_beyond_the_queue_is_not_a_fill():
    tape = _tape()
    tape.trade(2, ASK, 100, 5.0004)  # 0.4 lot beyond: rounds to 0 lots
    tape.end(5)
    r = run(tape, [place(1, 7, BID, 100, 1.0)])
    assert r.fills.height == 0


def test_trade_through_and_best_price_crossing_fill_fully():
    tape = _tape()
    tape.trade(2, ASK, 99, 0.001)  # a sell prints below our buy at 100: full fill however small
    tape.depth(3, ASK, 102, 0.0)
    tape.depth(3, ASK, 101, 0.0)
    tape.depth(4, BID, 101, 2.0)  # best bid rises to our sell at 101 (asks gone): it fills
    tape.end(6)
    r = run(tape, [place(1, 1, BID, 100, 1.0), place(1, 2, ASK, 103, 1.0), place(1, 3, ASK, 101, 1.0)])
    by_id = {row["order_id"]: row for row in r.fills.iter_rows(named=True)}
    assert set(by_id) == {1, 3}
    assert by_id[1]["ts_exch"] == 2 * MS and by_id[1]["qty"] == 1.0 and by_id[1]["price_ticks"] == 100
    assert by_id[3]["ts_exch"] == 4 * MS and by_id[3]["price_ticks"] == 101 and by_id[3]["maker"]


def test_post_only_order_that_would_cross_is_rejected():
    tape = _tape()
    tape.end(5)
    r = run(tape, [place(1, 1, BID, 101, 1.0, tif=GTX), place(1, 2, BID, 100, 1.0, tif=GTX)])
    ev1 = events_of(r, 1)
    assert [e[0] for e in ev1] == ["sent", "rejected"]
    assert ev1[1][4] == "post_only_would_cross"
    assert [e[0] for e in events_of(r, 2)] == ["sent", "accepted"]
    assert r.fills.height == 0


def test_no_fill_before_the_order_reaches_the_exchange():
    tape = _tape()
    tape.trade(5, ASK, 99, 1.0)  # would fill our buy at 100, but it arrives at 1 + 10 = 11 ms
    tape.trade(12, ASK, 99, 1.0)  # after arrival: fills
    tape.end(20)
    r = run(tape, [place(1, 1, BID, 100, 1.0)], entry_latency_ms=10.0, response_latency_ms=3.0)
    ev = events_of(r, 1)
    assert ev[0][:2] == ("sent", 11 * MS)
    assert ev[1][:2] == ("accepted", 11 * MS)
    assert r.fills.height == 1 and r.fills["ts_exch"][0] == 12 * MS
    assert r.fills["ts_local"][0] == 15 * MS  # the report travels back 3 ms


def test_a_cancel_can_lose_the_race_to_a_fill():
    tape = _tape()
    tape.trade(6, ASK, 99, 1.0)  # fills at 6 ms; the cancel sent at 5 ms arrives at 7 ms
    tape.end(20)
    r = run(tape, [place(1, 1, BID, 100, 1.0), cancel(5, 1)], entry_latency_ms=2.0, response_latency_ms=1.0)
    kinds = [(e[0], e[1], e[4]) for e in events_of(r, 1)]
    assert kinds == [
        ("sent", 3 * MS, "none"),
        ("accepted", 3 * MS, "none"),
        ("cancel_sent", 7 * MS, "none"),
        ("filled", 6 * MS, "none"),
        ("cancel_rejected", 7 * MS, "order_not_working"),
    ]
    assert r.fills.height == 1
    assert r.summary["position_final"] == 1.0


def test_a_cancel_that_arrives_first_wins():
    tape = _tape()
    tape.trade(12, ASK, 99, 1.0)
    tape.end(20)
    r = run(tape, [place(1, 1, BID, 100, 1.0), cancel(5, 1)], entry_latency_ms=1.0, response_latency_ms=1.0)
    assert [e[0] for e in events_of(r, 1)] == ["sent", "accepted", "cancel_sent", "canceled"]
    assert r.fills.height == 0


def test_partial_fills_add_to_position_and_balance():
    tape = _tape()
    tape.trade(2, ASK, 100, 5.3)  # queue 5 ahead: 0.3 of our 1.0 fills
    tape.trade(3, ASK, 100, 0.5)  # 0.5 more
    tape.trade(4, ASK, 100, 0.9)  # the last 0.2; the rest of the trade is not ours
    tape.end(8)
    r = run(tape, [place(1, 1, BID, 100, 1.0)], exchange_model="partial", maker_fee=-0.0001)
    f = r.fills
    assert f["qty"].to_list() == pytest.approx([0.3, 0.5, 0.2])
    assert f["leaves_qty"].to_list() == pytest.approx([0.7, 0.2, 0.0])
    st = r.state.filter(r.state["ts_local"] == 6 * MS)
    assert st["position"][0] == pytest.approx(1.0)
    assert st["cash"][0] == pytest.approx(-10.0)  # 1.0 at 100 ticks * 0.1
    assert st["fees"][0] == pytest.approx(-0.001)  # rebate: 10.0 * -0.0001
    assert [e[0] for e in events_of(r, 1)] == ["sent", "accepted", "filled", "filled", "filled"]


def test_no_partial_fills_the_whole_order_once_the_queue_is_passed():
    tape = _tape()
    tape.trade(2, ASK, 100, 5.3)
    tape.end(5)
    r = run(tape, [place(1, 1, BID, 100, 1.0)], exchange_model="no_partial")
    assert r.fills["qty"].to_list() == [1.0]


def test_one_trade_never_fills_the_same_quantity_twice():
    tape = _tape()
    tape.trade(3, ASK, 100, 5.5)  # 0.5 beyond the queue of 5: shared by our two orders at 100
    tape.end(6)
    r = run(tape, [place(1, 1, BID, 100, 0.4), place(2, 2, BID, 100, 0.4)], exchange_model="partial")
    assert r.fills["order_id"].to_list() == [1, 2]
    assert r.fills["qty"].to_list() == pytest.approx([0.4, 0.1])


def test_modify_price_or_size_up_requeues_size_down_keeps_the_spot():
    tape = _tape()
    tape.trade(2, ASK, 100, 4.0)  # queue 5 -> 1
    tape.depth(3, BID, 100, 8.0)  # level now 8 (we are 2nd: 1 ahead)
    tape.trade(6, ASK, 100, 0.5)  # after the size-down at 4 ms: 1 -> 0.5, no fill
    tape.depth(7, BID, 99, 2.0)
    tape.trade(9, ASK, 100, 8.0)  # after the move to 99 at 8 ms it no longer concerns 100
    tape.trade(10, ASK, 99, 1.5)  # requeued behind 2.0 at 99: 2 -> 0.5
    tape.trade(11, ASK, 99, 1.0)  # 0.5 -> -0.5: fills
    tape.end(14)
    r = run(tape, [place(1, 1, BID, 100, 1.0), modify(4, 1, BID, 100, 0.5), modify(8, 1, BID, 99, 0.5)])
    oev = r.orders.filter(r.orders["order_id"] == 1)
    mods = oev.filter(oev["event"] == "modified")
    assert mods["queue_ahead_qty"].is_nan().to_list() == [True, False]  # only the price change requeued
    assert mods["queue_ahead_qty"][1] == 2.0
    f = r.fills
    assert f.height == 1 and f["ts_exch"][0] == 11 * MS and f["price_ticks"][0] == 99 and f["qty"][0] == 0.5
    assert f["queue_ahead_qty"][0] == 2.0


def test_modify_size_up_requeues():
    tape = _tape()
    tape.trade(2, ASK, 100, 4.5)  # queue 5 -> 0.5
    tape.trade(4, ASK, 100, 1.0)  # after the size-up at 3 ms we are behind 5 again: no fill
    tape.end(6)
    r = run(tape, [place(1, 1, BID, 100, 1.0), modify(3, 1, BID, 100, 2.0)])
    assert r.fills.height == 0
    mod = r.orders.filter(r.orders["event"] == "modified")
    assert mod["queue_ahead_qty"][0] == 5.0 and mod["leaves_qty"][0] == 2.0


def test_ioc_and_market_orders_sweep_levels_in_the_partial_model():
    tape = _tape()
    tape.end(6)
    r = run(tape, [place(1, 1, BID, 102, 12.0, tif=IOC), place(3, 2, ASK, 0, 7.0, otype=MARKET)],
            exchange_model="partial", taker_fee=0.001)
    f1 = r.fills.filter(r.fills["order_id"] == 1)
    assert f1["price_ticks"].to_list() == [101, 102] and f1["qty"].to_list() == [5.0, 5.0]
    assert not any(f1["maker"].to_list())
    ev1 = [e[0] for e in events_of(r, 1)]
    assert ev1 == ["sent", "filled", "filled", "expired"]
    f2 = r.fills.filter(r.fills["order_id"] == 2)
    assert f2["price_ticks"].to_list() == [100, 99] and f2["qty"].to_list() == [5.0, 2.0]
    # Taker fees: notional * 0.001.
    assert r.fills["fee"].to_list() == pytest.approx([5 * 10.1 * 0.001, 5 * 10.2 * 0.001, 5 * 10.0 * 0.001, 2 * 9.9 * 0.001])


def test_consumed_liquidity_is_not_taken_twice_until_the_level_updates():
    tape = _tape()
    tape.depth(4, ASK, 101, 5.0)  # the venue re-publishes the level: liquidity available again
    tape.end(6)
    r = run(tape, [place(1, 1, BID, 101, 3.0, tif=IOC), place(2, 2, BID, 101, 3.0, tif=IOC),
                   place(5, 3, BID, 101, 3.0, tif=IOC)], exchange_model="partial")
    got = {oid: r.fills.filter(r.fills["order_id"] == oid)["qty"].sum() for oid in (1, 2, 3)}
    assert got == {1: 3.0, 2: 2.0, 3: 3.0}


def test_fok_fills_all_or_nothing_and_no_partial_takers_fill_fully_at_the_best():
    tape = _tape()
    tape.end(6)
    r = run(tape, [place(1, 1, BID, 101, 6.0, tif=FOK), place(2, 2, BID, 102, 6.0, tif=FOK)], exchange_model="partial")
    assert [e[0] for e in events_of(r, 1)] == ["sent", "expired"]
    assert r.fills.filter(r.fills["order_id"] == 2)["qty"].to_list() == [5.0, 1.0]
    r2 = run(Tape().book(0, BOOK_BIDS, BOOK_ASKS).end(6), [place(1, 1, BID, 0, 50.0, otype=MARKET)])
    assert r2.fills["qty"].to_list() == [50.0] and r2.fills["price_ticks"].to_list() == [101]


def test_ioc_that_does_not_cross_expires():
    tape = _tape().end(5)
    r = run(tape, [place(1, 1, BID, 100, 1.0, tif=IOC)])
    ev = events_of(r, 1)
    assert [e[0] for e in ev] == ["sent", "expired"] and ev[1][4] == "no_liquidity"


def test_local_rejects_duplicate_ids_and_requests_in_flight():
    tape = _tape().end(5)
    r = run(tape, [place(1, 1, BID, 100, 1.0), place(1, 1, BID, 99, 1.0), cancel(1, 1), cancel(1, 9)],
            entry_latency_ms=2.0)
    oev = r.orders
    rej = list(zip(oev["event"], oev["reason"], oev["ts_exch"]))
    assert ("rejected", "duplicate_order_id", -1) in rej
    assert ("cancel_rejected", "request_in_flight", -1) in rej  # not acknowledged yet
    assert ("cancel_rejected", "unknown_order_id", -1) in rej
    assert r.summary["n_local_rejects"] == 3


@pytest.mark.parametrize("model", ["risk_averse", "power_prob", "power_prob2", "power_prob3", "log_prob", "log_prob2"])
def test_every_queue_model_runs_and_fills_on_a_trade_through(model):
    tape = _tape()
    tape.depth(2, BID, 100, 2.0)
    tape.trade(3, ASK, 99, 0.1)
    tape.end(5)
    r = run(tape, [place(1, 1, BID, 100, 1.0)], queue_model=model)
    assert r.fills.height == 1


def test_requests_and_reports_travel_in_order():
    # A cancel sent 1 ms after the order, with a shorter latency, still arrives after it.
    tape = _tape().end(30)
    r = run(tape, [place(1, 1, BID, 100, 1.0), cancel(3, 1)], latency_model="per_action", entry_latency_ms=10.0,
            cancel_latency_ms=1.0, response_latency_ms=0.0)
    ev = events_of(r, 1)
    # The cancel is refused locally (the order is not acknowledged before 11 ms): nothing overtakes anything.
    assert [e[0] for e in ev] == ["sent", "cancel_rejected", "accepted"]
    # A cancel sent right after a slow new order waits for it: 12 + 1 ms becomes 22 ms.
    r2 = run(tape, [place(1, 1, BID, 100, 1.0), place(12, 2, BID, 99, 1.0), cancel(12, 1)],
             latency_model="per_action", entry_latency_ms=10.0, cancel_latency_ms=1.0)
    ts = r2.orders.filter(r2.orders["event"].is_in(["sent", "cancel_sent"]))["ts_exch"].to_list()
    assert ts == [11 * MS, 22 * MS, 22 * MS]
    assert np.all(np.diff(r2.orders.filter(r2.orders["event"] != "sent")["ts_local"].to_numpy()) >= 0)
