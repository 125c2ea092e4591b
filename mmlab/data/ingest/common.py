"""What every ingest source shares: the parsed-stream record, reading raw files, and writing to the store.

A source module turns raw files into one :class:`ParsedStream` per (venue, symbol). :func:`write_stream` then
applies the rules common to all sources (value checks, clock-skew correction, tick/lot inference, ordering,
ownership of days in the output root) and writes the store partitions and ``_meta.json``.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmlab.data import store
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind

#: Quarantine entries kept verbatim in _meta.json per stream (the counts always cover every row).
MAX_QUARANTINE_ENTRIES = 200


@dataclass
class IngestOptions:
    symbol: str | None = None  # keep only this symbol (and name single-symbol sources)
    tick_size: float | None = None  # override
    lot_size: float | None = None  # override
    contract: str | None = None  # "linear" | "inverse" override
    contract_size: float | None = None
    local_ts_unit: str | None = None  # "ns" | "us" | "ms" | "s" override of the magnitude detection
    clock_correction: bool = True
    feed_latency_ms: float | None = None  # declared feed latency for sources without local time
    overwrite: bool = False  # replace days that another set of source files wrote
    venue: str | None = None  # venue name override (e.g. for format sources)
    allow_truncated: bool = False  # ingest the readable lines of a truncated gzip


@dataclass
class ParsedStream:
    """One (venue, symbol) stream as parsed from raw files, before the common rules apply."""

    venue: str
    symbol: str
    columns: dict[str, np.ndarray]
    sources: list[dict] = field(default_factory=list)  # {path, sha256, bytes, lines, rows_in, ...}
    rows_in: int = 0  # rows the raw messages described (written + quarantined)
    rows_quarantined: int = 0
    gaps: list[dict] = field(default_factory=list)  # {from_update_id, to_update_id, ts_exch, ts_local, rows_quarantined, file, line, handled}
    quarantine: list[dict] = field(default_factory=list)  # {file, line, reason, rows}
    tick_size: float | None = None
    lot_size: float | None = None
    contract: dict | None = None  # {"type": "linear"|"inverse", "contract_size": float}
    feed_latency: dict | None = None  # {"kind": "recorded"} or {"kind": "declared", "latency_ns": int, ...}
    local_ts_unit: str | None = None
    extra: dict = field(default_factory=dict)

    def add_quarantine(self, file: str, line: int | None, reason: str, rows: int) -> None:
        self.rows_quarantined += rows
        if len(self.quarantine) < MAX_QUARANTINE_ENTRIES:
            self.quarantine.append({"file": file, "line": line, "reason": reason, "rows": rows})


@dataclass
class IngestResult:
    venue: str
    symbol: str
    rows_in: int
    rows_written: int
    rows_quarantined: int
    days: list[str]
    gaps: int
    clock_offset_ns: int
    tick_size: float
    lot_size: float
    meta_path: str


# ----------------------------------------------------------------------------------------------- raw file reading


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_bytes(path: str | os.PathLike, *, allow_truncated: bool = False) -> bytes:
    """Whole decompressed content of a plain, gzip or single-member zip file.

    A truncated gzip raises :class:`DataError` naming the file and how much was readable, unless
    ``allow_truncated`` (then the readable prefix is returned, cut at the last complete line).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file (check the path given to `mmlab data ingest`)")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return _gunzip(path, raw, allow_truncated)
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise DataError(f"{path}: zip holds {len(names)} files {names[:5]}; expected exactly one (unzip it and ingest the member you want)")
            return zf.read(names[0])
    return raw


try:  # ISA-L inflates about 2x faster than zlib; same API and stream semantics
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal ships wheels for the supported platforms
    _zlib = zlib


def _gunzip(path: Path, raw: bytes, allow_truncated: bool) -> bytes:
    out = []
    d = _zlib.decompressobj(47)
    data = raw
    try:
        while data:
            out.append(d.decompress(data))
            if d.eof:
                data = d.unused_data
                d = _zlib.decompressobj(47) if data else d
            else:
                break
        if not d.eof:
            raise EOFError("stream ends before the gzip end-of-stream marker")
    except (_zlib.error, zlib.error, EOFError) as exc:
        got = b"".join(out)
        if allow_truncated:
            return got[: got.rfind(b"\n") + 1]
        lines = got.count(b"\n")
        raise DataError(
            f"{path}: truncated or corrupt gzip ({exc}); {lines} complete lines were readable. "
            "Re-download or re-copy the file, or pass --allow-truncated to ingest the readable lines only"
        ) from exc
    return b"".join(out)


def detect_ts_unit(value: float) -> str:
    """Unit of an epoch timestamp from its magnitude (years 2001..2286)."""
    v = abs(value)
    if v >= 1e17:
        return "ns"
    if v >= 1e14:
        return "us"
    if v >= 1e11:
        return "ms"
    if v >= 1e8:
        return "s"
    raise DataError(f"timestamp {value!r} is too small to be an epoch time in s/ms/us/ns; pass --local-ts-unit")


UNIT_TO_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


# --------------------------------------------------------------------------------------------- columns helpers


class ColumnBuilder:
    """Append-only growable event columns (amortized doubling), handed to the writer as numpy arrays."""

    def __init__(self, capacity: int = 1 << 16):
        self._cols = {c: np.empty(capacity, dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}
        self.n = 0

    def _grow(self, need: int) -> None:
        cap = len(self._cols["ts_exch"])
        if self.n + need <= cap:
            return
        new_cap = max(cap * 2, self.n + need)
        for c, a in self._cols.items():
            b = np.empty(new_cap, dtype=a.dtype)
            b[: self.n] = a[: self.n]
            self._cols[c] = b

    def append_rows(self, ts_exch, ts_local, kind, side, price, qty, update_id, batch_end) -> None:
        """Append arrays (or scalars broadcast to the length of ``price``)."""
        k = len(price)
        if k == 0:
            return
        self._grow(k)
        s = slice(self.n, self.n + k)
        c = self._cols
        c["ts_exch"][s] = ts_exch
        c["ts_local"][s] = ts_local
        c["kind"][s] = kind
        c["side"][s] = side
        c["price"][s] = price
        c["qty"][s] = qty
        c["update_id"][s] = update_id
        c["batch_end"][s] = batch_end
        self.n += k

    def append(self, ts_exch, ts_local, kind, side, price, qty, update_id, batch_end) -> None:
        self._grow(1)
        i = self.n
        c = self._cols
        c["ts_exch"][i] = ts_exch
        c["ts_local"][i] = ts_local
        c["kind"][i] = kind
        c["side"][i] = side
        c["price"][i] = price
        c["qty"][i] = qty
        c["update_id"][i] = update_id
        c["batch_end"][i] = batch_end
        self.n += 1

    def set_last_batch_end(self) -> None:
        if self.n:
            self._cols["batch_end"][self.n - 1] = True

    def columns(self) -> dict[str, np.ndarray]:
        return {c: a[: self.n] for c, a in self._cols.items()}


def empty_columns() -> dict[str, np.ndarray]:
    return {c: np.empty(0, dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}


# ------------------------------------------------------------------------------------------- tick/lot inference


def infer_increment(values: np.ndarray, max_decimals: int = 10) -> float | None:
    """Greatest common increment of decimal values (e.g. observed prices -> tick size), or None if none found."""
    v = np.unique(np.abs(values[np.isfinite(values) & (values > 0)]))
    if len(v) == 0:
        return None
    for dec in range(0, max_decimals + 1):
        scaled = v * 10**dec
        ints = np.rint(scaled)
        if np.all(np.abs(scaled - ints) <= 1e-6 * np.maximum(1.0, np.abs(scaled)) ) and np.all(ints < 2**62):
            g = int(np.gcd.reduce(ints.astype(np.int64)))
            if g == 0:
                return None
            return _round_sig(g / 10**dec)
    return None


def _round_sig(x: float) -> float:
    return float(f"{x:.12g}")


# ------------------------------------------------------------------------------------------------ common rules


def _quarantine_bad_values(stream: ParsedStream) -> None:
    c = stream.columns
    kind = c["kind"]
    price = c["price"]
    qty = c["qty"]
    priced = kind != Kind.CLEAR
    bad = priced & (~np.isfinite(price) | (price <= 0) | ~np.isfinite(qty) | (qty < 0))
    bad |= (kind == Kind.TRADE) & (qty == 0)
    if not bad.any():
        return
    idx = np.flatnonzero(bad)
    for i in idx[:20]:
        stream.quarantine.append(
            {
                "file": None,
                "line": None,
                "reason": f"invalid value price={price[i]!r} qty={qty[i]!r} kind={store.kind_name(int(kind[i]))} at ts_local={int(c['ts_local'][i])}",
                "rows": 1,
            }
        ) if len(stream.quarantine) < MAX_QUARANTINE_ENTRIES else None
    stream.rows_quarantined += int(bad.sum())
    keep = ~bad
    # A dropped row may have carried batch_end: move it to the previous kept row of the same message.
    be = c["batch_end"].copy()
    dropped_end = np.flatnonzero(bad & be)
    for i in dropped_end:
        j = i - 1
        while j >= 0 and bad[j] and not be[j]:
            j -= 1
        if j >= 0 and not bad[j]:
            be[j] = True
    c["batch_end"] = be
    stream.columns = {k: v[keep] for k, v in c.items()}


def _clock_offset(stream: ParsedStream, enabled: bool) -> int:
    """Constant ns shift of ts_local so that feed latency (ts_local - ts_exch) is never negative."""
    if not enabled or (stream.feed_latency or {}).get("kind") == "declared":
        return 0
    c = stream.columns
    if len(c["ts_exch"]) == 0:
        return 0
    lat = c["ts_local"] - c["ts_exch"]
    m = int(lat.min())
    return -m if m < 0 else 0


def write_stream(stream: ParsedStream, out_root: str | os.PathLike, opts: IngestOptions) -> IngestResult:
    """Apply the common rules to a parsed stream and write it into the store."""
    venue = store.check_venue(opts.venue or stream.venue)
    symbol = stream.symbol.upper()
    _quarantine_bad_values(stream)
    c = stream.columns
    # Files sorted by (ts_local, original message order).
    n_out_of_order = int((np.diff(c["ts_local"]) < 0).sum()) if len(c["ts_local"]) > 1 else 0
    if n_out_of_order:
        order = np.argsort(c["ts_local"], kind="stable")
        c = {k: v[order] for k, v in c.items()}
    offset = _clock_offset(stream, opts.clock_correction)
    if offset:
        c["ts_local"] = c["ts_local"] + offset

    tick = opts.tick_size or stream.tick_size
    tick_src = "override" if opts.tick_size else ("source" if stream.tick_size else "inferred")
    if tick is None:
        priced = c["kind"] != Kind.CLEAR
        tick = infer_increment(c["price"][priced & (c["kind"] != Kind.TRADE)]) or infer_increment(c["price"][priced])
    lot = opts.lot_size or stream.lot_size
    lot_src = "override" if opts.lot_size else ("source" if stream.lot_size else "inferred")
    if lot is None:
        lot = infer_increment(c["qty"][c["qty"] > 0])
    if not tick or tick <= 0:
        raise DataError(f"{venue}/{symbol}: cannot infer tick size from the data; pass --tick-size")
    if not lot or lot <= 0:
        raise DataError(f"{venue}/{symbol}: cannot infer lot size from the data; pass --lot-size")

    sdir = store.symbol_dir(out_root, venue, symbol)
    meta = store.read_meta(out_root, venue, symbol) if (sdir / store.META_FILE).exists() else store.empty_meta(venue, symbol)
    new_hashes = sorted(s["sha256"] for s in stream.sources)
    day_idx = c["ts_exch"] // store.NS_PER_DAY
    day_counts = np.bincount(day_idx - day_idx.min()) if len(day_idx) else np.zeros(0, np.int64)
    days_new = [store.day_of_ns(int(day_idx.min() + k) * store.NS_PER_DAY) for k in np.flatnonzero(day_counts)]
    for day in days_new:
        owner = meta["days"].get(day)
        if owner and sorted(owner.get("source_sha256", [])) != new_hashes and not opts.overwrite:
            others = ", ".join(owner.get("source_files", [])) or "unknown files"
            raise DataError(
                f"{sdir}/date={day} already holds data ingested from other files ({others}); "
                "pass --overwrite to replace that day, or choose another --out root"
            )
    written = store.write_days(out_root, venue, symbol, c)
    kind_counts = np.bincount(c["kind"], minlength=1)
    for w in written:
        sel = day_idx == np.datetime64(w.day, "D").astype(np.int64)
        day_kinds = np.bincount(c["kind"][sel], minlength=1)
        meta["days"][w.day] = {
            "rows": w.rows,
            "files": list(w.files),
            "rows_by_kind": _kind_counts(day_kinds),
            "ts_local_min": int(c["ts_local"][sel].min()),
            "ts_local_max": int(c["ts_local"][sel].max()),
            "source_sha256": new_hashes,
            "source_files": [Path(s["path"]).name for s in stream.sources],
            # One constant shift per recording: days of different recordings keep their own.
            "clock_offset_ns": int(offset),
        }
    known = {s["sha256"] for s in meta["sources"]}
    meta["sources"] += [s for s in stream.sources if s["sha256"] not in known]
    meta["sources"] = sorted(meta["sources"], key=lambda s: s["path"])
    gap_keys = {(g.get("from_update_id"), g.get("to_update_id")) for g in meta["gaps"]}
    meta["gaps"] += [g for g in stream.gaps if (g.get("from_update_id"), g.get("to_update_id")) not in gap_keys]
    meta["quarantine"] = _merge_quarantine(meta["quarantine"], stream.quarantine)
    meta["tick_size"] = float(tick)
    meta["tick_size_source"] = tick_src
    meta["lot_size"] = float(lot)
    meta["lot_size_source"] = lot_src
    contract = dict(stream.contract or meta.get("contract") or {"type": "linear", "contract_size": 1.0})
    if opts.contract:
        contract["type"] = opts.contract
    if opts.contract_size:
        contract["contract_size"] = float(opts.contract_size)
    meta["contract"] = contract
    meta["feed_latency"] = stream.feed_latency or {"kind": "recorded"}
    meta["clock_offset_ns"] = int(offset)
    meta["clock_correction"] = bool(opts.clock_correction)
    meta["local_ts_unit"] = stream.local_ts_unit
    meta["rows_out_of_order_sorted"] = n_out_of_order
    meta["ingest"] = {
        "rows_in": int(stream.rows_in),
        "rows_written": int(len(c["ts_exch"])),
        "rows_quarantined": int(stream.rows_quarantined),
        "rows_by_kind": _kind_counts(kind_counts),
    }
    meta.update(stream.extra)
    meta["time_span"] = store.time_span(meta)
    if stream.rows_in != len(c["ts_exch"]) + stream.rows_quarantined:
        raise DataError(
            f"internal: {venue}/{symbol} rows do not reconcile: rows_in={stream.rows_in} != "
            f"written {len(c['ts_exch'])} + quarantined {stream.rows_quarantined}"
        )
    meta_path = store.write_meta(out_root, venue, symbol, meta)
    return IngestResult(
        venue=venue,
        symbol=symbol,
        rows_in=int(stream.rows_in),
        rows_written=int(len(c["ts_exch"])),
        rows_quarantined=int(stream.rows_quarantined),
        days=[w.day for w in written],
        gaps=len(stream.gaps),
        clock_offset_ns=int(offset),
        tick_size=float(tick),
        lot_size=float(lot),
        meta_path=str(meta_path),
    )


def _kind_counts(counts: np.ndarray) -> dict[str, int]:
    return {store.kind_name(k): int(v) for k, v in enumerate(counts) if v}


def _merge_quarantine(old: list[dict], new: list[dict]) -> list[dict]:
    seen = {(q.get("file"), q.get("line"), q.get("reason")) for q in old}
    out = list(old) + [q for q in new if (q.get("file"), q.get("line"), q.get("reason")) not in seen]
    return out[:MAX_QUARANTINE_ENTRIES]


def source_record(path: str | os.PathLike, **extra) -> dict:
    p = Path(path)
    rec = {"path": str(p.resolve()), "name": p.name, "sha256": file_sha256(p), "bytes": p.stat().st_size}
    rec.update(extra)
    return rec


# ------------------------------------------------------------------------------ sources without local receive time

#: Feed latency assumed for sources that carry no local receive time (venue history dumps, CSV archives):
#: a typical exchange -> co-located client websocket delay. Override with ``--feed-latency-ms``.
DEFAULT_FEED_LATENCY_MS = 10.0


def declared_feed_latency(opts: IngestOptions, what: str) -> tuple[int, dict]:
    """Declared feed latency (ns) and its ``_meta.json`` record for a source without local receive times.

    ``ts_local = ts_exch + latency``, made non-decreasing in the venue's message order (see
    :func:`declared_local_ns`) so that sorting by ``ts_local`` never reorders a venue's messages.
    """
    ms = DEFAULT_FEED_LATENCY_MS if opts.feed_latency_ms is None else float(opts.feed_latency_ms)
    if not np.isfinite(ms) or ms < 0:
        raise DataError(f"--feed-latency-ms must be a finite number >= 0, got {opts.feed_latency_ms!r}")
    latency_ns = int(round(ms * 1_000_000))
    origin = "--feed-latency-ms" if opts.feed_latency_ms is not None else f"default DEFAULT_FEED_LATENCY_MS={DEFAULT_FEED_LATENCY_MS:g}"
    return latency_ns, {
        "kind": "declared",
        "latency_ns": latency_ns,
        "reason": (
            f"{what} carries no local receive time: ts_local = ts_exch + {ms:g} ms ({origin}), "
            "made non-decreasing in message order"
        ),
    }


def declared_local_ns(ts_exch_ns: np.ndarray, latency_ns: int) -> np.ndarray:
    """``ts_exch + latency`` as a running maximum over rows in the venue's message order."""
    if len(ts_exch_ns) == 0:
        return np.asarray(ts_exch_ns, dtype=np.int64).copy()
    return np.maximum.accumulate(np.asarray(ts_exch_ns, dtype=np.int64) + np.int64(latency_ns))
