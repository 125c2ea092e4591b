"""Tardis.dev CSV datasets (plain or gzip) -> normalized event rows.

Data types (chosen from the file name as Tardis names its downloads, else from the header):

``incremental_book_L2`` (``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``)
    A run of consecutive ``is_snapshot=true`` rows becomes one CLEAR row (side 0) followed by SNAPSHOT rows;
    other rows become DEPTH rows (amount 0 deletes the level). ``batch_end`` is set where a group of rows
    sharing (timestamp, local_timestamp, is_snapshot) ends, and inside a snapshot run only at its last row
    (the book is consistent only after the whole snapshot).
``trades`` (``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``)
    TRADE rows, side buy -> +1, sell -> -1, ``unknown`` -> 0 (counted in ``extra["trades_unknown_side"]``);
    ``update_id`` = id where numeric, else -1; every trade ends its batch.
``book_snapshot_N`` (``exchange,symbol,timestamp,local_timestamp,asks[0].price,asks[0].amount,bids[0]...``)
    Each row becomes a CLEAR row + one SNAPSHOT row per non-empty level (bids, then asks).
``quotes`` (``exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount``)
    Two BBO rows (bid, ask) per quote; an empty side gives no row.

Other Tardis data types (liquidations, derivative_ticker, options_chain, book_ticker) are refused by file name
with a DataError: liquidations share the trades header and must not become TRADE rows.

Times: ``timestamp`` (exchange) and ``local_timestamp`` (Tardis' receive time) are µs in Tardis' downloads;
the unit of each column is taken from its magnitude (some republished samples use ns); ``--local-ts-unit``
overrides the local column's unit. Venue: ``tardis-<exchange>`` from the ``exchange`` column (``opts.venue``
renames it when the store is written). Book rows carry no sequence number: ``update_id`` = -1.

A row whose timestamps, side or numbers cannot be read is quarantined with its file, line and reason. CSV
reading uses polars with every column read as text, then cast, so one bad cell never fails the whole file.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from mmlab.data.ingest.common import (
    UNIT_TO_NS,
    IngestOptions,
    ParsedStream,
    detect_ts_unit,
    read_bytes,
    source_record,
)
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind, Side

__all__ = ["parse", "HEADERS"]

_BASE = ["exchange", "symbol", "timestamp", "local_timestamp"]
#: Expected header of each supported data type (book_snapshot_N: the first level shown; N levels follow).
HEADERS: dict[str, list[str]] = {
    "incremental_book_L2": _BASE + ["is_snapshot", "side", "price", "amount"],
    "trades": _BASE + ["id", "side", "price", "amount"],
    "book_snapshot": _BASE + ["asks[0].price", "asks[0].amount", "bids[0].price", "bids[0].amount"],
    "quotes": _BASE + ["ask_amount", "ask_price", "bid_price", "bid_amount"],
}
_LEVEL_COL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")
_INT64_DIGITS = re.compile(r"^\d{1,18}$")


#: Tardis data types with no event rows in the store (liquidations share the trades header: refuse by name).
_UNSUPPORTED = ("liquidations", "derivative_ticker", "options_chain", "book_ticker")


def _data_type(path: str, header: list[str]) -> str:
    name = Path(path).name.lower()
    for kind in _UNSUPPORTED:
        if kind in name:
            raise DataError(
                f"{path}: Tardis {kind} files have no place in the event store; ingest one of {', '.join(HEADERS)}"
            )
    if "incremental_book_l2" in name:
        return "incremental_book_L2"
    if "book_snapshot" in name:
        return "book_snapshot"
    if "quotes" in name:
        return "quotes"
    if "trades" in name:
        return "trades"
    cols = set(header)
    if any(_LEVEL_COL.match(c) for c in header):
        return "book_snapshot"
    # The data type whose header shares most columns with this one (ties: the order of HEADERS).
    best = max(HEADERS, key=lambda k: len(cols & set(HEADERS[k][4:])))
    if not cols & set(HEADERS[best][4:]):
        raise DataError(
            f"{path}: header {','.join(header)} matches no Tardis data type this reader knows; expected one of: "
            + "; ".join(f"{k}: {','.join(v)}" for k, v in HEADERS.items())
        )
    return best


def _check_columns(path: str, header: list[str], dtype: str) -> None:
    for col in HEADERS[dtype]:
        if col not in header:
            raise DataError(
                f"{path}: column {col!r} is missing from the {dtype} header {','.join(header)}; "
                f"expected header: {','.join(HEADERS[dtype])}{',...' if dtype == 'book_snapshot' else ''} "
                "(is this the Tardis CSV you meant, and is its first line the header?)"
            )


@dataclass
class _Rows:
    """Rows of one (exchange, symbol), appended per file in file order."""

    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    rows_in: int = 0
    quarantine: list[dict] = field(default_factory=list)
    rows_quarantined: int = 0
    rows_by_file: dict[str, int] = field(default_factory=dict)
    data_types: set = field(default_factory=set)
    unknown_side_trades: int = 0
    units: set = field(default_factory=set)


class _File:
    """One CSV read as text columns with their line numbers."""

    def __init__(self, path: str, opts: IngestOptions):
        self.path = path
        raw = read_bytes(path, allow_truncated=opts.allow_truncated)
        if not raw.strip():
            raise DataError(f"{path}: file is empty (expected a Tardis CSV with a header line)")
        try:
            self.df = pl.read_csv(io.BytesIO(raw), infer_schema=False, truncate_ragged_lines=True)
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{path}: not readable as CSV ({exc}); expected a Tardis CSV with a header line") from exc
        self.header = self.df.columns
        self.df = self.df.with_row_index("_line", offset=2)
        # Rows with an empty exchange/symbol are quarantined under the file's first named stream.
        for col in ("exchange", "symbol"):
            if col in self.header:
                first = self.df[col].drop_nulls()
                if len(first):
                    self.df = self.df.with_columns(pl.col(col).fill_null(first[0]))
        self.opts = opts
        self.units: dict[str, str] = {}

    def ts_ns(self, col: str) -> pl.Expr:
        """Nanosecond expression of a timestamp column; unit from the first value's magnitude."""
        vals = self.df[col].cast(pl.Int64, strict=False).drop_nulls()
        unit = self.opts.local_ts_unit if (col == "local_timestamp" and self.opts.local_ts_unit) else None
        if unit is None:
            unit = detect_ts_unit(float(vals[0])) if len(vals) else "us"
        self.units[col] = unit
        return pl.col(col).cast(pl.Int64, strict=False) * UNIT_TO_NS[unit]


def _quarantine_bad(rows_by_key: dict, f: _File, df: pl.DataFrame, bad: pl.Series, reason_expr: pl.Expr, rows_per_line) -> pl.DataFrame:
    """Move rows flagged in ``bad`` to quarantine (attributed to their symbol's stream); return the good rows."""
    if not bad.any():
        return df
    q = df.filter(bad).with_columns(reason_expr.alias("_reason"))
    n_rows = q.select(rows_per_line).to_series() if isinstance(rows_per_line, pl.Expr) else pl.Series([rows_per_line] * q.height)
    for (exch, sym, line, reason), n in zip(q.select("exchange", "symbol", "_line", "_reason").iter_rows(), n_rows):
        r = rows_by_key.setdefault((exch or "", (sym or "").upper()), _Rows())
        r.rows_in += int(n)
        r.rows_quarantined += int(n)
        r.rows_by_file[f.path] = r.rows_by_file.get(f.path, 0) + int(n)
        if len(r.quarantine) < 200:
            r.quarantine.append({"file": f.path, "line": int(line), "reason": reason, "rows": int(n)})
    return df.filter(~bad)


def _cast_check(col: str, dtype) -> pl.Expr:
    """True where a non-empty cell does not cast to ``dtype``."""
    return pl.col(col).is_not_null() & pl.col(col).cast(dtype, strict=False).is_null()


def _emit(rows_by_key: dict, f: _File, df: pl.DataFrame, build, dtype: str) -> None:
    for (exch, sym), g in df.group_by(["exchange", "symbol"], maintain_order=True):
        r = rows_by_key.setdefault((exch, sym.upper()), _Rows())
        cols, extra = build(g)
        n = len(cols["ts_exch"])
        r.parts.append(cols)
        r.rows_in += n
        r.rows_by_file[f.path] = r.rows_by_file.get(f.path, 0) + n
        r.data_types.add(dtype)
        r.unknown_side_trades += extra.get("unknown_side", 0)
        r.units.add(f.units.get("local_timestamp"))


def _ts_columns(f: _File, df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(f.ts_ns("timestamp").alias("_ts"), f.ts_ns("local_timestamp").alias("_lts"))


def _bad_ts(df: pl.DataFrame) -> tuple[pl.Series, pl.Expr]:
    if df["exchange"].is_null().all() or df["symbol"].is_null().all():
        raise DataError("a Tardis CSV has no exchange or symbol value in any row; check the file")
    bad = df["_ts"].is_null() | df["_lts"].is_null()
    reason = pl.format("unreadable timestamp: timestamp={} local_timestamp={}", pl.col("timestamp").fill_null(""), pl.col("local_timestamp").fill_null(""))
    return bad, reason


def _read_l2(f: _File, rows_by_key: dict) -> None:
    df = _ts_columns(f, f.df)
    df = df.with_columns(
        pl.col("is_snapshot").str.to_lowercase().replace_strict({"true": True, "false": False, "1": True, "0": False}, default=None, return_dtype=pl.Boolean).alias("_snap"),
        pl.col("side").str.to_lowercase().replace_strict({"bid": 1, "buy": 1, "ask": -1, "sell": -1}, default=None, return_dtype=pl.Int8).alias("_side"),
        pl.col("price").cast(pl.Float64, strict=False).alias("_price"),
        pl.col("amount").cast(pl.Float64, strict=False).alias("_qty"),
    )
    bad, reason = _bad_ts(df)
    df = _quarantine_bad(rows_by_key, f, df, bad, reason, 1)
    bad = df["_snap"].is_null() | df["_side"].is_null() | df["_price"].is_null() | df["_qty"].is_null()
    reason = pl.format(
        "bad incremental_book_L2 row: is_snapshot={} side={} price={} amount={}",
        *[pl.col(c).fill_null("") for c in ("is_snapshot", "side", "price", "amount")],
    )
    df = _quarantine_bad(rows_by_key, f, df, bad, reason, 1)

    def build(g: pl.DataFrame):
        ts = g["_ts"].to_numpy()
        lts = g["_lts"].to_numpy()
        snap = g["_snap"].to_numpy().astype(bool)
        n = len(ts)
        prev_snap = np.concatenate(([False], snap[:-1]))
        next_snap = np.concatenate((snap[1:], [False]))
        run_start = snap & ~prev_snap
        key_change = np.ones(n, dtype=bool)
        if n > 1:
            key_change[:-1] = (ts[1:] != ts[:-1]) | (lts[1:] != lts[:-1]) | (snap[1:] != snap[:-1])
        be = key_change & ~(snap & next_snap)
        # Output position of each input row: after every CLEAR inserted at or before it.
        pos = np.arange(n) + np.cumsum(run_start)
        m = n + int(run_start.sum())
        out = _empty(m)
        out["ts_exch"][pos] = ts
        out["ts_local"][pos] = lts
        out["kind"][pos] = np.where(snap, Kind.SNAPSHOT, Kind.DEPTH)
        out["side"][pos] = g["_side"].to_numpy()
        out["price"][pos] = g["_price"].to_numpy()
        out["qty"][pos] = g["_qty"].to_numpy()
        out["batch_end"][pos] = be
        cpos = pos[run_start] - 1
        out["ts_exch"][cpos] = ts[run_start]
        out["ts_local"][cpos] = lts[run_start]
        out["kind"][cpos] = Kind.CLEAR
        out["side"][cpos] = Side.BOTH
        out["price"][cpos] = 0.0
        out["qty"][cpos] = 0.0
        out["batch_end"][cpos] = False
        return out, {}

    _emit(rows_by_key, f, df, build, "incremental_book_L2")


def _read_trades(f: _File, rows_by_key: dict) -> None:
    df = _ts_columns(f, f.df)
    df = df.with_columns(
        pl.col("side").str.to_lowercase().replace_strict({"buy": 1, "sell": -1, "unknown": 0}, default=None, return_dtype=pl.Int8).alias("_side"),
        pl.col("price").cast(pl.Float64, strict=False).alias("_price"),
        pl.col("amount").cast(pl.Float64, strict=False).alias("_qty"),
        pl.when(pl.col("id").str.contains(_INT64_DIGITS.pattern)).then(pl.col("id").cast(pl.Int64, strict=False)).otherwise(-1).fill_null(-1).alias("_id"),
    )
    bad, reason = _bad_ts(df)
    df = _quarantine_bad(rows_by_key, f, df, bad, reason, 1)
    bad = df["_side"].is_null() | df["_price"].is_null() | df["_qty"].is_null()
    reason = pl.format("bad trades row: side={} price={} amount={}", *[pl.col(c).fill_null("") for c in ("side", "price", "amount")])
    df = _quarantine_bad(rows_by_key, f, df, bad, reason, 1)

    def build(g: pl.DataFrame):
        n = g.height
        out = _empty(n)
        out["ts_exch"][:] = g["_ts"].to_numpy()
        out["ts_local"][:] = g["_lts"].to_numpy()
        out["kind"][:] = Kind.TRADE
        side = g["_side"].to_numpy()
        out["side"][:] = side
        out["price"][:] = g["_price"].to_numpy()
        out["qty"][:] = g["_qty"].to_numpy()
        out["update_id"][:] = g["_id"].to_numpy()
        out["batch_end"][:] = True
        return out, {"unknown_side": int((side == 0).sum())}

    _emit(rows_by_key, f, df, build, "trades")


def _read_book_snapshot(f: _File, rows_by_key: dict) -> None:
    levels: dict[int, dict[str, str]] = {}
    for c in f.header:
        m = _LEVEL_COL.match(c)
        if m:
            levels.setdefault(int(m.group(2)), {})[f"{m.group(1)}.{m.group(3)}"] = c
    n_lv = max(levels) + 1
    for i in range(n_lv):
        for part in ("asks.price", "asks.amount", "bids.price", "bids.amount"):
            if part not in levels.get(i, {}):
                side, what = part.split(".")
                raise DataError(
                    f"{f.path}: column '{side}[{i}].{what}' is missing from the book_snapshot_{n_lv} header; expected "
                    f"{','.join(_BASE)},asks[0].price,asks[0].amount,bids[0].price,bids[0].amount,... "
                    f"(four columns per level, levels 0..{n_lv - 1})"
                )
    # Level cell order in the output: bids 0..N-1, then asks 0..N-1.
    price_cols = [f"bids[{i}].price" for i in range(n_lv)] + [f"asks[{i}].price" for i in range(n_lv)]
    qty_cols = [f"bids[{i}].amount" for i in range(n_lv)] + [f"asks[{i}].amount" for i in range(n_lv)]
    df = _ts_columns(f, f.df)
    bad, reason = _bad_ts(df)
    df = _quarantine_bad(rows_by_key, f, df, bad, reason, pl.sum_horizontal([pl.col(c).is_not_null() for c in price_cols]) + 1)
    # A level with text in either cell that is not a number is quarantined (one row); empty levels are absent.
    bad_cells = pl.sum_horizontal(
        [(_cast_check(p, pl.Float64) | _cast_check(q, pl.Float64) | (pl.col(p).is_null() != pl.col(q).is_null())) for p, q in zip(price_cols, qty_cols)]
    )
    df = df.with_columns(bad_cells.alias("_bad_levels"))
    bad = df["_bad_levels"] > 0
    if bad.any():
        q = df.filter(bad)
        for exch, sym, line, nb in q.select("exchange", "symbol", "_line", "_bad_levels").iter_rows():
            r = rows_by_key.setdefault((exch, sym.upper()), _Rows())
            r.rows_in += int(nb)
            r.rows_quarantined += int(nb)
            r.rows_by_file[f.path] = r.rows_by_file.get(f.path, 0) + int(nb)
            if len(r.quarantine) < 200:
                r.quarantine.append({"file": f.path, "line": int(line), "reason": f"book_snapshot row with {nb} unreadable level(s)", "rows": int(nb)})

    def build(g: pl.DataFrame):
        n = g.height
        px = np.column_stack([g[c].cast(pl.Float64, strict=False).to_numpy() for c in price_cols]) if n else np.empty((0, 2 * n_lv))
        qt = np.column_stack([g[c].cast(pl.Float64, strict=False).to_numpy() for c in qty_cols]) if n else np.empty((0, 2 * n_lv))
        valid = ~np.isnan(px) & ~np.isnan(qt)
        width = 1 + 2 * n_lv
        mask = np.concatenate([np.ones((n, 1), dtype=bool), valid], axis=1)
        kind = np.full((n, width), Kind.SNAPSHOT, dtype=np.uint8)
        kind[:, 0] = Kind.CLEAR
        side = np.empty((n, width), dtype=np.int8)
        side[:, 0] = Side.BOTH
        side[:, 1 : 1 + n_lv] = Side.BID
        side[:, 1 + n_lv :] = Side.ASK
        price = np.concatenate([np.zeros((n, 1)), np.nan_to_num(px)], axis=1)
        qty = np.concatenate([np.zeros((n, 1)), np.nan_to_num(qt)], axis=1)
        ts = np.repeat(g["_ts"].to_numpy()[:, None], width, axis=1)
        lts = np.repeat(g["_lts"].to_numpy()[:, None], width, axis=1)
        last = width - 1 - np.argmax(mask[:, ::-1], axis=1)
        be = np.zeros((n, width), dtype=bool)
        be[np.arange(n), last] = True
        out = {
            "ts_exch": ts[mask], "ts_local": lts[mask], "kind": kind[mask], "side": side[mask],
            "price": price[mask], "qty": qty[mask], "update_id": np.full(int(mask.sum()), -1, dtype=np.int64), "batch_end": be[mask],
        }
        return out, {}

    _emit(rows_by_key, f, df, build, f"book_snapshot_{n_lv}")


def _read_quotes(f: _File, rows_by_key: dict) -> None:
    df = _ts_columns(f, f.df)
    bad, reason = _bad_ts(df)
    df = _quarantine_bad(rows_by_key, f, df, bad, reason, pl.lit(2))
    bad = pl.any_horizontal(_cast_check(c, pl.Float64) for c in ("bid_price", "bid_amount", "ask_price", "ask_amount"))
    bad = df.select(bad | (pl.col("bid_price").is_null() != pl.col("bid_amount").is_null()) | (pl.col("ask_price").is_null() != pl.col("ask_amount").is_null())).to_series()
    reason = pl.format("bad quotes row: bid {}@{} ask {}@{}", *[pl.col(c).fill_null("") for c in ("bid_amount", "bid_price", "ask_amount", "ask_price")])
    df = _quarantine_bad(rows_by_key, f, df, bad, reason, pl.lit(2))

    def build(g: pl.DataFrame):
        n = g.height
        px = np.column_stack([g["bid_price"].cast(pl.Float64).to_numpy(), g["ask_price"].cast(pl.Float64).to_numpy()]) if n else np.empty((0, 2))
        qt = np.column_stack([g["bid_amount"].cast(pl.Float64).to_numpy(), g["ask_amount"].cast(pl.Float64).to_numpy()]) if n else np.empty((0, 2))
        mask = ~np.isnan(px)
        side = np.tile(np.array([Side.BID, Side.ASK], dtype=np.int8), (n, 1))
        last = 1 - np.argmax(mask[:, ::-1], axis=1)
        be = np.zeros((n, 2), dtype=bool)
        be[np.arange(n), last] = True
        k = int(mask.sum())
        out = {
            "ts_exch": np.repeat(g["_ts"].to_numpy()[:, None], 2, axis=1)[mask],
            "ts_local": np.repeat(g["_lts"].to_numpy()[:, None], 2, axis=1)[mask],
            "kind": np.full(k, Kind.BBO, dtype=np.uint8), "side": side[mask], "price": px[mask], "qty": qt[mask],
            "update_id": np.full(k, -1, dtype=np.int64), "batch_end": be[mask],
        }
        return out, {}

    _emit(rows_by_key, f, df, build, "quotes")


def _empty(n: int) -> dict[str, np.ndarray]:
    out = {c: np.zeros(n, dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}
    out["update_id"][:] = -1
    return out


_READERS = {"incremental_book_L2": _read_l2, "trades": _read_trades, "book_snapshot": _read_book_snapshot, "quotes": _read_quotes}


def parse(paths: list[str], *, venue: str | None, source: str, opts: IngestOptions) -> list[ParsedStream]:
    """Parse Tardis CSV files into one :class:`ParsedStream` per (exchange, symbol), venue ``tardis-<exchange>``.

    Files are read in the order given; the rows of several files (e.g. an L2 file and a trades file of one
    day, or consecutive days) join one stream per symbol, later sorted by ``ts_local`` when written.
    ``venue`` is unused (Tardis files name their exchange); ``opts.venue`` renames the venue at write time.
    """
    rows_by_key: dict[tuple[str, str], _Rows] = {}
    for path in paths:
        f = _File(path, opts)
        dtype = _data_type(path, f.header)
        _check_columns(path, f.header, dtype)
        _READERS[dtype](f, rows_by_key)
    streams = []
    records: dict[str, dict] = {}
    for (exch, sym), r in rows_by_key.items():
        if not r.parts and not r.rows_quarantined:
            continue
        cols = {c: np.concatenate([p[c] for p in r.parts]) if r.parts else np.empty(0, dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}
        cols = {c: np.ascontiguousarray(v, dtype=NUMPY_DTYPES[c]) for c, v in cols.items()}
        s = ParsedStream(venue=f"tardis-{exch.lower()}", symbol=sym, columns=cols)
        s.rows_in = r.rows_in
        for q in r.quarantine:
            s.add_quarantine(q["file"], q["line"], q["reason"], q["rows"])
        s.rows_quarantined = r.rows_quarantined
        for p, n in r.rows_by_file.items():
            if p not in records:
                records[p] = source_record(p)
            s.sources.append(dict(records[p], rows_in=n))
        s.feed_latency = {"kind": "recorded", "note": "Tardis local_timestamp (receive time of Tardis' recorder)"}
        units = sorted(u for u in r.units if u)
        s.local_ts_unit = "/".join(units) or None
        s.extra = {"tardis_data_types": sorted(r.data_types), "trades_unknown_side": r.unknown_side_trades}
        streams.append(s)
    return streams
