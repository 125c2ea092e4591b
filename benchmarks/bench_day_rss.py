"""Peak memory of a backtest over a full synthetic day, replayed window by window, against the 4 GB budget.

A synthetic store of ``--hours`` (default 24) is generated in its own process with the depth message rate
multiplied by ``--density-scale`` (default 2.9: about 5 M rows an hour, 120 M a day, near the raw BTCUSDT
capture's density; the default synthetic market has about 1.9 M rows an hour). Then a fresh process runs
``run_backtest`` on it from the store (the engine's windowed replay, ``--window-min`` minutes a window) with the
grid (5 a side every 100 ms) and prints its peak RSS (``resource.getrusage`` ru_maxrss of that process) and
RSS before the run (imports), twice: with a cold event cache (the store's ``_events_cache`` removed, so the
run decodes the parquet parts and writes the cache) and warm (the cache files are memory-mapped); split into anonymous and file-backed (mapped event cache) peaks. ``--root`` reuses a generated store.
Each run also prints where its wall time goes (:class:`StageTimer`): replay windows from the store, the loop,
the rest of ``simulate``, result frames, labels, summary, decision records and ``write_run``, and the ratio of
the time outside the loop to the time inside it (goal <= 1).

    python benchmarks/bench_day_rss.py [--hours 24] [--density-scale 2.9] [--window-min 60] [--root DIR]

With ``--hours`` < 24 it also prints a 24 h extrapolation, labelled as such (peak RSS of a windowed replay
should not grow with the span, except for the result frames, which grow with the number of fills and ticks).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

BUDGET_BYTES = 4 * 1024**3
MB = 1024**2


def _peak_rss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # kilobytes on Linux


class _RssSampler:
    """Samples ``/proc/self/status`` (Linux) every ``period_s``: peak anonymous RSS (heap, numpy arrays) and peak
    file-backed RSS (memory-mapped files such as the store's event cache, which the kernel can reclaim)."""

    def __init__(self, period_s: float = 0.02) -> None:
        import threading

        self.peak = {"RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._period = period_s
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in self.peak:
                        self.peak[k] = max(self.peak[k], int(v.split()[0]) * 1024)
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._sample()

    def __enter__(self):
        self._sample()
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self._sample()


class StageTimer:
    """Wall time of each step of ``run_backtest`` (+ ``write_run``), measured by wrapping the engine's steps in
    this process: ``load`` (the bridge's replay windows), ``loop`` (the compiled event loop, from the summary),
    ``simulate_other`` (binding, pending rows, output collection), ``frames`` (result frames without labels),
    ``labels`` (fill and order labels), ``summary``, ``decisions`` (decision records and stage latencies),
    ``write`` (the run directory's files)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self._undo: list = []

    def _wrap(self, mod, name: str, key: str) -> None:
        fn = getattr(mod, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[key] = self.t.get(key, 0.0) + time.perf_counter() - t

        setattr(mod, name, timed)
        self._undo.append((mod, name, fn))

    def __enter__(self):
        import mmlab.labels as L
        from mmlab.data import bridge
        from mmlab.sim import engine as E

        self._wrap(bridge, "load_replay_window", "load")
        self._wrap(E, "simulate", "simulate")
        self._wrap(E, "_build_frames", "frames_all")
        self._wrap(E, "_order_label_frame", "order_labels")
        self._wrap(L, "fill_labels", "fill_labels")
        self._wrap(E, "_summary", "summary")
        if hasattr(E, "decision_outputs"):
            self._wrap(E, "decision_outputs", "decisions")
        self._wrap(E, "write_run", "write")
        return self

    def __exit__(self, *exc) -> None:
        for mod, name, fn in reversed(self._undo):
            setattr(mod, name, fn)

    def breakdown(self, loop_s: float, jit_s: float = 0.0) -> dict[str, float]:
        """Seconds per step; ``outside_loop_s`` sums them all but the loop and the one-time kernel load (``jit``)."""
        t = self.t
        labels = t.get("order_labels", 0.0) + t.get("fill_labels", 0.0)
        out = {"load_s": t.get("load", 0.0), "loop_s": loop_s, "jit_s": jit_s,
               "simulate_other_s": t.get("simulate", 0.0) - loop_s - jit_s - t.get("load", 0.0),
               "frames_s": t.get("frames_all", 0.0) - labels, "labels_s": labels, "summary_s": t.get("summary", 0.0),
               "decisions_s": t.get("decisions", 0.0), "write_s": t.get("write", 0.0)}
        out["outside_loop_s"] = sum(v for k, v in out.items() if k not in ("loop_s", "jit_s"))
        return out


def format_breakdown(b: dict[str, float]) -> str:
    """One line: each step's seconds and the ratio of time outside the loop to time inside it."""
    parts = ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in b.items() if k not in ("outside_loop_s",))
    return (f"{parts}; outside the loop (jit excluded) {b['outside_loop_s']:.2f} s = "
            f"{b['outside_loop_s'] / b['loop_s']:.2f}x the loop (goal <= 1x)")


def child_synth(root: str, hours: float, density_scale: float) -> dict:
    from mmlab.data.synth import DEFAULT_PARAMS, synth

    params = replace(DEFAULT_PARAMS, depth_msg_rate_per_s=DEFAULT_PARAMS.depth_msg_rate_per_s * density_scale)
    t = time.perf_counter()
    r = synth(root, hours=hours, seed=1, params=params)
    return {"rows": int(r["rows"]), "rows_by_kind": r["rows_by_kind"], "wall_s": time.perf_counter() - t,
            "peak_rss": _peak_rss_bytes()}


def child_backtest(root: str, window_min: float) -> dict:
    from mmlab.config import load_config
    from mmlab.sim.engine import run_backtest

    cfg = load_config({
        "data": {"root": root, "venue": "binance-usdm", "symbols": ["SYNTHUSDT"]},
        "strategy": {"grid_num": 5, "interval_ms": 100, "half_spread_ticks": 2, "skew_ticks": 1.0, "order_qty": 0.001,
                     "max_position": 0.01},
        "sim": {"entry_latency_ms": 10, "response_latency_ms": 10, "maker_fee": -0.00005, "taker_fee": 0.0007},
    })
    from mmlab.sim import engine as E

    rss0 = _peak_rss_bytes()
    t = time.perf_counter()
    with _RssSampler() as rs, StageTimer() as st:
        res = run_backtest(cfg, window_ns=int(window_min * 60e9))
        wall = time.perf_counter() - t
        with tempfile.TemporaryDirectory(prefix="bench_day_run_") as d:
            E.write_run(res, d)
    s = res.summary
    return {"events": s["events"], "bbo_skipped": s["events_bbo_skipped"], "n_fills": s["n_fills"],
            "n_decisions": s["n_decisions"], "mids_rows": res.mids.height, "loop_s": s["loop_s"], "wall_s": wall,
            "rss_before": rss0, "peak_rss": _peak_rss_bytes(), "peak_anon": rs.peak["RssAnon"],
            "peak_file": rs.peak["RssFile"], "breakdown": st.breakdown(s["loop_s"], s["jit_s"])}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--density-scale", type=float, default=2.9)
    ap.add_argument("--window-min", type=float, default=60.0, help="replay window, minutes")
    ap.add_argument("--root", type=Path, default=None, help="reuse (or generate into) this store")
    ap.add_argument("--child", choices=["synth", "backtest"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child == "synth":
        print(json.dumps(child_synth(str(a.root), a.hours, a.density_scale)))
        return
    if a.child == "backtest":
        print(json.dumps(child_backtest(str(a.root), a.window_min)))
        return

    tmp = None
    root = a.root
    if root is None:
        tmp = tempfile.mkdtemp(prefix="bench_day_rss_")
        root = Path(tmp)
    try:
        if not (root / "binance-usdm" / "SYNTHUSDT" / "_meta.json").exists():
            g = _child("--child", "synth", "--root", str(root), "--hours", str(a.hours),
                       "--density-scale", str(a.density_scale))
            print(f"generated {a.hours:g} h synthetic SYNTHUSDT, density scale {a.density_scale:g}: {g['rows']:,} rows "
                  f"({g['rows_by_kind']}) in {g['wall_s']:.1f} s, generator peak RSS {g['peak_rss'] / MB:.0f} MB")
        else:
            print(f"reusing the store at {root}")
        cache = root / "binance-usdm" / "SYNTHUSDT" / "_events_cache"
        for state in ("cold", "warm"):
            if state == "cold":
                shutil.rmtree(cache, ignore_errors=True)  # the first run decodes the parquet and writes the cache
            r = _child("--child", "backtest", "--root", str(root), "--window-min", str(a.window_min))
            print(f"[{state} event cache] ", end="")
            print(f"backtest, grid 5/side every 100 ms, {a.window_min:g}-minute windows: {r['events']:,} events replayed "
                  f"(+{r['bbo_skipped']:,} BBO rows skipped), {r['n_decisions']:,} decisions, {r['n_fills']:,} fills, "
                  f"{r['mids_rows']:,} mid rows; loop {r['loop_s']:.1f} s, run_backtest {r['wall_s']:.1f} s "
                  f"({r['events'] / r['wall_s'] / 1e6:.2f} M events/s end to end)")
            print(f"  breakdown: {format_breakdown(r['breakdown'])}")
            print(f"peak RSS {r['peak_rss'] / MB:,.0f} MB (before the run {r['rss_before'] / MB:,.0f} MB) = "
                  f"{r['peak_rss'] / BUDGET_BYTES:.3f} of the 4 GB budget")
            print(f"  of which (sampled every 20 ms from /proc/self/status): peak anonymous RSS {r['peak_anon'] / MB:,.0f} MB "
                  f"= {r['peak_anon'] / BUDGET_BYTES:.3f} of the budget; peak file-backed RSS {r['peak_file'] / MB:,.0f} MB "
                  f"(memory-mapped event cache files, reclaimable)")
        if a.hours < 24:
            k = 24.0 / a.hours
            print(f"EXTRAPOLATION to 24 h (x{k:g}, not measured): {r['events'] * k / 1e6:,.0f} M events, "
                  f"run_backtest about {r['wall_s'] * k / 60:.1f} min; the windowed replay holds two windows at a "
                  f"time, so peak RSS stays near {r['peak_rss'] / MB:,.0f} MB plus the result frames "
                  f"(which grow with fills, ticks and mid rows)")
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
