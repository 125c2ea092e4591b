"""Model scores in the backtest loop (``[model] id``): scored in batch before the run, read by the compiled loop.

With ``model.id`` set, :func:`mmlab.sim.engine.run_backtest` runs the ``[strategy]`` preset through the pipeline
stages (``grid`` as ``grid_pipeline``) with a model score at every decision tick:

1. the tick features (:data:`mmlab.ml.dataset.TICK_FEATURES`) at every decision tick are computed by the same
   function that built the training set (:func:`mmlab.ml.dataset.tick_features`) from a run of the same data and
   decision clock without the model. Those features read only the local book at decision times, which our orders
   never alter, so they equal what the scored run sees at each tick (causal: no value looks past its tick);
2. the active (or named) model scores every tick in one batch (``[model] backend``) (``[model] scoring = "row"`` scores
   tick by tick through the live path's ``score_row`` instead: the same numbers, see the tests);
3. the scores go to the strategy's state rows; :func:`scored_pipeline_decide_nb` puts the tick's score into
   ``inp.model_score`` before ``decide_nb``: ``queue_aware`` compares it with ``tau_entry`` (new quotes) and
   ``tau_hold`` (working orders), from the model's ``lgbm_meta.json`` unless ``[model]`` overrides them.

A shadow model (``[model] shadow_id``) is scored alongside and only reported (``shadow_score_distribution`` in
``summary.json["model"]``); it never trades.

The scores sit at the end of each symbol's state row, after the pipeline strategy's own columns (stage timers):
``[..., score_0, ..., score_{n-1}, first_tick_hi, first_tick_lo, interval_ns, n]`` with
``first_tick_ns = hi * 2**26 + lo`` (exact in float64); tick k is at ``first_tick_ns + k * interval_ns``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from numba import njit

from mmlab.errors import ConfigError
from mmlab.sim.pipeline_strategy import pipeline_sim_decide_nb
from mmlab.sim.strategies import StrategySpec
from mmlab.types import pipeline_dtype

SPLIT = 1 << 26
HEADER = 4


@njit(cache=True)
def tick_score_nb(row, now_ns):
    """Score of the decision tick at now_ns from a state row (NaN outside the scored ticks)."""
    w = row.shape[0]
    if w < HEADER:
        return np.nan
    first = np.int64(row[w - 4]) * SPLIT + np.int64(row[w - 3])
    interval = np.int64(row[w - 2])
    n = np.int64(row[w - 1])
    if interval <= 0 or now_ns < first:
        return np.nan
    k = (now_ns - first) // interval
    if k >= n:
        return np.nan
    return row[w - HEADER - n + k]


@njit(cache=True)
def scored_pipeline_decide_nb(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
                              out_quotes, out_actions, out_n):
    """The pipeline strategy with ``inp.model_score`` set from the precomputed tick scores."""
    params[symbol_id].inp.model_score = tick_score_nb(state[symbol_id], now_ns)
    return pipeline_sim_decide_nb(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params,
                                  state, out_quotes, out_actions, out_n)


@dataclass(frozen=True)
class ScoredStrategySpec(StrategySpec):
    """A :class:`StrategySpec` whose state rows are filled before the run (``init_state``) and that reports a
    ``summary`` dict (``summary.json["model"]``)."""

    init_state: Callable | None = None
    summary: dict = field(default_factory=dict)
    outputs: Callable | None = None  # (cfg, specs, params) -> (extra frames, summary keys), read by the engine


def score_layout(ts_local: np.ndarray, symbol_ids: np.ndarray, scores: np.ndarray, n_symbols: int,
                 interval_ns: int) -> np.ndarray:
    """Score block (n_symbols, n_ticks + 4) of each symbol's tick scores on the decision clock: the scores, then
    ``first_tick_hi, first_tick_lo, interval_ns, n_ticks`` (the last columns of a state row, see the module doc)."""
    ts = np.asarray(ts_local, dtype=np.int64)
    first = int(ts.min()) if len(ts) else 0
    k = (ts - first) // interval_ns if len(ts) else np.zeros(0, np.int64)
    n_ticks = int(k.max()) + 1 if len(k) else 0
    st = np.full((n_symbols, n_ticks + HEADER), np.nan)
    st[symbol_ids, k] = scores
    st[:, n_ticks] = float(first // SPLIT)
    st[:, n_ticks + 1] = float(first % SPLIT)
    st[:, n_ticks + 2] = float(interval_ns)
    st[:, n_ticks + 3] = float(n_ticks)
    return st


def _distribution(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if not len(x):
        return {"n": 0}
    q = np.quantile(x, [0.05, 0.5, 0.95])
    return {"n": int(len(x)), "mean": float(x.mean()), "std": float(x.std()), "p05": float(q[0]), "p50": float(q[1]),
            "p95": float(q[2])}


def _model_dir(mc, model_id: str) -> Path:
    from mmlab.ml.registry import Registry

    p = Path(model_id)
    if (p / "model.onnx").exists():
        return p
    return Registry(mc.registry).model_dir(model_id)


def _scorer(mc, model_id: str):
    from mmlab.ml.dataset import TICK_FEATURES, read_sidecar, schema_hash
    from mmlab.ml.infer import OnnxScorer

    d = _model_dir(mc, model_id)
    sc = OnnxScorer(d, backend=mc.backend)
    feats = list(sc.features)
    if mc.features == "sidecar":
        side = read_sidecar(d / "dataset.parquet")
        if side["schema_hash"] != sc.schema_hash:
            raise ConfigError(f"[model] features = 'sidecar': {d}/dataset.schema.json has schema {side['schema_hash']}, "
                              f"model.json {sc.schema_hash}; re-export the model (mmlab export-onnx {d})")
        feats = list(side["features"])
    if schema_hash(feats) != sc.schema_hash:
        raise ConfigError(f"feature list of {d} does not hash to its schema {sc.schema_hash}; re-export the model")
    bad = [f for f in feats if f not in TICK_FEATURES]
    if bad:
        raise ConfigError(f"model {model_id!r} ({d}) uses order features {bad}: the loop scores one row per decision tick "
                          f"from {list(TICK_FEATURES)}; train it with --features tick")
    return sc, feats


def model_thresholds(mc, scorer) -> tuple[float, float]:
    """(tau_entry, tau_hold): the ``[model]`` overrides, else the model's own thresholds (0 when it has none)."""
    th = scorer.thresholds
    tau_entry = float(th.get("tau_entry", 0.0) if mc.tau_entry is None else mc.tau_entry)
    tau_hold = float(th.get("tau_hold", 0.0) if mc.tau_hold is None else mc.tau_hold)
    return tau_entry, tau_hold


def scored_build_params(base_build, tau_entry: float, tau_hold: float):
    """A pipeline preset's ``build_params`` with queue_aware gated by the model score at these thresholds."""

    def build_params(cfg_, specs) -> np.ndarray:
        arr = base_build(cfg_, specs)
        arr["queue_params"]["use_model_score"] = True
        arr["queue_params"]["tau_entry"] = tau_entry
        arr["queue_params"]["tau_hold"] = tau_hold
        return arr

    return build_params


def tick_scores(mc, model_id: str, tf) -> tuple[np.ndarray, Any]:
    """Scores of the tick-feature frame ``tf`` by a model (batch, or row by row with ``scoring = "row"``)."""
    sc, feats = _scorer(mc, model_id)
    X = np.ascontiguousarray(np.column_stack([tf[f].to_numpy() for f in feats]).astype(np.float32)) if tf.height \
        else np.zeros((0, len(feats)), np.float32)
    if mc.scoring == "row":
        s = np.array([sc.score_row(X[i]) for i in range(len(X))], dtype=np.float64)
    else:
        s = sc.score_batch(X)
    return s, sc


def model_strategy_spec(cfg, *, events=None, symbols=None, window_ns=None, latency_table=None) -> ScoredStrategySpec:
    """The ``[strategy]`` preset through the pipeline with model scores per decision tick (see module doc)."""
    import dataclasses

    import polars as pl

    from mmlab.config import ModelConfig
    from mmlab.ml.dataset import tick_features
    from mmlab.sim.engine import run_backtest
    from mmlab.sim.strategies import get_strategy

    mc = cfg.model
    _pipeline_name(cfg.strategy.name)
    # Decision-tick market view of the same data and clock, without the model.
    base = run_backtest(cfg.replace(model=ModelConfig()), events=events, symbols=symbols, window_ns=window_ns,
                        latency_table=latency_table)
    names = [s["symbol"] for s in base.meta["symbols"]]
    tf = tick_features(base.state)
    sym_ids = tf["symbol"].replace_strict({n: i for i, n in enumerate(names)}, return_dtype=pl.Int64).to_numpy() \
        if tf.height else np.zeros(0, np.int64)
    ts = tf["ts_local"].to_numpy() if tf.height else np.zeros(0, np.int64)
    scores, sc = tick_scores(mc, mc.id, tf)
    interval_ns = int(round(cfg.strategy.interval_ms * 1_000_000))
    state = score_layout(ts, sym_ids, scores, len(names), interval_ns)
    tau_entry, tau_hold = model_thresholds(mc, sc)
    info = {"id": sc.model_id, "requested": mc.id, "schema_hash": sc.schema_hash, "features": list(sc.features),
            "tau_entry": tau_entry, "tau_hold": tau_hold, "scoring": mc.scoring, "n_ticks_scored": int(np.isfinite(scores).sum()),
            "model_score_distribution": _distribution(scores), "shadow_id": None, "shadow_score_distribution": None}
    if mc.shadow_id:
        sh, shc = tick_scores(mc, mc.shadow_id, tf)
        info["shadow_id"] = shc.model_id
        info["shadow_score_distribution"] = _distribution(sh)
    base_spec = get_strategy(_pipeline_name(cfg.strategy.name))
    n_base = int(base_spec.n_state)
    build_params = scored_build_params(base_spec.build_params, tau_entry, tau_hold)

    def init_state(strat_state: np.ndarray, cfg_, specs) -> None:
        strat_state[:, n_base:] = state

    base_outputs = getattr(base_spec, "outputs", None)

    def outputs(cfg_, specs, params):
        extra, more = base_outputs(cfg_, specs, params) if base_outputs is not None else ({}, {})
        return extra, {**more, "model": info}

    fields = {f.name: getattr(base_spec, f.name) for f in dataclasses.fields(StrategySpec)}
    fields.update(name=f"{base_spec.name}+model", decide=scored_pipeline_decide_nb, build_params=build_params,
                  n_state=n_base + state.shape[1], init_state=init_state, summary=info, outputs=outputs)
    return ScoredStrategySpec(**fields)


def _pipeline_name(name: str) -> str:
    """The pipeline strategy of ``[strategy] name`` (``grid`` runs as ``grid_pipeline``: the same decisions)."""
    from mmlab.sim.strategies import get_strategy

    cand = f"{name}_pipeline" if name == "grid" else name
    spec = get_strategy(cand)
    if spec.params_dtype != pipeline_dtype:
        raise ConfigError(f"[model] id needs a strategy running the pipeline stages (model_score input); "
                          f"[strategy] name {name!r} does not (use grid or a pipeline preset)")
    return cand
