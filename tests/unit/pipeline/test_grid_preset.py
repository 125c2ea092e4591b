"""The ``grid`` preset through the stages reproduces the simulator's reference grid decisions exactly."""

import numpy as np
import pytest

from mmlab.config import load_config
from mmlab.data.book_nb import book_apply_nb, new_books
from mmlab.pipeline_config import grid_pipeline, unpack_reasons
from mmlab.sim.grid_nb import grid_decide_nb
from mmlab.sim.pipeline_strategy import grid_pipeline_spec, pipeline_sim_decide_nb
from mmlab.types import (
    Kind,
    OrderStatus,
    QuoteAction,
    RequestKind,
    grid_params_dtype,
    order_view_dtype,
    quote_dtype,
    sim_action_dtype,
)

GRID = dict(grid_num=4, grid_interval_ticks=2, half_spread_ticks=1.5, skew_ticks=0.7, order_qty=0.5, max_position=2.0)


def _book(rng, bid, ask, empty_side):
    book, bq, aq = new_books(1, n_levels=512)
    for i in range(6):
        if empty_side != 1:
            book_apply_nb(book, bq, aq, 0, int(Kind.SNAPSHOT), 1, bid - i * int(rng.integers(1, 3)), float(rng.integers(1, 4)))
        if empty_side != -1:
            book_apply_nb(book, bq, aq, 0, int(Kind.SNAPSHOT), -1, ask + i * int(rng.integers(1, 3)), float(rng.integers(1, 4)))
    return book, bq, aq


def _orders(rng, bid, ask):
    n = int(rng.integers(0, 10))
    v = np.zeros(16, dtype=order_view_dtype)
    prices = rng.choice(np.arange(bid - 12, ask + 12), size=n, replace=False)
    for j, p in enumerate(prices):
        o = v[j]
        o["order_id"] = p
        o["price_ticks"] = p
        o["side"] = 1 if p <= (bid + ask) // 2 else -1
        if rng.random() < 0.1:
            o["side"] = -o["side"]  # a stale order on the far side
        o["qty"] = 0.5
        o["queue_ahead_qty"] = np.nan
        o["status"] = rng.choice([OrderStatus.NONE, OrderStatus.NEW, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED])
        o["req"] = rng.choice([RequestKind.NONE, RequestKind.NONE, RequestKind.NONE, RequestKind.CANCEL, RequestKind.NEW])
        o["cancel_pending"] = o["req"] == RequestKind.CANCEL
    return v, n


def test_decisions_match_grid_decide_nb_on_random_states():
    rng = np.random.default_rng(7)
    gp = np.zeros(1, dtype=grid_params_dtype)
    for k, v in GRID.items():
        gp[k] = v
    pl = grid_pipeline(**GRID)
    state = np.zeros((1, 1))
    for trial in range(400):
        bid = int(rng.integers(900, 1100))
        ask = bid + int(rng.integers(1, 5))
        empty = int(rng.choice([0, 0, 0, 0, 0, 0, 0, 0, 1, -1]))
        book, bq, aq = _book(rng, bid, ask, empty)
        orders, n = _orders(rng, bid, ask)
        position = float(rng.choice([0.0, 0.5, -1.0, 1.7, 2.0, -2.0, 3.0, 1e-9]))
        now = 1_000_000_000 * (trial + 1)
        res = []
        for fn, params in ((grid_decide_nb, gp), (pipeline_sim_decide_nb, pl.arr)):
            q = np.zeros(64, dtype=quote_dtype)
            a = np.zeros(80, dtype=sim_action_dtype)
            cnt = np.zeros(2, dtype=np.int64)
            reason = fn(0, now, book, bq, aq, 0, position, orders, n, params, state, q, a, cnt)
            res.append((q[: cnt[0]], a[: cnt[1]], reason))
        (q_ref, a_ref, _), (q_pl, a_pl, r_pl) = res
        ctx = f"trial {trial}: bid {bid} ask {ask} empty {empty} position {position}"
        for f in ("side", "price_ticks", "qty", "level"):
            assert np.array_equal(q_ref[f], q_pl[f]), f"quotes.{f} differ at {ctx}"
        for f in ("kind", "order_id", "side", "price_ticks", "qty", "flags", "level", "order_type"):
            assert np.array_equal(a_ref[f], a_pl[f]), f"actions.{f} differ at {ctx}"
        places = a_pl["kind"] == 1
        assert np.array_equal(a_ref["tif"][places], a_pl["tif"][places]), ctx
        action = unpack_reasons(r_pl)["quote_action"]
        assert action == (QuoteAction.SKIP if empty else QuoteAction.QUOTE), ctx


def _synth_events(n_steps=1500, seed=1, p_trade=0.6):
    """A small random market: snapshot, depth changes, trades that move the touch; local = exchange + 1 ms."""
    from mmlab.types import event_dtype

    rng = np.random.default_rng(seed)
    rows = []
    t = 1_700_000_000_000_000_000

    def add(ts, kind, side, price, qty, uid, end):
        rows.append((ts, ts + 1_000_000, price, qty, uid, int(kind), side, end, 0))

    bid = 10_000
    levels = {}
    add(t, Kind.CLEAR, 0, 0, 0.0, 1, False)
    for i in range(20):
        levels[(1, bid - i)] = float(rng.integers(1, 5))
        levels[(-1, bid + 1 + i)] = float(rng.integers(1, 5))
    items = list(levels.items())
    for j, ((s, p), q) in enumerate(items):
        add(t, Kind.SNAPSHOT, s, p, q, 1, j == len(items) - 1)
    for uid in range(2, n_steps + 2):
        t += int(rng.integers(1, 20)) * 1_000_000
        if rng.random() < p_trade:
            side = 1 if rng.random() < 0.5 else -1
            price = bid + 1 if side == 1 else bid
            q = float(rng.integers(1, 3))
            add(t, Kind.TRADE, side, price, q, uid, True)
            rem = levels.get((-side, price), 0.0) - q
            if rem > 0:
                levels[(-side, price)] = rem
                ups = [((-side, price), rem)]
            else:
                levels.pop((-side, price), None)
                bid += side
                levels.setdefault((1, bid), float(rng.integers(1, 5)))
                levels.setdefault((-1, bid + 1), float(rng.integers(1, 5)))
                ups = [((-side, price), 0.0), ((1, bid), levels[(1, bid)]), ((-1, bid + 1), levels[(-1, bid + 1)])]
                for k in [k for k in levels if (k[0] == 1 and k[1] > bid) or (k[0] == -1 and k[1] <= bid)]:
                    del levels[k]
                    ups.append((k, 0.0))
            for j, ((s, p), qq) in enumerate(ups):
                add(t + 1, Kind.DEPTH, s, p, qq, uid, j == len(ups) - 1)
        else:
            side = 1 if rng.random() < 0.5 else -1
            off = int(rng.integers(0, 8))
            p = bid - off if side == 1 else bid + 1 + off
            q = float(rng.integers(1 if off == 0 else 0, 6))
            if q == 0:
                levels.pop((side, p), None)
            else:
                levels[(side, p)] = q
            add(t, Kind.DEPTH, side, p, q, uid, True)
    ev = np.array(rows, dtype=event_dtype)
    return ev[np.argsort(ev["ts_local"], kind="stable")]


@pytest.mark.parametrize("skew_ticks", [0.0, 1.0])
def test_backtest_with_the_grid_preset_is_identical_to_the_reference_grid(skew_ticks):
    from mmlab.sim.engine import SymbolSpec, simulate

    ev = _synth_events()
    cfg = load_config({"strategy": {"grid_num": 3, "half_spread_ticks": 1.0, "skew_ticks": skew_ticks, "order_qty": 1.0,
                                    "max_position": 4.0, "interval_ms": 50.0},
                       "sim": {"entry_latency_ms": 5.0, "response_latency_ms": 5.0}})
    specs = [SymbolSpec(symbol="SYNUSDT", tick_size=0.1, lot_size=0.001)]
    ref = simulate(cfg, specs, [ev])["out"]
    got = simulate(cfg, specs, [ev], strategy=grid_pipeline_spec())["out"]
    assert len(ref["fills"]) > 50
    for key in ("fills", "oev"):
        assert len(ref[key]) == len(got[key])
        for f in ref[key].dtype.names:
            assert np.array_equal(ref[key][f], got[key][f], equal_nan=True), f"{key}.{f} differs"
    for f in ref["states"].dtype.names:
        if f != "reason":  # the pipeline packs its six stage reasons here
            assert np.array_equal(ref["states"][f], got["states"][f], equal_nan=True), f"states.{f} differs"
