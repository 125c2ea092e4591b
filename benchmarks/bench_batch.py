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
    finally:
        if made:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
