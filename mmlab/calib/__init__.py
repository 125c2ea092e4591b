"""Calibration data: fill and pipeline-tick JSONL logs, the interval dataset built from them, its summary.

- :mod:`mmlab.calib.loggers` — :class:`FillLogger`, :class:`PipelineTickLogger` (daily files, crash-safe lines),
  used by the live runner and by :func:`write_calibration_logs` for backtest runs;
- :mod:`mmlab.calib.aggregate` — ``mmlab calib aggregate`` (interval dataset with sanity filters) and
  ``mmlab calib summary`` (markdown report).

>>> write_calibration_logs("experiments/runs/grid_btc", "data/calib/feeds")  # doctest: +SKIP
{'fills': 436, 'ticks': 479}
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from mmlab.calib.loggers import FillLogger, PipelineTickLogger, read_jsonl

__all__ = ["FillLogger", "PipelineTickLogger", "read_jsonl", "write_calibration_logs"]


def write_calibration_logs(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, sample_every: int = 10,
                           ttl_ms: float = 100.0, fresh_ms_for_pricing: float = 60.0) -> dict:
    """Derive the fills and (sampled) pipeline-tick logs of a backtest run directory.

    Tick records take the market-data view's age from the decision ticks: ``cache_age_ms`` = time since the top
    of book (best prices and sizes) last changed, ``cache_hit = cache_age_ms <= ttl_ms``, ``used_stale =
    cache_age_ms > fresh_ms_for_pricing``, ``ws_gap_ms`` = the largest such age since the previous record; stage
    latencies and ``tick_total_ms`` come from decisions.parquet where the run timed the tick
    (``pipeline.sample_stage_tracing``), else null; a backtest has no deadline misses. Fill records take the
    spread at the order's send time from the last decision tick at or before it.
    """
    import numpy as np
    import polars as pl

    from mmlab.errors import DataError

    run = Path(run_dir)
    for name in ("fills.parquet", "state.parquet"):
        if not (run / name).exists():
            raise DataError(f"{run / name} does not exist: {run} is not a run directory written by mmlab backtest")
    fills = pl.read_parquet(run / "fills.parquet")
    state = pl.read_parquet(run / "state.parquet").sort(["symbol", "ts_local"], maintain_order=True)
    counts = {"fills": 0, "ticks": 0}

    # Spread (bps of mid) at each tick, for the fills' send times.
    state = state.with_columns(((pl.col("best_ask") - pl.col("best_bid")) / pl.col("mid") * 1e4).alias("_spread_bps"))
    with FillLogger(out_dir) as fl:
        if fills.height:
            with warnings.catch_warnings():
                # Both sides are sorted by time within each symbol; polars cannot verify that with ``by``.
                warnings.simplefilter("ignore", UserWarning)
                f = fills.sort("sent_ts", maintain_order=True).join_asof(
                    state.select(["symbol", pl.col("ts_local").alias("sent_ts"), "_spread_bps"]).sort("sent_ts"),
                    on="sent_ts", by="symbol", strategy="backward").sort(["ts_local", "order_seq"], maintain_order=True)
            has_mk = "markout_bps_1s" in f.columns
            for r in f.iter_rows(named=True):
                fl.log(ts_ns=r["ts_local"], symbol=r["symbol"], side=int(r["side"]), price=r["price"], qty=r["qty"],
                       maker=bool(r["maker"]), queue_pos_est=r["queue_ahead_qty"], quote_price=r["price"],
                       mid_at_quote=r["mid_send"], mid_now=r["mid_fill"], spread_at_quote_bps=r["_spread_bps"],
                       latency_ms=(r["ts_local"] - r["ts_exch"]) / 1e6, slip_bps=r["slippage_bps"], fee=r["fee"],
                       markout_bps_1s=r["markout_bps_1s"] if has_mk else None)
                counts["fills"] += 1

    sent = None
    if (run / "labels.parquet").exists():
        lab = pl.read_parquet(run / "labels.parquet", columns=["ts_decision", "symbol"])
        sent = lab.group_by(["ts_decision", "symbol"]).len().rename({"ts_decision": "ts_local", "len": "_n_sent"})
    timing_cols = []
    if (run / "decisions.parquet").exists():
        dec = pl.read_parquet(run / "decisions.parquet")
        timing_cols = [c for c in dec.columns if c.startswith("stage_") and c.endswith("_ns")]
        if "tick_total_ns" in dec.columns:
            timing_cols.append("tick_total_ns")
        if timing_cols:
            state = state.join(dec.select(["ts_local", "symbol", *timing_cols]), on=["ts_local", "symbol"], how="left")
    if sent is not None:
        state = state.join(sent, on=["ts_local", "symbol"], how="left")
    with PipelineTickLogger(out_dir, sample_every=sample_every) as tl:
        for (sym,), s in state.group_by(["symbol"], maintain_order=True):
            s = s.sort("ts_local", maintain_order=True)
            ts = s["ts_local"].to_numpy()
            top = np.column_stack([s[c].to_numpy() for c in ("best_bid", "best_ask", "bid_qty", "ask_qty")])
            changed = np.r_[True, np.any((top[1:] != top[:-1]) & ~(np.isnan(top[1:]) & np.isnan(top[:-1])), axis=1)]
            last = np.maximum.accumulate(np.where(changed, np.arange(len(ts)), 0))
            age_ms = (ts - ts[last]) / 1e6
            n_sent = s["_n_sent"].fill_null(0).to_numpy() if "_n_sent" in s.columns else np.zeros(len(ts), np.int64)
            tim = {c: s[c].to_numpy() for c in timing_cols}
            for i in range(len(ts)):
                stages = {c[:-3]: float(tim[c][i]) / 1e6 for c in timing_cols
                          if c != "tick_total_ns" and tim[c][i] is not None and not np.isnan(float(tim[c][i]))}
                tt = tim.get("tick_total_ns")
                tt_ms = float(tt[i]) / 1e6 if tt is not None and tt[i] is not None and not np.isnan(float(tt[i])) else None
                if tl.log(ts_ns=int(ts[i]), symbol=sym, tick_total_ms=tt_ms, stage_latencies=stages,
                          stage_p95_ms=max(stages.values()) if stages else None, cache_hit=bool(age_ms[i] <= ttl_ms),
                          cache_age_ms=float(age_ms[i]), used_stale=bool(age_ms[i] > fresh_ms_for_pricing),
                          deadline_miss=False, ws_gap_ms=float(age_ms[i]), n_orders_sent=int(n_sent[i])):
                    counts["ticks"] += 1
    return counts
