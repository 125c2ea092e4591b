"""K parameter sets in one pass against K sequential runs, on the shared BTCUSDT capture.

The grid (``--grid-num`` orders a side every 100 ms, constant 10 ms / 10 ms latency, risk-averse queue, no
partial fills) runs ``--k`` parameter sets (half_spread_ticks x skew_ticks x order_qty) on the real Binance
USD-M BTCUSDT capture of 2024-08-08, ingested into a temporary store (``--real-root`` reuses one):

- sequential: ``run_backtest(cfg_k, events=..., symbols=...)`` for each set (K full backtests);
- batch: one ``run_backtest_batch(cfg, sets, events=..., symbols=...)`` (one pass, K full results);
- studies, sequential: for each set the lean single-set run an Optuna trial makes
  (``run_backtest_batch(cfg_k, [cfg_k], decisions=False, frames=False)``, see ``mmlab.hpo.objective.run_segment``);
- studies, batch: one ``run_backtest_batch(cfg, sets, decisions=False, frames=False)`` (what ``mmlab hpo --batch``
  runs).

All read the same in-memory events and get the same summaries (checked: every set's summary, wall-clock keys
excluded, must be equal in the four; fills and decisions frames equal between the two full variants). Times are
wall clock (``perf_counter``), best of ``--repeat`` after a warm-up of each (numba's disk cache, compiled loop in
this process). Printed: end-to-end seconds of each and their ratios, and the same for the compiled loop only
(``loop_s``).

Then where a pass spends its time, by variants of the compiled loop (``engine.simulate``, no frames; best of
``--repeat``): one idle set (the grid with ``grid_num = 0``: the books replayed, a decision tick that quotes
nothing) = the replay every set shares; one active set (the first one) = replay + one set's own work (ticks,
orders, requests, reports, queues, fills); K idle sets in one pass = replay + K decision ticks per tick; K active
sets in one pass. From these: the shared replay, the per-set cost of a tick in a pass, each set's own work in a
pass against alone, the Python after the loop (end to end minus loop) of both batch variants, and the loop-only
ratio the per-set work bounds (sequential loop / (replay + K x per-set work)); with the counters of one set
(ticks, requests, order events, fills).

    python benchmarks/bench_batch.py [--k 64] [--repeat 1] [--real-root DIR]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REAL = (REPO / ".." / "shared" / "data" / "real" / "binance_usdm").resolve()
GOAL_RATIO = 10.0


def _sets(k: int) -> list[dict]:
    grid = itertools.product((1.0, 2.0, 3.0, 4.0), (0.0, 0.5, 1.0, 2.0), (0.001, 0.002, 0.003, 0.004),
                             (0.01, 0.02))
    sets = [{"strategy.half_spread_ticks": h, "strategy.skew_ticks": s, "strategy.order_qty": q,
             "strategy.max_position": m} for h, s, q, m in grid]
    return sets[:k]


def _breakdown(cfg, cfgs, specs, ev, repeat, seq_best, bat_best, lean_best, bat) -> None:
    """Print where a K-set pass spends its time (variants of the compiled loop, see the module docstring)."""
    import dataclasses

    from mmlab.sim.engine import simulate
    from mmlab.sim.strategies import get_strategy

    grid = get_strategy(cfg.strategy.name)

    def idle_params(c, infos):
        p = grid.build_params(c, infos)
        p["grid_num"] = 0
        return p

    idle = dataclasses.replace(grid, build_params=idle_params)

    variants = {"one_idle": (idle, cfgs[:1]), "one": (grid, cfgs[:1]), "k_idle": (idle, cfgs), "k_act": (grid, cfgs)}
    best = dict.fromkeys(variants, 1e30)
    raw = None
    # Rounds of all four variants, best of each: the machine's load drifts between rounds, not within one.
    for _ in range(max(repeat, 3)):
        for name, (strategy, sets) in variants.items():
            raw = simulate(sets[0], specs, [ev], strategy=strategy, batch_cfgs=sets if len(sets) > 1 else None,
                           keep_decisions=False)
            best[name] = min(best[name], raw["loop_s"])
    k = len(cfgs)
    one_idle, one, k_idle, k_act = best["one_idle"], best["one"], best["k_idle"], best["k_act"]
    rs = raw["arrays"].rs
    o = raw["out"]
    n_ticks = int(rs["n_decisions"].mean())
    print(f"  breakdown (compiled loop, best of {max(repeat, 3)}; one set = the first; counters per set, mean):")
    print(f"    per set: {n_ticks:,} decision ticks, {rs['n_requests'].mean():,.0f} requests, "
          f"{len(o['oev']) / k:,.0f} order events, {len(o['fills']) / k:,.0f} fills")
    print(f"    shared replay (one idle set)            : {one_idle * 1e3:8.1f} ms")
    print(f"    one set alone: its own work              : {(one - one_idle) * 1e3:8.1f} ms  (loop {one * 1e3:.1f} ms)")
    print(f"    {k} idle sets in one pass                 : {k_idle * 1e3:8.1f} ms  -> {(k_idle - one_idle) / k * 1e3:.2f} ms "
          f"per set for its decision ticks ({(k_idle - one_idle) / (k * n_ticks) * 1e9:.0f} ns a tick)")
    own = (k_act - k_idle) / k
    print(f"    {k} active sets in one pass               : {k_act * 1e3:8.1f} ms  -> {own * 1e3:.2f} ms per set of "
          f"own work beyond its ticks")
    print(f"    Python after the loop: full {(bat_best[0] - bat_best[1]) * 1e3:.0f} ms, studies "
          f"{(lean_best[0] - lean_best[1]) * 1e3:.0f} ms for {k} sets (sequential full: "
          f"{(seq_best[0] - seq_best[1]) / k * 1e3:.1f} ms a run)")
    per_set = (k_act - one_idle) / k
    alone = max(one - one_idle, 1e-6)
    print(f"    loop-only ratio of these variants: {k} x {one * 1e3:.1f} ms / {k_act * 1e3:.1f} ms = "
          f"{k * one / k_act:.2f}x; a set's work costs {per_set / alone:.2f}x in a pass what it costs alone "
          f"({per_set * 1e3:.2f} vs {alone * 1e3:.2f} ms); bound if it cost the same: "
          f"{k * one / (one_idle + k * alone):.1f}x, with no per-set work at all: {k * one / one_idle:.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k", type=int, default=64, help="parameter sets (at most 128)")
    ap.add_argument("--grid-num", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--real-root", type=Path, default=None, help="reuse a store holding BTCUSDT 2024-08-08")
    args = ap.parse_args()
    if not REAL.is_dir():
        sys.exit(f"{REAL} is absent: this benchmark replays the shared BTCUSDT capture")
    from mmlab.config import load_config
    from mmlab.data.bridge import load_events, replay_window
    from mmlab.data.ingest import IngestOptions, ingest
    from mmlab.sim.engine import (
        WALL_TIME_KEYS,
        SymbolSpec,
        batch_config,
        run_backtest,
        run_backtest_batch,
    )

    made = args.real_root is None
    root = args.real_root or Path(tempfile.mkdtemp(prefix="bench_batch_real_"))
    try:
        if not (root / "binance-usdm" / "BTCUSDT").is_dir():
            ingest([REAL / "usdm_btcusdt_20240808.gz"], "binance-usdm", root, IngestOptions())
        ev, infos = load_events(root, "binance-usdm", ["BTCUSDT"])
        # Every variant replays one prepared window (BBO rows out, exchange-time order), as store runs and study
        # segments do, so none pays the filter + sort per run.
        warm_ev = replay_window(ev[:20_000])
        ev = replay_window(ev)
        i = infos[0]
        specs = [SymbolSpec(i.symbol, i.tick_size, i.lot_size, i.contract_type, i.contract_size)]
        cfg = load_config({
            "strategy": {"grid_num": args.grid_num, "interval_ms": 100, "half_spread_ticks": 2, "skew_ticks": 1.0,
                         "order_qty": 0.001, "max_position": 0.01},
            "sim": {"queue_model": "risk_averse", "exchange_model": "no_partial", "latency_model": "constant",
                    "entry_latency_ms": 10, "response_latency_ms": 10, "maker_fee": -0.00005, "taker_fee": 0.0007},
        })
        sets = _sets(args.k)
        cfgs = [batch_config(cfg, s) for s in sets]
        # Warm-up: compile / load both loop variants.
        run_backtest(cfgs[0], events=warm_ev, symbols=specs)
        run_backtest_batch(cfg, sets[:2], events=warm_ev, symbols=specs)
        lean_kw = dict(events=ev, symbols=specs, decisions=False, frames=False)
        run_backtest_batch(cfgs[0], [cfgs[0]], **{**lean_kw, "events": warm_ev})
        seq_best = bat_best = sl_best = lean_best = (1e30, 1e30)
        for _ in range(args.repeat):
            t = time.perf_counter()
            seq = [run_backtest(c, events=ev, symbols=specs) for c in cfgs]
            seq_s = time.perf_counter() - t
            seq_best = min(seq_best, (seq_s, sum(r.summary["loop_s"] for r in seq)))
            t = time.perf_counter()
            bat = run_backtest_batch(cfg, sets, events=ev, symbols=specs)
            bat_best = min(bat_best, (time.perf_counter() - t, bat[0].summary["loop_s"]))
            t = time.perf_counter()
            seq_lean = [run_backtest_batch(c, [c], **lean_kw)[0] for c in cfgs]
            sl_best = min(sl_best, (time.perf_counter() - t, sum(r.summary["loop_s"] for r in seq_lean)))
            t = time.perf_counter()
            lean = run_backtest_batch(cfg, sets, **lean_kw)
            lean_best = min(lean_best, (time.perf_counter() - t, lean[0].summary["loop_s"]))
        strip = lambda s: {k: v for k, v in s.items() if k not in WALL_TIME_KEYS}
        same = all(strip(a.summary) == strip(b.summary) == strip(c.summary) == strip(d.summary)
                   for a, b, c, d in zip(seq, bat, seq_lean, lean))
        same = same and all(a.fills.equals(b.fills) and a.decisions.equals(b.decisions) for a, b in zip(seq, bat))
        fills = [r.summary["n_fills"] for r in bat]
        n = int(seq[0].summary["events"])
        print(f"BTCUSDT 2024-08-08: {n:,} events, grid {args.grid_num}/side every 100 ms, {len(sets)} parameter sets "
              f"(fills per set {min(fills)}..{max(fills)}); best of {args.repeat} after a warm-up")
        k = len(sets)
        print(f"  full backtests: sequential run_backtest x {k}: {seq_best[0]:8.2f} s end to end, loop "
              f"{seq_best[1]:8.2f} s")
        print(f"                  run_backtest_batch (one pass): {bat_best[0]:8.2f} s end to end, loop "
              f"{bat_best[1]:8.2f} s")
        print(f"  studies (summaries only): sequential lean x {k}: {sl_best[0]:8.2f} s end to end, loop "
              f"{sl_best[1]:8.2f} s")
        print(f"                  batch (mmlab hpo --batch)    : {lean_best[0]:8.2f} s end to end, loop "
              f"{lean_best[1]:8.2f} s")
        ok = lambda r: "met" if r >= GOAL_RATIO else "NOT met"
        r_e2e = seq_best[0] / bat_best[0]
        r_lean = sl_best[0] / lean_best[0]
        r_loop = seq_best[1] / bat_best[1]
        print(f"  ratio sequential / batch: full backtests {r_e2e:.2f}x ({ok(r_e2e)}), studies lean vs lean "
              f"{r_lean:.2f}x ({ok(r_lean)}), loop only {r_loop:.2f}x; goal >= {GOAL_RATIO:g}x; "
              f"results identical: {same}")
        _breakdown(cfg, cfgs, specs, ev, args.repeat, seq_best, bat_best, lean_best, bat)
    finally:
        if made:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
