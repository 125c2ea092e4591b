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

from mmlab.data import store
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


def _frame_to_events(cols: dict[str, np.ndarray], tick_size: float, symbol_id: int, out: np.ndarray | None = None) -> np.ndarray:
    n = len(cols["ts_exch"])
    ev = np.empty(n, dtype=event_dtype) if out is None else out
    ev["ts_exch"] = cols["ts_exch"]
    ev["ts_local"] = cols["ts_local"]
    price = cols["price"]
    ev["price_ticks"] = np.rint(price / tick_size) if n else 0
    ev["qty"] = cols["qty"]
    ev["update_id"] = cols["update_id"]
    ev["kind"] = cols["kind"]
    ev["side"] = cols["side"]
    ev["batch_end"] = cols["batch_end"]
    ev["symbol_id"] = symbol_id
    return ev


def _read_columns(files: list[str], start_ns: int | None, end_ns: int | None) -> dict[str, np.ndarray]:
    import polars as pl

    if not files:
        return {c: np.empty(0) for c in EVENT_COLUMNS}
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
    parts = []
    for info in infos:
        cols = _read_columns(_files_in_range(root, venue, info.symbol, start_ns, end_ns), start_ns, end_ns)
        parts.append(_frame_to_events(cols, info.tick_size, info.symbol_id))
    if len(parts) == 1:
        return parts[0], infos
    ev = np.concatenate(parts)
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
    for f in _files_in_range(root, venue, info.symbol, start_ns, end_ns):
        cols = _read_columns([f], start_ns, end_ns)
        if len(cols["ts_exch"]):
            yield _frame_to_events(cols, info.tick_size, symbol_id)
