"""Store -> kernel event array throughput of :mod:`mmlab.data.bridge`, against a plain polars read.

Writes a synthetic store of ``--rows`` random but valid rows (default 24 M, one symbol, three day partitions) into
a temporary folder with :func:`mmlab.data.store.write_days`, reads every file once so the OS caches them, then
times, best of ``--repeat``:

- baseline: ``pl.read_parquet(files)`` of the same part files (columns decoded, nothing else);
- bridge: :func:`mmlab.data.bridge.load_events` (decode + prices to ticks + one ``event_dtype`` array);
- chunks: :func:`mmlab.data.bridge.iter_event_chunks` (part file by part file);
- replay window: :func:`mmlab.data.bridge.load_replay_window` (BBO-free rows in local and exchange-time order
  from the cached replay index) against what it replaces (``load_events``, a BBO filter, a stable ts_exch sort).

The ratio bridge/baseline is the bridge's overhead over decoding alone. Goal: >= 50 M rows/s once cached.

    python benchmarks/bench_bridge.py [--rows 24000000] [--repeat 3] [--root DIR (keep/reuse the store)]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmlab.data import store
from mmlab.data.bridge import iter_event_chunks, load_events, load_replay_window
from mmlab.types import Kind

VENUE, SYMBOL = "binance-usdm", "BENCHUSDT"
TICK = 0.1


def synth_columns(n: int, seed: int = 7, days: int = 3) -> dict[str, np.ndarray]:
    """n valid event rows over ``days`` UTC days, shaped like a recorded diff-depth feed.

    Rows come in venue messages (1-30 rows sharing ts_exch, ts_local and update_id): depth diffs around a
    random-walk mid of ~60000 (tick 0.1), single-row trades and two-row BBO messages; quantities on a 0.001 lot.
    Compresses like the real Binance captures (about 6-8 bytes a row).
    """
    rng = np.random.default_rng(seed)
    t0 = 1_721_347_200_000_000_000  # 2024-07-19T00:00:00Z
    msg_kind = rng.choice(np.array([Kind.DEPTH, Kind.TRADE, Kind.BBO], np.uint8), n, p=[0.35, 0.25, 0.40])
    msg_rows = np.where(msg_kind == Kind.DEPTH, rng.integers(1, 31, n), np.where(msg_kind == Kind.BBO, 2, 1))
    n_msg = int(np.searchsorted(np.cumsum(msg_rows), n)) + 1
    msg_kind, msg_rows = msg_kind[:n_msg], msg_rows[:n_msg]
    msg_rows[-1] -= int(msg_rows.sum()) - n
    span = days * store.NS_PER_DAY - 1_000_000_000
    msg_exch = t0 + np.sort(rng.integers(0, span // 1_000_000, n_msg)) * 1_000_000  # ms resolution, like E/T
    msg_local = np.maximum.accumulate(msg_exch + rng.integers(1_000_000, 3_000_000, n_msg))
    msg_id = np.arange(n_msg, dtype=np.int64) * 7 + 4_000_000_000
    rep = lambda a: np.repeat(a, msg_rows)  # noqa: E731
    kind = rep(msg_kind)
    start = np.cumsum(msg_rows) - msg_rows
    pos = np.arange(n) - rep(start)  # row index inside its message
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    side[kind == Kind.BBO] = np.where(pos[kind == Kind.BBO] == 0, 1, -1)
    mid_ticks = rep(600_000 + np.cumsum(rng.integers(-1, 2, n_msg)) // 4)
    off = np.where(kind == Kind.DEPTH, rng.integers(1, 400, n), 1)
    price = (mid_ticks + side * off) * TICK
    qty = np.round(rng.exponential(0.3, n) * (rng.random(n) > 0.2), 3)
    qty[kind != Kind.DEPTH] += 0.001
    batch_end = np.zeros(n, bool)
    batch_end[np.cumsum(msg_rows) - 1] = True
    return {
        "ts_exch": rep(msg_exch),
        "ts_local": rep(msg_local),
        "kind": kind,
        "side": side,
        "price": price,
        "qty": qty,
        "update_id": rep(msg_id),
        "batch_end": batch_end,
    }


def make_store(root: Path, n: int) -> None:
    cols = synth_columns(n)
    store.write_days(root, VENUE, SYMBOL, cols)
    meta = store.empty_meta(VENUE, SYMBOL)
    meta.update(tick_size=TICK, lot_size=0.001)
    store.write_meta(root, VENUE, SYMBOL, meta)


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
        del out
    return best, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=24_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--root", type=Path, default=None, help="store folder to create or reuse (kept)")
    args = ap.parse_args(argv)
    import polars as pl

    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.mkdtemp(prefix="mmlab-bench-bridge-")
        root = Path(tmp)
    try:
        if not (store.symbol_dir(root, VENUE, SYMBOL) / store.META_FILE).exists():
            t = time.perf_counter()
            make_store(root, args.rows)
            print(f"wrote synthetic store: {args.rows:,} rows in {time.perf_counter() - t:.1f} s -> {root}")
        files = [os.fspath(f) for d in store.list_days(root, VENUE, SYMBOL) for f in store.day_files(root, VENUE, SYMBOL, d)]
        n = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)
        size = sum(os.path.getsize(f) for f in files)
        for f in files:  # into the OS page cache
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        load_events(root, VENUE, SYMBOL)  # warm-up (imports, thread pools)
        print(f"{len(files)} part files, {n:,} rows, {size / 1e6:.0f} MB on disk (OS-cached), {os.cpu_count()} CPUs, "
              f"polars {pl.__version__}")
        t_pl, _ = best_of(lambda: pl.read_parquet(files), args.repeat)
        t_cold, _ = best_of(lambda: load_events(root, VENUE, SYMBOL, cache=False), args.repeat)
        t_br, _ = best_of(lambda: load_events(root, VENUE, SYMBOL), args.repeat)  # event cache built by the warm-up
        t_ch, _ = best_of(lambda: sum(len(c) for c in iter_event_chunks(root, VENUE, SYMBOL)), args.repeat)
        load_replay_window(root, VENUE, SYMBOL)  # builds the replay index once

        def replay_old():
            # What a backtest did per window before the replay index: filter BBO rows, then sort by ts_exch.
            ev_all, _ = load_events(root, VENUE, SYMBOL)
            local = ev_all[ev_all["kind"] != Kind.BBO]
            return local, local[np.argsort(local["ts_exch"], kind="stable")]

        t_rw, _ = best_of(lambda: load_replay_window(root, VENUE, SYMBOL), args.repeat)
        t_ro, _ = best_of(replay_old, args.repeat)
        ev, _ = load_events(root, VENUE, SYMBOL)
        assert len(ev) == n and ev["price_ticks"].min() > 0
        print(f"{'baseline pl.read_parquet':<32} {t_pl:7.3f} s  {n / t_pl / 1e6:7.1f} M rows/s")
        print(f"{'bridge load_events cache=False':<32} {t_cold:7.3f} s  {n / t_cold / 1e6:7.1f} M rows/s  ({t_pl / t_cold:.2f}x baseline speed)")
        print(f"{'bridge load_events':<32} {t_br:7.3f} s  {n / t_br / 1e6:7.1f} M rows/s  ({t_pl / t_br:.2f}x baseline speed)")
        print(f"{'bridge iter_event_chunks':<32} {t_ch:7.3f} s  {n / t_ch / 1e6:7.1f} M rows/s  ({t_pl / t_ch:.2f}x baseline speed)")
        print(f"{'replay window: load_events + BBO filter + ts_exch sort':<32} {t_ro:7.3f} s  {n / t_ro / 1e6:7.1f} M rows/s")
        print(f"{'replay window: load_replay_window':<32} {t_rw:7.3f} s  {n / t_rw / 1e6:7.1f} M rows/s  "
              f"({t_ro / t_rw:.2f}x the filter + sort)")
        goal = 50.0
        print(f"goal >= {goal:.0f} M rows/s: {'met' if n / t_br / 1e6 >= goal else 'NOT met'} by load_events")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
