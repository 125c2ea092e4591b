"""Throughput of the simulator against hftbacktest 2.4.4 with the same grid on the same events.

Both engines run the grid (``--grid-num`` orders a side every ``--interval-ms``, constant 10 ms / 10 ms latency,
risk-averse queue, no partial fills) on identical events:

- (i) the real Binance USD-M BTCUSDT capture of 2024-08-08 (ingested into a temporary store);
- (ii) a synthetic stream of ``--hours`` (default 6: about 11 M replayed rows; ``--synth-root`` reuses a store).

Events are counted the same way for both: the store rows replayed, BBO rows excluded (they are informational
and neither engine applies them). Each such row is processed twice by both engines (once on the exchange
book in exchange-time order, once on the local book in local-time order; hftbacktest's input array holds it
twice), and counted once. The events are converted once to hftbacktest's format and saved as an uncompressed
``.npz`` (its own converters write compressed ones, slower to load). Timings are wall clock (``perf_counter``),
best of ``--repeat``, after one warm-up run of each engine in this process (so both read warm caches: mmlab's
per-part event cache and replay index in the store, numba's disk cache, the OS file cache):

- loop: mmlab's compiled event loop (``summary["loop_s"]``) against hftbacktest's ``elapse`` loop with the grid
  (one njit function over the whole run);
- end to end: mmlab's ``run_backtest(cfg)`` from the store (replay windows, loop, result frames, labels,
  summary) against hftbacktest's asset build from its ``.npz`` + run + close (no result frames or labels).

(iii) start-up: each engine runs in a fresh process twice (the second finds warm caches: numba's disk cache,
the OS file cache); for the second process it prints import time and the first-call overhead (first call on a
short slice minus a second identical call). hftbacktest's strategy is an ``njit`` function taking its backtest
object, which numba cannot cache to disk, so it is compiled in every process.

    python benchmarks/bench_vs_hftbacktest.py [--repeat 3] [--hours 6] [--synth-root DIR] [--real-root DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

REPO = HERE.parent
REAL = (REPO / ".." / "shared" / "data" / "real" / "binance_usdm").resolve()
GOAL_RATIO = 2.0


def _cfg(grid_num: int, interval_ms: float, root=None, symbol: str = "BTCUSDT"):
    from mmlab.config import load_config

    d = {
        "strategy": {"grid_num": grid_num, "interval_ms": interval_ms, "half_spread_ticks": 2, "skew_ticks": 1.0,
                     "order_qty": 0.001, "max_position": 0.01},
        "sim": {"queue_model": "risk_averse", "exchange_model": "no_partial", "latency_model": "constant",
                "entry_latency_ms": 10, "response_latency_ms": 10, "maker_fee": -0.00005, "taker_fee": 0.0007},
    }
    if root is not None:
        d["data"] = {"root": str(root), "venue": "binance-usdm", "symbols": [symbol]}
    return load_config(d)


def run_mmlab(cfg, specs, ev) -> tuple[float, float, int]:
    """(loop s, simulate s, fills) of one in-memory ``simulate`` (used by the start-up check)."""
    from mmlab.sim.engine import simulate

    t = time.perf_counter()
    raw = simulate(cfg, specs, [ev])
    wall = time.perf_counter() - t
    return raw["loop_s"], wall, len(raw["out"]["fills"])


def run_mmlab_store(cfg) -> tuple[float, float, int]:
    """(loop s, end-to-end s, fills) of one ``run_backtest`` from the store named by ``cfg.data``."""
    from mmlab.sim.engine import run_backtest

    t = time.perf_counter()
    res = run_backtest(cfg)
    wall = time.perf_counter() - t
    return res.summary["loop_s"], wall, res.summary["n_fills"]


def run_hbt(cfg, data, tick, lot) -> tuple[float, float, int]:
    """(loop s, end-to-end s, fills) of one hftbacktest run on ``data`` (converted array or ``.npz`` path)."""
    from _hbt_grid import grid_hbt, hbt_backtest

    st, sm = cfg.strategy, cfg.sim
    t0 = time.perf_counter()
    bt = hbt_backtest(data, tick, lot, sm.queue_model, sm.queue_power, sm.maker_fee, sm.taker_fee,
                      int(sm.entry_latency_ms * 1e6), int(sm.response_latency_ms * 1e6))
    out = np.zeros((1, 5))
    fills = np.zeros((1, 3), np.int64)
    fq = np.zeros(1)
    t1 = time.perf_counter()
    grid_hbt(bt, st.grid_num, st.grid_interval_ticks, st.half_spread_ticks, st.skew_ticks, st.order_qty,
             st.max_position, int(st.interval_ms * 1e6), out, fills, fq)
    t2 = time.perf_counter()
    n_trades = int(bt.state_values(0).num_trades)
    bt.close()
    t3 = time.perf_counter()
    return t2 - t1, t3 - t0, n_trades


def compare(name: str, cfg, root: Path, symbol: str, repeat: int) -> dict:
    """Best-of-``repeat`` loop and end-to-end times of both engines on one store; prints and returns the ratios."""
    from _hbt_grid import to_hftbacktest

    from mmlab.data.bridge import load_events
    from mmlab.types import Kind

    ev, infos = load_events(root, "binance-usdm", [symbol])
    info = infos[0]
    n = int((ev["kind"] != Kind.BBO).sum())
    npz = root / f"{symbol}_hftbacktest.npz"
    if not npz.exists():
        np.savez(npz, data=to_hftbacktest(ev, info.tick_size))
    del ev
    res = {"mmlab": [], "hftbacktest": []}
    for _ in range(repeat + 1):  # the first run of each warms up (JIT, caches) and is not counted
        res["mmlab"].append(run_mmlab_store(cfg))
        res["hftbacktest"].append(run_hbt(cfg, str(npz), info.tick_size, info.lot_size))
    print(f"{name}: {n:,} events (store rows replayed, BBO excluded; hftbacktest input = each event as exchange + "
          f"local row), best of {repeat} after a warm-up run")
    best = {}
    for eng, runs in res.items():
        runs = runs[1:]
        loop = min(r[0] for r in runs)
        e2e = min(r[1] for r in runs)
        best[eng] = (loop, e2e)
        what = "run_backtest from the store" if eng == "mmlab" else "from its .npz: build + run + close"
        print(f"  {eng:12s} loop {loop:8.3f} s {n / loop / 1e6:7.2f} M events/s   end to end {e2e:8.3f} s "
              f"{n / e2e / 1e6:7.2f} M events/s ({what})   fills {runs[0][2]}")
    (lm, em), (lh, eh) = best["mmlab"], best["hftbacktest"]
    ok = lambda r: "met" if r >= GOAL_RATIO else "NOT met"
    print(f"  ratio mmlab/hftbacktest events/s: loop {lh / lm:.2f}x ({ok(lh / lm)}), end to end {eh / em:.2f}x "
          f"({ok(eh / em)}); goal >= {GOAL_RATIO:g}x")
    return {"loop": lh / lm, "end_to_end": eh / em}


_STARTUP = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
sys.path.insert(0, sys.argv[1])
from mmlab.config import load_config
from mmlab.data.bridge import load_events
from mmlab.sim.engine import SymbolSpec, simulate
from mmlab.types import Kind
engine = sys.argv[3]
import bench_vs_hftbacktest as B
if engine == "hftbacktest":
    import hftbacktest
    from _hbt_grid import to_hftbacktest
t_import = time.perf_counter() - t0
ev, infos = load_events(sys.argv[2], "binance-usdm", ["BTCUSDT"])
ev = ev[ev["kind"] != Kind.BBO][:20000]
i = infos[0]
cfg = B._cfg(5, 100.0)
specs = [SymbolSpec(i.symbol, i.tick_size, i.lot_size)]
if engine == "hftbacktest":
    data = to_hftbacktest(ev, i.tick_size)
    call = lambda: B.run_hbt(cfg, data, i.tick_size, i.lot_size)
else:
    call = lambda: B.run_mmlab(cfg, specs, ev)
t = time.perf_counter(); call(); first = time.perf_counter() - t
t = time.perf_counter(); call(); again = time.perf_counter() - t
print(json.dumps({"import_s": t_import, "first_s": first, "again_s": again}))
"""


def startup(real_root: Path) -> None:
    print("start-up, fresh processes (20,000-event slice of the BTCUSDT 2024-08-08 capture; second process shown):")
    for eng in ("mmlab", "hftbacktest"):
        runs = []
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", _STARTUP, str(HERE), str(real_root), eng], capture_output=True,
                               text=True, check=True)
            runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
        p1, p2 = runs
        print(f"  {eng:12s} import {p2['import_s']:6.2f} s   first call {p2['first_s']:7.3f} s   again "
              f"{p2['again_s']:6.3f} s   -> first-call overhead {p2['first_s'] - p2['again_s']:6.3f} s "
              f"(first process: {p1['first_s'] - p1['again_s']:.3f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hours", type=float, default=6.0, help="synthetic hours (about 1.9 M rows an hour)")
    ap.add_argument("--synth-root", type=Path, default=None, help="reuse a synthetic store (generated if absent)")
    ap.add_argument("--real-root", type=Path, default=None, help="reuse a store holding BTCUSDT 2024-08-08")
    ap.add_argument("--grid-num", type=int, default=5)
    ap.add_argument("--interval-ms", type=float, default=100.0)
    args = ap.parse_args()
    if not REAL.is_dir():
        sys.exit(f"{REAL} is absent: this benchmark replays the shared BTCUSDT capture")
    import hftbacktest

    from mmlab.data.ingest import IngestOptions, ingest
    from mmlab.data.synth import synth

    print(f"hftbacktest {getattr(hftbacktest, '__version__', '?')}; grid {args.grid_num}/side every "
          f"{args.interval_ms:g} ms, risk_averse, no_partial, constant 10/10 ms latency")

    made = []  # temporary stores this run creates (removed at the end)
    real_root = args.real_root or Path(tempfile.mkdtemp(prefix="bench_vs_hbt_real_"))
    if args.real_root is None:
        made.append(real_root)
    if not (real_root / "binance-usdm" / "BTCUSDT" / "_meta.json").exists():
        ingest([REAL / "usdm_btcusdt_20240808.gz"], "binance-usdm", real_root, IngestOptions())
    compare("(i) real BTCUSDT 2024-08-08", _cfg(args.grid_num, args.interval_ms, real_root, "BTCUSDT"), real_root,
            "BTCUSDT", args.repeat)

    synth_root = args.synth_root or Path(tempfile.mkdtemp(prefix="bench_vs_hbt_synth_"))
    if args.synth_root is None:
        made.append(synth_root)
    if not (synth_root / "binance-usdm" / "SYNTHUSDT" / "_meta.json").exists():
        t = time.perf_counter()
        synth(synth_root, hours=args.hours, seed=1)
        print(f"(generated {args.hours:g} h synthetic store in {time.perf_counter() - t:.1f} s at {synth_root})")
    compare(f"(ii) synthetic SYNTHUSDT ({synth_root.name})", _cfg(args.grid_num, args.interval_ms, synth_root,
            "SYNTHUSDT"), synth_root, "SYNTHUSDT", args.repeat)

    startup(real_root)
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
