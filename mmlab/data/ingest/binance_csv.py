"""Binance historical-data files (CSV plain/gzip/zip, or parquet) -> normalized event rows.

File kinds (chosen from the header; files without a header are recognized by their column count and values):

depth (``symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu``)
    Rows of one message share (timestamp, first_update_id, last_update_id, update_type). ``snap`` messages
    become a CLEAR row (side 0) + SNAPSHOT rows (``update_id`` = the snapshot's last_update_id); ``set``
    messages become DEPTH rows (``update_id`` = last_update_id u). Sequencing follows Binance's rules: after a
    snapshot with id S, updates with u < S are stale (quarantined), the first applied update must straddle S
    (U <= S + 1 and u >= S, which covers both the USD-M and the spot wording), then each update's ``pu`` must
    equal the previous u (USD-M; where ``pu`` is absent or -1, as on spot: U == previous u + 1). A break is a
    sequence gap, recorded with the id the rule expected and the id received (``from_update_id`` /
    ``to_update_id``, as the websocket parser records them) plus the update's U, u and pu; updates are then
    quarantined until the next snapshot. Updates before the first snapshot are kept (counted in
    ``extra["deltas_before_first_snapshot"]``). Depth rows of all given files are merged and stably sorted by
    timestamp before sequencing.
trades (``id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]``), aggTrades
(``agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker``), and parquet trade
tables (``timestamp,trade_id,price,quantity,buyer_maker``)
    TRADE rows: side -1 when the buyer is the maker (a seller-aggressor trade), else +1; ``update_id`` = the
    (aggregate) trade id; every trade ends its batch.
bookTicker (``update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time``)
and parquet quote tables (``timestamp,symbol,ask_size,ask,bid_size,bid``)
    Two BBO rows (bid, ask) per line.

Time unit (ms or µs) is taken from the magnitude of each file's timestamps. None of these files has a local
receive time: ``ts_local = ts_exch + declared feed latency`` (``opts.feed_latency_ms``, default
:data:`~mmlab.data.ingest.common.DEFAULT_FEED_LATENCY_MS` = 10 ms), made non-decreasing in row order;
``_meta.json`` records the feed latency as declared.

Venue: ``opts.venue`` if given, else ``binance-usdm``. Symbol: the ``symbol`` column where present (``BTC/USDT``
-> ``BTCUSDT``), else ``opts.symbol``, else the file name's first token (``BTCUSDT-trades-2024-08-08.csv`` ->
``BTCUSDT``).
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
    declared_feed_latency,
    declared_local_ns,
    detect_ts_unit,
    read_bytes,
    source_record,
)
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind, Side

__all__ = ["parse", "DEFAULT_VENUE", "HEADERS"]

#: Venue of these files unless ``opts.venue`` says otherwise.
DEFAULT_VENUE = "binance-usdm"

#: Expected header of each file kind (what a missing-column error quotes).
HEADERS: dict[str, list[str]] = {
    "depth": ["symbol", "timestamp", "first_update_id", "last_update_id", "side", "update_type", "price", "qty", "pu"],
    "trades": ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"],
    "aggTrades": ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker"],
    "bookTicker": ["update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty", "transaction_time", "event_time"],
    "quotes": ["timestamp", "symbol", "ask_size", "ask", "bid_size", "bid"],
}
#: Canonical column -> accepted names, per kind (first match wins). ``pu`` and ``symbol`` are optional.
_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "depth": {c: (c,) for c in HEADERS["depth"]},
    "trades": {
        "id": ("id", "trade_id", "agg_trade_id", "a"),
        "price": ("price", "p"),
        "qty": ("qty", "quantity", "q"),
        "time": ("time", "transact_time", "timestamp", "T"),
        "is_buyer_maker": ("is_buyer_maker", "buyer_maker", "m"),
    },
    "quotes": {
        "time": ("transaction_time", "timestamp", "time", "event_time"),
        "bid": ("best_bid_price", "bid", "bid_price"),
        "bid_qty": ("best_bid_qty", "bid_size", "bid_qty"),
        "ask": ("best_ask_price", "ask", "ask_price"),
        "ask_qty": ("best_ask_qty", "ask_size", "ask_qty"),
        "update_id": ("update_id",),
    },
}
_OPTIONAL = {"pu", "symbol", "update_id"}
#: Header of files Binance publishes without one, by (kind, column count).
_HEADERLESS = {
    ("trades", 6): HEADERS["trades"],
    ("trades", 7): HEADERS["trades"] + ["is_best_match"],
    ("aggTrades", 7): HEADERS["aggTrades"],
    ("aggTrades", 8): HEADERS["aggTrades"] + ["is_best_match"],
    ("bookTicker", 7): HEADERS["bookTicker"],
}
_SYMBOL_IN_NAME = re.compile(r"^([A-Za-z0-9]+)[-_.]")
_NOT_SYMBOLS = {"trades", "aggtrades", "depth", "bookticker", "quotes", "data", "book", "snap", "update"}


# --------------------------------------------------------------------------------------------- reading files


def _read_frame(path: str, opts: IngestOptions) -> pl.DataFrame:
    """The file as text columns plus ``_line`` (1-based line of the row in the CSV; row number + 1 in parquet)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{path}: no such file (check the path given to `mmlab data ingest`)")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if p.suffix.lower() == ".parquet" or magic == b"PAR1":
        try:
            df = pl.read_parquet(path)
        except pl.exceptions.PolarsError as exc:
            raise DataError(f"{path}: unreadable parquet ({exc})") from exc
        df = df.with_columns(
            [pl.col(c).dt.epoch("ns") for c, t in df.schema.items() if isinstance(t, pl.Datetime)]
        ).with_columns(pl.all().cast(pl.String))
        return df.with_row_index("_line", offset=1)
    raw = read_bytes(path, allow_truncated=opts.allow_truncated)
    first = raw.lstrip().split(b"\n", 1)[0].strip()
    if not first:
        raise DataError(f"{path}: file is empty (expected a Binance historical-data CSV)")
    cells = first.decode("utf-8", "replace").split(",")
    has_header = not _is_number(cells[0])
    try:
        df = pl.read_csv(io.BytesIO(raw), has_header=has_header, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: not readable as CSV ({exc})") from exc
    if not has_header:
        kind = _headerless_kind(cells)
        names = _HEADERLESS.get((kind, len(cells))) if kind else None
        if names is None:
            raise DataError(
                f"{path}: first line {first[:100]!r} has no header and {len(cells)} columns, which matches no Binance file "
                "this reader knows; add the header line: " + " | ".join(",".join(h) for h in HEADERS.values())
            )
        df.columns = names
    return df.with_row_index("_line", offset=2 if has_header else 1)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _is_time(s: str) -> bool:
    return s.strip().isdigit() and int(s) >= 10**11


def _headerless_kind(cells: list[str]) -> str | None:
    if len(cells) >= 6 and _is_time(cells[4]):
        return "trades"
    if len(cells) >= 7 and _is_time(cells[5]):
        return "bookTicker" if _is_time(cells[6]) else "aggTrades"
    return None


def _kind(path: str, header: list[str]) -> str:
    cols = set(header)
    if cols & {"update_type", "first_update_id", "last_update_id"}:
        return "depth"
    if cols & {"best_bid_price", "best_ask_price", "bid", "ask", "bid_size", "ask_size"}:
        return "quotes"
    if cols & {"is_buyer_maker", "buyer_maker", "agg_trade_id", "trade_id", "quote_qty", "first_trade_id"}:
        return "trades"
    raise DataError(
        f"{path}: header {','.join(header)} matches no Binance historical-data file this reader knows; expected one of: "
        + " | ".join(",".join(h) for h in HEADERS.values())
    )


def _canonical(path: str, df: pl.DataFrame, kind: str) -> pl.DataFrame:
    """Rename the accepted column names of ``kind`` to canonical ones; a missing column is a DataError."""
    header = [c for c in df.columns if c != "_line"]
    renames = {}
    for canon, names in _SYNONYMS[kind].items():
        found = next((n for n in names if n in header), None)
        if found is None:
            if canon in _OPTIONAL:
                continue
            expected = {"depth": "depth", "quotes": "bookTicker", "trades": "trades"}[kind]
            raise DataError(
                f"{path}: column {canon!r} is missing from the header {','.join(header)}; expected header: "
                f"{','.join(HEADERS[expected])}"
                + (f" (or aggTrades: {','.join(HEADERS['aggTrades'])})" if kind == "trades" else "")
            )
        renames[found] = canon
    keep = ["_line"] + list(renames) + (["symbol"] if "symbol" in header and "symbol" not in renames else [])
    return df.select(keep).rename(renames)


# ----------------------------------------------------------------------------------------------- streams


@dataclass
class _Acc:
    """Rows of one symbol, per file kind, with counts."""

    parts: list[dict[str, np.ndarray]] = field(default_factory=list)
    rows_in: int = 0
    rows_quarantined: int = 0
    quarantine: list[dict] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)
    rows_by_file: dict[str, int] = field(default_factory=dict)
    kinds: set = field(default_factory=set)
    deltas_before_snapshot: int = 0
    stale_updates: int = 0

    def count(self, file: str, n: int) -> None:
        self.rows_in += n
        self.rows_by_file[file] = self.rows_by_file.get(file, 0) + n

    def quarantine_rows(self, file: str, line: int | None, reason: str, n: int) -> None:
        self.rows_quarantined += n
        if len(self.quarantine) < 200:
            self.quarantine.append({"file": file, "line": line, "reason": reason, "rows": n})


def _file_symbol(path: str, opts: IngestOptions) -> str:
    if opts.symbol:
        return opts.symbol.upper()
    m = _SYMBOL_IN_NAME.match(Path(path).name)
    if m is None or m.group(1).lower() in _NOT_SYMBOLS:
        raise DataError(f"{path}: the file has no symbol column and its name does not start with one; pass --symbol")
    return m.group(1).upper()


def _ts_ns(df: pl.DataFrame, col: str) -> tuple[pl.Expr, str]:
    vals = df[col].cast(pl.Int64, strict=False).drop_nulls()
    unit = detect_ts_unit(float(vals[0])) if len(vals) else "ms"
    return pl.col(col).cast(pl.Int64, strict=False) * UNIT_TO_NS[unit], unit


def _bool_expr(col: str) -> pl.Expr:
    return pl.col(col).str.to_lowercase().replace_strict({"true": True, "false": False, "1": True, "0": False}, default=None, return_dtype=pl.Boolean)


def _split_bad(accs: dict, path: str, df: pl.DataFrame, bad: pl.Expr, reason: pl.Expr, rows: int) -> pl.DataFrame:
    flagged = df.select(bad.fill_null(True)).to_series()
    if not flagged.any():
        return df
    q = df.filter(flagged).with_columns(reason.alias("_reason"))
    for sym, line, why in q.select("_symbol", "_line", "_reason").iter_rows():
        acc = accs.setdefault(sym, _Acc())
        acc.count(path, rows)
        acc.quarantine_rows(path, int(line), why, rows)
    return df.filter(~flagged)


def _read_trades(path: str, df: pl.DataFrame, accs: dict, latency_ns: int) -> None:
    t, _unit = _ts_ns(df, "time")
    df = df.with_columns(
        t.alias("_ts"),
        pl.col("price").cast(pl.Float64, strict=False).alias("_price"),
        pl.col("qty").cast(pl.Float64, strict=False).alias("_qty"),
        pl.col("id").cast(pl.Int64, strict=False).alias("_id"),
        _bool_expr("is_buyer_maker").alias("_maker"),
    )
    bad = pl.col("_ts").is_null() | pl.col("_price").is_null() | pl.col("_qty").is_null() | pl.col("_maker").is_null()
    why = pl.format("bad trade row: time={} price={} qty={} is_buyer_maker={}", *[pl.col(c).fill_null("") for c in ("time", "price", "qty", "is_buyer_maker")])
    df = _split_bad(accs, path, df, bad, why, 1)
    for (sym,), g in df.group_by(["_symbol"], maintain_order=True):
        n = g.height
        ts = g["_ts"].to_numpy()
        cols = {
            "ts_exch": ts,
            "ts_local": declared_local_ns(ts, latency_ns),
            "kind": np.full(n, Kind.TRADE, dtype=np.uint8),
            # is_buyer_maker: the buyer rested, so the seller took liquidity.
            "side": np.where(g["_maker"].to_numpy(), Side.ASK, Side.BID).astype(np.int8),
            "price": g["_price"].to_numpy(),
            "qty": g["_qty"].to_numpy(),
            "update_id": g["_id"].fill_null(-1).to_numpy(),
            "batch_end": np.ones(n, dtype=bool),
        }
        acc = accs.setdefault(sym, _Acc())
        acc.parts.append(cols)
        acc.count(path, n)
        acc.kinds.add("trades")


def _read_quotes(path: str, df: pl.DataFrame, accs: dict, latency_ns: int) -> None:
    t, _unit = _ts_ns(df, "time")
    uid = pl.col("update_id").cast(pl.Int64, strict=False).fill_null(-1) if "update_id" in df.columns else pl.lit(-1, dtype=pl.Int64)
    df = df.with_columns(
        t.alias("_ts"), uid.alias("_uid"),
        *[pl.col(c).cast(pl.Float64, strict=False).alias(f"_{c}") for c in ("bid", "bid_qty", "ask", "ask_qty")],
    )
    bad = pl.col("_ts").is_null() | pl.any_horizontal(pl.col(f"_{c}").is_null() for c in ("bid", "bid_qty", "ask", "ask_qty"))
    why = pl.format("bad quote row: time={} bid {}@{} ask {}@{}", *[pl.col(c).fill_null("") for c in ("time", "bid_qty", "bid", "ask_qty", "ask")])
    df = _split_bad(accs, path, df, bad, why, 2)
    for (sym,), g in df.group_by(["_symbol"], maintain_order=True):
        n = g.height
        ts = np.repeat(g["_ts"].to_numpy(), 2)
        cols = {
            "ts_exch": ts,
            "ts_local": declared_local_ns(ts, latency_ns),
            "kind": np.full(2 * n, Kind.BBO, dtype=np.uint8),
            "side": np.tile(np.array([Side.BID, Side.ASK], dtype=np.int8), n),
            "price": np.column_stack([g["_bid"].to_numpy(), g["_ask"].to_numpy()]).ravel(),
            "qty": np.column_stack([g["_bid_qty"].to_numpy(), g["_ask_qty"].to_numpy()]).ravel(),
            "update_id": np.repeat(g["_uid"].to_numpy(), 2),
            "batch_end": np.tile(np.array([False, True]), n),
        }
        acc = accs.setdefault(sym, _Acc())
        acc.parts.append(cols)
        acc.count(path, 2 * n)
        acc.kinds.add("quotes")


def _prepare_depth(path: str, df: pl.DataFrame, accs: dict) -> pl.DataFrame:
    t, _unit = _ts_ns(df, "timestamp")
    pu = pl.col("pu").cast(pl.Int64, strict=False) if "pu" in df.columns else pl.lit(None, dtype=pl.Int64)
    df = df.with_columns(
        t.alias("_ts"),
        pl.col("first_update_id").cast(pl.Int64, strict=False).alias("_U"),
        pl.col("last_update_id").cast(pl.Int64, strict=False).alias("_u"),
        pu.alias("_pu"),
        pl.col("side").str.to_lowercase().replace_strict({"b": 1, "bid": 1, "a": -1, "ask": -1}, default=None, return_dtype=pl.Int8).alias("_side"),
        pl.col("update_type").str.to_lowercase().replace_strict({"snap": True, "set": False}, default=None, return_dtype=pl.Boolean).alias("_snap"),
        pl.col("price").cast(pl.Float64, strict=False).alias("_price"),
        pl.col("qty").cast(pl.Float64, strict=False).alias("_qty"),
        pl.lit(path).alias("_file"),
    )
    bad = pl.any_horizontal(pl.col(c).is_null() for c in ("_ts", "_U", "_u", "_side", "_snap", "_price", "_qty"))
    why = pl.format(
        "bad depth row: timestamp={} first_update_id={} last_update_id={} side={} update_type={} price={} qty={}",
        *[pl.col(c).fill_null("") for c in ("timestamp", "first_update_id", "last_update_id", "side", "update_type", "price", "qty")],
    )
    df = _split_bad(accs, path, df, bad, why, 1)
    return df.select("_symbol", "_line", "_file", "_ts", "_U", "_u", "_pu", "_side", "_snap", "_price", "_qty")


def _sequence_depth(df: pl.DataFrame, accs: dict, latency_ns: int) -> None:
    """Apply Binance's sync rules to merged depth rows (all files) of each symbol; emit rows and gaps."""
    for (sym,), g in df.group_by(["_symbol"], maintain_order=True):
        g = g.sort("_ts", maintain_order=True)
        acc = accs.setdefault(sym, _Acc())
        acc.kinds.add("depth")
        n = g.height
        ts = g["_ts"].to_numpy()
        U = g["_U"].to_numpy()
        u = g["_u"].to_numpy()
        pu = g["_pu"].fill_null(-1).to_numpy()
        snap = g["_snap"].to_numpy().astype(bool)
        files = g["_file"].to_list()
        lines = g["_line"].to_numpy()
        # Message boundaries: rows sharing (timestamp, U, u, update_type) are one message.
        start = np.ones(n, dtype=bool)
        start[1:] = (ts[1:] != ts[:-1]) | (U[1:] != U[:-1]) | (u[1:] != u[:-1]) | (snap[1:] != snap[:-1])
        starts = np.flatnonzero(start)
        ends = np.append(starts[1:], n)
        keep_msg = np.ones(len(starts), dtype=bool)
        last_u: int | None = None
        snap_id: int | None = None  # set right after a snapshot until the first update is applied
        gap: dict | None = None
        gap_msgs = 0

        def close_gap(handled: str) -> None:
            nonlocal gap, gap_msgs
            gap["handled"] = handled
            gap["messages_quarantined"] = gap_msgs
            acc.gaps.append(gap)
            acc.quarantine_rows(gap["file"], gap["line"], f"{gap['reason']}: {gap['rows_quarantined']} rows of {gap_msgs} updates quarantined; {handled}", gap["rows_quarantined"])
            gap, gap_msgs = None, 0

        for k, (s, e) in enumerate(zip(starts, ends)):
            rows = int(e - s)
            acc.count(files[s], rows + (1 if snap[s] else 0))
            if snap[s]:
                if gap is not None:
                    close_gap(f"re-synced from the snapshot lastUpdateId={int(u[s])} ({Path(files[s]).name} line {int(lines[s])})")
                last_u = snap_id = int(u[s])
                continue
            U_k, u_k, pu_k = int(U[s]), int(u[s]), int(pu[s])
            if gap is not None:
                keep_msg[k] = False
                gap["rows_quarantined"] += rows
                gap_msgs += 1
                continue
            if last_u is None:
                acc.deltas_before_snapshot += 1
                last_u = u_k
                continue
            if snap_id is not None:
                if u_k < snap_id:
                    keep_msg[k] = False
                    acc.stale_updates += 1
                    acc.quarantine_rows(files[s], int(lines[s]), f"update u={u_k} precedes the snapshot lastUpdateId={snap_id} (superseded by it)", rows)
                    continue
                ok = U_k <= snap_id + 1
                want, got = snap_id, U_k
                rule = f"first update after the snapshot must have U <= {snap_id + 1} <= u, got U={U_k}"
            elif pu_k >= 0:
                ok = pu_k == last_u
                want, got = last_u, pu_k
                rule = f"pu must equal the previous u {last_u}, got pu={pu_k}"
            else:
                ok = U_k == last_u + 1
                want, got = last_u + 1, U_k
                rule = f"U must be the previous u + 1 = {last_u + 1}, got U={U_k}"
            if ok:
                last_u, snap_id = u_k, None
                continue
            keep_msg[k] = False
            if u_k == last_u:
                acc.quarantine_rows(files[s], int(lines[s]), f"duplicate update u={u_k}", rows)
                continue
            # from/to = the id the rule expected and the id received, as the websocket parser records them.
            gap = {
                "from_update_id": int(want),
                "to_update_id": int(got),
                "first_update_id": U_k,
                "last_update_id": u_k,
                "pu": pu_k,
                "ts_exch": int(ts[s]),
                "ts_local": int(ts[s]) + latency_ns,
                "file": files[s],
                "line": int(lines[s]),
                "rows_quarantined": rows,
                "reason": f"sequence gap after u={last_u}: update U={U_k}..u={u_k} ({rule})",
                "handled": None,
            }
            gap_msgs = 1
            last_u, snap_id = u_k, None
        if gap is not None:
            close_gap("no snapshot followed: rows quarantined to the end of the input")
        # Kept rows in order, with a CLEAR row before each snapshot message.
        msg_of_row = np.repeat(np.arange(len(starts)), ends - starts)
        keep = keep_msg[msg_of_row]
        first = start[keep]
        is_snap = snap[keep]
        last = np.zeros(n, dtype=bool)
        last[ends - 1] = True
        last = last[keep]
        m = int(keep.sum())
        clear_at = first & is_snap
        pos = np.arange(m) + np.cumsum(clear_at)
        total = m + int(clear_at.sum())
        out = {c: np.zeros(total, dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}
        ts_k, u_keep = ts[keep], u[keep]
        out["ts_exch"][pos] = ts_k
        out["kind"][pos] = np.where(is_snap, Kind.SNAPSHOT, Kind.DEPTH)
        out["side"][pos] = g["_side"].to_numpy()[keep]
        out["price"][pos] = g["_price"].to_numpy()[keep]
        out["qty"][pos] = g["_qty"].to_numpy()[keep]
        out["update_id"][pos] = u_keep
        out["batch_end"][pos] = last
        cpos = pos[clear_at] - 1
        out["ts_exch"][cpos] = ts_k[clear_at]
        out["kind"][cpos] = Kind.CLEAR
        out["side"][cpos] = Side.BOTH
        out["update_id"][cpos] = u_keep[clear_at]
        out["ts_local"] = declared_local_ns(out["ts_exch"], latency_ns)
        acc.parts.append(out)


def parse(paths: list[str], *, venue: str | None, source: str, opts: IngestOptions) -> list[ParsedStream]:
    """Parse Binance historical-data files into one :class:`ParsedStream` per symbol.

    ``venue`` is None for this format source: the venue is ``opts.venue`` if given, else ``binance-usdm``.
    """
    venue = venue or opts.venue or DEFAULT_VENUE
    latency_ns, latency_meta = declared_feed_latency(opts, "Binance historical-data file")
    accs: dict[str, _Acc] = {}
    depth_frames = []
    for path in paths:
        df = _read_frame(path, opts)
        header = [c for c in df.columns if c != "_line"]
        kind = _kind(path, header)
        df = _canonical(path, df, kind)
        if "symbol" in df.columns:
            fallback = _file_symbol(path, opts) if df["symbol"].is_null().any() else ""
            df = df.with_columns(pl.col("symbol").str.replace_all(r"[/\-_]", "").str.to_uppercase().fill_null(fallback).alias("_symbol"))
        else:
            df = df.with_columns(pl.lit(_file_symbol(path, opts)).alias("_symbol"))
        if df.height == 0:
            continue
        if kind == "depth":
            depth_frames.append(_prepare_depth(path, df, accs))
        elif kind == "trades":
            _read_trades(path, df, accs, latency_ns)
        else:
            _read_quotes(path, df, accs, latency_ns)
    if depth_frames:
        _sequence_depth(pl.concat(depth_frames), accs, latency_ns)
    streams = []
    records: dict[str, dict] = {}
    for sym, acc in accs.items():
        cols = {c: np.concatenate([p[c] for p in acc.parts]) if acc.parts else np.empty(0) for c in EVENT_COLUMNS}
        cols = {c: np.ascontiguousarray(v, dtype=NUMPY_DTYPES[c]) for c, v in cols.items()}
        s = ParsedStream(venue=venue, symbol=sym, columns=cols)
        s.rows_in = acc.rows_in
        s.gaps = acc.gaps
        for q in acc.quarantine:
            s.add_quarantine(q["file"], q["line"], q["reason"], q["rows"])
        s.rows_quarantined = acc.rows_quarantined
        for p, n in acc.rows_by_file.items():
            if p not in records:
                records[p] = source_record(p)
            s.sources.append(dict(records[p], rows_in=n))
        s.feed_latency = dict(latency_meta)
        s.extra = {
            "binance_file_kinds": sorted(acc.kinds),
            "deltas_before_first_snapshot": acc.deltas_before_snapshot,
            "stale_updates_quarantined": acc.stale_updates,
        }
        streams.append(s)
    return streams
