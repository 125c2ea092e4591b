"""Event-simulator throughput with the reference ``grid`` strategy, against replaying the books alone.

Ingests the shared Binance USD-M BTCUSDT capture (2024-07-18/19, 8 minutes) into a temporary store (or reuses
``--root``), loads its events once, then times, best of ``--repeat`` (CPU time of this process, so other load
on the machine disturbs it less):

- baseline: the two book replays every backtest needs (exchange book in ts_exch order, local book in ts_local
  order) with the same book kernel, nothing else;
- sim: the compiled event loop with grid (``--grid-num`` orders a side every ``--interval-ms``), queue, latency,
  matching, outputs.

It prints events/s (replayed rows: BBO rows are not replayed), the ratio sim/baseline (the simulator's overhead
over the book work) and the ratio to the 17 M events/s goal, then ``run_backtest`` from the store end to end with
the time of each step (replay windows, loop, frames, labels, summary, ``write_run``; see
``bench_day_rss.StageTimer``). Then it measures, in fresh processes, the JIT
overhead a second process pays (kernels loaded from numba's disk cache) and how the strategy is passed to the
loop: as a plain dispatcher argument (numba re-compiles in every process) or typed as a first-class function
(cached; what the engine does).

    python benchmarks/bench_sim.py [--repeat 7] [--root DIR] [--grid-num 5] [--interval-ms 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from numba import njit

from mmlab.data.book_nb import book_apply_nb

REPO = Path(__file__).resolve().parents[1]
REAL = (REPO / ".." / "shared" / "data" / "real" / "binance_usdm").resolve()
GOAL_EVENTS_PER_S = 17e6


@njit(cache=True)
def _two_books_nb(local_ev, exch_ev, book, bid_qty, ask_qty):
    n_sym = book.shape[0] // 2
    for i in range(exch_ev.shape[0]):
        e = exch_ev[i]
        book_apply_nb(book, bid_qty, ask_qty, np.int64(e.symbol_id), e.kind, np.int64(e.side), e.price_ticks, e.qty)
    for i in range(local_ev.shape[0]):
        e = local_ev[i]
        book_apply_nb(book, bid_qty, ask_qty, n_sym + np.int64(e.symbol_id), e.kind, np.int64(e.side), e.price_ticks,
                      e.qty)
    return book[0].best_bid_tick


def _store(root: Path | None) -> Path:
    from mmlab.data.ingest import IngestOptions, ingest

    if root is not None and (root / "binance-usdm" / "BTCUSDT" / "_meta.json").exists():
        return root
    root = root or Path(tempfile.mkdtemp(prefix="bench_sim_"))
    ingest([REAL / "usdm_btcusdt_20240718.gz", REAL / "usdm_btcusdt_20240719.gz"], "binance-usdm", root, IngestOptions())
    return root


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


_SECOND_PROCESS = """
import time, json, sys
t0 = time.perf_counter()
import numpy as np
from mmlab.config import load_config
from mmlab.data.bridge import load_events
from mmlab.sim import engine as E
from mmlab.sim.strategies import get_strategy
t_import = time.perf_counter() - t0
ev, infos = load_events(sys.argv[1], "binance-usdm", ["BTCUSDT"])
ev = ev[ev["kind"] != 5][:2000]
cfg = load_config({"strategy": {"grid_num": 5, "interval_ms": 100}})
specs = [E.SymbolSpec(i.symbol, i.tick_size, i.lot_size) for i in infos]
t = time.perf_counter()
raw = E.simulate(cfg, specs, [ev])
t_first = time.perf_counter() - t
t = time.perf_counter()
E.simulate(cfg, specs, [ev])
t_again = time.perf_counter() - t
print(json.dumps({"import_s": t_import, "first_simulate_s": t_first, "second_simulate_s": t_again,
                  "jit_overhead_s": t_first - t_again}))
"""

_DISPATCH_MODULE = """
import numpy as np
from numba import njit, types

@njit(cache=True)
def decide(x, p):
    return x + p[0]

@njit(cache=True)
def loop(f, arr, p):
    s = 0.0
    for i in range(arr.shape[0]):
        s += f(arr[i], p)
    return s

def typed_entry():
    ft = types.FunctionType(types.float64(types.float64, types.float64[::1]))
    sig = (ft, types.float64[::1], types.float64[::1])
    loop.compile(sig)
    return loop.overloads[sig].entry_point
"""

_DISPATCH_RUN = """
import sys, time, json
sys.path.insert(0, sys.argv[1])
import numpy as np
import dispatch_mod as m
a = np.arange(10.0); p = np.ones(1)
t = time.perf_counter()
if sys.argv[2] == "dispatcher":
    m.loop(m.decide, a, p)
    hits = sum(m.loop.stats.cache_hits.values())
else:
    m.typed_entry()(m.decide, a, p)
    hits = sum(m.loop.stats.cache_hits.values())
print(json.dumps({"s": time.perf_counter() - t, "cache_hits": hits}))
"""


def _dispatch_check() -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "dispatch_mod.py").write_text(textwrap.dedent(_DISPATCH_MODULE))
        for mode in ("dispatcher", "typed"):
            runs = []
            for _ in range(2):  # the first process fills the cache, the second should load it
                r = subprocess.run([sys.executable, "-c", _DISPATCH_RUN, d, mode], capture_output=True, text=True, check=True)
                runs.append(json.loads(r.stdout))
            out[mode] = runs[1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--grid-num", type=int, default=5)
    ap.add_argument("--interval-ms", type=float, default=100.0)
    args = ap.parse_args()
    if not REAL.is_dir():
        sys.exit(f"{REAL} is absent: this benchmark replays the shared BTCUSDT capture")

    from mmlab.config import load_config
    from mmlab.data.book_nb import new_books
    from mmlab.data.bridge import exch_order, load_events
    from mmlab.sim import engine as E
    from mmlab.sim.strategies import get_strategy
    from mmlab.types import Kind

    root = _store(args.root)
    ev, infos = load_events(root, "binance-usdm", ["BTCUSDT"])
    ev = ev[ev["kind"] != Kind.BBO]
    xev = exch_order(ev)
    n = len(ev)
    cfg_dict = {"strategy": {"grid_num": args.grid_num, "interval_ms": args.interval_ms, "half_spread_ticks": 2,
                             "skew_ticks": 1.0, "order_qty": 0.001, "max_position": 0.01},
                "sim": {"entry_latency_ms": 10, "response_latency_ms": 10}}
    cfg = load_config(cfg_dict)
    specs = [E.SymbolSpec(i.symbol, i.tick_size, i.lot_size) for i in infos]
    strat = get_strategy("grid")

    def baseline():
        book, bq, aq = new_books(2)
        _two_books_nb(ev, xev, book, bq, aq)

    state = {}

    def sim() -> float:
        """One loop run on fresh state; returns the CPU time of the kernel call alone."""
        a = E.new_sim_arrays(cfg, specs, strat)
        t0 = min(int(ev[0]["ts_local"]), int(xev[0]["ts_exch"]))
        a.rs["t0"] = t0
        a.rs["next_decision_ts"] = t0 + int(a.sp[0]["interval_ns"])
        entry = E.loop_entry(a, ev, xev)
        t = time.process_time()
        state["status"] = entry(ev, xev, E.INT64_MAX, True, *a.state_args(), strat.decide, *a.out_args())
        dt = time.process_time() - t
        state["fills"] = int(a.rs[0]["n_fill_rows"])
        return dt

    baseline()
    sim()  # compile / load both
    t_base = _best(baseline, args.repeat)
    t_sim = min(sim() for _ in range(args.repeat))
    eps = n / t_sim
    print(f"events replayed: {n:,} (BBO rows excluded); grid {args.grid_num}/side every {args.interval_ms:g} ms; "
          f"fills {state['fills']}")
    print(f"baseline two-book replay: {t_base * 1e3:8.1f} ms  {n / t_base / 1e6:6.1f} M events/s")
    print(f"simulator (grid):        {t_sim * 1e3:8.1f} ms  {eps / 1e6:6.1f} M events/s")
    print(f"ratio sim/baseline time: {t_sim / t_base:.2f}x   ratio to the 17 M events/s goal: {eps / GOAL_EVENTS_PER_S:.2f}")

    # End to end from the store: where the time of run_backtest (+ write_run) goes, best of --repeat.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_day_rss import StageTimer, format_breakdown

    cfg_store = load_config({**cfg_dict, "data": {"root": str(root), "venue": "binance-usdm", "symbols": ["BTCUSDT"]}})
    E.run_backtest(cfg_store)  # warm-up: event cache, replay index, kernels
    best = None
    for _ in range(args.repeat):
        with StageTimer() as st, tempfile.TemporaryDirectory(prefix="bench_sim_run_") as d:
            t = time.perf_counter()
            res = E.run_backtest(cfg_store)
            wall = time.perf_counter() - t
            E.write_run(res, d)
        b = st.breakdown(res.summary["loop_s"], res.summary["jit_s"])
        if best is None or wall < best[0]:
            best = (wall, b)
    print(f"run_backtest from the store: {best[0]:.3f} s ({n / best[0] / 1e6:.1f} M events/s end to end); "
          f"{format_breakdown(best[1])}")

    r = subprocess.run([sys.executable, "-c", _SECOND_PROCESS, str(root)], capture_output=True, text=True, check=True)
    sp = json.loads(r.stdout)
    print(f"second process: import {sp['import_s']:.2f} s, first simulate {sp['first_simulate_s']:.3f} s, "
          f"again {sp['second_simulate_s']:.3f} s -> JIT overhead {sp['jit_overhead_s']:.3f} s (goal <= 1 s)")
    d = _dispatch_check()
    print(f"strategy passed as a dispatcher argument: second process {d['dispatcher']['s']:.3f} s, "
          f"cache hits {d['dispatcher']['cache_hits']} (re-compiles)")
    print(f"strategy passed as a typed first-class function: second process {d['typed']['s']:.3f} s, "
          f"cache hits {d['typed']['cache_hits']}")


if __name__ == "__main__":
    main()
