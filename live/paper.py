"""The paper exchange: the simulator's compiled event loop (``mmlab.sim.loop_nb.run_loop_nb``) fed with the
live events in small chunks, so decisions, queue positions, latencies and paper fills come from exactly the
code a backtest runs.

``step(events, horizon_ns)`` appends the events received since the last step and lets the loop process every
intent (market event on either clock, order message, decision tick) strictly before ``horizon_ns``; rows later
than the horizon wait for the next step, as the backtest carries rows between replay windows
(``mmlab.sim.engine.simulate``). With the horizon a safety margin behind the newest receive time, every event
that can still arrive is later than what was processed, and a backtest of the recording sees the same order.

The loop is called only when it has more to do than apply market rows to the books (:meth:`PaperExchange.due`:
a decision tick, a request or report arrival before the horizon, or :attr:`~PaperExchange.max_pending_rows`
queued rows): rows before the next tick touch nothing else the strategy sees, so applying them in the call that
runs the tick gives the same decisions and fills, and most frames cost a copy into the queue instead of a loop
call. Exchange-side fills those rows cause are reported by that call, in simulated time as before.
"""

from __future__ import annotations

import time

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, typeof, types
from numba.core import cgutils
from numba.core.extending import intrinsic

from live.gate import gated_spec
from live.venues.common import EventBuffer
from mmlab.errors import DataError, MmlabError
from mmlab.sim import engine
from mmlab.sim.loop_nb import run_loop_nb
from mmlab.types import Kind, LoopStatus, event_dtype

#: Output buffers a step hands back (decision rows and their quotes/actions feed decisions.parquet).
OUTPUTS = ("fills", "oev", "states", "decisions", "dec_quotes", "dec_actions")

#: Largest |local receive time - exchange time| of the first event accepted (decision ticks start at the
#: earlier of the two, so a wrong clock would otherwise schedule every tick since the exchange time).
MAX_CLOCK_SKEW_NS = 60 * 1_000_000_000


#: Default of :attr:`PaperExchange.max_pending_rows` (the rows the call running a decision tick applies first:
#: fewer keep that call short, at the cost of more loop calls between ticks).
MAX_PENDING_ROWS = 64

_RAW = np.dtype((np.void, event_dtype.itemsize))
_BBO = int(Kind.BBO)

#: Compiled :func:`paper_step_nb` entries by argument types (one per process and layout).
_STEP_CACHE: dict = {}


class _Rows:
    """A growable ``event_dtype`` array: rows ``ev[:n]``."""

    def __init__(self, capacity: int = 1 << 12):
        self._set(np.zeros(capacity, dtype=event_dtype))
        self.n = 0

    def _set(self, ev: np.ndarray) -> None:
        # Views made once per buffer (a structured array's view() checks its fields in Python, ~1.5 us each).
        self.ev = ev
        self.raw = ev.view(_RAW)
        self.u8 = ev.view(np.uint8).reshape(len(ev), -1)  # [rows, row bytes], for the in-place sort
        self.ts_exch = ev["ts_exch"]

    # Rows are copied as opaque bytes: a structured-array assignment goes field by field (~10x slower).

    def view(self) -> np.ndarray:
        return self.ev[: self.n]

    def _room(self, k: int) -> None:
        if self.n + k > len(self.ev):
            grown = np.zeros(max(2 * len(self.ev), self.n + k), dtype=event_dtype)
            grown.view(_RAW)[: self.n] = self.raw[: self.n]
            self._set(grown)

    def extend(self, rows: np.ndarray) -> None:
        k = len(rows)
        self._room(k)
        self.raw[self.n: self.n + k] = np.ascontiguousarray(rows).view(_RAW)
        self.n += k

    def keep_from(self, i: int) -> None:
        """Drop rows before ``i`` (processed); the rest moves to the front."""
        rest = self.n - i
        if rest > 0 and i > 0:
            self.raw[:rest] = self.raw[i: self.n].copy()
        self.n = max(rest, 0)

    def replace(self, rows: np.ndarray) -> None:
        self.n = 0
        self.extend(rows)


@njit(cache=True)
def exch_sort_nb(raw, ts, n):
    """Sort the rows ``raw[:n]`` (a uint8 [rows, row bytes] view of the queue) in place, stably by ``ts[:n]``
    (their ts_exch); a no-op when already in order (the usual case: rows carried from the last call are sorted
    and new ones mostly follow)."""
    for i in range(1, n):
        if ts[i] < ts[i - 1]:
            break
    else:
        return
    order = np.argsort(ts[:n], kind="mergesort")
    tmp = raw[:n].copy()
    for i in range(n):
        raw[i, :] = tmp[order[i], :]


@njit(cache=True)
def queue_rows_nb(src, n, local, local_n, exch, exch_n, horizon, started, out_counts):
    """Copy ``src[:n]`` into ``local[local_n:]`` and ``exch[exch_n:]`` leaving BBO rows out (room checked by
    the caller); out_counts = (rows kept, BBO rows skipped, kept rows with ts_exch before ``horizon`` once
    ``started``)."""
    k = 0
    bbo = 0
    late = 0
    for j in range(n):
        r = src[j]
        if r.kind == _BBO:
            bbo += 1
            continue
        local[local_n + k] = r
        exch[exch_n + k] = r
        if started and r.ts_exch < horizon:
            late += 1
        k += 1
    out_counts[0] = k
    out_counts[1] = bbo
    out_counts[2] = late


def _touch(arrays) -> None:
    """Write every memory page of ``arrays`` once (same values): freshly allocated buffers are mapped lazily, and
    the first decisions would otherwise pay the page faults of the order lists, rings and output buffers."""
    page = 4096
    for x in arrays:
        if isinstance(x, np.ndarray) and x.nbytes > page and x.flags.c_contiguous:
            b = x.reshape(-1).view(np.uint8)
            b[::page] = b[::page].copy()


class _BoundAddress:
    """A compiled kernel passed to the loop as a first-class function by its cached address (numba's wrapper
    address protocol): a dispatcher argument would be looked up again at every call (~0.5 ms each)."""

    def __init__(self, dispatcher, sig):
        from numba.experimental.function_type import _get_wrapper_address

        self.dispatcher = dispatcher  # keeps the compiled code alive
        self.addr = _get_wrapper_address(dispatcher, sig)

    def __wrapper_address__(self):
        return self.addr


class PaperExchange:
    """Simulator state of a live session; outputs of each step are returned and also kept for the end."""

    def __init__(self, cfg, specs: list, strategy):
        self.cfg = cfg
        self.specs = specs
        self.strategy = gated_spec(strategy)
        self.a = engine.new_sim_arrays(cfg, specs, self.strategy)
        self.gate_col = self.a.strat_state.shape[1] - 1
        self.out = engine._Collector()
        self.entry = None
        self._step_call = None
        self._next_idx = None  # int64 offsets of the next_* arrival times in the run state (set by warm())
        self._flush_idx = None  # (output name, buffer, int64 offset of its row counter) (set by warm())
        self._queue_call = None  # compiled queue_rows_nb entry (set by warm())
        self._local = _Rows()  # received, not yet processed: ts_local order
        self._exch = _Rows()  # the same rows: carried ones in ts_exch order, then the new ones
        #: Queued rows that make the next :meth:`step` call the loop even when nothing else is due (bounds the
        #: work, hence the latency, of the call that runs a decision tick).
        self.max_pending_rows = MAX_PENDING_ROWS
        self.steps = 0  # loop calls
        self.horizon = -1  # every intent before this was processed
        self.events = 0
        self.events_bbo_skipped = 0
        self.late_exch_events = 0  # arrived with ts_exch before the processed horizon (margin too small)
        self.loop_s = 0.0
        self.jit_s = 0.0
        self.started = False
        #: Hold mode (:meth:`hold`): a step's output rows stay in the loop's buffers (the step returns views of
        #: them) until :meth:`take_outputs` copies every held row out at once.
        self.holding = False
        self._held: dict[str, list] = {k: [] for k in OUTPUTS}  # rows moved out of the buffers, not yet taken
        self._sort_call = exch_sort_nb
        self._i_cursor = None  # int64 offsets of i_local / i_exch in the run state (set by warm())

    def set_gate(self, symbol_id: int, gate: int) -> None:
        self.a.strat_state[symbol_id, self.gate_col] = float(gate)

    def gate(self, symbol_id: int) -> int:
        return int(self.a.strat_state[symbol_id, self.gate_col])

    def warm(self) -> None:
        """Load (or compile) the loop kernel and bind the strategy before the first frame arrives."""
        if self.entry is None:
            t = time.perf_counter()
            e = np.zeros(0, dtype=event_dtype)
            self.entry = engine.loop_entry(self.a, e, e)
            self.entry(e, e, 0, False, *self.a.state_args(), self.strategy.decide, *self.a.out_args())
            self._bind()
            self._bind_step(e)
            xq = self._exch
            self._sort_call(xq.u8, xq.ts_exch, 0)  # (loads the kernel)
            _touch(self.a.state_args() + self.a.out_args())
            self.jit_s += time.perf_counter() - t

    def _bind(self) -> None:
        """Arguments after the state arrays, with the kernels (decide and the hooks) bound by address."""

        out = list(self.a.out_args())
        self._decide = self.strategy.decide
        try:
            self._decide = _BoundAddress(self.strategy.decide, engine.decide_signature(self.a))
            if hasattr(engine, "hook_signatures") and len(out) >= 2:
                ev_sig, fill_sig = engine.hook_signatures(self.a)
                out[0] = _BoundAddress(out[0], ev_sig)
                out[1] = _BoundAddress(out[1], fill_sig)
        except Exception:  # noqa: BLE001 - fall back to passing the dispatchers (slower, same result)
            self._decide = self.strategy.decide
            out = list(self.a.out_args())
        self._out_args = tuple(out)
        self._state_args = self.a.state_args()
        # Output-row counters of the run state as one int64 view: a flush is needed only when one is non-zero.
        rs = self.a.rs
        self._counters = rs.view(np.int64)
        self._count_idx = np.array([rs.dtype.fields[k][1] // 8 for k in rs.dtype.names
                                    if k.startswith("n_") and k.endswith("_rows")], dtype=np.int64)
        self._flush_idx = self._buffer_index()
        # The three arrival times due() compares, read from the same int64 view (one record field read ~1 us).
        f = rs.dtype.fields
        names = ("next_decision_ts", "next_req_ts", "next_resp_ts")
        if all(f[k][0] == np.int64 and f[k][1] % 8 == 0 for k in names):
            self._next_idx = tuple(f[k][1] // 8 for k in names)
        for k in ("i_local", "i_exch"):
            if f[k][0] != np.int64 or f[k][1] % 8:
                break
        else:
            self._i_cursor = (f["i_local"][1] // 8, f["i_exch"][1] // 8)
        self._mid_idx = f["n_mid_rows"][1] // 8 if "n_mid_rows" in f and f["n_mid_rows"][1] % 8 == 0 else None
        # Rows from the adapters' buffer into both queues in one compiled call.
        from live.venues.common import entry_point

        xq = self._exch
        self._sort_call = entry_point(exch_sort_nb, typeof(xq.u8), typeof(xq.ts_exch), types.int64)

        e = np.zeros(1, dtype=event_dtype)
        self._queue_counts = np.zeros(3, dtype=np.int64)
        self._queue_call = entry_point(queue_rows_nb, typeof(e), types.int64, typeof(e), types.int64, typeof(e),
                                       types.int64, types.int64, types.boolean, typeof(self._queue_counts))

    def _bind_step(self, e: np.ndarray) -> None:
        """Compile (or load from cache) :func:`paper_step_nb` for these arrays and bind the strategy kernels'
        addresses once; on any failure the session keeps calling the loop entry with the kernels as arguments."""

        from mmlab.data import book_nb
        from mmlab.pipeline import fetch_md
        from mmlab.sim import clock_nb, fees_nb, latency_nb, loop_nb, queue_nb
        from mmlab.sim._cache import tie_cache_to_sources

        self._step_call = None
        try:
            a = self.a
            sigs = (engine.decide_signature(a),) + tuple(engine.hook_signatures(a))
            fns = (self.strategy.decide,) + tuple(a.out_args()[:2])
            addr = function_addresses(fns, sigs)
            ftypes = tuple(types.FunctionType(s) for s in sigs)
            args = (e, e, 0, False, *self._state_args, addr, *ftypes, *a.out_args()[2:])
            sig = tuple(typeof(x) for x in args[:4]) + tuple(typeof(x) for x in self._state_args) + (
                typeof(addr),) + tuple(types.TypeRef(f) for f in ftypes) + tuple(typeof(x) for x in a.out_args()[2:])
            tie_cache_to_sources(paper_step_nb, loop_nb, queue_nb, latency_nb, fees_nb, book_nb, clock_nb, fetch_md)
            key = (sig, tuple(int(x) for x in addr))
            step = _STEP_CACHE.get(sig)
            if step is None:
                paper_step_nb.compile(sig)
                step = _STEP_CACHE[sig] = paper_step_nb.overloads[sig].entry_point
            step(*args)
        except Exception:  # noqa: BLE001 - the loop entry with function arguments gives the same results
            return
        self._step_keep = (fns, key)  # the kernels stay alive as long as their addresses are used
        self._step_call = step
        self._step_mid = (addr, *ftypes)
        self._step_tail = a.out_args()[2:]

    def add(self, events: np.ndarray | EventBuffer | None) -> None:
        """Queue ``events`` (ts_local order; an :class:`EventBuffer` is emptied) for the next loop call."""
        if events is None:
            return
        if isinstance(events, EventBuffer):
            n = events.n
            if not n:
                return
            events.n = 0
            if self._queue_call is not None:
                self._local._room(n)
                self._exch._room(n)
                c = self._queue_counts
                self._queue_call(events.ev, n, self._local.ev, self._local.n, self._exch.ev, self._exch.n,
                                 self.horizon, self.started, c)
                k = int(c[0])
                self._local.n += k
                self._exch.n += k
                self.events += k
                self.events_bbo_skipped += int(c[1])
                self.late_exch_events += int(c[2])
                return
            rows = events.ev[:n]
        else:
            rows = events
        if rows is None or not len(rows):
            return
        bbo = rows["kind"] == _BBO
        if bbo.any():
            self.events_bbo_skipped += int(bbo.sum())
            rows = rows[~bbo]
            if not len(rows):
                return
        k = len(rows)
        self.events += k
        if self.started:
            self.late_exch_events += int((rows["ts_exch"] < self.horizon).sum())
        self._local.extend(rows)
        self._exch.extend(rows)

    def due(self, horizon_ns: int) -> bool:
        """Whether a loop call before ``horizon_ns`` has more to do than apply market rows to the books: a
        decision tick, a request or report arrival is due, the session is not started, or the queued rows
        reached :attr:`max_pending_rows` (book-only rows wait for the next call; the result is the same)."""
        if not self.started:
            return self._local.n > 0
        h = int(horizon_ns)
        nx = self._next_idx
        if nx is not None:
            v = self._counters
            return (self._local.n >= self.max_pending_rows or int(v[nx[0]]) < h or int(v[nx[1]]) < h
                    or int(v[nx[2]]) < h)
        r = self.a.rs[0]
        return (int(r["next_decision_ts"]) < h or int(r["next_req_ts"]) < h or int(r["next_resp_ts"]) < h
                or self._local.n >= self.max_pending_rows)

    def step(self, events: np.ndarray | EventBuffer | None, horizon_ns: int) -> dict[str, list[np.ndarray]]:
        """Add ``events`` (ts_local order) and run the loop up to ``horizon_ns`` (exclusive) when :meth:`due`.

        Returns the output rows produced by this step, lists of arrays by buffer name (:data:`OUTPUTS`): copies,
        or in hold mode (:meth:`hold`) views of the loop's buffers valid until the next :meth:`take_outputs`.
        """
        self.add(events)
        if not self.due(horizon_ns):
            return {k: [] for k in OUTPUTS}
        a = self.a
        local_ev = self._local.view()
        if not self.started:
            # Decision k is at t0 + k * interval, t0 = the first event time (as in the backtest).
            first_exch = int(local_ev["ts_exch"].min())
            t0 = min(int(local_ev[0]["ts_local"]), first_exch)
            skew_ns = int(local_ev[0]["ts_local"]) - first_exch
            if abs(skew_ns) > MAX_CLOCK_SKEW_NS:
                raise DataError(
                    f"exchange time {first_exch} ns is {skew_ns / 1e9:+.1f} s from the local receive "
                    f"clock (limit {MAX_CLOCK_SKEW_NS / 1e9:.0f} s): the machine clock (NTP) or the feed's "
                    "timestamps are wrong; a replayed recording must be sent with current exchange times")
            if horizon_ns <= t0:
                return {k: [] for k in OUTPUTS}
            a.rs["t0"] = t0
            a.rs["next_decision_ts"] = t0 + int(a.sp[0]["interval_ns"])
            self.started = True
        self.warm()
        # Exchange order: rows carried from the last call first, then the new ones, stable by ts_exch (in place).
        xq = self._exch
        self._sort_call(xq.u8, xq.ts_exch, xq.n)
        exch_ev = xq.view()
        v = self._counters
        cur = self._i_cursor
        if cur is not None:
            v[cur[0]] = 0
            v[cur[1]] = 0
        else:
            a.rs["i_local"] = 0
            a.rs["i_exch"] = 0
        hold = self.holding and self._flush_idx is not None
        if hold:
            # Row counts of the buffers before the call: the step's rows are buf[mark:count].
            marks = [int(v[i]) for _, _, i in self._flush_idx]
            new = {k: [] for k in OUTPUTS}
        else:
            marks = {k: len(getattr(self.out, k)) for k in OUTPUTS if hasattr(self.out, k)}
        while True:
            t = time.perf_counter()
            if self._step_call is not None:
                status = self._step_call(local_ev, exch_ev, int(horizon_ns), False, *self._state_args,
                                         *self._step_mid, *self._step_tail)
            else:
                status = self.entry(local_ev, exch_ev, int(horizon_ns), False, *self._state_args, self._decide,
                                    *self._out_args)
            self.loop_s += time.perf_counter() - t
            if status == LoopStatus.FLUSH:
                if hold:
                    self._swap_buffers(marks, new)
                else:
                    self._flush()
                continue
            if status == LoopStatus.RESPONSE_QUEUE_FULL:
                raise MmlabError("paper exchange report queue overflowed (more than RING_CAP reports in flight for "
                                 "one symbol); lower sim.response_latency_ms or the strategy's order rate")
            break
        if hold:
            for (name, buf, i), m in zip(self._flush_idx, marks):
                n = int(v[i])
                if n > m:
                    new[name].append(buf[m:n])
            if self._mid_idx is not None:
                v[self._mid_idx] = 0  # the exchange mid series is not used live (see _flush)
        elif self._counters[self._count_idx].any():
            self._flush()
        if cur is not None:
            self._local.keep_from(int(v[cur[0]]))
            self._exch.keep_from(int(v[cur[1]]))
        else:
            self._local.keep_from(int(a.rs[0]["i_local"]))
            self._exch.keep_from(int(a.rs[0]["i_exch"]))
        self.horizon = max(self.horizon, int(horizon_ns))
        self.steps += 1
        if hold:
            return new
        new = {k: getattr(self.out, k)[marks[k]:] for k in marks}
        if self.holding:  # (no int64 view of the row counters: the copies are held instead)
            for k, v in new.items():
                self._held[k].extend(v)
        # A session runs for days: rows leave with the step that produced them (the runner logs them).
        self.out = engine._Collector()
        return new

    def _flush(self) -> None:
        """The output rows of the loop call into :attr:`out` (:data:`OUTPUTS` only: the exchange mid series the
        backtest keeps for its labels is not used live, its rows are dropped), and the row counters reset."""
        if self._flush_idx is None:
            self.out.flush(self.a)
            return
        v = self._counters
        for name, buf, i in self._flush_idx:
            n = int(v[i])
            if n:
                getattr(self.out, name).append(engine.copy_rows(buf, n))
        v[self._count_idx] = 0

    def hold(self, on: bool = True) -> None:
        """Hold mode on or off. Held, a step copies nothing out: it returns views of its rows in the loop's
        buffers (valid until the next :meth:`take_outputs`; rows of a buffer that filled during a step stay valid
        too: the full buffer is set aside and the loop gets a fresh one), and :meth:`take_outputs` gives every
        row held since the last take, in order, as copies. Switching off takes nothing: take the held rows first."""
        self.holding = bool(on)

    def take_outputs(self) -> dict[str, list[np.ndarray]]:
        """Every output row held since the last take (hold mode), lists of arrays by :data:`OUTPUTS` name, as
        copies; the loop's buffers start empty again."""
        out = self._held
        self._held = {k: [] for k in OUTPUTS}
        if self._flush_idx is None:
            return out
        v = self._counters
        for name, buf, i in self._flush_idx:
            n = int(v[i])
            if n:
                out[name].append(engine.copy_rows(buf, n))
        v[self._count_idx] = 0
        return out

    def held_rows(self) -> int:
        """Output rows (all buffers) held for :meth:`take_outputs`."""
        n = sum(len(x) for parts in self._held.values() for x in parts)
        if self._flush_idx is not None:
            v = self._counters
            n += sum(int(v[i]) for _, _, i in self._flush_idx)
        return n

    def _swap_buffers(self, marks: list, new: dict) -> None:
        """A buffer filled during a held step: every output buffer with rows is set aside as held rows (views
        already returned stay valid) and the loop continues on fresh buffers of the same size."""
        a = self.a
        v = self._counters
        for k, (name, buf, i) in enumerate(self._flush_idx):
            n = int(v[i])
            if n:
                self._held[name].append(buf[:n])
                if n > marks[k]:
                    new[name].append(buf[marks[k]:n])
                setattr(a, name, np.zeros_like(buf))
            marks[k] = 0
        v[self._count_idx] = 0
        self._rebind_outputs()

    def _rebind_outputs(self) -> None:
        """The step arguments after the output buffers of :attr:`a` were replaced."""
        out = list(self._out_args)
        out[2:] = self.a.out_args()[2:]
        self._out_args = tuple(out)
        if self._step_call is not None:
            self._step_tail = self.a.out_args()[2:]
        self._flush_idx = self._buffer_index()

    def _buffer_index(self) -> tuple | None:
        """(output name, buffer, int64 offset of its row counter in the run state) of each :data:`OUTPUTS`
        buffer; None when a counter is not an aligned int64 (the collector's field-by-field flush is used)."""
        a = self.a
        f = a.rs.dtype.fields
        bufs = {"fills": (a.fills, "n_fill_rows"), "oev": (a.oev, "n_order_event_rows"),
                "states": (a.states, "n_state_rows"), "decisions": (a.decisions, "n_decision_rows"),
                "dec_quotes": (a.dec_quotes, "n_decision_quote_rows"),
                "dec_actions": (a.dec_actions, "n_decision_action_rows")}
        if set(bufs) != set(OUTPUTS) or not all(f[k][0] == np.int64 and f[k][1] % 8 == 0 for _, k in bufs.values()):
            return None
        return tuple((name, buf, f[k][1] // 8) for name, (buf, k) in bufs.items())

    @property
    def pending_rows(self) -> int:
        """Rows received but not yet processed by the loop."""
        return self._local.n

    def working_orders(self, symbol_id: int) -> int:
        return int(self.a.ss[symbol_id]["n_local"])


# ------------------------------------------------------------------------- one compiled step per session
#
# Passing the strategy kernels to ``run_loop_nb`` as first-class function arguments makes every call unbox
# them (numba looks each one up through Python, twice, with a pickled signature: ~45 us a call). The step
# entry below takes their addresses as one int64 array instead, bound once per session, and builds the
# function values inside compiled code: the loop itself, and its decisions, are unchanged.


@intrinsic
def _function_from_address(typingctx, c_addr, jit_addr, ftype_ref):
    """A first-class function value of type ``ftype_ref.instance_type`` from its cfunc and jit addresses."""
    fty = ftype_ref.instance_type
    sig = fty(types.int64, types.int64, ftype_ref)

    def codegen(context, builder, signature, args):
        vp = context.get_value_type(types.voidptr)
        s = cgutils.create_struct_proxy(fty)(context, builder)
        s.c_addr = builder.inttoptr(args[0], vp)
        s.py_addr = llvm_ir.Constant(vp, None)
        s.jit_addr = builder.inttoptr(args[1], vp)
        return s._getvalue()

    return sig, codegen


@njit(cache=True)
def paper_step_nb(local_ev, exch_ev, horizon, is_final, sp, sym, rs, ss, book, bid_qty, ask_qty, orders, exch_list,
                  local_list, req_ring, resp_ring, consumed, lat_table, fn_addr, decide_t, on_event_t, on_fill_t,
                  strat_params, strat_state, view, quotes, actions, counts, fills, oev, states, mids, decisions,
                  dec_quotes, dec_actions, fill_rec):
    """``run_loop_nb`` with the strategy kernels given by address (``fn_addr``: cfunc, jit of decide, on_event,
    on_fill); returns its ``LoopStatus``."""
    decide = _function_from_address(fn_addr[0], fn_addr[1], decide_t)
    on_event = _function_from_address(fn_addr[2], fn_addr[3], on_event_t)
    on_fill = _function_from_address(fn_addr[4], fn_addr[5], on_fill_t)
    return run_loop_nb(local_ev, exch_ev, horizon, is_final, sp, sym, rs, ss, book, bid_qty, ask_qty, orders,
                       exch_list, local_list, req_ring, resp_ring, consumed, lat_table, decide, on_event, on_fill,
                       strat_params, strat_state, view, quotes, actions, counts, fills, oev, states, mids, decisions,
                       dec_quotes, dec_actions, fill_rec)


def function_addresses(dispatchers, signatures) -> np.ndarray:
    """(cfunc address, jit address) of each compiled kernel for its signature, as :func:`paper_step_nb` takes them."""
    from numba.experimental.function_type import _get_jit_address, _get_wrapper_address

    out = []
    for d, sig in zip(dispatchers, signatures):
        out += [_get_wrapper_address(d, sig), _get_jit_address(d, sig)]
    return np.array(out, dtype=np.int64)
