"""Scoreboard and allocator kernels: hand-computed metrics, softmax weights, one test per AllocReason."""

import math

import numpy as np
import pytest

from mmlab.allocator_config import allocation_rows, make_allocator
from mmlab.config import AllocatorConfig, load_config
from mmlab.errors import ConfigError
from mmlab.pipeline.allocator import (
    allocator_due_nb,
    composite_score_nb,
    ema_nb,
    scoreboard_on_decision_nb,
    scoreboard_on_fill_nb,
    scoreboard_on_mark_nb,
)
from mmlab.types import SCOREBOARD_PENDING_MAX, AllocReason, Side, fill_dtype

S = 1_000_000_000
MS = 1_000_000
BUY, SELL = int(Side.BID), int(Side.ASK)


def fill(side=BUY, price_ticks=1000, qty=1.0, fee=0.0, maker=True, time_in_queue_ns=0, mid_send_ticks=1000.0):
    f = np.zeros(1, dtype=fill_dtype)
    f["side"] = side
    f["price_ticks"] = price_ticks
    f["qty"] = qty
    f["fee"] = fee
    f["maker"] = maker
    f["time_in_queue_ns"] = time_in_queue_ns
    f["mid_send_ticks"] = mid_send_ticks
    return f[0]


def alloc(symbols=("A", "B"), **kw):
    kw.setdefault("enabled", True)
    kw.setdefault("markout_ms", 1000.0)
    return make_allocator(AllocatorConfig(**kw), list(symbols))


def on_fill(al, i, now_ns, f):
    return scoreboard_on_fill_nb(al.params[0], al.board, i, np.int64(now_ns), f)


def on_mark(al, i, now_ns, mid):
    return scoreboard_on_mark_nb(al.params[0], al.board, i, np.int64(now_ns), float(mid))


def feed(al, i, n, net_move_ticks, t0=0, side=BUY, price=1000):
    """``n`` fills of symbol ``i`` at ``price``, each marked 1 s later at ``price + side * net_move_ticks``."""
    t = t0
    for _ in range(n):
        on_mark(al, i, t, price)
        on_fill(al, i, t, fill(side=side, price_ticks=price, mid_send_ticks=price))
        t += S
        on_mark(al, i, t, price + side * net_move_ticks)
    return t


def test_ema_first_observation_sets_then_blends():
    assert ema_nb(0.0, 5.0, 0.1, 0) == 5.0
    assert ema_nb(5.0, 15.0, 0.1, 3) == pytest.approx(6.0)


def test_fill_slippage_queue_edge_and_pending_by_hand():
    al = alloc(queue_edge_ms=1000.0)
    al.board[0]["tick_size"] = 0.1
    on_mark(al, 0, 0, 1000.5)
    # Buy at 1000 with the mid at send 1001: slippage -1/1001 * 1e4 bps (better than mid); 500 ms in queue.
    n = on_fill(al, 0, 10 * MS, fill(BUY, 1000, qty=2.0, fee=-0.01, time_in_queue_ns=500 * MS, mid_send_ticks=1001.0))
    bd = al.board[0]
    assert n == 1 and bd["n_fills"] == 1 and bd["period_fills"] == 1
    assert bd["slippage_bps"] == pytest.approx(-1 / 1001 * 1e4)
    assert bd["queue_edge_score"] == pytest.approx(math.exp(-0.5))
    p = bd["pending"][0]
    assert p["due_ns"] == 10 * MS + S and p["mid_ticks"] == 1000.5
    # Fee -0.01 on a notional of 2 * 1000 * 0.1 = 200: -0.5 bps.
    assert p["fee_bps"] == pytest.approx(-0.5)
    # A taker fill has no queue edge: EMA 0.1 toward 0.
    on_fill(al, 0, 20 * MS, fill(SELL, 1000, maker=False, mid_send_ticks=np.nan))
    assert al.board[0]["queue_edge_score"] == pytest.approx(math.exp(-0.5) * 0.9)
    assert al.board[0]["n_slip"] == 1  # no mid at send: no slippage sample


def test_mark_net_bps_and_adverse_penalty_by_hand():
    al = alloc()
    al.board[0]["tick_size"] = 0.1
    on_mark(al, 0, 0, 1000.0)
    on_fill(al, 0, 0, fill(BUY, 999, qty=1.0, fee=-0.00999))  # fee -1e-4 of notional: -1 bps
    assert on_mark(al, 0, S - 1, 990.0) == 0  # not due yet
    assert on_mark(al, 0, S, 998.0) == 1
    bd = al.board[0]
    # Bought at 999, mid 998 a second later: markout -1/999 * 1e4; net adds the 1 bps rebate.
    assert bd["net_bps"] == pytest.approx(-1 / 999 * 1e4 + 1.0)
    # Mid at the report 1000 -> 998 against a buy: adverse 2/1000 * 1e4 = 20 bps.
    assert bd["adverse_penalty"] == pytest.approx(20.0)
    assert bd["n_marked"] == 1 and bd["pend_count"] == 0
    # A sell followed by a falling mid is not adverse.
    on_fill(al, 0, 2 * S, fill(SELL, 999))
    on_mark(al, 0, 3 * S, 990.0)
    assert al.board[0]["adverse_penalty"] == pytest.approx(20.0 * 0.9)
    # No mid (empty book side): nothing marked, last mid kept.
    assert on_mark(al, 0, 4 * S, np.nan) == 0 and al.board[0]["mid_ticks"] == 990.0


def test_full_pending_ring_marks_the_oldest_early():
    al = alloc()
    on_mark(al, 0, 0, 1000.0)
    for k in range(SCOREBOARD_PENDING_MAX + 3):
        on_fill(al, 0, k, fill(BUY, 1000))
    bd = al.board[0]
    assert bd["n_forced_marks"] == 3 and bd["n_marked"] == 3 and bd["pend_count"] == SCOREBOARD_PENDING_MAX


def test_composite_score_by_hand():
    al = alloc(net_bps_scale=5.0, slippage_bps_scale=5.0, adverse_bps_scale=5.0)
    bd = al.board[0]
    bd["net_bps"] = 2.5  # 0.5 after scaling
    bd["fill_rate"] = 0.3
    bd["slippage_bps"] = -10.0  # clipped to -1: +1 in the score
    bd["queue_edge_score"] = 0.8
    bd["adverse_penalty"] = 1.0  # 0.2
    want = 0.4 * 0.5 + 0.2 * 0.3 + 0.2 * 1.0 + 0.1 * 0.8 - 0.1 * 0.2
    assert composite_score_nb(al.params[0], al.board[0]) == pytest.approx(want)


def test_fill_rate_per_rebalance_period():
    al = alloc(ema_alpha=0.5)
    scoreboard_on_decision_nb(al.board, 0, 4)
    on_fill(al, 0, 0, fill())
    al.rebalance(S)
    assert al.board[0]["fill_rate"] == pytest.approx(0.25)
    scoreboard_on_decision_nb(al.board, 0, 2)
    for _ in range(3):
        on_fill(al, 0, 0, fill())
    al.rebalance(2 * S)
    assert al.board[0]["fill_rate"] == pytest.approx(0.25 + 0.5 * (1.0 - 0.25))  # 3/2 capped at 1
    assert al.board[1]["n_fill_rate"] == 0  # no orders placed: no sample


def test_rebalance_clock():
    al = alloc(rebalance_period_s=30.0)
    p, st = al.params[0], al.state[0]
    assert not allocator_due_nb(p, st, np.int64(5 * S))
    assert not allocator_due_nb(p, st, np.int64(34 * S))
    assert allocator_due_nb(p, st, np.int64(35 * S))
    al.rebalance(35 * S)
    assert al.state[0]["next_rebalance_ns"] == 65 * S and al.state[0]["n_rebalances"] == 1


def test_softmax_weights_by_hand_reason_ok():
    al = alloc(min_samples=1, hysteresis_threshold=0.0, softmax_temperature=0.5, min_weight=0.0, max_weight=3.0)
    feed(al, 0, 1, +1.0)
    feed(al, 1, 1, -1.0)
    assert al.rebalance(S) == 2
    s = al.board["score"]
    e = np.exp(s / 0.5)
    want = 2 * e / e.sum()
    np.testing.assert_allclose(al.weights(), want)
    assert want[0] > 1.0 > want[1]
    assert list(al.alloc["reason"]) == [AllocReason.OK, AllocReason.OK]
    np.testing.assert_allclose(al.alloc["size_mult"], want)


def test_reason_max_and_min_weight():
    al = alloc(("A", "B", "C"), min_samples=1, softmax_temperature=0.05, min_weight=0.2, max_weight=1.5,
               hysteresis_threshold=0.0)
    feed(al, 0, 1, +2.0)
    feed(al, 1, 1, -2.0)
    feed(al, 2, 1, 0.0)
    al.rebalance(S)
    assert al.alloc["reason"][0] == AllocReason.MAX_WEIGHT and al.weights()[0] == 1.5
    assert al.alloc["reason"][1] == AllocReason.MIN_WEIGHT and al.weights()[1] == 0.2


def test_reason_warming_keeps_neutral_weight():
    al = alloc(min_samples=3, hysteresis_threshold=0.0)
    feed(al, 0, 3, +1.0)
    feed(al, 1, 2, -1.0)
    al.rebalance(10 * S)
    assert al.alloc["reason"][1] == AllocReason.WARMING and al.weights()[1] == 1.0
    # The only scored symbol gets the whole budget of one weight.
    assert al.alloc["reason"][0] == AllocReason.OK and al.weights()[0] == pytest.approx(1.0)


def test_reason_hysteresis_keeps_the_current_weight():
    al = alloc(min_samples=1, hysteresis_threshold=0.5, softmax_temperature=1.0)
    feed(al, 0, 1, +0.1)
    feed(al, 1, 1, -0.1)
    al.rebalance(S)
    assert list(al.alloc["reason"]) == [AllocReason.HYSTERESIS, AllocReason.HYSTERESIS]
    assert list(al.weights()) == [1.0, 1.0] and al.state[0]["n_hysteresis"] == 2
    # A bigger change passes.
    al2 = alloc(min_samples=1, hysteresis_threshold=0.05, softmax_temperature=1.0)
    feed(al2, 0, 1, +1.0)
    feed(al2, 1, 1, -1.0)
    al2.rebalance(S)
    assert list(al2.alloc["reason"]) == [AllocReason.OK, AllocReason.OK]


def test_reason_blacklisted_and_not_whitelisted():
    al = alloc(("A", "B", "C"), blacklist=("B",), whitelist=("A",))
    # Listed symbols are out from the start, before any rebalance.
    assert list(al.alloc["size_mult"]) == [1.0, 0.0, 0.0]
    al.rebalance(S)
    assert list(al.alloc["reason"]) == [AllocReason.WARMING, AllocReason.BLACKLISTED, AllocReason.NOT_WHITELISTED]
    assert list(al.weights()) == [1.0, 0.0, 0.0]
    assert al.state[0]["n_active"] == 1 and al.state[0]["n_blacklisted"] == 2


def test_reason_auto_blacklisted_after_window_then_cooldown_readmits():
    al = alloc(min_samples=2, auto_blacklist_net_bps=-5.0, auto_blacklist_window_min=1.0,
               auto_blacklist_cooldown_min=2.0, hysteresis_threshold=0.0)
    # Symbol 1 loses 10 ticks on 1000 per fill (-100 bps): below the bound from its 2nd marked fill at t = 4 s.
    t = feed(al, 1, 2, -10.0, t0=2 * S)
    feed(al, 0, 2, +1.0)
    assert al.board[1]["below_since_ns"] == t
    al.rebalance(t + 59 * S)
    assert al.alloc["reason"][1] != AllocReason.AUTO_BLACKLISTED
    al.rebalance(t + 60 * S)
    assert al.alloc["reason"][1] == AllocReason.AUTO_BLACKLISTED and al.weights()[1] == 0.0
    assert al.alloc["auto_until_ns"][1] == t + 180 * S and al.state[0]["n_auto_blacklisted"] == 1
    al.rebalance(t + 179 * S)
    assert al.alloc["reason"][1] == AllocReason.AUTO_BLACKLISTED
    al.rebalance(t + 180 * S)
    # Cooldown over: re-admitted with a fresh scoreboard (warming, neutral weight).
    assert al.alloc["reason"][1] == AllocReason.WARMING and al.weights()[1] == 1.0
    assert al.board[1]["n_marked"] == 0 and al.alloc["auto_until_ns"][1] == -1


def test_auto_blacklist_without_cooldown_lasts_the_run():
    al = alloc(min_samples=1, auto_blacklist_window_min=0.5)
    t = feed(al, 0, 1, -10.0)
    al.rebalance(t + 30 * S)
    al.rebalance(t + 10**6 * S)
    assert al.alloc["reason"][0] == AllocReason.AUTO_BLACKLISTED
    # A net_bps EMA back above the bound clears the clock of a symbol that is not yet out.
    al2 = alloc(min_samples=1, auto_blacklist_window_min=0.5, ema_alpha=1.0)
    feed(al2, 0, 1, -10.0)
    assert al2.board[0]["below_since_ns"] >= 0
    feed(al2, 0, 1, +10.0, t0=5 * S)
    assert al2.board[0]["below_since_ns"] == -1


def test_disabled_allocator_learns_but_keeps_size_neutral():
    al = alloc(enabled=False, min_samples=1, hysteresis_threshold=0.0)
    feed(al, 0, 1, +1.0)
    feed(al, 1, 1, -1.0)
    al.rebalance(S)
    assert al.weights()[0] > 1.0 > al.weights()[1]
    assert list(al.alloc["size_mult"]) == [1.0, 1.0]


def test_history_rows_in_time_order():
    al = alloc(min_samples=1, hysteresis_threshold=0.0)
    feed(al, 0, 1, +1.0)
    al.rebalance(S)
    al.rebalance(2 * S)
    rows = allocation_rows(al.alloc, al.symbols)
    assert rows["ts_local"] == [S, S, 2 * S, 2 * S]
    assert rows["symbol"] == ["A", "B", "A", "B"]
    assert rows["reason"][:2] == ["OK", "WARMING"]
    assert rows["n_marked"][:2] == [1, 0]


def test_config_names_the_bad_key_and_value():
    with pytest.raises(ConfigError, match=r"\[allocator\] blacklist names 'ETHUSD'.*did you mean 'ETHUSDT'"):
        make_allocator(AllocatorConfig(blacklist=("ETHUSD",)), ["BTCUSDT", "ETHUSDT"])
    with pytest.raises(ConfigError, match=r"weight_\* must sum to 1"):
        load_config({"allocator": {"weight_net_bps": 0.9}})
    with pytest.raises(ConfigError, match=r"max_weight must be >= max\(min_weight, 1.0\)"):
        load_config({"allocator": {"max_weight": 0.5}})
    with pytest.raises(ConfigError, match="did you mean 'hysteresis_threshold'"):
        load_config({"allocator": {"hysteresis_treshold": 0.1}})
    cfg = load_config({"allocator": {"enabled": True, "rebalance_period_s": 5, "whitelist": ["BTCUSDT"]}})
    assert cfg.allocator.rebalance_period_s == 5.0 and cfg.allocator.whitelist == ("BTCUSDT",)


def _inventory(t, size_mult):
    from mmlab.pipeline import inventory_nb
    from mmlab.types import InventoryReason, QuoteAction

    o = t.out
    o["fair_ticks"] = 100.5
    o["half_spread_ticks"] = 2.0
    o["quote_action"] = QuoteAction.QUOTE
    o["allow_bid"] = True
    o["allow_ask"] = True
    o["widen_mult"] = 1.0
    o["size_mult_bid"] = 1.0
    o["size_mult_ask"] = 1.0
    t.inp["size_mult"] = size_mult
    pl = t.pl
    return InventoryReason(inventory_nb(np.int64(0), t.inp, pl.params("inventory"), pl.state("inventory"), t.out,
                                        t.b.quotes))


def test_inventory_takes_the_weight_as_size_multiplier(tick):
    from mmlab.types import InventoryReason

    t = tick(inventory={"min_free_balance_usd": 0.0, "order_qty": 0.5})
    assert _inventory(t, 1.6) == InventoryReason.OK
    assert t.quotes() == [(BUY, 98, 0.8), (SELL, 103, 0.8)]
    # Weight 0 (symbol taken out): no quotes, reason SIZE_ZERO, not counted as a venue-minimum drop.
    assert _inventory(t, 0.0) == InventoryReason.SIZE_ZERO
    assert t.quotes() == [] and t.pl.state("inventory")["below_min"] == 0


def test_adverse_penalty_prefers_the_mid_at_the_fill():
    al = alloc()
    on_mark(al, 0, 0, 1000.0)
    f = fill(SELL, 1001)
    f["mid_fill_ticks"] = 1000.5  # the report carries the mid at the fill
    on_fill(al, 0, 0, f)
    on_mark(al, 0, S, 1002.5)
    assert al.board[0]["adverse_penalty"] == pytest.approx(2.0 / 1000.5 * 1e4)
