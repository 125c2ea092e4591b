"""Study throughput on the shared BTCUSDT capture (two UTC days, one segment each).

    python benchmarks/bench_hpo.py [--trials 200] [--batch 8] [--storage journal|sqlite] [--sampler tpe]
    python benchmarks/bench_hpo.py --trials 120 --one-worker           # only the two 1-worker studies
    python benchmarks/bench_hpo.py --profile 60 [--ask-ahead false]   # where a trial's time goes (cProfile)

Prints, all measured in this run:

* baseline: ``run_backtest(cfg, events=..., symbols=...)`` of each segment (a plain backtest with every frame
  and the decisions frame) for the parameter sets the 1-worker study sampled, and its compiled loop share;
* the simulation itself: the same parameter sets' segment runs exactly as a trial makes them
  (``mmlab.hpo.objective.run_segment``), timed alone in this process. The 1-worker studies run in chunks of
  ``--chunk`` trials (``run_study``'s optimization loop resumed on the same study object), each chunk
  followed by the runs alone of its trials, so the other load of the machine moves both about equally (it
  moves each by tens of % within minutes);
* 1 worker with the default ``study.ask_ahead = true`` (the sampler and the storage writes work in a background
  thread while the trial's compiled loop runs) and with ``ask_ahead = false`` (ask, run, tell one by one: the
  trials of Optuna's ``study.optimize``): trials/min, and the **overhead per trial**: study wall time per trial
  beyond the simulation itself, in % of it: everything a trial costs besides its backtests (sampler, config,
  combining segments, result attributes, storage writes, thread hand-overs, the sim's slowdown from sharing
  the GIL). The in-trial timings (``sim_s``, sampler, objective, Optuna's trial duration) are printed too;
  with ``ask_ahead`` they overlap (the sampler of trial n+1 runs during trial n, and ``sim_s`` includes time
  the background thread held the GIL), so only the wall-time overhead is comparable between the modes;
* worker start-up: a spawned process importing mmlab, loading the events and binding the compiled loop
  (what a second worker pays before its first trial), timed on its own;
* 2 workers: trials/min end to end and after start-up, the scaling ratio, the trials each process ran;
* ``--batch K``: trials/min with K trials per pass (``run_backtest_batch``), ratio to 1 worker.

``--profile N`` instead runs N trials of a 1-worker study under cProfile (the study's own thread; with
``ask_ahead`` the sampler and the storage writes run in the background thread and are not in it) and prints
the per-trial time of each step: sampler, config, the segment runs, combining, result attributes, tells.

Asserts nothing: the machine's other load moves the figures (2 cores shared with other work).
"""

from __future__ import annotations

import argparse
import math
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


#: Steps of a trial as the --profile table names them: (label, module file suffix, function name).
STEPS = (
    ("study.ask", "optuna/study/study.py", "ask"),
    ("sampler (suggest)", "mmlab/hpo/study.py", "suggest"),
    ("trial config", "mmlab/hpo/study.py", "trial_config"),
    ("segment runs (the simulation)", "mmlab/hpo/objective.py", "run_segment"),
    ("segment results", "mmlab/hpo/objective.py", "segment_result"),
    ("combining segments", "mmlab/hpo/objective.py", "combine_summaries"),
    ("pruner reports", "mmlab/hpo/runner.py", "_report_segment"),
    ("result attribute", "mmlab/hpo/runner.py", "_record_result"),
    ("study.tell", "optuna/study/study.py", "tell"),
    ("trial counts", "mmlab/hpo/runner.py", "_n_trials"),
    ("waiting for the background thread", "mmlab/hpo/runner.py", "wait_for"),
    ("gate closing (a background step ends)", "mmlab/hpo/runner.py", "clear"),
)


def _profile(sc, storage: str, n: int) -> int:
    """Run ``n`` trials (after 20 unprofiled ones) under cProfile and print each step's time per trial."""
    import cProfile
    import pstats

    from mmlab.hpo.runner import _optimize, create_study

    st = create_study(sc, storage)
    _optimize(st, sc, 20, 20)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    _optimize(st, sc, n, 20 + n)
    prof.disable()
    wall = time.perf_counter() - t
    stats = pstats.Stats(prof).stats
    print(f"{n} trials, ask_ahead = {str(sc.ask_ahead).lower()}: {wall / n * 1e3:.2f} ms per trial under cProfile "
          "(the study's own thread; cumulative per step)")
    for label, suffix, name in STEPS:
        ct = sum(v[3] for k, v in stats.items() if k[0].endswith(suffix) and k[2] == name)
        print(f"  {label:36s} {ct / n * 1e3:7.2f} ms")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200, help="trials per measured study (start-up amortizes)")
    ap.add_argument("--batch", type=int, default=8, help="K of the --batch K study")
    ap.add_argument("--storage", choices=("journal", "sqlite"), default="journal")
    ap.add_argument("--sampler", choices=("tpe", "random", "qmc"), default="tpe")
    ap.add_argument("--chunk", type=int, default=30, help="trials per chunk of the 1-worker studies")
    ap.add_argument("--one-worker", action="store_true", help="only the two 1-worker studies")
    ap.add_argument("--profile", type=int, default=0, help="only profile this many trials of a 1-worker study")
    ap.add_argument("--ask-ahead", choices=("true", "false"), default="true", help="the --profile study's loop")
    args = ap.parse_args()
    import dataclasses

    from mmlab.data.ingest import IngestOptions, ingest
    from mmlab.hpo.objective import run_segment
    from mmlab.hpo.runner import _optimize, create_study, run_study
    from mmlab.hpo.segments import load_segments
    from mmlab.hpo.study import parse_study
    from mmlab.sim.engine import run_backtest

    tmp = Path(tempfile.mkdtemp(prefix="bench_hpo_"))
    ingest([REAL / "usdm_btcusdt_20240718.gz", REAL / "usdm_btcusdt_20240719.gz"], "binance-usdm", tmp / "store",
           IngestOptions())

    def study(name: str, ask_ahead: bool | None = None):
        sc = parse_study(_study_dict(tmp / "store", name, args.sampler))
        return sc if ask_ahead is None else dataclasses.replace(sc, ask_ahead=ask_ahead)

    def url(name: str) -> str:
        return f"journal:{tmp / (name + '.log')}" if args.storage == "journal" else f"sqlite:///{tmp / (name + '.db')}"

    def timed_study(name: str, jobs: int = 1, batch: int = 1, ask_ahead: bool | None = None) -> tuple[float, list]:
        t = time.perf_counter()
        run_study(study(name, ask_ahead), args.trials, storage=url(name), jobs=jobs, out=tmp / name, export=False,
                  batch=batch)
        wall = time.perf_counter() - t
        return wall, _done(create_study(study(name, ask_ahead), url(name)))

    def alone_s(trials: list) -> float:
        """The trials' segment runs as a trial makes them, timed alone."""
        tot = 0.0
        for tr in trials:
            cfg = sc.trial_config(tr.params)
            for seg in segs:
                t = time.perf_counter()
                run_segment(cfg, specs, seg)
                tot += time.perf_counter() - t
        return tot

    def chunked_study(name: str, ask_ahead: bool) -> tuple[float, list, float]:
        """(study wall, completed trials, their runs alone), chunk by chunk: the study is created once and
        each chunk is ``run_study``'s optimization loop (``runner._optimize``) resumed for ``--chunk`` trials."""
        sc_ = study(name, ask_ahead)
        st = create_study(sc_, url(name))
        wall = alone = 0.0
        seen: set = set()
        for k in range(0, args.trials, args.chunk):
            m = min(args.chunk, args.trials - k)
            t = time.perf_counter()
            _optimize(st, sc_, m, len(st.get_trials(deepcopy=False)) + m)
            wall += time.perf_counter() - t
            new = [tr for tr in _done(st) if tr.number not in seen]
            seen.update(tr.number for tr in new)
            alone += alone_s(new)
        return wall, _done(st), alone

    def report(label: str, wall: float, done: list, alone: float) -> float:
        n = len(done)
        attrs = [tr.user_attrs["result"] for tr in done]
        sim = sum(a["sim_s"] for a in attrs)
        sug = sum(a.get("suggest_s", 0.0) for a in attrs)
        wait = sum(a.get("wait_s", 0.0) for a in attrs)
        obj = sum(a["trial_s"] for a in attrs)
        dur = sum(tr.duration.total_seconds() for tr in done)
        print(f"{label}: {n} trials in {wall:.2f} s = {n / wall * 60:.1f} trials/min; per trial: wall "
              f"{wall / n * 1e3:.1f} ms, the simulation itself (run alone) {alone / n * 1e3:.1f} ms")
        print(f"  overhead per trial beyond the simulation itself: {100 * (wall - alone) / alone:+.1f} % "
              f"({(wall - alone) / n * 1e3:.1f} ms; goal < 5 %)")
        print(f"  in-trial timings per trial: sim_s {sim / n * 1e3:.1f} ms, sampler {sug / n * 1e3:.1f} ms "
              f"(waited for {wait / n * 1e3:.1f} ms), objective {obj / n * 1e3:.1f} ms, Optuna trial duration "
              f"{dur / n * 1e3:.1f} ms")
        return n / wall * 60

    if args.profile:
        return _profile(study("profile", args.ask_ahead == "true"), url("profile"), args.profile)
    print(f"study: {args.trials} trials, 2 segments (UTC days) each, sampler {args.sampler}, {args.storage} storage")
    # Warm-up: loads the compiled loop from numba's cache and the events into this process.
    run_study(study("warm"), 2, storage=url("warm"), out=tmp / "warm", export=False)

    sc = study("jobs1")
    specs, segs = load_segments(sc.base_config(), sc.segment_ns)
    # 1 worker with the sampler working ahead (ask_ahead = true, the default), then one by one.
    wall1, done, alone1 = chunked_study("jobs1", ask_ahead=True)
    n = len(done)
    rate1 = report("1 worker (ask_ahead = true, the default)", wall1, done, alone1)
    wall_s, done_s, alone_s_ = chunked_study("jobs1_serial", ask_ahead=False)
    rate_s = report("1 worker, ask_ahead = false (one by one)", wall_s, done_s, alone_s_)
    print(f"  ask_ahead = true / false: {rate1 / rate_s:.2f}x trials/min")
    if args.one_worker:
        return 0

    # Baseline: plain run_backtest of the same parameter sets on the same segments, in this process.
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

    def per(x: float) -> float:
        return x / n * 1e3

    print(f"baseline run_backtest per trial (2 segments, all frames): {per(base_s):.1f} ms "
          f"(compiled loop {per(loop_s):.1f} ms = {100 * loop_s / base_s:.0f} %); 1-worker study wall per trial "
          f"/ baseline {wall1 / base_s:.2f}x, trial backtests (sim_s) / baseline {sim / base_s:.2f}x")

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
    steady = len(done2) / (wall2 - startup) * 60.0 if wall2 > startup else math.nan  # (nan: start-up took longer)
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
