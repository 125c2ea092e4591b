"""The engine's fast paths give the same results as the plain numpy ones.

Store runs take BBO-free windows and their exchange-time order from the bridge's per-part cache; in-memory runs
filter and sort inside ``simulate``. Result frames are built with polars gathers and one pass over the order
events. Each is checked against the straightforward computation.
"""

import numpy as np
import polars as pl
import pytest

from mmlab.config import load_config
from mmlab.data import bridge
from mmlab.data.synth import synth
from mmlab.sim import engine as E
from mmlab.types import (
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


def test_exch_order_uses_the_registered_order_only_for_that_array():
    rng = np.random.default_rng(1)
    ev = np.zeros(1000, dtype=event_dtype)
    ev["ts_local"] = np.arange(1000) * 10
    ev["ts_exch"] = ev["ts_local"] - rng.integers(0, 200, 1000)
    ev["price_ticks"] = rng.integers(0, 100, 1000)
    want = ev[np.argsort(ev["ts_exch"], kind="stable")]
    np.testing.assert_array_equal(E._exch_order(ev), want)
    marker = want.copy()
    E._register_exch_order(ev, marker)
    assert E._exch_order(ev) is marker
    other = ev.copy()
    np.testing.assert_array_equal(E._exch_order(other), want)
    key = id(ev)
    del ev
    assert key not in E._EXCH_ORDERED  # the entry leaves with its array


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
