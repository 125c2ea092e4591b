"""Python constructors of the pipeline records, with defaults, range checks and presets.

Kept outside :mod:`mmlab.pipeline` so that the compiled stages import nothing but ``mmlab.types``, numpy and
numba; this module raises :class:`mmlab.errors.ConfigError` naming the stage, the key, the value and the fix.
Stage keys mirror the seed configuration: ``[pipeline.fetch_md]`` (md_cache: ttl_ms, fresh_ms_for_pricing,
stale_ok, skip_pricing_on_stale), ``[pipeline.guards]`` (warmup_s, near_liq: sl_buffer_multiplier,
assumed_sl_pct; liquidity_by_side: liq_gate_alpha, liq_gate_levels), ``[pipeline.inventory]`` (sizing:
leverage, notional_cap_usd, min_free_balance_usd, lot_step), ``[pipeline.queue_aware]`` (tau_entry, tau_hold).

>>> pl = make_pipeline(spread={"model": "glft", "risk_factor": 0.05}, inventory={"order_qty": 0.01})
>>> int(pl.params("spread")["model"]), float(pl.params("spread")["unit_qty"])
(3, 0.01)
>>> grid = grid_pipeline(half_spread_ticks=2.0, skew_ticks=0.0, order_qty=0.001, max_position=0.01,
...                      grid_num=5, grid_interval_ticks=1)
>>> bufs = grid.buffers(max_orders=16)
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Callable

import numpy as np

from mmlab.errors import ConfigError
from mmlab.types import (
    INTENSITY_DEPTH_BUCKETS,
    MAX_QUOTE_LEVELS,
    PIPELINE_DEPTH_MAX,
    TRADE_BUFFER_MAX,
    VOL_BUFFER_MAX,
    FairPrice,
    GuardLevel,
    GuardReason,
    MdInvalid,
    SeqCheck,
    SizingMode,
    SkewMode,
    SpreadModel,
    StaleReason,
    TimeInForce,
    action_dtype,
    decide_input_dtype,
    emit_params_dtype,
    emit_state_dtype,
    fetch_params_dtype,
    fetch_state_dtype,
    guard_params_dtype,
    guard_state_dtype,
    inventory_params_dtype,
    inventory_state_dtype,
    md_status_dtype,
    pipeline_dtype,
    queue_params_dtype,
    queue_state_dtype,
    quote_dtype,
    spread_params_dtype,
    spread_state_dtype,
    working_order_dtype,
)

__all__ = [
    "FIELDS",
    "PRESETS",
    "STAGES",
    "DecideBuffers",
    "Pipeline",
    "check_stage_values",
    "counters",
    "grid_pipeline",
    "grid_stage_tables",
    "make_decide_input",
    "make_md_status",
    "make_params",
    "make_pipeline",
    "make_state",
    "unpack_reasons",
]

INF = math.inf
NAN = math.nan
STAGES = ("fetch_md", "spread", "guards", "inventory", "queue_aware", "emit")

# Checks: (kind, argument). Kinds: "gt" (> arg), "ge" (>= arg), "int_ge", "bool", "enum" (IntEnum class),
# "ge_or_nan".
_Spec = tuple[Any, str, Any]

_SPECS: dict[str, dict[str, _Spec]] = {
    "fetch_md": {
        "ttl_ms": (100.0, "ge", 0.0),
        "fresh_ms_for_pricing": (60.0, "ge", 0.0),
        "depth_levels": (5, "int_ge", 0),
        "stale_ok": (True, "bool", None),
        "skip_pricing_on_stale": (False, "bool", None),
        "reject_crossed": (True, "bool", None),
        "seq_check": (SeqCheck.MONOTONIC, "enum", SeqCheck),
    },
    "spread": {
        "model": (SpreadModel.FIXED, "enum", SpreadModel),
        "fair": (FairPrice.MID, "enum", FairPrice),
        "half_spread_ticks": (2.0, "ge", 0.0),
        "min_half_spread_ticks": (0.0, "ge", 0.0),
        "max_half_spread_ticks": (INF, "gt", 0.0),
        "min_spread_bps": (0.0, "ge", 0.0),
        "vol_mult": (1.0, "ge", 0.0),
        "vol_horizon_ms": (1000.0, "gt", 0.0),
        "risk_factor": (0.1, "gt", 0.0),
        "horizon_s": (1.0, "gt", 0.0),
        "order_amount_shape": (0.0, "ge", 0.0),
        "unit_qty": (1.0, "gt", 0.0),
        "intensity_a_per_s": (NAN, "gt_or_nan", 0.0),
        "intensity_k_per_tick": (1.0, "gt", 0.0),
        "calibrate_intensity": (True, "bool", None),
        "flow_halflife_ms": (5000.0, "gt", 0.0),
        "stale_widen_mult": (1.5, "ge", 1.0),
        "score_skew_ticks": (0.0, "finite", None),
        "score_widen": (0.0, "ge", 0.0),
        "imbalance_skew_ticks": (0.0, "finite", None),
        "vol_sample_ms": (100.0, "ge", 0.0),
        "vol_buffer_size": (200, "int_range", (2, VOL_BUFFER_MAX)),
        "vol_min_samples": (20, "int_ge", 2),
        "intensity_buffer_size": (200, "int_range", (2, TRADE_BUFFER_MAX)),
        "intensity_min_trades": (20, "int_ge", 2),
        "intensity_buckets": (10, "int_range", (2, INTENSITY_DEPTH_BUCKETS)),
        "imbalance_levels": (1, "int_ge", 1),
    },
    "guards": {
        "warmup_s": (90.0, "ge", 0.0),
        "fresh_only": (True, "bool", None),
        "vol_halt_bps": (INF, "gt", 0.0),
        "vol_widen_bps": (INF, "gt", 0.0),
        "widen_mult": (2.0, "ge", 1.0),
        "latency_halt_ms": (INF, "gt", 0.0),
        "deadline_ms": (INF, "gt", 0.0),
        "deadline_level": (GuardLevel.SOFT, "enum", GuardLevel),
        "near_liq_enabled": (True, "bool", None),
        "sl_buffer_multiplier": (1.5, "ge", 0.0),
        "assumed_sl_pct": (0.003, "ge", 0.0),
        "leverage": (10.0, "gt", 0.0),
        "maint_margin_rate": (0.005, "ge", 0.0),
        "liq_gate_alpha": (1.5, "ge", 0.0),
        "liq_gate_levels": (3, "int_ge", 1),
        "liq_gate_qty": (0.0, "ge", 0.0),
        "kill_drawdown_usd": (INF, "gt", 0.0),
        "kill_drawdown_pct": (INF, "gt", 0.0),
    },
    "inventory": {
        "sizing": (SizingMode.FIXED, "enum", SizingMode),
        "order_qty": (0.001, "gt", 0.0),
        "leverage": (10.0, "gt", 0.0),
        "notional_cap_usd": (20_000.0, "gt", 0.0),
        "min_free_balance_usd": (200.0, "ge", 0.0),
        "lot_step": (0.0, "ge", 0.0),
        "min_qty": (0.0, "ge", 0.0),
        "min_notional_usd": (0.0, "ge", 0.0),
        "tick_size": (1.0, "gt", 0.0),
        "max_position": (INF, "gt", 0.0),
        "skew_mode": (SkewMode.FIXED, "enum", SkewMode),
        "skew_ticks": (0.0, "finite", None),
        "skew_unit_qty": (None, "gt", 0.0),  # None = order_qty
        "grid_num": (1, "int_range", (1, MAX_QUOTE_LEVELS)),
        "grid_interval_ticks": (1, "int_ge", 1),
        "clamp_to_touch": (True, "bool", None),
    },
    "queue_aware": {
        "keep_ticks": (0, "int_ge", 0),
        "keep_back_ticks": (0, "int_ge", 0),
        "keep_eta_ms": (INF, "ge", 0.0),
        "tau_entry": (0.0, "ge", 0.0),
        "tau_hold": (0.0, "ge", 0.0),
        "horizon_ms": (1000.0, "gt", 0.0),
        "depth_decay_per_tick": (1.0, "ge", 0.0),
        "use_model_score": (False, "bool", None),
    },
    "emit": {
        "price_tol_ticks": (0, "int_ge", 0),
        "qty_tol_frac": (INF, "ge", 0.0),
        "use_modify": (False, "bool", None),
        "max_actions_per_s": (INF, "gt", 0.0),
        "burst_actions": (None, "ge", 1.0),  # None = max(1, max_actions_per_s)
        "post_only": (True, "bool", None),
        "maker_only": (True, "bool", None),
        "reduce_only": (False, "bool", None),
        "tif": (TimeInForce.GTX, "enum", TimeInForce),
        "min_order_age_ms": (0.0, "ge", 0.0),
        "cancel_on_halt": (True, "bool", None),
        "cancel_on_skip": (False, "bool", None),
        "id_from_price": (False, "bool", None),
    },
}

_PARAMS_DTYPES = {
    "fetch_md": fetch_params_dtype,
    "spread": spread_params_dtype,
    "guards": guard_params_dtype,
    "inventory": inventory_params_dtype,
    "queue_aware": queue_params_dtype,
    "emit": emit_params_dtype,
}
_STATE_DTYPES = {
    "fetch_md": fetch_state_dtype,
    "spread": spread_state_dtype,
    "guards": guard_state_dtype,
    "inventory": inventory_state_dtype,
    "queue_aware": queue_state_dtype,
    "emit": emit_state_dtype,
}
_ENUM_ALIASES = {SpreadModel: {"AS": SpreadModel.AVELLANEDA_STOIKOV, "VOL": SpreadModel.VOL_SCALED}}


def _fail(stage: str, key: str, value: Any, need: str) -> None:
    raise ConfigError(f"[pipeline.{stage}] {key} {need}, got {value!r}")


def _coerce(stage: str, key: str, value: Any, kind: str, arg: Any) -> Any:
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            _fail(stage, key, value, "must be true or false")
        return bool(value)
    if kind == "enum":
        cls: type[IntEnum] = arg
        if isinstance(value, str):
            name = value.strip().upper()
            alias = _ENUM_ALIASES.get(cls, {})
            if name in alias:
                return int(alias[name])
            if name in cls.__members__:
                return int(cls[name])
            _fail(stage, key, value, f"must be one of {', '.join(m.lower() for m in cls.__members__)}")
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and int(value) in {int(m) for m in cls}:
            return int(value)
        _fail(stage, key, value, f"must be one of {', '.join(m.lower() for m in cls.__members__)}")
    if kind.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or float(value) != int(value):
            _fail(stage, key, value, "must be an integer")
        v = int(value)
        lo, hi = (arg, None) if kind == "int_ge" else arg
        if v < lo or (hi is not None and v > hi):
            _fail(stage, key, value, f"must be in [{lo}, {hi}]" if hi is not None else f"must be >= {lo}")
        return v
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(stage, key, value, "must be a number")
    v = float(value)
    if kind == "gt_or_nan":
        if not (math.isnan(v) or v > arg):
            _fail(stage, key, value, f"must be > {arg} (or nan = calibrate online)")
        return v
    if math.isnan(v):
        _fail(stage, key, value, "must be a number, not nan")
    if kind == "finite" and math.isinf(v):
        _fail(stage, key, value, "must be finite")
    if kind == "gt" and not v > arg:
        _fail(stage, key, value, f"must be > {arg}")
    if kind == "ge" and not v >= arg:
        _fail(stage, key, value, f"must be >= {arg}")
    return v


def _resolve(stage: str, values: dict[str, Any] | None) -> dict[str, Any]:
    if stage not in _SPECS:
        hint = difflib.get_close_matches(stage, STAGES, n=1, cutoff=0.5)
        tail = f"; did you mean {hint[0]!r}?" if hint else f"; stages: {', '.join(STAGES)}"
        raise ConfigError(f"unknown pipeline stage {stage!r}{tail}")
    specs = _SPECS[stage]
    values = dict(values or {})
    for key in values:
        if key not in specs:
            hint = difflib.get_close_matches(key, list(specs), n=1, cutoff=0.5)
            tail = f"; did you mean {hint[0]!r}?" if hint else f"; valid keys: {', '.join(specs)}"
            raise ConfigError(f"unknown key pipeline.{stage}.{key}{tail}")
    out = {}
    for key, (default, kind, arg) in specs.items():
        value = values.get(key, default)
        out[key] = None if value is None else _coerce(stage, key, value, kind, arg)
    return out


def check_stage_values(stage: str, values: dict[str, Any]) -> None:
    """Check a stage table's keys (nearest-key error) and each value's type and range (``ConfigError``).

    >>> check_stage_values("spread", {"risk_factor": 0.1, "model": "glft"})
    """
    _resolve(stage, values)


def make_params(stage: str, **values: Any) -> np.ndarray:
    """Params array ``(1,)`` of one stage from keyword values over the defaults (``ConfigError`` if invalid).

    ``stage`` is one of ``STAGES``; enum-valued keys take the enum, its int or its name (``model="glft"``).
    """
    v = _resolve(stage, values)
    if stage == "spread" and v["vol_min_samples"] > v["vol_buffer_size"]:
        _fail(stage, "vol_min_samples", v["vol_min_samples"], f"must be <= vol_buffer_size ({v['vol_buffer_size']})")
    if stage == "spread" and v["intensity_min_trades"] > v["intensity_buffer_size"]:
        _fail(stage, "intensity_min_trades", v["intensity_min_trades"],
              f"must be <= intensity_buffer_size ({v['intensity_buffer_size']})")
    if stage == "inventory" and v["skew_unit_qty"] is None:
        v["skew_unit_qty"] = v["order_qty"]
    if stage == "inventory" and v["sizing"] == SizingMode.BALANCE and v["lot_step"] <= 0:
        _fail(stage, "lot_step", v["lot_step"], "must be > 0 with sizing = 'balance' (the venue lot size of the symbol)")
    if stage == "emit" and v["burst_actions"] is None:
        rate = v["max_actions_per_s"]
        v["burst_actions"] = max(1.0, rate) if math.isfinite(rate) else INF
    arr = np.zeros(1, dtype=_PARAMS_DTYPES[stage])
    for key, value in v.items():
        arr[key] = value
    return arr


def make_state(stage: str, order_id_start: int = 1) -> np.ndarray:
    """Fresh state array ``(1,)`` of one stage; emit's client ids start at ``order_id_start``."""
    if stage not in _STATE_DTYPES:
        _resolve(stage, None)
    s = np.zeros(1, dtype=_STATE_DTYPES[stage])
    if stage == "fetch_md":
        s["seen_update_id"] = -1
    elif stage == "spread":
        s["sigma_ticks_1s"] = NAN
        s["intensity_a_per_s"] = NAN
        s["intensity_k_per_tick"] = NAN
        s["flow_bid_ts"] = -1
        s["flow_ask_ts"] = -1
    elif stage == "guards":
        s["start_ns"] = -1
        s["peak_equity"] = NAN
    elif stage == "emit":
        s["tokens"] = NAN
        s["next_order_id"] = order_id_start
    return s


def make_md_status(n: int = 1) -> np.ndarray:
    """Market-data status records (no book message yet)."""
    md = np.zeros(n, dtype=md_status_dtype)
    md["last_ts_local_ns"] = -1
    md["last_ts_exch_ns"] = -1
    md["last_update_id"] = -1
    return md


def make_decide_input(n: int = 1) -> np.ndarray:
    """Decision input records: empty book, flat, no balance, no score, neutral size, unknown latency."""
    x = np.zeros(n, dtype=decide_input_dtype)
    x["best_bid_tick"] = -(2**62)
    x["best_ask_tick"] = 2**62
    x["entry_price"] = NAN
    x["liq_price"] = NAN
    x["equity"] = NAN
    x["model_score"] = NAN
    x["size_mult"] = 1.0
    x["order_rtt_ns"] = -1
    return x


#: Stage name -> (params field, state field) of ``pipeline_dtype``.
FIELDS = {
    "fetch_md": ("fetch_params", "fetch_state"),
    "spread": ("spread_params", "spread_state"),
    "guards": ("guard_params", "guard_state"),
    "inventory": ("inventory_params", "inventory_state"),
    "queue_aware": ("queue_params", "queue_state"),
    "emit": ("emit_params", "emit_state"),
}


@dataclass
class DecideBuffers:
    """Working orders in, quotes and actions out: the arrays ``decide_nb`` takes besides the pipeline record."""

    orders: np.ndarray
    quotes: np.ndarray
    actions: np.ndarray


@dataclass(frozen=True)
class Pipeline:
    """``arr``: one ``pipeline_dtype`` record per symbol (params, states, md status, inputs, last decision)."""

    arr: np.ndarray

    def rec(self, i: int = 0) -> np.void:
        """Symbol ``i``'s record (a view: writes go to ``arr``)."""
        return self.arr[i]

    def params(self, stage: str, i: int = 0) -> np.void:
        """View of one stage's params record."""
        return self.arr[i][FIELDS[stage][0]]

    def state(self, stage: str, i: int = 0) -> np.void:
        """View of one stage's state record."""
        return self.arr[i][FIELDS[stage][1]]

    def buffers(self, max_orders: int = 64) -> DecideBuffers:
        """Allocate working-order, quote and action buffers for up to ``max_orders`` working orders."""
        return DecideBuffers(
            orders=np.zeros(max_orders, dtype=working_order_dtype),
            quotes=np.zeros(2 * MAX_QUOTE_LEVELS, dtype=quote_dtype),
            actions=np.zeros(max_orders + 2 * MAX_QUOTE_LEVELS, dtype=action_dtype),
        )

    def decide(self, now_ns: int, b: DecideBuffers, n_orders: int, i: int = 0) -> int:
        """One ``decide_nb`` call for symbol ``i`` (Python entry point for tests and the live runner)."""
        from mmlab.pipeline.decide import decide_nb

        return int(decide_nb(np.int64(now_ns), self.arr[i], b.orders, np.int64(n_orders), b.quotes, b.actions))


def make_pipeline(
    fetch_md: dict | None = None,
    spread: dict | None = None,
    guards: dict | None = None,
    inventory: dict | None = None,
    queue_aware: dict | None = None,
    emit: dict | None = None,
    *,
    n_symbols: int = 1,
    order_id_start: int = 1,
) -> Pipeline:
    """Pipeline records of ``n_symbols`` symbols from per-stage dicts over the defaults (``ConfigError`` if invalid).

    Cross-stage defaults: ``spread.unit_qty`` defaults to ``inventory.order_qty``; ``guards.leverage`` to
    ``inventory.leverage``. Symbol-specific values (``inventory.tick_size``, ``lot_step``, ``min_qty``) can be set
    afterwards per record: ``pl.arr[i]["inventory_params"]["tick_size"] = 0.1``.
    """
    if n_symbols < 1:
        raise ConfigError(f"n_symbols must be >= 1, got {n_symbols}")
    inventory = dict(inventory or {})
    spread = dict(spread or {})
    guards = dict(guards or {})
    inv = make_params("inventory", **inventory)
    spread.setdefault("unit_qty", float(inv["order_qty"][0]))
    guards.setdefault("leverage", float(inv["leverage"][0]))
    given = {"fetch_md": fetch_md, "spread": spread, "guards": guards, "queue_aware": queue_aware, "emit": emit}
    built = {stage: make_params(stage, **(given[stage] or {})) for stage in given}
    built["inventory"] = inv
    depth = int(built["fetch_md"]["depth_levels"][0])
    if depth > PIPELINE_DEPTH_MAX:
        _fail("fetch_md", "depth_levels", depth, f"must be <= {PIPELINE_DEPTH_MAX} (PIPELINE_DEPTH_MAX)")
    arr = np.zeros(n_symbols, dtype=pipeline_dtype)
    for stage, (pf, sf) in FIELDS.items():
        arr[pf] = built[stage][0]
        arr[sf] = make_state(stage, order_id_start)[0]
    arr["md"] = make_md_status()[0]
    arr["inp"] = make_decide_input()[0]
    return Pipeline(arr=arr)


def grid_pipeline(
    *,
    half_spread_ticks: float,
    skew_ticks: float,
    order_qty: float,
    max_position: float,
    grid_num: int,
    grid_interval_ticks: int,
    n_symbols: int = 1,
    **_ignored: Any,
) -> Pipeline:
    """The reference grid through the stages (keys of ``[strategy]``; ``name``/``interval_ms`` are ignored).

    Every decision: ``mid = (best_bid + best_ask) / 2``, ``reservation = mid - skew_ticks * position /
    order_qty``, ``bid0 = min(floor(reservation - half_spread_ticks), best_bid)``, ``ask0 = max(ceil(reservation
    + half_spread_ticks), best_ask)``, ``grid_num`` levels ``grid_interval_ticks`` apart, no bids at ``position >=
    max_position``, no asks at ``position <= -max_position``, nothing (working orders canceled) when a side of the
    book is empty; acknowledged working orders without a request in flight that are not at a desired price of
    their side are canceled; desired prices held by no active order are placed as GTX limit orders of
    ``order_qty`` whose id is the price tick. I.e. fixed spread, no freshness or guard gates, fixed size without
    lot rounding, no queue keeping, emit with zero tolerance, no rate limit, ``id_from_price`` and
    ``cancel_on_skip``: ``mmlab.sim.grid_nb.grid_decide_nb`` through the stages.
    """
    unknown = set(_ignored) - {"name", "interval_ms"}
    if unknown:
        raise ConfigError(f"unknown grid key(s) {sorted(unknown)}; valid: half_spread_ticks, skew_ticks, order_qty, "
                          "max_position, grid_num, grid_interval_ticks")
    tables = grid_stage_tables(half_spread_ticks=half_spread_ticks, skew_ticks=skew_ticks, order_qty=order_qty,
                               max_position=max_position, grid_num=grid_num, grid_interval_ticks=grid_interval_ticks)
    return make_pipeline(**tables, n_symbols=n_symbols)


def grid_stage_tables(
    *,
    half_spread_ticks: float = 2.0,
    skew_ticks: float = 0.0,
    order_qty: float = 0.001,
    max_position: float = 0.01,
    grid_num: int = 5,
    grid_interval_ticks: int = 1,
) -> dict[str, dict[str, Any]]:
    """The stage tables (``make_pipeline`` keyword dicts) of :func:`grid_pipeline`."""
    return dict(
        fetch_md=dict(ttl_ms=INF, fresh_ms_for_pricing=INF, stale_ok=True, skip_pricing_on_stale=False,
                      depth_levels=0, reject_crossed=False, seq_check="none"),
        spread=dict(model="fixed", fair="mid", half_spread_ticks=half_spread_ticks, min_half_spread_ticks=0.0,
                    max_half_spread_ticks=INF, min_spread_bps=0.0, calibrate_intensity=False),
        guards=dict(warmup_s=0.0, fresh_only=False, near_liq_enabled=False, liq_gate_qty=0.0,
                    deadline_level="none"),
        inventory=dict(sizing="fixed", order_qty=order_qty, lot_step=0.0, min_qty=0.0, min_notional_usd=0.0,
                       min_free_balance_usd=0.0, max_position=max_position, skew_mode="fixed",
                       skew_ticks=skew_ticks, skew_unit_qty=order_qty, grid_num=grid_num,
                       grid_interval_ticks=grid_interval_ticks, clamp_to_touch=True),
        queue_aware=dict(keep_ticks=0, keep_back_ticks=0, tau_entry=0.0, tau_hold=0.0),
        emit=dict(price_tol_ticks=0, qty_tol_frac=INF, use_modify=False, max_actions_per_s=INF, post_only=False,
                  maker_only=False, reduce_only=False, tif="gtx", min_order_age_ms=0.0, cancel_on_halt=True,
                  cancel_on_skip=True, id_from_price=True),
    )


#: Preset name -> constructor.
PRESETS: dict[str, Callable[..., Pipeline]] = {"grid": grid_pipeline}


def counters(pl: Pipeline, i: int = 0) -> dict[str, int]:
    """Flat dict of every stage counter of symbol ``i`` (``fetch_md.pricing_on_stale.guard_block``, ...)."""
    f, sp, g, inv, q, e = (pl.state(stage, i) for stage in STAGES)
    out: dict[str, int] = {}
    for k in ("calls", "hits", "misses", "depth_miss"):
        out[f"fetch_md.{k}"] = int(f[k])
    for r in StaleReason:
        out[f"fetch_md.pricing_on_stale.{r.name.lower()}"] = int(f["pricing_on_stale"][r])
    for r in MdInvalid:
        if r != MdInvalid.NONE:
            out[f"fetch_md.invalidations.{r.name.lower()}"] = int(f["invalidations"][r])
    out["spread.calls"] = int(sp["calls"])
    out["spread.n_trades"] = int(sp["n_trades"])
    for k in ("calls", "warmup_skip", "deadline_miss", "hard", "soft", "side"):
        out[f"guards.{k}"] = int(g[k])
    for r in GuardReason:
        if r != GuardReason.NONE:
            out[f"guards.trips.{r.name.lower()}"] = int(g["trips"][r])
    for k in ("calls", "below_min", "low_balance", "max_long", "max_short", "guard_side"):
        out[f"inventory.{k}"] = int(inv[k])
    for k in ("calls", "kept", "dropped_entry", "dropped_hold"):
        out[f"queue_aware.{k}"] = int(q[k])
    for k in ("calls", "placed", "canceled", "modified", "deferred", "filtered", "halts", "in_flight"):
        out[f"emit.{k}"] = int(e[k])
    return out


def unpack_reasons(code: int) -> dict[str, IntEnum]:
    """Split a ``pack_reasons_nb`` code into the six stage reasons and the QuoteAction."""
    from mmlab.types import EmitReason, FetchReason, InventoryReason, QueueReason, QuoteAction, SpreadReason

    code = int(code)
    enums = (("fetch_md", FetchReason), ("spread", SpreadReason), ("guards", GuardReason),
             ("inventory", InventoryReason), ("queue_aware", QueueReason), ("emit", EmitReason),
             ("quote_action", QuoteAction))
    return {name: enum((code >> (8 * k)) & 0xFF) for k, (name, enum) in enumerate(enums)}
