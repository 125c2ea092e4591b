"""The engine's fast paths give the same results as the plain numpy ones.

Store runs take BBO-free windows and their exchange-time order from the bridge's per-part cache (a
``bridge.ReplayWindow`` per window); in-memory arrays are wrapped the same way (filtered and sorted) inside
``simulate``. Result frames are built with polars gathers and one pass over the order
events. Each is checked against the straightforward computation.
"""

import numpy as np
import polars as pl
import pytest

from mmlab.config import load_config
from mmlab.data import bridge
from mmlab.data.synth import synth
from mmlab.errors import DataError
from mmlab.sim import engine as E
from mmlab.types import (
    Kind,
    OrderEventKind,
    OrderType,
    RejectReason,
    TimeInForce,
    event_dtype,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    synth(root, hours=0.03, seed=11, symbol="SYNTHUSDT", date="2024-01-01")
    synth(root, hours=0.03, seed=12, symbol="ALTUSDT", date="2024-01-01")
    return root


def _cfg(store, symbols):
    return load_config({
        "data": {"root": str(store), "venue": "binance-usdm", "symbols": list(symbols)},
        "strategy": {"grid_num": 4, "interval_ms": 100, "half_spread_ticks": 1.0, "skew_ticks": 1.0,
                     "order_qty": 0.01, "max_position": 0.05},
        "sim": {"entry_latency_ms": 5, "response_latency_ms": 5, "maker_fee": -0.00005, "taker_fee": 0.0005,
                "exchange_model": "partial"},
    })


def _same_run(a, b):
    for name in ("fills", "orders", "state", "labels", "mids"):
        assert getattr(a, name).equals(getattr(b, name), null_equal=True), name
    sa = {k: v for k, v in a.summary.items() if k not in E.WALL_TIME_KEYS}
    sb = {k: v for k, v in b.summary.items() if k not in E.WALL_TIME_KEYS}
    assert sa == sb


@pytest.mark.parametrize("symbols", [("SYNTHUSDT",), ("SYNTHUSDT", "ALTUSDT")])
def test_store_windows_equal_an_in_memory_replay_of_the_same_rows(store, symbols):
    cfg = _cfg(store, symbols)
    from_store = E.run_backtest(cfg, window_ns=25_000_000_000)
    ev, infos = bridge.load_events(store, "binance-usdm", list(symbols))  # BBO rows included
    specs = [E.SymbolSpec(i.symbol, i.tick_size, i.lot_size) for i in infos]
    in_memory = E.run_backtest(cfg, events=ev, symbols=specs)
    assert from_store.summary["events_bbo_skipped"] > 0 and from_store.fills.height > 0
    _same_run(from_store, in_memory)


def _raw_events(n=3000, seed=1):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=event_dtype)
    ev["ts_local"] = np.arange(n) * 1_000_000
    ev["ts_exch"] = ev["ts_local"] - rng.integers(0, 200, n) * 10_000
    return ev


def test_replay_windows_carry_their_order_and_bbo_count_into_the_run(store, monkeypatch):
    cfg = _cfg(store, ("SYNTHUSDT",))
    ev, infos = bridge.load_events(store, "binance-usdm", ["SYNTHUSDT"])  # BBO rows included
    specs = [E.SymbolSpec(i.symbol, i.tick_size, i.lot_size) for i in infos]
    cut = len(ev) // 2
    parts = [ev[:cut].copy(), ev[cut:].copy()]
    plain = E.run_backtest(cfg, events=parts, symbols=specs)
    windows = [bridge.replay_window(p) for p in parts]
    assert sum(w.n_bbo for w in windows) == plain.summary["events_bbo_skipped"] > 0

    def no_sort(_ev):
        raise AssertionError("a ReplayWindow's exchange-time order was sorted again")

    monkeypatch.setattr(bridge, "exch_order", no_sort)
    _same_run(E.run_backtest(cfg, events=windows, symbols=specs), plain)
    (batch,) = E.run_backtest_batch(cfg, [cfg], events=windows[0], symbols=specs)
    assert batch.summary["events_bbo_skipped"] == windows[0].n_bbo
    with pytest.raises(AssertionError, match="sorted again"):  # a plain array is still sorted per run
        E.run_backtest(cfg, events=parts[0], symbols=specs)


def test_plain_event_arrays_are_wrapped_per_window():
    ev = _raw_events()
    ev["kind"][::7] = Kind.BBO
    specs = [E.SymbolSpec("X", 0.1, 0.001)]
    it = iter([None, ev[:0], ev[:7].copy(), ev])
    skipped = [0]
    w = E._next_nonempty(it, skipped)
    assert isinstance(w, bridge.ReplayWindow) and skipped == [1] and len(w.local) == 6
    np.testing.assert_array_equal(w.exch, w.local[np.argsort(w.local["ts_exch"], kind="stable")])
    assert E._progress_total([ev, bridge.replay_window(ev)]) == 2 * int((ev["kind"] != Kind.BBO).sum())
    with pytest.raises(DataError, match="event_dtype"):
        E.run_backtest(_cfg(".", ("X",)), events=np.zeros(3, dtype=[("a", "i8")]), symbols=specs)


@pytest.mark.parametrize("enum", [OrderEventKind, RejectReason, OrderType, TimeInForce])
def test_enum_series_equals_enum_names(enum):
    vals = np.array([int(m) for m in enum] * 3, dtype=np.int64)
    s = pl.DataFrame({"x": E._enum_series(enum, vals)})["x"]
    assert s.dtype == pl.String and s.to_list() == E._enum_names(enum, vals).tolist()
    assert E._enum_series(enum, vals[:0]).dtype == pl.String
    with pytest.raises(ValueError):
        E._enum_series(enum, np.array([max(int(m) for m in enum) + 1]))


def test_order_outcomes_equal_the_numpy_reductions():
    from mmlab.labels.forward import order_outcomes_nb

    rng = np.random.default_rng(3)
    n_orders, n_rows = 300, 5000
    row_order = rng.integers(-1, n_orders, n_rows)
    kinds = np.array([int(k) for k in OrderEventKind], dtype=np.uint8)
    kind = rng.choice(kinds, n_rows)
    ts = rng.integers(1, 10**6, n_rows)
    qty = rng.random(n_rows)
    leaves = np.where(rng.random(n_rows) < 0.5, 0.0, rng.random(n_rows))
    queue = rng.random(n_rows) * 10
    acc, q, ff, filled, end = order_outcomes_nb(row_order, kind, ts, qty, leaves, queue, n_orders,
                                                int(OrderEventKind.ACCEPTED), int(OrderEventKind.FILLED),
                                                int(OrderEventKind.CANCELED), int(OrderEventKind.REJECTED),
                                                int(OrderEventKind.EXPIRED))
    ok = row_order >= 0
    i = row_order
    big = np.iinfo(np.int64).max
    a = ok & (kind == OrderEventKind.ACCEPTED)
    want_acc = np.full(n_orders, big)
    np.minimum.at(want_acc, i[a], ts[a])
    np.testing.assert_array_equal(acc, np.where(want_acc < big, want_acc, -1))
    want_q = np.full(n_orders, np.nan)
    rows = np.flatnonzero(a)
    _, first = np.unique(i[rows], return_index=True)
    want_q[i[rows[first]]] = queue[rows[first]]
    np.testing.assert_array_equal(q, want_q)
    f = ok & (kind == OrderEventKind.FILLED)
    want_ff = np.full(n_orders, big)
    np.minimum.at(want_ff, i[f], ts[f])
    np.testing.assert_array_equal(ff, np.where(want_ff < big, want_ff, -1))
    want_filled = np.zeros(n_orders)
    np.add.at(want_filled, i[f], qty[f])
    np.testing.assert_array_equal(filled, want_filled)
    done = ok & ((f & (leaves <= 0.0)) | np.isin(kind, [OrderEventKind.CANCELED, OrderEventKind.REJECTED,
                                                         OrderEventKind.EXPIRED]))
    want_end = np.full(n_orders, -1)
    np.maximum.at(want_end, i[done], ts[done])
    np.testing.assert_array_equal(end, want_end)
