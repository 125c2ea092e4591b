"""inventory: one test per InventoryReason, ladder prices, skew, sizing formula, lot rounding."""

import numpy as np
import pytest

from mmlab.pipeline import inventory_nb, lot_floor_nb
from mmlab.types import InventoryReason, QuoteAction

BID, ASK = 1, -1
FREE = dict(min_free_balance_usd=0.0)


def run(t, fair=100.5, half=2.0, action=QuoteAction.QUOTE, allow_bid=True, allow_ask=True, widen=1.0, skew_per_qty=0.0,
        size_mult_bid=1.0, size_mult_ask=1.0):
    pl, b = t.pl, t.b
    o = t.out
    o["fair_ticks"] = fair
    o["half_spread_ticks"] = half
    o["quote_action"] = action
    o["allow_bid"] = allow_bid
    o["allow_ask"] = allow_ask
    o["widen_mult"] = widen
    o["skew_per_qty_ticks"] = skew_per_qty
    o["size_mult_bid"] = size_mult_bid
    o["size_mult_ask"] = size_mult_ask
    return InventoryReason(inventory_nb(np.int64(0), t.inp, pl.params("inventory"), pl.state("inventory"), t.out, b.quotes))


def test_ok_ladder(tick):
    t = tick(inventory=dict(FREE, order_qty=0.5, grid_num=3, grid_interval_ticks=2))
    assert run(t) == InventoryReason.OK
    # floor(100.5 - 2) = 98, ceil(102.5) = 103
    assert t.quotes() == [(BID, 98, 0.5), (BID, 96, 0.5), (BID, 94, 0.5), (ASK, 103, 0.5), (ASK, 105, 0.5), (ASK, 107, 0.5)]
    assert t.out["reservation_ticks"] == 100.5 and t.out["bid_qty"] == 0.5


def test_clamp_to_touch_and_soft_widen(tick):
    t = tick(inventory=dict(FREE))
    run(t, half=0.0)
    assert t.quotes() == [(BID, 100, 0.001), (ASK, 101, 0.001)]  # floor(100.5) = 100, ceil = 101
    run(t, half=2.0, widen=2.0)
    assert t.quotes() == [(BID, 96, 0.001), (ASK, 105, 0.001)]


def test_without_clamp_quotes_improve_but_never_cross(tick):
    t = tick(bid=100, ask=110, inventory=dict(FREE, clamp_to_touch=False))
    run(t, fair=105.0, half=1.0)
    assert t.quotes() == [(BID, 104, 0.001), (ASK, 106, 0.001)]
    run(t, fair=120.0, half=1.0)  # a fair far above the ask: bid stays one tick below the ask
    assert t.quotes() == [(BID, 109, 0.001), (ASK, 121, 0.001)]


def test_fixed_skew(tick):
    t = tick(inventory=dict(FREE, order_qty=0.001, skew_ticks=1.0))
    t.inp["position"] = 0.003  # 3 order sizes long: reservation 100.5 - 3
    run(t, half=1.0)
    assert t.out["reservation_ticks"] == pytest.approx(97.5)
    assert t.quotes() == [(BID, 96, 0.001), (ASK, 101, 0.001)]  # ceil(98.5) = 99 < best ask 101: clamped


def test_model_skew(tick):
    t = tick(inventory=dict(FREE, skew_mode="model"))
    t.inp["position"] = -2.0
    run(t, half=1.0, skew_per_qty=0.25)
    assert t.out["reservation_ticks"] == 101.0
    assert t.quotes() == [(BID, 100, 0.001), (ASK, 102, 0.001)]


@pytest.mark.parametrize("action", [QuoteAction.HALT, QuoteAction.SKIP])
def test_no_quotes_on_halt_or_skip(tick, action):
    t = tick(inventory=FREE)
    assert run(t, action=action) == InventoryReason.NO_QUOTES
    assert t.out["n_quotes"] == 0


def test_max_long_and_max_short(tick):
    t = tick(inventory=dict(FREE, max_position=0.01))
    t.inp["position"] = 0.01
    assert run(t) == InventoryReason.MAX_LONG
    assert [q[0] for q in t.quotes()] == [ASK]
    t.inp["position"] = -0.01
    assert run(t) == InventoryReason.MAX_SHORT
    assert [q[0] for q in t.quotes()] == [BID]
    t.inp["position"] = 0.0099
    assert run(t) == InventoryReason.OK
    s = t.pl.state("inventory")
    assert (s["max_long"], s["max_short"]) == (1, 1)


def test_low_balance_drops_position_increasing_sides(tick):
    t = tick(inventory=dict(min_free_balance_usd=200.0))
    t.inp["free_balance"] = 199.0
    assert run(t) == InventoryReason.LOW_BALANCE
    assert t.quotes() == []
    t.inp["position"] = 0.002  # long: selling reduces
    assert run(t) == InventoryReason.LOW_BALANCE
    assert [q[0] for q in t.quotes()] == [ASK]
    t.inp["free_balance"] = 200.0
    assert run(t) == InventoryReason.OK


def test_balance_sizing_formula(tick):
    # BTC at 60 000, free 1 000 USDT, 10x: min(20 000, 10 000) / 60 000 = 0.16666 -> 0.166
    t = tick(bid=600_000, ask=600_001, inventory=dict(sizing="balance", tick_size=0.1, lot_step=0.001, leverage=10.0,
                                                    notional_cap_usd=20_000.0, min_free_balance_usd=200.0))
    t.inp["free_balance"] = 1_000.0
    run(t, fair=600_000.0, half=1.0)
    assert t.out["bid_qty"] == pytest.approx(0.166) and t.out["ask_qty"] == pytest.approx(0.166)
    # capped: free 5 000 * 10 = 50 000 > 20 000 -> 20 000 / 60 000 = 0.3333 -> 0.333 (the seed example)
    t.inp["free_balance"] = 5_000.0
    run(t, fair=600_000.0, half=1.0)
    assert t.out["bid_qty"] == pytest.approx(0.333)
    # allocator size multiplier 0.5 -> 0.16666 -> 0.166
    t.inp["size_mult"] = 0.5
    run(t, fair=600_000.0, half=1.0)
    assert t.out["bid_qty"] == pytest.approx(0.166)


def test_below_minimum_is_dropped_never_inflated(tick):
    t = tick(inventory=dict(FREE, order_qty=0.001, min_qty=0.002))
    assert run(t) == InventoryReason.BELOW_MIN
    assert t.quotes() == []
    assert int(t.pl.state("inventory")["below_min"]) == 2
    # min notional: 0.001 * 100.5 * 1.0 = 0.1005 < 5
    t2 = tick(inventory=dict(FREE, order_qty=0.001, min_notional_usd=5.0, tick_size=1.0))
    assert run(t2) == InventoryReason.BELOW_MIN
    # a side factor shrinking one side below the lot drops only that side
    t3 = tick(inventory=dict(FREE, order_qty=0.001, lot_step=0.001))
    assert run(t3, size_mult_bid=0.6) == InventoryReason.BELOW_MIN
    assert t3.quotes() == [(ASK, 103, 0.001)]


def test_guard_side(tick):
    t = tick(inventory=FREE)
    assert run(t, allow_bid=False) == InventoryReason.GUARD_SIDE
    assert [q[0] for q in t.quotes()] == [ASK]


def test_lot_floor():
    assert lot_floor_nb(0.3, 0.1) == pytest.approx(0.3)  # 0.3 / 0.1 = 2.9999999999999996 in floats
    assert lot_floor_nb(0.16666, 0.001) == pytest.approx(0.166)
    assert lot_floor_nb(0.0009, 0.001) == 0.0
    assert lot_floor_nb(0.123, 0.0) == 0.123
