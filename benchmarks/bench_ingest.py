"""Ingest speed of a Binance USD-M capture: mmlab vs hftbacktest 2.4.4's converter, measured in one run.

Baseline: ``hftbacktest.data.utils.binancefutures.convert(path)`` (gzip + json per line into its event array,
then its latency and event-order corrections; no file written). mmlab is timed twice:

- ``parse``: raw file -> normalized store columns in memory (the work the baseline does), and
- ``ingest``: the whole ``mmlab.data.ingest.ingest`` into a fresh store root (parse + common rules + parquet
  partitions + ``_meta.json``).

Each is the best of ``--repeat`` runs (default 3), after one untimed warm-up run of each (numba loads its
cached machine code once per process). Run from the project root::

    .venv/bin/python benchmarks/bench_ingest.py [--file PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT / ".." / "shared" / "data" / "real" / "binance_usdm" / "usdm_btcusdt_20240808.gz"


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    path = args.file.resolve()
    if not path.exists():
        print(f"{path} is absent: the benchmark needs ../shared/data/real beside the project root", file=sys.stderr)
        return 2

    from hftbacktest.data.utils import binancefutures

    from mmlab.data.ingest import IngestOptions, ingest, parse

    def run_hbt():
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
            return binancefutures.convert(str(path), buffer_size=5_000_000)

    def run_parse():
        return parse([path], "binance-usdm", IngestOptions())

    tmp = Path(tempfile.mkdtemp(prefix="bench_ingest_"))

    def run_ingest():
        out = tmp / "store"
        shutil.rmtree(out, ignore_errors=True)
        return ingest([path], "binance-usdm", out, IngestOptions())

    try:
        run_hbt(), run_parse(), run_ingest()  # warm-up
        # Interleave the candidates so that machine noise hits each alike.
        t_hbt = t_parse = t_ingest = float("inf")
        for _ in range(args.repeat):
            t, hbt_rows = _best(run_hbt, 1)
            t_hbt = min(t_hbt, t)
            t, streams = _best(run_parse, 1)
            t_parse = min(t_parse, t)
            t, results = _best(run_ingest, 1)
            t_ingest = min(t_ingest, t)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    s = streams[0]
    n_mm = len(s.columns["ts_exch"])
    m = s.extra["messages"]
    print(f"file: {path.name}  ({path.stat().st_size / 1e6:.2f} MB gzip)")
    n_bbo = int((s.columns["kind"] == 5).sum())
    print(f"mmlab rows: {n_mm:,} written = {n_mm - n_bbo:,} depth/snapshot/trade + {n_bbo:,} BBO "
          f"(from {m['depth']:,} depth diffs, {m['trade']:,} trades, {m['book_ticker']:,} bookTicker, "
          f"{m['snapshot']} snapshot); {s.rows_quarantined:,} rows quarantined pre-sync")
    print(f"hftbacktest rows: {len(hbt_rows):,} (depth + trades + snapshot; bookTicker off by default)")
    print(f"{'candidate':<44}{'best s':>9}{'rows/s':>14}{'speed-up':>10}")
    print(f"{'hftbacktest 2.4.4 binancefutures.convert':<44}{t_hbt:>9.3f}{len(hbt_rows) / t_hbt:>14,.0f}{1.0:>9.2f}x")
    print(f"{'mmlab parse (raw -> columns)':<44}{t_parse:>9.3f}{n_mm / t_parse:>14,.0f}{t_hbt / t_parse:>9.2f}x")
    print(f"{'mmlab ingest (raw -> parquet store + meta)':<44}{t_ingest:>9.3f}{results[0].rows_written / t_ingest:>14,.0f}"
          f"{t_hbt / t_ingest:>9.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
