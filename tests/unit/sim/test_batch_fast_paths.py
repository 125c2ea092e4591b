"""The shortcuts a parameter batch's pass takes give exactly what the plain computations give."""

import numpy as np
import pytest

from mmlab.data.book_nb import new_books
from mmlab.sim.grid_nb import GRID_TRUNCATED, grid_decide_nb
from mmlab.sim.loop_nb import (
    _exch_add_resting_nb,
    _exch_remove_resting_nb,
    _refresh_exch_bounds_nb,
)
from mmlab.types import (
    ActionKind,
    OrderStatus,
    RequestKind,
    Side,
    TimeInForce,
    grid_params_dtype,
    order_dtype,
    order_view_dtype,
    quote_dtype,
    sim_action_dtype,
    sym_state_dtype,
)

_BOUNDS = ("n_exch", "n_buy", "n_sell", "min_buy_tick", "max_buy_tick", "min_sell_tick", "max_sell_tick")


def _reference_grid_actions(quotes, n_q, view, n_view, a_cap):
    """The grid's diff as first written: each working order against every desired quote."""
    out = []
    for o in view[:n_view]:
        working = o["status"] in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED) and o["req"] == RequestKind.NONE
        if working and not any(q["side"] == o["side"] and q["price_ticks"] == o["order_id"] for q in quotes[:n_q]):
            if len(out) >= a_cap:
                return out, True
            out.append((int(ActionKind.CANCEL), int(o["order_id"]), int(o["price_ticks"]), int(o["side"])))
    for q in quotes[:n_q]:
        if any(o["order_id"] == q["price_ticks"] for o in view[:n_view]):
            continue
        if len(out) >= a_cap:
            return out, True
        out.append((int(ActionKind.PLACE), int(q["price_ticks"]), int(q["price_ticks"]), int(q["side"])))
    return out, False


@pytest.mark.parametrize("seed", range(6))
def test_grid_ladder_diff_equals_the_quote_by_quote_diff(seed):
    rng = np.random.default_rng(seed)
    book, bid_qty, ask_qty = new_books(1, 1 << 10)
    statuses = [OrderStatus.NONE, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED]
    reqs = [RequestKind.NONE, RequestKind.NONE, RequestKind.CANCEL, RequestKind.NEW]
    n_checked = 0
    for _ in range(300):
        grid_num = int(rng.integers(1, 8))
        step = int(rng.integers(1, 4))
        p = np.zeros(1, dtype=grid_params_dtype)
        p["grid_num"] = grid_num
        p["grid_interval_ticks"] = step
        p["half_spread_ticks"] = float(rng.choice([0.5, 1.0, 2.0, 3.0]))
        p["skew_ticks"] = float(rng.choice([0.0, 1.0, 2.5]))
        p["order_qty"] = 0.01
        p["max_position"] = 0.03
        position = float(rng.choice([0.0, 0.01, -0.02, 0.03, -0.03, 0.05]))
        bb = 1000 + int(rng.integers(0, 6))
        book[0]["best_bid_tick"] = bb
        book[0]["best_ask_tick"] = bb + int(rng.integers(1, 4)) if rng.random() > 0.05 else 2**62
        n_view = int(rng.integers(0, 14))
        view = np.zeros(16, dtype=order_view_dtype)
        for j in range(n_view):
            px = bb + int(rng.integers(-14, 16))
            view[j]["order_id"] = px
            view[j]["price_ticks"] = px
            view[j]["qty"] = 0.01
            view[j]["side"] = Side.BID if rng.random() < 0.5 else Side.ASK
            view[j]["status"] = statuses[int(rng.integers(0, len(statuses)))]
            view[j]["req"] = reqs[int(rng.integers(0, len(reqs)))]
            view[j]["tif"] = TimeInForce.GTX
        quotes = np.zeros(2 * grid_num, dtype=quote_dtype)
        a_cap = int(rng.choice([3, 64]))
        actions = np.zeros(a_cap, dtype=sim_action_dtype)
        counts = np.zeros(2, dtype=np.int64)
        reason = grid_decide_nb(0, 0, book, bid_qty, ask_qty, 0, position, view, n_view, p,
                                np.zeros((1, 1)), quotes, actions, counts)
        want, truncated = _reference_grid_actions(quotes, int(counts[0]), view, n_view, a_cap)
        got = [(int(a["kind"]), int(a["order_id"]), int(a["price_ticks"]), int(a["side"]))
               for a in actions[:counts[1]]]
        assert got == want
        assert (reason == GRID_TRUNCATED) == truncated
        n_checked += len(want)
    assert n_checked > 500


def test_exchange_bounds_kept_incrementally_equal_a_rescan():
    rng = np.random.default_rng(7)
    orders = np.zeros(64, dtype=order_dtype)
    exch_list = np.zeros((1, 64), dtype=np.int64)
    ss = np.zeros(1, dtype=sym_state_dtype)
    ref = ss.copy()
    resting: list[int] = []
    for _ in range(3000):
        if resting and (len(resting) == 40 or rng.random() < 0.5):
            slot = resting.pop(int(rng.integers(0, len(resting))))
            _exch_remove_resting_nb(orders, exch_list, ss, 0, slot)
        else:
            slot = next(i for i in range(64) if i not in resting)
            orders[slot]["side"] = Side.BID if rng.random() < 0.5 else Side.ASK
            orders[slot]["exch_price_ticks"] = int(rng.integers(95, 106))
            resting.append(slot)
            _exch_add_resting_nb(orders, exch_list, ss, 0, slot)
        ref["n_exch"] = ss["n_exch"]
        ref_list = exch_list.copy()
        _refresh_exch_bounds_nb(orders, ref_list, ref, 0)
        assert sorted(exch_list[0, :ss[0]["n_exch"]]) == sorted(resting)
        for name in _BOUNDS:
            if name.startswith(("min_buy", "max_buy")) and ref[0]["n_buy"] == 0:
                continue  # (no buys: the bounds are not read)
            if name.startswith(("min_sell", "max_sell")) and ref[0]["n_sell"] == 0:
                continue
            assert ss[0][name] == ref[0][name], name


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mmlab.data.synth import synth

    root = tmp_path_factory.mktemp("store")
    synth(root, hours=0.02, seed=11, symbol="SYNTHUSDT", date="2024-01-01")
    return root


@pytest.mark.parametrize("name", ["grid", "grid_pipeline"])
def test_a_pass_without_decision_rows_changes_nothing_else(store, name):
    from mmlab.config import load_config
    from mmlab.sim.engine import WALL_TIME_KEYS, run_backtest_batch

    cfg = load_config({
        "data": {"root": str(store), "venue": "binance-usdm", "symbols": ["SYNTHUSDT"]},
        "strategy": {"name": name, "grid_num": 4, "interval_ms": 100, "order_qty": 0.01, "max_position": 0.05},
        "sim": {"entry_latency_ms": 5, "response_latency_ms": 5},
        "pipeline": {"sample_stage_tracing": 0.5},  # timed ticks reset the stage timers either way
    })
    sets = [{"strategy.half_spread_ticks": 1.0}, {"strategy.half_spread_ticks": 2.0, "strategy.skew_ticks": 2.0}]
    full = run_backtest_batch(cfg, sets)
    lean = run_backtest_batch(cfg, sets, decisions=False)
    for a, b in zip(full, lean):
        assert b.decisions is None and a.decisions.height > 0
        for frame in ("fills", "orders", "state", "labels", "mids"):
            assert getattr(a, frame).equals(getattr(b, frame), null_equal=True), frame
        skip = set(WALL_TIME_KEYS) | {"stage_latency_ns"}
        assert {k: v for k, v in a.summary.items() if k not in skip} == \
            {k: v for k, v in b.summary.items() if k not in skip}
    assert full[0].summary["n_fills"] > 0
