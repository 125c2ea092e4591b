"""Run a backtest: config -> data windows -> compiled event loop -> result frames, summary and run directory.

>>> from mmlab.config import load_config
>>> cfg = load_config("experiments/grid.toml")  # doctest: +SKIP
>>> result = run_backtest(cfg)  # doctest: +SKIP
>>> write_run(result, "experiments/runs/demo")  # doctest: +SKIP

The data are replayed window by window (UTC days of local time by default): each window's rows are handed to
the loop kernel in local-time order and in exchange-time order; the kernel processes everything before the next
window's earliest timestamp and the rows it could not yet process are carried into the next window, so a
multi-day run never holds more than two windows in memory and gives the same result as one big window.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mmlab.errors import ConfigError, DataError, MmlabError
from mmlab.types import (
    ContractType,
    Kind,
    ExchangeModelId,
    LatencyModelId,
    LoopStatus,
    OrderEventKind,
    OrderType,
    QueueModelId,
    RejectReason,
    TimeInForce,
    consumed_dtype,
    event_dtype,
    fill_dtype,
    mid_row_dtype,
    msg_dtype,
    order_dtype,
    order_event_dtype,
    order_view_dtype,
    quote_dtype,
    run_state_dtype,
    sim_action_dtype,
    sim_params_dtype,
    sim_state_row_dtype,
    sym_state_dtype,
    symbol_params_dtype,
)

INT64_MAX = np.iinfo(np.int64).max
NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * 1_000_000_000

#: Output buffer sizes (rows); the kernel returns FLUSH before one would overflow.
FILL_BUFFER_ROWS = 1 << 16
ORDER_EVENT_BUFFER_ROWS = 1 << 18
STATE_BUFFER_ROWS = 1 << 16
MID_BUFFER_ROWS = 1 << 20
#: Market orders sweep at most this many ticks from the best price (PARTIAL exchange model).
MAX_SWEEP_TICKS = 100
#: Mean length of a latency shock episode (latency model ``random``), ms.
SHOCK_DURATION_MS = 1000.0

#: Summary keys holding wall-clock measurements (excluded from determinism comparisons).
WALL_TIME_KEYS = ("wall_s", "loop_s", "load_s", "events_per_s", "jit_s")

#: What each key of summary.json means (H = each of labels.horizons_ms; money in quote currency for linear
#: contracts, base currency for inverse ones; sums run over symbols).
SUMMARY_FIELDS = {
    "events": "market event rows replayed (BBO rows are informational and not replayed)",
    "events_bbo_skipped": "BBO rows of the data, not replayed",
    "wall_s": "wall time of run_backtest, s (machine dependent)",
    "loop_s": "time inside the compiled event loop, s (machine dependent)",
    "jit_s": "time to load (or compile) the loop kernel and bind the strategy, s (machine dependent)",
    "events_per_s": "events / loop_s (machine dependent)",
    "n_decisions": "decision ticks (each runs the strategy once per symbol)",
    "n_orders": "new-order requests sent",
    "n_requests": "requests of any kind sent (new, cancel, modify)",
    "n_local_rejects": "actions refused before leaving the strategy (duplicate id, request in flight, ...)",
    "n_fills": "fills (a partial fill counts once)",
    "n_maker_fills": "fills of resting orders",
    "n_taker_fills": "fills of orders that took liquidity on arrival",
    "volume_qty": "filled quantity, base units (contracts if inverse)",
    "fees": "fees paid, negative = rebates earned",
    "pnl_net": "final exchange-side balance + position marked at the final exchange mid - fees",
    "position_final": "final exchange-side position (every fill, reported or not)",
    "sharpe": "annualized: mean / std of equity changes between decision ticks * sqrt(ticks per year)",
    "max_drawdown": "largest fall of equity (decision ticks) from its running peak",
    "fill_rate": "orders sent that got at least one fill / orders sent",
    "taker_share": "taker volume / total volume",
    "markout_bps_H": "mean over fills of side * (mid(t_fill + H) - price) / price * 1e4",
    "slippage_bps_mean": "mean over fills of side * (price - mid at send) / mid at send * 1e4 (positive = worse)",
    "queue_eta_ms_p50": "median time from acceptance to first fill of orders that filled, ms",
    "per_symbol": "position_final, pnl_net, fees, n_fills, volume_qty, contract of each symbol",
}


@dataclass(frozen=True)
class SymbolSpec:
    """What the simulator needs to know about one symbol (a subset of ``bridge.SymbolInfo``)."""

    symbol: str
    tick_size: float
    lot_size: float
    contract_type: str = "linear"
    contract_size: float = 1.0
    meta: dict = field(default_factory=dict)


@dataclass
class BacktestResult:
    """Frames, summary and provenance of one run (see ARCHITECTURE.md section 5)."""

    fills: Any  # polars.DataFrame
    orders: Any
    state: Any
    labels: Any
    mids: Any
    summary: dict
    meta: dict
    config: Any  # BacktestConfig


# ------------------------------------------------------------------------------------------------- set-up


def _ns(ms: float) -> int:
    return int(round(ms * NS_PER_MS))


def _sim_params(cfg, n_symbols: int) -> np.ndarray:
    s = cfg.sim
    sp = np.zeros(1, dtype=sim_params_dtype)
    sp["queue_model"] = int(QueueModelId[s.queue_model.upper()])
    sp["queue_power"] = s.queue_power
    sp["exchange_model"] = int(ExchangeModelId[s.exchange_model.upper()])
    sp["latency_model"] = int(LatencyModelId[s.latency_model.upper()])
    sp["entry_latency_ns"] = _ns(s.entry_latency_ms)
    sp["response_latency_ns"] = _ns(s.response_latency_ms)
    sp["cancel_latency_ns"] = _ns(s.entry_latency_ms if s.cancel_latency_ms is None else s.cancel_latency_ms)
    sp["modify_latency_ns"] = _ns(s.entry_latency_ms if s.modify_latency_ms is None else s.modify_latency_ms)
    sp["jitter_ns"] = s.latency_jitter_ms * NS_PER_MS
    sp["shock_prob"] = s.shock_prob
    sp["shock_mult"] = s.shock_mult
    sp["interval_ns"] = _ns(cfg.strategy.interval_ms)
    sp["n_symbols"] = n_symbols
    sp["max_sweep_ticks"] = MAX_SWEEP_TICKS
    sp["shock_duration_ns"] = SHOCK_DURATION_MS * NS_PER_MS
    if sp["interval_ns"][0] <= 0:
        raise ConfigError(f"[strategy] interval_ms must be at least 1e-6 ms, got {cfg.strategy.interval_ms!r}")
    return sp


def _symbol_params(cfg, specs: list[SymbolSpec]) -> np.ndarray:
    sym = np.zeros(len(specs), dtype=symbol_params_dtype)
    for i, info in enumerate(specs):
        ctype = str(info.contract_type).lower()
        if ctype not in ("linear", "inverse"):
            raise DataError(f"contract type of {info.symbol} must be linear or inverse, got {info.contract_type!r} "
                            "(check its _meta.json)")
        sym[i]["tick_size"] = info.tick_size
        sym[i]["lot_size"] = info.lot_size
        sym[i]["contract_size"] = info.contract_size
        sym[i]["contract_type"] = int(ContractType[ctype.upper()])
        sym[i]["maker_fee"] = cfg.sim.maker_fee
        sym[i]["taker_fee"] = cfg.sim.taker_fee
    return sym


def load_latency_table(path: str | os.PathLike) -> np.ndarray:
    """Recorded order round trips (parquet or CSV with req_ts, exch_ts, resp_ts in ns) -> int64 array (n, 3)."""
    import polars as pl

    p = Path(path)
    if not p.exists():
        raise DataError(f"latency table {p} does not exist (sim.latency_table)")
    try:
        df = pl.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pl.read_csv(p)
    except Exception as exc:  # polars raises several types for unreadable files
        raise DataError(f"cannot read latency table {p}: {exc} "
                        "(expected parquet or CSV with req_ts, exch_ts, resp_ts)") from exc
    missing = [c for c in ("req_ts", "exch_ts", "resp_ts") if c not in df.columns]
    if missing:
        raise DataError(f"latency table {p} lacks columns {missing}; it needs req_ts, exch_ts, resp_ts (ns)")
    tab = np.stack([df[c].cast(pl.Int64).to_numpy() for c in ("req_ts", "exch_ts", "resp_ts")], axis=1)
    if len(tab) == 0:
        raise DataError(f"latency table {p} has no rows")
    bad = np.flatnonzero((tab[:, 1] < tab[:, 0]) | (tab[:, 2] < tab[:, 1]))
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"latency table {p} row {i}: req_ts={tab[i, 0]} exch_ts={tab[i, 1]} resp_ts={tab[i, 2]} is not "
            f"req_ts <= exch_ts <= resp_ts ({len(bad)} such rows); drop or fix them"
        )
    order = np.argsort(tab[:, 0], kind="stable")
    return np.ascontiguousarray(tab[order])


@dataclass
class SimArrays:
    """Every array the loop kernel reads or writes; ``args()`` gives them in the kernel's order."""

    sp: np.ndarray
    sym: np.ndarray
    rs: np.ndarray
    ss: np.ndarray
    book: np.ndarray
    bid_qty: np.ndarray
    ask_qty: np.ndarray
    orders: np.ndarray
    exch_list: np.ndarray
    local_list: np.ndarray
    req_ring: np.ndarray
    resp_ring: np.ndarray
    consumed: np.ndarray
    lat_table: np.ndarray
    strat_params: np.ndarray
    strat_state: np.ndarray
    view: np.ndarray
    quotes: np.ndarray
    actions: np.ndarray
    counts: np.ndarray
    fills: np.ndarray
    oev: np.ndarray
    states: np.ndarray
    mids: np.ndarray

    def state_args(self) -> tuple:
        return (self.sp, self.sym, self.rs, self.ss, self.book, self.bid_qty, self.ask_qty, self.orders,
                self.exch_list, self.local_list, self.req_ring, self.resp_ring, self.consumed, self.lat_table)

    def out_args(self) -> tuple:
        return (self.strat_params, self.strat_state, self.view, self.quotes, self.actions, self.counts, self.fills,
                self.oev, self.states, self.mids)


def new_sim_arrays(cfg, specs: list[SymbolSpec], strategy, lat_table: np.ndarray | None = None,
                   *, n_levels: int = 1 << 16) -> SimArrays:
    """Allocate the simulator state for ``specs`` (one book pair per symbol) and the strategy's buffers."""
    from mmlab.data.book_nb import new_books
    from mmlab.sim.loop_nb import CONSUMED_CAP, LIST_CAP, RING_CAP

    n = len(specs)
    sp = _sim_params(cfg, n)
    rs = np.zeros(1, dtype=run_state_dtype)
    rs["next_req_ts"] = INT64_MAX
    rs["next_resp_ts"] = INT64_MAX
    rs["next_decision_ts"] = INT64_MAX
    rs["t0"] = -1
    rs["rng_state"] = np.uint64(cfg.sim.seed)
    book, bid_qty, ask_qty = new_books(2 * n, n_levels)
    if lat_table is None:
        lat_table = np.zeros((1, 3), dtype=np.int64)
    n_quotes = max(int(strategy.max_quotes(cfg)), 2)
    strat_params = strategy.build_params(cfg, specs)
    if strat_params.dtype != strategy.params_dtype or (strategy.per_symbol_params and len(strat_params) != n):
        raise ConfigError(f"strategy {strategy.name!r} built params of dtype/length {strat_params.dtype}/"
                          f"{len(strat_params)}, expected {strategy.params_dtype}/{n} (fix its build_params)")
    return SimArrays(
        sp=sp,
        sym=_symbol_params(cfg, specs),
        rs=rs,
        ss=np.zeros(n, dtype=sym_state_dtype),
        book=book,
        bid_qty=bid_qty,
        ask_qty=ask_qty,
        orders=np.zeros(2 * LIST_CAP * n, dtype=order_dtype),
        exch_list=np.zeros((n, LIST_CAP), dtype=np.int64),
        local_list=np.zeros((n, LIST_CAP), dtype=np.int64),
        req_ring=np.zeros((n, RING_CAP), dtype=msg_dtype),
        resp_ring=np.zeros((n, RING_CAP), dtype=msg_dtype),
        consumed=np.zeros((n, CONSUMED_CAP), dtype=consumed_dtype),
        lat_table=np.ascontiguousarray(lat_table, dtype=np.int64),
        strat_params=strat_params,
        strat_state=np.zeros((n, max(int(strategy.n_state), 1)), dtype=np.float64),
        view=np.zeros(LIST_CAP, dtype=order_view_dtype),
        quotes=np.zeros(n_quotes, dtype=quote_dtype),
        actions=np.zeros(LIST_CAP + n_quotes, dtype=sim_action_dtype),
        counts=np.zeros(2, dtype=np.int64),
        fills=np.zeros(FILL_BUFFER_ROWS, dtype=fill_dtype),
        oev=np.zeros(ORDER_EVENT_BUFFER_ROWS, dtype=order_event_dtype),
        states=np.zeros(STATE_BUFFER_ROWS, dtype=sim_state_row_dtype),
        mids=np.zeros(MID_BUFFER_ROWS, dtype=mid_row_dtype),
    )


# ------------------------------------------------------------------------------------------ kernel binding

_ENTRY_CACHE: dict = {}


def decide_signature(a: SimArrays):
    """numba signature of a strategy decision function for these arrays (the first-class function type)."""
    from numba import typeof, types

    args = (types.int64, types.int64, typeof(a.book), typeof(a.bid_qty), typeof(a.ask_qty), types.int64,
            types.float64, typeof(a.view), types.int64, typeof(a.strat_params), typeof(a.strat_state),
            typeof(a.quotes), typeof(a.actions), typeof(a.counts))
    return types.int64(*args)


def loop_entry(a: SimArrays, local_ev: np.ndarray, exch_ev: np.ndarray):
    """Compiled entry point of ``run_loop_nb`` for these array types (loaded from numba's disk cache if present).

    The strategy is passed as a typed first-class function: the kernel's cache key holds the function *type*,
    not the function object, so a new process loads it from disk instead of compiling again.
    """
    from numba import typeof, types

    from mmlab.data import book_nb
    from mmlab.sim import fees_nb, latency_nb, loop_nb, queue_nb
    from mmlab.sim._cache import tie_cache_to_sources
    from mmlab.sim.loop_nb import run_loop_nb

    tie_cache_to_sources(run_loop_nb, loop_nb, queue_nb, latency_nb, fees_nb, book_nb)
    ftype = types.FunctionType(decide_signature(a))
    sig = (typeof(local_ev), typeof(exch_ev), types.int64, types.boolean) + tuple(typeof(x) for x in a.state_args()) \
        + (ftype,) + tuple(typeof(x) for x in a.out_args())
    entry = _ENTRY_CACHE.get(sig)
    if entry is None:
        run_loop_nb.compile(sig)
        entry = run_loop_nb.overloads[sig].entry_point
        _ENTRY_CACHE[sig] = entry
    return entry


# ---------------------------------------------------------------------------------------------- the runner


class _Collector:
    """Copies the kernel's output buffers out at each flush."""

    def __init__(self) -> None:
        self.fills: list[np.ndarray] = []
        self.oev: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.mids: list[np.ndarray] = []

    def flush(self, a: SimArrays) -> None:
        r = a.rs[0]
        for name, buf, key in (("fills", a.fills, "n_fill_rows"), ("oev", a.oev, "n_order_event_rows"),
                               ("states", a.states, "n_state_rows"), ("mids", a.mids, "n_mid_rows")):
            n = int(r[key])
            if n:
                getattr(self, name).append(buf[:n].copy())
            a.rs[key] = 0

    @staticmethod
    def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "fills": self._cat(self.fills, fill_dtype),
            "oev": self._cat(self.oev, order_event_dtype),
            "states": self._cat(self.states, sim_state_row_dtype),
            "mids": self._cat(self.mids, mid_row_dtype),
        }


def _exch_order(ev: np.ndarray) -> np.ndarray:
    return ev[np.argsort(ev["ts_exch"], kind="stable")]


def simulate(cfg, specs: list[SymbolSpec], windows, *, lat_table: np.ndarray | None = None, strategy=None) -> dict:
    """Run the loop over ``windows`` (an iterable of ``event_dtype`` arrays, each sorted by ts_local, windows in
    time order) and return the raw output arrays plus counters and timings."""
    from mmlab.sim.strategies import get_strategy

    strategy = strategy or get_strategy(cfg.strategy.name)
    a = new_sim_arrays(cfg, specs, strategy, lat_table)
    out = _Collector()
    t_jit = 0.0
    t_loop = 0.0
    n_rows = 0
    entry = None
    pending_local = np.zeros(0, dtype=event_dtype)
    pending_exch = np.zeros(0, dtype=event_dtype)
    prev_horizon = None
    it = iter(windows)
    skipped = [0]
    cur = _next_nonempty(it, skipped)
    status = int(LoopStatus.FINISHED)
    if cur is None:
        raise DataError("no events to simulate in the selected data range (check data.start / data.end and the store)")
    while cur is not None:
        nxt = _next_nonempty(it, skipped)
        n_rows += len(cur)
        if prev_horizon is not None:
            lo = min(int(cur["ts_local"].min()), int(cur["ts_exch"].min()))
            if lo < prev_horizon:
                raise DataError(
                    f"events at {lo} ns precede time already simulated ({prev_horizon} ns): feed latency exceeds "
                    "the replay window; use a longer window (run_backtest(..., window_ns=...))"
                )
        local_ev = np.concatenate([pending_local, cur]) if len(pending_local) else cur
        exch_new = _exch_order(cur)
        if len(pending_exch):
            exch_ev = np.concatenate([pending_exch, exch_new])
            exch_ev = exch_ev[np.argsort(exch_ev["ts_exch"], kind="stable")]
        else:
            exch_ev = exch_new
        local_ev = np.ascontiguousarray(local_ev)
        exch_ev = np.ascontiguousarray(exch_ev)
        if a.rs[0]["t0"] < 0:
            t0 = min(int(local_ev[0]["ts_local"]), int(exch_ev[0]["ts_exch"]))
            a.rs["t0"] = t0
            a.rs["next_decision_ts"] = t0 + int(a.sp[0]["interval_ns"])
        final = nxt is None
        horizon = INT64_MAX if final else min(int(nxt["ts_local"].min()), int(nxt["ts_exch"].min()))
        a.rs["i_local"] = 0
        a.rs["i_exch"] = 0
        if entry is None:
            t = time.perf_counter()
            entry = loop_entry(a, local_ev, exch_ev)
            # A call that processes nothing (horizon 0) binds the strategy function, so its one-time load is
            # counted as JIT time, not loop time.
            entry(local_ev[:0], exch_ev[:0], 0, False, *a.state_args(), strategy.decide, *a.out_args())
            t_jit += time.perf_counter() - t
        while True:
            t = time.perf_counter()
            status = entry(local_ev, exch_ev, horizon, final, *a.state_args(), strategy.decide, *a.out_args())
            t_loop += time.perf_counter() - t
            if status == LoopStatus.FLUSH:
                out.flush(a)
                continue
            if status == LoopStatus.RESPONSE_QUEUE_FULL:
                raise MmlabError(
                    "simulator report queue overflowed (more than RING_CAP reports in flight for one symbol); "
                    "lower sim.response_latency_ms or the strategy's order rate"
                )
            break
        pending_local = local_ev[int(a.rs[0]["i_local"]):].copy()
        pending_exch = exch_ev[int(a.rs[0]["i_exch"]):].copy()
        prev_horizon = horizon
        cur = nxt
    out.flush(a)
    return {"arrays": a, "out": out.arrays(), "events": n_rows, "events_bbo_skipped": skipped[0], "loop_s": t_loop,
            "jit_s": t_jit, "status": int(status)}


def _next_nonempty(it, skipped: list) -> np.ndarray | None:
    """Next window with replayable rows; BBO rows (informational, never applied) are dropped and counted."""
    for ev in it:
        if ev is None or not len(ev):
            continue
        if ev.dtype != event_dtype:
            raise DataError(f"events must have mmlab.types.event_dtype, got {ev.dtype}")
        bbo = ev["kind"] == Kind.BBO
        n_bbo = int(bbo.sum())
        if n_bbo:
            skipped[0] += n_bbo
            ev = ev[~bbo]
        if len(ev):
            return ev
    return None


# ----------------------------------------------------------------------------------------------- data


def _meta_hash(meta: dict) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()


def _store_windows(cfg, window_ns: int | None) -> tuple[list[SymbolSpec], Iterator[np.ndarray], dict]:
    from mmlab.data import bridge

    d = cfg.data
    infos = [bridge.symbol_info(d.root, d.venue, s, i) for i, s in enumerate(d.symbols)]
    specs = [SymbolSpec(i.symbol, i.tick_size, i.lot_size, i.contract_type, i.contract_size, i.meta) for i in infos]
    start = bridge.parse_time_ns(d.start)
    end = bridge.parse_time_ns(d.end)
    spans = [(i.meta.get("time_span") or {}) for i in infos]
    lo = min((s.get("ts_local_min") for s in spans if s.get("ts_local_min") is not None), default=None)
    hi = max((s.get("ts_local_max") for s in spans if s.get("ts_local_max") is not None), default=None)
    provenance = {f"{d.venue}/{i.symbol}": _meta_hash(i.meta) for i in infos}
    if lo is None or hi is None:
        # No span in the metadata: one window over the whole range.
        def one():
            ev, _ = bridge.load_events(d.root, d.venue, list(d.symbols), d.start, d.end)
            yield ev
        return specs, one(), provenance
    a = lo if start is None else max(lo, start)
    b = hi + 1 if end is None else min(hi + 1, end)
    step = window_ns or NS_PER_DAY

    def gen():
        w0 = a if window_ns else (a // NS_PER_DAY) * NS_PER_DAY
        w0 = max(w0, a)
        while w0 < b:
            w1 = min(((w0 // step) + 1) * step if not window_ns else w0 + step, b)
            ev, _ = bridge.load_events(d.root, d.venue, list(d.symbols), int(w0), int(w1))
            yield ev
            w0 = w1

    return specs, gen(), provenance


# -------------------------------------------------------------------------------------------- result frames


def _enum_names(enum, values: np.ndarray) -> np.ndarray:
    """Lower-case member names of int enum values (vectorized lookup)."""
    lo = min(int(m) for m in enum)
    hi = max(int(m) for m in enum)
    lut = np.array([str(v) for v in range(lo, hi + 1)], dtype=object)
    for m in enum:
        lut[int(m) - lo] = m.name.lower()
    v = np.asarray(values, dtype=np.int64)
    if len(v) and (v.min() < lo or v.max() > hi):
        raise ValueError(f"{enum.__name__} value out of range in {v}")
    return lut[v - lo].astype(str) if len(v) else np.zeros(0, dtype=str)


def _build_frames(cfg, specs: list[SymbolSpec], raw: dict) -> dict:
    import polars as pl

    from mmlab.labels import fill_labels

    arr = raw["out"]
    tick = np.array([s.tick_size for s in specs])
    names = np.array([s.symbol for s in specs], dtype=object)
    horizons = tuple(cfg.labels.horizons_ms)

    # Exchange mid series per symbol (ticks -> price).
    m = arr["mids"]
    mids_by_sym = {}
    valid = (m["best_bid_ticks"] > -(2**61)) & (m["best_ask_ticks"] < 2**61)
    for sid in range(len(specs)):
        sel = m["symbol_id"] == sid
        ts = m["ts_exch"][sel]
        px = np.where(valid[sel], 0.5 * (m["best_bid_ticks"][sel] + m["best_ask_ticks"][sel]) * tick[sid], np.nan)
        mids_by_sym[sid] = (ts.astype(np.int64), px)
    mids_df = pl.DataFrame({
        "ts_exch": m["ts_exch"], "symbol": names[m["symbol_id"]].astype(str) if len(m) else np.zeros(0, dtype=str),
        "best_bid": np.where(valid, m["best_bid_ticks"] * tick[m["symbol_id"]], np.nan),
        "best_ask": np.where(valid, m["best_ask_ticks"] * tick[m["symbol_id"]], np.nan),
    })

    # Fills.
    f = arr["fills"]
    ftick = tick[f["symbol_id"]]
    price = f["price_ticks"] * ftick
    mid_send = f["mid_send_ticks"] * ftick
    flab = fill_labels(f["ts_exch"], f["symbol_id"], f["side"], price, mid_send, mids_by_sym, horizons)
    fills = pl.DataFrame({
        "ts_exch": f["ts_exch"], "ts_local": f["ts_local"],
        "symbol": names[f["symbol_id"]].astype(str) if len(f) else np.zeros(0, dtype=str),
        "order_id": f["order_id"], "order_seq": f["order_seq"], "side": f["side"], "price": price,
        "price_ticks": f["price_ticks"], "qty": f["qty"], "maker": f["maker"], "fee": f["fee"],
        "queue_ahead_qty": f["queue_ahead_qty"], "time_in_queue_ns": f["time_in_queue_ns"], "sent_ts": f["sent_ts"],
        "mid_send": mid_send, "mid_fill": f["mid_fill_ticks"] * ftick, "position_after": f["position_after"],
        "leaves_qty": f["leaves_qty"], **flab,
    })

    # Order lifecycle events.
    e = arr["oev"]
    etick = tick[e["symbol_id"]]
    orders = pl.DataFrame({
        "ts_local": e["ts_local"], "ts_exch": e["ts_exch"],
        "symbol": names[e["symbol_id"]].astype(str) if len(e) else np.zeros(0, dtype=str),
        "order_id": e["order_id"], "order_seq": e["order_seq"],
        "event": _enum_names(OrderEventKind, e["kind"]), "side": e["side"],
        "price": e["price_ticks"] * etick, "price_ticks": e["price_ticks"], "qty": e["qty"],
        "leaves_qty": e["leaves_qty"], "reason": _enum_names(RejectReason, e["reason"]),
        "order_type": _enum_names(OrderType, e["order_type"]), "tif": _enum_names(TimeInForce, e["tif"]),
        "mid": e["mid_ticks"] * etick, "queue_ahead_qty": e["queue_ahead_qty"],
    })

    # Decision ticks.
    s = arr["states"]
    stick = tick[s["symbol_id"]]
    bb_ok = s["best_bid_ticks"] > -(2**61)
    ba_ok = s["best_ask_ticks"] < 2**61
    pnl = s["pnl"]
    # Equity: initial cash plus every symbol's pnl at the tick (ticks are written for all symbols at once).
    eq = np.full(len(s), np.nan)
    if len(s):
        ts_u, inv = np.unique(s["ts_local"], return_inverse=True)
        tot = np.zeros(len(ts_u))
        np.add.at(tot, inv, np.nan_to_num(pnl))
        eq = cfg.sim.initial_cash + tot[inv]
    state = pl.DataFrame({
        "ts_local": s["ts_local"],
        "symbol": names[s["symbol_id"]].astype(str) if len(s) else np.zeros(0, dtype=str),
        "best_bid": np.where(bb_ok, s["best_bid_ticks"] * stick, np.nan),
        "best_ask": np.where(ba_ok, s["best_ask_ticks"] * stick, np.nan),
        "mid": s["mid_ticks"] * stick,
        "spread_ticks": np.where(bb_ok & ba_ok, (s["best_ask_ticks"] - s["best_bid_ticks"]).astype(np.float64), np.nan),
        "bid_qty": s["bid_qty"], "ask_qty": s["ask_qty"],
        "quote_bid": np.where(s["quote_bid_ticks"] >= 0, s["quote_bid_ticks"] * stick, np.nan),
        "quote_ask": np.where(s["quote_ask_ticks"] >= 0, s["quote_ask_ticks"] * stick, np.nan),
        "n_quotes_bid": s["n_quotes_bid"], "n_quotes_ask": s["n_quotes_ask"], "n_actions": s["n_actions"],
        "n_working": s["n_working"], "position": s["position"], "cash": cfg.sim.initial_cash + s["balance"],
        "fees": s["fees"], "pnl": pnl, "equity": eq, "reason": s["reason"],
    })

    # Labels: one row per placed order, features at its decision tick, forward outcomes.
    labels = _order_label_frame(cfg, specs, e, s, mids_by_sym, horizons, names, tick, raw)
    return {"fills": fills, "orders": orders, "state": state, "labels": labels, "mids": mids_df}


def _order_label_frame(cfg, specs, e, s, mids_by_sym, horizons, names, tick, raw):
    import polars as pl

    from mmlab.labels import order_labels

    sent = e[e["kind"] == OrderEventKind.SENT]
    seqs = sent["order_seq"]
    n = len(sent)
    first_fill = np.full(n, -1, dtype=np.int64)
    accept = np.full(n, -1, dtype=np.int64)
    end = np.full(n, -1, dtype=np.int64)
    filled_qty = np.zeros(n)
    queue = np.full(n, np.nan)
    if n:
        # Order sequence numbers are assigned in send order: SENT rows are sorted by them.
        ev = e[e["order_seq"] >= 0]
        i = np.searchsorted(seqs, ev["order_seq"])
        i = np.clip(i, 0, n - 1)
        ok = seqs[i] == ev["order_seq"]
        kind = ev["kind"]
        big = np.iinfo(np.int64).max
        acc = ok & (kind == OrderEventKind.ACCEPTED)
        first_acc = np.full(n, big, dtype=np.int64)
        np.minimum.at(first_acc, i[acc], ev["ts_exch"][acc])
        accept = np.where(first_acc < big, first_acc, -1)
        # Queue ahead at the first acceptance (the first ACCEPTED row of each order).
        acc_rows = np.flatnonzero(acc)
        _, first_rows = np.unique(i[acc_rows], return_index=True)
        queue[i[acc_rows[first_rows]]] = ev["queue_ahead_qty"][acc_rows[first_rows]]
        fil = ok & (kind == OrderEventKind.FILLED)
        ff = np.full(n, big, dtype=np.int64)
        np.minimum.at(ff, i[fil], ev["ts_exch"][fil])
        first_fill = np.where(ff < big, ff, -1)
        np.add.at(filled_qty, i[fil], ev["qty"][fil])
        done = ok & (((kind == OrderEventKind.FILLED) & (ev["leaves_qty"] <= 0.0)) | (kind == OrderEventKind.CANCELED)
                     | (kind == OrderEventKind.REJECTED) | (kind == OrderEventKind.EXPIRED))
        np.maximum.at(end, i[done], ev["ts_exch"][done])
    run_end = int(raw["arrays"].rs[0]["now"])
    lab = order_labels({"ts_local": sent["ts_local"], "symbol_id": sent["symbol_id"], "side": sent["side"]},
                       first_fill, accept, end, run_end, mids_by_sym, horizons)
    # Features at the decision tick (state row of the same time and symbol).
    key_s = s["ts_local"].astype(np.int64) * 4096 + s["symbol_id"]
    key_o = sent["ts_local"].astype(np.int64) * 4096 + sent["symbol_id"]
    order = np.argsort(key_s, kind="stable")
    idx = np.searchsorted(key_s[order], key_o)
    idx = np.clip(idx, 0, max(len(s) - 1, 0))
    srow = s[order][idx] if len(s) else np.zeros(n, dtype=sim_state_row_dtype)
    stick = tick[sent["symbol_id"]] if n else np.zeros(0)
    mid_t = srow["mid_ticks"] if n else np.zeros(0)
    bid_q = srow["bid_qty"] if n else np.zeros(0)
    ask_q = srow["ask_qty"] if n else np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        imb = (bid_q - ask_q) / (bid_q + ask_q)
    spread = np.where((srow["best_bid_ticks"] > -(2**61)) & (srow["best_ask_ticks"] < 2**61),
                      (srow["best_ask_ticks"] - srow["best_bid_ticks"]).astype(np.float64), np.nan) if n else np.zeros(0)
    return pl.DataFrame({
        "ts_decision": sent["ts_local"],
        "symbol": names[sent["symbol_id"]].astype(str) if n else np.zeros(0, dtype=str),
        "order_seq": seqs, "order_id": sent["order_id"], "side": sent["side"],
        "price": sent["price_ticks"] * stick, "qty": sent["qty"],
        "mid": mid_t * stick, "distance_ticks": sent["side"] * (mid_t - sent["price_ticks"]),
        "spread_ticks": spread, "bid_qty": bid_q, "ask_qty": ask_q, "imbalance": imb,
        "position": srow["position"] if n else np.zeros(0),
        "accepted": accept >= 0, "queue_ahead_qty": queue, "filled_qty": filled_qty,
        "accept_ts": accept, "first_fill_ts": first_fill, "end_ts": end, **lab,
    })


# ---------------------------------------------------------------------------------------------- summary


def _summary(cfg, specs: list[SymbolSpec], raw: dict, frames: dict) -> dict:
    from mmlab.labels import horizon_suffix
    from mmlab.sim.fees_nb import pnl_nb

    a: SimArrays = raw["arrays"]
    fills = frames["fills"]
    state = frames["state"]
    labels = frames["labels"]
    rs = a.rs[0]
    per_symbol = {}
    pnl_total = 0.0
    for i, spec in enumerate(specs):
        ss = a.ss[i]
        bb, ba = int(a.book[i]["best_bid_tick"]), int(a.book[i]["best_ask_tick"])
        if bb > -(2**61) and ba < 2**61:
            mark = 0.5 * (bb + ba) * spec.tick_size
            pnl = float(pnl_nb(int(a.sym[i]["contract_type"]), float(a.sym[i]["contract_size"]), float(ss["exch_balance"]),
                               float(ss["exch_position"]), float(ss["exch_fees"]), mark))
        else:
            pnl = float("nan")
        pnl_total += pnl
        per_symbol[spec.symbol] = {
            "position_final": float(ss["exch_position"]), "pnl_net": pnl, "fees": float(ss["exch_fees"]),
            "n_fills": int(ss["exch_n_fills"]), "volume_qty": float(ss["exch_volume"]),
            "contract": spec.contract_type,
        }
    n_fills = fills.height
    maker = fills["maker"].to_numpy() if n_fills else np.zeros(0, bool)
    qty = fills["qty"].to_numpy() if n_fills else np.zeros(0)
    vol = float(qty.sum())
    eq = _equity_series(state)
    interval_ms = cfg.strategy.interval_ms
    if len(eq) > 2:
        d = np.diff(eq)
        sd = float(d.std())
        sharpe = float(d.mean() / sd * np.sqrt(365 * 86_400_000 / interval_ms)) if sd > 0 else 0.0
        peak = np.maximum.accumulate(eq)
        mdd = float((peak - eq).max())
    else:
        sharpe, mdd = 0.0, 0.0
    n_sent = labels.height
    n_filled_orders = int((labels["filled_qty"].to_numpy() > 0).sum()) if n_sent else 0
    eta = labels.filter(~labels["censored"])["queue_eta_ms"].drop_nans().to_numpy() if n_sent else np.zeros(0)
    summary = {
        "events": int(raw["events"]),
        "events_bbo_skipped": int(raw["events_bbo_skipped"]),
        "wall_s": None,
        "loop_s": float(raw["loop_s"]),
        "jit_s": float(raw["jit_s"]),
        "events_per_s": float(raw["events"] / raw["loop_s"]) if raw["loop_s"] > 0 else None,
        "n_decisions": int(rs["n_decisions"]),
        "n_orders": int(rs["n_orders"]),
        "n_requests": int(rs["n_requests"]),
        "n_local_rejects": int(rs["n_local_rejects"]),
        "n_fills": int(n_fills),
        "n_maker_fills": int(maker.sum()),
        "n_taker_fills": int((~maker).sum()),
        "volume_qty": vol,
        "fees": float(fills["fee"].sum()) if n_fills else 0.0,
        "pnl_net": float(pnl_total),
        "position_final": float(sum(v["position_final"] for v in per_symbol.values())),
        "sharpe": sharpe,
        "max_drawdown": mdd,
        "fill_rate": float(n_filled_orders / n_sent) if n_sent else 0.0,
        "taker_share": float(qty[~maker].sum() / vol) if vol > 0 else 0.0,
    }
    for h in cfg.labels.horizons_ms:
        col = f"markout_bps_{horizon_suffix(h)}"
        summary[col] = _nanmean(fills[col].to_numpy()) if n_fills else None
    for h in (100.0, 1000.0, 5000.0):
        summary.setdefault(f"markout_bps_{horizon_suffix(h)}", None)
    summary["slippage_bps_mean"] = _nanmean(fills["slippage_bps"].to_numpy()) if n_fills else None
    summary["queue_eta_ms_p50"] = float(np.median(eta)) if len(eta) else None
    summary["per_symbol"] = per_symbol
    return summary


def _nanmean(x: np.ndarray):
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else None


def _equity_series(state) -> np.ndarray:
    """Run equity at each decision tick (one value per tick: every symbol row of a tick holds the total)."""
    if state.height == 0:
        return np.zeros(0)
    ts = state["ts_local"].to_numpy()
    eq = state["equity"].to_numpy()
    first = np.r_[True, ts[1:] != ts[:-1]]
    return eq[first]


# ----------------------------------------------------------------------------------------------- public API


def run_backtest(cfg, *, events: np.ndarray | list | None = None, symbols: list[SymbolSpec] | None = None,
                 window_ns: int | None = None, latency_table: np.ndarray | None = None,
                 strategy=None) -> BacktestResult:
    """Run the configured strategy over the configured data and return frames, summary and provenance.

    Parameters
    ----------
    cfg : BacktestConfig
    events : optional ``event_dtype`` array (or list of arrays = consecutive windows) to replay instead of the
        store named by ``cfg.data``; then ``symbols`` must describe ``symbol_id`` 0, 1, ...
    symbols : list of :class:`SymbolSpec` for ``events``.
    window_ns : replay window length for store data (default: UTC days of local time).
    latency_table : int64 array (n, 3) of req_ts, exch_ts, resp_ts overriding ``cfg.sim.latency_table``.
    strategy : a ``StrategySpec`` overriding ``cfg.strategy.name`` (e.g. ``scripted_strategy_spec(script)``).
    """
    t_start = time.perf_counter()
    if events is not None:
        if not symbols:
            raise ConfigError("run_backtest(events=...) needs symbols=[SymbolSpec(...)] describing symbol_id 0..n-1")
        specs = list(symbols)
        windows = events if isinstance(events, list) else [events]
        provenance = {"events": "in-memory"}
    else:
        specs, windows, provenance = _store_windows(cfg, window_ns)
    lat = latency_table
    if lat is None and cfg.sim.latency_model == "empirical":
        lat = load_latency_table(cfg.sim.latency_table)
    raw = simulate(cfg, specs, windows, lat_table=lat, strategy=strategy)
    frames = _build_frames(cfg, specs, raw)
    summary = _summary(cfg, specs, raw, frames)
    wall = time.perf_counter() - t_start
    summary["wall_s"] = wall
    meta = {
        "config_id": cfg.config_id,
        "data": provenance,
        "symbols": [{"symbol": s.symbol, "tick_size": s.tick_size, "lot_size": s.lot_size,
                     "contract_type": s.contract_type, "contract_size": s.contract_size} for s in specs],
        "seed": cfg.sim.seed,
        "events": int(raw["events"]),
        "wall_s": wall,
    }
    return BacktestResult(fills=frames["fills"], orders=frames["orders"], state=frames["state"],
                          labels=frames["labels"], mids=frames["mids"], summary=summary, meta=meta, config=cfg)


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("mmlab", "numpy", "numba", "polars", "pyarrow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                           text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def run_id(result: BacktestResult) -> str:
    """Deterministic run id: config id + data id (same data, config and seed -> same id)."""
    data_id = hashlib.sha256(json.dumps(result.meta["data"], sort_keys=True).encode()).hexdigest()[:8]
    return f"{result.meta['config_id']}-{data_id}"


def write_run(result: BacktestResult, out_dir: str | os.PathLike | None = None) -> Path:
    """Write the run directory of ARCHITECTURE.md section 5 and return its path.

    Files: config.toml, manifest.json, summary.json, fills/orders/state/labels.parquet. Only ``wall_s``-like
    fields of summary.json and manifest.json depend on the machine; everything else is a pure function of
    (data, config, seed).
    """
    rid = run_id(result)
    if out_dir is None:
        out_dir = result.config.output.dir or os.path.join("experiments", "runs", rid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(result.config.to_toml())
    manifest = {
        "run_id": rid,
        "config_id": result.meta["config_id"],
        "data_meta_sha256": result.meta["data"],
        "symbols": result.meta["symbols"],
        "seed": result.meta["seed"],
        "events": result.meta["events"],
        "versions": _versions(),
        "git_commit": _git_commit(),
        "wall_s": result.meta["wall_s"],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    (out / "summary.json").write_text(json.dumps(result.summary, indent=2, sort_keys=True))
    for name in ("fills", "orders", "state", "labels"):
        getattr(result, name).write_parquet(out / f"{name}.parquet", statistics=True)
    return out
