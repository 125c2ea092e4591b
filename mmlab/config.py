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
    """Stage parameters of the shared pipeline, one table per stage (``[pipeline.spread]`` ...)."""

    fetch_md: dict = field(default_factory=dict)
    spread: dict = field(default_factory=dict)
    guards: dict = field(default_factory=dict)
    inventory: dict = field(default_factory=dict)
    queue_aware: dict = field(default_factory=dict)
    emit: dict = field(default_factory=dict)

    def validate(self) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class AllocatorConfig:
    """Multi-symbol scoreboard and dynamic allocator."""

    enabled: bool = False

    def validate(self) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Model scores in the loop (ONNX models of the registry)."""

    id: str | None = None  # model id in the registry, or "active"; None = no model

    def validate(self) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """Canary rollout of approved signals."""

    mode: str = "disabled"

    def validate(self) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class LiveConfig:
    """Live runner settings (venue endpoints, recorder, metrics)."""

    venue: str = "bybit-linear"

    def validate(self) -> None:
        pass


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
        raw[section][key] = value
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
