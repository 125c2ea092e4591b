"""Strategy hooks of the event loop: on_event sees every local market event, on_fill every fill report; the
pipeline adapter keeps fetch_md's status, the spread estimators and the entry price from them."""

import numpy as np
import pytest
from numba import njit

from mmlab.config import load_config
from mmlab.pipeline import md_sync_nb
from mmlab.pipeline_config import grid_pipeline, make_pipeline, unpack_reasons
from mmlab.sim.engine import SymbolSpec, simulate
from mmlab.sim.pipeline_strategy import grid_pipeline_spec, pipeline_strategy_spec
from mmlab.sim.strategies import StrategySpec, get_strategy
from mmlab.types import FetchReason, Kind, event_dtype

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
SPEC = SymbolSpec(symbol="SYNUSDT", tick_size=0.1, lot_size=0.001)


def market(n_steps=1200, seed=1, p_trade=0.6, feed_ms=1.0):
    """A small random market: snapshot, depth changes, trades that move the touch (update_id rises by message)."""
    rng = np.random.default_rng(seed)
    rows = []
    t = T0

    def add(ts, kind, side, price, qty, uid, end):
        rows.append((ts, ts + int(feed_ms * MS), price, qty, uid, int(kind), side, end, 0))

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
        t += int(rng.integers(1, 20)) * MS
        if rng.random() < p_trade:
            side = 1 if rng.random() < 0.5 else -1
            price = bid + 1 if side == 1 else bid
            q = float(rng.integers(1, 3))
            add(t, Kind.TRADE, side, price, q, 10_000 + uid, True)
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


def cfg_of(**pipeline):
    d = {"strategy": {"grid_num": 3, "half_spread_ticks": 1.0, "skew_ticks": 1.0, "order_qty": 1.0,
                      "max_position": 4.0, "interval_ms": 50.0},
         "sim": {"entry_latency_ms": 5.0, "response_latency_ms": 5.0}}
    if pipeline:
        d["pipeline"] = pipeline
    return load_config(d)


# State columns written by the recording hooks below (column 0 is left alone: grid ignores its state).
EV_N, EV_TRADES, EV_BACK, EV_LAST_TS, EV_BID, EV_ASK = 1, 2, 3, 4, 5, 6
FI_N, FI_QTY, FI_TS_EXCH, FI_PRICE, FI_POS, FI_QUEUE, FI_LAG, FI_MID, FI_SEQ, FI_TIQ = 7, 8, 9, 10, 11, 12, 13, 14, 15, 16


@njit(cache=True)
def _record_event_nb(symbol_id, ev, book, bid_qty, ask_qty, b, params, state):
    st = state[symbol_id]
    st[EV_N] += 1
    if ev.kind == 2:
        st[EV_TRADES] += 1
    if ev.ts_local < st[EV_LAST_TS]:
        st[EV_BACK] += 1
    st[EV_LAST_TS] = ev.ts_local
    st[EV_BID] = book[b].best_bid_tick
    st[EV_ASK] = book[b].best_ask_tick


@njit(cache=True)
def _record_fill_nb(symbol_id, now_ns, fill, params, state):
    st = state[symbol_id]
    st[FI_N] += 1
    st[FI_QTY] += fill.qty
    st[FI_TS_EXCH] = fill.ts_exch
    st[FI_PRICE] = fill.price_ticks
    st[FI_POS] = fill.position_after
    st[FI_QUEUE] = fill.queue_ahead_qty
    st[FI_LAG] = now_ns - fill.ts_local
    st[FI_MID] = fill.mid_fill_ticks
    st[FI_SEQ] = fill.order_seq
    st[FI_TIQ] = fill.time_in_queue_ns


def _recording_grid():
    g = get_strategy("grid")
    return StrategySpec(name="grid_recording", decide=g.decide, params_dtype=g.params_dtype,
                        build_params=g.build_params, n_state=20, max_quotes=g.max_quotes,
                        on_event=_record_event_nb, on_fill=_record_fill_nb)


@pytest.fixture(scope="module")
def ev():
    return market()


@pytest.fixture(scope="module")
def recorded(ev):
    return simulate(cfg_of(), [SPEC], [ev], strategy=_recording_grid())


def test_on_event_sees_every_local_event_after_its_book_update(ev, recorded):
    st = recorded["arrays"].strat_state[0]
    a = recorded["arrays"]
    assert st[EV_N] == len(ev)
    assert st[EV_TRADES] == int((ev["kind"] == Kind.TRADE).sum())
    assert st[EV_BACK] == 0 and st[EV_LAST_TS] == ev["ts_local"][-1]
    # The last call saw the local book after the last row: the final local book (b = n_symbols + 0).
    assert st[EV_BID] == a.book[1]["best_bid_tick"] and st[EV_ASK] == a.book[1]["best_ask_tick"]


def test_on_fill_gets_each_fill_row_when_its_report_arrives(recorded):
    st = recorded["arrays"].strat_state[0]
    fills = recorded["out"]["fills"]
    assert len(fills) > 20
    assert st[FI_N] == len(fills) and st[FI_QTY] == pytest.approx(fills["qty"].sum())
    last = fills[np.argmax(fills["ts_local"])]
    assert st[FI_LAG] == 0  # called at the report's local time
    assert (st[FI_TS_EXCH], st[FI_PRICE], st[FI_POS], st[FI_SEQ], st[FI_TIQ]) == (
        last["ts_exch"], last["price_ticks"], last["position_after"], last["order_seq"], last["time_in_queue_ns"])
    assert st[FI_QUEUE] == last["queue_ahead_qty"] and st[FI_MID] == last["mid_fill_ticks"]


def test_hooks_leave_the_run_unchanged(ev, recorded):
    plain = simulate(cfg_of(), [SPEC], [ev])
    for key in ("fills", "oev", "states", "decisions", "dec_quotes", "dec_actions"):
        a, b = plain["out"][key], recorded["out"][key]
        assert len(a) == len(b) and all(np.array_equal(a[f], b[f], equal_nan=True) for f in a.dtype.names), key


def test_grid_has_no_hooks():
    spec = get_strategy("grid")
    assert spec.on_event is None and spec.on_fill is None


def _with_uids(ev, rewind_at, snapshot_at=None):
    """``ev`` with a book message's update_id sent backwards at row ``rewind_at`` (and optionally a re-snapshot
    message inserted at row ``snapshot_at``)."""
    ev = ev.copy()
    ev["update_id"][rewind_at] = 0
    if snapshot_at is None:
        return ev
    snap = ev[snapshot_at].copy()
    snap["kind"] = Kind.SNAPSHOT
    snap["side"] = 1
    snap["price_ticks"] = 1  # a deep bid: harmless for the touch
    snap["qty"] = 1.0
    snap["batch_end"] = True
    # The sequence carries on from the next message (an equal update_id is no rewind).
    later = ev[snapshot_at:]
    snap["update_id"] = later["update_id"][np.isin(later["kind"], [Kind.DEPTH])][0]
    return np.concatenate([ev[:snapshot_at], snap[None], ev[snapshot_at:]])


def _pipeline_spec(**fetch):
    def build(cfg, n):
        pl = grid_pipeline(half_spread_ticks=1.0, skew_ticks=1.0, order_qty=1.0, max_position=4.0, grid_num=3,
                           grid_interval_ticks=1, n_symbols=n)
        for k, v in fetch.items():
            pl.arr["fetch_params"][k] = v
        return pl
    return pipeline_strategy_spec(build, name="pipeline_md")


def test_pipeline_md_status_is_kept_from_book_messages(ev):
    r = simulate(cfg_of(), [SPEC], [ev], strategy=grid_pipeline_spec())
    pipe = r["arrays"].strat_params[0]
    book_rows = np.isin(ev["kind"], [Kind.DEPTH, Kind.SNAPSHOT, Kind.CLEAR]) & ev["batch_end"]
    # md is current as of the last decision; the local book (record 1: after the exchange's) counted every message.
    local_book = r["arrays"].book[1]
    assert local_book["n_messages"] == int(book_rows.sum())
    assert pipe["md"]["n_updates"] == int((book_rows & (ev["ts_local"] <= r["out"]["decisions"]["ts_local"][-1])).sum())
    md_sync_nb(pipe["md"], pipe["fetch_params"], local_book)
    assert pipe["md"]["n_updates"] == int(book_rows.sum())
    assert pipe["md"]["last_ts_local_ns"] == ev["ts_local"][book_rows][-1]
    assert pipe["md"]["last_update_id"] == ev["update_id"][book_rows][-1]
    assert pipe["md"]["n_snapshots"] == 1
    # The book's age at each decision: time since the last book message seen before it.
    d = r["out"]["decisions"]
    last_msg = ev["ts_local"][book_rows]
    i = np.searchsorted(last_msg, d["ts_local"], side="right") - 1
    assert (i >= 0).all()
    assert pipe["out"]["md_age_ns"] == d["ts_local"][-1] - last_msg[i[-1]]


def test_a_rewind_invalidates_until_a_snapshot(ev):
    book_idx = np.flatnonzero(np.isin(ev["kind"], [Kind.DEPTH]) & ev["batch_end"])
    rewind_row, snap_row = int(book_idx[300]), int(book_idx[600])
    ev2 = _with_uids(ev, rewind_row, snap_row)
    r = simulate(cfg_of(), [SPEC], [ev2], strategy=_pipeline_spec(seq_check=1))  # SeqCheck.MONOTONIC
    pipe = r["arrays"].strat_params[0]
    md_sync_nb(pipe["md"], pipe["fetch_params"], r["arrays"].book[1])
    assert pipe["md"]["n_rewinds"] == 1 and pipe["md"]["invalid"] == 0 and pipe["md"]["n_snapshots"] == 2
    assert pipe["fetch_state"]["invalidations"][2] == 1
    d = r["out"]["decisions"]
    md = np.array([unpack_reasons(x)["fetch_md"] for x in d["reason"]])
    t_rw, t_snap = ev2["ts_local"][rewind_row], ev2["ts_local"][snap_row]
    inside = (d["ts_local"] >= t_rw) & (d["ts_local"] < t_snap)
    assert inside.sum() > 5
    assert (md[inside] == FetchReason.INVALID_REWIND).all()
    assert (md[~inside] == FetchReason.OK).all()
    # No quotes while invalid: the preset cancels on SKIP and places nothing.
    assert (d["n_quotes"][inside] == 0).all()


def test_trades_feed_the_spread_estimators(ev):
    spec = pipeline_strategy_spec(lambda cfg, n: make_pipeline(
        spread=dict(calibrate_intensity=True, intensity_min_trades=10, flow_halflife_ms=1000.0),
        inventory=dict(order_qty=1.0, max_position=4.0), guards=dict(warmup_s=0.0), n_symbols=n), name="as_flow")
    r = simulate(cfg_of(), [SPEC], [ev], strategy=spec)
    pipe = r["arrays"].strat_params[0]
    assert pipe["spread_state"]["n_trades"] == int((ev["kind"] == Kind.TRADE).sum())
    out = pipe["out"]
    assert out["flow_bid_qty_per_s"] > 0 and out["flow_ask_qty_per_s"] > 0
    assert pipe["spread_state"]["tr_count"] > 0  # trades with a two-sided book went to the intensity ring


def test_fills_keep_position_and_entry_price(ev):
    r = simulate(cfg_of(), [SPEC], [ev], strategy=grid_pipeline_spec())
    pipe = r["arrays"].strat_params[0]
    fills = r["out"]["fills"]
    fills = fills[np.argsort(fills["ts_local"], kind="stable")]
    pos, entry = 0.0, np.nan
    for f in fills:
        q = f["side"] * f["qty"]
        price = f["price_ticks"] * SPEC.tick_size
        new = pos + q
        if abs(new) <= 1e-9 * abs(q):
            entry = np.nan
        elif pos == 0 or np.isnan(entry) or pos * new < 0:
            entry = price
        elif pos * q > 0:
            entry = (entry * abs(pos) + price * abs(q)) / (abs(pos) + abs(q))
        pos = new
    assert pipe["inp"]["position"] == pytest.approx(pos) == pytest.approx(r["arrays"].ss[0]["position"])
    assert pipe["inp"]["entry_price"] == pytest.approx(entry, nan_ok=True)
