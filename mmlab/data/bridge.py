"""The one polars -> numpy bridge: store partitions -> the kernels' structured event array.

Prices become integer ticks (``round(price / tick_size)``), times stay int64 ns. Several symbols are merged by
``ts_local`` (stable, so each stream keeps its message order) and tagged with ``symbol_id``.

Each part file's converted event array is cached once in ``<symbol>/_events_cache/`` (``load_events``), and
beside it the part's replay index (``load_replay_window``): which rows the simulator replays (all but BBO) and
their exchange-time order, so a backtest window costs two row copies instead of a filter and a sort.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from numba import njit

from mmlab.data import store
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind, event_dtype


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
        for p in store.day_files(root, venue, symbol, day):
            f = os.fspath(p)
            if start_ns is None and end_ns is None:
                files.append(f)
                continue
            st = os.stat(f)
            lo, hi = _ts_local_span(f, st.st_size, st.st_mtime_ns)
            # Parts are sorted by ts_local: skip those wholly outside [start, end).
            if (end_ns is not None and lo >= end_ns) or (start_ns is not None and hi < start_ns):
                continue
            files.append(f)
    return files


@functools.lru_cache(maxsize=65_536)
def _ts_local_span(path: str, size: int, mtime_ns: int) -> tuple[int, int]:
    """(min, max) ts_local of a part file from its parquet footer statistics (size/mtime key the cache)."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    col = md.schema.names.index("ts_local")
    lo, hi = None, None
    for g in range(md.num_row_groups):
        stats = md.row_group(g).column(col).statistics
        if stats is None or not stats.has_min_max:
            return (-(2**63), 2**63 - 1)  # no statistics: the part must be read
        lo = stats.min if lo is None else min(lo, stats.min)
        hi = stats.max if hi is None else max(hi, stats.max)
    return (lo, hi) if lo is not None else (2**63 - 1, -(2**63))


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


#: Folder (inside a symbol's store directory) of the converted event arrays, one ``.npy`` per parquet part.
CACHE_DIR = "_events_cache"


def _cache_path(path: str, tick_size: float) -> Path:
    """Where the event array of a part file lives; the name changes whenever the part file or the tick size does."""
    st = os.stat(path)
    key = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{tick_size!r}:{event_dtype.descr}".encode()).hexdigest()[:16]
    p = Path(path)
    return p.parent.parent / CACHE_DIR / p.parent.name / f"{p.stem}-{key}.npy"


def _file_events(path: str, tick_size: float, cache: bool) -> np.ndarray:
    """Event array of one part file (symbol_id 0): from the cache when valid, else decoded (and cached)."""
    if cache:
        cp = _cache_path(path, tick_size)
        if cp.exists():
            try:
                return np.load(cp, mmap_mode="r")
            except (OSError, ValueError):
                pass  # a damaged cache file is rebuilt below
    df = _read_frame(path, None, None)
    ev = np.zeros(df.height, dtype=event_dtype)  # zeroed: padding bytes are deterministic in the cache file
    _fill_from_frame(df, tick_size, 0, ev, 0)
    if cache:
        try:
            cp.parent.mkdir(parents=True, exist_ok=True)
            for old in cp.parent.glob(f"{Path(path).stem}-*.npy"):
                old.unlink()
            tmp = cp.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, ev)
            os.replace(tmp, cp)
        except OSError:
            pass  # a read-only store works without the cache
    return ev


#: Suffix of a part's replay index next to its event array: int (2, m) rows = (positions of the m rows the
#: simulator replays, i.e. every row but BBO; their stable order by ts_exch as indices into those m rows).
REPLAY_SUFFIX = ".replay.npy"


def _replay_index_of(ev: np.ndarray) -> np.ndarray:
    """(2, m) replay index of a part's event array: non-BBO row positions and their stable ts_exch order."""
    keep = np.flatnonzero(ev["kind"] != Kind.BBO)
    xts = np.ascontiguousarray(ev["ts_exch"])[keep]
    perm = np.argsort(xts, kind="stable")
    dt = np.int32 if len(ev) < 2**31 else np.int64
    out = np.empty((2, len(keep)), dtype=dt)
    out[0] = keep
    out[1] = perm
    return out


def _file_replay(path: str, tick_size: float, cache: bool) -> tuple[np.ndarray, np.ndarray]:
    """Event array of one part file and its replay index (see ``REPLAY_SUFFIX``), both cached on first use."""
    ev = _file_events(path, tick_size, cache)
    if cache:
        cp = _cache_path(path, tick_size)
        rp = cp.with_name(cp.stem + REPLAY_SUFFIX)
        if rp.exists():
            try:
                idx = np.load(rp, mmap_mode="r")
                if idx.ndim == 2 and idx.shape[0] == 2 and idx.shape[1] <= len(ev):
                    return ev, idx
            except (OSError, ValueError):
                pass  # a damaged index is rebuilt below
    idx = _replay_index_of(ev)
    if cache:
        try:
            tmp = rp.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, idx)
            os.replace(tmp, rp)
        except OSError:
            pass  # a read-only store works without the cache
    return ev, idx


@njit(cache=True, nogil=True)
def _take_rows_nb(src, idx, out):
    """out[i] = src[idx[i]] for 2-D int64 views of record arrays (one record = one row)."""
    w = src.shape[1]
    for i in range(idx.shape[0]):
        k = idx[i]
        for j in range(w):
            out[i, j] = src[k, j]


@njit(cache=True, nogil=True)
def _window_perm_nb(perm, lo, hi, off, out):
    """Entries p of ``perm`` with lo <= p < hi, in order, as p - lo + off into ``out``; returns the count."""
    n = 0
    for i in range(perm.shape[0]):
        p = perm[i]
        if p >= lo and p < hi:
            out[n] = p - lo + off
            n += 1
    return n


@njit(cache=True, nogil=True)
def _merge_runs_nb(key, pos, bounds):
    """Merge runs ``pos[bounds[r]:bounds[r+1]]``, each sorted by (key[p], p), into one sequence sorted so."""
    runs = bounds.copy()
    a = pos.copy()
    b = np.empty_like(pos)
    while runs.shape[0] > 2:
        n_runs = runs.shape[0] - 1
        new = np.empty(n_runs // 2 + n_runs % 2 + 1, dtype=runs.dtype)
        new[0] = 0
        r = 0
        k = 0
        while r < n_runs:
            i, i_end = runs[r], runs[r + 1]
            if r + 1 < n_runs:
                j, j_end = runs[r + 1], runs[r + 2]
            else:
                j, j_end = i_end, i_end
            o = i
            if j < j_end:
                # Runs of consecutive parts overlap only near their boundary: copy the head of the first run that
                # precedes the second run's first row in one go (binary search), then merge the overlap.
                pj = a[j]
                lo_, hi_ = i, i_end
                while lo_ < hi_:
                    mid = (lo_ + hi_) >> 1
                    pm = a[mid]
                    if key[pm] < key[pj] or (key[pm] == key[pj] and pm < pj):
                        lo_ = mid + 1
                    else:
                        hi_ = mid
                b[o : o + lo_ - i] = a[i:lo_]
                o += lo_ - i
                i = lo_
            while i < i_end and j < j_end:
                pi, pj = a[i], a[j]
                if key[pj] < key[pi] or (key[pj] == key[pi] and pj < pi):
                    b[o] = pj
                    j += 1
                else:
                    b[o] = pi
                    i += 1
                o += 1
            b[o : o + i_end - i] = a[i:i_end]
            o += i_end - i
            b[o : o + j_end - j] = a[j:j_end]
            o += j_end - j
            k += 1
            new[k] = o
            r += 2
        runs = new
        a, b = b, a
    return a


@njit(cache=True, nogil=True)
def _merge_consecutive_runs_nb(key, pos, bounds):
    """``_merge_runs_nb`` for runs that follow each other in time (consecutive parts of one stream): each run is
    merged into the output so far from the first row it precedes, so rows are copied about once."""
    n = pos.shape[0]
    out = np.empty_like(pos)
    m = bounds[1] - bounds[0]
    out[:m] = pos[bounds[0] : bounds[1]]
    for r in range(1, bounds.shape[0] - 1):
        s, e = bounds[r], bounds[r + 1]
        if e == s:
            continue
        p0 = pos[s]
        # First output row that sorts after the run's first row: rows before it stay in place.
        lo_, hi_ = 0, m
        while lo_ < hi_:
            mid = (lo_ + hi_) >> 1
            pm = out[mid]
            if key[pm] < key[p0] or (key[pm] == key[p0] and pm < p0):
                lo_ = mid + 1
            else:
                hi_ = mid
        tail = out[lo_:m].copy()
        i, j, o = 0, s, lo_
        while i < tail.shape[0] and j < e:
            pi, pj = tail[i], pos[j]
            if key[pj] < key[pi] or (key[pj] == key[pi] and pj < pi):
                out[o] = pj
                j += 1
            else:
                out[o] = pi
                i += 1
            o += 1
        while i < tail.shape[0]:
            out[o] = tail[i]
            i += 1
            o += 1
        while j < e:
            out[o] = pos[j]
            j += 1
            o += 1
        m = o
    return out[:n]


def _rows_view(ev: np.ndarray) -> np.ndarray:
    """A record array as a 2-D int64 array (one row per record), for the row kernels."""
    return np.asarray(ev).view(np.int64).reshape(len(ev), event_dtype.itemsize // 8)


def take_rows(ev: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``ev[idx]`` for an ``event_dtype`` array as whole-record copies (numpy's fancy indexing copies structured
    records field by field, several times slower)."""
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    out = np.empty(len(idx), dtype=event_dtype)
    if len(idx):
        _take_rows_nb(_rows_view(np.ascontiguousarray(ev)), idx, _rows_view(out))
    return out


def exch_order(ev: np.ndarray) -> np.ndarray:
    """Rows of ``ev`` in exchange-time order (stable argsort by ts_exch: ties keep their order in ``ev``)."""
    return take_rows(ev, np.argsort(ev["ts_exch"], kind="stable"))


@dataclass(frozen=True)
class ReplayWindow:
    """What the simulator replays of a time window: the rows without BBO (informational, never applied).

    The unit ``mmlab.sim.engine.simulate`` iterates over: store windows come from :func:`load_replay_window`,
    in-memory event arrays are wrapped by :func:`replay_window`.

    Attributes
    ----------
    local : ``event_dtype`` rows in ts_local order (several symbols merged as :func:`load_events` does).
    exch : the same rows in exchange-time order (stable: ties keep their ``local`` order).
    n_bbo : BBO rows of the window that were left out (a run's summary counts them in ``events_bbo_skipped``).
    infos : the symbols (``symbol_id`` = position); empty when the rows came from an in-memory array.
    """

    local: np.ndarray
    exch: np.ndarray
    n_bbo: int
    infos: list[SymbolInfo] = field(default_factory=list)


def replay_window(ev: np.ndarray) -> ReplayWindow:
    """The :class:`ReplayWindow` of an in-memory ``event_dtype`` array sorted by ts_local: its BBO rows left out
    and counted, the rest in both orders (a filter and a stable sort by ts_exch, :func:`exch_order`).

    >>> w = replay_window(load_events("data", "binance-usdm", ["BTCUSDT"])[0])  # doctest: +SKIP
    """
    if ev.dtype != event_dtype:
        raise DataError(f"events must have mmlab.types.event_dtype, got {ev.dtype}")
    bbo = ev["kind"] == Kind.BBO
    n_bbo = int(bbo.sum())
    local = ev[~bbo] if n_bbo else ev
    return ReplayWindow(local=local, exch=exch_order(local), n_bbo=n_bbo)


def load_replay_window(
    root: str | os.PathLike,
    venue: str,
    symbols: list[str] | str,
    start: str | int | None = None,
    end: str | int | None = None,
    *,
    cache: bool = True,
) -> ReplayWindow:
    """The replayed rows of [start, end) of local time in both of the simulator's orders.

    Equal to ``ev = load_events(...)[0]; local = ev[ev["kind"] != BBO]; exch = local[argsort(local["ts_exch"],
    stable)]``, but the BBO filter and the exchange-time order come from each part file's cached replay index
    (``REPLAY_SUFFIX``, built once next to its event array), so a window costs two row copies and a merge.

    >>> w = load_replay_window("data", "binance-usdm", ["BTCUSDT"], "2024-07-19", "2024-07-20")  # doctest: +SKIP
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    start_ns, end_ns = parse_time_ns(start), parse_time_ns(end)
    infos = [symbol_info(root, venue, s, i) for i, s in enumerate(symbols)]
    pieces = []  # (symbol_id, event array, replay index, lo, hi) per overlapping part, in row order
    n_bbo = 0
    for info in infos:
        for f in _files_in_range(root, venue, info.symbol, start_ns, end_ns):
            ev, idx = _file_replay(f, info.tick_size, cache)
            ts = ev["ts_local"]
            lo = 0 if start_ns is None else int(np.searchsorted(ts, start_ns, side="left"))
            hi = len(ev) if end_ns is None else int(np.searchsorted(ts, end_ns, side="left"))
            klo, khi = (int(x) for x in np.searchsorted(idx[0], [lo, hi], side="left"))
            n_bbo += (hi - lo) - (khi - klo)
            if khi > klo:
                pieces.append((info.symbol_id, ev, idx, klo, khi, f))
    n = sum(p[4] - p[3] for p in pieces)
    cat = np.empty(n, dtype=event_dtype)
    xpos = np.empty(n, dtype=np.int64)
    bounds = [0]
    sym_bounds = [0]
    off = 0
    for k, (sid, ev, idx, klo, khi, f) in enumerate(pieces):
        m = khi - klo
        _take_rows_nb(_rows_view(ev), np.ascontiguousarray(idx[0, klo:khi]), _rows_view(cat[off : off + m]))
        if sid:
            cat["symbol_id"][off : off + m] = sid
        if _window_perm_nb(np.asarray(idx[1]), klo, khi, off, xpos[off : off + m]) != m:
            raise DataError(f"replay index of {f} does not match its events (damaged cache): delete "
                            f"{Path(f).parent.parent / CACHE_DIR} and run again")
        off += m
        bounds.append(off)
        if k + 1 == len(pieces) or pieces[k + 1][0] != sid:
            sym_bounds.append(off)
    if len(sym_bounds) > 2:
        # Several symbols: merge by ts_local (ties: symbol order, then row order), then map the exchange-time
        # runs to merged positions (a stable merge keeps each run's order).
        order = _merge_runs_nb(np.ascontiguousarray(cat["ts_local"]), np.arange(n, dtype=np.int64),
                               np.asarray(sym_bounds, dtype=np.int64))
        local = take_rows(cat, order)
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n, dtype=np.int64)
        xpos = rank[xpos]
    else:
        local = cat
    if len(bounds) > 2:
        # Each symbol's part runs (consecutive in time) into one run, then the symbols' runs together.
        xkey = np.ascontiguousarray(local["ts_exch"])
        b = np.asarray(bounds, dtype=np.int64)
        for s0, s1 in itertools.pairwise(sym_bounds):
            rb = b[(b >= s0) & (b <= s1)] - s0
            if len(rb) > 2:
                xpos[s0:s1] = _merge_consecutive_runs_nb(xkey, xpos[s0:s1], rb)
        if len(sym_bounds) > 2:
            xpos = _merge_runs_nb(xkey, xpos, np.asarray(sym_bounds, dtype=np.int64))
    exch = take_rows(local, xpos)
    return ReplayWindow(local=local, exch=exch, n_bbo=int(n_bbo), infos=infos)


def _copy_rows(dst: np.ndarray, off: int, src: np.ndarray) -> None:
    """dst[off:off+len(src)] = src as one byte copy (numpy copies structured records field by field, ~3x slower)."""
    isz = event_dtype.itemsize
    np.copyto(dst.view(np.uint8)[off * isz : (off + len(src)) * isz], np.ascontiguousarray(src).view(np.uint8))


def _window(ev: np.ndarray, start_ns: int | None, end_ns: int | None) -> np.ndarray:
    """Rows of a part (sorted by ts_local) with start <= ts_local < end."""
    lo = 0 if start_ns is None else int(np.searchsorted(ev["ts_local"], start_ns, side="left"))
    hi = len(ev) if end_ns is None else int(np.searchsorted(ev["ts_local"], end_ns, side="left"))
    return ev[lo:hi]


def load_events(
    root: str | os.PathLike,
    venue: str,
    symbols: list[str] | str,
    start: str | int | None = None,
    end: str | int | None = None,
    *,
    cache: bool = True,
) -> tuple[np.ndarray, list[SymbolInfo]]:
    """Load symbols' events in [start, end) of local time as one ``event_dtype`` array merged by ts_local.

    The first load of a part file converts it and keeps the event array in ``<symbol>/_events_cache/`` (rebuilt
    whenever the part file or the tick size changes); later loads map that file, so repeated loads (sweeps,
    reruns) run at memory speed. ``cache=False`` always decodes the parquet.

    >>> ev, infos = load_events("data", "binance-usdm", ["BTCUSDT"])  # doctest: +SKIP
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    start_ns, end_ns = parse_time_ns(start), parse_time_ns(end)
    infos = [symbol_info(root, venue, s, i) for i, s in enumerate(symbols)]
    parts = []
    for info in infos:
        for f in _files_in_range(root, venue, info.symbol, start_ns, end_ns):
            parts.append((info, _window(_file_events(f, info.tick_size, cache), start_ns, end_ns)))
    ev = np.empty(sum(len(p) for _, p in parts), dtype=event_dtype)
    off = 0
    for info, p in parts:
        _copy_rows(ev, off, p)
        if info.symbol_id:
            ev["symbol_id"][off : off + len(p)] = info.symbol_id
        off += len(p)
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
    cache: bool = True,
) -> Iterator[np.ndarray]:
    """Yield one symbol's events part file by part file (bounded memory for data larger than RAM)."""
    start_ns, end_ns = parse_time_ns(start), parse_time_ns(end)
    info = symbol_info(root, venue, symbol, symbol_id)
    for f in _files_in_range(root, venue, info.symbol, start_ns, end_ns):
        part = _window(_file_events(f, info.tick_size, cache), start_ns, end_ns)
        if len(part):
            ev = np.empty(len(part), dtype=event_dtype)  # a private, writable copy
            _copy_rows(ev, 0, part)
            if symbol_id:
                ev["symbol_id"] = symbol_id
            yield ev
