"""Benchmark of ``mmlab data synth``: rows/s and peak RSS, chunked (the default) against one chunk per run.

Each configuration runs in its own process so that its peak RSS (``resource.getrusage``) is its own. The kernels
are compiled (or loaded from numba's cache) by a short warm-up run before the clock starts.

    python benchmarks/bench_synth.py --hours 1            # 1 hour, extrapolated to 24 h against a 4 GB budget
    python benchmarks/bench_synth.py --hours 1 --density-scale 3.2   # about the raw capture's 150 M rows/day
    python benchmarks/bench_synth.py --hours 24           # really generate a day (chunked run only)
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


def _peak_rss_bytes() -> int:
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def child(hours: float, chunk_s: float, density_scale: float, out: str) -> dict:
    from mmlab.data.synth import DEFAULT_PARAMS, synth

    params = replace(DEFAULT_PARAMS, depth_msg_rate_per_s=DEFAULT_PARAMS.depth_msg_rate_per_s * density_scale)
    warm = Path(out) / "warm"
    synth(warm, hours=0.001, seed=1, params=params)
    shutil.rmtree(warm)
    rss0 = _peak_rss_bytes()
    t0 = time.perf_counter()
    result = synth(Path(out) / "store", hours=hours, seed=7, params=params, chunk_s=chunk_s)
    wall = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in (Path(out) / "store").rglob("*.parquet"))
    return {"rows": result["rows"], "wall_s": wall, "rows_per_s": result["rows"] / wall, "peak_rss": _peak_rss_bytes(),
            "rss_before": rss0, "parquet_bytes": size}


def run_child(hours: float, chunk_s: float, density_scale: float) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench_synth_")
    try:
        cmd = [sys.executable, __file__, "--child", "--hours", str(hours), "--chunk-s", str(chunk_s),
               "--density-scale", str(density_scale), "--out", tmp]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--chunk-s", type=float, default=600.0, help="chunk of the chunked run, seconds")
    ap.add_argument("--density-scale", type=float, default=1.0, help="multiply the depth message rate")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.hours, a.chunk_s, a.density_scale, a.out)))
        return

    mb = 1024**2
    print(f"synthetic market, {a.hours:g} h, density scale {a.density_scale:g}")
    chunked = run_child(a.hours, a.chunk_s, a.density_scale)
    rows = [("chunked", a.chunk_s, chunked)]
    if a.hours <= 6:
        one = run_child(a.hours, a.hours * 3600.0, a.density_scale)
        rows.append(("one chunk (baseline)", a.hours * 3600.0, one))
    print(f"{'run':22s} {'chunk_s':>8s} {'rows':>12s} {'wall_s':>8s} {'rows/s':>12s} {'peak RSS MB':>12s} {'RSS before MB':>14s}")
    for name, cs, r in rows:
        print(f"{name:22s} {cs:8.0f} {r['rows']:12,d} {r['wall_s']:8.2f} {r['rows_per_s']:12,.0f} {r['peak_rss'] / mb:12.0f} {r['rss_before'] / mb:14.0f}")
    if len(rows) == 2:
        one = rows[1][2]
        print(f"chunked / one chunk: rows/s x{chunked['rows_per_s'] / one['rows_per_s']:.2f}, "
              f"peak RSS x{chunked['peak_rss'] / one['peak_rss']:.2f}")
    scale = 24.0 / a.hours
    rows_day = chunked["rows"] * scale
    # Chunked generation holds one chunk at a time: peak RSS does not grow with the span.
    print(f"24 h extrapolation: {rows_day / 1e6:,.0f} M rows, {chunked['wall_s'] * scale / 60:.1f} min, "
          f"{chunked['parquet_bytes'] * scale / 1e9:.2f} GB parquet, peak RSS {chunked['peak_rss'] / mb:.0f} MB "
          f"= {chunked['peak_rss'] / BUDGET_BYTES:.3f} of the 4 GB budget")


if __name__ == "__main__":
    main()
