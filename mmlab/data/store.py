"""The partitioned parquet store: ``<root>/<venue>/<SYMBOL>/date=YYYY-MM-DD/part-NNNN.parquet`` + ``_meta.json``.

Writers hand over numpy columns already sorted by (ts_local, original message order); the store partitions them
by the UTC day of ``ts_exch`` and keeps that order inside each day.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, SCHEMA_VERSION, VENUES, Kind

META_FILE = "_meta.json"
#: Rows per parquet part file; bounds the memory a reader needs per part.
PART_ROWS = 8_000_000
#: Parquet codec of the store: lz4 decodes about 2x faster than zstd for ~17% more bytes; float/int columns are
#: written without dictionaries (faster to write and to decode, ~30% more bytes), see benchmarks/bench_*.py.
PARQUET_COMPRESSION = "lz4"
#: Days with at least this many rows are written as two or more part files in parallel.
PARALLEL_MIN_ROWS = 500_000
NS_PER_DAY = 86_400 * 1_000_000_000
_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def check_venue(venue: str) -> str:
    """Return ``venue`` if it is a store venue name, else raise a DataError listing the valid ones."""
    if venue in VENUES or (venue.startswith("tardis-") and len(venue) > len("tardis-")):
        return venue
    raise DataError(f"unknown venue {venue!r}: use one of {', '.join(VENUES)} or tardis-<exchange>")


def symbol_dir(root: str | os.PathLike, venue: str, symbol: str) -> Path:
    return Path(root) / check_venue(venue) / symbol.upper()


def day_of_ns(ts_ns: int) -> str:
    """UTC date string of a ns timestamp."""
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=dt.timezone.utc).strftime("%Y-%m-%d")


def read_meta(root: str | os.PathLike, venue: str, symbol: str) -> dict:
    path = symbol_dir(root, venue, symbol) / META_FILE
    if not path.exists():
        raise DataError(f"no data for {venue}/{symbol} under {root}: {path} is missing (run `mmlab data ingest` or `mmlab data synth`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc}); re-ingest the symbol to rebuild it") from exc


def write_meta(root: str | os.PathLike, venue: str, symbol: str, meta: dict) -> Path:
    path = symbol_dir(root, venue, symbol) / META_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def list_symbols(root: str | os.PathLike) -> list[tuple[str, str]]:
    """All (venue, symbol) pairs under ``root`` that have a ``_meta.json``."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted((p.parent.parent.name, p.parent.name) for p in root.glob(f"*/*/{META_FILE}"))


def list_days(root: str | os.PathLike, venue: str, symbol: str) -> list[str]:
    d = symbol_dir(root, venue, symbol)
    if not d.exists():
        return []
    return sorted(m.group(1) for p in d.iterdir() if p.is_dir() and (m := _DATE_DIR.match(p.name)))


def day_files(root: str | os.PathLike, venue: str, symbol: str, day: str) -> list[Path]:
    return sorted((symbol_dir(root, venue, symbol) / f"date={day}").glob("part-*.parquet"))


@dataclass(frozen=True)
class WrittenDay:
    day: str
    rows: int
    files: tuple[str, ...]


def write_days(
    root: str | os.PathLike,
    venue: str,
    symbol: str,
    columns: dict[str, np.ndarray],
    *,
    replace_days: bool = True,
) -> list[WrittenDay]:
    """Write sorted event columns into day partitions, replacing those days' part files.

    Parameters
    ----------
    columns : dict of numpy arrays, one per store column, all of one length, sorted by (ts_local, message order).
    replace_days : remove existing part files of each day written (callers check ownership first).
    """
    import pyarrow as pa

    from mmlab.data.schema import NUMPY_DTYPES

    n = len(columns["ts_exch"])
    for c in EVENT_COLUMNS:
        if c not in columns:
            raise DataError(f"internal: column {c!r} missing when writing {venue}/{symbol}")
        if len(columns[c]) != n:
            raise DataError(f"internal: column {c!r} has {len(columns[c])} rows, expected {n} ({venue}/{symbol})")
    cols = {c: np.ascontiguousarray(columns[c], dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}
    written: list[WrittenDay] = []
    if n == 0:
        return written
    day_idx = cols["ts_exch"] // NS_PER_DAY
    # Stable partition by day keeps message order inside each day (most streams are in day order already).
    order = np.arange(n) if n < 2 or bool(np.all(day_idx[1:] >= day_idx[:-1])) else np.argsort(day_idx, kind="stable")
    sorted_days = day_idx[order]
    bounds = np.flatnonzero(np.diff(sorted_days)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    base = symbol_dir(root, venue, symbol)
    for s, e in zip(starts, ends):
        idx = order[s:e]
        day = day_of_ns(int(sorted_days[s]) * NS_PER_DAY)
        ddir = base / f"date={day}"
        if ddir.exists() and replace_days:
            shutil.rmtree(ddir)
        ddir.mkdir(parents=True, exist_ok=True)
        # Equal parts of at most PART_ROWS rows (at least two from PARALLEL_MIN_ROWS rows), written by two threads:
        # pyarrow encodes without the GIL. The split depends on the row count only, so output is reproducible.
        n_day = len(idx)
        n_parts = max(-(-n_day // PART_ROWS), 2 if n_day >= PARALLEL_MIN_ROWS else 1)
        bounds_p = [n_day * k // n_parts for k in range(n_parts + 1)]
        jobs = []
        for k in range(n_parts):
            part = idx[bounds_p[k] : bounds_p[k + 1]]
            contiguous = part[-1] - part[0] == len(part) - 1
            table = pa.table({c: cols[c][part[0] : part[-1] + 1] if contiguous else cols[c][part] for c in EVENT_COLUMNS})
            jobs.append((table, ddir / f"part-{k:04d}.parquet"))
        if len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=2) as pool:
                list(pool.map(lambda job: _write_table(*job), jobs))
        else:
            _write_table(*jobs[0])
        files = [path.name for _, path in jobs]
        written.append(WrittenDay(day=day, rows=len(idx), files=tuple(files)))
    return written


def clear_day(root: str | os.PathLike, venue: str, symbol: str, day: str) -> None:
    """Remove a day partition (streaming writers call this before their first :func:`write_part` of the day)."""
    ddir = symbol_dir(root, venue, symbol) / f"date={day}"
    if ddir.exists():
        shutil.rmtree(ddir)


def write_part(
    root: str | os.PathLike, venue: str, symbol: str, day: str, index: int, columns: dict[str, np.ndarray]
) -> Path:
    """Write one part file ``date=<day>/part-<index>.parquet`` of sorted event columns, atomically.

    For writers that produce a day in bounded memory, chunk by chunk: every row must belong to ``day`` (UTC day
    of ``ts_exch``) and follow the rows of the previous part in (ts_local, message order). The caller clears the
    day first (:func:`clear_day`) and writes ``_meta.json`` at the end.
    """
    import pyarrow as pa

    from mmlab.data.schema import NUMPY_DTYPES

    n = len(columns["ts_exch"])
    for c in EVENT_COLUMNS:
        if c not in columns or len(columns[c]) != n:
            raise DataError(f"internal: column {c!r} missing or of the wrong length in part {index} of {venue}/{symbol} {day}")
    if n and (day_of_ns(int(columns["ts_exch"][0])) != day or day_of_ns(int(columns["ts_exch"][-1])) != day):
        raise DataError(f"internal: part {index} of {venue}/{symbol} holds rows outside {day}")
    ddir = symbol_dir(root, venue, symbol) / f"date={day}"
    ddir.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: np.ascontiguousarray(columns[c], dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS})
    path = ddir / f"part-{index:04d}.parquet"
    _write_table(table, path)
    return path


def _write_table(table, path: Path) -> None:
    """Write one part file atomically (a crash leaves no half-written part)."""
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression=PARQUET_COMPRESSION, row_group_size=1_000_000,
                   use_dictionary=["kind", "side", "batch_end"], write_statistics=["ts_exch", "ts_local"])
    os.replace(tmp, path)


def time_span(meta: dict) -> dict:
    """First/last day and local-time bounds of a symbol from the per-day entries of its ``_meta.json``."""
    days = meta["days"]
    all_days = sorted(days)
    return {
        "first_day": all_days[0] if all_days else None,
        "last_day": all_days[-1] if all_days else None,
        "ts_local_min": min((d["ts_local_min"] for d in days.values()), default=None),
        "ts_local_max": max((d["ts_local_max"] for d in days.values()), default=None),
    }


def empty_meta(venue: str, symbol: str) -> dict:
    from mmlab.data.schema import schema_hash

    return {
        "schema_version": SCHEMA_VERSION,
        "schema_hash": schema_hash(),
        "venue": venue,
        "symbol": symbol.upper(),
        "tick_size": None,
        "lot_size": None,
        "contract": {"type": "linear", "contract_size": 1.0},
        "fees": None,
        "sources": [],
        "days": {},
        "gaps": [],
        "quarantine": [],
        "crossed_books": 0,
        "feed_latency": None,
        "clock_offset_ns": 0,
    }


def kind_name(kind: int) -> str:
    try:
        return Kind(kind).name
    except ValueError:
        return f"KIND_{kind}"
