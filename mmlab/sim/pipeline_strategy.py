"""The shared pipeline as a simulator strategy: ``decide_nb`` behind the loop's strategy signature and hooks.

``pipeline_sim_decide_nb`` has the decision signature of :mod:`mmlab.sim.grid_nb`; its params array is one
``pipeline_dtype`` record per symbol (params and states of the six stages live there). At each decision it fills
the record's inputs from the local book (best prices, top-N depth via ``book_depth_nb``: ``fetch_md.depth_levels``
and ``spread.imbalance_levels``, and ``guards.liq_gate_levels`` only when the liquidity gate or queue_aware is on,
or the book has counted no message) and the position, brings fetch_md's market-data status ``md`` up to date with
the book messages the event loop counted in the book record since the last decision (``md_sync_nb``: the same
status as ``md_on_book_update_nb`` at each message, without a call per message), so the book's age at a decision
is ``now - ts_local`` of the last message, and an update_id gap / rewind (per ``fetch_md.seq_check``) invalidates
the view until a message holding a SNAPSHOT/CLEAR, with fetch_md's counters; then it runs the six stages on the
symbol's active orders and writes the quotes and actions; the returned reason packs the six stage reasons and
the QuoteAction (``pack_reasons_nb``; ``mmlab.pipeline_config.unpack_reasons`` splits it).

Between decisions the loop's hooks keep the record current, as the strategy sees the market (local time):

- ``pipeline_on_event_nb`` (the spec asks the loop for every trade: ``HookEvents.TRADES``; book rows are
  ignored): each public trade feeds the spread stage's online estimators (``spread_on_trade_nb``: arrival
  intensity by depth, per-side traded volume rates; volatility samples the mid at decisions);
- ``pipeline_on_fill_nb`` (every fill report): the position and its average entry price (``inp.entry_price``,
  quote currency, NaN when flat; read by the near-liquidation guard).

Balance and equity stay unknown (free balance unlimited: the notional cap applies; kill switch off). Called
directly, on a book that counted no message (``md.last_ts_exch_ns`` never set), the decision function keeps
``md`` from what the decisions see: the book counts as updated at the first decision whose top of book differs
from the previous one.

The decision function and both hooks, like the stages, are compiled without reference counting
(``_nrt=False``: they allocate nothing, and the loop calls them through first-class function pointers with the
book and strategy arrays, whose counting at each call would cost atomic instructions).

On timed ticks (``pipeline.sample_stage_tracing``; the loop sets ``state[s, 0] = 1``) the stages run one by one
between reads of the cycle counter and their cycles go to ``state[s, 1:7]`` (``STAGE_NAMES`` order), with the
same result as ``decide_nb``.

>>> from mmlab.sim.engine import simulate  # doctest: +SKIP
>>> simulate(cfg, specs, windows, strategy=pipeline_strategy_spec(grid_pipeline_params))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from mmlab.data.book_nb import book_depth_nb
from mmlab.pipeline.decide import decision_reset_nb, pack_reasons_nb
from mmlab.pipeline.emit import emit_nb
from mmlab.pipeline.fetch_md import fetch_md_nb, md_sync_nb
from mmlab.pipeline.guards import guards_nb
from mmlab.pipeline.inventory import inventory_nb
from mmlab.pipeline.queue_aware import queue_aware_nb
from mmlab.pipeline.spread import spread_nb, spread_on_trade_nb
from mmlab.sim.clock_nb import cycles_nb
from mmlab.types import (
    MAX_QUOTE_LEVELS,
    PIPELINE_DEPTH_MAX,
    HookEvents,
    Kind,
    OrderType,
    Side,
    pipeline_dtype,
)

__all__ = ["STAGE_NAMES", "grid_pipeline_spec", "pipeline_on_event_nb", "pipeline_on_fill_nb",
           "pipeline_sim_decide_nb", "pipeline_source_modules", "pipeline_strategy_spec", "tie_caches"]

_BID = int(Side.BID)
_ASK = int(Side.ASK)
_LIMIT = int(OrderType.LIMIT)
_TRADE = int(Kind.TRADE)

#: Stage timers of the pipeline strategy, in stage order (summary keys of ``stage_latency_ns``).
STAGE_NAMES = ("stage_fetch_md", "stage_spread", "stage_guards", "stage_inventory", "stage_queue_aware", "stage_emit")
N_STAGES = len(STAGE_NAMES)
#: State columns per symbol: 0 = "time this tick" flag (set by the loop), 1..6 = stage cycles.
N_STATE = 1 + N_STAGES


@njit(cache=True, _nrt=False)
def pipeline_on_event_nb(symbol_id, ev, book, bid_qty, ask_qty, b, params, state):
    """Loop hook: trades feed the spread estimators (book messages reach fetch_md through the book record)."""
    if ev.kind == _TRADE:
        pipe = params[symbol_id]
        spread_on_trade_nb(pipe.spread_params, pipe.spread_state, ev.ts_local, np.int64(ev.side), ev.price_ticks,
                           ev.qty, book[b].best_bid_tick, book[b].best_ask_tick)


@njit(cache=True, _nrt=False)
def pipeline_on_fill_nb(symbol_id, now_ns, fill, params, state):
    """Loop hook: a fill report updates the position and its average entry price (quote currency)."""
    pipe = params[symbol_id]
    x = pipe.inp
    pos0 = x.position
    q = fill.side * fill.qty
    pos1 = pos0 + q
    price = fill.price_ticks * pipe.inventory_params.tick_size
    entry = x.entry_price
    if abs(pos1) <= 1e-9 * abs(q):
        entry = np.nan
    elif pos0 == 0.0 or np.isnan(entry) or pos0 * pos1 < 0.0:
        entry = price  # opened, or flipped through zero: the fill's price
    elif pos0 * q > 0.0:
        entry = (entry * abs(pos0) + price * abs(q)) / (abs(pos0) + abs(q))
    x.position = pos1
    x.entry_price = entry


# Inlined into the decision function: a call would pass the orders, quotes and actions arrays and the state
# array word by word (about 30 machine words) once per decision.
@njit(cache=True, _nrt=False, inline="always")
def _decide_stages_nb(now_ns, pipe, orders, n_orders, quotes, actions, state, s, timed):
    """``decide_nb``'s six stages in order; on ``timed`` ticks the cycle counter is read between stages and the
    cycles go to ``state[s, 1:7]``. Returns the number of actions."""
    out = pipe.out
    inp = pipe.inp
    decision_reset_nb(out, now_ns)
    c0 = cycles_nb() if timed else 0
    fetch_md_nb(now_ns, inp, pipe.md, pipe.fetch_params, pipe.fetch_state, out)
    c1 = cycles_nb() if timed else 0
    spread_nb(now_ns, inp, pipe.bid_ticks, pipe.bid_qty, pipe.ask_ticks, pipe.ask_qty, pipe.spread_params,
              pipe.spread_state, out)
    c2 = cycles_nb() if timed else 0
    guards_nb(now_ns, inp, pipe.bid_ticks, pipe.bid_qty, pipe.ask_ticks, pipe.ask_qty, pipe.guard_params,
              pipe.guard_state, out)
    c3 = cycles_nb() if timed else 0
    inventory_nb(now_ns, inp, pipe.inventory_params, pipe.inventory_state, out, quotes)
    c4 = cycles_nb() if timed else 0
    queue_aware_nb(now_ns, inp, pipe.bid_ticks, pipe.bid_qty, pipe.ask_ticks, pipe.ask_qty, orders, n_orders,
                   pipe.queue_params, pipe.queue_state, out, quotes)
    c5 = cycles_nb() if timed else 0
    emit_nb(now_ns, inp, orders, n_orders, pipe.emit_params, pipe.emit_state, out, quotes, actions)
    if timed:
        c6 = cycles_nb()
        state[s, 1] = c1 - c0
        state[s, 2] = c2 - c1
        state[s, 3] = c3 - c2
        state[s, 4] = c4 - c3
        state[s, 5] = c5 - c4
        state[s, 6] = c6 - c5
    return out.n_actions


@njit(cache=True, _nrt=False)
def _view_levels_nb(pipe, inferring):
    """Depth levels per side the stages read this tick: fetch_md's requested depth and the imbalance levels, plus
    the liquidity gate's levels when a reader of deeper held levels is on (the gate, queue_aware's level
    quantities at working-order prices) or when book updates are inferred from the decisions (``inferring``)."""
    n = max(pipe.fetch_params.depth_levels, pipe.spread_params.imbalance_levels, 1)
    g = pipe.guard_params
    q = pipe.queue_params
    deep = (inferring or (g.liq_gate_alpha > 0.0 and g.liq_gate_qty > 0.0) or q.keep_ticks > 0
            or q.keep_back_ticks > 0 or q.tau_entry > 0.0 or q.tau_hold > 0.0)
    if deep:
        n = max(n, g.liq_gate_levels)
    return min(n, PIPELINE_DEPTH_MAX)


@njit(cache=True, _nrt=False)
def pipeline_sim_decide_nb(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
                           out_quotes, out_actions, out_n):
    """Strategy decision function running the pipeline record ``params[symbol_id]``; returns packed reasons."""
    pipe = params[symbol_id]
    md = pipe.md
    md_sync_nb(md, pipe.fetch_params, book[b])
    x = pipe.inp
    prev_bb = x.best_bid_tick
    prev_ba = x.best_ask_tick
    prev_nb = x.n_bid_levels
    prev_na = x.n_ask_levels
    prev_qb = pipe.bid_qty[0]
    prev_qa = pipe.ask_qty[0]
    n = _view_levels_nb(pipe, md.last_ts_exch_ns < 0)
    x.best_bid_tick = book[b].best_bid_tick
    x.best_ask_tick = book[b].best_ask_tick
    x.n_bid_levels = book_depth_nb(book, bid_qty, ask_qty, b, _BID, n, pipe.bid_ticks, pipe.bid_qty)
    x.n_ask_levels = book_depth_nb(book, bid_qty, ask_qty, b, _ASK, n, pipe.ask_ticks, pipe.ask_qty)
    if x.n_bid_levels == 0:
        pipe.bid_qty[0] = 0.0
    if x.n_ask_levels == 0:
        pipe.ask_qty[0] = 0.0
    if md.last_ts_exch_ns < 0:
        # The book counted no message (a direct call, or none yet): infer updates from decisions.
        changed = (x.best_bid_tick != prev_bb or x.best_ask_tick != prev_ba or x.n_bid_levels != prev_nb
                   or x.n_ask_levels != prev_na or pipe.bid_qty[0] != prev_qb or pipe.ask_qty[0] != prev_qa)
        if changed or md.n_updates == 0:
            md.last_ts_local_ns = now_ns
            md.n_updates += 1
    x.position = position
    x.free_balance = np.inf
    timed = state.shape[1] > N_STAGES and state[symbol_id, 0] != 0.0
    n_a = _decide_stages_nb(now_ns, pipe, orders, n_orders, out_quotes, out_actions, state, symbol_id, timed)
    for k in range(n_a):
        out_actions[k].order_type = _LIMIT
    out_n[0] = pipe.out.n_quotes
    out_n[1] = n_a
    return pack_reasons_nb(pipe.out)


def pipeline_source_modules() -> list:
    """The modules whose kernels are compiled into the pipeline's decision function and hooks (stages, features,
    book, clock, record types): a change in any of them must make those cached kernels stale."""
    from mmlab import types
    from mmlab.data import book_nb
    from mmlab.features import ema, imbalance, intensity, volatility
    from mmlab.pipeline import (
        decide,
        emit,
        fetch_md,
        guards,
        inventory,
        queue_aware,
        spread,
    )
    from mmlab.sim import clock_nb

    return [types, book_nb, clock_nb, ema, imbalance, intensity, volatility, decide, emit, fetch_md, guards,
            inventory, queue_aware, spread]


def tie_caches() -> None:
    """Make the on-disk numba caches of the decision function and the hooks stale whenever the source of a module
    compiled into them changes (numba checks only the file defining a cached function; the stages are inlined or
    linked into these). Call before their first compile or cache load; later calls do nothing."""
    from mmlab.sim._cache import tie_cache_to_sources

    modules = pipeline_source_modules()
    for fn in (pipeline_sim_decide_nb, pipeline_on_event_nb, pipeline_on_fill_nb):
        tie_cache_to_sources(fn, *modules)


def pipeline_strategy_spec(build: Callable, name: str = "pipeline"):
    """A ``StrategySpec`` running the pipeline with its hooks; ``build(cfg, n_symbols) -> Pipeline`` makes the
    records.

    Each symbol's ``inventory.tick_size`` is set from its ``SymbolSpec``.
    """
    from mmlab.sim.strategies import StrategySpec

    tie_caches()

    def build_params(cfg, specs) -> np.ndarray:
        arr = build(cfg, len(specs)).arr
        for i, spec in enumerate(specs):
            arr[i]["inventory_params"]["tick_size"] = spec.tick_size
        return arr

    return StrategySpec(
        name=name,
        decide=pipeline_sim_decide_nb,
        params_dtype=pipeline_dtype,
        build_params=build_params,
        n_state=N_STATE,
        max_quotes=lambda cfg: 2 * MAX_QUOTE_LEVELS,
        on_event=pipeline_on_event_nb,
        on_fill=pipeline_on_fill_nb,
        on_event_mask=int(HookEvents.TRADES),
        stage_names=STAGE_NAMES,
        reasons_packed=True,
    )


def grid_pipeline_spec():
    """The reference grid of ``[strategy]`` through the pipeline stages (same decisions as ``grid``)."""
    from dataclasses import asdict

    from mmlab.pipeline_config import grid_pipeline

    return pipeline_strategy_spec(lambda cfg, n: grid_pipeline(**asdict(cfg.strategy), n_symbols=n), name="grid_pipeline")
