"""What the store holds: ``mmlab data ls`` (:func:`list_store`) and ``mmlab data scan-gaps`` (:func:`scan_gaps`).

:func:`list_store` reads only ``_meta.json`` files and file sizes. :func:`scan_gaps` reads the ``ts_local``
column, one day partition at a time, through a lazy polars query.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from mmlab.data import store
from mmlab.errors import DataError

__all__ = ["list_store", "scan_gaps"]

_NS = 1_000_000_000


def _iso_ns(ts_ns: int | None) -> str | None:
    """ns since epoch -> ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (None passes through)."""
    if ts_ns is None:
        return None
    ts_ns = int(ts_ns)
    t = dt.datetime.fromtimestamp(ts_ns // _NS, tz=dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{(ts_ns % _NS) // 1_000_000:03d}Z"


def _day_start_ns(day: str) -> int:
    d = dt.date.fromisoformat(day)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp()) * _NS


def _pairs(root, venue: str | None, symbol: str | None) -> list[tuple[str, str]]:
    pairs = store.list_symbols(root)
    if venue:
        store.check_venue(venue)
        pairs = [p for p in pairs if p[0] == venue]
    if symbol:
        pairs = [p for p in pairs if p[1] == symbol.upper()]
    return pairs


def list_store(root: str | os.PathLike) -> list[dict]:
    """One row per (venue, symbol) of the store under ``root``, from ``_meta.json`` and file sizes (no data read).

    Returns
    -------
    list of dict with venue, symbol, days (list of ``YYYY-MM-DD``), rows, rows_by_kind ({"DEPTH": n, ...}),
    start/end (ISO-8601 UTC of the first/last ``ts_local``), size_mb (parquet part files, MB = 1e6 bytes).

    >>> list_store("data")  # doctest: +SKIP
    [{'venue': 'binance-usdm', 'symbol': 'BTCUSDT', 'days': ['2024-07-18', '2024-07-19'], 'rows': 517890, ...}]
    """
    out = []
    for venue, symbol in store.list_symbols(root):
        meta = store.read_meta(root, venue, symbol)
        meta_days = meta.get("days") or {}
        disk_days = store.list_days(root, venue, symbol)
        days = sorted(set(disk_days) | set(meta_days))
        rows = 0
        by_kind: dict[str, int] = {}
        t0 = t1 = None
        for day in days:
            d = meta_days.get(day) or {}
            rows += int(d.get("rows", 0))
            for k, v in (d.get("rows_by_kind") or {}).items():
                by_kind[k] = by_kind.get(k, 0) + int(v)
            if d.get("ts_local_min") is not None:
                t0 = d["ts_local_min"] if t0 is None else min(t0, d["ts_local_min"])
            if d.get("ts_local_max") is not None:
                t1 = d["ts_local_max"] if t1 is None else max(t1, d["ts_local_max"])
        size = sum(f.stat().st_size for day in disk_days for f in store.day_files(root, venue, symbol, day))
        out.append(
            {
                "venue": venue,
                "symbol": symbol,
                "days": days,
                "rows": rows,
                "rows_by_kind": dict(sorted(by_kind.items())),
                "start": _iso_ns(t0),
                "end": _iso_ns(t1),
                "size_mb": round(size / 1e6, 3),
            }
        )
    return out


def scan_gaps(
    root: str | os.PathLike,
    venue: str | None = None,
    symbol: str | None = None,
    silence_s: float = 60.0,
) -> list[dict]:
    """Missing days and silences of the streams under ``root``.

    Rows: {venue, symbol, kind, start, end, duration_s}. ``kind`` is ``"missing_day"`` for each day without a
    partition between a stream's first and last day (start/end: that UTC day), or ``"silence"`` for two
    consecutive rows whose ``ts_local`` differ by more than ``silence_s`` (start/end: the two rows' times; also
    across day partitions).

    >>> scan_gaps("data", silence_s=300)  # doctest: +SKIP
    [{'venue': 'binance-spot', 'symbol': 'NEXOUSDT', 'kind': 'silence', 'start': '2024-07-23T16:02:11.402Z', ...}]
    """
    import polars as pl

    if not silence_s > 0:
        raise DataError(f"--silence-s must be > 0, got {silence_s!r}")
    pairs = _pairs(root, venue, symbol)
    if not pairs and (venue or symbol):
        what = "/".join(x for x in (venue, symbol.upper() if symbol else None) if x)
        raise DataError(f"no data for {what} under {Path(root)}; check `mmlab data ls {root}`")
    thr_ns = int(round(silence_s * _NS))
    out: list[dict] = []
    for v, s in pairs:
        days = store.list_days(root, v, s)
        if not days:
            continue
        have = set(days)
        d = dt.date.fromisoformat(days[0])
        last = dt.date.fromisoformat(days[-1])
        while d <= last:
            if d.isoformat() not in have:
                t0 = _day_start_ns(d.isoformat())
                out.append(_row(v, s, "missing_day", t0, t0 + store.NS_PER_DAY))
            d += dt.timedelta(days=1)
        prev_last: int | None = None
        for day in days:
            files = [os.fspath(f) for f in store.day_files(root, v, s, day)]
            if not files:
                continue
            ts = pl.scan_parquet(files).select(pl.col("ts_local"))
            found = (
                ts.with_columns(pl.col("ts_local").shift(1).alias("prev"))
                .filter((pl.col("ts_local") - pl.col("prev")) > thr_ns)
                .select("prev", "ts_local")
                .collect()
            )
            ends = ts.select(pl.col("ts_local").first().alias("first"), pl.col("ts_local").last().alias("last")).collect()
            first, last_ts = ends["first"][0], ends["last"][0]
            if first is None:
                continue
            if prev_last is not None and first - prev_last > thr_ns:
                out.append(_row(v, s, "silence", prev_last, first))
            for a, b in zip(found["prev"].to_list(), found["ts_local"].to_list()):
                out.append(_row(v, s, "silence", a, b))
            prev_last = last_ts
    return out


def _row(venue: str, symbol: str, kind: str, t0_ns: int, t1_ns: int) -> dict:
    return {
        "venue": venue,
        "symbol": symbol,
        "kind": kind,
        "start": _iso_ns(t0_ns),
        "end": _iso_ns(t1_ns),
        "duration_s": round((int(t1_ns) - int(t0_ns)) / _NS, 3),
    }
