"""Canary rollout replay: per-signal hash routing, guard rails, rollback, MODE_SWITCH events, gate outcomes.

A *signal* is an approved quote that became an order (one row of ``labels.parquet``); a *trade* is one of its
fills, *won* when its markout at ``rollout.winrate_horizon_ms`` is > 0 and known only that long after the fill.
Routing is a pure function of the signal: ``u = splitmix64(rng_seed, sha256(symbol), ts_decision, side,
price_ticks) / 2**64``; in ``canary`` mode a signal goes to the candidate when ``u < canary_fraction`` and stays
with the active (baseline) configuration otherwise; ``full`` sends every signal to the candidate; ``disabled``
none. The same signal always routes the same way, in any process.

A replay runs the candidate and the baseline configuration over the same segment and blends them by route:
candidate signals count while their route is canary/full, baseline signals while theirs is paper (in ``full``
mode the baseline run is the counterfactual ``winrate_baseline_active``). Every ``check_interval_s`` of local
time the supervisor evaluates the guard rails (the release policy's rollback rules, all causal):

1. ``winrate_drop``: ``sample_canary >= min_sample`` and ``winrate_canary < winrate_baseline_active -
   winrate_delta_pp / 100`` (canary trades since the canary was last enabled, baseline trades since the start);
2. ``parity_failure``: more than ``parity_fail_max`` parity failures in the last ``parity_window_s``;
3. ``drift_psi`` / ``drift_ks``: with at least ``drift_min_sample`` canary signals in the last ``drift_window_s``,
   PSI > ``psi_block`` or KS > ``ks_block`` of a ``drift_features`` column against the reference window
   (:func:`mmlab.analysis.drift.psi`, :func:`mmlab.analysis.drift.ks_statistic`).

Any rail rolls the canary back at once: ``MODE_SWITCH{from, to="disabled"}`` with the reason, ``rollback_total``
and ``mode_switch_total`` incremented. The cooldown (``cooldown_s``) keeps the rollout disabled that long; with
``auto_reenable`` the canary then resumes with fresh samples (another MODE_SWITCH). The release gates of a
segment (the release checklist's canary gates) are: canary win rate >= ``winrate_target``, mean markout >=
``markout_min_bps``, fill rate >= ``fill_rate_min``.

>>> u = signal_hash_u(1337, np.array(["BTCUSDT"]), np.array([1]), np.array([1]), np.array([100]))
>>> bool(u[0] == signal_hash_u(1337, np.array(["BTCUSDT"]), np.array([1]), np.array([1]), np.array([100]))[0])
True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np

from mmlab.analysis.drift import ks_statistic, metric_name, psi
from mmlab.errors import ConfigError, DataError

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


class Mode(IntEnum):
    """Rollout mode (``rollout.mode``)."""

    DISABLED = 0  # every signal on the active configuration (paper route)
    CANARY = 1  # signals hashed below canary_fraction on the candidate
    FULL = 2  # every signal on the candidate


class Route(IntEnum):
    """Route of one signal (``trades_opened_total{route}``)."""

    PAPER = 0
    CANARY = 1
    FULL = 2


#: Guard-rail reasons of a rollback (``rollback_total{reason}``).
REASONS = ("winrate_drop", "parity_failure", "drift_psi", "drift_ks")

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer of uint64 values (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _M1
        z = (z ^ (z >> np.uint64(30))) * _M2
        z = (z ^ (z >> np.uint64(27))) * _M3
        return z ^ (z >> np.uint64(31))


def _symbol_key(symbol: str) -> int:
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big")


def signal_hash_u(rng_seed: int, symbols, ts_ns, side, price_ticks) -> np.ndarray:
    """Uniform [0, 1) routing value of each signal, a pure function of (seed, symbol, time, side, price)."""
    symbols = np.asarray(symbols, dtype=object)
    keys = {s: _symbol_key(str(s)) for s in set(symbols.tolist())}
    h = np.array([keys[s] for s in symbols.tolist()], dtype=np.uint64) ^ np.uint64(int(rng_seed) & (2**64 - 1))
    for part in (ts_ns, side, price_ticks):
        h = _mix64(h ^ np.asarray(part).astype(np.int64).view(np.uint64))
    h = _mix64(h)
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def route_signals(u: np.ndarray, mode: str | int, canary_fraction: float) -> np.ndarray:
    """Route codes (:class:`Route`) of signals with routing values ``u`` under a fixed ``mode``."""
    m = Mode[mode.upper()] if isinstance(mode, str) else Mode(mode)
    if m == Mode.FULL:
        return np.full(len(u), int(Route.FULL), dtype=np.int8)
    if m == Mode.DISABLED:
        return np.full(len(u), int(Route.PAPER), dtype=np.int8)
    return np.where(np.asarray(u) < canary_fraction, int(Route.CANARY), int(Route.PAPER)).astype(np.int8)


@dataclass
class RunStream:
    """Signals and trades of one backtest run, as arrays (see :func:`stream_from_result`)."""

    sig_ts_ns: np.ndarray  # decision time of each signal
    sig_u: np.ndarray  # routing value
    sig_filled: np.ndarray  # bool: the order got a fill
    features: dict[str, np.ndarray]  # drift feature -> value per signal
    trade_sig_ts_ns: np.ndarray  # decision time of each trade's signal
    trade_u: np.ndarray  # routing value of each trade's signal
    trade_out_ts_ns: np.ndarray  # when the trade's outcome is known (fill local time + horizon)
    trade_won: np.ndarray  # bool
    trade_markout_bps: np.ndarray

    @classmethod
    def empty(cls, features=()) -> RunStream:
        z, zf = np.zeros(0, np.int64), np.zeros(0)
        return cls(z, zf, np.zeros(0, bool), {f: zf for f in features}, z, zf, z, np.zeros(0, bool), zf)


def markout_column(horizon_ms: float) -> str:
    from mmlab.labels import horizon_suffix

    return f"markout_bps_{horizon_suffix(horizon_ms)}"


def stream_from_result(result, rc) -> RunStream:
    """Signals (labels rows) and trades (fills joined to their order) of a backtest result, with routing values."""
    import polars as pl

    labels, fills = result.labels, result.fills
    col = markout_column(rc.winrate_horizon_ms)
    if fills.height and col not in fills.columns:
        raise ConfigError(f"[rollout] winrate_horizon_ms = {rc.winrate_horizon_ms:g} is not a label horizon "
                          f"(fills have {[c for c in fills.columns if c.startswith('markout_bps_')]}); add it to "
                          "[labels] horizons_ms or pick one of those")
    missing = [f for f in rc.drift_features if f not in labels.columns]
    if missing:
        raise ConfigError(f"[rollout] drift_features {missing} are not labels.parquet columns; valid numeric columns: "
                          f"{[c for c, t in labels.schema.items() if t.is_numeric()]}")
    if not labels.height:
        return RunStream.empty(rc.drift_features)
    ticks = {s["symbol"]: float(s["tick_size"]) for s in result.meta["symbols"]}
    sym = labels["symbol"].cast(pl.Utf8).to_numpy().astype(object)
    tick = np.array([ticks[s] for s in sym])
    px_ticks = np.round(labels["price"].to_numpy() / tick).astype(np.int64)
    ts = labels["ts_decision"].to_numpy().astype(np.int64)
    u = signal_hash_u(rc.rng_seed, sym, ts, labels["side"].to_numpy(), px_ticks)
    feats = {f: labels[f].cast(pl.Float64).to_numpy() for f in rc.drift_features}
    sig = labels.select(pl.col("symbol").cast(pl.Utf8), "order_seq").with_columns(
        pl.Series("sig_ts", ts), pl.Series("u", u))
    if fills.height:
        tr = fills.select(pl.col("symbol").cast(pl.Utf8), "order_seq", "ts_local", col).join(
            sig, on=["symbol", "order_seq"], how="inner")
        mk = tr[col].to_numpy().astype(np.float64)
        out_ts = tr["ts_local"].to_numpy().astype(np.int64) + int(rc.winrate_horizon_ms * NS_PER_MS)
        t_sig, t_u = tr["sig_ts"].to_numpy().astype(np.int64), tr["u"].to_numpy()
    else:
        mk, out_ts, t_sig, t_u = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return RunStream(sig_ts_ns=ts, sig_u=u, sig_filled=labels["filled_qty"].to_numpy() > 0, features=feats,
                     trade_sig_ts_ns=t_sig, trade_u=t_u, trade_out_ts_ns=out_ts,
                     trade_won=np.nan_to_num(mk, nan=0.0) > 0, trade_markout_bps=mk)


@dataclass
class _Timeline:
    """Mode of the rollout over time: ``modes[k]`` holds from ``starts[k]``."""

    starts: list = field(default_factory=list)
    modes: list = field(default_factory=list)

    def at(self, ts: np.ndarray) -> np.ndarray:
        k = np.searchsorted(np.asarray(self.starts, dtype=np.int64), np.asarray(ts, dtype=np.int64), side="right") - 1
        return np.asarray(self.modes, dtype=np.int8)[np.maximum(k, 0)]


def _candidate_mask(mode_at_sig: np.ndarray, u: np.ndarray, fraction: float) -> np.ndarray:
    return (mode_at_sig == Mode.FULL) | ((mode_at_sig == Mode.CANARY) & (u < fraction))


def _baseline_mask(mode_at_sig: np.ndarray, u: np.ndarray, fraction: float) -> np.ndarray:
    # In full mode the baseline run is the counterfactual of the active configuration.
    return (mode_at_sig != Mode.CANARY) | (u >= fraction)


def _rate(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def supervise(cand: RunStream, base: RunStream, rc, t0_ns: int, t1_ns: int, *,
              reference: dict[str, np.ndarray] | None = None, parity_fail_ts_ns=()) -> dict:
    """Replay the guard rails over [t0_ns, t1_ns) (see the module doc) and return checks, MODE_SWITCH events,
    counters, per-route outcomes and the release gates."""
    start_mode = Mode[rc.mode.upper()]
    f = rc.canary_fraction
    tl = _Timeline([int(t0_ns)], [int(start_mode)])
    mode = start_mode
    enabled_since = int(t0_ns)
    last_switch: int | None = None
    rolled_back = False
    events: list[dict] = []
    rollbacks: dict[str, int] = {r: 0 for r in REASONS}
    checks: list[dict] = []
    blocked_by_cooldown = 0
    parity = np.sort(np.asarray(parity_fail_ts_ns, dtype=np.int64))
    ref = reference if reference is not None else base.features
    step = int(rc.check_interval_s * NS_PER_S)
    psi_max = {ft: 0.0 for ft in rc.drift_features}
    ks_max = {ft: 0.0 for ft in rc.drift_features}
    t = int(t0_ns)
    while t < t1_ns:
        t = min(t + step, int(t1_ns))
        # Trades whose outcome is known by t, routed by the mode at their signal time.
        known_c = cand.trade_out_ts_ns <= t
        m_c = tl.at(cand.trade_sig_ts_ns)
        sel_c = known_c & _candidate_mask(m_c, cand.trade_u, f) & (cand.trade_sig_ts_ns >= enabled_since)
        known_b = base.trade_out_ts_ns <= t
        sel_b = known_b & _baseline_mask(tl.at(base.trade_sig_ts_ns), base.trade_u, f)
        n_c = int(sel_c.sum())
        wr_c, wr_b = _rate(cand.trade_won[sel_c]), _rate(base.trade_won[sel_b])
        fired: list[str] = []
        if n_c >= rc.min_sample and wr_b is not None and wr_c < wr_b - rc.winrate_delta_pp / 100.0:
            fired.append("winrate_drop")
        n_par = int(((parity > t - int(rc.parity_window_s * NS_PER_S)) & (parity <= t)).sum())
        if n_par > rc.parity_fail_max:
            fired.append("parity_failure")
        win_lo = max(t - int(rc.drift_window_s * NS_PER_S), enabled_since)
        in_win = (cand.sig_ts_ns > win_lo) & (cand.sig_ts_ns <= t)
        sel_s = in_win & _candidate_mask(tl.at(cand.sig_ts_ns), cand.sig_u, f)
        n_drift = int(sel_s.sum())
        drift_vals = {}
        if mode != Mode.DISABLED and n_drift >= rc.drift_min_sample:
            for ft in rc.drift_features:
                p, k = psi(ref[ft], cand.features[ft][sel_s]), ks_statistic(ref[ft], cand.features[ft][sel_s])
                drift_vals[ft] = {"psi": p, "ks": k}
                if math.isfinite(p):
                    psi_max[ft] = max(psi_max[ft], p)
                if math.isfinite(k):
                    ks_max[ft] = max(ks_max[ft], k)
            if any(math.isfinite(v["psi"]) and v["psi"] > rc.psi_block for v in drift_vals.values()):
                fired.append("drift_psi")
            if any(math.isfinite(v["ks"]) and v["ks"] > rc.ks_block for v in drift_vals.values()):
                fired.append("drift_ks")
        row = {"ts_ns": t, "mode": mode.name.lower(), "sample_canary": n_c, "winrate_canary": wr_c,
               "winrate_baseline_active": wr_b, "parity_failures_window": n_par, "drift_sample": n_drift,
               "drift": drift_vals, "rails": list(fired) if mode != Mode.DISABLED else [], "action": None}
        if mode != Mode.DISABLED and fired:
            reason = fired[0]
            events.append({"event": "MODE_SWITCH", "ts_ns": t, "from": mode.name.lower(), "to": "disabled",
                           "reason": reason, "rails": fired,
                           "detail": _detail(reason, rc, wr_c, wr_b, n_c, n_par, drift_vals)})
            rollbacks[reason] += 1
            mode, last_switch, rolled_back = Mode.DISABLED, t, True
            tl.starts.append(t)
            tl.modes.append(int(mode))
            row["action"] = f"rollback ({reason})"
        elif mode == Mode.DISABLED and rolled_back and rc.auto_reenable and start_mode != Mode.DISABLED:
            if t - last_switch >= int(rc.cooldown_s * NS_PER_S):
                events.append({"event": "MODE_SWITCH", "ts_ns": t, "from": "disabled", "to": start_mode.name.lower(),
                               "reason": "cooldown_elapsed", "rails": [],
                               "detail": f"cooldown of {rc.cooldown_s:g} s since the rollback elapsed; fresh samples"})
                mode, last_switch, enabled_since = start_mode, t, t
                tl.starts.append(t)
                tl.modes.append(int(mode))
                row["action"] = "re-enable"
            else:
                blocked_by_cooldown += 1
                row["action"] = "cooldown"
        checks.append(row)
    outcome = _route_outcomes(cand, base, tl, f, rc)
    gates = release_gates(outcome["canary"], rc, start_mode)
    metrics = {"mode_switch_total": len(events), "rollback_total": sum(rollbacks.values()),
               "winrate_canary": checks[-1]["winrate_canary"] if checks else None,
               "winrate_baseline_active": checks[-1]["winrate_baseline_active"] if checks else None,
               "sample_canary": checks[-1]["sample_canary"] if checks else 0}
    for r, n in rollbacks.items():
        metrics[_reason_key(r)] = n
    for ft in rc.drift_features:
        metrics[metric_name("psi", ft)] = psi_max[ft]
        metrics[metric_name("ks", ft)] = ks_max[ft]
    for r in ("paper", "canary", "full"):
        metrics[f'trades_opened_total{{route="{r}"}}'] = outcome["signals_by_route"][r]
    return {"t0_ns": int(t0_ns), "t1_ns": int(t1_ns), "start_mode": start_mode.name.lower(),
            "final_mode": mode.name.lower(), "events": events, "rollbacks": rollbacks,
            "blocked_by_cooldown": blocked_by_cooldown, "checks": checks, "outcome": outcome, "gates": gates,
            "metrics": metrics}


def _reason_key(reason: str) -> str:
    return f'rollback_total{{reason="{reason}"}}'


def _detail(reason, rc, wr_c, wr_b, n_c, n_par, drift_vals) -> str:
    if reason == "winrate_drop":
        return (f"winrate_canary {wr_c:.4f} < winrate_baseline_active {wr_b:.4f} - {rc.winrate_delta_pp:g} pp "
                f"with sample_canary {n_c} >= {rc.min_sample}")
    if reason == "parity_failure":
        return f"{n_par} parity failure(s) in {rc.parity_window_s:g} s > parity_fail_max {rc.parity_fail_max}"
    key, block = ("psi", rc.psi_block) if reason == "drift_psi" else ("ks", rc.ks_block)
    worst = max(drift_vals.items(), key=lambda kv: kv[1][key] if math.isfinite(kv[1][key]) else -1)
    return f"{key}_feature{{feature=\"{worst[0]}\"}} = {worst[1][key]:.4f} > {key}_block {block:g}"


def _route_outcomes(cand: RunStream, base: RunStream, tl: _Timeline, f: float, rc) -> dict:
    """Win rate, mean markout and fill rate of the signals each route actually carried."""
    out = {}
    cm_sig = _candidate_mask(tl.at(cand.sig_ts_ns), cand.sig_u, f)
    cm_tr = _candidate_mask(tl.at(cand.trade_sig_ts_ns), cand.trade_u, f)
    bm_sig = _baseline_mask(tl.at(base.sig_ts_ns), base.sig_u, f) & (tl.at(base.sig_ts_ns) != Mode.FULL)
    bm_tr = _baseline_mask(tl.at(base.trade_sig_ts_ns), base.trade_u, f) & (tl.at(base.trade_sig_ts_ns) != Mode.FULL)
    for name, s, fl, tw, tm in (("canary", cm_sig, cand.sig_filled, cand.trade_won[cm_tr], cand.trade_markout_bps[cm_tr]),
                                ("baseline", bm_sig, base.sig_filled, base.trade_won[bm_tr], base.trade_markout_bps[bm_tr])):
        mk = tm[np.isfinite(tm)]
        out[name] = {"signals": int(s.sum()), "trades": len(tw), "winrate": _rate(tw),
                     "markout_bps_mean": float(mk.mean()) if len(mk) else None,
                     "fill_rate": _rate(fl[s])}
    full = tl.at(cand.sig_ts_ns) == Mode.FULL
    out["signals_by_route"] = {"paper": out["baseline"]["signals"], "canary": int((cm_sig & ~full).sum()),
                               "full": int((cm_sig & full).sum())}
    return out


def release_gates(canary: dict, rc, start_mode: Mode) -> list[dict]:
    """The canary pipeline's release gates on the canary route's outcome (pass / fail / no data)."""
    rows = []
    for gate, key, bound in (("winrate", "winrate", rc.winrate_target),
                             ("markout", "markout_bps_mean", rc.markout_min_bps),
                             ("fill_rate", "fill_rate", rc.fill_rate_min)):
        v = canary.get(key)
        status = "no data" if v is None or start_mode == Mode.DISABLED else ("pass" if v >= bound else "fail")
        rows.append({"gate": gate, "metric": key, "value": v, "condition": f"{key} >= {bound:g}", "status": status})
    return rows


# ------------------------------------------------------------------------------------------------ replay


def _run_pair(cfg_cand, cfg_base, specs, events):
    from mmlab.sim.engine import run_backtest

    rc_ = run_backtest(cfg_cand, events=events, symbols=specs)
    rb = rc_ if cfg_base.config_id == cfg_cand.config_id else run_backtest(cfg_base, events=events, symbols=specs)
    return rc_, rb


def _select_segments(segs, regimes, per_regime: int) -> list:
    chosen = []
    for r in regimes:
        chosen += [s for s in segs if s.regime == r][:per_regime]
    return sorted(chosen, key=lambda s: s.index)


def run_canary(config, *, baseline=None, segment: str = "day", regimes=("normal", "event", "high_vol"),
               per_regime: int = 1, parity_fail_s=(), out: str | os.PathLike = "reports/canary",
               overrides=(), regime_thresholds: dict | None = None) -> dict:
    """Replay the rollout of ``config`` (candidate, with its ``[rollout]``) against ``baseline`` (default: the
    same config) on ``per_regime`` segments of each regime found in the data; write ``canary.json`` and
    ``canary_report.md`` under ``out``. ``parity_fail_s``: seconds after each segment's start at which a parity
    failure is injected (an operator drill of the parity rail)."""
    from mmlab.config import load_config
    from mmlab.hpo.regimes import REGIMES, RegimeThresholds
    from mmlab.hpo.segments import load_segments

    cfg = config if hasattr(config, "data") else load_config(config, overrides=list(overrides))
    cfg_b = cfg if baseline is None else (baseline if hasattr(baseline, "data") else load_config(baseline, overrides=list(overrides)))
    if cfg_b.data != cfg.data:
        raise ConfigError(f"the canary replay needs the same [data] in the candidate and the baseline; candidate "
                          f"has {cfg.data}, baseline {cfg_b.data}")
    bad = [r for r in regimes if r not in REGIMES]
    if bad:
        raise ConfigError(f"--regimes {bad} unknown; choose from {REGIMES}")
    if per_regime < 1:
        raise ConfigError(f"--per-regime must be >= 1, got {per_regime}")
    rc = cfg.rollout
    seg_ns = _segment_ns(segment)
    th = RegimeThresholds.from_dict(regime_thresholds or {}, origin="canary")
    specs, segs = load_segments(cfg, seg_ns, th, cache=False)
    chosen = _select_segments(segs, regimes, per_regime)
    if not chosen:
        raise DataError(f"no segment of regimes {list(regimes)} in the data window (found "
                        f"{sorted({s.regime for s in segs})}); widen [data] or pass --regimes")
    ref_seg = next((s for s in segs if s.regime == "normal"), segs[0])
    _, ref_run = _run_pair(cfg_b, cfg_b, specs, ref_seg.events)
    ref_stream = stream_from_result(ref_run, rc)
    reference = dict(ref_stream.features)
    rows = []
    for s in chosen:
        rcand, rbase = _run_pair(cfg, cfg_b, specs, s.events)
        par = [s.t0_ns + int(x * NS_PER_S) for x in parity_fail_s]
        sup = supervise(stream_from_result(rcand, rc), stream_from_result(rbase, rc), rc, s.t0_ns, s.t1_ns,
                        reference=reference, parity_fail_ts_ns=par)
        sup.update({"segment": s.label, "regime": s.regime,
                    "candidate_pnl_net": rcand.summary["pnl_net"], "baseline_pnl_net": rbase.summary["pnl_net"]})
        rows.append(sup)
    totals = {"mode_switch_total": sum(r["metrics"]["mode_switch_total"] for r in rows),
              "rollback_total": sum(r["metrics"]["rollback_total"] for r in rows)}
    for reason in REASONS:
        totals[_reason_key(reason)] = sum(r["rollbacks"][reason] for r in rows)
    res = {"candidate_config_id": cfg.config_id, "baseline_config_id": cfg_b.config_id,
           "rollout": {k: (list(v) if isinstance(v, tuple) else v) for k, v in rc.__dict__.items()},
           "reference_segment": ref_seg.label, "regimes_requested": list(regimes),
           "regimes_missing": [r for r in regimes if not any(s.regime == r for s in segs)],
           "segments_available": [{"segment": s.label, "regime": s.regime} for s in segs],
           "segments": rows, "totals": totals,
           "passed": all(g["status"] != "fail" for r in rows for g in r["gates"]) and totals["rollback_total"] == 0}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "canary.json").write_text(json.dumps(res, indent=2, default=_json_default))
    res["report"] = str(canary_report(res, out_dir / "canary_report.md"))
    return res


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return str(v)


def _segment_ns(segment: str) -> int | None:
    if segment == "day":
        return None
    if segment == "none":
        return 0
    if segment.endswith("min"):
        try:
            v = float(segment[:-3])
        except ValueError:
            v = -1.0
        if v > 0:
            return int(v * 60 * NS_PER_S)
    raise ConfigError(f"--segment {segment!r} must be 'day', 'none' or '<N>min' (e.g. '60min')")


def _f(v) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def canary_report(res: dict, path: str | os.PathLike) -> Path:
    """Markdown of :func:`run_canary`: per segment the routes, guard rails, MODE_SWITCH events and gates."""
    ro = res["rollout"]
    L = ["# Canary rollout replay", "",
         f"Mode `{ro['mode']}`, canary_fraction {ro['canary_fraction']:g}, rng_seed {ro['rng_seed']}; guard rails: "
         f"win rate -{ro['winrate_delta_pp']:g} pp (min sample {ro['min_sample']}), PSI > {ro['psi_block']:g}, "
         f"KS > {ro['ks_block']:g}, parity failures > {ro['parity_fail_max']}; cooldown {ro['cooldown_s']:g} s.",
         f"Candidate `{res['candidate_config_id']}`, baseline `{res['baseline_config_id']}`, drift reference: "
         f"segment {res['reference_segment']}.", ""]
    if res["regimes_missing"]:
        L += [f"Regimes not present in the data: {', '.join(res['regimes_missing'])}.", ""]
    L += ["| segment | regime | final mode | canary signals | canary trades | winrate canary | winrate baseline | "
          "markout canary | fill rate canary | rollbacks | gates |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["segments"]:
        c, b = r["outcome"]["canary"], r["outcome"]["baseline"]
        gates = ", ".join(f"{g['gate']} {g['status']}" for g in r["gates"])
        L.append(f"| {r['segment']} | {r['regime']} | {r['final_mode']} | {c['signals']} | {c['trades']} | "
                 f"{_f(c['winrate'])} | {_f(b['winrate'])} | {_f(c['markout_bps_mean'])} | {_f(c['fill_rate'])} | "
                 f"{r['metrics']['rollback_total']} | {gates} |")
    L += ["", "## Mode switches", ""]
    ev = [(r["segment"], e) for r in res["segments"] for e in r["events"]]
    if not ev:
        L.append("No MODE_SWITCH: no guard rail fired.")
    for seg, e in ev:
        L.append(f"- {seg} at {e['ts_ns']} ns: MODE_SWITCH{{from=\"{e['from']}\", to=\"{e['to']}\"}} "
                 f"reason `{e['reason']}`: {e['detail']}")
    t = res["totals"]
    by_reason = ", ".join(f"{r}: {t[_reason_key(r)]}" for r in REASONS)
    L += ["", "## Counters", "", f"mode_switch_total = {t['mode_switch_total']}, rollback_total = "
          f"{t['rollback_total']} ({by_reason})", "",
          f"Outcome: {'PASS' if res['passed'] else 'FAIL'}", ""]
    p = Path(path)
    p.write_text("\n".join(L))
    return p
