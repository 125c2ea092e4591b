"""Bybit v5 public market data -> normalized event rows.

Three file formats are read (plain, gzip or single-member zip; detected from the first non-empty line):

``cryptofeed``
    JSON lines ``{"t": "header"|"http"|"connect"|"send"|"recv", "conn", "ts", "data"}`` as written by
    cryptofeed's raw-data recorder. Each ``conn`` maps to its endpoint through the ``connect`` record's
    ``addr``: ``/v5/public/linear`` -> ``bybit-linear``, ``/v5/public/spot`` -> ``bybit-spot``. One file may hold
    both endpoints: a stream is produced for every (venue, symbol) found. ``ts`` (local receive time, seconds)
    is converted from its decimal text, not through a float, so the nanoseconds are the recorder's digits.
    REST ``instruments-info`` responses (``http`` records) give tick size (``priceFilter.tickSize``) and lot size
    (``lotSizeFilter.qtyStep`` for linear, ``basePrecision`` for spot).
``timestamped``
    ``<local_ts> <raw frame JSON>`` per line (the live recorder's format). The local timestamp is an integer
    whose unit is detected from its magnitude (``--local-ts-unit`` overrides) or decimal seconds.
``dump``
    Bybit's historical daily order book dumps (``<date>_<SYMBOL>_ob500.data``, usually zipped): one v5 frame
    per line and no local receive time. ``ts_local = ts_exch + declared feed latency``
    (``opts.feed_latency_ms``, default :data:`~mmlab.data.ingest.common.DEFAULT_FEED_LATENCY_MS` = 10 ms),
    made non-decreasing in line order; ``_meta.json`` records ``feed_latency`` as declared.

Venue: for ``cryptofeed`` files, from each connection's endpoint; the ``venue`` argument (sources
``bybit-linear`` / ``bybit-spot``) or ``opts.venue`` then keeps only that venue's streams. Files without
endpoint information (``timestamped``, ``dump``) use the ``venue`` argument, else ``opts.venue``, else
``bybit-linear`` (what Bybit's dumps and our recorder hold by default). Symbol: ``data.s`` of each frame.

Rows (ARCHITECTURE.md section 2):

- ``orderbook.*`` snapshot (or any frame with ``u == 1``, a service restart) -> one CLEAR row (side 0) followed
  by SNAPSHOT rows; delta -> DEPTH rows (size 0 deletes). ``ts_exch`` = ``cts`` if present else ``ts`` (ms),
  ``update_id`` = ``u``, ``batch_end`` on the last row of each frame.
- ``u`` must rise by exactly 1 per delta of one topic. Any other jump (or a fall) is a sequence gap: it is
  recorded in ``ParsedStream.gaps`` (both ``u`` values, time, file, line) and every delta of that topic is
  quarantined until the next snapshot. A delta repeating the previous ``u`` is quarantined alone (duplicate).
  Snapshots reset the sequence, so level 1's snapshot re-sent every 3 s with an unchanged ``u`` is no gap.
  Deltas that precede the first snapshot of a topic (a file that starts mid-recording) are kept and counted
  in ``extra["deltas_before_first_snapshot"]``; the simulator treats the book as unknown until a snapshot.
- When one symbol carries several order book depths, the deepest one is the book; the others are skipped
  and counted.
- ``publicTrade`` -> TRADE rows: side = taker side (``S``: Buy -> +1, Sell -> -1), ``ts_exch`` = ``T``,
  ``update_id`` = trade id ``i`` where numeric (spot), else -1 (linear ids are UUIDs).
- ``tickers``, ``kline``, ``allLiquidation``, subscription acks, pongs and other non-book frames are skipped and
  counted in ``extra["skipped_messages"]``.
- A frame that cannot be decoded is quarantined as one row with file, line and reason.

Decoding uses msgspec typed structs, so the key order of the JSON text never matters.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path

import msgspec
import numpy as np

from mmlab.data.ingest.common import (
    UNIT_TO_NS,
    ColumnBuilder,
    IngestOptions,
    ParsedStream,
    declared_feed_latency,
    detect_ts_unit,
    read_bytes,
    source_record,
)
from mmlab.errors import DataError
from mmlab.types import Kind, Side

__all__ = ["parse", "decimal_seconds_to_ns", "BYBIT_VENUES", "DEFAULT_VENUE", "decode_frame", "decode_book",
           "decode_trades", "frame_ts_exch_ns", "BookSequence", "book_step", "book_rows", "trade_rows",
           "instruments_from_body"]

#: Store venue of each public v5 endpoint.
ENDPOINT_VENUES = {"/v5/public/linear": "bybit-linear", "/v5/public/spot": "bybit-spot"}
BYBIT_VENUES = ("bybit-linear", "bybit-spot")
#: Venue of files that do not say which endpoint they came from.
DEFAULT_VENUE = "bybit-linear"
#: instruments-info ``category`` -> store venue.
CATEGORY_VENUES = {"linear": "bybit-linear", "spot": "bybit-spot"}

_INT64_MAX = (1 << 63) - 1
_PLAIN_DECIMAL = re.compile(r"\d+(\.\d*)?")
_TOPIC_HINT = re.compile(rb'"topic"\s*:\s*"([A-Za-z]+)\.(?:\d+\.)?([A-Za-z0-9]+)"')
_CONN_HINT = re.compile(rb'"conn"\s*:\s*"([^"]+)"')


# ------------------------------------------------------------------------------------------- wire structs


class _Record(msgspec.Struct):
    """One line of a cryptofeed raw capture."""

    t: str
    conn: str | None = None
    ts: msgspec.Raw = msgspec.Raw()  # kept as text: seconds with up to 7 decimals
    data: str | None = None
    addr: str | None = None
    url: str | None = None


class _Frame(msgspec.Struct):
    """Envelope of a v5 public websocket frame; ``data`` is decoded per topic."""

    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    cts: int | None = None
    data: msgspec.Raw = msgspec.Raw()
    op: str | None = None


class _Book(msgspec.Struct):
    s: str
    u: int
    b: list[tuple[float, float]] = []
    a: list[tuple[float, float]] = []


class _Trade(msgspec.Struct):
    T: int
    s: str
    S: str
    v: float
    p: float
    i: str | int | None = None


_record_decoder = msgspec.json.Decoder(_Record)
_frame_decoder = msgspec.json.Decoder(_Frame, strict=False)
# strict=False: prices and sizes arrive as decimal strings.
_book_decoder = msgspec.json.Decoder(_Book, strict=False)
_trades_decoder = msgspec.json.Decoder(list[_Trade], strict=False)


def _present(raw: msgspec.Raw) -> bool:
    return len(raw) > 0 and bytes(raw) != b"null"


def decimal_seconds_to_ns(text: bytes | str) -> int:
    """Epoch seconds written as decimal text -> int ns, exactly (digits past the 9th decimal are floored).

    Going through a float would lose the last digits: ``1786310819.526357 * 1e9`` is off by up to ~200 ns.

    >>> decimal_seconds_to_ns(b"1786310819.5264041")
    1786310819526404100
    """
    s = text.decode("ascii", "replace") if isinstance(text, (bytes, bytearray, memoryview)) else str(text)
    s = s.strip()
    if _PLAIN_DECIMAL.fullmatch(s):
        whole, _, frac = s.partition(".")
        return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    try:
        return int(Decimal(s).scaleb(9).to_integral_value(rounding=ROUND_FLOOR))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a decimal number of seconds: {s!r}") from exc


# ----------------------------------------------------------------------------- per-frame normalizer (shared)
#
# The one normalization of a v5 public frame into event rows: ``mmlab data ingest`` (below) and the live adapter
# (``live/venues/bybit.py``) both call these functions, so a recording replayed through ingest gives the rows
# the live runner built when it received the same frames.

#: Verdicts of :func:`book_step`: what to do with one order book frame.
BOOK_DELTA = 0  # apply its DEPTH rows
BOOK_SNAPSHOT = 1  # CLEAR + SNAPSHOT rows; the topic's sequence restarts here (an open gap closes)
BOOK_GAP = 2  # u jumped or went back: this delta and every later one are dropped until the next snapshot
BOOK_IN_GAP = 3  # a delta while a gap is open: dropped
BOOK_DUPLICATE = 4  # a delta repeating the previous delta's u: dropped
BOOK_UNKNOWN_TYPE = 5  # neither snapshot nor delta: dropped


def decode_frame(raw: bytes | str) -> _Frame:
    """Envelope of one v5 public frame (raises ``msgspec.DecodeError`` / ``ValidationError`` when corrupt)."""
    return _frame_decoder.decode(raw)


def decode_book(frame: _Frame) -> _Book | None:
    """``data`` of an orderbook frame, None when absent (raises msgspec errors when undecodable)."""
    return _book_decoder.decode(frame.data) if _present(frame.data) else None


def decode_trades(frame: _Frame) -> list[_Trade] | None:
    """``data`` of a publicTrade frame, None when absent (raises msgspec errors when undecodable)."""
    return _trades_decoder.decode(frame.data) if _present(frame.data) else None


def frame_ts_exch_ns(frame: _Frame) -> int | None:
    """Exchange time of a book frame, ns: ``cts`` (matching engine) if present, else ``ts``."""
    ms = frame.cts if frame.cts is not None else frame.ts
    return None if ms is None else int(ms) * 1_000_000


@dataclass
class BookSequence:
    """Sequence state of one orderbook topic (``u`` must rise by exactly 1 per delta)."""

    last_u: int | None = None
    in_gap: bool = False


def book_step(seq: BookSequence, frame_type: str | None, u: int) -> int:
    """Check one book frame against its topic's sequence, update ``seq`` and return a ``BOOK_*`` verdict.

    A snapshot (or any frame with ``u == 1``, a service restart) resets the sequence; a delta must carry
    ``prev_u + 1``. A delta repeating ``prev_u`` is a duplicate; any other jump opens a gap that only the next
    snapshot closes. Deltas before the first snapshot are applied (the caller may count them: ``last_u`` is None).
    """
    if frame_type == "snapshot" or u == 1:
        seq.last_u = u
        seq.in_gap = False
        return BOOK_SNAPSHOT
    if frame_type != "delta":
        return BOOK_UNKNOWN_TYPE
    if seq.in_gap:
        seq.last_u = u
        return BOOK_IN_GAP
    if seq.last_u is not None:
        if u == seq.last_u:
            return BOOK_DUPLICATE
        if u != seq.last_u + 1:
            seq.in_gap = True
            seq.last_u = u
            return BOOK_GAP
    seq.last_u = u
    return BOOK_DELTA


def book_rows(book: _Book, verdict: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows (kind, side, price, qty, batch_end) of a book frame whose verdict is BOOK_SNAPSHOT or BOOK_DELTA.

    Snapshot: one CLEAR row (side 0) then a SNAPSHOT row per level; delta: a DEPTH row per level (size 0
    deletes). ``batch_end`` marks the frame's last row.
    """
    price, qty, side = _levels(book.b, book.a)
    k = len(price)
    if verdict == BOOK_SNAPSHOT:
        kind = np.full(k + 1, int(Kind.SNAPSHOT), dtype=np.uint8)
        kind[0] = Kind.CLEAR
        side = np.concatenate([np.zeros(1, np.int8), side])
        price = np.concatenate([np.zeros(1), price])
        qty = np.concatenate([np.zeros(1), qty])
        k += 1
    else:
        kind = np.full(k, int(Kind.DEPTH), dtype=np.uint8)
    be = np.zeros(k, dtype=bool)
    if k:
        be[-1] = True
    return kind, side, price, qty, be


def trade_rows(group: list[_Trade]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TRADE rows (ts_exch, side, price, qty, update_id, keep) of one symbol's trades of a publicTrade frame.

    ``keep`` marks the input trades with a valid taker side ``S`` (Buy -> +1, Sell -> -1); the row arrays hold
    only those. ``ts_exch`` = ``T`` (ms -> ns); ``update_id`` = the trade id where numeric (spot), else -1.
    """
    k = len(group)
    keep = np.fromiter((tr.S in ("Buy", "Sell") for tr in group), dtype=bool, count=k)
    good = group if keep.all() else [tr for tr, ok in zip(group, keep) if ok]
    n = len(good)
    ts_exch = np.fromiter((tr.T for tr in good), dtype=np.int64, count=n) * 1_000_000
    side = np.fromiter((Side.BID if tr.S == "Buy" else Side.ASK for tr in good), dtype=np.int8, count=n)
    price = np.fromiter((tr.p for tr in good), dtype=np.float64, count=n)
    qty = np.fromiter((tr.v for tr in good), dtype=np.float64, count=n)
    uid = np.fromiter((_trade_id(tr.i) for tr in good), dtype=np.int64, count=n)
    return ts_exch, side, price, qty, uid, keep


def instruments_from_body(body: bytes | str) -> dict[tuple[str, str], dict]:
    """(venue, SYMBOL) -> {tick_size, lot_size, contract} of a REST ``/v5/market/instruments-info`` response.

    Lot size is ``lotSizeFilter.qtyStep`` for linear, ``basePrecision`` for spot. Unreadable bodies give {}.
    """
    out: dict[tuple[str, str], dict] = {}
    try:
        doc = msgspec.json.decode(body)
        result = doc["result"]
        venue = CATEGORY_VENUES.get(result.get("category"))
        items = result["list"]
    except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
        return out
    if venue is None:
        return out
    for it in items:
        try:
            tick = float(it["priceFilter"]["tickSize"])
            lots = it.get("lotSizeFilter") or {}
            lot = float(lots["qtyStep"] if venue == "bybit-linear" else lots["basePrecision"])
        except (KeyError, TypeError, ValueError):
            continue
        contract = {"type": "linear", "contract_size": 1.0}
        out[(venue, str(it.get("symbol", "")).upper())] = {"tick_size": tick, "lot_size": lot, "contract": contract}
    return out


# ------------------------------------------------------------------------------------------- accumulation


@dataclass
class _TopicStats:
    """Counts of one order book depth (or of trades: depth 0; or of undecodable frames: depth -1)."""

    rows_in: int = 0
    messages: int = 0
    rows_quarantined: int = 0
    quarantine: list[dict] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)
    deltas_before_snapshot: int = 0
    rows_by_file: Counter = field(default_factory=Counter)


@dataclass
class _BookSeq(BookSequence):
    """Sequence state of one orderbook topic plus the details of its open gap (for ``_meta.json``)."""

    gap: dict | None = None  # the open gap, quarantining deltas until the next snapshot
    gap_messages: int = 0


class _Acc:
    """Rows and counts of one (venue, symbol) while files are read."""

    def __init__(self, venue: str, symbol: str):
        self.venue = venue
        self.symbol = symbol
        self.rows = ColumnBuilder(1 << 12)
        # Per run of rows: first row and the book depth of its topic (0 = trades); runs merge while the depth repeats.
        self.run_start = array("q")
        self.run_depth = array("h")
        self.stats: dict[int, _TopicStats] = {}
        self.seq: dict[str, _BookSeq] = {}
        self.skipped: Counter = Counter()
        self.files: list[str] = []

    def stat(self, depth: int) -> _TopicStats:
        st = self.stats.get(depth)
        if st is None:
            st = self.stats[depth] = _TopicStats()
        return st

    def tag_rows(self, depth: int, rows: int) -> None:
        """Record that the last ``rows`` rows appended came from a topic of this depth."""
        if rows and (not self.run_depth or self.run_depth[-1] != depth):
            self.run_start.append(self.rows.n - rows)
            self.run_depth.append(depth)

    def row_depths(self) -> np.ndarray:
        starts = np.frombuffer(self.run_start, dtype=np.int64) if self.run_start else np.empty(0, np.int64)
        lengths = np.diff(np.append(starts, self.rows.n))
        return np.repeat(np.frombuffer(self.run_depth, dtype=np.int16) if self.run_depth else np.empty(0, np.int16), lengths)

    def note_file(self, path: str) -> None:
        if path not in self.files:
            self.files.append(path)


def _quarantine(st: _TopicStats, file: str, line: int | None, reason: str, rows: int) -> None:
    st.rows_quarantined += rows
    st.quarantine.append({"file": file, "line": line, "reason": reason, "rows": rows})


@dataclass
class _Ctx:
    opts: IngestOptions
    default_venue: str
    accs: dict[tuple[str, str], _Acc] = field(default_factory=dict)
    instruments: dict[tuple[str, str], dict] = field(default_factory=dict)
    conn_venue: dict[str, str | None] = field(default_factory=dict)
    control: Counter = field(default_factory=Counter)  # (venue, family) of frames bound to no symbol
    orphans: list[dict] = field(default_factory=list)  # undecodable frames not yet bound to a stream
    file_formats: dict[str, str] = field(default_factory=dict)
    declared: dict | None = None
    declared_ns: int = 0
    last_declared_ns: dict[str, int] = field(default_factory=dict)  # file -> last ts_local given (dumps)
    local_units: set = field(default_factory=set)

    def acc(self, venue: str, symbol: str) -> _Acc:
        key = (venue, symbol.upper())
        a = self.accs.get(key)
        if a is None:
            a = self.accs[key] = _Acc(venue, symbol.upper())
        return a


# ------------------------------------------------------------------------------------------------ frames


def _levels(bids: list, asks: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nb, na = len(bids), len(asks)
    lv = np.asarray(bids + asks, dtype=np.float64).reshape(nb + na, 2)
    side = np.empty(nb + na, dtype=np.int8)
    side[:nb] = Side.BID
    side[nb:] = Side.ASK
    return lv[:, 0], lv[:, 1], side


def _on_book(ctx: _Ctx, venue: str, frame: _Frame, ts_local_ns: int | None, file: str, line: int) -> None:
    topic = frame.topic or ""
    parts = topic.split(".")
    try:
        depth = int(parts[1]) if len(parts) >= 3 else 1
    except ValueError:
        depth = 1
    try:
        book = decode_book(frame)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        book, err = None, str(exc)
    else:
        err = "frame has no data"
    if book is None:
        symbol = parts[-1] if len(parts) >= 2 else None
        _orphan(ctx, venue, symbol, file, line, f"undecodable {topic or 'orderbook'} frame: {err}")
        return
    ts_exch = frame_ts_exch_ns(frame)
    if ts_exch is None:
        _orphan(ctx, venue, book.s, file, line, f"{topic} frame has neither cts nor ts")
        return
    if ts_local_ns is None:
        # No local clock: declared latency, never earlier than the previous line's (venue message order).
        ts_local_ns = max(ts_exch + ctx.declared_ns, ctx.last_declared_ns.get(file, ts_exch))
        ctx.last_declared_ns[file] = ts_local_ns
    acc = ctx.acc(venue, book.s)
    acc.note_file(file)
    st = acc.stat(depth)
    st.messages += 1
    seq = acc.seq.get(topic)
    if seq is None:
        seq = acc.seq[topic] = _BookSeq()
    u = int(book.u)
    n_levels = len(book.b) + len(book.a)
    prev_u = seq.last_u
    had_gap = seq.gap is not None
    verdict = book_step(seq, frame.type, u)
    if verdict == BOOK_SNAPSHOT:
        if had_gap:
            _close_gap(st, seq, f"re-synced from the snapshot at u={u} ({Path(file).name} line {line})")
        rows = n_levels + 1
        st.rows_in += rows
        st.rows_by_file[file] += rows
        kind, side, price, qty, be = book_rows(book, verdict)
        acc.rows.append_rows(ts_exch, ts_local_ns, kind, side, price, qty, u, be)
        acc.tag_rows(depth, rows)
        return
    if verdict == BOOK_UNKNOWN_TYPE:
        _orphan(ctx, venue, book.s, file, line, f"{topic} frame of unknown type {frame.type!r}")
        return
    st.rows_in += n_levels
    st.rows_by_file[file] += n_levels
    if verdict == BOOK_IN_GAP:
        seq.gap["rows_quarantined"] += n_levels
        seq.gap_messages += 1
        return
    if verdict == BOOK_DUPLICATE:
        _quarantine(st, file, line, f"{topic}: duplicate delta u={u} (the previous delta had the same u)", n_levels)
        return
    if verdict == BOOK_GAP:
        what = "jumped" if u > prev_u else "went back"
        seq.gap = {
            "topic": topic,
            "from_update_id": int(prev_u),
            "to_update_id": u,
            "ts_exch": ts_exch,
            "ts_local": int(ts_local_ns),
            "file": file,
            "line": line,
            "rows_quarantined": n_levels,
            "reason": f"{topic}: u {what} from {prev_u} to {u} (expected {prev_u + 1})",
            "handled": None,
        }
        seq.gap_messages = 1
        return
    if prev_u is None:
        st.deltas_before_snapshot += 1
    if n_levels == 0:
        return
    kind, side, price, qty, be = book_rows(book, verdict)
    acc.rows.append_rows(ts_exch, ts_local_ns, kind, side, price, qty, u, be)
    acc.tag_rows(depth, n_levels)


def _close_gap(st: _TopicStats, seq: _BookSeq, handled: str) -> None:
    gap = seq.gap
    gap["handled"] = handled
    gap["messages_quarantined"] = seq.gap_messages
    st.gaps.append(gap)
    _quarantine(
        st,
        gap["file"],
        gap["line"],
        f"{gap['reason']}: {gap['rows_quarantined']} rows of {seq.gap_messages} deltas quarantined; {handled}",
        gap["rows_quarantined"],
    )
    seq.gap = None
    seq.gap_messages = 0
    seq.in_gap = False


def _on_trades(ctx: _Ctx, venue: str, frame: _Frame, ts_local_ns: int | None, file: str, line: int) -> None:
    topic = frame.topic or ""
    try:
        trades = decode_trades(frame)
        err = "frame has no data"
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        trades, err = None, str(exc)
    if trades is None:
        _orphan(ctx, venue, topic.split(".")[-1] if "." in topic else None, file, line, f"undecodable {topic or 'publicTrade'} frame: {err}")
        return
    if not trades:
        return
    by_symbol: dict[str, list[_Trade]] = {}
    for tr in trades:
        by_symbol.setdefault(tr.s, []).append(tr)
    for symbol, group in by_symbol.items():
        acc = ctx.acc(venue, symbol)
        acc.note_file(file)
        st = acc.stat(0)
        st.messages += 1
        k = len(group)
        st.rows_in += k
        st.rows_by_file[file] += k
        ts_exch, side, price, qty, uid, keep = trade_rows(group)
        if ts_local_ns is None:
            all_exch = np.fromiter((tr.T for tr in group), dtype=np.int64, count=k) * 1_000_000
            local = all_exch + ctx.declared_ns
            local = np.maximum.accumulate(np.maximum(local, ctx.last_declared_ns.get(file, int(local[0]))))
            ctx.last_declared_ns[file] = int(local[-1])
            local = local[keep]
        else:
            local = ts_local_ns
        n_bad = k - len(ts_exch)
        if n_bad:
            first_bad = next(tr.S for tr, ok in zip(group, keep) if not ok)
            _quarantine(st, file, line, f"{topic}: trade side S={first_bad!r} is not Buy/Sell", n_bad)
        k = len(ts_exch)
        if k == 0:
            continue
        be = np.zeros(k, dtype=bool)
        be[-1] = True
        acc.rows.append_rows(ts_exch, local, Kind.TRADE, side, price, qty, uid, be)
        acc.tag_rows(0, k)


def _trade_id(i) -> int:
    if isinstance(i, int):
        return i if 0 <= i <= _INT64_MAX else -1
    if isinstance(i, str) and i.isdigit():
        v = int(i)
        return v if v <= _INT64_MAX else -1
    return -1


def _orphan(ctx: _Ctx, venue: str | None, symbol: str | None, file: str, line: int, reason: str) -> None:
    ctx.orphans.append({"venue": venue, "symbol": symbol.upper() if symbol else None, "file": file, "line": line, "reason": reason})


def _on_frame(ctx: _Ctx, venue: str, raw: bytes | str, ts_local_ns: int | None, file: str, line: int) -> None:
    try:
        frame = _frame_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        b = raw.encode() if isinstance(raw, str) else raw
        m = _TOPIC_HINT.search(b[:400])
        _orphan(ctx, venue, m.group(2).decode() if m else None, file, line, f"corrupt frame ({exc}): {b[:80]!r}")
        return
    topic = frame.topic
    if topic is None:
        ctx.control[(venue, f"op:{frame.op}" if frame.op else "untyped")] += 1
        return
    family = topic.split(".", 1)[0]
    if family == "orderbook":
        _on_book(ctx, venue, frame, ts_local_ns, file, line)
    elif family == "publicTrade":
        _on_trades(ctx, venue, frame, ts_local_ns, file, line)
    else:
        symbol = topic.rsplit(".", 1)[-1] if "." in topic else None
        if symbol:
            ctx.acc(venue, symbol).skipped[family] += 1
        else:
            ctx.control[(venue, family)] += 1


# ------------------------------------------------------------------------------------------------ files


def _detect_format(path: str, first: bytes) -> str:
    s = first.lstrip()
    if s.startswith(b"{"):
        try:
            rec = msgspec.json.decode(s)
        except msgspec.DecodeError:
            rec = None
        if isinstance(rec, dict):
            if rec.get("t") in ("header", "http", "connect", "send", "recv"):
                return "cryptofeed"
            if "topic" in rec or "op" in rec:
                return "dump"
        if b'"topic"' in s[:200]:
            return "dump"
    head = s.split(maxsplit=1)
    if len(head) == 2 and re.fullmatch(rb"\d+(\.\d+)?", head[0]) and head[1].startswith(b"{"):
        return "timestamped"
    raise DataError(
        f"{path}: first line {first[:120]!r} is no Bybit format this reader knows: expected a cryptofeed capture "
        '({"t":"recv","conn":...,"ts":...,"data":"<frame>"}), "<local_ts> <frame JSON>" lines, or a historical '
        "dump with one v5 frame per line (check --source)"
    )


def _read_cryptofeed(ctx: _Ctx, path: str, lines: list[bytes]) -> None:
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = _record_decoder.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            m = _TOPIC_HINT.search(line[:600].replace(b'\\"', b'"'))
            c = _CONN_HINT.search(line[:200])
            venue = ctx.conn_venue.get(c.group(1).decode()) if c else None
            _orphan(ctx, venue, m.group(2).decode() if m else None, path, lineno, f"corrupt capture line ({exc}): {line[:80]!r}")
            continue
        if rec.t == "connect":
            ctx.conn_venue[rec.conn] = _venue_of_addr(rec.addr)
            continue
        if rec.t == "http":
            _read_instruments(ctx, rec, path, lineno)
            continue
        if rec.t != "recv":
            continue
        venue = ctx.conn_venue.get(rec.conn, ctx.default_venue)
        if venue is None:
            ctx.control[(None, "unsupported endpoint")] += 1
            continue
        if rec.data is None or not _present(rec.ts):
            _orphan(ctx, venue, None, path, lineno, "recv record without data or ts")
            continue
        try:
            ts_local = decimal_seconds_to_ns(bytes(rec.ts))
        except ValueError as exc:
            _orphan(ctx, venue, None, path, lineno, f"recv record with bad ts: {exc}")
            continue
        _on_frame(ctx, venue, rec.data, ts_local, path, lineno)
    ctx.local_units.add("s")


def _venue_of_addr(addr: str | None) -> str | None:
    if not addr:
        return None
    for suffix, venue in ENDPOINT_VENUES.items():
        if addr.rstrip("/").endswith(suffix):
            return venue
    return None


def _read_instruments(ctx: _Ctx, rec: _Record, path: str, lineno: int) -> None:
    if not rec.url or "instruments-info" not in rec.url or not rec.data:
        return
    ctx.instruments.update(instruments_from_body(rec.data))


def _read_timestamped(ctx: _Ctx, path: str, lines: list[bytes], venue: str) -> None:
    unit = ctx.opts.local_ts_unit
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        head, _, raw = line.partition(b" ")
        try:
            if b"." in head:
                if unit not in (None, "s"):
                    raise ValueError(f"decimal local timestamp {head!r} with --local-ts-unit {unit}")
                ts_local = decimal_seconds_to_ns(head)
                ctx.local_units.add("s")
            else:
                v = int(head)
                if unit is None:
                    unit = detect_ts_unit(v)
                ts_local = v * UNIT_TO_NS[unit]
                ctx.local_units.add(unit)
        except (ValueError, DataError) as exc:
            m = _TOPIC_HINT.search(line[:400])
            _orphan(ctx, venue, m.group(2).decode() if m else None, path, lineno, f"bad local timestamp ({exc}): {line[:80]!r}")
            continue
        if raw.startswith(b'{"retCode"') and b'"priceFilter"' in raw:
            # A REST instruments-info response the live recorder wrote: tick and lot size of the source.
            ctx.instruments.update(instruments_from_body(raw))
            continue
        _on_frame(ctx, venue, raw, ts_local, path, lineno)


def _read_dump(ctx: _Ctx, path: str, lines: list[bytes], venue: str) -> None:
    if ctx.declared is None:
        ctx.declared_ns, ctx.declared = declared_feed_latency(ctx.opts, "Bybit historical order book dump")
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if line:
            _on_frame(ctx, venue, line, None, path, lineno)


# ------------------------------------------------------------------------------------------------ parse


def parse(paths: list[str], *, venue: str | None, source: str, opts: IngestOptions) -> list[ParsedStream]:
    """Parse Bybit v5 files into one :class:`ParsedStream` per (venue, symbol).

    Parameters
    ----------
    paths : capture files, read in the order given (several files of one recording continue one sequence).
    venue : ``bybit-linear`` / ``bybit-spot`` to keep only that venue's streams (sources of those names), or None
        (source ``bybit-dump``): every venue found; ``opts.venue``, if a Bybit venue, then filters the same way.
    source : the source name the caller dispatched on (recorded only).
    opts : ingest options; ``feed_latency_ms`` applies to dumps, ``local_ts_unit`` to timestamped lines.
    """
    wanted = venue or (opts.venue if opts.venue in BYBIT_VENUES else None)
    ctx = _Ctx(opts=opts, default_venue=wanted or DEFAULT_VENUE)
    for path in paths:
        data = read_bytes(path, allow_truncated=opts.allow_truncated)
        lines = data.split(b"\n")
        first = next((ln for ln in lines if ln.strip()), b"")
        if not first:
            raise DataError(f"{path}: file is empty (no Bybit frames to ingest)")
        fmt = _detect_format(path, first)
        ctx.file_formats[path] = fmt
        if fmt == "cryptofeed":
            _read_cryptofeed(ctx, path, lines)
        elif fmt == "timestamped":
            _read_timestamped(ctx, path, lines, ctx.default_venue)
        else:
            _read_dump(ctx, path, lines, ctx.default_venue)
    formats = set(ctx.file_formats.values())
    if "dump" in formats and len(formats) > 1:
        raise DataError(
            f"{', '.join(paths)}: dumps without local time cannot be ingested together with captures that have it "
            f"(formats {sorted(formats)}); ingest them separately"
        )
    return _finish(ctx, paths, wanted, source)


def _finish(ctx: _Ctx, paths: list[str], wanted: str | None, source: str) -> list[ParsedStream]:
    accs = {k: a for k, a in ctx.accs.items() if (wanted is None or k[0] == wanted) and a.rows.n + sum(s.rows_quarantined for s in a.stats.values()) > 0}
    if not accs:
        if ctx.orphans:
            o = ctx.orphans[0]
            raise DataError(
                f"{', '.join(paths)}: no decodable Bybit market data{' for ' + wanted if wanted else ''}; "
                f"{len(ctx.orphans)} bad lines, first at {o['file']} line {o['line']}: {o['reason']}"
            )
        return []
    # Undecodable frames go to the stream they name, else to a stream of their venue, else to the first stream.
    ordered = sorted(accs)
    for o in ctx.orphans:
        if wanted is not None and o["venue"] not in (None, wanted):
            continue
        key = (o["venue"], o["symbol"]) if o["venue"] and o["symbol"] else None
        if key not in accs:
            key = next((k for k in ordered if k[1] == o["symbol"] and (o["venue"] is None or k[0] == o["venue"])), None)
        if key is None:
            key = next((k for k in ordered if k[0] == o["venue"]), ordered[0])
        st = accs[key].stat(-1)
        st.rows_in += 1
        st.rows_by_file[o["file"]] += 1
        _quarantine(st, o["file"], o["line"], o["reason"], 1)
        accs[key].note_file(o["file"])
    hashes: dict[str, dict] = {}
    out = []
    for key in ordered:
        out.append(_to_stream(ctx, accs[key], hashes, source))
    return out


def _to_stream(ctx: _Ctx, acc: _Acc, hashes: dict, source: str) -> ParsedStream:
    for topic, seq in acc.seq.items():
        if seq.gap is not None:
            depth = int(topic.split(".")[1]) if topic.count(".") >= 2 and topic.split(".")[1].isdigit() else 1
            _close_gap(acc.stat(depth), seq, "no snapshot followed: rows quarantined to the end of the input")
    depths = sorted(d for d in acc.stats if d > 0)
    book_depth = depths[-1] if depths else None
    cols = acc.rows.columns()
    skipped = dict(acc.skipped)
    if len(depths) > 1:
        tags = acc.row_depths()
        keep = (tags <= 0) | (tags == book_depth)
        cols = {k: v[keep] for k, v in cols.items()}
        for d in depths[:-1]:
            skipped[f"orderbook.{d} (shallower than orderbook.{book_depth})"] = acc.stats.pop(d).messages
    for (venue, family), n in ctx.control.items():
        if venue == acc.venue:
            skipped[family] = skipped.get(family, 0) + n
    stats = list(acc.stats.values())
    stream = ParsedStream(venue=acc.venue, symbol=acc.symbol, columns=cols)
    stream.rows_in = sum(s.rows_in for s in stats)
    for s in stats:
        stream.gaps.extend(s.gaps)
        for q in s.quarantine:
            stream.add_quarantine(q["file"], q["line"], q["reason"], q["rows"])
    stream.gaps.sort(key=lambda g: (g["ts_local"], g["line"]))
    for f in acc.files:
        if f not in hashes:
            hashes[f] = source_record(f, format=ctx.file_formats.get(f))
        rec = dict(hashes[f])
        rec["rows_in"] = int(sum(s.rows_by_file.get(f, 0) for s in stats))
        stream.sources.append(rec)
    inst = ctx.instruments.get((acc.venue, acc.symbol))
    if inst:
        stream.tick_size = inst["tick_size"]
        stream.lot_size = inst["lot_size"]
        stream.contract = inst["contract"]
    if ctx.declared is not None:
        stream.feed_latency = dict(ctx.declared)
    else:
        stream.feed_latency = {"kind": "recorded"}
        stream.local_ts_unit = "/".join(sorted(ctx.local_units)) or None
    stream.extra = {
        "skipped_messages": dict(sorted(skipped.items())),
        "deltas_before_first_snapshot": int(sum(s.deltas_before_snapshot for s in stats)),
        "book_topic_depth": book_depth,
        "source_format": sorted({ctx.file_formats[f] for f in acc.files if f in ctx.file_formats}),
        "ingest_source": source,
    }
    return stream
