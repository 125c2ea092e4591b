"""guards: one test per GuardReason, severities, precedence, the tick's QuoteAction."""

import numpy as np
import pytest

from mmlab.pipeline import guards_nb
from mmlab.types import GuardLevel, GuardReason, QuoteAction

S = 1_000_000_000
MS = 1_000_000
NO_GUARDS = dict(warmup_s=0.0, near_liq_enabled=False, liq_gate_qty=0.0)


def run(t, now_ns, guard_fresh=True, pricing_stale=0, vol_bps=np.nan):
    pl = t.pl
    t.out["guard_fresh"] = guard_fresh
    t.out["pricing_stale"] = pricing_stale
    t.out["vol_bps_1s"] = vol_bps
    return GuardReason(guards_nb(np.int64(now_ns), t.inp, *t.depth(), pl.params("guards"), pl.state("guards"), t.out))


def trips(t, reason):
    return int(t.pl.state("guards")["trips"][reason])


def test_none_quotes(tick):
    t = tick(guards=NO_GUARDS)
    assert run(t, S) == GuardReason.NONE
    o = t.out
    assert o["guard_level"] == GuardLevel.NONE and o["quote_action"] == QuoteAction.QUOTE
    assert o["allow_bid"] and o["allow_ask"] and o["widen_mult"] == 1.0 and o["guard_mask"] == 0


def test_kill_switch_on_drawdown_usd_is_latched(tick):
    t = tick(guards=dict(NO_GUARDS, kill_drawdown_usd=100.0))
    t.inp["equity"] = 1_000.0
    assert run(t, S) == GuardReason.NONE
    t.inp["equity"] = 900.5
    assert run(t, 2 * S) == GuardReason.NONE
    t.inp["equity"] = 900.0  # 100 below the 1000 peak
    assert run(t, 3 * S) == GuardReason.KILL_SWITCH
    assert t.out["quote_action"] == QuoteAction.HALT and not t.out["allow_bid"]
    t.inp["equity"] = 2_000.0
    assert run(t, 4 * S) == GuardReason.KILL_SWITCH  # latched
    t.pl.state("guards")["killed"] = False
    assert run(t, 5 * S) == GuardReason.NONE


def test_kill_switch_on_drawdown_pct(tick):
    t = tick(guards=dict(NO_GUARDS, kill_drawdown_pct=0.05))
    t.inp["equity"] = 1_000.0
    run(t, S)
    t.inp["equity"] = 951.0
    assert run(t, 2 * S) == GuardReason.NONE
    t.inp["equity"] = 950.0
    assert run(t, 3 * S) == GuardReason.KILL_SWITCH


def test_stale_book_reads_fresh_only(tick):
    t = tick(guards=NO_GUARDS)
    assert run(t, S, guard_fresh=False) == GuardReason.STALE_BOOK
    assert t.out["guard_level"] == GuardLevel.HARD and t.out["quote_action"] == QuoteAction.HALT
    t2 = tick(guards=dict(NO_GUARDS, fresh_only=False))
    assert run(t2, S, guard_fresh=False) == GuardReason.NONE


def test_vol_halt_and_vol_widen(tick):
    t = tick(guards=dict(NO_GUARDS, vol_halt_bps=40.0, vol_widen_bps=20.0, widen_mult=2.0))
    assert run(t, S, vol_bps=19.9) == GuardReason.NONE
    assert run(t, S, vol_bps=20.0) == GuardReason.VOL_WIDEN
    assert t.out["guard_level"] == GuardLevel.SOFT and t.out["widen_mult"] == 2.0
    assert t.out["quote_action"] == QuoteAction.WIDEN and t.out["allow_bid"] and t.out["allow_ask"]
    assert run(t, S, vol_bps=40.0) == GuardReason.VOL_HALT
    assert t.out["quote_action"] == QuoteAction.HALT
    assert run(t, S, vol_bps=np.nan) == GuardReason.NONE  # estimate not ready: no verdict


def test_latency_halt(tick):
    t = tick(guards=dict(NO_GUARDS, latency_halt_ms=500.0))
    t.inp["order_rtt_ns"] = 500 * MS
    assert run(t, S) == GuardReason.NONE
    t.inp["order_rtt_ns"] = 501 * MS
    assert run(t, S) == GuardReason.LATENCY
    assert t.out["quote_action"] == QuoteAction.HALT
    t.inp["order_rtt_ns"] = -1  # unknown
    assert run(t, S) == GuardReason.NONE


def test_warmup_default_90s_counts_skips(tick):
    t = tick(guards=dict(near_liq_enabled=False))
    assert run(t, 10 * S) == GuardReason.WARMUP
    assert run(t, 99 * S) == GuardReason.WARMUP
    assert t.out["quote_action"] == QuoteAction.HALT
    assert run(t, 100 * S) == GuardReason.NONE  # 90 s after the first decision
    assert int(t.pl.state("guards")["warmup_skip"]) == 2
    assert trips(t, GuardReason.WARMUP) == 2


def test_deadline_miss_soft_by_default_or_hard(tick):
    t = tick(guards=dict(NO_GUARDS, deadline_ms=50.0))
    t.inp["tick_lag_ns"] = 51 * MS
    assert run(t, S) == GuardReason.DEADLINE_MISS
    assert t.out["guard_level"] == GuardLevel.SOFT and t.out["quote_action"] == QuoteAction.WIDEN
    assert int(t.pl.state("guards")["deadline_miss"]) == 1
    t2 = tick(guards=dict(NO_GUARDS, deadline_ms=50.0, deadline_level="hard"))
    t2.inp["tick_lag_ns"] = 51 * MS
    assert run(t2, S) == GuardReason.DEADLINE_MISS
    assert t2.out["quote_action"] == QuoteAction.HALT


def test_near_liquidation_blocks_entries_long_and_short(tick):
    t = tick(guards=dict(warmup_s=0.0, liq_gate_qty=0.0, sl_buffer_multiplier=1.5, assumed_sl_pct=0.003))
    t.inp["position"] = 1.0
    t.inp["entry_price"] = 100.0
    t.inp["liq_price"] = 99.55  # (100 - 99.55) / 100 = 0.0045 = 1.5 * 0.003: not below
    assert run(t, S) == GuardReason.NONE
    t.inp["liq_price"] = 99.6  # 0.004 < 0.0045
    assert run(t, S) == GuardReason.NEAR_LIQ
    assert t.out["guard_level"] == GuardLevel.SIDE and t.out["quote_action"] == QuoteAction.QUOTE
    assert not t.out["allow_bid"] and t.out["allow_ask"]
    t.inp["position"] = -1.0
    t.inp["liq_price"] = 100.4
    assert run(t, S) == GuardReason.NEAR_LIQ
    assert t.out["allow_bid"] and not t.out["allow_ask"]


def test_near_liquidation_derives_liq_from_leverage(tick):
    # 100x with 0.5 % maintenance: liq = 100 * (1 - 0.01 + 0.005) = 99.5, distance 0.005 >= 0.0045
    t = tick(guards=dict(warmup_s=0.0, liq_gate_qty=0.0, leverage=100.0, maint_margin_rate=0.005))
    t.inp["position"] = 1.0
    t.inp["entry_price"] = 100.0
    assert run(t, S) == GuardReason.NONE
    # 125x: liq = 100 * (1 - 0.008 + 0.005) = 99.7, distance 0.003 < 0.0045
    t2 = tick(guards=dict(warmup_s=0.0, liq_gate_qty=0.0, leverage=125.0, maint_margin_rate=0.005))
    t2.inp["position"] = 1.0
    t2.inp["entry_price"] = 100.0
    assert run(t2, S) == GuardReason.NEAR_LIQ


def test_liquidity_by_side_gate(tick):
    t = tick(guards=dict(NO_GUARDS, liq_gate_alpha=1.5, liq_gate_levels=3, liq_gate_qty=2.0))
    # 3 levels of 1.0 = 3.0 >= 1.5 * 2.0
    assert run(t, S) == GuardReason.NONE
    t.bid_qty[2] = 0.4  # bids: 2.4 < 3.0
    assert run(t, S) == GuardReason.LIQUIDITY
    assert not t.out["allow_bid"] and t.out["allow_ask"] and t.out["guard_level"] == GuardLevel.SIDE
    t.inp["n_ask_levels"] = 2  # held depth 2 on asks: 2.0 < 3.0
    assert run(t, S) == GuardReason.LIQUIDITY
    assert not t.out["allow_ask"]


def test_precedence_and_mask(tick):
    t = tick(guards=dict(warmup_s=90.0, near_liq_enabled=False, kill_drawdown_usd=1.0))
    t.inp["equity"] = 10.0
    run(t, S)
    t.inp["equity"] = 0.0
    assert run(t, 2 * S, guard_fresh=False) == GuardReason.KILL_SWITCH
    mask = int(t.out["guard_mask"])
    for r in (GuardReason.KILL_SWITCH, GuardReason.STALE_BOOK, GuardReason.WARMUP):
        assert mask & (1 << r)
    assert trips(t, GuardReason.STALE_BOOK) == 1


@pytest.mark.parametrize("pricing_stale, action", [(0, QuoteAction.QUOTE), (1, QuoteAction.WIDEN), (2, QuoteAction.SKIP)])
def test_quote_action_follows_the_pricing_view(tick, pricing_stale, action):
    t = tick(guards=dict(NO_GUARDS, fresh_only=False))
    run(t, S, pricing_stale=pricing_stale)
    assert t.out["quote_action"] == action
