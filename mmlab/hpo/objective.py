"""Evaluate one parameter set: run its backtest segment by segment, combine, report after each segment.

Each segment (a UTC day by default) is an independent backtest that starts flat, as a market maker flattened
at the day's end would; the run reuses the worker's event arrays (``run_backtest(cfg, events=..., symbols=...)``)
and the compiled loop, so a trial never reads parquet or compiles. After each segment the summary of the
segments so far is combined (sums, volume/order/fill-weighted means, Sharpe and drawdown of the concatenated
equity) and the first objective is reported to the pruner. With one segment the combined summary is the
backtest's own summary.

>>> combine_summaries([])["n_fills"]
0
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mmlab.errors import ConfigError

#: Summary keys added over segments.
SUM_KEYS = ("events", "events_bbo_skipped", "n_decisions", "n_orders", "n_requests", "n_local_rejects", "n_fills",
            "n_maker_fills", "n_taker_fills", "volume_qty", "fees", "pnl_net", "notional", "wall_s", "loop_s", "jit_s")
#: Summary keys averaged with a weight (another summary key).
WEIGHTED_KEYS = {"fill_rate": "n_orders", "taker_share": "volume_qty", "slippage_bps_mean": "n_fills"}


@dataclass
class SegmentResult:
    """What a trial keeps of one segment's backtest."""

    label: str
    regime: str
    summary: dict
    equity: np.ndarray  # pnl at each decision tick (initial cash removed)
    eta_ms: np.ndarray  # queue ETA of filled orders, ms
    interval_ms: float


@dataclass
class Evaluation:
    """Combined summary of a parameter set over the segments run, per segment and per regime."""

    summary: dict
    segments: list[SegmentResult] = field(default_factory=list)
    regimes: dict[str, dict] = field(default_factory=dict)
    sim_s: float = 0.0  # wall time inside run_backtest


def _finite(v) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def segment_result(result, label: str = "", regime: str = "normal") -> SegmentResult:
    """Reduce a ``BacktestResult`` to what combining needs (summary + notional + net_bps, equity, queue ETAs).

    Columns are read as numpy arrays (no polars expressions: a trial does this once per segment)."""
    s = dict(result.summary)
    fills = result.fills
    if fills.height:
        notional = float(np.dot(fills.get_column("price").to_numpy(), fills.get_column("qty").to_numpy()))
    else:
        notional = 0.0
    s["notional"] = notional
    s["net_bps"] = s["pnl_net"] / notional * 1e4 if notional > 0 and _finite(s.get("pnl_net")) is not None else None
    state = result.state
    cash0 = result.config.sim.initial_cash
    if state.height:
        ts = state.get_column("ts_local").to_numpy()
        first = np.r_[True, ts[1:] != ts[:-1]]
        eq = state.get_column("equity").to_numpy()[first] - cash0
    else:
        eq = np.zeros(0)
    lab = result.labels
    if lab.height:
        eta = lab.get_column("queue_eta_ms").to_numpy()[~lab.get_column("censored").to_numpy()]
        eta = eta[~np.isnan(eta)]
    else:
        eta = np.zeros(0)
    return SegmentResult(label=label, regime=regime, summary=s, equity=eq, eta_ms=eta,
                         interval_ms=result.config.strategy.interval_ms)


def combine_summaries(parts: list[SegmentResult]) -> dict:
    """One summary of consecutive independent segments (see the module doc); a single part passes through."""
    if len(parts) == 1:
        return dict(parts[0].summary)
    out: dict = {k: 0 for k in SUM_KEYS}
    if not parts:
        out.update({"fill_rate": 0.0, "taker_share": 0.0, "sharpe": 0.0, "max_drawdown": 0.0, "net_bps": None})
        return out
    for p in parts:
        for k in SUM_KEYS:
            out[k] += p.summary.get(k) or 0
    out["position_final"] = parts[-1].summary.get("position_final")
    keys = set(WEIGHTED_KEYS) | {k for p in parts for k in p.summary if k.startswith("markout_bps_")}
    for k in sorted(keys):
        w_key = WEIGHTED_KEYS.get(k, "n_fills")
        num = den = 0.0
        for p in parts:
            v, w = _finite(p.summary.get(k)), _finite(p.summary.get(w_key)) or 0.0
            if v is not None and w > 0:
                num += v * w
                den += w
        out[k] = num / den if den > 0 else (0.0 if k in ("fill_rate", "taker_share") else None)
    # Equity of the segments laid end to end: each starts from the previous one's final pnl.
    series, offset = [], 0.0
    for p in parts:
        if len(p.equity):
            series.append(p.equity + offset)
            offset += float(p.equity[-1])
    eq = np.concatenate(series) if series else np.zeros(0)
    interval_ms = parts[0].interval_ms
    if len(eq) > 2:
        d = np.diff(eq)
        sd = float(d.std())
        out["sharpe"] = float(d.mean() / sd * np.sqrt(365 * 86_400_000 / interval_ms)) if sd > 0 else 0.0
        out["max_drawdown"] = float((np.maximum.accumulate(eq) - eq).max())
    else:
        out["sharpe"], out["max_drawdown"] = 0.0, 0.0
    eta = np.concatenate([p.eta_ms for p in parts])
    out["queue_eta_ms_p50"] = float(np.median(eta)) if len(eta) else None
    out["net_bps"] = out["pnl_net"] / out["notional"] * 1e4 if out["notional"] > 0 else None
    out["events_per_s"] = out["events"] / out["loop_s"] if out["loop_s"] > 0 else None
    out["n_segments"] = len(parts)
    return out


def metric(summary: dict, name: str) -> float | None:
    """A finite metric value of a summary (dotted names reach into nested dicts: ``per_symbol.BTCUSDT.pnl_net``)."""
    v = summary
    for part in name.split("."):
        if not isinstance(v, dict) or part not in v:
            return None
        v = v[part]
    return _finite(v)


def check_metrics(summary: dict, names) -> None:
    """Raise naming the metric when a study's objective or constraint metric is not a summary key."""
    for n in names:
        head = n.split(".")[0]
        if head not in summary:
            import difflib

            valid = [k for k, v in summary.items() if not isinstance(v, (dict, str))]
            m = difflib.get_close_matches(head, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {m[0]!r}?" if m else f"; valid: {', '.join(sorted(valid))}"
            raise ConfigError(f"[objective] metric {n!r} is not a key of summary.json{hint}")


#: Whether a config can take the lean single-set path, by the fields that decide it (see :func:`run_segment`).
_LEAN_OK: dict = {}


def _seg_events(seg):
    """What a segment's run replays: its prepared ``ReplayWindow`` (rows without BBO, their exchange-time order and
    the BBO count, which the run's summary adds to ``events_bbo_skipped``) when it has one, else its events."""
    replay = getattr(seg, "replay", None)
    return replay if replay is not None else seg.events


def run_segment(cfg, specs: list, seg):
    """One segment's backtest of ``cfg`` as a trial needs it: the summary and the fills, state and labels
    frames of ``run_backtest`` (``run_backtest_batch([cfg], decisions=False, frames=False)``: the same summary
    without building the orders, mids and decisions frames) when the config can run there, else
    ``run_backtest``."""
    from mmlab.sim.engine import check_batch_configs, run_backtest, run_backtest_batch
    from mmlab.sim.strategies import get_strategy

    events = _seg_events(seg)
    key = (cfg.strategy.name, cfg.sim.latency_model, cfg.model.id, cfg.allocator.enabled)
    ok = _LEAN_OK.get(key)
    if ok is None:
        try:
            check_batch_configs([cfg], get_strategy(cfg.strategy.name))
            ok = True
        except ConfigError:
            ok = False
        _LEAN_OK[key] = ok
    if ok:
        return run_backtest_batch(cfg, [cfg], events=events, symbols=specs, decisions=False, frames=False)[0]
    return run_backtest(cfg, events=events, symbols=specs)


def evaluate(cfg, specs: list, segments: list, *, on_segment: Callable[[int, dict], None] | None = None) -> Evaluation:
    """Run ``cfg`` on each segment in order; ``on_segment(k, combined_summary)`` is called after each (it may
    raise to stop, e.g. ``optuna.TrialPruned``). Without ``on_segment`` the segments are combined once, at
    the end."""
    return build_evaluation(*run_segments(cfg, specs, segments, on_segment=on_segment))


def run_segments(cfg, specs: list, segments: list, *, on_segment: Callable[[int, dict], None] | None = None
                 ) -> tuple[list[SegmentResult], float, dict | None]:
    """The segment runs of :func:`evaluate` without the final combining: ``(segment results, sim_s, combined
    summary of all segments or None when no on_segment made it)``; ``build_evaluation(*out)`` is the
    :class:`Evaluation` (the ask-ahead study loop builds it in its background thread)."""
    parts: list[SegmentResult] = []
    sim_s = 0.0
    combined: dict | None = None
    for k, seg in enumerate(segments):
        t = time.perf_counter()
        res = run_segment(cfg, specs, seg)
        sim_s += time.perf_counter() - t
        parts.append(segment_result(res, seg.label, seg.regime))
        if on_segment is not None:
            combined = combine_summaries(parts)
            on_segment(k, combined)
    return parts, sim_s, combined


def build_evaluation(parts: list[SegmentResult], sim_s: float, combined: dict | None = None) -> Evaluation:
    """The :class:`Evaluation` of one parameter set's segment results (combined, and per regime);
    ``combined``: ``combine_summaries(parts)`` when already computed (it is not computed again)."""
    summary = combine_summaries(parts) if combined is None else combined
    regimes = {}
    for name in sorted({p.regime for p in parts}):
        own = [p for p in parts if p.regime == name]
        # One regime holding every segment combines to the summary itself.
        regimes[name] = dict(summary) if len(own) == len(parts) else combine_summaries(own)
        regimes[name]["n_segments"] = len(own)
    return Evaluation(summary=summary, segments=parts, regimes=regimes, sim_s=sim_s)


def evaluate_batch(cfgs: list, specs: list, segments: list, *,
                   on_segment: Callable[[int, list], set] | None = None) -> list[Evaluation | None]:
    """Run the parameter sets ``cfgs`` together, one pass per segment (``run_backtest_batch``); each set's
    :class:`Evaluation` equals what :func:`evaluate` gives it alone.

    ``on_segment(k, combined)`` is called after each segment with the combined summaries of the sets still
    running (``None`` for stopped ones) and returns the indices to stop (e.g. pruned trials): they leave the
    next segments' passes and get ``None`` in the returned list. The sets must differ only in strategy
    parameters (``mmlab.sim.engine.check_batch_configs`` raises ``ConfigError`` otherwise).
    """
    from mmlab.sim.engine import check_batch_configs, run_backtest_batch

    check_batch_configs(list(cfgs))
    parts: list[list[SegmentResult]] = [[] for _ in cfgs]
    running = list(range(len(cfgs)))
    sim_s = [0.0] * len(cfgs)
    last: list = [None] * len(cfgs)  # each set's combined summary of all its segments, once computed
    for k, seg in enumerate(segments):
        if not running:
            break
        t = time.perf_counter()
        results = run_backtest_batch(cfgs[running[0]], [cfgs[i] for i in running], events=_seg_events(seg),
                                     symbols=specs, decisions=False, frames=False)
        dt = (time.perf_counter() - t) / len(running)
        combined: list = [None] * len(cfgs)
        for i, res in zip(running, results):
            sim_s[i] += dt
            parts[i].append(segment_result(res, seg.label, seg.regime))
            if on_segment is not None:
                combined[i] = combine_summaries(parts[i])
        if on_segment is not None:
            last = combined
            stop = on_segment(k, combined) or set()
            running = [i for i in running if i not in stop]
    out: list[Evaluation | None] = [None] * len(cfgs)
    for i in running:
        out[i] = build_evaluation(parts[i], sim_s[i], last[i])
    return out
