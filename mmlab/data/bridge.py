"""The one polars -> numpy bridge: store partitions -> the kernels' structured event array.

Prices become integer ticks (``round(price / tick_size)``), times stay int64 ns. Several symbols are merged by
``ts_local`` (stable, so each stream keeps its message order) and tagged with ``symbol_id``.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from numba import njit

from mmlab.data import store
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, event_dtype


@dataclass(frozen=True)
class SymbolInfo:
    venue: str
    symbol: str
    symbol_id: int
    tick_size: float
    lot_size: float
    contract_type: str
    contract_size: float
    meta: dict


def parse_time_ns(value: str | int | None) -> int | None:
    """ISO-8601 (UTC unless an offset is given) or int ns -> int ns; None passes through."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, dt.datetime):
        t = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000
    if isinstance(value, dt.date):
        return parse_time_ns(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc))
    s = str(value).strip()
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DataError(f"time {value!r} is not ISO-8601 (e.g. 2024-08-08 or 2024-08-08T23:55:00Z)") from exc
    return parse_time_ns(t)


def symbol_info(root: str | os.PathLike, venue: str, symbol: str, symbol_id: int = 0) -> SymbolInfo:
    meta = store.read_meta(root, venue, symbol)
    tick = meta.get("tick_size")
    lot = meta.get("lot_size")
    if not tick or tick <= 0:
        raise DataError(f"tick_size must be > 0, got {tick!r} (check _meta.json of {venue}/{symbol}; re-ingest with --tick-size)")
    if not lot or lot <= 0:
        raise DataError(f"lot_size must be > 0, got {lot!r} (check _meta.json of {venue}/{symbol}; re-ingest with --lot-size)")
    contract = meta.get("contract") or {}
    return SymbolInfo(
        venue=venue,
        symbol=symbol.upper(),
        symbol_id=symbol_id,
        tick_size=float(tick),
        lot_size=float(lot),
        contract_type=contract.get("type", "linear"),
        contract_size=float(contract.get("contract_size", 1.0)),
        meta=meta,
    )


def _files_in_range(root, venue, symbol, start_ns, end_ns) -> list[str]:
    days = store.list_days(root, venue, symbol)
    if not days:
        raise DataError(f"no day partitions for {venue}/{symbol} under {root} (run `mmlab data ingest` or `mmlab data synth`)")
    files = []
    for day in days:
        d0 = np.datetime64(day, "ns").astype(np.int64)
        # A day partition holds ts_exch of that day; ts_local can lag a little past midnight.
        if end_ns is not None and d0 > end_ns:
            continue
        if start_ns is not None and d0 + store.NS_PER_DAY + 60 * 1_000_000_000 < start_ns:
            continue
        files += [os.fspath(p) for p in store.day_files(root, venue, symbol, day)]
    return files


@njit(cache=True, nogil=True, error_model="numpy")
def _fill_events_nb(out, off, ts_exch, ts_local, kind, side, price, qty, update_id, batch_end, tick_size, symbol_id):
    """Write columns into ``out[off:off+n]`` in one pass; price -> round(price / tick_size) ticks."""
    for j in range(ts_exch.shape[0]):
        i = off + j
        out[i].ts_exch = ts_exch[j]
        out[i].ts_local = ts_local[j]
        x = price[j] / tick_size
        # NaN/inf/out-of-range prices become the most negative int64, as numpy's cast does on x86 (verify
        # counts ticks <= 0 as bad values).
        out[i].price_ticks = np.int64(np.rint(x)) if abs(x) < 9.2e18 else np.int64(-9223372036854775808)
        out[i].qty = qty[j]
        out[i].update_id = update_id[j]
        out[i].kind = kind[j]
        out[i].side = side[j]
        out[i].batch_end = batch_end[j]
        out[i].symbol_id = symbol_id


def _frame_to_events(cols: dict[str, np.ndarray], tick_size: float, symbol_id: int, out: np.ndarray | None = None) -> np.ndarray:
    n = len(cols["ts_exch"])
    ev = np.empty(n, dtype=event_dtype) if out is None else out
    if n:
        _fill_events_nb(ev, 0, *[_as_store_dtype(c, cols[c]) for c in EVENT_COLUMNS], float(tick_size), int(symbol_id))
    return ev


def _as_store_dtype(col: str, a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=NUMPY_DTYPES[col])


def _fill_from_frame(df, tick_size: float, symbol_id: int, out: np.ndarray, off: int) -> int:
    """Convert a polars frame of store columns into ``out[off:]`` chunk by chunk (no rechunk copy); returns rows."""
    n = df.height
    if n == 0:
        return 0
    table = df.select(list(EVENT_COLUMNS)).to_arrow()
    chunked = [table.column(c).chunks for c in EVENT_COLUMNS]
    lengths = [[len(a) for a in ch] for ch in chunked]
    if all(ls == lengths[0] for ls in lengths):
        pos = off
        for parts in zip(*chunked):
            cols = [_as_store_dtype(c, a.to_numpy(zero_copy_only=False)) for c, a in zip(EVENT_COLUMNS, parts)]
            _fill_events_nb(out, pos, *cols, float(tick_size), int(symbol_id))
            pos += len(parts[0])
    else:  # columns chunked differently: one contiguous copy each
        cols = [_as_store_dtype(c, df[c].to_numpy()) for c in EVENT_COLUMNS]
        _fill_events_nb(out, off, *cols, float(tick_size), int(symbol_id))
    return n


def _read_frame(path: str, start_ns: int | None, end_ns: int | None):
    import polars as pl

    if start_ns is None and end_ns is None:
        return pl.read_parquet(path)
    lf = pl.scan_parquet(path)
    if start_ns is not None:
        lf = lf.filter(pl.col("ts_local") >= start_ns)
    if end_ns is not None:
        lf = lf.filter(pl.col("ts_local") < end_ns)
    return lf.collect()


def _iter_frames(files: list[str], start_ns: int | None, end_ns: int | None) -> Iterator:
    """Decoded frames of ``files`` in order; the next file decodes in a thread while the caller converts one."""
    if len(files) <= 1:
        for f in files:
            yield _read_frame(f, start_ns, end_ns)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        nxt = pool.submit(_read_frame, files[0], start_ns, end_ns)
        for k in range(len(files)):
            df = nxt.result()
            if k + 1 < len(files):
                nxt = pool.submit(_read_frame, files[k + 1], start_ns, end_ns)
            yield df


def _row_count(files: list[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _read_columns(files: list[str], start_ns: int | None, end_ns: int | None) -> dict[str, np.ndarray]:
    import polars as pl

    if not files:
        return {c: np.empty(0, dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}
    lf = pl.scan_parquet(files)
    if start_ns is not None:
        lf = lf.filter(pl.col("ts_local") >= start_ns)
    if end_ns is not None:
        lf = lf.filter(pl.col("ts_local") < end_ns)
    df = lf.collect()
    return {c: df[c].to_numpy() for c in EVENT_COLUMNS}


def load_events(
    root: str | os.PathLike,
    venue: str,
    symbols: list[str] | str,
    start: str | int | None = None,
    end: str | int | None = None,
) -> tuple[np.ndarray, list[SymbolInfo]]:
    """Load symbols' events in [start, end) of local time as one ``event_dtype`` array merged by ts_local.

    >>> ev, infos = load_events("data", "binance-usdm", ["BTCUSDT"])  # doctest: +SKIP
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    start_ns, end_ns = parse_time_ns(start), parse_time_ns(end)
    infos = [symbol_info(root, venue, s, i) for i, s in enumerate(symbols)]
    files = [_files_in_range(root, venue, info.symbol, start_ns, end_ns) for info in infos]
    if start_ns is None and end_ns is None:
        # Row counts from the parquet footers: one output array, filled file by file as files decode.
        ev = np.empty(sum(_row_count(f) for f in files), dtype=event_dtype)
        off = 0
        for info, fs in zip(infos, files):
            for df in _iter_frames(fs, None, None):
                off += _fill_from_frame(df, info.tick_size, info.symbol_id, ev, off)
        if off != len(ev):
            raise DataError(f"internal: {venue}/{','.join(symbols)} decoded {off} rows, parquet footers say {len(ev)}")
    else:
        frames = [(info, df) for info, fs in zip(infos, files) for df in _iter_frames(fs, start_ns, end_ns)]
        ev = np.empty(sum(df.height for _, df in frames), dtype=event_dtype)
        off = 0
        for info, df in frames:
            off += _fill_from_frame(df, info.tick_size, info.symbol_id, ev, off)
    if len(infos) == 1:
        return ev, infos
    order = np.argsort(ev["ts_local"], kind="stable")
    return ev[order], infos


def iter_event_chunks(
    root: str | os.PathLike,
    venue: str,
    symbol: str,
    start: str | int | None = None,
    end: str | int | None = None,
    *,
    symbol_id: int = 0,
) -> Iterator[np.ndarray]:
    """Yield one symbol's events part file by part file (bounded memory for data larger than RAM)."""
    start_ns, end_ns = parse_time_ns(start), parse_time_ns(end)
    info = symbol_info(root, venue, symbol, symbol_id)
    for df in _iter_frames(_files_in_range(root, venue, info.symbol, start_ns, end_ns), start_ns, end_ns):
        if df.height:
            ev = np.empty(df.height, dtype=event_dtype)
            _fill_from_frame(df, info.tick_size, symbol_id, ev, 0)
            yield ev
