"""Model scores and feature collectors of a live paper session.

Model scoring (``[model] id``, the backtest's keys: ``id`` = registry id, ``active``/``shadow`` slot or model
directory; ``shadow_id``; ``registry``; ``features``; ``tau_entry``/``tau_hold`` overrides). The session runs the
``[strategy]`` preset through the pipeline stages (``grid`` as ``grid_pipeline``, as the backtest does) with
``queue_aware.use_model_score`` and the model's thresholds. At every decision tick :class:`LiveScoring`

1. steps the paper exchange up to the tick (everything before it; rows received at exactly the tick's time are
   applied to a copy of the book, as the loop applies them before the tick's decision),
2. reads each symbol's level-1 view of the local book (best prices, touch quantities: what the tick's state row
   records) and computes the tick's feature row with :func:`mmlab.features.collectors.collector_tick_nb`, one
   collector per symbol fed at every tick: the kernel and the causal state that build the training set and the
   backtest's scores (:func:`mmlab.ml.dataset.tick_features_arrays`),
3. scores the float32 row with :meth:`mmlab.ml.infer.OnnxScorer.score_row` (onnxruntime only: no LightGBM or
   scikit-learn in the process) and puts the score into the symbol's ``inp.model_score``; the tick's decision then
   runs in the simulator's loop, exactly as :func:`mmlab.ml.loop_scores.scored_pipeline_decide_nb` sets it in a
   backtest. A backtest of the session's recording with the same config and model gives the same decisions.

A shadow model (``[model] shadow_id``) is scored on the same rows and only reported (``summary.json["model"]
["shadow_score_distribution"]``, gauge ``mm_model_shadow_score``). The wall time of each tick's rows and scores
goes to ``mm_model_score_seconds``.

Feature collectors (always on): one :mod:`mmlab.features.collectors` record per symbol, fed from the session's
stream: public trades of the received rows, our paper fills, and at each decision tick the local book's top
levels (read after the step that ran the tick), the orders placed, the runner's step time (latency sample) and
the mark-to-mid pnl; :meth:`LiveScoring.publish` sets them as the gauges ``mm_symbol_*{symbol}``.
"""

from __future__ import annotations

import collections
import dataclasses
import time

import numpy as np
from numba import njit

from mmlab.data.book_nb import (
    NO_ASK_TICK,
    NO_BID_TICK,
    book_apply_nb,
    book_depth_nb,
    book_level_qty_nb,
)
from mmlab.features.collectors import (
    METRICS,
    TICK_COLUMNS,
    collector_on_book_nb,
    collector_on_decision_nb,
    collector_on_fill_nb,
    collector_tick_nb,
    collectors_on_trades_nb,
    new_collectors,
)
from mmlab.types import OrderEventKind, Side

_BID = int(Side.BID)
_ASK = int(Side.ASK)
_SENT = int(OrderEventKind.SENT)
_ACCEPTED = int(OrderEventKind.ACCEPTED)
#: Book levels per side the collectors read at a decision tick (the largest default imbalance depth).
DEPTH_LEVELS = 10
#: Tick features of the training set -> collector columns (the order :func:`mmlab.ml.dataset.tick_features_arrays`
#: pairs them in).
_FEATURE_COLUMN = None


def _feature_columns() -> dict:
    global _FEATURE_COLUMN
    if _FEATURE_COLUMN is None:
        from mmlab.ml.dataset import TICK_FEATURES

        _FEATURE_COLUMN = {f: TICK_COLUMNS.index(c) for f, c in zip(TICK_FEATURES, TICK_COLUMNS)}
    return _FEATURE_COLUMN


# ----------------------------------------------------------------------------------------------- kernels


@njit(cache=True, error_model="numpy")
def level1_nb(book, bid_qty, ask_qty, b, tick_size, out):
    """The level-1 view of book ``b`` as a decision tick's state row records it, into ``out``: mid (price units,
    NaN when a side is empty), spread (ticks, NaN when a side is empty), touch quantities (0 when empty)."""
    bb = book[b].best_bid_tick
    ba = book[b].best_ask_tick
    ok_b = bb != NO_BID_TICK
    ok_a = ba != NO_ASK_TICK
    mid_ticks = 0.5 * (bb + ba) if ok_b and ok_a else np.nan
    out[0] = mid_ticks * tick_size
    out[1] = float(ba - bb) if ok_b and ok_a else np.nan
    out[2] = book_level_qty_nb(book, bid_qty, ask_qty, b, _BID, bb) if ok_b else 0.0
    out[3] = book_level_qty_nb(book, bid_qty, ask_qty, b, _ASK, ba) if ok_a else 0.0


@njit(cache=True, error_model="numpy")
def tick_rows_nb(params, state, now_ns, book, bid_qty, ask_qty, n_sym, tick_sizes, view, out):
    """Feature row of every symbol at the decision tick ``now_ns`` (local books ``n_sym + s``) into ``out[s]``."""
    for s in range(n_sym):
        level1_nb(book, bid_qty, ask_qty, n_sym + s, tick_sizes[s], view)
        collector_tick_nb(params[s], state[s], now_ns, view[0], view[1], view[2], view[3], out[s])


@njit(cache=True, error_model="numpy")
def apply_rows_nb(book, bid_qty, ask_qty, n_sym, ev, n):
    """Book rows of ``ev[:n]`` onto the local books (``n_sym + symbol_id``), as the loop applies them."""
    for j in range(n):
        r = ev[j]
        book_apply_nb(book, bid_qty, ask_qty, n_sym + np.int64(r.symbol_id), np.int64(r.kind), np.int64(r.side),
                      r.price_ticks, r.qty)


@njit(cache=True, error_model="numpy")
def collectors_on_fills_nb(params, state, fills, tick_sizes, notional):
    """Our fills into their symbols' collectors (prices in ticks); ``notional[s]`` accumulates traded notional."""
    for j in range(len(fills)):
        f = fills[j]
        s = np.int64(f.symbol_id)
        if s >= len(state):
            continue
        collector_on_fill_nb(params[s], state[s], f.ts_local, np.int64(f.side), float(f.price_ticks), f.qty, f.maker,
                             f.mid_send_ticks, f.mid_fill_ticks)
        notional[s] += f.price_ticks * tick_sizes[s] * f.qty


@njit(cache=True, error_model="numpy")
def collectors_on_ticks_nb(params, state, states, oev, book, bid_qty, ask_qty, n_sym, latency_ns, notional, tq, bq,
                           aq):
    """Decision-tick rows (``sim_state_row_dtype``) into their symbols' collectors: the local book's top levels
    (as held now), orders placed at the tick (SENT rows of ``oev``), the newest queue ahead of an acceptance, the
    latency sample and the mark-to-mid pnl as equity."""
    n_lv = len(tq)
    for j in range(len(states)):
        r = states[j]
        s = np.int64(r.symbol_id)
        if s >= len(state):
            continue
        b = n_sym + s
        nb = book_depth_nb(book, bid_qty, ask_qty, b, _BID, n_lv, tq, bq)
        na = book_depth_nb(book, bid_qty, ask_qty, b, _ASK, n_lv, tq, aq)
        collector_on_book_nb(params[s], state[s], r.ts_local, book[b].best_bid_tick, book[b].best_ask_tick, bq, nb,
                             aq, na)
        placed = 0
        queue = np.nan
        for k in range(len(oev)):
            e = oev[k]
            if e.symbol_id != s:
                continue
            if e.kind == _SENT and e.ts_local == r.ts_local:
                placed += 1
            elif e.kind == _ACCEPTED and e.ts_local <= r.ts_local:
                queue = e.queue_ahead_qty
        collector_on_decision_nb(params[s], state[s], r.ts_local, placed, latency_ns, queue, r.pnl, notional[s])


# ----------------------------------------------------------------------------------------------- session


def _distribution(x) -> dict:
    from mmlab.ml.loop_scores import _distribution as dist

    return dist(np.asarray(x, dtype=np.float64))


@dataclasses.dataclass
class _Model:
    scorer: object
    cols: np.ndarray  # collector columns of the model's features, in its order
    requested: str


class LiveScoring:
    """Feature collectors of a session and, with ``[model] id``, the per-tick model scores (see module doc).

    Made by the runner once its symbol specs are known and before its paper exchange (with a model it replaces
    ``runner.strategy`` by the scored pipeline).
    """

    def __init__(self, runner) -> None:
        self.runner = runner
        cfg = runner.cfg
        n = len(runner.symbols)
        self.n = n
        self.params, self.state = new_collectors(n)
        self.notional = np.zeros(n)
        self._tq = np.zeros(DEPTH_LEVELS, np.int64)
        self._bq = np.zeros(DEPTH_LEVELS)
        self._aq = np.zeros(DEPTH_LEVELS)
        self._ticks_arr = np.array([sp.tick_size for sp in runner.specs], dtype=np.float64)
        self._score_in = None  # view of the strategy params' inp.model_score (bound at the first tick)
        self.model: _Model | None = None
        self.shadow: _Model | None = None
        self.info: dict | None = None
        self._pub: dict | None = None  # metric children and columns of publish(), bound at its first call
        mc = cfg.model
        if mc.id:
            self._load_model(cfg, runner)

    def _load_model(self, cfg, runner) -> None:
        from mmlab.ml.loop_scores import (
            _pipeline_name,
            _scorer,
            model_thresholds,
            scored_build_params,
        )
        from mmlab.sim.strategies import get_strategy

        mc = cfg.model
        fc = _feature_columns()
        sc, feats = _scorer(mc, mc.id)
        self.model = _Model(sc, np.array([fc[f] for f in feats], dtype=np.int64), mc.id)
        if mc.shadow_id:
            shc, sfeats = _scorer(mc, mc.shadow_id)
            self.shadow = _Model(shc, np.array([fc[f] for f in sfeats], dtype=np.int64), mc.shadow_id)
        tau_entry, tau_hold = model_thresholds(mc, sc)
        base = get_strategy(_pipeline_name(cfg.strategy.name))
        runner.strategy = dataclasses.replace(base, name=f"{base.name}+model",
                                              build_params=scored_build_params(base.build_params, tau_entry, tau_hold))
        # Tick-feature collectors: mid samples at decision ticks only (the training set's collectors).
        self.tparams, self.tstate = new_collectors(self.n, ret_short_ms=1_000, ret_long_ms=5_000, vol_window_ms=5_000)
        self.rows = np.zeros((self.n, len(TICK_COLUMNS)))
        self._view = np.zeros(4)
        self.scores: collections.deque = collections.deque(maxlen=1_000_000)
        self.shadow_scores: collections.deque = collections.deque(maxlen=1_000_000)
        self.score_ns: collections.deque = collections.deque(maxlen=1_000_000)
        self._lat_pending: list[int] = []
        self._last = np.full(self.n, np.nan)
        self._last_shadow = np.full(self.n, np.nan)
        self._ticks = [0] * self.n
        self._ticks_pub = [0] * self.n
        self.n_ticks = 0
        self.info = {"id": sc.model_id, "requested": mc.id, "schema_hash": sc.schema_hash,
                     "features": list(sc.features), "tau_entry": tau_entry, "tau_hold": tau_hold, "scoring": "row",
                     "shadow_id": self.shadow.scorer.model_id if self.shadow else None}

    def warm(self) -> None:
        """Load (or compile) the collector and scoring kernels with the argument types the session passes them,
        so the first trade, fill and decision tick do not pay numba's cache load (milliseconds) mid-feed."""
        from mmlab.types import (
            event_dtype,
            fill_dtype,
            order_event_dtype,
            sim_state_row_dtype,
        )

        a = self.runner.paper.a
        n = self.n
        ev = np.zeros(1, dtype=event_dtype)
        collectors_on_trades_nb(self.params, self.state, ev, 0)
        collectors_on_fills_nb(self.params, self.state, np.zeros(0, dtype=fill_dtype), self._ticks_arr,
                               self.notional)
        collectors_on_ticks_nb(self.params, self.state, np.zeros(0, dtype=sim_state_row_dtype),
                               np.zeros(0, dtype=order_event_dtype), a.book, a.bid_qty, a.ask_qty, n, np.int64(0),
                               self.notional, self._tq, self._bq, self._aq)
        if self.model is not None:
            apply_rows_nb(a.book.copy(), a.bid_qty.copy(), a.ask_qty.copy(), n, ev, 0)
            tparams, tstate = new_collectors(n)
            tick_rows_nb(tparams, tstate, np.int64(0), a.book, a.bid_qty, a.ask_qty, n, self._ticks_arr, self._view,
                         np.zeros_like(self.rows))

    # ---------------------------------------------------------------------------------------- stepping

    def step(self, horizon_ns: int) -> dict:
        """``runner.paper.step(None, horizon_ns)`` with every decision tick before the horizon scored first."""
        paper = self.runner.paper
        h = int(horizon_ns)
        outs = []
        if not paper.started:
            if not paper.pending_rows:
                return paper.step(None, h)
            # Start the loop without running a tick (the first is at t0 + interval; see PaperExchange.step).
            ev = paper._local.view()
            t0 = min(int(ev[0]["ts_local"]), int(ev["ts_exch"].min()))
            outs.append(paper.step(None, min(h, t0 + 1)))
            if not paper.started:
                return outs[0]
        rs = paper.a.rs
        interval = int(paper.a.sp[0]["interval_ns"])
        t = int(rs[0]["next_decision_ts"])
        if t >= h:
            out = paper.step(None, h)
            return out if not outs else _merge(outs + [out])
        # Everything before the first tick (the loop may hold queued rows back when nothing is due).
        keep = paper.max_pending_rows
        paper.max_pending_rows = 0
        try:
            outs.append(paper.step(None, t))
        finally:
            paper.max_pending_rows = keep
        while t < h:
            self.score_tick(t)
            outs.append(paper.step(None, min(h, t + interval)))  # the tick's decision and what precedes the next
            nt = int(rs[0]["next_decision_ts"])
            if nt <= t:
                break  # (not reached: the tick ran)
            t = nt
        return _merge(outs)

    def score_tick(self, now_ns: int) -> None:
        """Feature rows of every symbol at the tick ``now_ns`` (the loop processed everything before it), the
        model's scores into the strategy inputs, the shadow's scores into the report."""
        t_a = time.perf_counter_ns()
        paper = self.runner.paper
        a = paper.a
        n = self.n
        book, bid_qty, ask_qty = a.book, a.bid_qty, a.ask_qty
        ev = paper._local.view()
        k = 0
        while k < len(ev) and int(ev[k]["ts_local"]) == now_ns:
            k += 1
        if k:
            # Rows received at exactly the tick's time reach the book before its decision (the loop's order).
            book, bid_qty, ask_qty = book.copy(), bid_qty.copy(), ask_qty.copy()
            apply_rows_nb(book, bid_qty, ask_qty, n, ev, k)
        if self._score_in is None:
            self._score_in = a.strat_params["inp"]["model_score"]  # a view: writes reach the loop's params
        tick_rows_nb(self.tparams, self.tstate, np.int64(now_ns), book, bid_qty, ask_qty, n, self._ticks_arr,
                     self._view, self.rows)
        m, sh = self.model, self.shadow
        for s in range(n):
            x = self.rows[s, m.cols]
            v = m.scorer.score_row(x)
            self._score_in[s] = v
            self._last[s] = v
            self.scores.append(v)
            self._ticks[s] += 1
            if sh is not None:
                w = sh.scorer.score_row(self.rows[s, sh.cols])
                self._last_shadow[s] = w
                self.shadow_scores.append(w)
        self.n_ticks += 1
        dt_ns = time.perf_counter_ns() - t_a
        self.score_ns.append(dt_ns)
        self._lat_pending.append(dt_ns)

    # ----------------------------------------------------------------------------------------- collectors

    def on_events(self, buffer) -> None:
        """Public trades of the rows received since the last step (before the paper exchange takes them)."""
        if buffer.n:
            collectors_on_trades_nb(self.params, self.state, buffer.ev, buffer.n)

    def on_output(self, out: dict) -> None:
        """Fills and decision ticks of one step's outputs into the collectors."""
        if not (out["fills"] or out["states"]):
            return
        a = self.runner.paper.a
        for f in out["fills"]:
            collectors_on_fills_nb(self.params, self.state, f, self._ticks_arr, self.notional)
        if out["states"]:
            steps = self.runner.step_ns
            lat = int(steps[-1]) if steps else -1  # the runner's last step (frames -> decisions), ns
            oev = np.concatenate(out["oev"]) if len(out["oev"]) > 1 else (out["oev"][0] if out["oev"] else
                                                                            _EMPTY_OEV)
            for rows in out["states"]:
                collectors_on_ticks_nb(self.params, self.state, rows, oev, a.book, a.bid_qty, a.ask_qty, self.n,
                                       np.int64(lat), self.notional, self._tq, self._bq, self._aq)

    # ------------------------------------------------------------------------------------------- output

    def publish(self, metrics) -> None:
        """The collectors' values as ``mm_symbol_*`` gauges and the model's scores/latencies (runner publication):
        :meth:`publish_symbol` of every symbol, then :meth:`publish_model`."""
        for i in range(self.n):
            self.publish_symbol(metrics, i)
        self.publish_model(metrics)

    def publish_symbol(self, metrics, i: int) -> None:
        """Symbol ``i``'s collector values as its ``mm_symbol_*`` gauges. The labelled children are resolved once
        (:meth:`_bind_gauges`); a gauge is set only when its value changed since its last publication (a gauge the
        runner sets too, ``mm_symbol_spread_ticks``, every time)."""
        if self._pub is None or self._pub["metrics"] is not metrics:
            self._bind_gauges(metrics)
        p = self._pub
        last, children, shared = p["last"][i], p["children"][i], p["shared"]
        for j, v in enumerate(self._metric_values(i)):
            o = last[j]
            if (v != o and not (v != v and o != o)) or j in shared:  # noqa: PLR0124 (NaN after NaN: unchanged)
                children[j].set(v)
                last[j] = v

    def publish_model(self, metrics) -> None:
        """The model's last scores, scored-tick counts and scoring latencies (nothing without ``[model] id``)."""
        from live.metrics import observe_many

        if self.model is None:
            return
        if self._pub is None or self._pub["metrics"] is not metrics:
            self._bind_gauges(metrics)
        p = self._pub
        for i in range(self.n):
            if np.isfinite(self._last[i]):
                p["score"][i].set(float(self._last[i]))
            if self.shadow is not None and np.isfinite(self._last_shadow[i]):
                p["shadow"][i].set(float(self._last_shadow[i]))
            d = self._ticks[i] - self._ticks_pub[i]
            if d:
                p["ticks"][i].inc(d)
                self._ticks_pub[i] = self._ticks[i]
        if self._lat_pending:
            observe_many(metrics.model_score_latency, np.array(self._lat_pending, dtype=np.float64) / 1e9)
            self._lat_pending.clear()

    def _bind_gauges(self, metrics) -> None:
        """The labelled children of every (symbol, collector metric) and of the model's per-symbol metrics, and
        the collector state's 8-byte columns holding the metrics (one gather per publication)."""
        syms = self.runner.symbols
        gauges = metrics.sym_features
        own = {id(g) for g in (metrics.sym_mid, metrics.sym_spread, metrics.sym_imbalance, metrics.halted)}
        names = list(METRICS)
        st = self.state
        cols, is_int = [], []
        for name in names:
            fld, k = METRICS[name]
            ft, off = st.dtype.fields[fld][:2]
            base = ft.base if ft.subdtype else ft
            if base.kind not in "fi" or base.itemsize != 8 or off % 8:
                cols = None  # (not the collector layout: read field by field)
                break
            cols.append(off // 8 + max(k, 0))
            is_int.append(base.kind == "i")
        if not (st.flags.c_contiguous and st.dtype.itemsize % 8 == 0):
            cols = None
        self._pub = {
            "metrics": metrics, "names": names,
            "cols": None if cols is None else np.array(cols, dtype=np.int64),
            "int_cols": None if cols is None else np.array(cols, dtype=np.int64)[np.array(is_int, dtype=bool)],
            "int_at": [j for j, x in enumerate(is_int) if x] if cols is not None else [],
            "children": [[gauges[name].labels(s) for name in names] for s in syms],  # [symbol][metric]
            "shared": {j for j, name in enumerate(names) if id(gauges[name]) in own},
            "last": [[object()] * len(names) for _ in syms],  # (never equal: the first publication sets all)
        }
        if self.model is not None:  # (a session without a model exposes no model series)
            self._pub.update(score=[metrics.model_score.labels(s) for s in syms],
                             shadow=[metrics.model_shadow_score.labels(s) for s in syms] if self.shadow else None,
                             ticks=[metrics.model_ticks.labels(s) for s in syms])

    def _metric_values(self, i: int) -> list[float]:
        """Symbol ``i``'s values of :data:`METRICS` (in its order) from the collector state, as Python floats."""
        p = self._pub
        st = self.state
        cols = p["cols"]
        if cols is None:
            rec = st[i]
            return [float(rec[fld] if k < 0 else rec[fld][k]) for fld, k in METRICS.values()]
        n = len(st)
        row = st.view(np.float64).reshape(n, -1)[i, cols].tolist()
        if p["int_at"]:
            for j, v in zip(p["int_at"], st.view(np.int64).reshape(n, -1)[i, p["int_cols"]].tolist()):
                row[j] = float(v)
        return row

    def summary(self) -> dict:
        """``summary.json`` keys: ``model`` (as the backtest's, plus score latency) and ``features`` (the
        collectors' final values per symbol)."""
        from mmlab.features.collectors import metric_values

        out = {"features": {sym: {k: (v if np.isfinite(v) else None) for k, v in metric_values(self.state, i).items()}
                            for i, sym in enumerate(self.runner.symbols)}}
        if self.model is None:
            return out
        lat = np.array(self.score_ns, dtype=np.float64) / 1e3
        out["model"] = {**self.info, "n_ticks_scored": int(np.isfinite(np.array(self.scores, dtype=np.float64)).sum()),
                        "n_decision_ticks_scored": int(self.n_ticks),
                        "model_score_distribution": _distribution(self.scores),
                        "shadow_score_distribution": _distribution(self.shadow_scores) if self.shadow else None,
                        "score_us_p50": float(np.percentile(lat, 50)) if len(lat) else None,
                        "score_us_p99": float(np.percentile(lat, 99)) if len(lat) else None}
        return out


def _merge(outs: list[dict]) -> dict:
    if len(outs) == 1:
        return outs[0]
    merged = {k: [] for k in outs[0]}
    for o in outs:
        for k, v in o.items():
            merged[k].extend(v)
    return merged


def _empty_oev():
    from mmlab.types import order_event_dtype

    return np.zeros(0, dtype=order_event_dtype)


_EMPTY_OEV = _empty_oev()
