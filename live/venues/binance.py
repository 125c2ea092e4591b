"""Binance USD-M futures public streams: ``<symbol>@depth@0ms`` diffs synced on a REST snapshot, ``@trade`` and
``@bookTicker``, over the combined-stream endpoint.

A backlog of frames is read by the ingest's own compiled line scanner (``_scan_nb``, over the same
``<local_ts> <frame>`` lines the recorder writes; a frame it cannot read exactly goes to the ingest's Python
reader ``_read_line_py``), and depth diffs follow the sync rules the
ingest's sequencer applies to a recording (``_sequence_nb``), one frame at a time: diffs wait until a REST
snapshot arrives; diffs the snapshot covers (``u < lastUpdateId``) are dropped; the first applied diff must have
``U <= lastUpdateId``; afterwards every diff's ``pu`` must equal the previous ``u``, else the book is lost and
a new snapshot is requested. Diffs held while the book was unknown are applied at the snapshot's receive time.
The rule itself (stale / bridging / ``pu`` continuity, old snapshots) is the ingest's compiled one
(``diff_verdict_nb``, ``snapshot_is_old_nb``). ``tests/unit/live/test_binance_adapter.py`` checks that the rows
equal those of an ingest of the same frames.
"""

from __future__ import annotations

import json

import numpy as np
from numba import types

from live.venues.common import EventBuffer, Frame, entry_point, symbol_ticks
from mmlab.data.ingest import binance as norm
from mmlab.errors import ConfigError, DataError
from mmlab.types import Kind, Side

WS_URL = "wss://fstream.binance.com"
REST_URL = "https://fapi.binance.com"
DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)

# Book states, as the ingest sequencer's (mmlab.data.ingest.binance).
_NO_BOOK, _AWAIT_BRIDGE, _SYNCED, _LOST = norm._NO_BOOK, norm._AWAIT_BRIDGE, norm._SYNCED, norm._LOST


def _load_rule() -> None:
    """Bind the ingest's sync rule (compiled entries, called without the dispatcher's type resolution)."""
    global _diff_verdict, _snapshot_is_old
    if _diff_verdict is None:
        i8 = types.int64
        _diff_verdict = entry_point(norm.diff_verdict_nb, i8, i8, i8, i8, i8, i8, types.boolean)
        _snapshot_is_old = entry_point(norm.snapshot_is_old_nb, i8, i8, i8)


_diff_verdict = _snapshot_is_old = None
_INT_FIELDS = ("ts_local_raw", "ts_local_ns", "E_ms", "T_ms", "U", "u", "pu", "trade_id", "last_update_id")


class _Book:
    def __init__(self):
        self.state = _NO_BOOK
        self.snap_lid = -1
        self.prev_u = -1
        self.pending: list = []  # (record, levels, ts_local) of diffs held while the book is unknown
        self.last_depth_e_ms = -1


class Adapter:
    """One combined-stream connection's symbols: stream names, REST snapshot sync and frame -> rows."""

    ping_message = None  # Binance pings; the websocket client answers with pongs

    def __init__(self, venue: str, symbols: list[str], instruments: dict, *, book_depth: int = 1000):
        if venue != "binance-usdm":
            raise ConfigError(f"[live] venue {venue!r} is not served by the Binance USD-M adapter")
        if book_depth not in DEPTH_LIMITS:
            raise ConfigError(f"[live] book_depth = {book_depth} is no Binance depth snapshot limit; use one of "
                              f"{DEPTH_LIMITS}")
        self.venue = venue
        self.symbols, self.sid, self.tick = symbol_ticks(venue, symbols, instruments, "exchangeInfo")
        self.depth = int(book_depth)
        self.books = [_Book() for _ in self.symbols]
        self.book_valid = np.zeros(len(self.symbols), dtype=bool)
        self.last_data_ns = np.zeros(len(self.symbols), dtype=np.int64)
        self.gaps: list[dict] = []
        self._snapshot_for: dict[int, int] = {}  # receive time of a REST snapshot frame -> symbol_id
        _load_rule()

    # -------------------------------------------------------------------------------------- connection

    def streams(self) -> list[str]:
        return [f"{s.lower()}@{c}" for s in self.symbols for c in ("depth@0ms", "trade", "bookTicker")]

    def ws_url(self, override: str | None = None) -> str:
        base = (override or WS_URL).rstrip("/")
        if "streams=" in base:
            return base
        base = base.removesuffix("/stream")
        return f"{base}/stream?streams={'/'.join(self.streams())}"

    def subscribe_messages(self) -> list[str]:
        return []  # the streams are named in the URL

    def resubscribe_messages(self, symbol_id: int) -> list[str]:
        return []  # a lost book is re-synced from a REST snapshot (snapshot_url)

    def snapshot_url(self, symbol_id: int, rest_url: str | None) -> str:
        return f"{(rest_url or REST_URL).rstrip('/')}/fapi/v1/depth?symbol={self.symbols[symbol_id]}&limit={self.depth}"

    def expect_snapshot(self, ts_local_ns: int, symbol_id: int) -> None:
        """The frame received at ``ts_local_ns`` is the REST snapshot of ``symbol_id`` (it names no symbol)."""
        self._snapshot_for[int(ts_local_ns)] = int(symbol_id)

    def warm(self, out: EventBuffer) -> None:
        """Load (or compile) the buffer's append kernel before the first frame."""
        out.warm()

    def on_connect(self) -> None:
        self.books = [_Book() for _ in self.symbols]
        self.book_valid[:] = False

    # ------------------------------------------------------------------------------------------ frames

    def on_frame(self, raw: bytes | str, ts_local_ns: int, out: EventBuffer) -> tuple[int, int]:
        if isinstance(raw, str):
            raw = raw.encode()
        rec = np.zeros(1, dtype=norm.MSG_DTYPE)[0]
        for f in _INT_FIELDS:
            rec[f] = -1
        rec["buyer_maker"] = -1
        try:
            levels, sym, _stream = norm._read_line_py(b"%d %s" % (ts_local_ns, raw), rec)
        except norm._Unreadable:
            if raw.startswith(b'{"result"') or b'"id"' in raw[:40]:
                return Frame.CONTROL, -1
            return Frame.GARBAGE, -1
        return self._on_record(rec, levels, sym, ts_local_ns, out)

    def _on_record(self, rec, levels, sym: str | None, ts_local_ns: int, out: EventBuffer) -> tuple[int, int]:
        """One read message (``rec``: the ingest's MSG_DTYPE fields, a record or a dict; ``levels``: its price
        levels) into ``out``; returns (``Frame`` code, symbol_id or -1)."""
        kind = int(rec["kind"])
        if kind == norm.MsgKind.SNAPSHOT:
            i = self._snapshot_for.pop(int(ts_local_ns), -1)
            if i < 0:
                return Frame.SKIPPED, -1
            return self._on_snapshot(i, rec, levels, ts_local_ns, out), i
        i = self.sid.get(sym, -1) if sym else -1
        if i < 0:
            return Frame.SKIPPED, -1
        if kind == norm.MsgKind.TRADE:
            side = Side.ASK if rec["buyer_maker"] == 1 else Side.BID
            out.append(int(rec["T_ms"]) * 1_000_000, ts_local_ns, np.array([Kind.TRADE], np.uint8),
                       np.array([side], np.int8), np.array([rec["price_1"]]), np.array([rec["qty_1"]]),
                       int(rec["trade_id"]), np.ones(1, bool), self.tick[i], i)
            self.last_data_ns[i] = ts_local_ns
            return Frame.MARKET, i
        bk = self.books[i]
        if kind == norm.MsgKind.BOOK_TICKER:
            if rec["T_ms"] >= 0:
                te = int(rec["T_ms"]) * 1_000_000
            elif rec["E_ms"] >= 0:
                te = int(rec["E_ms"]) * 1_000_000
            elif bk.last_depth_e_ms >= 0:
                te = bk.last_depth_e_ms * 1_000_000
            else:
                te = ts_local_ns
            out.append(te, ts_local_ns, np.full(2, int(Kind.BBO), np.uint8), np.array([Side.BID, Side.ASK], np.int8),
                       np.array([rec["price_1"], rec["price_2"]]), np.array([rec["qty_1"], rec["qty_2"]]),
                       int(rec["u"]), np.array([False, True]), self.tick[i], i)
            return Frame.MARKET, i
        # Depth diff.
        bk.last_depth_e_ms = int(rec["E_ms"])
        self.last_data_ns[i] = ts_local_ns
        if bk.state in (_NO_BOOK, _LOST):
            bk.pending.append((rec, levels, ts_local_ns))
            return Frame.MARKET, i
        return self._depth(i, bk, rec, levels, ts_local_ns, out), i

    def on_frames(self, frames: list, out: EventBuffer) -> tuple[list, list, list]:
        """Normalize ``frames`` ((ts_local_ns, raw) in receive order) into ``out``; returns per frame the ``Frame``
        code, the symbol_id (or -1) and whether that symbol's book was valid after the frame."""
        codes, sids, valid = [], [], []
        bv = self.book_valid
        read = self._scan(frames)
        for j, (ts, raw) in enumerate(frames):
            if read is not None and read[j] is not None:
                rec, levels, sym = read[j]
                c, i = self._on_record(rec, levels, sym, ts, out)
            else:
                c, i = self.on_frame(raw, ts, out)
            codes.append(c)
            sids.append(i)
            valid.append(i >= 0 and bool(bv[i]))
        return codes, sids, valid

    def _scan(self, frames: list) -> list | None:
        """The frames read by the ingest's compiled line scanner (``_scan_nb`` over ``<ts> <frame>`` lines, one
        call for the batch): per frame (record dict, levels, symbol), or None where the scanner could not read
        it exactly (the ingest's Python reader decides). None when the batch does not split into lines."""
        raws = [r if isinstance(r, bytes) else r.encode() for _, r in frames]
        text = b"".join(b"%d %s\n" % (ts, r) for (ts, _), r in zip(frames, raws))
        n = len(frames)
        if text.count(b"\n") != n:
            return None  # a frame holding a newline: frame by frame
        buf = np.frombuffer(text, dtype=np.uint8)
        msgs = np.zeros(n, dtype=norm.MSG_DTYPE)
        levels = np.zeros(max(len(text) // 8, 16), dtype=norm.LEVEL_DTYPE)
        pos = line = n_msg = n_lv = 0
        while True:
            pos, line, n_msg, n_lv = norm._scan_nb(buf, pos, line, msgs, n_msg, levels, n_lv, 0, 0, norm._POW10)
            if pos >= len(buf) or n_msg >= n:
                break
            grown = np.zeros(2 * len(levels), dtype=norm.LEVEL_DTYPE)
            grown[:n_lv] = levels[:n_lv]
            levels = grown
        if n_msg != n:
            return None
        names = msgs.dtype.names
        out = []
        unread, snapshot = int(norm.MsgKind.UNREAD), int(norm.MsgKind.SNAPSHOT)
        for t in msgs.tolist():
            rec = dict(zip(names, t))
            kind = rec["kind"]
            if kind == unread or (kind != snapshot and rec["sym_len"] <= 0):
                out.append(None)
                continue
            sym = text[rec["sym_off"]: rec["sym_off"] + rec["sym_len"]].decode().upper() if rec["sym_len"] > 0 else None
            lv = levels[rec["level_start"]: rec["level_start"] + rec["n_levels"]]
            out.append((rec, lv, sym))
        return out

    def _depth(self, i: int, bk: _Book, rec, levels, ts_local_ns: int, out: EventBuffer) -> int:
        u = int(rec["u"])
        # The ingest sequencer's rule (mmlab.data.ingest.binance.diff_verdict_nb), USD-M futures semantics.
        verdict, expected, got = _diff_verdict(bk.state, bk.snap_lid, bk.prev_u, int(rec["U"]), u, int(rec["pu"]), True)
        if verdict == norm.DIFF_STALE:
            return Frame.DROPPED  # covered by the snapshot
        if verdict == norm.DIFF_GAP:
            bk.state = _LOST
            bk.pending.append((rec, levels, ts_local_ns))
            self.book_valid[i] = False
            self.gaps.append({"symbol": self.symbols[i], "expected": expected, "got": got, "ts_local": ts_local_ns})
            return Frame.GAP
        self._rows(i, levels, int(rec["E_ms"]) * 1_000_000, ts_local_ns, Kind.DEPTH, u, out, clear=False)
        bk.state = _SYNCED
        bk.prev_u = u
        self.book_valid[i] = True
        return Frame.MARKET

    def _on_snapshot(self, i: int, rec, levels, ts_local_ns: int, out: EventBuffer) -> int:
        bk = self.books[i]
        lid = int(rec["last_update_id"])
        if _snapshot_is_old(bk.state, lid, bk.prev_u):
            return Frame.DROPPED
        if rec["E_ms"] >= 0:
            te = int(rec["E_ms"]) * 1_000_000
        elif bk.last_depth_e_ms >= 0:
            te = bk.last_depth_e_ms * 1_000_000
        else:
            te = ts_local_ns
        self._rows(i, levels, te, ts_local_ns, Kind.SNAPSHOT, lid, out, clear=True)
        bk.state = _AWAIT_BRIDGE
        bk.snap_lid = lid
        self.book_valid[i] = False
        held, bk.pending = bk.pending, []
        for prec, plevels, _pts in held:
            if bk.state == _LOST:
                bk.pending.append((prec, plevels, _pts))
                continue
            # Held diffs are applied at the snapshot's receive time (as the ingest does); those the snapshot
            # covers are dropped by the rule.
            self._depth(i, bk, prec, plevels, ts_local_ns, out)
        self.last_data_ns[i] = ts_local_ns
        return Frame.MARKET

    def _rows(self, i, levels, ts_exch, ts_local_ns, kind, uid, out, *, clear: bool) -> None:
        n = len(levels)
        k = np.full(n + clear, int(kind), np.uint8)
        side = np.empty(n + clear, np.int8)
        price = np.zeros(n + clear)
        qty = np.zeros(n + clear)
        if clear:
            k[0] = Kind.CLEAR
            side[0] = Side.BOTH
        if isinstance(levels, np.ndarray):  # the scanner's LEVEL_DTYPE records
            side[clear:] = levels["side"]
            price[clear:] = levels["price"]
            qty[clear:] = levels["qty"]
        else:  # (price, qty, side) tuples of the Python reader
            lv = np.asarray(levels, dtype=np.float64).reshape(n, 3) if n else np.zeros((0, 3))
            side[clear:] = lv[:, 2]
            price[clear:] = lv[:, 0]
            qty[clear:] = lv[:, 1]
        be = np.zeros(n + clear, bool)
        if n + clear:
            be[-1] = True
        out.append(ts_exch, ts_local_ns, k, side, price, qty, uid, be, self.tick[i], i)


def fetch_instruments(venue: str, symbols: list[str], rest_url: str | None,
                      timeout_s: float = 10.0) -> tuple[dict, list[bytes]]:
    """SYMBOL -> {tick_size, lot_size} from REST ``/fapi/v1/exchangeInfo`` (PRICE_FILTER / LOT_SIZE)."""
    import urllib.request

    url = f"{(rest_url or REST_URL).rstrip('/')}/fapi/v1/exchangeInfo"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            doc = json.loads(r.read())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {url}: {exc} (set [live] tick_sizes and lot_sizes, or live.rest_url)") from exc
    out = {}
    for it in doc.get("symbols", []):
        s = str(it.get("symbol", "")).upper()
        if s not in symbols:
            continue
        f = {x.get("filterType"): x for x in it.get("filters", [])}
        try:
            out[s] = {"tick_size": float(f["PRICE_FILTER"]["tickSize"]), "lot_size": float(f["LOT_SIZE"]["stepSize"])}
        except (KeyError, TypeError, ValueError):
            continue
    missing = [s for s in symbols if s not in out]
    if missing:
        raise DataError(f"{url} does not describe {missing}; check the symbols or set [live] tick_sizes and lot_sizes")
    return out, []  # exchangeInfo is not recorded: ingest infers or takes --tick-size
