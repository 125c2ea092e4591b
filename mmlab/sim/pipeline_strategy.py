"""The shared pipeline as a simulator strategy: ``decide_nb`` behind the loop's strategy signature.

``pipeline_sim_decide_nb`` has the decision signature of :mod:`mmlab.sim.grid_nb`; its params array is one
``pipeline_dtype`` record per symbol (params and states of the six stages live there, so ``strat_state`` is
unused). At each decision it fills the record's inputs from the local book (best prices, top-N depth via
``book_depth_nb``) and the position, runs ``decide_nb`` on the symbol's active orders and writes the quotes
and actions; the returned reason packs the six stage reasons and the QuoteAction (``pack_reasons_nb``;
``mmlab.pipeline_config.unpack_reasons`` splits it).

The loop calls the strategy only at decision ticks, so the market-data status is kept from what a decision
sees: ``md.last_ts_local_ns`` is the first decision at which the top of book (best prices, held levels, top
quantities) differed from the previous decision's, and no update_id checks are made. Trades do not reach the
spread estimators (intensity and flow stay at their fixed values); balance and equity are unknown (free
balance unlimited: the notional cap applies; kill switch off).

>>> from mmlab.sim.engine import simulate  # doctest: +SKIP
>>> simulate(cfg, specs, windows, strategy=pipeline_strategy_spec(grid_pipeline_params))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numba import njit

from mmlab.data.book_nb import book_depth_nb
from mmlab.pipeline.decide import decide_nb, pack_reasons_nb
from mmlab.types import MAX_QUOTE_LEVELS, PIPELINE_DEPTH_MAX, OrderType, Side, pipeline_dtype

__all__ = ["grid_pipeline_spec", "pipeline_sim_decide_nb", "pipeline_strategy_spec"]

_BID = int(Side.BID)
_ASK = int(Side.ASK)
_LIMIT = int(OrderType.LIMIT)


@njit(cache=True)
def pipeline_sim_decide_nb(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
                           out_quotes, out_actions, out_n):
    """Strategy decision function running the pipeline record ``params[symbol_id]``; returns packed reasons."""
    pipe = params[symbol_id]
    x = pipe.inp
    prev_bb = x.best_bid_tick
    prev_ba = x.best_ask_tick
    prev_nb = x.n_bid_levels
    prev_na = x.n_ask_levels
    prev_qb = pipe.bid_qty[0]
    prev_qa = pipe.ask_qty[0]
    n = max(pipe.fetch_params.depth_levels, pipe.spread_params.imbalance_levels, pipe.guard_params.liq_gate_levels, 1)
    n = min(n, PIPELINE_DEPTH_MAX)
    x.best_bid_tick = book[b].best_bid_tick
    x.best_ask_tick = book[b].best_ask_tick
    x.n_bid_levels = book_depth_nb(book, bid_qty, ask_qty, b, _BID, n, pipe.bid_ticks, pipe.bid_qty)
    x.n_ask_levels = book_depth_nb(book, bid_qty, ask_qty, b, _ASK, n, pipe.ask_ticks, pipe.ask_qty)
    if x.n_bid_levels == 0:
        pipe.bid_qty[0] = 0.0
    if x.n_ask_levels == 0:
        pipe.ask_qty[0] = 0.0
    changed = (x.best_bid_tick != prev_bb or x.best_ask_tick != prev_ba or x.n_bid_levels != prev_nb
               or x.n_ask_levels != prev_na or pipe.bid_qty[0] != prev_qb or pipe.ask_qty[0] != prev_qa)
    md = pipe.md
    if changed or md.n_updates == 0:
        md.last_ts_local_ns = now_ns
        md.n_updates += 1
    x.position = position
    x.free_balance = np.inf
    n_a = decide_nb(now_ns, pipe, orders, n_orders, out_quotes, out_actions)
    for k in range(n_a):
        out_actions[k].order_type = _LIMIT
    out_n[0] = pipe.out.n_quotes
    out_n[1] = n_a
    return pack_reasons_nb(pipe.out)


def pipeline_strategy_spec(build: Callable, name: str = "pipeline"):
    """A ``StrategySpec`` running the pipeline; ``build(cfg, n_symbols) -> Pipeline`` makes the records.

    Each symbol's ``inventory.tick_size`` is set from its ``SymbolSpec``.
    """
    from mmlab.sim.strategies import StrategySpec

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
        n_state=1,
        max_quotes=lambda cfg: 2 * MAX_QUOTE_LEVELS,
    )


def grid_pipeline_spec():
    """The reference grid of ``[strategy]`` through the pipeline stages (same decisions as ``grid``)."""
    from dataclasses import asdict

    from mmlab.pipeline_config import grid_pipeline

    return pipeline_strategy_spec(lambda cfg, n: grid_pipeline(**asdict(cfg.strategy), n_symbols=n), name="grid_pipeline")
