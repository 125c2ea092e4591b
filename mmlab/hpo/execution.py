"""Monte-Carlo execution stress: one config over many seeds under latency and market shock scenarios.

Every run uses the simulator's random latency model (``[sim] latency_model = "random"``: base latency plus an
exponential jitter of mean ``latency_jitter_ms``, times ``shock_mult`` during shock episodes started with
probability ``shock_prob`` per request) seeded with ``sim.seed = seed``. Scenarios:

- ``base``: random latency with the config's jitter (default 5 ms) and its shock settings;
- ``latency_spike``: the same with latency shocks (``shock_prob``, ``shock_mult`` of :class:`StressSpec`);
- ``liquidity_hole``: ``n_holes`` windows of ``hole_ms`` (exchange time, uniform over the middle 80% of the
  data) in which each DEPTH row is emptied (qty 0: the level vanishes) with probability ``hole_frac``;
- ``price_jump``: ``n_jumps`` times (uniform likewise) at which the whole market of every symbol moves by
  ``jump_ticks`` (random sign): the book is rebuilt up to the jump with the book kernel, a CLEAR row and the
  shifted book as SNAPSHOT rows are inserted, and every later row is shifted (rows that reach the local clock
  after the inserted ones are shifted too, so neither book ever mixes old and new prices).

Event transforms work on a copy of the events and use ``numpy.random.default_rng([seed, scenario index])``: a
stress run is a pure function of (data, config, spec, seed). The report gives, per scenario, the distribution
(mean, std, p5, p50, p95, min, max) of ``pnl_net``, ``fill_rate`` and other summary metrics over the seeds, and
a PNG of the PnL and fill-rate distributions.

>>> StressSpec(n_seeds=4).scenarios
('base', 'latency_spike', 'liquidity_hole', 'price_jump')
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from mmlab.data.book_nb import book_apply_nb, book_depth_nb, new_books
from mmlab.errors import ConfigError, DataError
from mmlab.types import Kind, Side, event_dtype

SCENARIOS = ("base", "latency_spike", "liquidity_hole", "price_jump")
#: Summary metrics whose distribution the report gives.
STRESS_METRICS = ("pnl_net", "fill_rate", "n_fills", "taker_share", "max_drawdown", "markout_bps_1s",
                  "slippage_bps_mean", "fees")
#: Levels per side written in a price-jump snapshot.
JUMP_SNAPSHOT_LEVELS = 2000
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class StressSpec:
    """Scenarios and their parameters (see the module doc)."""

    scenarios: tuple[str, ...] = SCENARIOS
    n_seeds: int = 20
    seed0: int = 0
    jitter_ms: float | None = None  # None: the config's latency_jitter_ms, or 5 ms when that is 0
    shock_prob: float = 0.05
    shock_mult: float = 10.0
    n_holes: int = 3
    hole_ms: float = 2000.0
    hole_frac: float = 0.8
    n_jumps: int = 1
    jump_ticks: int = 50

    def validate(self) -> None:
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise ConfigError(f"scenarios {list(self.scenarios)}: unknown {bad}; choose from {SCENARIOS}")
        checks = [("n_seeds", self.n_seeds >= 1, ">= 1"), ("seed0", self.seed0 >= 0, ">= 0"),
                  ("jitter_ms", self.jitter_ms is None or self.jitter_ms >= 0, ">= 0"),
                  ("shock_prob", 0.0 <= self.shock_prob <= 1.0, "in [0, 1]"),
                  ("shock_mult", self.shock_mult >= 1.0, ">= 1"), ("n_holes", self.n_holes >= 0, ">= 0"),
                  ("hole_ms", self.hole_ms > 0, "> 0"), ("hole_frac", 0.0 <= self.hole_frac <= 1.0, "in [0, 1]"),
                  ("n_jumps", self.n_jumps >= 0, ">= 0"), ("jump_ticks", self.jump_ticks >= 1, ">= 1")]
        for name, ok, need in checks:
            if not ok:
                raise ConfigError(f"execution stress {name} must be {need}, got {getattr(self, name)!r}")


def _shock_times(ev: np.ndarray, n: int, rng) -> np.ndarray:
    ts = ev["ts_exch"]
    lo, hi = int(ts.min()), int(ts.max())
    span = hi - lo
    return np.sort(rng.integers(lo + span // 10, hi - span // 10 + 1, size=n)).astype(np.int64)


def liquidity_holes(events: np.ndarray, *, n_holes: int, hole_ms: float, hole_frac: float, rng) -> tuple[np.ndarray, dict]:
    """Copy of ``events`` with DEPTH rows inside ``n_holes`` windows emptied with probability ``hole_frac``."""
    ev = events.copy()
    if n_holes == 0 or not len(ev):
        return ev, {"holes_ns": [], "rows_emptied": 0}
    starts = _shock_times(ev, n_holes, rng)
    dur = int(hole_ms * NS_PER_MS)
    ts = ev["ts_exch"]
    in_hole = np.zeros(len(ev), bool)
    for t in starts:
        in_hole |= (ts >= t) & (ts < t + dur)
    hit = in_hole & (ev["kind"] == Kind.DEPTH) & (rng.random(len(ev)) < hole_frac) & (ev["qty"] > 0)
    ev["qty"][hit] = 0.0
    return ev, {"holes_ns": [[int(t), int(t) + dur] for t in starts], "rows_emptied": int(hit.sum())}


@njit(cache=True)
def _rebuild_until_nb(book, bid_qty, ask_qty, kind, side, price_ticks, qty, symbol_id, exch_order, t_ns, ts_exch):
    """Apply the rows with ts_exch < t_ns, in exchange order, to the books."""
    for j in range(len(exch_order)):
        i = exch_order[j]
        if ts_exch[i] >= t_ns:
            break
        k = kind[i]
        if k == 1 or k == 3 or k == 4:
            book_apply_nb(book, bid_qty, ask_qty, symbol_id[i], k, side[i], price_ticks[i], qty[i])


def price_jumps(events: np.ndarray, *, n_jumps: int, jump_ticks: int, rng) -> tuple[np.ndarray, dict]:
    """Copy of ``events`` with ``n_jumps`` permanent market moves of ``jump_ticks`` (see the module doc)."""
    ev = events.copy()
    if n_jumps == 0 or not len(ev):
        return ev, {"jumps": []}
    info = []
    for t_j in _shock_times(ev, n_jumps, rng):
        sign = 1 if rng.random() < 0.5 else -1
        shift = sign * int(jump_ticks)
        n_sym = int(ev["symbol_id"].max()) + 1
        order = np.lexsort((np.arange(len(ev)), ev["ts_exch"])).astype(np.int64)
        book, bq, aq = new_books(n_sym)
        _rebuild_until_nb(book, bq, aq, ev["kind"], ev["side"], ev["price_ticks"], ev["qty"],
                          ev["symbol_id"].astype(np.int64), order, int(t_j), ev["ts_exch"])
        post_exch = ev["ts_exch"] >= t_j
        t_loc = int(ev["ts_local"][post_exch].min())
        shifted = post_exch | (ev["ts_local"] >= t_loc)
        ev["price_ticks"][shifted] += shift
        rows = []
        for s in range(n_sym):
            rows.append((int(t_j), t_loc, 0, 0.0, int(Kind.CLEAR), int(Side.BOTH), False, s))
            for sd in (int(Side.BID), int(Side.ASK)):
                tk = np.zeros(JUMP_SNAPSHOT_LEVELS, np.int64)
                q = np.zeros(JUMP_SNAPSHOT_LEVELS)
                n = book_depth_nb(book, bq, aq, s, sd, JUMP_SNAPSHOT_LEVELS, tk, q)
                rows += [(int(t_j), t_loc, int(tk[k]) + shift, float(q[k]), int(Kind.SNAPSHOT), sd, False, s)
                         for k in range(n)]
        ins = np.zeros(len(rows), dtype=event_dtype)
        for name, col in zip(("ts_exch", "ts_local", "price_ticks", "qty", "kind", "side", "batch_end", "symbol_id"),
                             zip(*rows)):
            ins[name] = col
        ins["update_id"] = -1
        ins["batch_end"][-1] = True
        at = int(np.searchsorted(ev["ts_local"], t_loc, side="left"))
        ev = np.concatenate([ev[:at], ins, ev[at:]])
        info.append({"ts_exch": int(t_j), "ticks": shift, "snapshot_rows": len(rows)})
    return ev, {"jumps": info}


def scenario_config(cfg, scenario: str, seed: int, spec: StressSpec):
    """The run config of one scenario and seed: random latency model, seeded."""
    s = cfg.sim
    jitter = spec.jitter_ms if spec.jitter_ms is not None else (s.latency_jitter_ms or 5.0)
    kw = {"latency_model": "random", "latency_jitter_ms": float(jitter), "seed": int(seed)}
    if scenario == "latency_spike":
        kw.update(shock_prob=spec.shock_prob, shock_mult=spec.shock_mult)
    return cfg.replace(sim=dataclasses.replace(s, **kw))


def scenario_events(events: np.ndarray, scenario: str, seed: int, spec: StressSpec) -> tuple[np.ndarray, dict]:
    """The (transformed copy of the) events of one scenario and seed."""
    rng = np.random.default_rng([int(seed), SCENARIOS.index(scenario)])
    if scenario == "liquidity_hole":
        return liquidity_holes(events, n_holes=spec.n_holes, hole_ms=spec.hole_ms, hole_frac=spec.hole_frac, rng=rng)
    if scenario == "price_jump":
        return price_jumps(events, n_jumps=spec.n_jumps, jump_ticks=spec.jump_ticks, rng=rng)
    return events, {}


def distribution(values) -> dict:
    """mean, std, p5, p50, p95, min, max of the finite values (None when there are none)."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return {k: None for k in ("mean", "std", "p5", "p50", "p95", "min", "max")} | {"n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "p5": float(np.percentile(v, 5)),
            "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "min": float(v.min()),
            "max": float(v.max()), "n": len(v)}


def run_execution_stress(config, spec: StressSpec | None = None, *, out: str | os.PathLike = "reports/execution",
                         overrides=(), events: np.ndarray | None = None, symbols=None) -> dict:
    """Run every scenario over ``spec.n_seeds`` seeds; write ``execution.json`` and ``execution.png``."""
    from mmlab.config import load_config
    from mmlab.sim.engine import run_backtest

    spec = spec or StressSpec()
    spec.validate()
    cfg = config if hasattr(config, "data") else load_config(config, overrides=list(overrides))
    if events is None:
        from mmlab.data import bridge
        from mmlab.sim.engine import SymbolSpec

        d = cfg.data
        events, infos = bridge.load_events(d.root, d.venue, list(d.symbols), d.start, d.end)
        symbols = [SymbolSpec(i.symbol, i.tick_size, i.lot_size, i.contract_type, i.contract_size, i.meta) for i in infos]
    if not len(events):
        raise DataError(f"no events for {list(cfg.data.symbols)} in {cfg.data.root} between {cfg.data.start} and "
                        f"{cfg.data.end} (check [data] and `mmlab data ls`)")
    ref = run_backtest(cfg, events=events, symbols=symbols).summary
    runs = []
    for scen in spec.scenarios:
        for seed in range(spec.seed0, spec.seed0 + spec.n_seeds):
            ev, tinfo = scenario_events(events, scen, seed, spec)
            r = run_backtest(scenario_config(cfg, scen, seed, spec), events=ev, symbols=symbols)
            row = {"scenario": scen, "seed": seed, **{m: r.summary.get(m) for m in STRESS_METRICS}, "transform": tinfo}
            runs.append(row)
    scen_stats = {}
    for scen in spec.scenarios:
        rows = [r for r in runs if r["scenario"] == scen]
        scen_stats[scen] = {m: distribution([r[m] for r in rows]) for m in STRESS_METRICS}
        scen_stats[scen]["n"] = len(rows)
        p = scen_stats[scen]["pnl_net"]["p50"]
        scen_stats[scen]["pnl_net_p50_vs_reference"] = (p - ref["pnl_net"]) if p is not None else None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {"config_id": cfg.config_id, "spec": dataclasses.asdict(spec),
           "reference": {m: ref.get(m) for m in STRESS_METRICS} | {"latency_model": cfg.sim.latency_model},
           "scenarios": scen_stats, "runs": runs}
    png = _plot(runs, spec.scenarios, ref, out_dir / "execution.png")
    res["png"] = str(png)
    res["json"] = str(out_dir / "execution.json")
    (out_dir / "execution.json").write_text(json.dumps(res, indent=2, default=float))
    return res


def _plot(runs: list[dict], scenarios, ref: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, m, title in ((axes[0], "pnl_net", "PnL (quote currency)"), (axes[1], "fill_rate", "fill rate")):
        data = [[r[m] for r in runs if r["scenario"] == s and r[m] is not None] for s in scenarios]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(scenarios) + 1), list(scenarios), rotation=15)
        for k, d in enumerate(data):
            ax.scatter(np.full(len(d), k + 1) + np.linspace(-0.15, 0.15, len(d)), d, s=8, alpha=0.5)
        if ref.get(m) is not None:
            ax.axhline(ref[m], color="grey", ls="--", lw=1, label="constant latency")
            ax.legend(loc="best", fontsize=8)
        ax.set_title(f"{title} over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
