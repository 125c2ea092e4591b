"""Study throughput on the shared BTCUSDT capture: trials/minute with 1 and 2 worker processes (scaling ratio)
and the time per trial beyond the simulation itself (baseline: the run_backtest calls of the same trials).

    python benchmarks/bench_hpo.py [--trials 12] [--storage journal|sqlite]

Prints figures; asserts nothing. The machine's other load moves them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "binance_usdm"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--storage", choices=("journal", "sqlite"), default="journal")
    args = ap.parse_args()
    from mmlab.data.ingest import IngestOptions, ingest
    from mmlab.hpo.runner import create_study, run_study
    from mmlab.hpo.study import parse_study

    tmp = Path(tempfile.mkdtemp(prefix="bench_hpo_"))
    ingest([REAL / "usdm_btcusdt_20240718.gz", REAL / "usdm_btcusdt_20240719.gz"], "binance-usdm", tmp / "store",
           IngestOptions())

    def study(name: str):
        return parse_study({
            "study": {"name": name, "seed": 1, "split": "day", "pruner": "none", "n_startup_trials": 4},
            "base": {"data": {"root": str(tmp / "store"), "venue": "binance-usdm", "symbols": ["BTCUSDT"]},
                     "sim": {"maker_fee": -0.00005, "taker_fee": 0.0007}, "strategy": {"skew_ticks": 1.0}},
            "search": {"strategy.half_spread_ticks": {"low": 0.5, "high": 5.0}, "strategy.grid_num": {"low": 1, "high": 6}},
            "objective": {"metrics": ["pnl_net"], "directions": ["maximize"]},
        })

    def url(name: str) -> str:
        return f"journal:{tmp / (name + '.log')}" if args.storage == "journal" else f"sqlite:///{tmp / (name + '.db')}"

    # Warm-up: loads the compiled loop from numba's cache and the events into this process.
    run_study(study("warm"), 1, storage=url("warm"), out=tmp / "warm", export=False)
    rates = {}
    for jobs in (1, 2):
        name = f"jobs{jobs}"
        t = time.perf_counter()
        run_study(study(name), args.trials, storage=url(name), jobs=jobs, out=tmp / name, export=False)
        wall = time.perf_counter() - t
        st = create_study(study(name), url(name))
        done = [tr for tr in st.trials if tr.state.name == "COMPLETE"]
        rates[jobs] = len(done) / wall * 60.0
        print(f"{jobs} worker(s): {len(done)} trials in {wall:.2f} s = {rates[jobs]:.1f} trials/min")
        if jobs == 1:
            sim = sum(tr.user_attrs["result"]["sim_s"] for tr in done)
            obj = sum(tr.user_attrs["result"]["trial_s"] for tr in done)
            dur = sum(tr.duration.total_seconds() for tr in done)
            print(f"  per trial: simulation (run_backtest, baseline) {sim / len(done) * 1e3:.1f} ms, objective "
                  f"{obj / len(done) * 1e3:.1f} ms, whole trial incl. {args.storage} storage {dur / len(done) * 1e3:.1f} ms")
            print(f"  overhead beyond the simulation: objective {100 * (obj - sim) / sim:.1f} %, "
                  f"whole trial {100 * (dur - sim) / sim:.1f} % (goal < 5 %)")
    print(f"scaling 2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (2 cores shared with other work)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
