"""Interval dataset from the calibration logs (``mmlab calib aggregate``) and its markdown summary (``calib summary``).

Per symbol and interval of ``interval_sec`` from ``--from``:

- targets: ``net_bps`` (mean over fills of ``markout_bps_1s - fee / notional * 1e4``), ``slippage_bps`` (mean
  ``slip_bps``), ``fill_rate`` (fills / orders sent), ``taker_share`` (taker qty / qty);
- features: ``latency_p95_ms`` (p95 of ``tick_total_ms`` of the tick records, else of the fills' report latency),
  ``cache_hit_ratio``, ``cache_age_avg_ms``, ``deadline_miss_rate`` (missed ticks / ticks), ``stale_rate``;
- counts: ``n_fills``, ``n_tick_records``, ``n_ticks`` (ticks the records stand for), ``n_orders_sent``,
  ``max_ws_gap_ms``.

Sanity filters, applied in this order, each dropped interval counted once under the first that fails:
``deadline_miss`` (rate > ``max_deadline_miss_rate``), ``few_ticks`` (< ``min_ticks`` tick records),
``ws_gap`` (a feed gap > ``max_ws_gap_ms``), ``non_finite`` (a NaN/inf target or feature, e.g. no fills).

Output: ``<out>/calib_<from>_<to>.json`` (``meta``, ``filters``, ``intervals``) and the same rows as parquet.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from mmlab.calib.loggers import FILLS_PREFIX, TICKS_PREFIX, read_jsonl
from mmlab.errors import ConfigError, DataError

TARGETS = ("net_bps", "slippage_bps", "fill_rate", "taker_share")
FEATURES = ("latency_p95_ms", "cache_hit_ratio", "cache_age_avg_ms", "deadline_miss_rate", "stale_rate")


@dataclass(frozen=True)
class AggregateFilters:
    max_deadline_miss_rate: float = 0.05
    min_ticks: int = 10
    max_ws_gap_ms: float = 1000.0


def _parse_ts(s: str, name: str) -> datetime:
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{name} {s!r} is not an ISO-8601 time (e.g. 2024-07-18T00:00:00)") from exc
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _load(feeds: Path, prefix: str, t0: datetime, t1: datetime) -> tuple[list[dict], int]:
    rows, bad = [], 0
    day = t0.date()
    while day <= (t1 - timedelta(microseconds=1)).date():
        p = feeds / f"{prefix}_{day.strftime('%Y%m%d')}.jsonl"
        if p.exists():
            r, b = read_jsonl(p)
            rows.extend(r)
            bad += b
        day += timedelta(days=1)
    return rows, bad


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def aggregate(feeds: str | os.PathLike, from_ts: str, to_ts: str, *, interval_sec: int = 300, symbols=None,
              out_dir: str | os.PathLike | None = None, filters: AggregateFilters = AggregateFilters()) -> dict:
    """Build the interval dataset; returns ``{"path", "meta", "filters", "intervals"}`` (and writes it if ``out_dir``)."""
    import polars as pl

    if interval_sec <= 0:
        raise ConfigError(f"--interval-sec must be > 0, got {interval_sec!r}")
    t0, t1 = _parse_ts(from_ts, "--from"), _parse_ts(to_ts, "--to")
    if t1 <= t0:
        raise ConfigError(f"--to {to_ts!r} must be after --from {from_ts!r}")
    feeds = Path(feeds)
    if not feeds.is_dir():
        raise DataError(f"feeds directory {feeds} does not exist (write logs with mmlab calib write-logs RUN_DIR --out {feeds})")
    lo, hi = int(t0.timestamp() * 1e9), int(t1.timestamp() * 1e9)
    step = int(interval_sec) * 1_000_000_000
    fills, bad_f = _load(feeds, FILLS_PREFIX, t0, t1)
    ticks, bad_t = _load(feeds, TICKS_PREFIX, t0, t1)
    want = set(symbols) if symbols else None
    buckets: dict[tuple[str, int], dict] = {}

    def bucket(r):
        ts = r.get("ts")
        if not isinstance(ts, int) or ts < lo or ts >= hi or (want and r.get("symbol") not in want):
            return None
        key = (r["symbol"], (ts - lo) // step)
        return buckets.setdefault(key, {"fills": [], "ticks": []})

    for r in fills:
        b = bucket(r)
        if b is not None:
            b["fills"].append(r)
    for r in ticks:
        b = bucket(r)
        if b is not None:
            b["ticks"].append(r)

    rows = []
    for (sym, k), b in sorted(buckets.items()):
        f, t = b["fills"], b["ticks"]
        qty = np.array([x["qty"] for x in f], dtype=float)
        notional = np.array([x["price"] * x["qty"] for x in f], dtype=float)
        fee_bps = np.array([(x.get("fee") or 0.0) for x in f], dtype=float) / np.where(notional > 0, notional, np.nan) * 1e4
        mk = np.array([x["markout_bps_1s"] if _finite(x.get("markout_bps_1s")) else np.nan for x in f], dtype=float)
        slip = np.array([x["slip_bps"] if _finite(x.get("slip_bps")) else np.nan for x in f], dtype=float)
        taker = np.array([x.get("liquidity") == "taker" for x in f], dtype=bool)
        n_ticks = int(sum(x.get("n_ticks", 1) for x in t))
        n_sent = int(sum(x.get("n_orders_sent", 0) for x in t))
        n_miss = int(sum(x.get("n_deadline_miss", int(bool(x.get("deadline_miss")))) for x in t))
        tt = np.array([x["tick_total_ms"] for x in t if _finite(x.get("tick_total_ms"))], dtype=float)
        if not len(tt):
            tt = np.array([x["latency_ms"] for x in f if _finite(x.get("latency_ms"))], dtype=float)
        ages = np.array([x["cache_age_ms"] for x in t if _finite(x.get("cache_age_ms"))], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            row = {
                "symbol": sym,
                "interval_start": datetime.fromtimestamp((lo + k * step) / 1e9, tz=timezone.utc).isoformat(),
                "interval_start_ns": lo + k * step,
                "net_bps": float(np.nanmean(mk - fee_bps)) if len(f) and np.isfinite(mk - fee_bps).any() else float("nan"),
                "slippage_bps": float(np.nanmean(slip)) if len(f) and np.isfinite(slip).any() else float("nan"),
                "fill_rate": len(f) / n_sent if n_sent else float("nan"),
                "taker_share": float(qty[taker].sum() / qty.sum()) if qty.sum() > 0 else float("nan"),
                "latency_p95_ms": float(np.quantile(tt, 0.95)) if len(tt) else float("nan"),
                "cache_hit_ratio": float(np.mean([bool(x.get("cache_hit")) for x in t])) if t else float("nan"),
                "cache_age_avg_ms": float(ages.mean()) if len(ages) else float("nan"),
                "deadline_miss_rate": n_miss / n_ticks if n_ticks else float("nan"),
                "stale_rate": float(np.mean([bool(x.get("used_stale")) for x in t])) if t else float("nan"),
                "n_fills": len(f), "n_tick_records": len(t), "n_ticks": n_ticks, "n_orders_sent": n_sent,
                "max_ws_gap_ms": float(max((x.get("ws_gap_ms") or 0.0) for x in t)) if t else 0.0,
            }
        rows.append(row)

    dropped = {"deadline_miss": 0, "few_ticks": 0, "ws_gap": 0, "non_finite": 0}
    kept = []
    for r in rows:
        if _finite(r["deadline_miss_rate"]) and r["deadline_miss_rate"] > filters.max_deadline_miss_rate:
            dropped["deadline_miss"] += 1
        elif r["n_tick_records"] < filters.min_ticks:
            dropped["few_ticks"] += 1
        elif r["max_ws_gap_ms"] > filters.max_ws_gap_ms:
            dropped["ws_gap"] += 1
        elif not all(_finite(r[c]) for c in TARGETS + FEATURES):
            dropped["non_finite"] += 1
        else:
            kept.append(r)
    fsum = {"intervals_in": len(rows), "intervals_kept": len(kept), "dropped": dropped,
            "skipped_lines": {"fills": bad_f, "pipeline_ticks": bad_t}, "settings": asdict(filters)}
    meta = {"from": t0.isoformat(), "to": t1.isoformat(), "interval_sec": int(interval_sec),
            "symbols": sorted(want) if want else sorted({r["symbol"] for r in rows}), "feeds": str(feeds),
            "records": {"fills": len(fills), "pipeline_ticks": len(ticks)}, "targets": list(TARGETS),
            "features": list(FEATURES)}
    res = {"meta": meta, "filters": fsum, "intervals": kept, "path": None}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        name = f"calib_{t0.strftime('%Y%m%d_%H%M%S')}_{t1.strftime('%Y%m%d_%H%M%S')}"
        p = out / f"{name}.json"
        # Dropped intervals are kept in the file (with the filter that dropped them) for the summary's missing-data view.
        res_file = dict(res)
        res_file["all_intervals"] = [{k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in r.items()}
                                     for r in rows]
        res_file["intervals"] = [{k: v for k, v in r.items()} for r in kept]
        res_file.pop("path")
        p.write_text(json.dumps(res_file, indent=2))
        if kept:
            pl.DataFrame(kept).write_parquet(out / f"{name}.parquet")
        res["path"] = str(p)
    return res


def _dist(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if not len(x):
        return {"n": 0}
    q = np.quantile(x, [0.05, 0.5, 0.95])
    return {"n": len(x), "mean": x.mean(), "std": x.std(), "p05": q[0], "p50": q[1], "p95": q[2], "min": x.min(), "max": x.max()}


def summary_markdown(dataset: str | os.PathLike | None = None, *, datasets_dir: str | os.PathLike = "data/calib/datasets",
                     out: str | os.PathLike | None = None) -> Path:
    """Write the markdown summary of a dataset (default: the newest ``calib_*.json`` in ``datasets_dir``)."""
    if dataset is None:
        cands = sorted(Path(datasets_dir).glob("calib_*.json"), key=lambda p: p.stat().st_mtime)
        if not cands:
            raise DataError(f"no calib_*.json in {datasets_dir}; run mmlab calib aggregate first")
        dataset = cands[-1]
    p = Path(dataset)
    if not p.exists():
        raise DataError(f"dataset {p} does not exist (written by mmlab calib aggregate)")
    d = json.loads(p.read_text())
    kept = d.get("intervals", [])
    allr = d.get("all_intervals", kept)
    f = d["filters"]
    lines = [f"# Calibration dataset {p.stem}", "",
             f"Window {d['meta']['from']} -> {d['meta']['to']}, interval {d['meta']['interval_sec']} s, "
             f"symbols {', '.join(d['meta']['symbols']) or '-'}.", "",
             f"Records: {d['meta']['records']['fills']} fills, {d['meta']['records']['pipeline_ticks']} tick records "
             f"(skipped lines: {f['skipped_lines']}).", "",
             "## Sanity filters", "", f"Intervals in: {f['intervals_in']}, kept: {f['intervals_kept']}.", "",
             "| filter | dropped |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in f["dropped"].items()]
    lines += ["", "## Distributions (kept intervals)", "", "| column | n | mean | std | p05 | p50 | p95 | min | max |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in list(TARGETS) + list(FEATURES):
        s = _dist(np.array([r.get(c) if r.get(c) is not None else np.nan for r in kept], dtype=float))
        if s["n"] == 0:
            lines.append(f"| {c} | 0 | | | | | | | |")
        else:
            lines.append(f"| {c} | {s['n']} | " + " | ".join(f"{s[k]:.4g}" for k in ("mean", "std", "p05", "p50", "p95", "min", "max")) + " |")
    lines += ["", "## Missing data (all intervals)", "", "| column | missing | of |", "|---|---|---|"]
    for c in list(TARGETS) + list(FEATURES):
        miss = sum(1 for r in allr if r.get(c) is None or (isinstance(r.get(c), float) and not math.isfinite(r[c])))
        lines.append(f"| {c} | {miss} | {len(allr)} |")
    lines += ["", "## Intervals by symbol", "", "| symbol | all | kept |", "|---|---|---|"]
    for sym in sorted({r["symbol"] for r in allr}):
        lines.append(f"| {sym} | {sum(1 for r in allr if r['symbol'] == sym)} | {sum(1 for r in kept if r['symbol'] == sym)} |")
    lines.append("")
    dest = Path(out) if out is not None else Path("reports") / f"calib_summary_{p.stem}.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines), encoding="utf-8")
    return dest
