"""Frozen, validated backtest configuration with a content hash (the config id).

TOML in, TOML/JSON out. Unknown sections or keys are errors naming the nearest valid key; values are type- and
range-checked. ``--set section.key=value`` overrides are parsed as TOML values.

>>> cfg = load_config({"data": {"symbols": ["BTCUSDT"]}}, overrides=["sim.entry_latency_ms=5"])
>>> cfg.sim.entry_latency_ms
5.0
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlab.errors import ConfigError

QUEUE_MODELS = ("risk_averse", "power_prob", "power_prob2", "power_prob3", "log_prob", "log_prob2")
EXCHANGE_MODELS = ("no_partial", "partial")
LATENCY_MODELS = ("constant", "per_action", "empirical", "random")


def _check(cond: bool, section: str, key: str, value: Any, need: str) -> None:
    if not cond:
        raise ConfigError(f"[{section}] {key} {need}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which market data a run replays."""

    root: str = "data"  # store root
    venue: str = "binance-usdm"
    symbols: tuple[str, ...] = ("SYNTHUSDT",)
    start: str | None = None  # ISO-8601 UTC, inclusive (local time)
    end: str | None = None  # ISO-8601 UTC, exclusive

    def validate(self) -> None:
        _check(len(self.symbols) > 0, "data", "symbols", self.symbols, "must name at least one symbol")
        _check(all(isinstance(s, str) and s for s in self.symbols), "data", "symbols", self.symbols, "must be non-empty strings")


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    """Exchange, queue, latency and fee models of the simulator."""

    queue_model: str = "risk_averse"
    queue_power: float = 2.0  # n of the power/log probability queue models
    exchange_model: str = "no_partial"
    latency_model: str = "constant"
    entry_latency_ms: float = 10.0  # order entry (local send -> exchange)
    response_latency_ms: float = 10.0  # exchange -> local response
    cancel_latency_ms: float | None = None  # per_action; None = entry_latency_ms
    modify_latency_ms: float | None = None  # per_action; None = entry_latency_ms
    latency_table: str | None = None  # empirical: parquet/CSV with req_ts, exch_ts, resp_ts (ns)
    latency_jitter_ms: float = 0.0  # random: scale of the seeded jitter
    shock_prob: float = 0.0  # random: probability per order of a latency shock
    shock_mult: float = 10.0  # random: latency multiplier during a shock
    maker_fee: float = 0.0  # fraction of notional; negative = rebate
    taker_fee: float = 0.0005
    initial_cash: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        _check(self.queue_model in QUEUE_MODELS, "sim", "queue_model", self.queue_model, f"must be one of {QUEUE_MODELS}")
        _check(self.exchange_model in EXCHANGE_MODELS, "sim", "exchange_model", self.exchange_model, f"must be one of {EXCHANGE_MODELS}")
        _check(self.latency_model in LATENCY_MODELS, "sim", "latency_model", self.latency_model, f"must be one of {LATENCY_MODELS}")
        _check(self.queue_power > 0, "sim", "queue_power", self.queue_power, "must be > 0")
        for k in ("entry_latency_ms", "response_latency_ms", "latency_jitter_ms"):
            _check(getattr(self, k) >= 0, "sim", k, getattr(self, k), "must be >= 0")
        for k in ("cancel_latency_ms", "modify_latency_ms"):
            v = getattr(self, k)
            _check(v is None or v >= 0, "sim", k, v, "must be >= 0")
        _check(0.0 <= self.shock_prob <= 1.0, "sim", "shock_prob", self.shock_prob, "must be in [0, 1]")
        _check(self.shock_mult >= 1.0, "sim", "shock_mult", self.shock_mult, "must be >= 1")
        _check(-0.01 < self.maker_fee < 0.01, "sim", "maker_fee", self.maker_fee, "must be a fraction of notional in (-0.01, 0.01) (e.g. 0.0002 = 2 bps)")
        _check(-0.01 < self.taker_fee < 0.01, "sim", "taker_fee", self.taker_fee, "must be a fraction of notional in (-0.01, 0.01) (e.g. 0.0005 = 5 bps)")
        _check(self.latency_model != "empirical" or bool(self.latency_table), "sim", "latency_table", self.latency_table, "is required when latency_model = 'empirical'")
        _check(self.seed >= 0, "sim", "seed", self.seed, "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class StrategyConfig:
    """The strategy and its parameters (the reference ``grid`` strategy's keys)."""

    name: str = "grid"
    interval_ms: float = 100.0  # decision tick period, local time
    grid_num: int = 5  # orders per side
    grid_interval_ticks: int = 1
    half_spread_ticks: float = 2.0
    skew_ticks: float = 0.0  # reservation shift per order_qty of position
    order_qty: float = 0.001
    max_position: float = 0.01

    def validate(self) -> None:
        _check(self.interval_ms > 0, "strategy", "interval_ms", self.interval_ms, "must be > 0")
        _check(self.grid_num >= 1, "strategy", "grid_num", self.grid_num, "must be >= 1")
        _check(self.grid_interval_ticks >= 1, "strategy", "grid_interval_ticks", self.grid_interval_ticks, "must be >= 1")
        _check(self.half_spread_ticks >= 0, "strategy", "half_spread_ticks", self.half_spread_ticks, "must be >= 0")
        _check(self.order_qty > 0, "strategy", "order_qty", self.order_qty, "must be > 0")
        _check(self.max_position > 0, "strategy", "max_position", self.max_position, "must be > 0")


@dataclass(frozen=True, kw_only=True)
class LabelsConfig:
    """Forward-looking label horizons (training data only)."""

    horizons_ms: tuple[float, ...] = (100.0, 1000.0, 5000.0)

    def validate(self) -> None:
        _check(len(self.horizons_ms) > 0 and all(h > 0 for h in self.horizons_ms), "labels", "horizons_ms", self.horizons_ms, "must be positive numbers")


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    dir: str | None = None  # run directory; None = experiments/runs/<run_id>

    def validate(self) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """Stage parameters of the shared pipeline, one table per stage (``[pipeline.spread]`` ...).

    Keys are those of :mod:`mmlab.pipeline_config` (``make_params``); they apply on top of the strategy preset's
    defaults and its ``[strategy]`` keys. ``--set pipeline.spread.risk_factor=0.1`` sets one of them.
    """

    fetch_md: dict = field(default_factory=dict)
    spread: dict = field(default_factory=dict)
    guards: dict = field(default_factory=dict)
    inventory: dict = field(default_factory=dict)
    queue_aware: dict = field(default_factory=dict)
    emit: dict = field(default_factory=dict)
    sample_stage_tracing: float = 0.0  # fraction of decision ticks whose stages are timed (0 = none, 1 = all)

    def stage_tables(self) -> dict[str, dict]:
        """The non-empty stage tables, ``{stage: {key: value}}`` (copies)."""
        from mmlab.pipeline_config import STAGES

        return {s: dict(getattr(self, s)) for s in STAGES if getattr(self, s)}

    def validate(self) -> None:
        # Per-key checks only: cross-key checks (e.g. vol_min_samples <= vol_buffer_size) need the preset's
        # defaults and run when the strategy builds its pipeline.
        from mmlab.pipeline_config import STAGES, check_stage_values

        for stage in STAGES:
            table = getattr(self, stage)
            _check(isinstance(table, dict), "pipeline", stage, table, f"must be a table ([pipeline.{stage}] key = value)")
            check_stage_values(stage, table)
        _check(0.0 <= self.sample_stage_tracing <= 1.0, "pipeline", "sample_stage_tracing", self.sample_stage_tracing,
               "must be in [0, 1] (fraction of decision ticks timed)")


@dataclass(frozen=True, kw_only=True)
class AllocatorConfig:
    """Multi-symbol scoreboard and dynamic allocator (``mmlab.pipeline.allocator``; keys of the seed's
    ``symbol_scoreboard`` and ``dynamic_allocator`` sections). ``enabled`` runs the strategy through the allocator:
    per-symbol weights (mean 1.0) become the inventory stage's size multiplier."""

    enabled: bool = False
    rebalance_period_s: float = 30.0  # weights are recomputed at the first decision this long after the last
    ema_alpha: float = 0.1  # EMA weight of each new observation of a metric
    min_samples: int = 10  # marked fills before a symbol's score is used (neutral score before)
    weight_net_bps: float = 0.4  # composite score weights (sum 1)
    weight_fill_rate: float = 0.2
    weight_slippage: float = 0.2
    weight_queue_edge: float = 0.1
    weight_adverse_penalty: float = 0.1
    softmax_temperature: float = 1.0  # scores (in [-1, 1]) are divided by this before the softmax
    min_weight: float = 0.1  # weights of eligible symbols are clamped to [min_weight, max_weight]
    max_weight: float = 3.0
    hysteresis_threshold: float = 0.05  # weight changes smaller than this are not applied
    whitelist: tuple[str, ...] = ()  # empty = every symbol allowed
    blacklist: tuple[str, ...] = ()  # never quoted (weight 0)
    auto_blacklist_net_bps: float = -5.0  # weight 0 once the net_bps EMA stays below this ...
    auto_blacklist_window_min: float = 30.0  # ... for this long
    auto_blacklist_cooldown_min: float = 0.0  # then out for this long; 0 = for the rest of the run
    markout_ms: float = 1000.0  # mark-to-market horizon of net_bps and adverse_penalty
    queue_edge_ms: float = 1000.0  # time in queue at which a maker fill's queue edge falls to 1/e
    net_bps_scale: float = 5.0  # metric / scale, clipped to [-1, 1], enters the score
    slippage_bps_scale: float = 5.0
    adverse_bps_scale: float = 5.0

    def validate(self) -> None:
        s = "allocator"
        for k in ("rebalance_period_s", "softmax_temperature", "markout_ms", "queue_edge_ms", "net_bps_scale",
                  "slippage_bps_scale", "adverse_bps_scale", "auto_blacklist_window_min"):
            _check(getattr(self, k) > 0, s, k, getattr(self, k), "must be > 0")
        _check(0.0 < self.ema_alpha <= 1.0, s, "ema_alpha", self.ema_alpha, "must be in (0, 1]")
        _check(self.min_samples >= 1, s, "min_samples", self.min_samples, "must be >= 1")
        weights = ("weight_net_bps", "weight_fill_rate", "weight_slippage", "weight_queue_edge", "weight_adverse_penalty")
        for k in weights:
            _check(getattr(self, k) >= 0, s, k, getattr(self, k), "must be >= 0")
        total = sum(getattr(self, k) for k in weights)
        _check(abs(total - 1.0) <= 1e-6, s, "weight_*", total, f"must sum to 1 ({' + '.join(weights)}); rescale them")
        _check(0.0 <= self.min_weight, s, "min_weight", self.min_weight, "must be >= 0")
        _check(self.max_weight >= max(self.min_weight, 1.0), s, "max_weight", self.max_weight,
               f"must be >= max(min_weight, 1.0) = {max(self.min_weight, 1.0)}")
        _check(self.min_weight <= 1.0, s, "min_weight", self.min_weight, "must be <= 1.0 (the neutral weight)")
        _check(self.hysteresis_threshold >= 0, s, "hysteresis_threshold", self.hysteresis_threshold, "must be >= 0")
        _check(self.auto_blacklist_cooldown_min >= 0, s, "auto_blacklist_cooldown_min", self.auto_blacklist_cooldown_min,
               "must be >= 0 (0 = for the rest of the run)")
        both = sorted(set(self.whitelist) & set(self.blacklist))
        _check(not both, s, "blacklist", list(self.blacklist), f"names whitelisted symbol(s) {both}; list each in one only")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Model scores in the loop (ONNX models of the registry)."""

    id: str | None = None  # model id in the registry, "active"/"shadow" (the slot), or a model dir; None = no model
    shadow_id: str | None = None  # scored alongside and reported (summary.json "model"), never trades
    registry: str = "models/registry"  # registry directory (manifest.json)
    features: str = "model"  # feature list source: "model" (model.json) or "sidecar" (dataset.schema.json)
    scoring: str = "batch"  # "batch" (one onnxruntime call) or "row" (tick by tick, the live path)
    tau_entry: float | None = None  # override of the model's tau_entry (new quotes need score >= it)
    tau_hold: float | None = None  # override of the model's tau_hold (working orders need score >= it)
    backend: str = "compiled"  # "compiled" (numba tree kernels, checked against onnxruntime at load) or "onnxruntime"

    def validate(self) -> None:
        _check(self.features in ("model", "sidecar"), "model", "features", self.features, "must be 'model' or 'sidecar'")
        _check(self.backend in ("compiled", "onnxruntime"), "model", "backend", self.backend, "must be 'compiled' or 'onnxruntime'")
        _check(self.scoring in ("batch", "row"), "model", "scoring", self.scoring, "must be 'batch' or 'row'")
        for k in ("tau_entry", "tau_hold"):
            v = getattr(self, k)
            _check(v is None or 0.0 <= v <= 1.0, "model", k, v, "must be a probability in [0, 1]")
        _check(bool(self.registry), "model", "registry", self.registry, "must name the registry directory")


@dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """Canary rollout of approved signals and its guard rails (``mmlab canary``; :mod:`mmlab.hpo.canary`).

    In ``canary`` mode a signal (a placed order) goes to the candidate when a hash of (``rng_seed``, symbol,
    decision time, side, price) falls below ``canary_fraction``; ``full`` routes every signal to the candidate,
    ``disabled`` none. A rollback (to ``disabled``) fires when any guard rail holds: the canary win rate trails the
    baseline by more than ``winrate_delta_pp`` once ``min_sample`` canary trades are marked; more than
    ``parity_fail_max`` parity failures in ``parity_window_s``; PSI > ``psi_block`` or KS > ``ks_block`` of a
    drift feature over ``drift_window_s``. No mode switch happens within ``cooldown_s`` of the previous one.
    """

    mode: str = "disabled"  # disabled | canary | full
    canary_fraction: float = 0.10  # share of approved signals hashed to the candidate in canary mode
    rng_seed: int = 1337  # seed of the per-signal routing hash
    winrate_delta_pp: float = 5.0  # rollback when winrate_canary < winrate_baseline - this (percentage points)
    min_sample: int = 50  # canary trades needed before the win-rate rail applies
    winrate_horizon_ms: float = 1000.0  # a trade is won when its markout at this horizon is > 0 (a labels horizon)
    psi_block: float = 0.3  # rollback when PSI of a drift feature exceeds this
    ks_block: float = 0.2  # rollback when the KS statistic of a drift feature exceeds this
    drift_features: tuple[str, ...] = ("spread_ticks", "imbalance")  # labels.parquet columns watched for drift
    drift_window_s: float = 1800.0  # trailing window of canary signals compared with the reference
    drift_min_sample: int = 200  # canary signals in the window needed before the drift rails apply (PSI of
    # small samples is noisy: an empty decile bin alone adds ~0.7)
    parity_fail_max: int = 0  # rollback when parity failures in parity_window_s exceed this
    parity_window_s: float = 600.0
    cooldown_s: float = 900.0  # no mode switch within this long of the previous one
    check_interval_s: float = 60.0  # guard rails are evaluated at this period of local time
    auto_reenable: bool = False  # after a rollback and its cooldown, resume the canary with fresh samples
    winrate_target: float = 0.5  # release gate: canary win rate >= this
    markout_min_bps: float = 0.0  # release gate: canary mean markout (winrate horizon) >= this
    fill_rate_min: float = 0.25  # release gate: canary fill rate >= this

    def validate(self) -> None:
        s = "rollout"
        modes = ("disabled", "canary", "full")
        _check(self.mode in modes, s, "mode", self.mode, f"must be one of {modes}")
        _check(0.0 < self.canary_fraction <= 1.0, s, "canary_fraction", self.canary_fraction,
               "must be in (0, 1] (e.g. 0.10 = 10% of approved signals)")
        _check(self.rng_seed >= 0, s, "rng_seed", self.rng_seed, "must be >= 0")
        _check(0.0 <= self.winrate_delta_pp <= 100.0, s, "winrate_delta_pp", self.winrate_delta_pp,
               "must be in [0, 100] percentage points")
        for k in ("min_sample", "drift_min_sample"):
            _check(getattr(self, k) >= 1, s, k, getattr(self, k), "must be >= 1")
        _check(self.parity_fail_max >= 0, s, "parity_fail_max", self.parity_fail_max, "must be >= 0")
        _check(self.psi_block > 0, s, "psi_block", self.psi_block, "must be > 0 (0.3 is the usual drift block)")
        _check(0.0 < self.ks_block <= 1.0, s, "ks_block", self.ks_block, "must be in (0, 1] (0.2 is the usual drift block)")
        for k in ("winrate_horizon_ms", "drift_window_s", "parity_window_s", "check_interval_s"):
            _check(getattr(self, k) > 0, s, k, getattr(self, k), "must be > 0")
        _check(self.cooldown_s >= 0, s, "cooldown_s", self.cooldown_s, "must be >= 0")
        _check(len(self.drift_features) > 0, s, "drift_features", self.drift_features,
               "must name at least one labels.parquet column (e.g. spread_ticks)")
        for k in ("winrate_target", "fill_rate_min"):
            _check(0.0 <= getattr(self, k) <= 1.0, s, k, getattr(self, k), "must be a fraction in [0, 1]")


@dataclass(frozen=True, kw_only=True)
class LiveConfig:
    """Live runner settings (``mmlab live --paper``): venue endpoints, guards, resilience, recorder, metrics."""

    venue: str = "bybit-linear"  # bybit-linear | bybit-spot | binance-usdm
    symbols: tuple[str, ...] = ()  # empty = data.symbols
    ws_url: str | None = None  # None = the venue's public endpoint (tests point it at a local server)
    rest_url: str | None = None  # None = the venue's REST base (instruments-info, depth snapshots)
    book_depth: int = 50  # Bybit orderbook.{1,50,200,1000}; Binance REST snapshot limit
    tick_sizes: dict = field(default_factory=dict)  # SYMBOL -> tick size (else from REST instruments-info)
    lot_sizes: dict = field(default_factory=dict)  # SYMBOL -> lot size
    warmup_s: float = 90.0  # no quoting for this long after start (warmup_skip_total)
    stale_ms: float = 5000.0  # no market data for a symbol this long -> HARD guard, cancel all
    horizon_margin_ms: float = 100.0  # the simulator runs up to now minus this (covers feed latency)
    step_ms: float = 20.0  # the simulator advances at least this often, data or not
    ping_interval_s: float = 20.0  # websocket keepalive ({"op":"ping"} on Bybit)
    backoff_initial_s: float = 0.5  # reconnect delay, doubled per failed attempt up to backoff_max_s
    backoff_max_s: float = 30.0
    connect_timeout_s: float = 10.0
    queue_max: int = 1024  # bounded frame queue (entries); a full queue coalesces (backpressure_total)
    max_backlog_frames: int = 200_000  # beyond this backlog, book frames are dropped and the books re-synced
    latency_budget_us: float = 50.0  # a received frame waits at most this long for frames read ahead to join its step
    kill_switch_file: str | None = None  # while this file exists: HARD guard, cancel all
    metrics_port: int = 0  # Prometheus /metrics port; 0 = off
    duration_s: float = 0.0  # stop after this long; 0 = until interrupted
    out_dir: str | None = None  # None = experiments/live/<utc timestamp>
    # Real mode (mmlab live --real --i-understand-this-trades-real-money): Bybit v5 linear, keys from the environment.
    real_env: str = "testnet"  # testnet | demo | mainnet (REST and private websocket endpoints)
    real_rest_url: str | None = None  # None = the real_env's REST base (tests point it at a local venue)
    real_ws_url: str | None = None  # None = the real_env's private websocket
    real_max_order_notional: float = 0.0  # quote currency per order; 0 = unset (real mode refuses to start)
    real_max_position_qty: float = 0.0  # |position + working orders of a side|, base units; 0 = unset
    real_max_orders_per_s: float = 0.0  # new orders per second; 0 = unset
    real_recv_window_ms: int = 5000  # X-BAPI-RECV-WINDOW
    real_reconcile_interval_s: float = 30.0  # open orders + position checked against the venue this often
    real_reconcile_policy: str = "cancel"  # unknown venue orders: cancel | adopt | report
    # Fail-safe mode (live/failsafe.py): a critical event routes every execution to paper for a cooldown.
    failsafe: bool = False  # on: real auth/REST failures, reconnect failures, parity desync, hard staleness trip it
    failsafe_cooldown_s: float = 300.0  # time in fail-safe after the last critical event, then back when healthy
    failsafe_stale_ms: float = 30000.0  # no market data of a symbol this long is critical (0 = off)
    failsafe_reconnect_failures: int = 3  # connection attempts failing in a row that are critical (0 = off)
    # A/B of two strategy configurations by symbol (live/rollout.py; mmlab.analysis.ab routing and gates).
    ab_b_config: str | None = None  # TOML of config B (its strategy/pipeline params); None with ab_b_set empty = off
    ab_b_set: tuple[str, ...] = ()  # overrides (section.key=value) turning this config into config B
    ab_split_pct: float = 0.5  # fraction of eligible symbols routed to B
    ab_salt: str = "mmlab-ab"
    ab_whitelist: tuple[str, ...] = ()  # non-empty: only these symbols may go to B
    ab_blacklist: tuple[str, ...] = ()  # never routed to B
    ab_interval_s: float = 60.0  # metric interval of the gates
    ab_gate_duration_s: float = 600.0  # a gate trips when violated over this long
    ab_auto_rollback: bool = True  # a tripped gate routes every symbol to A

    def validate(self) -> None:
        s = "live"
        _check(self.failsafe_cooldown_s >= 0, s, "failsafe_cooldown_s", self.failsafe_cooldown_s, "must be >= 0")
        _check(self.failsafe_stale_ms >= 0, s, "failsafe_stale_ms", self.failsafe_stale_ms, "must be >= 0 (0 = off)")
        _check(self.failsafe_reconnect_failures >= 0, s, "failsafe_reconnect_failures",
               self.failsafe_reconnect_failures, "must be >= 0 (0 = off)")
        _check(0.0 <= self.ab_split_pct <= 1.0, s, "ab_split_pct", self.ab_split_pct, "must be in [0, 1]")
        _check(self.ab_interval_s > 0, s, "ab_interval_s", self.ab_interval_s, "must be > 0")
        _check(self.ab_gate_duration_s >= 0, s, "ab_gate_duration_s", self.ab_gate_duration_s, "must be >= 0")
        venues = ("bybit-linear", "bybit-spot", "binance-usdm")
        _check(self.venue in venues, s, "venue", self.venue, f"must be one of {venues}")
        _check(self.book_depth in (1, 5, 10, 20, 50, 100, 200, 500, 1000), s, "book_depth", self.book_depth,
               "must be a venue depth (Bybit 1/50/200/1000, Binance 5..1000)")
        for k in ("warmup_s", "horizon_margin_ms", "duration_s"):
            _check(getattr(self, k) >= 0, s, k, getattr(self, k), "must be >= 0")
        for k in ("stale_ms", "step_ms", "ping_interval_s", "backoff_initial_s", "backoff_max_s", "connect_timeout_s"):
            _check(getattr(self, k) > 0, s, k, getattr(self, k), "must be > 0")
        _check(self.backoff_max_s >= self.backoff_initial_s, s, "backoff_max_s", self.backoff_max_s,
               "must be >= backoff_initial_s")
        _check(self.queue_max >= 1, s, "queue_max", self.queue_max, "must be >= 1")
        _check(self.max_backlog_frames >= 1, s, "max_backlog_frames", self.max_backlog_frames, "must be >= 1")
        _check(self.latency_budget_us >= 0, s, "latency_budget_us", self.latency_budget_us,
               "must be >= 0 (0 = step every frame as it is received)")
        _check(0 <= self.metrics_port < 65536, s, "metrics_port", self.metrics_port, "must be a port number (0 = off)")
        for k in ("tick_sizes", "lot_sizes"):
            v = getattr(self, k)
            _check(isinstance(v, dict) and all(isinstance(x, (int, float)) and x > 0 for x in v.values()), s, k, v,
                   "must map SYMBOL = size > 0")
        _check(self.real_env in ("testnet", "demo", "mainnet"), s, "real_env", self.real_env,
               "must be one of ('testnet', 'demo', 'mainnet')")
        for k in ("real_max_order_notional", "real_max_position_qty", "real_max_orders_per_s"):
            _check(getattr(self, k) >= 0, s, k, getattr(self, k), "must be >= 0 (0 = unset)")
        _check(self.real_recv_window_ms > 0, s, "real_recv_window_ms", self.real_recv_window_ms, "must be > 0")
        _check(self.real_reconcile_interval_s > 0, s, "real_reconcile_interval_s", self.real_reconcile_interval_s,
               "must be > 0")
        _check(self.real_reconcile_policy in ("cancel", "adopt", "report"), s, "real_reconcile_policy",
               self.real_reconcile_policy, "must be one of ('cancel', 'adopt', 'report')")


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "sim": SimConfig,
    "strategy": StrategyConfig,
    "labels": LabelsConfig,
    "output": OutputConfig,
    "pipeline": PipelineConfig,
    "allocator": AllocatorConfig,
    "model": ModelConfig,
    "rollout": RolloutConfig,
    "live": LiveConfig,
}


@dataclass(frozen=True, kw_only=True)
class BacktestConfig:
    data: DataConfig = field(default_factory=DataConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    allocator: AllocatorConfig = field(default_factory=AllocatorConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    live: LiveConfig = field(default_factory=LiveConfig)

    def to_dict(self) -> dict:
        return {name: _section_dict(getattr(self, name)) for name in SECTIONS}

    @property
    def config_id(self) -> str:
        """Content hash of the resolved config, output location excluded."""
        d = self.to_dict()
        d.pop("output", None)
        d.pop("live", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())

    def replace(self, **sections) -> "BacktestConfig":
        return dataclasses.replace(self, **sections)


def _section_dict(obj) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _nearest(name: str, valid: list[str]) -> str:
    m = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
    return f"; did you mean {m[0]!r}?" if m else f"; valid keys: {', '.join(valid)}"


def _coerce(section: str, f: dataclasses.Field, value: Any) -> Any:
    t = f.type if isinstance(f.type, str) else str(f.type)
    if value is None:
        if "None" in t:
            return None
        raise ConfigError(f"[{section}] {f.name} may not be empty")
    try:
        if t.startswith("tuple[str"):
            if isinstance(value, str):
                value = [s for s in value.split(",") if s]
            return tuple(str(v) for v in value)
        if t.startswith("tuple[float"):
            if isinstance(value, (int, float)):
                value = [value]
            return tuple(float(v) for v in value)
        if t.startswith("float"):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if t.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if t.startswith("bool"):
            if not isinstance(value, bool):
                raise TypeError
            return value
        if t.startswith("str"):
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[{section}] {f.name} expects {t}, got {value!r}") from exc
    return value


def _parse_override(item: str) -> tuple[str, str, Any]:
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"override {item!r} must look like section.key=value (e.g. sim.entry_latency_ms=5)")
    path, raw = item.split("=", 1)
    section, key = path.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # bare strings: --set data.venue=binance-usdm
    return section, key, value


def load_config(source: str | os.PathLike | dict | None = None, overrides: list[str] | tuple[str, ...] = ()) -> BacktestConfig:
    """Build a validated :class:`BacktestConfig` from a TOML file, a dict, or defaults, then apply overrides."""
    if source is None:
        raw: dict = {}
        origin = "defaults"
    elif isinstance(source, dict):
        raw = {k: dict(v) if isinstance(v, dict) else v for k, v in source.items()}
        origin = "config dict"
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        origin = str(path)
    for item in overrides:
        section, key, value = _parse_override(item)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"override {item!r}: {section!r} is not a section")
        # Nested tables (pipeline.spread.risk_factor): copy each level so the caller's dict is never modified.
        target = raw[section] = dict(raw[section])
        *parents, key = key.split(".")
        for name in parents:
            sub = target.get(name, {})
            if not isinstance(sub, dict):
                raise ConfigError(f"override {item!r}: {section}.{name} is not a table")
            target[name] = target = dict(sub)
        target[key] = value
    built = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {origin}{_nearest(section, list(SECTIONS))}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {origin} must be a table of key = value")
        cls = SECTIONS[section]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"unknown key {section}.{key} in {origin}{_nearest(key, list(fields))}")
            kwargs[key] = _coerce(section, fields[key], value)
        built[section] = cls(**kwargs)
    cfg = BacktestConfig(**built)
    for name in SECTIONS:
        getattr(cfg, name).validate()
    return cfg


#: Base configs whose sections were all validated by :func:`replace_keys` (by id, with a weak reference).
_VALIDATED: dict[int, Any] = {}


def _forget(cid: int):
    """Weak-reference callback dropping a collected config from :data:`_VALIDATED`."""
    return lambda _ref: _VALIDATED.pop(cid, None)


def replace_keys(cfg: BacktestConfig, values: dict) -> BacktestConfig | None:
    """``cfg`` with ``section.key`` values set, without re-parsing the unchanged sections: the changed sections are
    rebuilt with ``dataclasses.replace`` (values coerced as :func:`load_config` does) and validated. Returns the
    config :func:`load_config` of ``cfg.to_dict()`` with those keys set would return, or None when the caller
    must take that slow path: a key of another shape (``pipeline.<stage>.<key>``, a section of its own) or any
    error (so the error messages stay those of :func:`load_config`)."""
    import weakref

    changes: dict[str, dict] = {}
    for key, value in values.items():
        parts = str(key).split(".")
        if len(parts) != 2 or parts[0] not in SECTIONS or parts[0] == "pipeline":
            return None
        changes.setdefault(parts[0], {})[parts[1]] = value
    try:
        ref = _VALIDATED.get(id(cfg))
        if ref is None or ref() is not cfg:
            for name in SECTIONS:
                getattr(cfg, name).validate()
            _VALIDATED[id(cfg)] = weakref.ref(cfg, _forget(id(cfg)))
        new = {}
        for section, cls in SECTIONS.items():
            if section not in changes:
                continue
            fields = {f.name: f for f in dataclasses.fields(cls)}
            kwargs = {}
            for key, value in changes[section].items():
                if key not in fields:
                    return None
                kwargs[key] = _coerce(section, fields[key], value)
            new[section] = dataclasses.replace(getattr(cfg, section), **kwargs)
            new[section].validate()
        return dataclasses.replace(cfg, **new)
    except ConfigError:
        return None


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise ConfigError(f"cannot write {v!r} as TOML")


def dumps_toml(d: dict) -> str:
    """TOML text of a dict of sections (None values are omitted, as TOML has no null)."""
    lines = []
    for section, values in d.items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)
