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

from numba import typeof, types

from live.venues.common import EventBuffer, Frame, book_frame_rows_nb, entry_point
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
        self.symbols = [s.upper() for s in symbols]
        self.sid = {s: i for i, s in enumerate(self.symbols)}
        self.depth = int(book_depth)
        self.tick = np.zeros(len(self.symbols))
        for i, s in enumerate(self.symbols):
            inst = instruments.get(s)
            if not inst or not inst.get("tick_size"):
                raise ConfigError(f"no tick size for {venue}/{s}: set [live] tick_sizes = {{{s} = ...}} or let the "
                                  "runner read it from REST instruments-info (live.rest_url)")
            self.tick[i] = float(inst["tick_size"])
        self.seq = [norm.BookSequence() for _ in self.symbols]
        #: the symbol's book is consistent (a snapshot arrived and no gap opened since)
        self.book_valid = np.zeros(len(self.symbols), dtype=bool)
        self.gaps: list[dict] = []  # every gap seen: symbol, from/to u, local time
        self.last_data_ns = np.zeros(len(self.symbols), dtype=np.int64)
        self._book_nb = None  # compiled entry of book_frame_rows_nb

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

    def on_connect(self) -> None:
        """A new connection: every book waits for its snapshot, sequences restart."""
        self.seq = [norm.BookSequence() for _ in self.symbols]
        self.book_valid[:] = False

    # ------------------------------------------------------------------------------------------ frames

    def on_frame(self, raw: bytes | str, ts_local_ns: int, out: EventBuffer) -> tuple[int, int]:
        """Normalize one frame into ``out``; returns (``Frame`` code, symbol_id or -1)."""
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
