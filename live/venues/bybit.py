"""Bybit v5 public websocket (``/v5/public/linear`` and ``/v5/public/spot``): orderbook.{depth} + publicTrade.

Frames are normalized by the functions ``mmlab data ingest`` uses for Bybit recordings
(:mod:`mmlab.data.ingest.bybit`: ``decode_frame``, ``book_step``, ``book_rows``, ``trade_rows``), so the rows
built here equal the rows an ingest of the runner's recording stores. Sequence rules (VENUES.md): a snapshot
(or ``u == 1``) resets a topic; a delta must carry ``prev_u + 1``; a jump opens a gap: the symbol's book is
invalid and the topic is resubscribed, which makes Bybit send a fresh snapshot.

>>> a = Adapter("bybit-linear", ["BTCUSDT"], {"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}}, book_depth=50)
>>> a.subscribe_messages()
['{"op":"subscribe","args":["orderbook.50.BTCUSDT","publicTrade.BTCUSDT"]}']
"""

from __future__ import annotations

import json

import msgspec
import numpy as np
from numba import njit, typeof, types

from live.venues.common import (
    M_A,
    M_B,
    M_NROW,
    M_ROW0,
    M_SID,
    M_STATUS,
    SLOW,
    EventBuffer,
    Frame,
    FrameBatch,
    _number_nb,
    _skip_value_nb,
    _skip_ws_nb,
    book_frame_rows_nb,
    book_level_rows_nb,
    book_levels_nb,
    commit_rows_nb,
    entry_point,
    njit_no_refcount,
    put_row_nb,
    symbol_ticks,
)
from mmlab.data.ingest import bybit as norm
from mmlab.errors import ConfigError, DataError
from mmlab.types import Kind

#: Public websocket and REST endpoints per store venue.
WS_URLS = {"bybit-linear": "wss://stream.bybit.com/v5/public/linear", "bybit-spot": "wss://stream.bybit.com/v5/public/spot"}
REST_URL = "https://api.bybit.com"
CATEGORIES = {"bybit-linear": "linear", "bybit-spot": "spot"}
#: Order book depths of the public stream (linear and spot).
DEPTHS = (1, 50, 200, 1000)


class _BookHead(msgspec.Struct):
    """``data`` of an orderbook frame without its levels (skipped by the decoder, parsed from the bytes)."""

    s: str
    u: int


# strict=False as the ingest's decoder: numbers may arrive as strings.
_book_head_decoder = msgspec.json.Decoder(_BookHead, strict=False)


class Adapter:
    """One Bybit v5 public connection's symbols: subscriptions, sequence state and frame -> rows."""

    ping_message = '{"op":"ping"}'

    def __init__(self, venue: str, symbols: list[str], instruments: dict, *, book_depth: int = 50):
        if venue not in WS_URLS:
            raise ConfigError(f"[live] venue {venue!r} is not a Bybit venue; use one of {sorted(WS_URLS)}")
        if book_depth not in DEPTHS:
            raise ConfigError(f"[live] book_depth = {book_depth} is no Bybit orderbook depth; use one of {DEPTHS}")
        self.venue = venue
        self.symbols, self.sid, self.tick = symbol_ticks(venue, symbols, instruments, "instruments-info")
        self.depth = int(book_depth)
        self.seq = [norm.BookSequence() for _ in self.symbols]
        #: the symbol's book is consistent (a snapshot arrived and no gap opened since)
        self.book_valid = np.zeros(len(self.symbols), dtype=bool)
        self.gaps: list[dict] = []  # every gap seen: symbol, from/to u, local time
        self.last_data_ns = np.zeros(len(self.symbols), dtype=np.int64)
        self._book_nb = None  # compiled entry of book_frame_rows_nb
        self._frames_nb = None  # compiled entry of bybit_frames_nb (set by warm())
        self._batch = FrameBatch()
        names = [s.encode() for s in self.symbols]
        self._sym_buf = np.frombuffer(b"".join(names) or b"\0", dtype=np.uint8)
        self._sym_off = np.concatenate([[0], np.cumsum([len(x) for x in names])]).astype(np.int64)
        self._book_prefix = np.frombuffer(f"orderbook.{self.depth}.".encode(), dtype=np.uint8)
        self._groups = np.zeros(64, dtype=np.int64)
        #: the batch kernel marks trade symbols in an int64 bitmask: more symbols take the per-frame decoder
        self._batch_ok = len(self.symbols) <= 62

    # -------------------------------------------------------------------------------------- connection

    def ws_url(self, override: str | None = None) -> str:
        return override or WS_URLS[self.venue]

    def book_topic(self, symbol: str) -> str:
        return f"orderbook.{self.depth}.{symbol}"

    def subscribe_messages(self) -> list[str]:
        args = []
        for s in self.symbols:
            args += [self.book_topic(s), f"publicTrade.{s}"]
        return [json.dumps({"op": "subscribe", "args": args}, separators=(",", ":"))]

    def resubscribe_messages(self, symbol_id: int) -> list[str]:
        """Unsubscribe + subscribe the symbol's book topic: Bybit answers with a fresh snapshot."""
        topic = self.book_topic(self.symbols[symbol_id])
        return [json.dumps({"op": op, "args": [topic]}, separators=(",", ":")) for op in ("unsubscribe", "subscribe")]

    def warm(self, out: EventBuffer) -> None:
        """Load (or compile) the frame kernels before the first frame, so a cold cache never stalls the feed."""
        out.warm()
        if self._book_nb is None:
            data = np.zeros(0, np.uint8)
            self._book_nb = entry_point(book_frame_rows_nb, typeof(data), typeof(out.ev), types.int64, types.int64,
                                        types.int64, types.int64, types.boolean, types.float64, types.int64)
        if self._frames_nb is None:
            b = self._batch
            u1 = np.zeros(1, np.uint8)
            ends = np.zeros(2, np.int64)[:1]  # a view, as FrameBatch.prepare hands them
            joined = np.frombuffer(b"{}", dtype=np.uint8)  # read-only, as the joined frames
            self._frames_nb = entry_point(bybit_frames_nb, typeof(joined), typeof(ends), typeof(ends),
                                          typeof(self._sym_buf), typeof(self._sym_off), typeof(self._book_prefix),
                                          typeof(self.tick), typeof(b.rows), typeof(b.levels), typeof(self._groups),
                                          typeof(b.res), typeof(b.head), typeof(b.meta))
            self._commit_nb = entry_point(commit_rows_nb, typeof(b.rows), typeof(b.meta), typeof(u1), types.int64,
                                          types.int64, typeof(out.ev), types.int64)

    def on_connect(self) -> None:
        """A new connection: every book waits for its snapshot, sequences restart."""
        self.seq = [norm.BookSequence() for _ in self.symbols]
        self.book_valid[:] = False

    # ------------------------------------------------------------------------------------------ frames

    def on_frame(self, raw: bytes | str, ts_local_ns: int, out: EventBuffer) -> tuple[int, int]:
        """Normalize one frame into ``out``; returns (``Frame`` code, symbol_id or -1)."""
        codes, sids, _valid = self.on_frames([(ts_local_ns, raw)], out)
        return codes[0], sids[0]

    def on_frames(self, frames: list, out: EventBuffer) -> tuple[list, list, list]:
        """Normalize ``frames`` ((ts_local_ns, raw) in receive order) into ``out``, as :meth:`on_frame` one by one
        would; returns per frame the ``Frame`` code, the symbol_id (or -1) and whether that symbol's book was
        valid after the frame."""
        n = len(frames)
        if n == 0:
            return [], [], []
        codes = [0] * n
        sids = [-1] * n
        valid = [False] * n
        raws = [r if isinstance(r, bytes) else r.encode() for _, r in frames]
        ts = [t for t, _ in frames]
        if self._frames_nb is None:
            self.warm(out)
        if not self._batch_ok:
            for j in range(n):
                codes[j], i = self._on_frame_general(raws[j], ts[j], out)
                sids[j] = i
                valid[j] = i >= 0 and bool(self.book_valid[i])
            return codes, sids, valid
        b = self._batch
        buf, ends, tsa = b.prepare(raws, ts)
        total = self._frames_nb(buf, ends, tsa, self._sym_buf, self._sym_off, self._book_prefix, self.tick, b.rows,
                                b.levels, self._groups, b.res, b.head, b.meta)
        meta = b.meta[:n].tolist()
        keep = bytearray(n)
        keep_view = np.frombuffer(keep, dtype=np.uint8)
        out.reserve(total)
        bv = self.book_valid.tolist()
        last = self.last_data_ns
        seqs = self.seq
        step = norm.book_step
        market, gap = Frame.MARKET, Frame.GAP
        j0 = 0
        for j in range(n):
            st, i, a, u, _r0, _nr = meta[j]
            if st == FAST_BOOK:
                seq = seqs[i]
                prev_u = seq.last_u
                verdict = step(seq, _TYPE_TEXT[a], u)
                if verdict == norm.BOOK_DELTA or verdict == norm.BOOK_SNAPSHOT:
                    keep[j] = 1
                    if verdict == norm.BOOK_SNAPSHOT and not bv[i]:
                        bv[i] = True
                        self.book_valid[i] = True
                    last[i] = ts[j]
                    codes[j] = market
                elif verdict == norm.BOOK_GAP:
                    bv[i] = False
                    self.book_valid[i] = False
                    symbol = self.symbols[i]
                    self.gaps.append({"symbol": symbol, "from_update_id": prev_u, "to_update_id": u, "ts_local": ts[j]})
                    codes[j] = gap
                elif verdict == norm.BOOK_UNKNOWN_TYPE:
                    codes[j] = Frame.GARBAGE
                else:
                    codes[j] = Frame.DROPPED
                sids[j] = i
                valid[j] = bv[i]
            elif st == FAST_TRADES:
                keep[j] = 1
                if a:
                    t = ts[j]
                    if a == 1 << i:
                        last[i] = t
                    else:
                        for k in range(len(bv)):
                            if (a >> k) & 1:
                                last[k] = t
                    codes[j] = market
                    sids[j] = i
                    valid[j] = bv[i]
                else:
                    codes[j] = Frame.SKIPPED
            else:
                # Outside the fast path: the general decoder, at the frame's place in the order.
                out.n = self._commit_nb(b.rows, b.meta, keep_view, j0, j, out.ev, out.n)
                j0 = j + 1
                codes[j], i = self._on_frame_general(raws[j], ts[j], out)
                sids[j] = i
                out.reserve(total)
                bv = self.book_valid.tolist()
                valid[j] = i >= 0 and bv[i]
        out.n = self._commit_nb(b.rows, b.meta, keep_view, j0, n, out.ev, out.n)
        return codes, sids, valid

    def _on_frame_general(self, raw: bytes | str, ts_local_ns: int, out: EventBuffer) -> tuple[int, int]:
        """One frame through the general decoder (``msgspec`` structs of the ingest's normalizer)."""
        try:
            frame = norm.decode_frame(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Frame.GARBAGE, -1
        topic = frame.topic
        if topic is None:
            return (Frame.CONTROL if frame.op else Frame.GARBAGE), -1
        family = topic.partition(".")[0]
        if family == "orderbook":
            return self._on_book(frame, ts_local_ns, out)
        if family == "publicTrade":
            return self._on_trades(frame, ts_local_ns, out)
        return Frame.SKIPPED, -1

    def _on_book(self, frame, ts_local_ns: int, out: EventBuffer) -> tuple[int, int]:
        if not norm._present(frame.data):
            return Frame.GARBAGE, -1
        try:
            head = _book_head_decoder.decode(frame.data)  # s and u; the levels are parsed below
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Frame.GARBAGE, -1
        ts_exch = norm.frame_ts_exch_ns(frame)
        if ts_exch is None:
            return Frame.GARBAGE, -1
        i = self.sid.get(head.s)
        if i is None or frame.topic != self.book_topic(head.s):
            return Frame.SKIPPED, -1
        u = int(head.u)
        snapshot = frame.type == "snapshot" or u == 1  # what book_step calls a snapshot
        # Levels straight from the frame bytes into the buffer (committed below only if the sequence allows).
        data = np.frombuffer(frame.data, np.uint8)
        out.reserve(len(data) // 6 + 2)
        if self._book_nb is None:
            self._book_nb = entry_point(book_frame_rows_nb, typeof(data), typeof(out.ev), types.int64, types.int64,
                                        types.int64, types.int64, types.boolean, types.float64, types.int64)
        rows = self._book_nb(data, out.ev, out.n, ts_exch, ts_local_ns, u, snapshot, float(self.tick[i]), i)
        book = None
        if rows < 0:  # outside the fast path: the general decoder (also the judge of malformed levels)
            try:
                book = norm.decode_book(frame)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return Frame.GARBAGE, -1
        seq = self.seq[i]
        prev_u = seq.last_u
        verdict = norm.book_step(seq, frame.type, u)
        if verdict == norm.BOOK_GAP:
            self.book_valid[i] = False
            self.gaps.append({"symbol": head.s, "from_update_id": prev_u, "to_update_id": u, "ts_local": ts_local_ns})
            return Frame.GAP, i
        if verdict in (norm.BOOK_IN_GAP, norm.BOOK_DUPLICATE):
            return Frame.DROPPED, i
        if verdict == norm.BOOK_UNKNOWN_TYPE:
            return Frame.GARBAGE, i
        if verdict == norm.BOOK_SNAPSHOT:
            self.book_valid[i] = True
        self.last_data_ns[i] = ts_local_ns
        if book is None:
            out.n += rows
        else:
            kind, side, price, qty, be = norm.book_rows(book, verdict)
            self._append(out, ts_exch, ts_local_ns, kind, side, price, qty, u, be, i)
        return Frame.MARKET, i

    def _on_trades(self, frame, ts_local_ns: int, out: EventBuffer) -> tuple[int, int]:
        try:
            trades = norm.decode_trades(frame)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Frame.GARBAGE, -1
        if trades is None:
            return Frame.GARBAGE, -1
        by_symbol: dict[str, list] = {}
        for tr in trades:
            by_symbol.setdefault(tr.s, []).append(tr)
        last = -1
        for symbol, group in by_symbol.items():
            i = self.sid.get(symbol)
            if i is None:
                continue
            ts_exch, side, price, qty, uid, _keep = norm.trade_rows(group)
            k = len(ts_exch)
            if k == 0:
                continue
            be = np.zeros(k, dtype=bool)
            be[-1] = True
            self.last_data_ns[i] = ts_local_ns
            self._append(out, ts_exch, ts_local_ns, np.full(k, int(Kind.TRADE), np.uint8), side, price, qty, uid, be, i)
            last = i
        return (Frame.MARKET if last >= 0 else Frame.SKIPPED), last

    def _append(self, out, ts_exch, ts_local_ns, kind, side, price, qty, uid, be, i) -> None:
        out.append(ts_exch, ts_local_ns, kind, side, price, qty, uid, be, self.tick[i], i)


# ------------------------------------------------------------------------------------ a backlog of frames
#
# :meth:`Adapter.on_frames` normalizes a whole backlog in one compiled call: the envelope, the book levels and
# the trades are read from the frames' bytes into scratch rows and one ``meta`` row per frame. The sequence
# rule (:func:`mmlab.data.ingest.bybit.book_step`) then decides per book frame which rows are committed, and
# any frame outside the fast path (control, garbage, unknown topics, unusual numbers) goes to the general
# decoder at its place in the order, so the rows equal those of frame-by-frame normalization.

#: ``meta[:, M_STATUS]``: a book frame / a publicTrade frame read by the batch kernel.
FAST_BOOK, FAST_TRADES = 1, 2
#: ``meta[:, M_A]`` of a book frame: its ``type``.
TYPE_DELTA, TYPE_SNAPSHOT, TYPE_OTHER = 0, 1, 2
_TYPE_TEXT = ("delta", "snapshot", None)

_W_TOPIC = np.frombuffer(b"topic", np.uint8)
_W_TYPE = np.frombuffer(b"type", np.uint8)
_W_TS = np.frombuffer(b"ts", np.uint8)
_W_CTS = np.frombuffer(b"cts", np.uint8)
_W_DATA = np.frombuffer(b"data", np.uint8)
_W_OP = np.frombuffer(b"op", np.uint8)
_W_SNAPSHOT = np.frombuffer(b"snapshot", np.uint8)
_W_DELTA = np.frombuffer(b"delta", np.uint8)
_W_ORDERBOOK = np.frombuffer(b"orderbook.", np.uint8)
_W_TRADE = np.frombuffer(b"publicTrade.", np.uint8)
_W_BUY = np.frombuffer(b"Buy", np.uint8)
_W_SELL = np.frombuffer(b"Sell", np.uint8)
_INT64_MAX = 9223372036854775807


@njit(cache=True, inline="always")
def _is_nb(buf, s, e, word):
    """``buf[s:e] == word``."""
    if e - s != word.shape[0]:
        return False
    for k in range(e - s):
        if buf[s + k] != word[k]:
            return False
    return True


@njit_no_refcount
def _string_nb(buf, i):
    """Index after the plain string at ``buf[i]`` (ASCII, no escapes), or -1."""
    n = buf.shape[0]
    if i >= n or buf[i] != 34:
        return -1
    i += 1
    while i < n:
        c = buf[i]
        if c == 34:
            return i + 1
        if c == 92 or c < 32 or c >= 128:
            return -1
        i += 1
    return -1


@njit_no_refcount
def _uint_nb(buf, i, res):
    """Unquoted non-negative integer (1-18 digits) at ``buf[i]``: res[0] = value; returns the next index or -1."""
    n = buf.shape[0]
    v = 0
    k = 0
    while i + k < n and 48 <= buf[i + k] <= 57:
        v = v * 10 + (buf[i + k] - 48)
        k += 1
    if k == 0 or k > 18 or (k > 1 and buf[i] == 48):
        return -1
    res[0] = v
    return i + k


@njit_no_refcount
def _symbol_nb(buf, s, e, sym_buf, sym_off):
    """Index of the symbol ``buf[s:e]`` in the table (``sym_buf[sym_off[k]:sym_off[k + 1]]``), or -1."""
    for k in range(sym_off.shape[0] - 1):
        a = sym_off[k]
        if sym_off[k + 1] - a == e - s:
            same = True
            for q in range(e - s):
                if sym_buf[a + q] != buf[s + q]:
                    same = False
                    break
            if same:
                return k
    return -1


@njit_no_refcount
def _trade_id_nb(buf, i, e):
    """``i`` of a trade (``buf[i:e]``: a quoted or plain value) as :func:`mmlab.data.ingest.bybit._trade_id` reads
    it: digits -> the number if it fits int64, else -1; -2 when the value is outside the fast path."""
    if buf[i] == 34:
        if _string_nb(buf, i) != e:
            return -2
        if e - i == 2:
            return -1
        v = 0
        for k in range(i + 1, e - 1):
            c = buf[k]
            if c < 48 or c > 57:
                return -1
            d = c - 48
            if v > (_INT64_MAX - d) // 10:
                for q in range(k + 1, e - 1):  # still a digit string: too large
                    if buf[q] < 48 or buf[q] > 57:
                        return -1
                return -1
            v = v * 10 + d
        return v
    if buf[i] == 110 and e - i == 4:  # null
        return -1
    if buf[i] == 45:
        return -2
    v = 0
    for k in range(i, e):
        c = buf[k]
        if c < 48 or c > 57 or k - i >= 18:
            return -2
        v = v * 10 + (c - 48)
    return v


@njit_no_refcount
def _trades_nb(buf, ts_local, sym_buf, sym_off, tick, rows, off, groups, res):
    """TRADE rows of a publicTrade ``data`` array into ``rows[off:]``, grouped by symbol in order of first
    appearance (each group's last row ``batch_end``), as :meth:`Adapter._on_trades` builds them. Returns (rows
    written or -1 when outside the fast path, bitmask of the symbols with a kept trade, the last such symbol,
    index after the array)."""
    n = buf.shape[0]
    i = _skip_ws_nb(buf, 0)
    if i >= n or buf[i] != 91:
        return -1, 0, -1, -1
    i = _skip_ws_nb(buf, i + 1)
    k = off
    n_groups = 0
    mask = 0
    last = -1
    if i < n and buf[i] == 93:
        i += 1
    else:
        while True:
            if i >= n or buf[i] != 123:
                return -1, 0, -1, -1
            i = _skip_ws_nb(buf, i + 1)
            seen = 0
            t_ms = 0
            side = 0
            sid = -1
            price = 0.0
            qty = 0.0
            uid = -1
            if i < n and buf[i] == 125:
                return -1, 0, -1, -1
            while True:
                ks = i
                ke = _string_nb(buf, i)
                if ke < 0:
                    return -1, 0, -1, -1
                i = _skip_ws_nb(buf, ke)
                if i >= n or buf[i] != 58:
                    return -1, 0, -1, -1
                i = _skip_ws_nb(buf, i + 1)
                klen = ke - ks - 2
                c = buf[ks + 1] if klen == 1 else 0
                bit = 0
                if c == 84:  # T
                    bit = 1
                    i = _uint_nb(buf, i, res)
                    t_ms = int(res[0])
                elif c == 115:  # s
                    bit = 2
                    e = _string_nb(buf, i)
                    if e >= 0:
                        sid = _symbol_nb(buf, i + 1, e - 1, sym_buf, sym_off)
                    i = e
                elif c == 83:  # S
                    bit = 4
                    e = _string_nb(buf, i)
                    if e >= 0:
                        if _is_nb(buf, i + 1, e - 1, _W_BUY):
                            side = 1
                        elif _is_nb(buf, i + 1, e - 1, _W_SELL):
                            side = -1
                    i = e
                elif c == 118:  # v
                    bit = 8
                    i = _number_nb(buf, i, res)
                    qty = res[0]
                elif c == 112:  # p
                    bit = 16
                    i = _number_nb(buf, i, res)
                    price = res[0]
                elif c == 105:  # i
                    bit = 32
                    e = _skip_value_nb(buf, i)
                    if e < 0:
                        return -1, 0, -1, -1
                    uid = _trade_id_nb(buf, i, e)
                    if uid == -2:
                        return -1, 0, -1, -1
                    i = e
                else:
                    i = _skip_value_nb(buf, i)
                if i < 0 or (seen & bit):
                    return -1, 0, -1, -1
                seen |= bit
                i = _skip_ws_nb(buf, i)
                if i < n and buf[i] == 44:
                    i = _skip_ws_nb(buf, i + 1)
                    continue
                if i < n and buf[i] == 125:
                    i = _skip_ws_nb(buf, i + 1)
                    break
                return -1, 0, -1, -1
            if seen & 31 != 31:
                return -1, 0, -1, -1
            if sid >= 0 and side != 0:
                if (mask >> sid) & 1 == 0:
                    if n_groups >= groups.shape[0]:
                        return -1, 0, -1, -1
                    groups[n_groups] = sid
                    n_groups += 1
                    mask |= 1 << sid
                if k >= rows.shape[0]:
                    return -1, 0, -1, -1
                k = put_row_nb(rows, k, t_ms * 1_000_000, ts_local, 2, side, price, qty, uid, tick[sid], sid)
            if i < n and buf[i] == 44:
                i = _skip_ws_nb(buf, i + 1)
                continue
            if i < n and buf[i] == 93:
                i += 1
                break
            return -1, 0, -1, -1
    if n_groups == 0:
        return 0, 0, -1, i
    last = groups[n_groups - 1]
    m = k - off
    if n_groups > 1:
        # Group the rows by symbol (stable), through the room after them.
        if k + m > rows.shape[0]:
            return -1, 0, -1, -1
        q = k
        for g in range(n_groups):
            for r in range(off, k):
                if rows[r].symbol_id == groups[g]:
                    rows[q] = rows[r]
                    q += 1
        for r in range(m):
            rows[off + r] = rows[k + r]
    for r in range(off, k):
        if r == k - 1 or rows[r + 1].symbol_id != rows[r].symbol_id:
            rows[r].batch_end = True
    return m, mask, last, i


@njit_no_refcount
def _frame_nb(buf, ts_local, sym_buf, sym_off, book_prefix, tick, rows, off, levels, groups, res, head, meta, f):
    """One frame into ``rows[off:]`` and ``meta[f]`` (left SLOW when outside the fast path); returns rows used."""
    n = buf.shape[0]
    i = _skip_ws_nb(buf, 0)
    if i >= n or buf[i] != 123:
        return 0
    i = _skip_ws_nb(buf, i + 1)
    topic_s = -1
    topic_e = -1
    family = 0  # 1 orderbook, 2 publicTrade (prefixes of the topic), 0 other
    type_code = TYPE_OTHER
    ts = -1
    cts = -1
    data_s = -1
    done = False  # data read (the topic came before it)
    m = 0
    mask = 0
    last = -1
    seen = 0
    if i < n and buf[i] == 125:
        return 0
    while True:
        ks = i
        ke = _string_nb(buf, i)
        if ke < 0:
            return 0
        i = _skip_ws_nb(buf, ke)
        if i >= n or buf[i] != 58:
            return 0
        i = _skip_ws_nb(buf, i + 1)
        bit = 0
        if _is_nb(buf, ks + 1, ke - 1, _W_TOPIC):
            bit = 1
            e = _string_nb(buf, i)
            topic_s = i + 1
            topic_e = e - 1
            if e >= 0:
                if _is_nb(buf, topic_s, min(topic_e, topic_s + _W_ORDERBOOK.shape[0]), _W_ORDERBOOK):
                    family = 1
                elif _is_nb(buf, topic_s, min(topic_e, topic_s + _W_TRADE.shape[0]), _W_TRADE):
                    family = 2
            i = e
        elif _is_nb(buf, ks + 1, ke - 1, _W_TYPE):
            bit = 2
            e = _string_nb(buf, i)
            if e >= 0:
                if _is_nb(buf, i + 1, e - 1, _W_SNAPSHOT):
                    type_code = TYPE_SNAPSHOT
                elif _is_nb(buf, i + 1, e - 1, _W_DELTA):
                    type_code = TYPE_DELTA
            i = e
        elif _is_nb(buf, ks + 1, ke - 1, _W_TS):
            bit = 4
            i = _uint_nb(buf, i, res)
            ts = int(res[0])
        elif _is_nb(buf, ks + 1, ke - 1, _W_CTS):
            bit = 8
            i = _uint_nb(buf, i, res)
            cts = int(res[0])
        elif _is_nb(buf, ks + 1, ke - 1, _W_DATA):
            bit = 16
            data_s = i
            if family == 1:
                if not book_levels_nb(buf[i:], levels, res, head):
                    return 0
                i += head[5]
                done = True
            elif family == 2:
                m, mask, last, used = _trades_nb(buf[i:], ts_local, sym_buf, sym_off, tick, rows, off, groups, res)
                if m < 0:
                    return 0
                i += used
                done = True
            else:
                i = _skip_value_nb(buf, i)
        elif _is_nb(buf, ks + 1, ke - 1, _W_OP):
            bit = 32
            i = _string_nb(buf, i)
        else:
            i = _skip_value_nb(buf, i)
        if i < 0 or (seen & bit):
            return 0
        seen |= bit
        i = _skip_ws_nb(buf, i)
        if i < n and buf[i] == 44:
            i = _skip_ws_nb(buf, i + 1)
            continue
        if i < n and buf[i] == 125:
            break
        return 0
    if _skip_ws_nb(buf, i + 1) != n or family == 0 or data_s < 0:
        return 0
    meta[f, M_ROW0] = off
    if family == 2:
        if not done:
            m, mask, last, used = _trades_nb(buf[data_s:], ts_local, sym_buf, sym_off, tick, rows, off, groups, res)
            if m < 0:
                return 0
        meta[f, M_STATUS] = FAST_TRADES
        meta[f, M_SID] = last
        meta[f, M_A] = mask
        meta[f, M_NROW] = m
        return m
    if cts < 0 and ts < 0:
        return 0
    ts_exch = (cts if cts >= 0 else ts) * 1_000_000
    if not done and not book_levels_nb(buf[data_s:], levels, res, head):
        return 0
    s0 = head[2]
    s1 = head[3]
    u = head[4]
    if s0 < 0 or u < 0:
        return 0
    s0 += data_s
    s1 += data_s
    sid = _symbol_nb(buf, s0, s1, sym_buf, sym_off)
    if sid < 0:
        return 0
    # The topic must be this symbol's book topic of the subscribed depth.
    p = book_prefix.shape[0]
    if topic_e - topic_s != p + s1 - s0 or not _is_nb(buf, topic_s, topic_s + p, book_prefix):
        return 0
    for q in range(s1 - s0):
        if buf[topic_s + p + q] != buf[s0 + q]:
            return 0
    snapshot = type_code == TYPE_SNAPSHOT or u == 1
    m = book_level_rows_nb(rows, off, ts_exch, ts_local, u, snapshot, tick[sid], sid, levels, head[0], head[1])
    if m < 0:
        return 0
    meta[f, M_STATUS] = FAST_BOOK
    meta[f, M_SID] = sid
    meta[f, M_A] = type_code
    meta[f, M_B] = u
    meta[f, M_NROW] = m
    return m


@njit_no_refcount
def bybit_frames_nb(buf, ends, ts_local, sym_buf, sym_off, book_prefix, tick, rows, levels, groups, res, head,
                    meta):
    """Frames ``buf[ends[f - 1]:ends[f]]`` received at ``ts_local[f]`` into scratch ``rows`` and ``meta[f]``
    (columns ``M_*``: FAST_BOOK / FAST_TRADES or SLOW); returns the rows written."""
    k = 0
    start = 0
    for f in range(ends.shape[0]):
        meta[f, M_STATUS] = SLOW
        meta[f, M_SID] = -1
        meta[f, M_A] = 0
        meta[f, M_B] = 0
        meta[f, M_ROW0] = k
        meta[f, M_NROW] = 0
        k += _frame_nb(buf[start:ends[f]], ts_local[f], sym_buf, sym_off, book_prefix, tick, rows, k, levels,
                       groups, res, head, meta, f)
        start = ends[f]
    return k


# ---------------------------------------------------------------------------------------------- REST


def instruments_url(venue: str, rest_url: str | None, symbol: str) -> str:
    return f"{(rest_url or REST_URL).rstrip('/')}/v5/market/instruments-info?category={CATEGORIES[venue]}&symbol={symbol}"


def fetch_instruments(venue: str, symbols: list[str], rest_url: str | None,
                      timeout_s: float = 10.0) -> tuple[dict, list[bytes]]:
    """SYMBOL -> {tick_size, lot_size, contract} from REST instruments-info (one request per symbol), and the raw
    response bodies (the recorder writes them into the recording, so its ingest knows tick and lot size)."""
    import urllib.request

    out: dict = {}
    bodies = []
    for s in symbols:
        url = instruments_url(venue, rest_url, s)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as r:
                body = r.read()
        except OSError as exc:
            raise DataError(f"cannot read instruments-info from {url}: {exc} (set [live] tick_sizes and lot_sizes, "
                            "or live.rest_url)") from exc
        parsed = norm.instruments_from_body(body)
        if (venue, s) not in parsed:
            raise DataError(f"{url} did not describe {s} (response starts {body[:120]!r}); check the symbol name "
                            "or set [live] tick_sizes and lot_sizes")
        out[s] = parsed[(venue, s)]
        bodies.append(body)
    return out, bodies
