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
from typing import TYPE_CHECKING, Any, Iterator

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
from mmlab.types import STAGE_TIMERS_MAX, decision_quote_dtype, decision_row_dtype

if TYPE_CHECKING:
    from mmlab.data.bridge import ReplayWindow

INT64_MAX = np.iinfo(np.int64).max
NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * 1_000_000_000

#: Output buffer sizes (rows); the kernel returns FLUSH before one would overflow.
FILL_BUFFER_ROWS = 1 << 16
ORDER_EVENT_BUFFER_ROWS = 1 << 18
STATE_BUFFER_ROWS = 1 << 16
MID_BUFFER_ROWS = 1 << 20
DECISION_QUOTE_BUFFER_ROWS = 1 << 18
DECISION_ACTION_BUFFER_ROWS = 1 << 16
#: Market orders sweep at most this many ticks from the best price (PARTIAL exchange model).
MAX_SWEEP_TICKS = 100
#: Mean length of a latency shock episode (latency model ``random``), ms.
SHOCK_DURATION_MS = 1000.0

#: Summary keys holding wall-clock measurements (excluded from determinism comparisons).
WALL_TIME_KEYS = ("wall_s", "loop_s", "load_s", "events_per_s", "jit_s", "stage_latency_ns")

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
    "stage_latency_ns": "{stage: {p50, p95, p99, n}} ns over the decision ticks timed (pipeline.sample_stage_tracing; "
                        "machine dependent), tick_total = decide + actions per symbol; absent when none timed",
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
    decisions: Any = None  # polars.DataFrame of mmlab.sim.decisions.decisions_frame
    extra: dict = field(default_factory=dict)  # strategy outputs, name -> polars frame (<name>.parquet), e.g. allocation


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
    decisions: np.ndarray  # decision_row_dtype
    dec_quotes: np.ndarray  # decision_quote_dtype
    dec_actions: np.ndarray  # sim_action_dtype
    fill_rec: np.ndarray  # one fill_dtype record: the on_fill hook's argument
    on_event: Any = None  # the strategy's hooks (no-op kernels when it has none)
    on_fill: Any = None

    def state_args(self) -> tuple:
        return (self.sp, self.sym, self.rs, self.ss, self.book, self.bid_qty, self.ask_qty, self.orders,
                self.exch_list, self.local_list, self.req_ring, self.resp_ring, self.consumed, self.lat_table)

    def out_args(self) -> tuple:
        """The hooks and the strategy / output arrays: the kernel's arguments after ``decide``."""
        return (self.on_event, self.on_fill, self.strat_params, self.strat_state, self.view, self.quotes,
                self.actions, self.counts, self.fills, self.oev, self.states, self.mids, self.decisions,
                self.dec_quotes, self.dec_actions, self.fill_rec)


def new_sim_arrays(cfg, specs: list[SymbolSpec], strategy, lat_table: np.ndarray | None = None,
                   *, n_levels: int = 1 << 16, batch_cfgs: list | None = None) -> SimArrays:
    """Allocate the simulator state for ``specs`` (one book pair per symbol) and the strategy's buffers.

    ``batch_cfgs`` (K configs differing only in strategy parameters, see :func:`check_batch_configs`) gives a
    parameter batch: K * len(specs) instances sharing the book pairs, instance ``k * len(specs) + s`` running
    parameter set k on symbol s (strategy params built from ``batch_cfgs[k]``), one run-state record per set.
    """
    from mmlab.data.book_nb import new_books
    from mmlab.sim.clock_nb import ns_per_cycle
    from mmlab.sim.loop_nb import CONSUMED_CAP, LIST_CAP, RING_CAP, noop_on_event_nb, noop_on_fill_nb

    n = len(specs)
    cfgs = list(batch_cfgs) if batch_cfgs else [cfg]
    n_sets = len(cfgs)
    n_inst = n_sets * n
    # Report / request rings per instance: a batch shares the memory of one run's rings (at least 1024 slots).
    ring_cap = RING_CAP if n_sets == 1 else max(1024, RING_CAP // n_sets)
    sp = _sim_params(cfg, n)
    sp["has_on_event"] = strategy.on_event is not None
    sp["has_on_fill"] = strategy.on_fill is not None
    sp["on_event_mask"] = int(strategy.on_event_mask)
    n_timers = len(strategy.stage_names)
    if n_timers > STAGE_TIMERS_MAX or (n_timers and strategy.n_state <= n_timers):
        raise ConfigError(f"strategy {strategy.name!r} declares {n_timers} stage timers with n_state "
                          f"{strategy.n_state}; at most {STAGE_TIMERS_MAX} timers and n_state > timers (fix its spec)")
    sp["n_stage_timers"] = n_timers
    sp["trace_fraction"] = float(getattr(cfg.pipeline, "sample_stage_tracing", 0.0))
    sp["ns_per_cycle"] = ns_per_cycle() if sp["trace_fraction"][0] > 0 else 0.0
    rs = np.zeros(n_sets, dtype=run_state_dtype)
    rs["next_req_ts"] = INT64_MAX
    rs["next_resp_ts"] = INT64_MAX
    rs["next_decision_ts"] = INT64_MAX
    rs["t0"] = -1
    rs["rng_state"] = np.uint64(cfg.sim.seed)
    book, bid_qty, ask_qty = new_books(2 * n, n_levels)
    if lat_table is None:
        lat_table = np.zeros((1, 3), dtype=np.int64)
    n_quotes = max(max(int(strategy.max_quotes(c)) for c in cfgs), 2)
    parts = []
    for c in cfgs:
        strat_params = strategy.build_params(c, specs)
        if strat_params.dtype != strategy.params_dtype or (strategy.per_symbol_params and len(strat_params) != n):
            raise ConfigError(f"strategy {strategy.name!r} built params of dtype/length {strat_params.dtype}/"
                              f"{len(strat_params)}, expected {strategy.params_dtype}/{n} (fix its build_params)")
        parts.append(strat_params)
    strat_params = parts[0] if n_sets == 1 else np.concatenate(parts)
    ss = np.zeros(n_inst, dtype=sym_state_dtype)
    ss["book_id"] = np.arange(n_inst) % n
    ss["group"] = np.arange(n_inst) // n
    n = n_inst  # per-instance arrays below
    return SimArrays(
        sp=sp,
        sym=_symbol_params(cfg, specs),
        rs=rs,
        ss=ss,
        book=book,
        bid_qty=bid_qty,
        ask_qty=ask_qty,
        orders=np.zeros(2 * LIST_CAP * n, dtype=order_dtype),
        exch_list=np.zeros((n, LIST_CAP), dtype=np.int64),
        local_list=np.zeros((n, LIST_CAP), dtype=np.int64),
        req_ring=np.zeros((n, ring_cap), dtype=msg_dtype),
        resp_ring=np.zeros((n, ring_cap), dtype=msg_dtype),
        consumed=np.zeros((n, CONSUMED_CAP), dtype=consumed_dtype),
        lat_table=np.ascontiguousarray(lat_table, dtype=np.int64),
        strat_params=strat_params,
        strat_state=np.zeros((n, max(int(strategy.n_state), 1)), dtype=np.float64),
        view=np.zeros(LIST_CAP, dtype=order_view_dtype),
        quotes=np.zeros(n_quotes, dtype=quote_dtype),
        actions=np.zeros(LIST_CAP + n_quotes, dtype=sim_action_dtype),
        counts=np.zeros(2, dtype=np.int64),
        fills=np.zeros(FILL_BUFFER_ROWS, dtype=fill_dtype),
        oev=np.zeros(max(ORDER_EVENT_BUFFER_ROWS, 4 * n * (LIST_CAP + n_quotes + 8)), dtype=order_event_dtype),
        states=np.zeros(STATE_BUFFER_ROWS, dtype=sim_state_row_dtype),
        mids=np.zeros(MID_BUFFER_ROWS, dtype=mid_row_dtype),
        decisions=np.zeros(STATE_BUFFER_ROWS, dtype=decision_row_dtype),
        dec_quotes=np.zeros(max(DECISION_QUOTE_BUFFER_ROWS, 4 * n * n_quotes), dtype=decision_quote_dtype),
        dec_actions=np.zeros(max(DECISION_ACTION_BUFFER_ROWS, 4 * n * (LIST_CAP + n_quotes)), dtype=sim_action_dtype),
        fill_rec=np.zeros(1, dtype=fill_dtype),
        on_event=strategy.on_event or noop_on_event_nb,
        on_fill=strategy.on_fill or noop_on_fill_nb,
    )


# ------------------------------------------------------------------------------------------ kernel binding

_ENTRY_CACHE: dict = {}
#: Kernel signatures by :func:`_array_type_key` of the kernel's array arguments (see :func:`loop_entry`).
_SIG_CACHE: dict = {}
#: None, or an object with ``set()`` / ``clear()`` (a ``threading.Event``) that :func:`simulate` sets while the
#: compiled loop runs (it releases the GIL) and clears after: ``mmlab.hpo.runner``'s ask-ahead loop lets its
#: background thread work only then.
LOOP_GATE = None


def _array_type_key(x) -> tuple | None:
    """What numba's array type is made of (dtype, ndim, layout, writeable, aligned); None for a non-array."""
    if type(x) is not np.ndarray:
        return None
    f = x.flags
    return (x.dtype, x.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)


def decide_signature(a: SimArrays):
    """numba signature of a strategy decision function for these arrays (the first-class function type)."""
    from numba import typeof, types

    args = (types.int64, types.int64, typeof(a.book), typeof(a.bid_qty), typeof(a.ask_qty), types.int64,
            types.float64, typeof(a.view), types.int64, typeof(a.strat_params), typeof(a.strat_state),
            typeof(a.quotes), typeof(a.actions), typeof(a.counts))
    return types.int64(*args)


def hook_signatures(a: SimArrays):
    """numba signatures of the strategy hooks ``on_event`` and ``on_fill`` for these arrays."""
    from numba import from_dtype, typeof, types

    on_event = types.none(types.int64, from_dtype(event_dtype), typeof(a.book), typeof(a.bid_qty),
                          typeof(a.ask_qty), types.int64, typeof(a.strat_params), typeof(a.strat_state))
    on_fill = types.none(types.int64, types.int64, typeof(a.fill_rec).dtype, typeof(a.strat_params),
                         typeof(a.strat_state))
    return on_event, on_fill


def loop_entry(a: SimArrays, local_ev: np.ndarray, exch_ev: np.ndarray):
    """Compiled entry point of ``run_loop_nb`` for these array types (loaded from numba's disk cache if present).

    The strategy is passed as a typed first-class function: the kernel's cache key holds the function *type*,
    not the function object, so a new process loads it from disk instead of compiling again.
    """
    from numba import typeof, types

    from mmlab.data import book_nb
    from mmlab.pipeline import fetch_md
    from mmlab.sim import clock_nb, fees_nb, latency_nb, loop_nb, queue_nb
    from mmlab.sim._cache import tie_cache_to_sources
    from mmlab.sim.loop_nb import run_loop_nb

    tie_cache_to_sources(run_loop_nb, loop_nb, queue_nb, latency_nb, fees_nb, book_nb, clock_nb, fetch_md)
    # numba's typeof of structured arrays costs ~0.5 ms each: the signature is memoized by the arrays' types.
    arrays = (local_ev, exch_ev) + a.state_args() + a.out_args()[2:]
    key = tuple(_array_type_key(x) for x in arrays)
    sig = _SIG_CACHE.get(key) if None not in key else None
    if sig is None:
        ftype = types.FunctionType(decide_signature(a))
        ev_type, fill_type = (types.FunctionType(s) for s in hook_signatures(a))
        sig = (typeof(local_ev), typeof(exch_ev), types.int64, types.boolean) \
            + tuple(typeof(x) for x in a.state_args()) + (ftype, ev_type, fill_type) \
            + tuple(typeof(x) for x in a.out_args()[2:])
        if None not in key:
            _SIG_CACHE[key] = sig
    entry = _ENTRY_CACHE.get(sig)
    if entry is None:
        run_loop_nb.compile(sig)
        entry = run_loop_nb.overloads[sig].entry_point
        _ENTRY_CACHE[sig] = entry
    return entry


# ---------------------------------------------------------------------------------------------- the runner


def copy_rows(buf: np.ndarray, n: int) -> np.ndarray:
    """``buf[:n].copy()`` of a contiguous structured array as one byte copy (numpy copies structured rows field
    by field: 4-6x slower for the output buffers' dtypes)."""
    out = np.empty(n, dtype=buf.dtype)
    out.view(np.uint8)[:] = buf[:n].view(np.uint8)
    return out


class _Collector:
    """Copies the kernel's output buffers out at each flush (``keep_decisions=False``: all but the decision
    rows, quotes and actions, which are then empty)."""

    #: Output kinds of the decisions frame.
    DECISION_KINDS = ("decisions", "dec_quotes", "dec_actions")

    def __init__(self, keep_decisions: bool = True) -> None:
        self.keep_decisions = keep_decisions
        self.fills: list[np.ndarray] = []
        self.oev: list[np.ndarray] = []
        self.states: list[np.ndarray] = []
        self.mids: list[np.ndarray] = []
        self.decisions: list[np.ndarray] = []
        self.dec_quotes: list[np.ndarray] = []
        self.dec_actions: list[np.ndarray] = []

    def flush(self, a: SimArrays) -> None:
        r = a.rs[0]
        for name, buf, key in (("fills", a.fills, "n_fill_rows"), ("oev", a.oev, "n_order_event_rows"),
                               ("states", a.states, "n_state_rows"), ("mids", a.mids, "n_mid_rows"),
                               ("decisions", a.decisions, "n_decision_rows"),
                               ("dec_quotes", a.dec_quotes, "n_decision_quote_rows"),
                               ("dec_actions", a.dec_actions, "n_decision_action_rows")):
            n = int(r[key])
            if n and (self.keep_decisions or name not in self.DECISION_KINDS):
                getattr(self, name).append(copy_rows(buf, n))
            a.rs[key] = 0

    @staticmethod
    def _cat(parts: list[np.ndarray], dtype) -> np.ndarray:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return np.zeros(0, dtype=dtype)
        # One byte copy (numpy concatenates structured records field by field).
        return np.concatenate([p.view(np.uint8) for p in parts]).view(dtype)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "fills": self._cat(self.fills, fill_dtype),
            "oev": self._cat(self.oev, order_event_dtype),
            "states": self._cat(self.states, sim_state_row_dtype),
            "mids": self._cat(self.mids, mid_row_dtype),
            "decisions": self._cat(self.decisions, decision_row_dtype),
            "dec_quotes": self._cat(self.dec_quotes, decision_quote_dtype),
            "dec_actions": self._cat(self.dec_actions, sim_action_dtype),
        }


#: Local events per loop call when a progress callback is given (a few tens of ms of loop time).
PROGRESS_EVENTS = 1 << 20


def _progress_total(windows) -> int | None:
    """Replayed (non-BBO) events of a list of windows; None for an iterator (not known in advance)."""
    from mmlab.data.bridge import ReplayWindow

    if not isinstance(windows, (list, tuple)):
        return None
    return sum(len(w.local) if isinstance(w, ReplayWindow) else int(np.count_nonzero(w["kind"] != Kind.BBO))
               for w in windows if w is not None)


def _progress_horizon(local_ev: np.ndarray, a, horizon: int, final: bool) -> tuple[int, bool]:
    """(horizon, final) of the next slice: ``PROGRESS_EVENTS`` local events on, at least one time stamp on."""
    i = int(a.rs[0]["i_local"]) + PROGRESS_EVENTS
    if i >= len(local_ev):
        return horizon, final
    h = max(int(local_ev[i]["ts_local"]), int(local_ev[int(a.rs[0]["i_local"])]["ts_local"]) + 1)
    return (h, False) if h < horizon else (horizon, final)


def simulate(cfg, specs: list[SymbolSpec], windows, *, lat_table: np.ndarray | None = None, strategy=None,
             batch_cfgs: list | None = None, progress=None, keep_decisions: bool = True) -> dict:
    """Run the loop over ``windows`` (an iterable of ``mmlab.data.bridge.ReplayWindow`` or of ``event_dtype``
    arrays, each sorted by ts_local, windows in time order; an array is wrapped by ``bridge.replay_window``: its
    BBO rows left out and counted, its exchange-time order sorted) and return the raw output arrays plus counters
    and timings. ``batch_cfgs``: run K parameter sets in one pass (see :func:`new_sim_arrays`; output rows carry
    the instance in ``symbol_id``, :func:`rows_by_set` orders them by set).
    ``progress(events_done, events_total)``: called after each return of the loop (then run in slices of
    ``PROGRESS_EVENTS`` local events, with the same result) with the events processed so far and the total
    (None unless ``windows`` is a list). ``keep_decisions=False`` leaves the decision rows out of the output
    (``out["decisions"]``, ``dec_quotes``, ``dec_actions`` empty; nothing else changes)."""
    from mmlab.sim.strategies import get_strategy

    strategy = strategy or get_strategy(cfg.strategy.name)
    a = new_sim_arrays(cfg, specs, strategy, lat_table, batch_cfgs=batch_cfgs)
    if not keep_decisions:
        # Empty decision buffers: the loop then writes no decision rows at all (run_loop_nb).
        a.decisions, a.dec_quotes, a.dec_actions = (np.zeros(0, dtype=x.dtype) for x in
                                                    (a.decisions, a.dec_quotes, a.dec_actions))
    if getattr(strategy, "init_state", None) is not None:  # precomputed strategy inputs (e.g. model scores)
        strategy.init_state(a.strat_state, cfg, specs)
    out = _Collector(keep_decisions)
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
    p_total = _progress_total(windows) if progress is not None else None
    while cur is not None:
        nxt = _next_nonempty(it, skipped)
        n_rows += len(cur.local)
        if prev_horizon is not None:
            lo = min(int(cur.local["ts_local"].min()), int(cur.local["ts_exch"].min()))
            if lo < prev_horizon:
                raise DataError(
                    f"events at {lo} ns precede time already simulated ({prev_horizon} ns): feed latency exceeds "
                    "the replay window; use a longer window (run_backtest(..., window_ns=...))"
                )
        local_ev = np.concatenate([pending_local, cur.local]) if len(pending_local) else cur.local
        exch_new = cur.exch
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
        horizon = INT64_MAX if final else min(int(nxt.local["ts_local"].min()), int(nxt.local["ts_exch"].min()))
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
            h, fin = (horizon, final) if progress is None else _progress_horizon(local_ev, a, horizon, final)
            gate = LOOP_GATE
            if gate is not None:
                gate.set()
            try:
                status = entry(local_ev, exch_ev, h, fin, *a.state_args(), strategy.decide, *a.out_args())
            finally:
                if gate is not None:
                    gate.clear()
            t_loop += time.perf_counter() - t
            if progress is not None:
                progress(int(a.rs[0]["n_local_events"]), p_total)
                if status == LoopStatus.HORIZON and h < horizon:
                    continue
            if status == LoopStatus.FLUSH:
                out.flush(a)
                continue
            if status == LoopStatus.RESPONSE_QUEUE_FULL:
                raise MmlabError(
                    f"simulator report queue overflowed (more than {a.resp_ring.shape[1]} reports in flight for one "
                    "symbol); lower sim.response_latency_ms or the strategy's order rate (or run fewer parameter "
                    "sets per batch: a batch's queues are shorter)"
                )
            break
        pending_local = local_ev[int(a.rs[0]["i_local"]):].copy()
        pending_exch = exch_ev[int(a.rs[0]["i_exch"]):].copy()
        prev_horizon = horizon
        cur = nxt
    out.flush(a)
    return {"arrays": a, "out": out.arrays(), "events": n_rows, "events_bbo_skipped": skipped[0], "loop_s": t_loop,
            "jit_s": t_jit, "status": int(status), "stage_names": tuple(strategy.stage_names),
            "reasons_packed": bool(strategy.reasons_packed)}


def decision_outputs(specs: list[SymbolSpec], raw: dict) -> tuple[Any, dict | None]:
    """(decisions frame, summary ``stage_latency_ns``) of a :func:`simulate` result."""
    from mmlab.sim.decisions import decisions_frame, stage_latency_summary

    o = raw["out"]
    frame = decisions_frame(o["decisions"], o["dec_quotes"], o["dec_actions"], [s.symbol for s in specs],
                            [s.tick_size for s in specs], reasons_packed=raw["reasons_packed"],
                            stage_names=raw["stage_names"])
    return frame, stage_latency_summary(o["decisions"], raw["stage_names"])


# ------------------------------------------------------------------------------------------ parameter batches

#: Config keys a parameter batch may vary (everything else must be equal across its sets): the strategy's
#: parameters and the pipeline's stage tables. ``strategy.name`` / ``interval_ms`` and
#: ``pipeline.sample_stage_tracing`` shape the shared loop and must be equal.
BATCH_FIXED_KEYS = {"strategy": ("name", "interval_ms"), "pipeline": ("sample_stage_tracing",)}


def batch_config(cfg, override):
    """The config of one parameter set: ``cfg`` with dotted keys set (``{"strategy.skew_ticks": 1.0}``;
    ``pipeline.<stage>.<key>`` reaches into a stage table), or a ready ``BacktestConfig``. Plain
    ``section.key`` sets replace just the changed sections (``mmlab.config.replace_keys``); the result and any
    error are those of ``load_config`` of the whole dict."""
    from mmlab.config import BacktestConfig, replace_keys

    if isinstance(override, BacktestConfig):
        return override
    if not isinstance(override, dict):
        raise ConfigError(f"a parameter set must be a dict of dotted config keys or a BacktestConfig, got "
                          f"{type(override).__name__}")
    if isinstance(cfg, BacktestConfig):
        fast = replace_keys(cfg, override)
        if fast is not None:
            return fast
    return override_via_load(cfg, override)


def override_via_load(cfg, override: dict):
    """``cfg`` (a config or its dict) with the dotted keys of ``override`` set, through :func:`load_config` of
    the whole dict (what :func:`batch_config` does when ``replace_keys`` declines)."""
    from mmlab.config import BacktestConfig, load_config

    raw = cfg.to_dict() if isinstance(cfg, BacktestConfig) else dict(cfg)
    for key, value in override.items():
        parts = str(key).split(".")
        if len(parts) < 2:
            raise ConfigError(f"parameter set key {key!r} must be section.key (e.g. strategy.half_spread_ticks)")
        node = raw
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"parameter set key {key!r}: {part!r} is not a table")
        node[parts[-1]] = value
    return load_config(raw)


def check_batch_configs(cfgs: list, strategy=None) -> None:
    """Raise ``ConfigError`` naming the key when the configs cannot share one pass (see ``BATCH_FIXED_KEYS``).

    A batch is exact (each set's result equals its own run) because the sets share only the market replay;
    they must therefore agree on everything but strategy parameters: data, sim (latency, queue and exchange
    models, fees, seed), labels and the decision interval. The quote / action buffers are sized for the
    largest set (``strategy.max_quotes``): a strategy reads their length only as an overflow guard. The
    ``random`` latency model draws from one generator per run and cannot be shared; model scores and the
    allocator are per run too.
    """
    if not cfgs:
        raise ConfigError("a parameter batch needs at least one parameter set")
    base = cfgs[0].to_dict()
    for k, c in enumerate(cfgs):
        if c.sim.latency_model == "random":
            raise ConfigError("sim.latency_model = 'random' cannot run in a parameter batch (each run draws its "
                              "own latencies); use constant, per_action or empirical, or run the sets one by one")
        if c.model.id:
            raise ConfigError(f"parameter set {k}: model.id = {c.model.id!r} scores per run and cannot be batched; "
                              "run it with run_backtest")
        if c.allocator.enabled:
            raise ConfigError(f"parameter set {k}: allocator.enabled = true cannot be batched; "
                              "run it with run_backtest")
        if k == 0:
            continue
        d = c.to_dict()
        for section, values in d.items():
            if section == "output":
                continue
            free = section in BATCH_FIXED_KEYS
            for key, v in values.items():
                if v == base[section].get(key) or (free and key not in BATCH_FIXED_KEYS[section]):
                    continue
                raise ConfigError(
                    f"parameter set {k}: {section}.{key} = {v!r} differs from set 0 ({base[section].get(key)!r}); "
                    "a batch may vary only strategy.* (not name, interval_ms) and pipeline.* (not "
                    "sample_stage_tracing): run sets differing in it in separate batches")
    if strategy is not None:
        if not strategy.per_symbol_params or getattr(strategy, "init_state", None) is not None \
                or getattr(strategy, "outputs", None) is not None:
            raise ConfigError(f"strategy {strategy.name!r} keeps run-wide params or outputs and cannot be batched; "
                              "run it with run_backtest")


def rows_by_set(arr: np.ndarray, n_symbols: int, n_sets: int, grp: np.ndarray | None = None, *,
                remap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one output kind of a pass ordered by parameter set (each set's rows in their original order) and
    the bounds: set g's rows are ``out[bounds[g]:bounds[g + 1]]``. ``grp``: each row's set (default
    ``symbol_id // n_symbols``); ``remap`` sets ``symbol_id`` back to 0..n_symbols-1. A single set returns
    ``arr`` itself. One pass copying whole records (``loop_nb.rows_by_set_nb``, a stable counting sort; numpy
    would copy structured records field by field)."""
    if n_sets == 1:
        return arr, np.array([0, len(arr)], dtype=np.int64)
    from mmlab.sim.loop_nb import rows_by_set_nb

    if grp is None:
        grp = arr["symbol_id"] // n_symbols
    grp = np.ascontiguousarray(grp, dtype=np.int64)
    counts = np.bincount(grp, minlength=n_sets)
    bounds = np.zeros(n_sets + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    arr = np.ascontiguousarray(arr)
    if arr.dtype.itemsize % 8 == 0 and len(arr):
        out = np.empty(len(arr), dtype=arr.dtype)
        w = arr.dtype.itemsize // 8
        rows_by_set_nb(arr.view(np.uint64).reshape(len(arr), w), grp, bounds[:-1].copy(),
                       out.view(np.uint64).reshape(len(arr), w))
    else:
        rec = np.dtype((np.void, arr.dtype.itemsize))
        out = arr.view(rec)[np.argsort(grp, kind="stable")].view(arr.dtype)
    if remap and len(out):
        out["symbol_id"] -= np.repeat(np.arange(n_sets, dtype=np.int64) * n_symbols, counts)
    return out, bounds


def _set_frames(frames: dict, g: int) -> dict:
    """Parameter set g's frames out of :func:`_build_frames`' frames of a whole pass (zero-copy slices; the
    shared ``mids`` frame as it is)."""
    bounds = frames["bounds"]
    if len(bounds["fills"]) == 2:
        return frames
    out = {}
    for name, df in frames.items():
        b = bounds.get(name)
        out[name] = df if b is None or df is None else df.slice(int(b[g]), int(b[g + 1] - b[g]))
    out["bounds"] = {k: np.array([0, int(b[g + 1] - b[g])], dtype=np.int64) for k, b in bounds.items()}
    return out


def decision_outputs_by_set(specs: list[SymbolSpec], raw: dict) -> list[tuple[Any, dict | None]]:
    """:func:`decision_outputs` of each parameter set of a :func:`simulate` result: one decisions frame of the
    whole pass (rows ordered by set), sliced per set (zero-copy)."""
    from mmlab.sim.decisions import decisions_frame, stage_latency_summary

    n_sets = len(raw["arrays"].rs)
    if n_sets == 1:
        return [decision_outputs(specs, raw)]
    n = len(specs)
    o = raw["out"]
    dec = o["decisions"]
    grp = dec["symbol_id"] // n
    rows, bounds = rows_by_set(dec, n, n_sets, grp)
    quotes, _ = rows_by_set(o["dec_quotes"], n, n_sets, np.repeat(grp, dec["n_quotes"].astype(np.int64)),
                            remap=False)
    actions, _ = rows_by_set(o["dec_actions"], n, n_sets, np.repeat(grp, dec["n_actions"].astype(np.int64)),
                             remap=False)
    frame = decisions_frame(rows, quotes, actions, [s.symbol for s in specs], [s.tick_size for s in specs],
                            reasons_packed=raw["reasons_packed"], stage_names=raw["stage_names"])
    return [(frame.slice(int(bounds[g]), int(bounds[g + 1] - bounds[g])),
             stage_latency_summary(rows[bounds[g]:bounds[g + 1]], raw["stage_names"])) for g in range(n_sets)]


def run_backtest_batch(cfg, param_overrides: list, *, events: np.ndarray | ReplayWindow | list | None = None,
                       symbols: list[SymbolSpec] | None = None, window_ns: int | None = None,
                       latency_table: np.ndarray | None = None, strategy=None,
                       decisions: bool = True, frames: bool = True) -> list[BacktestResult]:
    """Run K parameter sets in one pass over the events; returns K results, each equal to ``run_backtest`` of
    its own config (fills, orders, state, decisions, summary; wall-clock fields excepted).

    Parameters
    ----------
    cfg : BacktestConfig
        The base config (data, sim, labels, interval shared by every set).
    param_overrides : list of dicts of dotted keys (``{"strategy.half_spread_ticks": 3.0}``) applied to ``cfg``,
        or of ready ``BacktestConfig`` objects. Only strategy parameters may differ (:func:`check_batch_configs`).
    events, symbols, window_ns, latency_table, strategy : as for :func:`run_backtest`.
    decisions : build each result's ``decisions`` frame (and summary ``stage_latency_ns``); False leaves it
        None, which saves most of the per-set time after the pass (studies need only the summary and frames).
    frames : False builds only the frames the summary is computed from (fills, state, labels: the summary is
        the same) and leaves ``orders`` and ``mids`` None (studies read only the summary, fills, state, labels).

    The books replay each event once; each set keeps its own orders, queue positions, inventory and strategy
    state. ``loop_s`` / ``jit_s`` of each summary are those of the whole pass (``batch_size`` in ``meta``).

    >>> res = run_backtest_batch(cfg, [{"strategy.skew_ticks": s} for s in (0.0, 0.5, 1.0)])  # doctest: +SKIP
    >>> [r.summary["pnl_net"] for r in res]  # doctest: +SKIP
    """
    from mmlab.sim.strategies import get_strategy

    t_start = time.perf_counter()
    cfgs = [batch_config(cfg, ov) for ov in param_overrides]
    strategy = strategy or get_strategy(cfgs[0].strategy.name if cfgs else cfg.strategy.name)
    check_batch_configs(cfgs, strategy)
    if events is not None:
        if not symbols:
            raise ConfigError("run_backtest_batch(events=...) needs symbols=[SymbolSpec(...)] describing symbol_id 0..n-1")
        specs = list(symbols)
        windows = events if isinstance(events, list) else [events]
        provenance = {"events": "in-memory"}
    else:
        specs, windows, provenance = _store_windows(cfgs[0], window_ns)
    lat = latency_table
    if lat is None and cfgs[0].sim.latency_model == "empirical":
        lat = load_latency_table(cfgs[0].sim.latency_table)
    raw = simulate(cfgs[0], specs, windows, lat_table=lat, strategy=strategy, batch_cfgs=cfgs,
                   keep_decisions=decisions)
    # Every set's frames at once (one sort by set, one labels call), then zero-copy slices per set.
    all_frames = _build_frames(cfgs[0], specs, raw, summary_only=not frames)
    decs = decision_outputs_by_set(specs, raw) if decisions else None
    results = []
    for k, c in enumerate(cfgs):
        fk = _set_frames(all_frames, k)
        summary = _summary(c, specs, raw, fk, group=k)
        dec_frame = None
        if decs is not None:
            dec_frame, stage_latency = decs[k]
            if stage_latency is not None:
                summary["stage_latency_ns"] = stage_latency
        meta = {
            "config_id": c.config_id,
            "data": provenance,
            "symbols": [{"symbol": s.symbol, "tick_size": s.tick_size, "lot_size": s.lot_size,
                         "contract_type": s.contract_type, "contract_size": s.contract_size} for s in specs],
            "seed": c.sim.seed,
            "events": int(raw["events"]),
            "batch_index": k,
            "batch_size": len(cfgs),
        }
        results.append(BacktestResult(fills=fk["fills"], orders=fk["orders"], state=fk["state"],
                                      labels=fk["labels"], mids=fk["mids"], summary=summary, meta=meta,
                                      config=c, decisions=dec_frame))
    wall = time.perf_counter() - t_start
    for r in results:
        r.summary["wall_s"] = wall
        r.meta["wall_s"] = wall
    return results


def _next_nonempty(it, skipped: list) -> ReplayWindow | None:
    """Next ``ReplayWindow`` with replayable rows (arrays are wrapped by ``bridge.replay_window``); the BBO rows
    each window left out (informational, never applied) are added to ``skipped[0]``."""
    from mmlab.data.bridge import ReplayWindow, replay_window

    for w in it:
        if w is None:
            continue
        if not isinstance(w, ReplayWindow):
            if not len(w):
                continue
            w = replay_window(w)
        skipped[0] += w.n_bbo
        if len(w.local):
            return w
    return None


# ----------------------------------------------------------------------------------------------- data


def _meta_hash(meta: dict) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()


def _store_windows(cfg, window_ns: int | None) -> tuple[list[SymbolSpec], Iterator[ReplayWindow], dict]:
    """(specs, ``bridge.ReplayWindow`` iterator, provenance) of ``cfg.data``'s range (UTC days or ``window_ns``)."""
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

    def window(w0, w1):
        # The bridge drops (and counts) BBO rows and gives the exchange-time order from its per-part cache.
        return bridge.load_replay_window(d.root, d.venue, list(d.symbols), w0, w1)

    if lo is None or hi is None:
        # No span in the metadata: one window over the whole range.
        def one():
            yield window(d.start, d.end)
        return specs, one(), provenance
    a = lo if start is None else max(lo, start)
    b = hi + 1 if end is None else min(hi + 1, end)
    step = window_ns or NS_PER_DAY

    def gen():
        w0 = a if window_ns else (a // NS_PER_DAY) * NS_PER_DAY
        w0 = max(w0, a)
        while w0 < b:
            w1 = min(((w0 // step) + 1) * step if not window_ns else w0 + step, b)
            yield window(int(w0), int(w1))
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


def _code_names(labels: list[str], codes: np.ndarray, name: str = ""):
    """String series ``labels[codes]`` built by polars' gather (a numpy object -> str round trip is ~30x slower)."""
    import polars as pl

    codes = np.asarray(codes, dtype=np.int64)
    if len(codes) and (codes.min() < 0 or codes.max() >= len(labels)):
        raise ValueError(f"code out of range 0..{len(labels) - 1} in column {name!r}")
    return pl.Series(name, list(labels), dtype=pl.String).gather(codes)


def _enum_series(enum, values: np.ndarray, name: str = ""):
    """Lower-case member names of int enum values as a string series (what ``_enum_names`` returns)."""
    lo = min(int(m) for m in enum)
    hi = max(int(m) for m in enum)
    lut = [str(v) for v in range(lo, hi + 1)]
    for m in enum:
        lut[int(m) - lo] = m.name.lower()
    v = np.asarray(values, dtype=np.int64)
    if len(v) and (v.min() < lo or v.max() > hi):
        raise ValueError(f"{enum.__name__} value out of range in {v}")
    return _code_names(lut, v - lo, name)


def _build_frames(cfg, specs: list[SymbolSpec], raw: dict, *, summary_only: bool = False) -> dict:
    """Result frames of a :func:`simulate` result, built once for all its parameter sets: each frame holds the
    sets' rows one set after the other (``symbol`` of the set's own run), ``bounds[name]`` gives each set's
    rows (:func:`_set_frames` slices them out); ``mids`` is shared. ``summary_only`` builds just those
    :func:`_summary` reads (fills, state, labels) and leaves ``orders`` and ``mids`` None."""
    import polars as pl

    from mmlab.labels import fill_labels

    arr = raw["out"]
    n_sets = len(raw["arrays"].rs)
    tick = np.array([s.tick_size for s in specs])
    names = [s.symbol for s in specs]
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
    mids_df = None if summary_only else pl.DataFrame({
        "ts_exch": m["ts_exch"], "symbol": _code_names(names, m["symbol_id"]),
        "best_bid": np.where(valid, m["best_bid_ticks"] * tick[m["symbol_id"]], np.nan),
        "best_ask": np.where(valid, m["best_ask_ticks"] * tick[m["symbol_id"]], np.nan),
    })

    # Fills (labels: one kernel call over every set's fills, all read the same mids).
    f, f_bounds = rows_by_set(arr["fills"], len(specs), n_sets)
    ftick = tick[f["symbol_id"]]
    price = f["price_ticks"] * ftick
    mid_send = f["mid_send_ticks"] * ftick
    flab = fill_labels(f["ts_exch"], f["symbol_id"], f["side"], price, mid_send, mids_by_sym, horizons)
    fills = pl.DataFrame({
        "ts_exch": f["ts_exch"], "ts_local": f["ts_local"],
        "symbol": _code_names(names, f["symbol_id"]),
        "order_id": f["order_id"], "order_seq": f["order_seq"], "side": f["side"], "price": price,
        "price_ticks": f["price_ticks"], "qty": f["qty"], "maker": f["maker"], "fee": f["fee"],
        "queue_ahead_qty": f["queue_ahead_qty"], "time_in_queue_ns": f["time_in_queue_ns"], "sent_ts": f["sent_ts"],
        "mid_send": mid_send, "mid_fill": f["mid_fill_ticks"] * ftick, "position_after": f["position_after"],
        "leaves_qty": f["leaves_qty"], **flab,
    })

    # Order lifecycle events.
    e, e_bounds = rows_by_set(arr["oev"], len(specs), n_sets)
    etick = tick[e["symbol_id"]]
    orders = None if summary_only else pl.DataFrame({
        "ts_local": e["ts_local"], "ts_exch": e["ts_exch"],
        "symbol": _code_names(names, e["symbol_id"]),
        "order_id": e["order_id"], "order_seq": e["order_seq"],
        "event": _enum_series(OrderEventKind, e["kind"]), "side": e["side"],
        "price": e["price_ticks"] * etick, "price_ticks": e["price_ticks"], "qty": e["qty"],
        "leaves_qty": e["leaves_qty"], "reason": _enum_series(RejectReason, e["reason"]),
        "order_type": _enum_series(OrderType, e["order_type"]), "tif": _enum_series(TimeInForce, e["tif"]),
        "mid": e["mid_ticks"] * etick, "queue_ahead_qty": e["queue_ahead_qty"],
    })

    # Decision ticks.
    s, s_bounds = rows_by_set(arr["states"], len(specs), n_sets)
    stick = tick[s["symbol_id"]]
    bb_ok = s["best_bid_ticks"] > -(2**61)
    ba_ok = s["best_ask_ticks"] < 2**61
    pnl = s["pnl"]
    eq = cfg.sim.initial_cash + _tick_totals(s["ts_local"], np.nan_to_num(pnl), s_bounds)
    state = pl.DataFrame({
        "ts_local": s["ts_local"],
        "symbol": _code_names(names, s["symbol_id"]),
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
    run_end = raw["arrays"].rs["now"].astype(np.int64)
    labels, l_bounds = _order_label_frame(cfg, specs, e, s, mids_by_sym, horizons, names, tick, run_end, e_bounds,
                                          s_bounds)
    return {"fills": fills, "orders": orders, "state": state, "labels": labels, "mids": mids_df,
            "bounds": {"fills": f_bounds, "orders": e_bounds, "state": s_bounds, "labels": l_bounds}}


def _tick_totals(ts_local: np.ndarray, values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """For each row, the sum of ``values`` over the rows of its parameter set (``bounds``) with its ``ts_local``
    (added in row order)."""
    n = len(ts_local)
    if n == 0:
        return np.zeros(0)
    ts = np.asarray(ts_local, dtype=np.int64)
    new_set = np.zeros(n, dtype=bool)
    new_set[bounds[1:-1][bounds[1:-1] < n]] = True
    if bool(((ts[1:] >= ts[:-1]) | new_set[1:]).all()):
        # Each set's rows are in time order (as the loop writes them): a tick is a run of equal times.
        first = np.r_[True, (ts[1:] != ts[:-1]) | new_set[1:]]
        inv = np.cumsum(first) - 1
    else:
        inv = np.empty(n, dtype=np.int64)
        base = 0
        for g in range(len(bounds) - 1):
            u, i = np.unique(ts[bounds[g]:bounds[g + 1]], return_inverse=True)
            inv[bounds[g]:bounds[g + 1]] = i + base
            base += len(u)
    tot = np.zeros(int(inv[-1]) + 1 if n else 0)
    np.add.at(tot, inv, values)
    return tot[inv]


def _order_label_frame(cfg, specs, e, s, mids_by_sym, horizons, names, tick, run_end, e_bounds, s_bounds):
    """(labels frame, its rows' bounds by parameter set) of a pass's order events ``e`` and state rows ``s``
    (both ordered by set, ``e_bounds`` / ``s_bounds``); ``run_end``: each set's final time (ns)."""
    import polars as pl

    from mmlab.labels import order_labels
    from mmlab.labels.forward import order_outcomes_nb

    n_sets = len(e_bounds) - 1
    e_grp = np.repeat(np.arange(n_sets, dtype=np.int64), np.diff(e_bounds))
    # Field-wise gathers of row indices: numpy copies structured records field by field, far slower.
    sent_rows = np.flatnonzero(e["kind"] == OrderEventKind.SENT)
    seqs = e["order_seq"][sent_rows].astype(np.int64)
    sent_grp = e_grp[sent_rows]
    sent_ts = e["ts_local"][sent_rows]
    sent_sym = e["symbol_id"][sent_rows]
    sent_side = e["side"][sent_rows]
    n = len(sent_rows)
    l_bounds = np.searchsorted(sent_grp, np.arange(n_sets + 1)).astype(np.int64)
    if n:
        # Order sequence numbers are assigned in send order: each set's SENT rows are sorted by them.
        row_seq = e["order_seq"].astype(np.int64)
        first = seqs[np.minimum(l_bounds[:-1], n - 1)]
        count = np.diff(l_bounds)
        step_ok = (np.diff(seqs) == 1) | (np.diff(sent_grp) != 0)
        if bool((first[count > 0] >= 0).all()) and bool(step_ok.all()):
            # Consecutive sequence numbers (the usual case): the order of a row is its offset from its set's first.
            j = row_seq - first[e_grp]
            row_order = np.where((row_seq >= 0) & (j >= 0) & (j < count[e_grp]), j + l_bounds[:-1][e_grp], -1)
        else:
            # (set, sequence number) keys, ascending in the SENT rows.
            sent_key = (sent_grp << 40) | (seqs & ((1 << 40) - 1))
            row_key = (e_grp << 40) | (row_seq & ((1 << 40) - 1))
            i = np.clip(np.searchsorted(sent_key, row_key), 0, n - 1)
            row_order = np.where((row_seq >= 0) & (sent_key[i] == row_key), i, -1).astype(np.int64)
        accept, queue, first_fill, filled_qty, end = order_outcomes_nb(
            row_order, np.ascontiguousarray(e["kind"]), np.ascontiguousarray(e["ts_exch"]),
            np.ascontiguousarray(e["qty"]), np.ascontiguousarray(e["leaves_qty"]),
            np.ascontiguousarray(e["queue_ahead_qty"]), n, int(OrderEventKind.ACCEPTED), int(OrderEventKind.FILLED),
            int(OrderEventKind.CANCELED), int(OrderEventKind.REJECTED), int(OrderEventKind.EXPIRED))
    else:
        first_fill = np.full(0, -1, dtype=np.int64)
        accept = np.full(0, -1, dtype=np.int64)
        end = np.full(0, -1, dtype=np.int64)
        filled_qty = np.zeros(0)
        queue = np.full(0, np.nan)
    lab = order_labels({"ts_local": sent_ts, "symbol_id": sent_sym, "side": sent_side},
                       first_fill, accept, end, run_end[sent_grp], mids_by_sym, horizons)
    # Features at the decision tick (state row of the same set, time and symbol).
    stick = tick[sent_sym] if n else np.zeros(0)
    srow = np.full(n, -1, dtype=np.int64)
    for g in range(n_sets):
        o0, o1, s0, s1 = int(l_bounds[g]), int(l_bounds[g + 1]), int(s_bounds[g]), int(s_bounds[g + 1])
        if o1 == o0 or s1 == s0:
            continue
        key_s = s["ts_local"][s0:s1].astype(np.int64) * 4096 + s["symbol_id"][s0:s1]
        key_o = sent_ts[o0:o1].astype(np.int64) * 4096 + sent_sym[o0:o1]
        if bool((key_s[1:] >= key_s[:-1]).all()):
            idx = np.clip(np.searchsorted(key_s, key_o), 0, s1 - s0 - 1)
        else:
            order = np.argsort(key_s, kind="stable")
            idx = order[np.clip(np.searchsorted(key_s[order], key_o), 0, s1 - s0 - 1)]
        srow[o0:o1] = idx + s0
    have = srow >= 0
    z = np.zeros(1, dtype=sim_state_row_dtype)
    row = np.where(have, srow, 0)

    def feature(col):
        v = s[col][row] if len(s) else np.zeros(n, dtype=z[col].dtype)
        return np.where(have, v, z[col][0]) if not have.all() else v

    mid_t, bid_q, ask_q, bb_t, ba_t, pos = (feature(c) for c in ("mid_ticks", "bid_qty", "ask_qty", "best_bid_ticks",
                                                                  "best_ask_ticks", "position"))
    with np.errstate(invalid="ignore", divide="ignore"):
        imb = (bid_q - ask_q) / (bid_q + ask_q)
    spread = np.where((bb_t > -(2**61)) & (ba_t < 2**61), (ba_t - bb_t).astype(np.float64), np.nan) if n else np.zeros(0)
    sent_px = e["price_ticks"][sent_rows]
    frame = pl.DataFrame({
        "ts_decision": sent_ts,
        "symbol": _code_names(names, sent_sym),
        "order_seq": e["order_seq"][sent_rows], "order_id": e["order_id"][sent_rows], "side": sent_side,
        "price": sent_px * stick, "qty": e["qty"][sent_rows],
        "mid": mid_t * stick, "distance_ticks": sent_side * (mid_t - sent_px),
        "spread_ticks": spread, "bid_qty": bid_q, "ask_qty": ask_q, "imbalance": imb,
        "position": pos if n else np.zeros(0),
        "accepted": accept >= 0, "queue_ahead_qty": queue, "filled_qty": filled_qty,
        "accept_ts": accept, "first_fill_ts": first_fill, "end_ts": end, **lab,
    })
    return frame, l_bounds


# ---------------------------------------------------------------------------------------------- summary


def _summary(cfg, specs: list[SymbolSpec], raw: dict, frames: dict, group: int = 0) -> dict:
    """summary.json of parameter set ``group`` of a :func:`simulate` result, from its frames (:func:`_set_frames`)."""
    from mmlab.labels import horizon_suffix
    from mmlab.sim.fees_nb import pnl_nb

    a: SimArrays = raw["arrays"]
    fills = frames["fills"]
    state = frames["state"]
    labels = frames["labels"]
    rs = a.rs[group]
    per_symbol = {}
    pnl_total = 0.0
    for i, spec in enumerate(specs):
        ss = a.ss[group * len(specs) + i]
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
    eta = labels["queue_eta_ms"].to_numpy()[~labels["censored"].to_numpy()] if n_sent else np.zeros(0)
    eta = eta[~np.isnan(eta)]
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


def run_backtest(cfg, *, events: np.ndarray | ReplayWindow | list | None = None,
                 symbols: list[SymbolSpec] | None = None,
                 window_ns: int | None = None, latency_table: np.ndarray | None = None,
                 strategy=None, progress=None) -> BacktestResult:
    """Run the configured strategy over the configured data and return frames, summary and provenance.

    Parameters
    ----------
    cfg : BacktestConfig
    events : optional ``event_dtype`` array or ``mmlab.data.bridge.ReplayWindow`` (or a list of them =
        consecutive windows) to replay instead of the store named by ``cfg.data``; then ``symbols`` must describe
        ``symbol_id`` 0, 1, ... An array's BBO rows are left out and counted and its exchange-time order is sorted
        per run; a ``ReplayWindow`` (``bridge.replay_window(ev)``, made once) carries both.
    symbols : list of :class:`SymbolSpec` for ``events``.
    window_ns : replay window length for store data (default: UTC days of local time).
    latency_table : int64 array (n, 3) of req_ts, exch_ts, resp_ts overriding ``cfg.sim.latency_table``.
    strategy : a ``StrategySpec`` overriding ``cfg.strategy.name`` (e.g. ``scripted_strategy_spec(script)``).
    progress : ``progress(events_done, events_total)`` called as the loop advances (see :func:`simulate`).
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
    if strategy is None and cfg.model.id:
        # Model scores in the loop: every decision tick is scored in one batch before the run (mmlab.ml.loop_scores).
        from mmlab.ml.loop_scores import model_strategy_spec

        strategy = model_strategy_spec(cfg, events=events, symbols=symbols, window_ns=window_ns, latency_table=lat)
    if strategy is None and cfg.allocator.enabled:
        from mmlab.sim.allocated_strategy import allocated_strategy_spec

        strategy = allocated_strategy_spec(cfg=cfg)
    raw = simulate(cfg, specs, windows, lat_table=lat, strategy=strategy, progress=progress)
    frames = _build_frames(cfg, specs, raw)
    summary = _summary(cfg, specs, raw, frames)
    decisions, stage_latency = decision_outputs(specs, raw)
    if stage_latency is not None:
        summary["stage_latency_ns"] = stage_latency
    extra: dict = {}
    if getattr(strategy, "outputs", None) is not None:
        extra, more = strategy.outputs(cfg, specs, raw["arrays"].strat_params)
        summary.update(more)
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
                          labels=frames["labels"], mids=frames["mids"], summary=summary, meta=meta, config=cfg,
                          decisions=decisions, extra=extra)


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

    Files: config.toml, manifest.json, summary.json, fills/orders/state/labels.parquet, decisions.parquet. Only
    ``wall_s``-like fields of summary.json and manifest.json (and stage timings, when sampled) depend on the
    machine; everything else is a pure function of (data, config, seed).
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
    if result.decisions is not None:
        result.decisions.write_parquet(out / "decisions.parquet", statistics=True)
    for name, frame in result.extra.items():
        frame.write_parquet(out / f"{name}.parquet", statistics=True)
    return out
