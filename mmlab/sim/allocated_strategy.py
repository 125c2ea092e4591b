"""A pipeline strategy over several symbols whose sizes follow the scoreboard / dynamic allocator.

``run_backtest`` uses it when ``[allocator] enabled = true`` (callers of ``simulate`` pass
``strategy=allocated_strategy_spec(cfg=cfg)``); all symbols must share one run (not split into parallel parts). Its params array holds one ``allocated_params_dtype``
record per symbol: the symbol's pipeline record (``pipe``, built by the configured pipeline strategy), its
scoreboard (``board``) and allocation (``alloc``); the run-wide allocator params/state are read from record 0.
The three compiled functions wrap the pipeline adapter's (:mod:`mmlab.sim.pipeline_strategy`):

- ``allocated_on_event_nb`` (the last row of each book message and every trade: ``on_event_mask`` =
  ``HookEvents.BOOK_MESSAGES | TRADES``): the pipeline's hook for trades, and the scoreboard marks the symbol's
  due fills at the local mid of each complete book message (``scoreboard_mark_nb``);
- ``allocated_on_fill_nb`` (every fill report): the pipeline's hook, then ``scoreboard_on_fill_nb``;
- ``allocated_decide_nb`` (decision ticks): marks every symbol at its local mid, rebalances when
  ``rebalance_period_s`` has passed (``allocator_rebalance_nb``, at the tick's first symbol so every symbol of
  the tick sees the same weights), sets the symbol's ``inp.size_mult`` to its weight and runs the pipeline
  decision; orders placed feed the fill rate. The returned reason is the pipeline's packed reasons with the
  symbol's ``AllocReason`` in the top byte (``reason >> 56``).

A weight of 0 (blacklisted, not whitelisted, auto-blacklisted) makes the inventory stage quote nothing, so
emit cancels the symbol's working orders. The rebalance history becomes the run's ``allocation.parquet``
(:func:`allocation_frame`) and ``summary["allocator"]``.

>>> from mmlab.config import load_config  # doctest: +SKIP
>>> cfg = load_config("experiments/alloc_btc_eth.toml")  # [allocator] enabled = true  # doctest: +SKIP
>>> result = run_backtest(cfg)  # doctest: +SKIP
>>> result.extra["allocation"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from mmlab.allocator_config import allocation_rows, make_allocator
from mmlab.data.book_nb import NO_ASK_TICK, NO_BID_TICK
from mmlab.errors import ConfigError
from mmlab.pipeline.allocator import (
    allocator_due_nb,
    allocator_rebalance_nb,
    scoreboard_mark_nb,
    scoreboard_on_fill_nb,
    scoreboard_on_mark_nb,
)
from mmlab.pipeline.spread import spread_on_trade_nb
from mmlab.sim.pipeline_strategy import (
    pipeline_on_fill_nb,
    pipeline_sim_decide_nb,
)
from mmlab.sim.strategies import StrategySpec, get_strategy
from mmlab.types import (
    AllocReason,
    HookEvents,
    Kind,
    allocated_params_dtype,
    pipeline_dtype,
)

__all__ = [
    "ALLOC_REASON_SHIFT",
    "AllocatedStrategySpec",
    "allocated_decide_nb",
    "allocated_on_event_nb",
    "allocated_on_fill_nb",
    "allocated_strategy_spec",
    "allocation_frame",
    "allocation_summary",
]

#: Bit position of the ``AllocReason`` in the decision's reason code (the pipeline packs bits 0..55).
ALLOC_REASON_SHIFT = 56

_TRADE = int(Kind.TRADE)


@njit(cache=True)
def _local_mid_nb(book, b):
    """Mid of local book ``b`` in ticks; NaN when a side is empty."""
    bb = book[b].best_bid_tick
    ba = book[b].best_ask_tick
    if bb == NO_BID_TICK or ba == NO_ASK_TICK:
        return np.nan
    return 0.5 * (bb + ba)


@njit(cache=True)
def allocated_decide_nb(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
                        out_quotes, out_actions, out_n):
    """Strategy decision: scoreboard marks, rebalance when due, size multiplier, pipeline decision."""
    g = params[0]
    ap = g.aparams
    ast = g.astate
    rec = params[symbol_id]
    if allocator_due_nb(ap, ast, now_ns):
        # Every symbol is marked at its local mid first (books b - symbol_id + k), so scores are current.
        board = params.board
        b0 = b - symbol_id
        for k in range(params.shape[0]):
            scoreboard_on_mark_nb(ap, board, k, now_ns, _local_mid_nb(book, b0 + k))
        allocator_rebalance_nb(ap, ast, board, params.alloc, now_ns)
    else:
        scoreboard_mark_nb(ap, rec.board, now_ns, _local_mid_nb(book, b))
    pipe = rec.pipe
    pipe.inp.size_mult = rec.alloc.size_mult
    reason = pipeline_sim_decide_nb(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders,
                                    params.pipe, state, out_quotes, out_actions, out_n)
    rec.board.period_places += pipe.out.n_place  # scoreboard_on_decision_nb on the record
    return reason | (np.int64(rec.alloc.reason) << ALLOC_REASON_SHIFT)


@njit(cache=True)
def allocated_on_event_nb(symbol_id, ev, book, bid_qty, ask_qty, b, params, state):
    """Loop hook: the pipeline's event hook, then the symbol's due fills are marked at the new local mid.

    The pipeline part is ``pipeline_on_event_nb``'s, on the symbol's record (no nested array view per event).
    """
    rec = params[symbol_id]
    if ev.kind == _TRADE:
        pipe = rec.pipe
        spread_on_trade_nb(pipe.spread_params, pipe.spread_state, ev.ts_local, np.int64(ev.side), ev.price_ticks,
                           ev.qty, book[b].best_bid_tick, book[b].best_ask_tick)
    elif ev.batch_end:
        scoreboard_mark_nb(params[0].aparams, rec.board, ev.ts_local, _local_mid_nb(book, b))


@njit(cache=True)
def allocated_on_fill_nb(symbol_id, now_ns, fill, params, state):
    """Loop hook: the pipeline's fill hook, then the fill enters the symbol's scoreboard."""
    pipeline_on_fill_nb(symbol_id, now_ns, fill, params.pipe, state)
    scoreboard_on_fill_nb(params[0].aparams, params.board, symbol_id, now_ns, fill)


@dataclass(frozen=True)
class AllocatedStrategySpec(StrategySpec):
    """A :class:`StrategySpec` plus the run outputs of the allocator (``outputs(cfg, specs, strat_params)``)."""

    outputs: Callable[[Any, list, np.ndarray], tuple[dict, dict]] | None = None


def allocation_frame(strat_params: np.ndarray, symbols: list[str]):
    """Per-symbol weights and scores at every rebalance (polars frame; ``allocation.parquet`` of a run)."""
    import polars as pl

    rows = allocation_rows(strat_params["alloc"], symbols)
    schema = {"ts_local": pl.Int64, "symbol": pl.Utf8, "weight": pl.Float64, "score": pl.Float64,
              "net_bps": pl.Float64, "fill_rate": pl.Float64, "slippage_bps": pl.Float64,
              "queue_edge_score": pl.Float64, "adverse_penalty": pl.Float64, "n_marked": pl.Int64,
              "reason": pl.Utf8}
    return pl.DataFrame(rows, schema=schema)


def allocation_summary(strat_params: np.ndarray, symbols: list[str]) -> dict:
    """``summary["allocator"]``: rebalance counters, and per symbol the final weight and scoreboard, the
    time-weighted mean weight over rebalances and the number of rebalances at each reason."""
    st = strat_params[0]["astate"]
    frame_rows = allocation_rows(strat_params["alloc"], symbols)
    per_symbol = {}
    for i, sym in enumerate(symbols):
        a = strat_params[i]["alloc"]
        bd = strat_params[i]["board"]
        w = [w for s, w in zip(frame_rows["symbol"], frame_rows["weight"]) if s == sym]
        reasons = [r for s, r in zip(frame_rows["symbol"], frame_rows["reason"]) if s == sym]
        per_symbol[sym] = {
            "weight_final": float(a["weight"]),
            "weight_mean": float(np.mean(w)) if w else 1.0,
            "reason_final": AllocReason(int(a["reason"])).name,
            "reason_counts": {r: reasons.count(r) for r in sorted(set(reasons))},
            "score": float(bd["score"]),
            "net_bps": float(bd["net_bps"]),
            "fill_rate": float(bd["fill_rate"]),
            "slippage_bps": float(bd["slippage_bps"]),
            "queue_edge_score": float(bd["queue_edge_score"]),
            "adverse_penalty": float(bd["adverse_penalty"]),
            "n_fills": int(bd["n_fills"]),
            "n_marked": int(bd["n_marked"]),
            "n_forced_marks": int(bd["n_forced_marks"]),
        }
    return {
        "n_rebalances": int(st["n_rebalances"]),
        "n_active": int(st["n_active"]),
        "n_auto_blacklisted": int(st["n_auto_blacklisted"]),
        "n_hysteresis": int(st["n_hysteresis"]),
        "per_symbol": per_symbol,
    }


def _outputs(cfg, specs: list, strat_params: np.ndarray) -> tuple[dict, dict]:
    symbols = [s.symbol for s in specs]
    return {"allocation": allocation_frame(strat_params, symbols)}, {"allocator": allocation_summary(strat_params, symbols)}


def _tie_caches() -> None:
    """The hooks and decision inline kernels of other modules: their disk caches follow those sources too."""
    from mmlab.pipeline import allocator
    from mmlab.sim import pipeline_strategy
    from mmlab.sim._cache import tie_cache_to_sources

    modules = pipeline_strategy.pipeline_source_modules() + [allocator, pipeline_strategy]
    for fn in (allocated_decide_nb, allocated_on_event_nb, allocated_on_fill_nb):
        tie_cache_to_sources(fn, *modules)


def allocated_strategy_spec(base: StrategySpec | str | None = None, cfg=None) -> AllocatedStrategySpec:
    """The allocated version of a pipeline strategy (``base``: a spec, a registered name, or ``cfg.strategy.name``).

    The reference ``grid`` (not a pipeline strategy) is replaced by ``grid_pipeline``, the same decisions through
    the stages. Raises :class:`ConfigError` for a strategy whose params are not pipeline records.
    """
    if base is None:
        if cfg is None:
            raise ConfigError("allocated_strategy_spec needs a base strategy or a config (strategy.name)")
        base = cfg.strategy.name
    if isinstance(base, str):
        base = get_strategy("grid_pipeline" if base == "grid" else base)
    _tie_caches()
    if base.params_dtype != pipeline_dtype:
        raise ConfigError(f"[allocator] enabled = true needs a pipeline strategy, but strategy.name = {base.name!r} "
                          "does not run the pipeline stages; use 'grid' / 'grid_pipeline' or another pipeline preset, "
                          "or set allocator.enabled = false")
    base_build = base.build_params

    def build_params(cfg, specs) -> np.ndarray:
        pipe = base_build(cfg, specs)
        al = make_allocator(cfg.allocator, [s.symbol for s in specs], tick_sizes=[s.tick_size for s in specs],
                            contract_sizes=[s.contract_size for s in specs],
                            inverse=[s.contract_type == "inverse" for s in specs])
        arr = np.zeros(len(specs), dtype=allocated_params_dtype)
        arr["pipe"] = pipe
        arr["board"] = al.board
        arr["alloc"] = al.alloc
        arr["aparams"] = al.params[0]
        arr["astate"] = al.state[0]
        arr["pipe"]["inp"]["size_mult"] = al.alloc["size_mult"]
        return arr

    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(StrategySpec)}
    fields.update(name=f"{base.name}+allocator", decide=allocated_decide_nb, params_dtype=allocated_params_dtype,
                  build_params=build_params, on_event=allocated_on_event_nb, on_fill=allocated_on_fill_nb,
                  on_event_mask=int(HookEvents.BOOK_MESSAGES | HookEvents.TRADES))
    return AllocatedStrategySpec(**fields, outputs=_outputs)
