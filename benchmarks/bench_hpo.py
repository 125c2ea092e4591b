"""Study throughput on the shared BTCUSDT capture (two UTC days, one segment each).

    python benchmarks/bench_hpo.py [--trials 200] [--batch 8] [--storage journal|sqlite] [--sampler tpe]

Prints, all measured in this run:

* baseline: ``run_backtest(cfg, events=..., symbols=...)`` of each segment (a plain backtest with every frame
  and the decisions frame) for the parameter sets the 1-worker study sampled, and its compiled loop share;
* 1 worker: trials/min; per trial the segments' backtests as a trial runs them (``sim_s``), the sampler's
  suggestions, the objective, the whole trial including storage writes; overheads as % of the baseline;
* worker start-up: a spawned process importing mmlab, loading the events and binding the compiled loop
  (what a second worker pays before its first trial), timed on its own;
* 2 workers: trials/min end to end and after start-up, the scaling ratio, the trials each process ran;
* ``--batch K``: trials/min with K trials per pass (``run_backtest_batch``), ratio to 1 worker.

Asserts nothing: the machine's other load moves the figures (2 cores shared with other work).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / "binance_usdm"


def _study_dict(root: Path, name: str, sampler: str) -> dict:
    return {
        "study": {"name": name, "seed": 1, "split": "day", "pruner": "none", "n_startup_trials": 4,
                  "sampler": sampler},
        "base": {"data": {"root": str(root), "venue": "binance-usdm", "symbols": ["BTCUSDT"]},
                 "sim": {"maker_fee": -0.00005, "taker_fee": 0.0007}, "strategy": {"skew_ticks": 1.0}},
        "search": {"strategy.half_spread_ticks": {"low": 0.5, "high": 5.0}, "strategy.grid_num": {"low": 1, "high": 6}},
        "objective": {"metrics": ["pnl_net"], "directions": ["maximize"]},
    }


def _startup_probe(study: dict, t_spawn: float) -> dict:
    """In a fresh process: time imports, event load and the first backtest (binding the compiled loop)."""
    t0 = time.time()
    from mmlab.hpo.objective import evaluate
    from mmlab.hpo.segments import load_segments
    from mmlab.hpo.study import parse_study

    t1 = time.time()
    sc = parse_study(study)
    cfg = sc.base_config()
    specs, segs = load_segments(cfg, sc.segment_ns)
    t2 = time.time()
    evaluate(cfg, specs, segs[:1])
    t3 = time.time()
    evaluate(cfg, specs, segs[:1])
    t4 = time.time()
    return {"spawn_s": t0 - t_spawn, "import_s": t1 - t0, "load_s": t2 - t1, "first_run_s": t3 - t2,
            "second_run_s": t4 - t3}


def _done(st) -> list:
    return [tr for tr in st.trials if tr.state.name == "COMPLETE"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200, help="trials per measured study (start-up amortizes)")
    ap.add_argument("--batch", type=int, default=8, help="K of the --batch K study")
    ap.add_argument("--storage", choices=("journal", "sqlite"), default="journal")
    ap.add_argument("--sampler", choices=("tpe", "random", "qmc"), default="tpe")
    args = ap.parse_args()
    from mmlab.data.ingest import IngestOptions, ingest
    from mmlab.hpo.runner import create_study, run_study
    from mmlab.hpo.segments import load_segments
    from mmlab.hpo.study import parse_study
    from mmlab.sim.engine import run_backtest

    tmp = Path(tempfile.mkdtemp(prefix="bench_hpo_"))
    ingest([REAL / "usdm_btcusdt_20240718.gz", REAL / "usdm_btcusdt_20240719.gz"], "binance-usdm", tmp / "store",
           IngestOptions())

    def study(name: str):
        return parse_study(_study_dict(tmp / "store", name, args.sampler))

    def url(name: str) -> str:
        return f"journal:{tmp / (name + '.log')}" if args.storage == "journal" else f"sqlite:///{tmp / (name + '.db')}"

    def timed_study(name: str, jobs: int = 1, batch: int = 1) -> tuple[float, list]:
        t = time.perf_counter()
        run_study(study(name), args.trials, storage=url(name), jobs=jobs, out=tmp / name, export=False, batch=batch)
        wall = time.perf_counter() - t
        return wall, _done(create_study(study(name), url(name)))

    print(f"study: {args.trials} trials, 2 segments (UTC days) each, sampler {args.sampler}, {args.storage} storage")
    # Warm-up: loads the compiled loop from numba's cache and the events into this process.
    run_study(study("warm"), 2, storage=url("warm"), out=tmp / "warm", export=False)

    # 1 worker.
    wall1, done = timed_study("jobs1")
    n = len(done)
    rate1 = n / wall1 * 60.0
    print(f"1 worker: {n} trials in {wall1:.2f} s = {rate1:.1f} trials/min")

    # Baseline: plain run_backtest of the same parameter sets on the same segments, in this process.
    sc = study("jobs1")
    specs, segs = load_segments(sc.base_config(), sc.segment_ns)
    base_s = loop_s = 0.0
    for tr in done:
        cfg = sc.trial_config(tr.params)
        for seg in segs:
            t = time.perf_counter()
            res = run_backtest(cfg, events=seg.events, symbols=specs)
            base_s += time.perf_counter() - t
            loop_s += res.summary["loop_s"]
    res_attrs = [tr.user_attrs["result"] for tr in done]
    sim = sum(a["sim_s"] for a in res_attrs)
    sug = sum(a.get("suggest_s", 0.0) for a in res_attrs)
    obj = sum(a["trial_s"] for a in res_attrs)
    dur = sum(tr.duration.total_seconds() for tr in done)

    def per(x: float) -> float:
        return x / n * 1e3

    print(f"  baseline run_backtest per trial (2 segments, all frames): {per(base_s):.1f} ms "
          f"(compiled loop {per(loop_s):.1f} ms = {100 * loop_s / base_s:.0f} %)")
    print(f"  per trial: backtests as a trial runs them {per(sim):.1f} ms, sampler {per(sug):.1f} ms, "
          f"objective {per(obj):.1f} ms, whole trial incl. {args.storage} storage {per(dur):.1f} ms, "
          f"wall per trial {wall1 / n * 1e3:.1f} ms")
    print(f"  trial backtests / baseline: {sim / base_s:.2f}x")
    print(f"  overhead beyond the baseline simulation: objective {100 * (obj - base_s) / base_s:+.1f} %, "
          f"whole trial {100 * (dur - base_s) / base_s:+.1f} %, wall {100 * (wall1 - base_s) / base_s:+.1f} % "
          "(goal < 5 %)")
    print(f"  beyond the trial's own backtests: objective {100 * (obj - sim) / sim:+.1f} % "
          f"(of which sampler {100 * sug / sim:.1f} %), whole trial {100 * (dur - sim) / sim:+.1f} %")

    # Worker start-up, on its own (what run_study(jobs=2) pays once for its second process).
    with mp.get_context("spawn").Pool(1) as pool:
        t = time.time()
        su = pool.apply(_startup_probe, (_study_dict(tmp / "store", "probe", args.sampler), t))
    startup = su["spawn_s"] + su["import_s"] + su["load_s"] + su["first_run_s"]
    print(f"worker start-up: {startup:.2f} s (spawn {su['spawn_s']:.2f}, imports {su['import_s']:.2f}, "
          f"event load {su['load_s']:.2f}, first segment run incl. loading the compiled loop "
          f"{su['first_run_s']:.2f} s vs {su['second_run_s']:.2f} s warm) = {startup / (wall1 / n):.0f} trials "
          "of 1 worker")

    # 2 workers.
    wall2, done2 = timed_study("jobs2", jobs=2)
    rate2 = len(done2) / wall2 * 60.0
    by_pid = sorted(Counter(tr.user_attrs["result"]["pid"] for tr in done2).values(), reverse=True)
    steady = len(done2) / max(wall2 - startup, 1e-9) * 60.0
    print(f"2 workers: {len(done2)} trials in {wall2:.2f} s = {rate2:.1f} trials/min end to end "
          f"({steady:.1f} after the {startup:.1f} s start-up); trials per process {by_pid}")
    print(f"  scaling 2 workers / 1 worker: {rate2 / rate1:.2f}x end to end, {steady / rate1:.2f}x after start-up "
          "(2 cores shared with other work)")

    # --batch K.
    wallb, doneb = timed_study(f"batch{args.batch}", batch=args.batch)
    rateb = len(doneb) / wallb * 60.0
    print(f"--batch {args.batch}: {len(doneb)} trials in {wallb:.2f} s = {rateb:.1f} trials/min = "
          f"{rateb / rate1:.2f}x 1 worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
