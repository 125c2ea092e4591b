"""``decide_nb``: the six stages in order, one compiled call per decision tick and symbol.

Calling convention::

    decide_nb(now_ns, pipe, orders, n_orders, quotes, actions) -> n_actions

- ``now_ns``: local time of the decision (int64 ns); the pipeline has no clock of its own.
- ``pipe``: one ``pipeline_dtype`` record (``arr[symbol_id]``): the stages' params and states, the market-data
  status ``pipe.md``, the inputs ``pipe.inp`` and depth arrays ``pipe.bid_ticks``/``bid_qty``/``ask_ticks``/
  ``ask_qty`` (best first, ``inp.n_bid_levels``/``n_ask_levels`` valid rows) that the caller sets before the
  call, and the decision ``pipe.out`` it writes. Records are views: the call updates the caller's array.
- ``orders[:n_orders]``: working orders, any record dtype with the fields of ``working_order_dtype``
  (``order_view_dtype`` of the simulator qualifies).
- ``quotes``: ``quote_dtype`` buffer (>= 2 * grid_num rows), written ``[:pipe.out.n_quotes]``.
- ``actions``: ``action_dtype`` buffer (any record dtype with its fields; >= working orders + 2 * grid_num rows,
  else TRUNCATED), written ``[:n_actions]``.

Between decisions the event loop keeps the market-data status with ``on_book_update_nb`` (every book message,
at its ``batch_end``) and feeds public trades with ``on_trade_nb`` (arrival intensity and per-side volume rates);
volatility needs nothing, it samples the mid at decisions. A caller timing each stage runs
``decision_reset_nb`` and then the six stage functions in the same order, with the same arguments.
"""

from __future__ import annotations

from numba import njit

from mmlab.pipeline.emit import emit_nb
from mmlab.pipeline.fetch_md import fetch_md_nb, md_on_book_update_nb
from mmlab.pipeline.guards import guards_nb
from mmlab.pipeline.inventory import inventory_nb
from mmlab.pipeline.queue_aware import queue_aware_nb
from mmlab.pipeline.spread import spread_nb, spread_on_trade_nb

__all__ = ["decide_nb", "decision_reset_nb", "on_book_update_nb", "on_trade_nb", "pack_reasons_nb"]


@njit(cache=True, _nrt=False)
def decision_reset_nb(out, now_ns):
    """Start a decision record: time stamp, and counts zeroed so a partial pipeline leaves no stale rows."""
    o = out
    o.ts_local_ns = now_ns
    o.n_quotes = 0
    o.n_actions = 0
    o.n_kept = 0
    o.n_dropped = 0
    o.n_place = 0
    o.n_cancel = 0
    o.n_modify = 0
    o.n_deferred = 0
    o.guard_mask = 0
    o.widen_mult = 1.0


@njit(cache=True, _nrt=False)
def decide_nb(now_ns, pipe, orders, n_orders, quotes, actions):
    """Run fetch_md, spread, guards, inventory, queue_aware and emit; returns the number of actions written."""
    out = pipe.out
    inp = pipe.inp
    decision_reset_nb(out, now_ns)
    fetch_md_nb(now_ns, inp, pipe.md, pipe.fetch_params, pipe.fetch_state, out)
    spread_nb(now_ns, inp, pipe.bid_ticks, pipe.bid_qty, pipe.ask_ticks, pipe.ask_qty, pipe.spread_params,
              pipe.spread_state, out)
    guards_nb(now_ns, inp, pipe.bid_ticks, pipe.bid_qty, pipe.ask_ticks, pipe.ask_qty, pipe.guard_params,
              pipe.guard_state, out)
    inventory_nb(now_ns, inp, pipe.inventory_params, pipe.inventory_state, out, quotes)
    queue_aware_nb(now_ns, inp, pipe.bid_ticks, pipe.bid_qty, pipe.ask_ticks, pipe.ask_qty, orders, n_orders,
                   pipe.queue_params, pipe.queue_state, out, quotes)
    emit_nb(now_ns, inp, orders, n_orders, pipe.emit_params, pipe.emit_state, out, quotes, actions)
    return out.n_actions


@njit(cache=True, _nrt=False)
def on_book_update_nb(pipe, ts_local_ns, ts_exch_ns, update_id, is_snapshot):
    """One applied book message (at its ``batch_end``): market-data status and sequence checks of fetch_md."""
    return md_on_book_update_nb(pipe.md, pipe.fetch_params, ts_local_ns, ts_exch_ns, update_id, is_snapshot)


@njit(cache=True, _nrt=False)
def on_trade_nb(pipe, ts_local_ns, side, price_ticks, qty, best_bid_tick, best_ask_tick):
    """One public trade (aggressor ``side``, local time, book before the trade) for the spread estimators."""
    spread_on_trade_nb(pipe.spread_params, pipe.spread_state, ts_local_ns, side, price_ticks, qty, best_bid_tick,
                       best_ask_tick)


@njit(cache=True, _nrt=False)
def pack_reasons_nb(out):
    """The tick's reason codes in one int64, 8 bits each from the low end: fetch_md, spread, guards, inventory,
    queue_aware, emit, then the QuoteAction (``mmlab.pipeline_config.unpack_reasons`` splits it)."""
    return (
        (out.md_reason & 0xFF)
        | ((out.spread_reason & 0xFF) << 8)
        | ((out.guard_reason & 0xFF) << 16)
        | ((out.inventory_reason & 0xFF) << 24)
        | ((out.queue_reason & 0xFF) << 32)
        | ((out.emit_reason & 0xFF) << 40)
        | ((out.quote_action & 0xFF) << 48)
    )
