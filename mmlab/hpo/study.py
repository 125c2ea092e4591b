"""Study files: a ``[base]`` backtest config, a ``[search]`` space over any config key, an ``[objective]``.

A study TOML reads::

    [study]
    name = "grid_btc"             # default: the file's stem
    sampler = "tpe"               # tpe | random | nsga2 | qmc
    seed = 42
    pruner = "median"             # none | median | percentile | hyperband | successive_halving
    split = "day"                 # day | none | "<N>min": the data window's segments, run in order
    top_n = 5                     # trials exported as presets
    base_config = "grid_btcusdt.toml"   # optional; [base] tables override it (path relative to this file)
    ask_ahead = true              # sample trial n+1 while trial n's compiled loop runs; false: one by one

    [base.data]                   # the same schema as `mmlab backtest --config`
    root = "data"
    symbols = ["BTCUSDT"]

    [search]
    "strategy.half_spread_ticks" = {low = 0.5, high = 5.0}
    "strategy.grid_num" = {low = 1, high = 10, step = 1}
    "sim.queue_power" = {low = 0.5, high = 4.0, log = true}
    "pipeline.queue_aware.tau_entry" = {choices = [0.3, 0.5, 0.7]}

    [objective]
    metrics = ["pnl_net"]         # summary.json keys (plus net_bps, notional)
    directions = ["maximize"]     # one per metric; two or more metrics = a Pareto study
    constraints = ["taker_share <= 0.09", "slippage_bps_mean <= 1.8"]

    [regimes]                     # optional: thresholds of the day classifier (mmlab.hpo.regimes)
    vol_mult = 1.5

>>> sc = parse_study({"base": {"data": {"symbols": ["BTCUSDT"]}},
...                   "search": {"strategy.half_spread_ticks": {"low": 0.5, "high": 5.0}},
...                   "objective": {"metrics": ["pnl_net"], "directions": ["maximize"]}})
>>> sc.trial_config({"strategy.half_spread_ticks": 3.0}).strategy.half_spread_ticks
3.0
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import math
import operator
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmlab.config import SECTIONS, BacktestConfig, dumps_toml, load_config, replace_keys
from mmlab.errors import ConfigError

SAMPLERS = ("tpe", "random", "nsga2", "qmc")
PRUNERS = ("none", "median", "percentile", "hyperband", "successive_halving")
DIRECTIONS = ("maximize", "minimize")
STUDY_KEYS = {"name", "sampler", "seed", "pruner", "split", "top_n", "base_config", "n_startup_trials",
              "percentile", "regime_metrics", "ask_ahead"}
TOP_SECTIONS = ("study", "base", "search", "objective", "regimes")
#: Keys a search entry may hold.
PARAM_KEYS = ("low", "high", "log", "step", "choices", "type")
#: Metrics a trial computes beyond summary.json: net_bps = pnl_net / traded notional * 1e4.
DERIVED_METRICS = ("net_bps", "notional")
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


def _nearest(name: str, valid) -> str:
    m = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {m[0]!r}?" if m else f"; valid: {', '.join(sorted(valid))}"


@dataclass(frozen=True)
class ParamSpec:
    """One searched config key: a float/int range (``log``, ``step``) or categorical ``choices``."""

    key: str  # "section.key" or "pipeline.<stage>.<key>"
    kind: str  # "float" | "int" | "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """Draw this parameter from an Optuna trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass(frozen=True)
class Constraint:
    """``metric op bound`` (e.g. ``taker_share <= 0.09``); Optuna's convention: feasible when ``violation <= 0``."""

    metric: str
    op: str
    bound: float

    def violation(self, value: float | None) -> float:
        """Amount by which ``value`` breaks the constraint (<= 0 when satisfied; +inf when undefined)."""
        if value is None or not math.isfinite(value):
            return math.inf
        if self.op in ("<=", "<"):
            v = value - self.bound
        else:
            v = self.bound - value
        if self.op in ("<", ">") and v == 0.0:
            return 1e-12
        return v

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class StudyConfig:
    """A validated study: base config dict, search space, objectives, constraints and run settings."""

    name: str
    base: dict
    params: tuple[ParamSpec, ...]
    metrics: tuple[str, ...] = ("pnl_net",)
    directions: tuple[str, ...] = ("maximize",)
    constraints: tuple[Constraint, ...] = ()
    sampler: str = "tpe"
    seed: int = 0
    pruner: str = "median"
    n_startup_trials: int = 5
    percentile: float = 50.0
    split: str = "day"
    top_n: int = 5
    regimes: dict = field(default_factory=dict)
    regime_metrics: tuple[str, ...] = ("pnl_net", "net_bps", "fill_rate", "taker_share", "n_fills")
    source: str = "study dict"
    #: True (default): sample trial n+1 (and store trial n-1's result) in a background thread while trial n's
    #: compiled loop runs; False: ask, run, tell one by one (the trials of Optuna's ``study.optimize``).
    ask_ahead: bool = True

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def segment_ns(self) -> int | None:
        """Length of one segment in ns; None = UTC days; 0 = the whole window as one segment."""
        if self.split == "day":
            return None
        if self.split == "none":
            return 0
        return int(float(self.split[:-3]) * 60e9)

    def base_config(self) -> BacktestConfig:
        return load_config(copy.deepcopy(self.base))

    def trial_config(self, values: dict[str, Any]) -> BacktestConfig:
        """The backtest config of one parameter set (``{"strategy.half_spread_ticks": 3.0, ...}``): the validated
        base config with the changed sections replaced (``mmlab.config.replace_keys``), else (pipeline keys, or
        an error to report) ``load_config`` of the base dict with the values set."""
        base = _BASE_CONFIGS.get(id(self))
        if base is None or base[0] is not self or base[2] != self.base:  # (the base dict may have been edited)
            if len(_BASE_CONFIGS) >= 16:
                _BASE_CONFIGS.clear()
            base = _BASE_CONFIGS[id(self)] = (self, self.base_config(), copy.deepcopy(self.base))
        fast = replace_keys(base[1], values)
        return fast if fast is not None else load_config(apply_params(self.base, values))

    def to_dict(self) -> dict:
        """Plain dict of the study (TOML-able, JSON-able): what workers joining the study read back."""
        search = {}
        for p in self.params:
            if p.kind == "categorical":
                search[p.key] = {"choices": list(p.choices)}
            else:
                e = {"low": p.low, "high": p.high, "type": p.kind}
                if p.log:
                    e["log"] = True
                if p.step is not None:
                    e["step"] = p.step
                search[p.key] = e
        study = {"name": self.name, "sampler": self.sampler, "seed": self.seed, "pruner": self.pruner,
                 "n_startup_trials": self.n_startup_trials, "percentile": self.percentile, "split": self.split,
                 "top_n": self.top_n, "regime_metrics": list(self.regime_metrics)}
        if not self.ask_ahead:  # written only when off (not the default)
            study["ask_ahead"] = False
        return {
            "study": study,
            "base": copy.deepcopy(self.base),
            "search": search,
            "objective": {"metrics": list(self.metrics), "directions": list(self.directions),
                          "constraints": [str(c) for c in self.constraints]},
            "regimes": dict(self.regimes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


#: Validated base config of the study configs in use: ``id(study) -> (study, BacktestConfig, base dict copy)``.
_BASE_CONFIGS: dict[int, tuple] = {}


def apply_params(base: dict, values: dict[str, Any]) -> dict:
    """Copy of the ``base`` config dict with dotted keys set (``pipeline.<stage>.<key>`` goes one level deeper)."""
    raw = copy.deepcopy(base)
    for key, value in values.items():
        parts = key.split(".")
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return raw


def _check_key(key: str, sample: Any, origin: str) -> None:
    parts = key.split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"[search] key {key!r} in {origin} must be section.key with a section of "
                          f"{', '.join(SECTIONS)}{_nearest(parts[0], SECTIONS)}")
    section = parts[0]
    if section == "pipeline":
        from mmlab.pipeline_config import STAGES, make_params

        if len(parts) != 3 or parts[1] not in STAGES:
            raise ConfigError(f"[search] key {key!r} in {origin} must be pipeline.<stage>.<key> with a stage of "
                              f"{', '.join(STAGES)}{_nearest(parts[1] if len(parts) > 1 else '', STAGES)}")
        make_params(parts[1], **{parts[2]: sample})  # names an unknown key or a bad value
        return
    fields = {f.name for f in dataclasses.fields(SECTIONS[section])}
    if len(parts) != 2 or parts[1] not in fields:
        raise ConfigError(f"[search] key {key!r} in {origin}: unknown key of [{section}]{_nearest(parts[-1], fields)}")


def _param(key: str, spec: Any, base: dict, origin: str) -> ParamSpec:
    if not isinstance(spec, dict):
        raise ConfigError(f"[search] {key!r} in {origin} must be a table like {{low = 0.5, high = 5.0}} or "
                          f"{{choices = [...]}}, got {spec!r}")
    unknown = [k for k in spec if k not in PARAM_KEYS]
    if unknown:
        raise ConfigError(f"[search] {key!r} in {origin}: unknown entry {unknown[0]!r}{_nearest(unknown[0], PARAM_KEYS)}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"[search] {key!r} in {origin}: choices must be a non-empty list, got {choices!r}")
        if any(isinstance(c, (dict, list)) for c in choices):
            raise ConfigError(f"[search] {key!r} in {origin}: choices must be numbers, strings or booleans")
        for c in choices:
            _check_key(key, c, origin)
            load_config(apply_params(base, {key: c}))  # each choice must make a valid config
        return ParamSpec(key=key, kind="categorical", choices=tuple(choices))
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"[search] {key!r} in {origin} needs low and high (or choices), got {spec!r}")
    low, high = spec["low"], spec["high"]
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"[search] {key!r} in {origin}: {name} must be a finite number, got {v!r}")
    if not low < high:
        raise ConfigError(f"[search] {key!r} in {origin}: low must be < high, got low={low!r} high={high!r}")
    log = bool(spec.get("log", False))
    step = spec.get("step")
    if log and low <= 0:
        raise ConfigError(f"[search] {key!r} in {origin}: log = true needs low > 0, got low={low!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(f"[search] {key!r} in {origin}: step must be > 0, got {step!r}")
    if log and step is not None:
        raise ConfigError(f"[search] {key!r} in {origin}: log and step cannot be combined (drop one)")
    kind = spec.get("type")
    if kind is None:
        kind = "float"
        parts = key.split(".")
        if parts[0] != "pipeline" and parts[0] in SECTIONS:
            fields = {f.name: f for f in dataclasses.fields(SECTIONS[parts[0]])}
            f = fields.get(parts[-1])
            if f is not None and str(f.type).startswith("int"):
                kind = "int"
        elif all(isinstance(v, int) for v in (low, high)) and (step is None or isinstance(step, int)):
            kind = "int"
    if kind not in ("float", "int"):
        raise ConfigError(f"[search] {key!r} in {origin}: type must be float or int, got {kind!r}")
    if kind == "int" and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise ConfigError(f"[search] {key!r} in {origin}: an int parameter needs integer low/high/step, got {spec!r}")
    sample = int(low) if kind == "int" else float(low)
    _check_key(key, sample, origin)
    for v in (low, high):
        load_config(apply_params(base, {key: int(v) if kind == "int" else float(v)}))
    return ParamSpec(key=key, kind=kind, low=low, high=high, log=log, step=step)


def _constraint(text: Any, origin: str) -> Constraint:
    m = _CONSTRAINT_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise ConfigError(f"[objective] constraint {text!r} in {origin} must read 'metric <= number' "
                          "(operators <=, <, >=, >), e.g. 'taker_share <= 0.09'")
    return Constraint(metric=m.group(1), op=m.group(2), bound=float(m.group(3)))


def known_metric(name: str) -> bool:
    """True for a summary.json key a trial computes (``markout_bps_*`` of any horizon, ``per_symbol.S.key``)."""
    from mmlab.sim.engine import SUMMARY_FIELDS

    if name.startswith(("markout_bps_", "per_symbol.")):
        return True
    return name in SUMMARY_FIELDS or name in DERIVED_METRICS or name == "n_segments"


def _check_metric(name: str, origin: str) -> None:
    from mmlab.sim.engine import SUMMARY_FIELDS

    if not known_metric(name):
        valid = [k for k in SUMMARY_FIELDS if k not in ("per_symbol", "markout_bps_H")] + list(DERIVED_METRICS)
        raise ConfigError(f"[objective] metric {name!r} in {origin} is not a summary.json key{_nearest(name, valid)}")


def _listify(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def parse_study(raw: dict, *, origin: str = "study dict", base_dir: str | os.PathLike | None = None) -> StudyConfig:
    """Validate a study dict (the parsed TOML) into a :class:`StudyConfig`; errors name the key and the fix."""
    for section in raw:
        if section not in TOP_SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {origin}{_nearest(section, TOP_SECTIONS)}")
    st = dict(raw.get("study", {}))
    for k in st:
        if k not in STUDY_KEYS:
            raise ConfigError(f"unknown key study.{k} in {origin}{_nearest(k, STUDY_KEYS)}")
    base: dict = {}
    if st.get("base_config"):
        p = Path(st["base_config"])
        if not p.is_absolute() and base_dir is not None:
            p = Path(base_dir) / p
        if not p.exists():
            raise ConfigError(f"study.base_config {st['base_config']!r} in {origin} does not exist (looked for {p})")
        base = tomllib.loads(p.read_text())
    for section, values in dict(raw.get("base", {})).items():
        if isinstance(values, dict):
            base.setdefault(section, {})
            base[section] = {**base[section], **copy.deepcopy(values)} if isinstance(base[section], dict) else values
        else:
            base[section] = values
    try:
        load_config(copy.deepcopy(base))
    except ConfigError as exc:
        raise ConfigError(f"[base] of {origin}: {exc}") from exc
    search = raw.get("search", {})
    if not isinstance(search, dict) or not search:
        raise ConfigError(f"{origin} has no [search] entries; add one like "
                          "\"strategy.half_spread_ticks\" = {low = 0.5, high = 5.0}")
    params = tuple(_param(k, v, base, origin) for k, v in search.items())
    obj = dict(raw.get("objective", {}))
    for k in obj:
        if k not in ("metrics", "metric", "directions", "direction", "constraints"):
            raise ConfigError(f"unknown key objective.{k} in {origin}"
                              f"{_nearest(k, ('metrics', 'directions', 'constraints'))}")
    metrics = _listify(obj.get("metrics", obj.get("metric", "pnl_net")))
    directions = _listify(obj.get("directions", obj.get("direction", ["maximize"] * len(metrics))))
    if len(directions) == 1 and len(metrics) > 1:
        directions = directions * len(metrics)
    if len(directions) != len(metrics):
        raise ConfigError(f"[objective] in {origin}: {len(metrics)} metrics but {len(directions)} directions; "
                          "give one direction per metric")
    for d in directions:
        if d not in DIRECTIONS:
            raise ConfigError(f"[objective] direction {d!r} in {origin} must be maximize or minimize")
    for m in metrics:
        if not isinstance(m, str) or not m:
            raise ConfigError(f"[objective] metric {m!r} in {origin} must be a summary.json key such as pnl_net")
    constraints = tuple(_constraint(c, origin) for c in _listify(obj.get("constraints", [])))
    for m in list(metrics) + [c.metric for c in constraints]:
        _check_metric(m, origin)
    name = st.get("name") or "study"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
        raise ConfigError(f"study.name {name!r} in {origin} may hold only letters, digits, '_', '-', '.'")
    sampler = st.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError(f"study.sampler {sampler!r} in {origin} must be one of {SAMPLERS}{_nearest(sampler, SAMPLERS)}")
    pruner = st.get("pruner", "median")
    if pruner not in PRUNERS:
        raise ConfigError(f"study.pruner {pruner!r} in {origin} must be one of {PRUNERS}{_nearest(pruner, PRUNERS)}")
    split = str(st.get("split", "day"))
    if split not in ("day", "none") and not re.fullmatch(r"\d+(\.\d+)?min", split):
        raise ConfigError(f"study.split {split!r} in {origin} must be 'day', 'none' or '<N>min' (e.g. '60min')")
    if split.endswith("min") and float(split[:-3]) <= 0:
        raise ConfigError(f"study.split {split!r} in {origin} must be a positive number of minutes")
    seed = st.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"study.seed in {origin} must be an integer >= 0, got {seed!r}")
    top_n = st.get("top_n", 5)
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise ConfigError(f"study.top_n in {origin} must be an integer >= 1, got {top_n!r}")
    n_startup = st.get("n_startup_trials", 5)
    if isinstance(n_startup, bool) or not isinstance(n_startup, int) or n_startup < 0:
        raise ConfigError(f"study.n_startup_trials in {origin} must be an integer >= 0, got {n_startup!r}")
    percentile = float(st.get("percentile", 50.0))
    if not 0.0 < percentile < 100.0:
        raise ConfigError(f"study.percentile in {origin} must be in (0, 100), got {percentile!r}")
    regimes = dict(raw.get("regimes", {}))
    from mmlab.hpo.regimes import RegimeThresholds

    RegimeThresholds.from_dict(regimes, origin=origin)
    regime_metrics = tuple(_listify(st.get("regime_metrics", StudyConfig.regime_metrics)))
    ask_ahead = st.get("ask_ahead", True)
    if not isinstance(ask_ahead, bool):
        raise ConfigError(f"study.ask_ahead in {origin} must be true or false, got {ask_ahead!r}")
    return StudyConfig(name=str(name), base=base, params=params, metrics=tuple(metrics), directions=tuple(directions),
                       constraints=constraints, sampler=sampler, seed=seed, pruner=pruner, n_startup_trials=n_startup,
                       percentile=percentile, split=split, top_n=top_n, regimes=regimes,
                       regime_metrics=regime_metrics, source=origin, ask_ahead=ask_ahead)


def load_study(source: str | os.PathLike | dict, overrides: dict | None = None) -> StudyConfig:
    """Read and validate a study TOML file (or dict). ``overrides`` replaces ``[study]`` keys (e.g. ``name``)."""
    if isinstance(source, dict):
        raw, origin, base_dir = copy.deepcopy(source), "study dict", None
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"study file {path} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
        origin, base_dir = str(path), path.parent
        raw.setdefault("study", {}).setdefault("name", path.stem)
    if overrides:
        raw.setdefault("study", {}).update({k: v for k, v in overrides.items() if v is not None})
    return parse_study(raw, origin=origin, base_dir=base_dir)


def config_toml(cfg: BacktestConfig, header: str = "") -> str:
    """TOML text of a resolved backtest config (ready for ``mmlab backtest --config``), with a comment header."""
    lines = [f"# {h}" for h in header.splitlines() if h] if header else []
    return "\n".join(lines + [dumps_toml(cfg.to_dict())])
