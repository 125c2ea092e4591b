"""Strategies the simulator can run: a compiled decision function plus how to build its parameter records.

A strategy is an ``@njit(cache=True)`` function with the decision signature documented in
:mod:`mmlab.sim.grid_nb`; the event loop receives it as a first-class function value, so a new strategy (e.g.
the pipeline's ``decide()``) plugs in by registering a :class:`StrategySpec`, with no change to the loop.

>>> get_strategy("grid").params_dtype.names[:2]
('grid_num', 'grid_interval_ticks')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mmlab.errors import ConfigError
from mmlab.types import MAX_QUOTE_LEVELS, grid_params_dtype


@dataclass(frozen=True)
class StrategySpec:
    """How the engine runs one strategy."""

    name: str
    decide: Any  # numba dispatcher with the decision signature
    params_dtype: np.dtype  # one record per symbol
    build_params: Callable[[Any, list], np.ndarray]  # (BacktestConfig, [SymbolInfo]) -> params array
    n_state: int = 1  # float64 state slots per symbol
    max_quotes: Callable[[Any], int] = lambda cfg: 2 * MAX_QUOTE_LEVELS  # quote buffer size for a config
    per_symbol_params: bool = True  # params hold one record per symbol (else any length, e.g. a script)


def _grid_params(cfg, infos) -> np.ndarray:
    st = cfg.strategy
    p = np.zeros(len(infos), dtype=grid_params_dtype)
    p["grid_num"] = st.grid_num
    p["grid_interval_ticks"] = st.grid_interval_ticks
    p["half_spread_ticks"] = st.half_spread_ticks
    p["skew_ticks"] = st.skew_ticks
    p["order_qty"] = st.order_qty
    p["max_position"] = st.max_position
    return p


def _grid_spec() -> StrategySpec:
    from mmlab.sim.grid_nb import grid_decide_nb

    return StrategySpec(
        name="grid",
        decide=grid_decide_nb,
        params_dtype=grid_params_dtype,
        build_params=_grid_params,
        n_state=1,
        max_quotes=lambda cfg: 2 * cfg.strategy.grid_num,
    )


_BUILDERS: dict[str, Callable[[], StrategySpec]] = {"grid": _grid_spec}
_SPECS: dict[str, StrategySpec] = {}


def register_strategy(name: str, builder: Callable[[], StrategySpec]) -> None:
    """Make ``strategy.name = name`` runnable; ``builder`` is called on first use (keeps imports lazy)."""
    _BUILDERS[name] = builder
    _SPECS.pop(name, None)


def get_strategy(name: str) -> StrategySpec:
    """The :class:`StrategySpec` registered under ``name``."""
    if name not in _SPECS:
        if name not in _BUILDERS:
            raise ConfigError(f"[strategy] name {name!r} is not a known strategy; use one of {sorted(_BUILDERS)}")
        _SPECS[name] = _BUILDERS[name]()
    return _SPECS[name]
