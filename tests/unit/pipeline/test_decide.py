"""decide_nb: the six stages composed, end-to-end behaviour, reason packing, determinism."""

import hashlib
import subprocess
import sys

import numpy as np

from mmlab.pipeline import (
    decide_nb,
    decision_reset_nb,
    emit_nb,
    fetch_md_nb,
    guards_nb,
    inventory_nb,
    on_trade_nb,
    pack_reasons_nb,
    queue_aware_nb,
    spread_nb,
)
from mmlab.pipeline_config import counters, make_pipeline, unpack_reasons
from mmlab.types import (
    ActionKind,
    EmitReason,
    FetchReason,
    GuardReason,
    InventoryReason,
    QueueReason,
    QuoteAction,
    SpreadReason,
)

S = 1_000_000_000
MS = 1_000_000
BID, ASK = 1, -1
PLACE, CANCEL = int(ActionKind.PLACE), int(ActionKind.CANCEL)

FULL = dict(
    fetch_md=dict(depth_levels=5),
    spread=dict(model="as", risk_factor=0.1, vol_min_samples=3, vol_sample_ms=0.0, intensity_min_trades=5),
    guards=dict(warmup_s=1.0, near_liq_enabled=True, liq_gate_qty=0.5, vol_halt_bps=500.0),
    inventory=dict(order_qty=0.5, grid_num=2, max_position=2.0, skew_mode="model", min_free_balance_usd=0.0),
    queue_aware=dict(keep_ticks=1, tau_entry=0.001),
    emit=dict(max_actions_per_s=50.0, price_tol_ticks=0),
)


def run_stages(t, now_ns):
    """The stages called one by one, as a caller timing each would."""
    r, b = t.r, t.b
    decision_reset_nb(t.out, now_ns)
    fetch_md_nb(now_ns, t.inp, t.md, r["fetch_params"], r["fetch_state"], t.out)
    spread_nb(now_ns, t.inp, *t.depth(), r["spread_params"], r["spread_state"], t.out)
    guards_nb(now_ns, t.inp, *t.depth(), r["guard_params"], r["guard_state"], t.out)
    inventory_nb(now_ns, t.inp, r["inventory_params"], r["inventory_state"], t.out, b.quotes)
    queue_aware_nb(now_ns, t.inp, *t.depth(), b.orders, t.n_orders, r["queue_params"], r["queue_state"], t.out, b.quotes)
    emit_nb(now_ns, t.inp, b.orders, t.n_orders, r["emit_params"], r["emit_state"], t.out, b.quotes, b.actions)
    return int(t.out["n_actions"])


def scenario(t, use_stages, n_ticks=60):
    """A market moving a tick now and then, trades between decisions, placed orders becoming working orders."""
    rng = np.random.default_rng(11)
    rows = []
    bid = 1000
    for k in range(n_ticks):
        now = (k + 1) * 100 * MS
        if rng.random() < 0.3:
            bid += int(rng.choice([-1, 1]))
        t.set_book(bid, bid + 1, depth=5, level_qty=float(rng.integers(1, 4)))
        t.book_update(now - 5 * MS, update_id=k + 1)
        for _ in range(3):
            side = int(rng.choice([-1, 1]))
            on_trade_nb(t.r, now - 2 * MS, side, bid + (1 if side > 0 else 0) + side * int(rng.integers(0, 3)),
                        float(rng.integers(1, 3)), bid, bid + 1)
        t.inp["position"] = float(rng.choice([0.0, 0.5, -0.5, 1.0]))
        n = run_stages(t, now) if use_stages else t.decide(now)
        rows.append((t.out.tobytes(), t.b.quotes[: t.out["n_quotes"]].tobytes(), t.b.actions[:n].tobytes()))
        # Placed orders rest, canceled ones leave.
        acts = t.b.actions[:n].copy()
        keep = [j for j in range(t.n_orders)
                if not any(a["kind"] == CANCEL and a["order_id"] == t.b.orders[j]["order_id"] for a in acts)]
        kept = t.b.orders[keep].copy()
        t.n_orders = 0
        for w in kept:
            t.add_order(int(w["order_id"]), int(w["side"]), int(w["price_ticks"]), float(w["qty"]), queue_ahead_qty=0.5,
                        sent_ts_ns=int(w["sent_ts_ns"]))
        for a in acts:
            if a["kind"] == PLACE and t.n_orders < len(t.b.orders):
                t.add_order(int(a["order_id"]), int(a["side"]), int(a["price_ticks"]), float(a["qty"]), queue_ahead_qty=1.0,
                            sent_ts_ns=now)
    return rows


def test_decide_equals_the_stages_called_one_by_one(tick):
    a = scenario(tick(**FULL), use_stages=False)
    b = scenario(tick(**FULL), use_stages=True)
    assert a == b


def test_rerun_is_identical_and_the_state_carries(tick):
    t1, t2 = tick(**FULL), tick(**FULL)
    assert scenario(t1, False) == scenario(t2, False)
    assert t1.r.tobytes() == t2.r.tobytes()
    c = counters(t1.pl)
    assert c["fetch_md.calls"] == 60 and c["spread.n_trades"] == 180
    assert c["guards.trips.warmup"] == 10  # 100 ms .. 1 s: ticks before warm-up ends
    assert c["emit.placed"] > 0 and c["emit.canceled"] > 0


def _digest_in_subprocess():
    code = (
        "import sys, hashlib; sys.path.insert(0, %r); "
        "from conftest import Tick; from test_decide import FULL, scenario; "
        "from mmlab.pipeline_config import make_pipeline; "
        "rows = scenario(Tick(make_pipeline(**FULL)), False); "
        "print(hashlib.sha256(b''.join(b''.join(r) for r in rows)).hexdigest())"
    ) % (str(__import__("pathlib").Path(__file__).parent),)
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_two_processes_give_bit_identical_decisions(tick):
    rows = scenario(tick(**FULL), False)
    here = hashlib.sha256(b"".join(b"".join(r) for r in rows)).hexdigest()
    assert _digest_in_subprocess() == here


def test_warmup_then_quotes_then_stale_book_halts_and_cancels(tick):
    t = tick(guards=dict(warmup_s=1.0, near_liq_enabled=False), inventory=dict(min_free_balance_usd=0.0, order_qty=0.5),
             spread=dict(half_spread_ticks=1.0))
    t.book_update(0)
    t.book_update(S - 10 * MS)
    n = t.decide(S - 5 * MS)
    assert n == 0 and t.out["guard_reason"] == GuardReason.WARMUP and t.out["quote_action"] == QuoteAction.HALT
    t.book_update(2 * S - 10 * MS)
    t.decide(2 * S)
    assert t.out["quote_action"] == QuoteAction.QUOTE
    assert t.actions() == [(PLACE, 1, BID, 99, 0.5), (PLACE, 2, ASK, 102, 0.5)]
    t.add_order(1, BID, 99, 0.5)
    t.add_order(2, ASK, 102, 0.5)
    t.decide(2 * S + 60 * MS)  # 70 ms old view: priced, widened (fresh_ms_for_pricing 60 < age <= ttl 100)
    assert t.out["md_reason"] == FetchReason.STALE_PRICING_WIDEN and t.out["quote_action"] == QuoteAction.WIDEN
    assert t.out["half_spread_ticks"] == 1.5
    t.decide(2 * S + 200 * MS)  # 210 ms: not fresh for the guards
    assert t.out["guard_reason"] == GuardReason.STALE_BOOK and t.out["quote_action"] == QuoteAction.HALT
    assert t.actions() == [(CANCEL, 1, BID, 99, 0.5), (CANCEL, 2, ASK, 102, 0.5)]
    assert t.out["emit_reason"] == EmitReason.HALT_CANCEL and t.out["n_quotes"] == 0


def test_pack_and_unpack_reasons(tick):
    t = tick(spread=dict(half_spread_ticks=1.0, max_half_spread_ticks=0.5), guards=dict(warmup_s=0.0),
             inventory=dict(min_free_balance_usd=0.0, max_position=1.0), queue_aware=dict(tau_entry=0.999))
    t.book_update(0)
    t.inp["position"] = 1.0
    t.decide(10 * MS)
    code = pack_reasons_nb(t.out)
    assert unpack_reasons(code) == {
        "fetch_md": FetchReason.OK,
        "spread": SpreadReason.MAX_SPREAD,
        "guards": GuardReason.NONE,
        "inventory": InventoryReason.MAX_LONG,
        "queue_aware": QueueReason.DROPPED_ENTRY,
        "emit": EmitReason.OK,
        "quote_action": QuoteAction.QUOTE,
    }


def test_decide_nb_called_from_another_compiled_function():
    from numba import njit

    @njit
    def loop(arr, orders, quotes, actions, n_ticks):
        total = 0
        for k in range(n_ticks):
            pipe = arr[0]
            pipe.md.last_ts_local_ns = k * 100_000_000
            pipe.md.n_updates += 1
            total += decide_nb(k * 100_000_000 + 1_000_000, pipe, orders, 0, quotes, actions)
        return total

    pl = make_pipeline(guards=dict(warmup_s=0.0), inventory=dict(min_free_balance_usd=0.0))
    r = pl.rec()
    r["inp"]["best_bid_tick"], r["inp"]["best_ask_tick"] = 100, 101
    r["inp"]["n_bid_levels"] = r["inp"]["n_ask_levels"] = 5
    r["bid_qty"][:5] = r["ask_qty"][:5] = 1.0
    b = pl.buffers(8)
    assert loop(pl.arr, b.orders, b.quotes, b.actions, 3) == 6  # two places per tick, no working orders fed back
