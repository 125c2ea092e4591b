"""Strategies the simulator can run: a compiled decision function plus how to build its parameter records.

A strategy is an ``@njit(cache=True)`` function with the decision signature documented in
:mod:`mmlab.sim.grid_nb`; the event loop receives it as a first-class function value, so a new strategy (e.g.
the pipeline's ``decide()``) plugs in by registering a :class:`StrategySpec`, with no change to the loop.

Two optional hooks, also ``@njit(cache=True)`` functions, let a strategy follow the market and its fills between
decisions (the loop makes no call when a spec leaves them None, so the reference ``grid`` pays nothing):

- ``on_event(symbol_id, ev, book, bid_qty, ask_qty, b, params, state) -> None``: every local market event the
  strategy sees (at its ts_local), after the local book ``b`` applied it (DEPTH, SNAPSHOT, CLEAR) or for a
  TRADE; ``ev`` is the ``event_dtype`` record (``on_event_mask`` may narrow this to the last row of each book
  message and/or trades);
- ``on_fill(symbol_id, now_ns, fill, params, state) -> None``: a fill report reaching the strategy at local
  time ``now_ns`` (after the local position took it); ``fill`` is the ``fill_dtype`` record of that fill.

``params`` / ``state`` are the strategy's params / state arrays (the same the decision function gets).

>>> get_strategy("grid").params_dtype.names[:2]
('grid_num', 'grid_interval_ticks')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from mmlab.errors import ConfigError
from mmlab.types import MAX_QUOTE_LEVELS, HookEvents, grid_params_dtype


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
    on_event: Any = None  # numba dispatcher with the on_event signature, or None
    on_fill: Any = None  # numba dispatcher with the on_fill signature, or None
    # Which local events on_event receives (HookEvents bits); a strategy that acts only on consistent books and
    # trades sets BOOK_MESSAGES | TRADES and spares the loop a call per book row (most rows of a message).
    on_event_mask: int = int(HookEvents.ALL)
    # Stage timers the decision function reports on timed ticks (pipeline.sample_stage_tracing): the loop sets
    # state[s, 0] = 1 before such a decision; the function writes the cycles of stage k to state[s, 1 + k]
    # (needs n_state > len(stage_names)). Names are summary keys (``stage_latency_ns``), e.g. "stage_spread".
    stage_names: tuple = ()
    reasons_packed: bool = False  # the decision's reason packs six stage reasons (``pack_reasons_nb``)


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


def _grid_pipeline_spec() -> StrategySpec:
    from mmlab.sim.pipeline_strategy import grid_pipeline_spec

    return grid_pipeline_spec()


_BUILDERS: dict[str, Callable[[], StrategySpec]] = {"grid": _grid_spec, "grid_pipeline": _grid_pipeline_spec}
_SPECS: dict[str, StrategySpec] = {}


def register_strategy(name: str, builder: Callable[[], StrategySpec]) -> None:
    """Make ``strategy.name = name`` runnable; ``builder`` is called on first use (keeps imports lazy)."""
    _BUILDERS[name] = builder
    _SPECS.pop(name, None)


def list_strategies() -> list[str]:
    """Names ``strategy.name`` accepts: the built-in and registered strategies (sorted), then the presets found
    under ``strategies/`` (sorted; a preset named like a built-in is listed by its module path).

    The preset modules are listed without being imported, from the importable ``strategies`` package and the
    project's ``strategies/`` next to ``mmlab/`` (a directory counts when it holds ``base.py``); none when there
    is neither.

    >>> names = list_strategies()
    >>> names[:2]
    ['grid', 'grid_pipeline']
    """
    import pkgutil
    from pathlib import Path

    names = sorted(_BUILDERS)
    dirs = []
    try:
        import strategies

        dirs = [Path(p) for p in strategies.__path__]
    except ModuleNotFoundError:
        pass
    dirs.append(Path(__file__).resolve().parents[2] / "strategies")
    dirs = [str(d) for d in dict.fromkeys(dirs) if (d / "base.py").is_file()]
    builtin = set(names)
    presets = {m.name for m in pkgutil.iter_modules(dirs) if not m.name.startswith("_") and m.name != "base"}
    names += [f"strategies.{n}" if n in builtin else n for n in sorted(presets)]
    return names


def get_strategy(name: str) -> StrategySpec:
    """The :class:`StrategySpec` registered under ``name``, else the preset of module ``strategies.<name>``.

    ``name`` may also be the module path itself (``"strategies.grid"``: the preset, where ``"grid"`` is the
    built-in reference). The ``strategies`` package is imported here, on first use, never at import time.
    """
    if name not in _SPECS:
        _SPECS[name] = _BUILDERS[name]() if name in _BUILDERS else _preset_spec(name)
    return _SPECS[name]


def _preset_spec(name: str) -> StrategySpec:
    """The ``StrategySpec`` of ``strategies/<name>.py``'s ``PRESET`` (``ConfigError`` when there is none)."""
    import importlib
    import pkgutil

    module = name if name.startswith("strategies.") else f"strategies.{name}"
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name not in ("strategies", module):
            raise  # the module exists but imports something missing
        try:
            import strategies

            presets = sorted(m.name for m in pkgutil.iter_modules(strategies.__path__) if not m.name.startswith("_")
                             and m.name != "base")
        except ModuleNotFoundError:
            presets = []
        raise ConfigError(f"[strategy] name {name!r} is not a known strategy; use a built-in ({', '.join(sorted(_BUILDERS))})"
                          f" or a module of strategies/ ({', '.join(presets) or 'none found'})") from None
    preset = getattr(mod, "PRESET", None)
    if preset is None or not hasattr(preset, "spec"):
        raise ConfigError(f"[strategy] name {name!r}: {mod.__file__} defines no PRESET (a strategies.base.Preset)")
    return preset.spec(name)
