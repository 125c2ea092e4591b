"""What a strategy module is: a :class:`Preset` of stage tables, and optionally a custom compiled pricing function.

A preset turns the ``[strategy]`` keys it uses into the six stage tables of :func:`mmlab.pipeline_config.
make_pipeline`; the ``[pipeline.<stage>]`` tables of the config then apply on top (any stage key, including the
ones a ``[strategy]`` key set). ``interval_ms`` (the decision period) applies to every strategy. A ``[strategy]``
key the preset does not use is an error when it differs from its default, naming the ``[pipeline.*]`` key to use.
In the simulator, ``inventory.lot_step`` and ``inventory.min_qty`` default to each symbol's lot size (sizes round
down to the lot; a side below it is dropped) unless the preset or a ``[pipeline.inventory]`` table sets them.

Custom pricing: ``Preset(..., pricing=my_pricing_nb)`` with an ``@njit(cache=True)`` function of the spread
stage's signature ``(now_ns, inp, bid_ticks, bid_qty, ask_ticks, ask_qty, params, state, out) -> SpreadReason``
(see :func:`mmlab.pipeline.spread.spread_nb`, which it may call first and then adjust ``out.fair_ticks``,
``out.half_spread_ticks``, ``out.skew_per_qty_ticks``, ``out.size_mult_bid/ask``). :func:`compile_with_pricing`
compiles a copy of the simulator's decision function in which that function takes the place of ``spread_nb``
everywhere on the decision path; the copies are cached on disk like every kernel, and their cache is tied to the
source of the module defining the pricing function, so editing it recompiles.

>>> from strategies.glft import PRESET
>>> from mmlab.config import load_config
>>> pl = PRESET.build(load_config({"strategy": {"name": "glft"}}), 1)
>>> int(pl.params("spread")["model"])
3
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types as pytypes
from dataclasses import dataclass, field
from typing import Any, Callable

from mmlab.config import StrategyConfig
from mmlab.errors import ConfigError
from mmlab.pipeline_config import STAGES, Pipeline, make_pipeline

__all__ = ["LOOP_KEYS", "Preset", "compile_with_pricing", "quoting_tables"]

#: ``[strategy]`` keys read by the simulator itself, valid for every strategy.
LOOP_KEYS = ("name", "interval_ms")


@dataclass(frozen=True)
class Preset:
    """A strategy: stage tables built from the ``[strategy]`` keys it uses, plus optional custom pricing.

    Parameters
    ----------
    name : strategy name (``[strategy] name``).
    stage_tables : ``(**strategy_keys) -> {stage: {key: value}}``; its keyword parameters are the ``[strategy]``
        keys the preset uses (each must have a default: the preset's own default is not used, the ``[strategy]``
        value always is).
    not_used : ``{strategy_key: why}`` for the error raised when an unused ``[strategy]`` key is set.
    pricing : optional ``@njit(cache=True)`` function replacing the spread stage (``spread_nb``'s signature).
    """

    name: str
    stage_tables: Callable[..., dict]
    not_used: dict[str, str] = field(default_factory=dict)
    pricing: Any = None

    @property
    def strategy_keys(self) -> tuple[str, ...]:
        """The ``[strategy]`` keys this preset reads (besides ``LOOP_KEYS``)."""
        return tuple(inspect.signature(self.stage_tables).parameters)

    def tables(self, cfg) -> dict[str, dict]:
        """Stage tables of ``cfg``: the preset's from ``[strategy]``, then ``[pipeline.*]`` on top."""
        st = cfg.strategy
        default = StrategyConfig()
        used = self.strategy_keys
        kwargs = {}
        for f in dataclasses.fields(st):
            value = getattr(st, f.name)
            if f.name in used:
                kwargs[f.name] = value
            elif f.name not in LOOP_KEYS and value != getattr(default, f.name):
                why = self.not_used.get(f.name, "it has no meaning here")
                raise ConfigError(
                    f"[strategy] {f.name} = {value!r} does not apply to strategy {self.name!r} ({why}); remove it "
                    f"(it applies to: {', '.join(used)})")
        built = self.stage_tables(**kwargs)
        out = {s: dict(built.get(s) or {}) for s in STAGES}
        for stage, table in cfg.pipeline.stage_tables().items():
            out[stage].update(table)
        return out

    def build(self, cfg, n_symbols: int) -> Pipeline:
        """Pipeline records of ``n_symbols`` symbols for ``cfg`` (``ConfigError`` naming a bad key)."""
        return make_pipeline(**self.tables(cfg), n_symbols=n_symbols)

    def spec(self, name: str | None = None):
        """The simulator's ``StrategySpec`` of this preset (compiled decision function with custom pricing)."""
        from mmlab.sim.pipeline_strategy import pipeline_strategy_spec

        spec = pipeline_strategy_spec(self.build, name=name or self.name)
        base_build = spec.build_params

        def build_params(cfg, symbols):
            # Sizes round down to the venue lot of each symbol unless the inventory table sets its own.
            arr = base_build(cfg, symbols)
            inv = self.tables(cfg)["inventory"]
            for i, sym in enumerate(symbols):
                lot = float(getattr(sym, "lot_size", 0.0) or 0.0)
                for key in ("lot_step", "min_qty"):
                    if key not in inv:
                        arr[i]["inventory_params"][key] = lot
            return arr

        spec = dataclasses.replace(spec, build_params=build_params)
        if self.pricing is not None:
            spec = dataclasses.replace(spec, decide=compile_with_pricing(spec.decide, self.pricing, name or self.name))
        return spec


def _is_dispatcher(obj) -> bool:
    from numba.core.registry import CPUDispatcher

    return isinstance(obj, CPUDispatcher)


def _rebind(disp, old, new, tag: str, tie_to: tuple, memo: dict):
    """``disp`` itself, or a compiled copy whose call tree uses ``new`` wherever it used ``old``."""
    if disp is old:
        return new
    key = id(disp)
    if key in memo:
        return memo[key]
    memo[key] = disp  # guards against recursion while this function is visited
    fn = disp.py_func
    g = fn.__globals__
    repl = {}
    for name in fn.__code__.co_names:
        v = g.get(name)
        if v is not None and _is_dispatcher(v):
            v2 = _rebind(v, old, new, tag, tie_to, memo)
            if v2 is not v:
                repl[name] = v2
    if not repl:
        return disp
    from numba import njit

    from mmlab.sim._cache import tie_cache_to_sources

    qualname = f"{fn.__qualname__}__{tag}"
    copy = pytypes.FunctionType(fn.__code__, {**g, **repl}, qualname, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = qualname
    copy.__doc__ = fn.__doc__
    # The copy is compiled as the original is (e.g. without reference counting, as the pipeline stages are).
    opts = {k: v for k, v in disp.targetoptions.items() if k != "nopython"}
    out = njit(cache=True, **opts)(copy)
    tie_cache_to_sources(out, *tie_to)
    memo[key] = out
    return out


def quoting_tables(**overrides: dict) -> dict[str, dict]:
    """Stage tables shared by the model-driven presets, with ``overrides`` (``stage=dict``) merged per stage.

    A book older than 500 ms is a miss (served, stale), older than 250 ms is priced with a widened spread, and
    halts quoting for the guards; a 30 s warm-up; post-only GTX limit orders at most 50 actions per second,
    re-quoted on any price change; one level per side.
    """
    base = dict(
        fetch_md=dict(ttl_ms=500.0, fresh_ms_for_pricing=250.0, stale_ok=True, skip_pricing_on_stale=False,
                      depth_levels=5),
        spread=dict(vol_sample_ms=100.0, vol_buffer_size=300, vol_min_samples=50),
        guards=dict(warmup_s=30.0, fresh_only=True, near_liq_enabled=True),
        inventory=dict(sizing="fixed", grid_num=1, clamp_to_touch=True),
        queue_aware=dict(),
        emit=dict(price_tol_ticks=0, max_actions_per_s=50.0, post_only=True, maker_only=True, tif="gtx"),
    )
    for stage, table in overrides.items():
        if stage not in base:
            raise ConfigError(f"unknown pipeline stage {stage!r}; stages: {', '.join(STAGES)}")
        base[stage].update(table)
    return base


_COMPILED: dict[tuple, Any] = {}


def compile_with_pricing(decide, pricing, tag: str):
    """A copy of the decision function ``decide`` whose spread stage is ``pricing`` (compiled lazily, cached).

    Every compiled function on ``decide``'s call path that calls ``mmlab.pipeline.spread.spread_nb`` is copied
    with ``pricing`` in its place (named ``<name>__<tag>``; the originals are unchanged).
    """
    from mmlab.pipeline.spread import spread_nb

    if not _is_dispatcher(pricing):
        raise ConfigError(f"pricing of strategy {tag!r} must be an @njit(cache=True) function, got {pricing!r}")
    key = (id(decide), id(pricing), tag)
    if key not in _COMPILED:
        tie_to = tuple(m for m in (sys.modules.get(pricing.py_func.__module__),) if m is not None)
        safe = re.sub(r"\W", "_", tag)
        out = _rebind(decide, spread_nb, pricing, safe, tie_to, {})
        if out is decide:
            raise ConfigError(f"strategy {tag!r}: the decision function {decide!r} does not call spread_nb, so "
                              "custom pricing cannot take its place")
        _COMPILED[key] = out
    return _COMPILED[key]
