"""A/B comparison of two strategy configurations with symbol routing, safety gates and auto-rollback.

Symbols are routed to bucket A or B by a salted hash (deterministic across processes and machines):
blacklisted symbols always go to A, a non-empty whitelist limits B to its symbols, and of the eligible symbols
about ``split_pct`` go to B. Per bucket and per interval the harness measures ``net_bps`` (pnl change / traded
notional), ``slippage_bps``, ``fill_rate``, ``taker_share``, ``tick_total_p95`` (ms) and ``deadline_miss_rate``
(the last two from ``tick_total_ns`` / ``deadline_miss`` state columns where the run has them), and B - A.

Four default safety gates, each tripping when its condition holds over consecutive intervals spanning at least
its ``duration_s``:

1. ``slippage_degradation``: B slippage_bps > A slippage_bps (any increase);
2. ``taker_share_increase``: B taker_share > A taker_share + 1 pp;
3. ``latency_regression``: B tick_total_p95 > A tick_total_p95 x 1.10;
4. ``deadline_miss_spike``: B deadline_miss_rate > 2 % (absolute).

The first trip rolls back: from the end of that interval every symbol is routed to A, and the rollback is
logged with the gate, the values and the reason. Reads result frames only (no simulation here).

>>> route_symbol("BTCUSDT", split_pct=1.0)
'B'
>>> route_symbol("BTCUSDT", split_pct=1.0, blacklist=("BTCUSDT",))
'A'
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError

METRICS = ("net_bps", "slippage_bps", "fill_rate", "taker_share", "tick_total_p95", "deadline_miss_rate")
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Gate:
    """``metric`` of B compared with A: ``kind`` "gt_a" (B > A + abs_margin), "gt_a_rel" (B > A x (1 + rel_margin))
    or "gt_abs" (B > threshold)."""

    name: str
    metric: str
    kind: str
    threshold: float = 0.0
    duration_s: float = 600.0

    def violated(self, a: float | None, b: float | None) -> bool | None:
        """True/False, or None when a needed value is missing (no fills, no timing columns)."""
        if b is None or (self.kind != "gt_abs" and a is None):
            return None
        if self.kind == "gt_a":
            return b > a + self.threshold
        if self.kind == "gt_a_rel":
            return b > a * (1.0 + self.threshold)
        return b > self.threshold

    def describe(self) -> str:
        if self.kind == "gt_a":
            return f"B {self.metric} > A + {self.threshold:g}"
        if self.kind == "gt_a_rel":
            return f"B {self.metric} > A x {1 + self.threshold:g}"
        return f"B {self.metric} > {self.threshold:g}"


def default_gates(duration_s: float = 600.0) -> tuple[Gate, ...]:
    """The four safety gates of the harness, each with ``duration_s``."""
    return (
        Gate("slippage_degradation", "slippage_bps", "gt_a", 0.0, duration_s),
        Gate("taker_share_increase", "taker_share", "gt_a", 0.01, duration_s),
        Gate("latency_regression", "tick_total_p95", "gt_a_rel", 0.10, duration_s),
        Gate("deadline_miss_spike", "deadline_miss_rate", "gt_abs", 0.02, duration_s),
    )


@dataclass(frozen=True)
class ABConfig:
    """Routing and gate settings of an A/B comparison."""

    split_pct: float = 0.5  # fraction of eligible symbols routed to B
    salt: str = "mmlab-ab"  # hash salt: another salt gives another (deterministic) split
    whitelist: tuple[str, ...] = ()  # non-empty: only these symbols may go to B
    blacklist: tuple[str, ...] = ()  # never routed to B
    interval_s: float = 60.0  # metric interval
    gates: tuple[Gate, ...] = field(default_factory=default_gates)
    auto_rollback: bool = True

    def validate(self) -> None:
        if not 0.0 <= self.split_pct <= 1.0:
            raise ConfigError(f"A/B split_pct must be in [0, 1] (fraction routed to B), got {self.split_pct!r}")
        if self.interval_s <= 0:
            raise ConfigError(f"A/B interval_s must be > 0, got {self.interval_s!r}")
        for g in self.gates:
            if g.kind not in ("gt_a", "gt_a_rel", "gt_abs") or g.metric not in METRICS or g.duration_s < 0:
                raise ConfigError(f"A/B gate {g.name!r}: metric must be one of {METRICS}, kind gt_a|gt_a_rel|gt_abs, "
                                  f"duration_s >= 0; got {g}")


def route_symbol(symbol: str, split_pct: float = 0.5, salt: str = "mmlab-ab", whitelist=(), blacklist=()) -> str:
    """Bucket "A" or "B" of a symbol (salted sha256, the same on every machine)."""
    if symbol in blacklist or (whitelist and symbol not in whitelist):
        return "A"
    h = int.from_bytes(hashlib.sha256(f"{salt}:{symbol}".encode()).digest()[:8], "big") / 2.0**64
    return "B" if h < split_pct else "A"


def route_symbols(symbols, cfg: ABConfig) -> dict[str, str]:
    return {s: route_symbol(s, cfg.split_pct, cfg.salt, cfg.whitelist, cfg.blacklist) for s in symbols}


def _pnl_at(state, symbols: list[str], t_ns: int) -> float:
    """Sum over ``symbols`` of the last pnl at or before ``t_ns`` (0 before a symbol's first tick)."""
    tot = 0.0
    for s in symbols:
        st = state.filter(state["symbol"] == s)
        if not st.height:
            continue
        ts = st["ts_local"].to_numpy()
        i = int(np.searchsorted(ts, t_ns, side="right")) - 1
        if i >= 0:
            v = float(st["pnl"][i])
            tot += v if math.isfinite(v) else 0.0
    return tot


def bucket_metrics(frames: dict, symbols: list[str], t0_ns: int, t1_ns: int) -> dict:
    """The six metrics of ``symbols`` over [t0_ns, t1_ns) from a run's frames (``fills``, ``state``, ``labels``)."""
    import polars as pl

    out: dict = {m: None for m in METRICS}
    if not symbols:
        return out
    fills = frames["fills"].filter(pl.col("symbol").is_in(symbols) & (pl.col("ts_exch") >= t0_ns) & (pl.col("ts_exch") < t1_ns))
    state = frames["state"].filter(pl.col("symbol").is_in(symbols))
    labels = frames["labels"].filter(pl.col("symbol").is_in(symbols) & (pl.col("ts_decision") >= t0_ns)
                                     & (pl.col("ts_decision") < t1_ns))
    notional = float((fills["price"] * fills["qty"]).sum()) if fills.height else 0.0
    dpnl = _pnl_at(state, symbols, t1_ns - 1) - _pnl_at(state, symbols, t0_ns - 1)
    out["net_bps"] = dpnl / notional * 1e4 if notional > 0 else None
    if fills.height:
        slip = fills["slippage_bps"].drop_nans().drop_nulls()
        out["slippage_bps"] = float(slip.mean()) if slip.len() else None
        qty = fills["qty"].to_numpy()
        maker = fills["maker"].to_numpy()
        out["taker_share"] = float(qty[~maker].sum() / qty.sum()) if qty.sum() > 0 else None
    if labels.height:
        out["fill_rate"] = float((labels["filled_qty"].to_numpy() > 0).mean())
    st = state.filter((pl.col("ts_local") >= t0_ns) & (pl.col("ts_local") < t1_ns))
    tcol = next((c for c in ("tick_total_ns", "tick_total") if c in st.columns), None)
    if tcol and st.height:
        v = st[tcol].drop_nulls().to_numpy().astype(float)
        v = v[np.isfinite(v)]
        out["tick_total_p95"] = float(np.percentile(v, 95)) / 1e6 if len(v) else None
    if "deadline_miss" in st.columns and st.height:
        out["deadline_miss_rate"] = float(st["deadline_miss"].cast(pl.Float64).mean())
    return out


def interval_series(frames_a: dict, frames_b: dict, routing: dict[str, str], interval_ns: int,
                    t0_ns: int | None = None, t1_ns: int | None = None) -> list[dict]:
    """Per interval: ``{"t0_ns", "t1_ns", "a": metrics, "b": metrics}`` with A's symbols from run A, B's from B."""
    sa = [s for s, b in routing.items() if b == "A"]
    sb = [s for s, b in routing.items() if b == "B"]
    if t0_ns is None or t1_ns is None:
        ts = np.concatenate([f["state"]["ts_local"].to_numpy() for f in (frames_a, frames_b) if f["state"].height] or [np.zeros(1, np.int64)])
        t0_ns = int(ts.min()) if t0_ns is None else t0_ns
        t1_ns = int(ts.max()) + 1 if t1_ns is None else t1_ns
    out = []
    t = t0_ns
    while t < t1_ns:
        e = min(t + interval_ns, t1_ns)
        out.append({"t0_ns": t, "t1_ns": e, "a": bucket_metrics(frames_a, sa, t, e), "b": bucket_metrics(frames_b, sb, t, e)})
        t = e
    return out


def evaluate_gates(series: list[dict], gates, *, auto_rollback: bool = True) -> dict:
    """Walk the intervals in order; a gate trips once its condition has held over consecutive intervals spanning
    ``duration_s``. Returns per-gate status and the rollback (the first trip) with its reason."""
    status = {g.name: {"gate": g.name, "condition": g.describe(), "duration_s": g.duration_s, "violations": 0,
                       "intervals_checked": 0, "tripped_at_ns": None, "status": "pass"} for g in gates}
    since: dict[str, int | None] = {g.name: None for g in gates}
    rollback = None
    for row in series:
        for g in gates:
            a, b = row["a"].get(g.metric), row["b"].get(g.metric)
            v = g.violated(a, b)
            st = status[g.name]
            if v is None:
                since[g.name] = None
                continue
            st["intervals_checked"] += 1
            if not v:
                since[g.name] = None
                continue
            st["violations"] += 1
            if since[g.name] is None:
                since[g.name] = row["t0_ns"]
            held_s = (row["t1_ns"] - since[g.name]) / NS_PER_S
            if held_s >= g.duration_s and st["tripped_at_ns"] is None:
                st["tripped_at_ns"] = row["t1_ns"]
                st["status"] = "tripped"
                if rollback is None and auto_rollback:
                    rollback = {"ts_ns": row["t1_ns"], "gate": g.name, "metric": g.metric, "a": a, "b": b,
                                "held_s": held_s,
                                "reason": f"{g.name}: {g.describe()} held for {held_s:g} s >= {g.duration_s:g} s "
                                          f"(A={a:.6g}, B={b:.6g}); every symbol routed to A"}
    for g in gates:
        if status[g.name]["intervals_checked"] == 0:
            status[g.name]["status"] = "no data"
    return {"gates": list(status.values()), "rollback": rollback}


def ab_compare(frames_a: dict, frames_b: dict, symbols: list[str], cfg: ABConfig | None = None) -> dict:
    """Route, measure per interval and in total, evaluate the gates and apply a rollback (see the module doc)."""
    cfg = cfg or ABConfig()
    cfg.validate()
    routing = route_symbols(symbols, cfg)
    series = interval_series(frames_a, frames_b, routing, int(cfg.interval_s * NS_PER_S))
    gates = evaluate_gates(series, cfg.gates, auto_rollback=cfg.auto_rollback)
    t0 = series[0]["t0_ns"] if series else 0
    t1 = series[-1]["t1_ns"] if series else 0
    sa = [s for s, b in routing.items() if b == "A"]
    sb = [s for s, b in routing.items() if b == "B"]
    rb = gates["rollback"]
    cut = rb["ts_ns"] if rb else t1
    total = {"a": bucket_metrics(frames_a, sa, t0, cut), "b": bucket_metrics(frames_b, sb, t0, cut)}
    total["delta"] = {m: (total["b"][m] - total["a"][m]) if total["a"][m] is not None and total["b"][m] is not None
                      else None for m in METRICS}
    res = {"routing": routing, "split_pct": cfg.split_pct, "salt": cfg.salt, "interval_s": cfg.interval_s,
           "window_ns": [t0, t1], "series": series, "total": total, **gates,
           "routing_final": {s: "A" for s in symbols} if rb else routing}
    if rb:
        res["after_rollback"] = bucket_metrics(frames_a, list(symbols), cut, t1)
    return res


def _f(v) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def ab_report(res: dict, path: str | Path, name_a: str = "A", name_b: str = "B") -> Path:
    """Markdown report of :func:`ab_compare`: routing, per-bucket metrics with B - A, gates, rollback log."""
    L = [f"# A/B: {name_b} (B) vs {name_a} (A)", "",
         f"Split {res['split_pct']:.0%} to B (salt `{res['salt']}`), metrics per {res['interval_s']:g} s interval.", "",
         "## Routing", "", "| symbol | bucket | after rollback |", "|---|---|---|"]
    for s, b in res["routing"].items():
        L.append(f"| {s} | {b} | {res['routing_final'][s]} |")
    L += ["", "## Metrics" + (" (until the rollback)" if res["rollback"] else ""), "",
          "| metric | A | B | B - A |", "|---|---|---|---|"]
    for m in METRICS:
        L.append(f"| {m} | {_f(res['total']['a'][m])} | {_f(res['total']['b'][m])} | {_f(res['total']['delta'][m])} |")
    L += ["", "## Safety gates", "", "| gate | condition | duration_s | intervals checked | violations | status |",
          "|---|---|---|---|---|---|"]
    for g in res["gates"]:
        L.append(f"| {g['gate']} | {g['condition']} | {g['duration_s']:g} | {g['intervals_checked']} | "
                 f"{g['violations']} | {g['status'].upper() if g['status'] == 'tripped' else g['status']} |")
    L += ["", "## Rollback", ""]
    L.append(f"ROLLBACK at {res['rollback']['ts_ns']} ns: {res['rollback']['reason']}" if res["rollback"]
             else "No gate tripped: no rollback.")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("\n".join(L) + "\n")
    return p
