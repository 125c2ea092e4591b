"""Days x symbols as independent backtests, run in parallel processes or on a Dask cluster, merged into one run.

A *part* is one (symbol, UTC day of local time) of the configured data: each part is a complete backtest of its
own (flat position and fresh state at the start of the day, position marked at the exchange mid at its end), so
parts run in any order on any worker and the merged result does not depend on how many ran at once.

>>> from mmlab.config import load_config
>>> cfg = load_config("experiments/grid_btcusdt.toml")  # doctest: +SKIP
>>> res = run_parts(cfg, jobs=2, out_dir="experiments/runs/grid_by_day")  # doctest: +SKIP
>>> res.summary["parts"][0]["symbol"], res.summary["pnl_net"]  # doctest: +SKIP

Run directory written by :func:`run_parts` (``write_merged``):

- ``parts/<SYMBOL>/<YYYY-MM-DD>/``: each part's own run directory (``mmlab.sim.engine.write_run``);
- ``fills``, ``orders``, ``state``, ``labels`` ``.parquet``: the parts' frames concatenated in plan order (days,
  then symbols in config order) with ``symbol`` and ``day`` columns; in ``state`` the ``pnl`` column stays the
  part's own and ``equity`` is recomputed over the whole run (initial cash + every symbol's pnl carried from
  its earlier days);
- ``summary.json``: the keys of a single run computed over the merged frames (sums of counts and money,
  markouts/slippage/fill rate/queue ETA over all fills and orders, sharpe and drawdown of the merged equity)
  plus ``per_symbol``, ``per_day`` and ``parts`` (one row per part) and a ``definitions`` table;
- ``config.toml`` (the resolved config of the whole run) and ``manifest.json`` (run id, executor, jobs).

Workers receive the config as a plain dict and return result frames (no shared file system needed for the
outputs); the data root must be readable at the same path on every worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
import re
from typing import Any

import numpy as np

from mmlab.errors import ConfigError, DataError, MmlabError

NS_PER_DAY = 86_400 * 1_000_000_000
#: Executors understood by :func:`run_parts`.
EXECUTORS = ("process", "dask")
#: Summary keys summed over parts.
ADDITIVE_KEYS = ("events", "events_bbo_skipped", "loop_s", "jit_s", "n_decisions", "n_orders", "n_requests",
                 "n_local_rejects", "n_fills", "n_maker_fills", "n_taker_fills", "volume_qty", "fees", "pnl_net")
#: Columns every merged frame gets in front of its own.
PART_COLUMNS = ("day",)

MERGED_DEFINITIONS = {
    "n_parts": "independent backtests merged into this run, one per (symbol, UTC day of local time)",
    "pnl_net": "sum over parts of each part's pnl_net (each part's final position marked at its final exchange mid)",
    "position_final": "sum over symbols of the final position of each symbol's last part",
    "events_per_s": "events / sum of the parts' loop_s (simulation speed of one worker)",
    "wall_s": "wall time of run_parts from planning to the merged frames, s (machine dependent)",
    "sharpe": "annualized from the merged equity changes between decision ticks (median tick spacing)",
    "max_drawdown": "largest fall of the merged equity from its running peak",
    "fill_rate": "orders of every part with at least one fill / orders sent",
    "markout_bps_H": "mean over every part's fills (NaN markouts left out)",
    "queue_eta_ms_p50": "median over every part's filled orders",
    "stage_latency_ns": "percentiles of the merged per-tick stage timings, else the largest of the parts' values",
    "per_day": "events, n_fills, volume_qty, fees, pnl_net of each day summed over symbols",
    "parts": "one row per part: symbol, day, local-time window, counts, money, timings and its directory",
}


# ----------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Part:
    """One independent backtest: a symbol over one UTC day of local time (clipped to ``[data] start/end``).

    ``start``/``end`` are the ISO-8601 bounds handed to the part's ``[data]`` section (``None`` = open: the
    first part of a symbol starts at its first row, the last ends after its last row, so no row is lost to
    feed latency across midnight); ``events_est`` is the stored row count of the day without BBO rows.
    """

    index: int
    symbol: str
    day: str
    start: str | None
    end: str | None
    events_est: int = 0

    @property
    def key(self) -> str:
        return f"{self.symbol}/{self.day}"

    def subdir(self) -> str:
        """Directory of the part under the merged run (``parts/<SYMBOL>/<day>``)."""
        return os.path.join("parts", self.symbol, self.day)


def _day_start_ns(day: str) -> int:
    return int(np.datetime64(day, "ns").astype(np.int64))


def _iso_day(day: str) -> str:
    return f"{day}T00:00:00Z"


def plan_parts(cfg) -> list[Part]:
    """The (symbol, day) parts of ``cfg.data`` in run order: days ascending, symbols in config order.

    Days are the store's day partitions of each symbol; consecutive parts of a symbol meet at UTC midnight of
    local time. Parts whose local-time window holds no stored rows are left out.

    Raises
    ------
    DataError
        A symbol has no day partitions in the store, or no part falls inside ``[data] start/end``.
    """
    from mmlab.data import bridge, store

    d = cfg.data
    if getattr(cfg.allocator, "enabled", False) and len(d.symbols) > 1:
        raise ConfigError("[allocator] enabled shares capital across symbols inside one backtest; parts run one "
                          "symbol each: run without --jobs, or set allocator.enabled = false")
    user_lo = bridge.parse_time_ns(d.start)
    user_hi = bridge.parse_time_ns(d.end)
    rows: list[tuple[str, int, Part]] = []
    for si, sym in enumerate(d.symbols):
        meta = bridge.symbol_info(d.root, d.venue, sym, si).meta
        days_meta = meta.get("days") or {}
        days = sorted(set(store.list_days(d.root, d.venue, sym)) | set(days_meta))
        if not days:
            raise DataError(f"no day partitions for {d.venue}/{sym} under {d.root} "
                            "(run `mmlab data ingest` or `mmlab data synth` first, or fix [data] symbols)")
        spans = [(days_meta[x]["ts_local_min"], days_meta[x]["ts_local_max"]) for x in days
                 if isinstance(days_meta.get(x), dict) and "ts_local_min" in days_meta[x]]
        for k, day in enumerate(days):
            lo = None if k == 0 else _day_start_ns(day)
            hi = None if k == len(days) - 1 else _day_start_ns(days[k + 1])
            lo_s = None if k == 0 else _iso_day(day)
            hi_s = None if k == len(days) - 1 else _iso_day(days[k + 1])
            if user_lo is not None and (lo is None or user_lo > lo):
                lo, lo_s = user_lo, d.start
            if user_hi is not None and (hi is None or user_hi < hi):
                hi, hi_s = user_hi, d.end
            if lo is not None and hi is not None and lo >= hi:
                continue
            if spans and not any((hi is None or a < hi) and (lo is None or b >= lo) for a, b in spans):
                continue
            info = days_meta.get(day) or {}
            est = int(info.get("rows", 0)) - int((info.get("rows_by_kind") or {}).get("BBO", 0))
            rows.append((day, si, Part(0, sym, day, lo_s, hi_s, max(est, 0))))
    if not rows:
        raise DataError(f"no stored data of {', '.join(d.symbols)} ({d.venue}, {d.root}) falls in "
                        f"[{d.start}, {d.end}) (check [data] start/end, or `mmlab data ls {d.root}`)")
    rows.sort(key=lambda r: (r[0], r[1]))
    return [Part(i, p.symbol, p.day, p.start, p.end, p.events_est) for i, (_, _, p) in enumerate(rows)]


def part_config_dict(cfg, part: Part) -> dict:
    """The config of one part as a plain dict: ``cfg`` with one symbol and the part's local-time window."""
    d = cfg.to_dict()
    d["data"] = dict(d["data"], symbols=[part.symbol], start=part.start, end=part.end)
    d["output"] = dict(d["output"], dir=None)
    return d


# ----------------------------------------------------------------------------------------------- workers


#: Least seconds between two progress reports of one part from a worker process.
PROGRESS_EVERY_S = 0.25


class _QueueReporter:
    """``run_backtest``'s progress callback in a worker: (part index, events done, total) into a queue, at most
    every ``PROGRESS_EVERY_S`` (the last report of a part always goes)."""

    def __init__(self, queue, index: int) -> None:
        self.queue = queue
        self.index = index
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            try:
                self.queue.put_nowait((self.index, int(done), total))
            except Exception:  # noqa: BLE001, S110 - a lost progress report must never fail the part
                pass


def run_part(cfg_dict: dict, part: Part, progress=None):
    """Run one part (in a worker) and return its ``BacktestResult`` without the mid series.

    ``progress``: a callback ``(events_done, events_total)`` (in-process runs), or a queue (a
    ``multiprocessing.Manager().Queue()`` proxy) receiving ``(part.index, events_done, events_total)`` tuples.
    """
    from mmlab.config import load_config
    from mmlab.sim.engine import run_backtest

    if progress is not None and not callable(progress):
        progress = _QueueReporter(progress, part.index)
    try:
        res = run_backtest(load_config(cfg_dict), progress=progress)
    except MmlabError as exc:
        # Name the part: the same error type, so callers catch it as they would for a single run.
        raise type(exc)(f"part {part.key} (local time {part.start or 'first row'} to {part.end or 'last row'}): {exc}") from exc
    res.mids = None
    return res


class ProgressSink:
    """What :func:`run_parts` reports while it runs; subclass and override what you need."""

    def planned(self, parts: list[Part]) -> None:
        pass

    def started(self, part: Part) -> None:
        pass

    def advanced(self, part: Part, events_done: int, events_total: int | None) -> None:
        """Part ``part`` has processed ``events_done`` events so far (of ``events_total`` when known)."""

    def finished(self, part: Part, summary: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _fmt_rate(events: float, seconds: float) -> str:
    if seconds <= 0:
        return ""
    r = events / seconds
    return f"{r / 1e6:.2f} M ev/s" if r >= 1e6 else f"{r / 1e3:.1f} k ev/s"


class RichProgress(ProgressSink):
    """A rich progress display on stderr: one bar for the whole run (events, events/s) and one per running part.

    The bars move as the parts' event loops advance (``advanced``: in-process parts directly, worker processes
    through a queue; Dask parts only when they finish). A finished part is printed as one line with its events
    and events/s (events / its wall time).
    """

    def __init__(self, title: str = "backtest", console=None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console or Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed:,.0f}/{task.total:,.0f} events"),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=self.console,
                                 transient=False)
        self.title = title
        self.tasks: dict[int, Any] = {}
        self.est: dict[int, int] = {}
        self.done_events = 0
        self.running: dict[int, int] = {}  # part index -> events done so far
        self.t0 = time.perf_counter()
        self.part_t0: dict[int, float] = {}
        self.total = None

    def planned(self, parts: list[Part]) -> None:
        self.progress.start()
        self.t0 = time.perf_counter()
        self.est = {p.index: max(p.events_est, 1) for p in parts}
        self.total = self.progress.add_task(f"{self.title} ({len(parts)} parts)", total=sum(self.est.values()), rate="")

    def started(self, part: Part) -> None:
        self.tasks[part.index] = self.progress.add_task(f"  {part.key}", total=self.est.get(part.index, 1), rate="running")
        self.part_t0[part.index] = time.perf_counter()

    def advanced(self, part: Part, events_done: int, events_total: int | None) -> None:
        tid = self.tasks.get(part.index)
        if tid is None:
            return
        if events_total:
            self.est[part.index] = max(int(events_total), 1)
        elif events_done > self.est.get(part.index, 1):
            self.est[part.index] = events_done  # the estimate from the store was short
        self.running[part.index] = events_done
        now = time.perf_counter()
        self.progress.update(tid, total=self.est[part.index], completed=events_done,
                             rate=_fmt_rate(events_done, now - self.part_t0.get(part.index, self.t0)))
        done = self.done_events + sum(self.running.values())
        self.progress.update(self.total, total=sum(self.est.values()), completed=done,
                             rate=_fmt_rate(done, now - self.t0))

    def finished(self, part: Part, summary: dict) -> None:
        ev = int(summary.get("events") or 0)
        wall = float(summary.get("wall_s") or 0.0)
        tid = self.tasks.pop(part.index, None)
        if tid is not None:
            self.progress.remove_task(tid)
        self.running.pop(part.index, None)
        self.done_events += ev
        self.est[part.index] = ev
        elapsed = time.perf_counter() - self.t0
        self.progress.update(self.total, total=sum(self.est.values()), completed=self.done_events,
                             rate=_fmt_rate(self.done_events, elapsed))
        self.progress.console.print(f"  {part.key}: {ev:,} events, {summary.get('n_fills', 0)} fills, "
                                    f"pnl {summary.get('pnl_net')!s:.10}, {_fmt_rate(ev, wall)}")

    def close(self) -> None:
        self.progress.stop()


# ----------------------------------------------------------------------------------------------- executors


def _run_local(cfg_dicts: list[dict], parts: list[Part], jobs: int, sink: ProgressSink) -> list:
    results: list = [None] * len(parts)
    if jobs <= 1:
        for p, c in zip(parts, cfg_dicts):
            sink.started(p)
            results[p.index] = run_part(c, p, progress=lambda done, total, p=p: sink.advanced(p, done, total))
            sink.finished(p, results[p.index].summary)
        return results
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # Spawned workers: forking a process whose polars/numba threads already run can deadlock.
    ctx = mp.get_context("spawn")
    # Workers report progress through a manager queue only when someone listens (a sink overriding advanced).
    listen = type(sink).advanced is not ProgressSink.advanced
    manager = ctx.Manager() if listen else None
    try:
        queue = manager.Queue() if manager is not None else None
        by_index = {p.index: p for p in parts}

        def poll() -> None:
            while queue is not None:
                try:
                    i, done, total = queue.get_nowait()
                except Exception:  # noqa: BLE001 - queue.Empty (or a closed manager): nothing more now
                    return
                sink.advanced(by_index[i], done, total)

        with ProcessPoolExecutor(max_workers=min(jobs, len(parts)), mp_context=ctx) as ex:
            _drain(lambda p, c: ex.submit(run_part, c, p, queue), wait, FIRST_COMPLETED, cfg_dicts, parts, jobs,
                   sink, results, lambda fut: fut.result(), poll=poll if queue is not None else None)
    finally:
        if manager is not None:
            manager.shutdown()
    return results


def _drain(submit, wait, first_completed, cfg_dicts, parts, jobs, sink, results, get, poll=None) -> None:
    """Keep at most ``jobs`` parts in flight, collect results by part index; ``poll()`` (progress reports of
    running parts) is called at least every ``PROGRESS_EVERY_S`` while parts run."""
    todo = list(zip(parts, cfg_dicts))
    running: dict = {}
    try:
        while todo or running:
            while todo and len(running) < jobs:
                p, c = todo.pop(0)
                sink.started(p)
                running[submit(p, c)] = p
            if poll is None:
                done, _ = wait(list(running), return_when=first_completed)
            else:
                done, _ = wait(list(running), timeout=PROGRESS_EVERY_S, return_when=first_completed)
                poll()
            for fut in sorted(done, key=lambda f: running[f].index):
                p = running.pop(fut)
                results[p.index] = get(fut)
                sink.finished(p, results[p.index].summary)
    except BaseException:
        for fut in running:
            fut.cancel()
        raise


def _run_dask(cfg_dicts: list[dict], parts: list[Part], jobs: int | None, sink: ProgressSink, scheduler, client) -> list:
    try:
        from dask.distributed import Client, wait
    except ImportError as exc:  # the optional extra
        raise ConfigError("executor 'dask' needs dask[distributed]: pip install 'mmlab[dist]'") from exc
    own = client is None
    if own:
        if not scheduler:
            raise ConfigError("executor 'dask' needs a scheduler address (--scheduler tcp://host:8786) or a client")
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise MmlabError(f"cannot reach the Dask scheduler at {scheduler}: {exc} "
                             "(start one with `dask scheduler` and `dask worker ADDRESS`, or check the address)") from exc
    try:
        if not jobs:
            jobs = max(sum(client.nthreads().values()), 1)
        results: list = [None] * len(parts)
        _drain(lambda p, c: client.submit(run_part, c, p, pure=False),
               lambda futs, return_when: wait(futs, return_when=return_when), "FIRST_COMPLETED",
               cfg_dicts, parts, jobs, sink, results, lambda fut: fut.result())
        return results
    finally:
        if own:
            client.close()


# ------------------------------------------------------------------------------------------------- merging


@dataclass
class MergedRun:
    """Result of :func:`run_parts`: merged frames and summary, each part's result, and the run directory."""

    fills: Any
    orders: Any
    state: Any
    labels: Any
    summary: dict
    parts: list[Part]
    part_results: list = field(repr=False, default_factory=list)
    meta: dict = field(default_factory=dict)
    config: Any = None
    run_dir: Path | None = None
    extra: dict = field(default_factory=dict)  # name -> merged frame (decisions, strategy outputs)


def _with_day(df, day: str):
    import polars as pl

    return df.with_columns(pl.lit(day, dtype=pl.Utf8).alias("day")).select(["day", *df.columns])


def _concat(frames: list):
    import polars as pl

    frames = [f for f in frames if f is not None]
    if not frames:
        return pl.DataFrame()
    return pl.concat(frames, how="diagonal_relaxed")


def merged_equity(state, initial_cash: float, offsets: np.ndarray) -> np.ndarray:
    """Run equity at each merged state row: initial cash + sum over symbols of (the symbol's pnl carried from its
    earlier parts + its current part's pnl), as of the row's ``ts_local`` (rows of one time share the total).

    ``offsets[i]`` is the carried pnl of row ``i``'s symbol (sum of the pnl_net of its earlier parts).
    """
    n = state.height
    if n == 0:
        return np.zeros(0)
    ts = state["ts_local"].to_numpy()
    sym = state["symbol"].to_numpy()
    cum = np.nan_to_num(state["pnl"].to_numpy().astype(np.float64)) + offsets
    order = np.argsort(ts, kind="stable")
    ts_o, sym_o, cum_o = ts[order], sym[order], cum[order]
    delta = np.empty(n)
    _, sym_codes = np.unique(sym_o, return_inverse=True)
    for c in np.unique(sym_codes):
        idx = np.flatnonzero(sym_codes == c)
        v = cum_o[idx]
        delta[idx] = np.diff(v, prepend=0.0)
    tot = np.cumsum(delta)
    # Every row of one timestamp holds the total after all of that timestamp's rows.
    last_of_ts = np.r_[ts_o[1:] != ts_o[:-1], True]
    grp_end = np.flatnonzero(last_of_ts)
    grp = np.searchsorted(grp_end, np.arange(n))
    tot = tot[grp_end][grp]
    out = np.empty(n)
    out[order] = initial_cash + tot
    return out


def _nanmean(x: np.ndarray):
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


def merge_parts(cfg, parts: list[Part], results: list, wall_s: float | None = None) -> MergedRun:
    """Concatenate the parts' frames (with ``day``), recompute run equity and build the merged summary."""
    import polars as pl

    frames = {}
    for name in ("fills", "orders", "state", "labels"):
        frames[name] = _concat([_with_day(getattr(r, name), p.day) for p, r in zip(parts, results)])
    # Optional frames: the per-tick decisions and strategy outputs (``BacktestResult.extra``), where written.
    optional = {}
    dec = [_with_day(r.decisions, p.day) for p, r in zip(parts, results) if getattr(r, "decisions", None) is not None]
    if dec:
        optional["decisions"] = _concat(dec)
    names = sorted({n for r in results for n in (getattr(r, "extra", None) or {})})
    for n in names:
        optional[n] = _concat([_with_day(r.extra[n], p.day) for p, r in zip(parts, results) if n in (r.extra or {})])
    state = frames["state"]
    # Carried pnl of each part: sum of the pnl_net of the same symbol's earlier parts.
    carried: dict[str, float] = {}
    part_offset = []
    for p, r in zip(parts, results):
        part_offset.append(carried.get(p.symbol, 0.0))
        carried[p.symbol] = carried.get(p.symbol, 0.0) + float(np.nan_to_num(r.summary.get("pnl_net") or 0.0))
    if state.height:
        offsets = np.concatenate([np.full(r.state.height, off) for r, off in zip(results, part_offset)])
        state = state.with_columns(pl.Series("equity", merged_equity(state, cfg.sim.initial_cash, offsets)))
        frames["state"] = state
    summary = merged_summary(cfg, parts, results, {**frames, **optional}, wall_s)
    data_ids = {}
    for r in results:
        data_ids.update(r.meta.get("data") or {})
    symbols_meta = {}
    for r in results:
        for s in r.meta.get("symbols") or []:
            symbols_meta.setdefault(s["symbol"], s)
    meta = {
        "config_id": cfg.config_id,
        "data": data_ids,
        "symbols": [symbols_meta[s] for s in cfg.data.symbols if s in symbols_meta],
        "seed": cfg.sim.seed,
        "events": summary["events"],
        "wall_s": summary["wall_s"],
    }
    return MergedRun(fills=frames["fills"], orders=frames["orders"], state=frames["state"], labels=frames["labels"],
                     summary=summary, parts=parts, part_results=results, meta=meta, config=cfg, extra=optional)


_STAGE_COL_RE = re.compile(r"^(stage_[a-z0-9_]+?|tick_total)(_ns)?$")


def _stage_latency(frames: list, results) -> dict | None:
    out = {}
    for df in frames:
        if df is None or not df.height:
            continue
        cols = [(m.group(1), c) for c in df.columns if (m := _STAGE_COL_RE.match(c)) and df[c].dtype.is_numeric()]
        for stage, col in cols:
            v = df[col].to_numpy().astype(np.float64)
            v = v[np.isfinite(v) & (v > 0)]
            if len(v):
                out[stage] = {**{f"p{q}": float(np.percentile(v, q)) for q in (50, 95, 99)}, "n": int(len(v))}
        if out:
            return out
    for r in results:
        for stage, vals in (r.summary.get("stage_latency_ns") or {}).items():
            if isinstance(vals, dict):
                cur = out.setdefault(stage, {})
                for k, v in vals.items():
                    if isinstance(v, (int, float)):
                        cur[k] = cur.get(k, 0) + v if k == "n" else max(cur.get(k, v), v)
    return out or None


def merged_summary(cfg, parts: list[Part], results: list, frames: dict, wall_s: float | None) -> dict:
    """Summary of the merged run (see :data:`MERGED_DEFINITIONS`)."""
    from mmlab.sim.engine import SUMMARY_FIELDS

    fills, state, labels = frames["fills"], frames["state"], frames["labels"]
    s: dict[str, Any] = {}
    for k in ADDITIVE_KEYS:
        vals = [r.summary.get(k) for r in results]
        vals = [v for v in vals if isinstance(v, (int, float))]
        s[k] = type(vals[0])(sum(vals)) if vals else None
    s["wall_s"] = wall_s
    s["events_per_s"] = float(s["events"] / s["loop_s"]) if s.get("loop_s") else None
    s["n_parts"] = len(parts)
    last: dict[str, dict] = {}
    per_symbol: dict[str, dict] = {}
    for p, r in zip(parts, results):
        ps = (r.summary.get("per_symbol") or {}).get(p.symbol) or {}
        last[p.symbol] = ps
        agg = per_symbol.setdefault(p.symbol, {"pnl_net": 0.0, "fees": 0.0, "n_fills": 0, "volume_qty": 0.0,
                                               "events": 0, "n_parts": 0})
        for k in ("pnl_net", "fees", "n_fills", "volume_qty"):
            agg[k] += ps.get(k) or 0
        agg["events"] += int(r.summary.get("events") or 0)
        agg["n_parts"] += 1
        agg["contract"] = ps.get("contract", "linear")
    for sym, ps in last.items():
        per_symbol[sym]["position_final"] = float(ps.get("position_final") or 0.0)
    s["position_final"] = float(sum(v["position_final"] for v in per_symbol.values()))
    # Sharpe and drawdown of the merged equity (one value per distinct decision time).
    if state.height > 2:
        ts = state["ts_local"].to_numpy()
        order = np.argsort(ts, kind="stable")
        ts_o = ts[order]
        eq_o = state["equity"].to_numpy()[order]
        first = np.r_[True, ts_o[1:] != ts_o[:-1]]
        eq, tu = eq_o[first], ts_o[first]
        d = np.diff(eq)
        sd = float(d.std()) if len(d) else 0.0
        step = float(np.median(np.diff(tu))) if len(tu) > 1 else 0.0
        s["sharpe"] = float(d.mean() / sd * np.sqrt(365 * 86_400e9 / step)) if sd > 0 and step > 0 else 0.0
        s["max_drawdown"] = float((np.maximum.accumulate(eq) - eq).max())
    else:
        s["sharpe"], s["max_drawdown"] = 0.0, 0.0
    n_sent = labels.height
    s["fill_rate"] = float((labels["filled_qty"].to_numpy() > 0).sum() / n_sent) if n_sent else 0.0
    if fills.height:
        maker = fills["maker"].to_numpy()
        qty = fills["qty"].to_numpy()
        vol = float(qty.sum())
        s["taker_share"] = float(qty[~maker].sum() / vol) if vol > 0 else 0.0
    else:
        s["taker_share"] = 0.0
    # The markout columns of the fills are the configured horizons (labels.horizons_ms).
    for col in [c for c in fills.columns if c.startswith("markout_bps_")]:
        s[col] = _nanmean(fills[col].to_numpy()) if fills.height else None
    for suffix in ("100ms", "1s", "5s"):
        s.setdefault(f"markout_bps_{suffix}", None)
    s["slippage_bps_mean"] = _nanmean(fills["slippage_bps"].to_numpy()) if fills.height else None
    if n_sent and "queue_eta_ms" in labels.columns:
        eta = labels.filter(~labels["censored"])["queue_eta_ms"].to_numpy().astype(np.float64)
        eta = eta[np.isfinite(eta)]
        s["queue_eta_ms_p50"] = float(np.median(eta)) if len(eta) else None
    else:
        s["queue_eta_ms_p50"] = None
    lat = _stage_latency([state, frames.get("decisions")], results)
    if lat:
        s["stage_latency_ns"] = lat
    s["per_symbol"] = per_symbol
    per_day: dict[str, dict] = {}
    rows = []
    for p, r in zip(parts, results):
        rs = r.summary
        ps = (rs.get("per_symbol") or {}).get(p.symbol) or {}
        day = per_day.setdefault(p.day, {"events": 0, "n_fills": 0, "volume_qty": 0.0, "fees": 0.0, "pnl_net": 0.0})
        for k in day:
            day[k] += rs.get(k) or 0
        rows.append({
            "part": p.index, "symbol": p.symbol, "day": p.day, "start": p.start, "end": p.end,
            "events": rs.get("events"), "n_decisions": rs.get("n_decisions"), "n_orders": rs.get("n_orders"),
            "n_fills": rs.get("n_fills"), "volume_qty": rs.get("volume_qty"), "fees": rs.get("fees"),
            "pnl_net": rs.get("pnl_net"), "position_final": ps.get("position_final"), "sharpe": rs.get("sharpe"),
            "wall_s": rs.get("wall_s"), "loop_s": rs.get("loop_s"), "events_per_s": rs.get("events_per_s"),
            "dir": p.subdir(),
        })
    s["per_day"] = per_day
    s["parts"] = rows
    defs = dict(SUMMARY_FIELDS)
    defs.update(MERGED_DEFINITIONS)
    s["definitions"] = defs
    return s


#: Keys of merged summary/part rows measuring the machine (left out of determinism comparisons).
MERGED_WALL_KEYS = ("wall_s", "loop_s", "jit_s", "load_s", "events_per_s", "stage_latency_ns")


def strip_wall_times(summary: dict) -> dict:
    """``summary`` without machine-dependent timings (top level and part rows), for determinism checks."""
    out = {k: v for k, v in summary.items() if k not in MERGED_WALL_KEYS}
    if isinstance(out.get("parts"), list):
        out["parts"] = [{k: v for k, v in r.items() if k not in MERGED_WALL_KEYS} for r in out["parts"]]
    return out


def merged_run_id(run: MergedRun) -> str:
    """Deterministic id: config id + hash of the data provenance and the part plan."""
    plan = [(p.symbol, p.day, p.start, p.end) for p in run.parts]
    data_id = hashlib.sha256(json.dumps([run.meta["data"], plan], sort_keys=True).encode()).hexdigest()[:8]
    return f"{run.meta['config_id']}-{data_id}-parts"


def write_merged(run: MergedRun, out_dir: str | os.PathLike | None = None, *, executor: str = "process",
                 jobs: int | None = None) -> Path:
    """Write the merged run directory (parts under ``parts/``) and return its path."""
    from mmlab.sim.engine import _git_commit, _versions, write_run

    rid = merged_run_id(run)
    if out_dir is None:
        out_dir = run.config.output.dir or os.path.join("experiments", "runs", rid)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for p, r in zip(run.parts, run.part_results):
        write_run(r, out / p.subdir())
    (out / "config.toml").write_text(run.config.to_toml())
    manifest = {
        "run_id": rid, "config_id": run.meta["config_id"], "data_meta_sha256": run.meta["data"],
        "symbols": run.meta["symbols"], "seed": run.meta["seed"], "events": run.meta["events"],
        "versions": _versions(), "git_commit": _git_commit(), "wall_s": run.meta["wall_s"],
        "executor": executor, "jobs": jobs, "parts": [p.subdir() for p in run.parts],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    (out / "summary.json").write_text(json.dumps(run.summary, indent=2, sort_keys=True))
    for name in ("fills", "orders", "state", "labels"):
        getattr(run, name).write_parquet(out / f"{name}.parquet", statistics=True)
    for name, frame in run.extra.items():
        frame.write_parquet(out / f"{name}.parquet", statistics=True)
    run.run_dir = out
    return out


# ---------------------------------------------------------------------------------------------- public API


def run_parts(cfg, *, jobs: int | None = 1, executor: str = "process", scheduler: str | None = None, client=None,
              out_dir: str | os.PathLike | None = None, progress: ProgressSink | None = None,
              write: bool = True) -> MergedRun:
    """Run every (symbol, day) of ``cfg.data`` as an independent backtest and merge them into one run.

    Parameters
    ----------
    cfg : BacktestConfig
    jobs : parts in flight at once: worker processes for ``executor="process"`` (1 = sequentially in this
        process), tasks submitted at once for ``"dask"`` (None = the cluster's thread count).
    executor : ``"process"`` (local processes) or ``"dask"`` (a ``dask.distributed`` cluster).
    scheduler : Dask scheduler address (``tcp://host:8786``) when ``client`` is not given.
    client : an existing ``dask.distributed.Client`` (e.g. of a ``LocalCluster``); not closed here.
    out_dir : merged run directory; default ``output.dir`` of the config, else ``experiments/runs/<run id>``.
    progress : a :class:`ProgressSink` (e.g. :class:`RichProgress`); None = silent.
    write : write the run directory (False: return the merged frames only).

    Returns
    -------
    MergedRun whose files do not depend on ``jobs`` or ``executor`` (only wall-time fields do).

    Raises
    ------
    ConfigError
        Unknown executor, ``jobs < 1``, Dask without a scheduler, or the allocator enabled over several symbols.
    DataError
        No stored data for the configured symbols and range.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs!r}")
    t0 = time.perf_counter()
    parts = plan_parts(cfg)
    dicts = [part_config_dict(cfg, p) for p in parts]
    if executor == "dask":
        # Workers may run elsewhere: hand them the data root as an absolute path (same path on every machine).
        for d in dicts:
            d["data"]["root"] = os.path.abspath(d["data"]["root"])
    sink = progress or ProgressSink()
    sink.planned(parts)
    try:
        if executor == "dask":
            results = _run_dask(dicts, parts, jobs, sink, scheduler, client)
        else:
            results = _run_local(dicts, parts, jobs or 1, sink)
    finally:
        sink.close()
    merged = merge_parts(cfg, parts, results, wall_s=None)
    merged.summary["wall_s"] = merged.meta["wall_s"] = time.perf_counter() - t0
    if write:
        write_merged(merged, out_dir, executor=executor, jobs=jobs)
    return merged
