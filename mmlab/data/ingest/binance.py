"""Binance raw websocket captures (USD-M, COIN-M, spot) -> one :class:`ParsedStream` per symbol.

Input format: gzip (or plain) text, one line per message, ``<local_ts> <raw JSON>``. The local receive
timestamp is in ns or us (detected per file from its magnitude, or ``opts.local_ts_unit``). The JSON is either
a combined-stream envelope ``{"stream": ..., "data": {...}}`` or a bare message: ``depthUpdate`` (diff depth),
``trade``, ``bookTicker``, or an inline REST depth snapshot ``{"lastUpdateId", "bids", "asks"}`` written where
the recorder synced.

How the file becomes rows (ARCHITECTURE.md section 2):

- snapshot: one CLEAR row (side 0, price 0, qty 0), then one SNAPSHOT row per level; ``update_id`` =
  ``lastUpdateId``; ``ts_exch`` = ``E`` when present (USD-M/COIN-M). A spot snapshot has no ``E``: its
  ``ts_exch`` is the ``E`` of the latest depth message received before it, or, with none, the smaller of its own
  local receive time and the next depth message's ``E`` (never later than either, so the estimate cannot fake a
  negative feed latency).
- depth diff: one DEPTH row per level (absolute qty, 0 deletes), ``update_id`` = ``u``, ``ts_exch`` = ``E``.
- trade: one TRADE row, side -1 when ``m`` (buyer is maker = SELL aggressor) else +1, ``update_id`` = ``t``,
  ``ts_exch`` = ``T``.
- bookTicker: two BBO rows (bid ``b``/``B`` side +1, then ask ``a``/``A`` side -1), ``update_id`` = ``u``,
  ``ts_exch`` = ``T``, else ``E``, else the ``E`` of the last depth message seen (spot bookTicker has neither).
- ``batch_end`` is true on the last row of every message.

Sequencing (reference/VENUES.md), per symbol, across all files of one recording:

- Before a snapshot the book is unknown: depth messages are buffered. When the snapshot line arrives, buffered
  messages older than it (futures ``u < lastUpdateId``, spot ``u <= lastUpdateId``) are quarantined as
  "pre-sync"; the others are applied right after the snapshot, at the snapshot's local receive time (when a live
  book could apply them). Real recorders write the snapshot line when the REST answer arrives, after the diff
  that bridges it, so this buffering is what makes a capture start cleanly.
- The first applied diff must bridge the snapshot (futures ``U <= lastUpdateId <= u``, spot
  ``U <= lastUpdateId + 1 <= u``); later diffs must chain (futures ``pu == previous u``, spot
  ``U == previous u + 1``). Diffs after the snapshot line that it already covers are quarantined as "stale".
- A break is a sequence gap ``{from_update_id: expected, to_update_id: got, ...}``. Depth messages are then
  buffered again (and quarantined unless they bridge) until the next snapshot re-syncs the book. Trades and
  bookTicker rows are never held back by depth gaps.
- A snapshot that arrives while the book is in sync and is not newer than it (``lastUpdateId <= previous u``)
  would rewind the book; its rows are quarantined as "snapshot older than the synced book".
- Messages are sequenced in file (arrival) order. The store rows are then sorted by ``ts_local`` by the common
  writer, which counts rows that were out of order; two depth lines swapped in a file break the chain and are
  reported as a gap, never silently reordered.
- A snapshot line names no symbol: with one depth stream in the files it is that stream's; with several, the
  stream whose diffs around it bridge its ``lastUpdateId``, ties broken by the price nearest its best bid.

Corrupt lines (garbage, unparseable JSON, unknown stream or event, missing fields, timestamps in another unit)
are quarantined with file, line and reason and count one row each. Rows with invalid values (NaN, negative,
zero price, zero trade qty) are quarantined one by one with file and line.

Speed: a numba kernel scans the decompressed bytes line by line and extracts every well-formed message into
records (decimal strings become floats via an integer mantissa divided by an exact power of ten, one correctly
rounded division, so the value equals ``float(text)``; a line it cannot read exactly goes to a msgspec-based
Python path, which also words the quarantine reasons). A second kernel applies the sequencing rules per symbol
and writes the store columns. ``benchmarks/bench_ingest.py`` compares it with hftbacktest's converter.

Tick and lot sizes are left to :func:`mmlab.data.ingest.common.write_stream`, which infers them as the greatest
common increment of the observed prices/quantities (the number of decimals of Binance's strings is the
exchange's display precision, not its tick: BTCUSDT prints "61800.20" but trades in 0.1 ticks).
Contracts: USD-M and spot are linear (contract size 1); COIN-M is inverse with contract size
``opts.contract_size``, else 100 USD for BTCUSD contracts (``BTCUSD_PERP``, ``BTCUSD_<expiry>``) and 10 USD for
every other COIN-M symbol (Binance's published sizes).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import msgspec
import numpy as np
from numba import njit

from mmlab.data.ingest import common
from mmlab.data.ingest.common import IngestOptions, ParsedStream
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind, Side

__all__ = ["parse", "VENUES"]

#: Venues this module parses.
VENUES = ("binance-usdm", "binance-coinm", "binance-spot")


class MsgKind(IntEnum):
    """What one capture line holds (field ``kind`` of the message records)."""

    UNREAD = 0  # the fast scanner could not read the line exactly; the Python path decides
    DEPTH = 1  # depthUpdate (diff depth)
    TRADE = 2  # trade
    BOOK_TICKER = 3  # bookTicker
    SNAPSHOT = 4  # inline REST depth snapshot
    CORRUPT = 5  # quarantined line (reason kept beside the records)


class MsgStatus(IntEnum):
    """What the sequencer did with a message."""

    NONE = 0  # not processed (should not remain after sequencing)
    APPLIED = 1  # rows written at the message's own local time
    DEFERRED = 2  # buffered depth diff applied right after the snapshot that synced the book
    PRE_SYNC = 3  # depth before the first snapshot and older than it: quarantined
    STALE = 4  # depth after a snapshot line that the snapshot already covers: quarantined
    AFTER_GAP = 5  # depth held back after a sequence gap and not bridging the re-syncing snapshot: quarantined
    PENDING = 6  # buffered while the book is unknown (resolved at the next snapshot or at the end)
    OLD_SNAPSHOT = 7  # snapshot not newer than the synced book: quarantined


# Field bits the scanner saw in one message (which keys a kind requires).
_F_E, _F_T, _F_U, _F_u, _F_pu, _F_t = 1, 2, 4, 8, 16, 32
_F_LID, _F_BIDS, _F_ASKS, _F_BLV, _F_ALV = 64, 128, 256, 512, 1024
_F_BSTR, _F_ASTR, _F_BQ, _F_AQ, _F_P, _F_Q, _F_M, _F_S = 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144

# Values of the "e" field the scanner recognizes.
_EV_NONE, _EV_DEPTH, _EV_TRADE, _EV_BOOK_TICKER, _EV_OTHER = 0, 1, 2, 3, 4

#: One capture line as extracted by the scanner (parser-internal record).
MSG_DTYPE = np.dtype(
    [
        ("line_off", np.int64),  # byte offset of the line in its file's decompressed text
        ("line_end", np.int64),  # byte offset just past the line (newline excluded)
        ("line", np.int64),  # 1-based line number in its file
        ("ts_local_raw", np.int64),  # local receive time as written (file's unit)
        ("ts_local_ns", np.int64),  # local receive time, ns (after unit detection)
        ("E_ms", np.int64),  # event time, ms; -1 if absent
        ("T_ms", np.int64),  # transaction time, ms; -1 if absent
        ("U", np.int64),  # first update id of a diff; -1 if absent
        ("u", np.int64),  # last update id of a diff / bookTicker; -1 if absent
        ("pu", np.int64),  # previous diff's u (futures); -1 if absent
        ("trade_id", np.int64),  # trade t; -1 if absent
        ("last_update_id", np.int64),  # snapshot lastUpdateId; -1 if absent
        ("level_start", np.int64),  # first level in the level records
        ("n_levels", np.int64),  # levels of a diff or snapshot
        ("price_1", np.float64),  # trade p, or bookTicker best bid b
        ("qty_1", np.float64),  # trade q, or bookTicker best bid qty B
        ("price_2", np.float64),  # bookTicker best ask a
        ("qty_2", np.float64),  # bookTicker best ask qty A
        ("sym_hash", np.int64),  # FNV-1a hash of the "s" value; 0 if absent
        ("sym_off", np.int64),  # byte offset of the "s" value
        ("stream_hash", np.int64),  # FNV-1a hash of the envelope's "stream" value; 0 if absent
        ("stream_off", np.int64),  # byte offset of the "stream" value
        ("sym_len", np.int32),
        ("stream_len", np.int32),
        ("file_idx", np.int32),  # index of the file in the paths given
        ("sym_id", np.int32),  # index of the symbol in the parse's symbol list; -1 unknown
        ("kind", np.uint8),  # MsgKind
        ("buyer_maker", np.int8),  # trade m: 1 true, 0 false, -1 absent
    ],
    align=True,
)

#: One price level of a diff or snapshot (parser-internal record).
LEVEL_DTYPE = np.dtype([("price", np.float64), ("qty", np.float64), ("side", np.int8)], align=True)

#: Sequencer result per message (parser-internal record).
SEQ_DTYPE = np.dtype(
    [
        ("rows_described", np.int64),  # rows the message describes (levels, +1 CLEAR for a snapshot)
        ("rows_written", np.int64),
        ("rows_bad", np.int64),  # rows quarantined for invalid values inside a written message
        ("gap_id", np.int64),  # gap that held this message back (AFTER_GAP), else -1
        ("status", np.int8),  # MsgStatus
    ],
    align=True,
)

#: One sequence gap found by the sequencer (parser-internal record).
GAP_DTYPE = np.dtype([("msg", np.int64), ("expected", np.int64), ("got", np.int64)], align=True)

_POW10 = np.array([10.0**k for k in range(23)])  # exact in float64 up to 1e22
_MS_TO_NS = 1_000_000


# ============================================================================================== scanner kernel

# Key and event names the scanner compares against (numba reads global arrays as constants).
_W_DEPTH_UPDATE = np.frombuffer(b"depthUpdate", dtype=np.uint8)
_W_TRADE = np.frombuffer(b"trade", dtype=np.uint8)
_W_BOOK_TICKER = np.frombuffer(b"bookTicker", dtype=np.uint8)
_W_DATA = np.frombuffer(b"data", dtype=np.uint8)
_W_BIDS = np.frombuffer(b"bids", dtype=np.uint8)
_W_ASKS = np.frombuffer(b"asks", dtype=np.uint8)
_W_STREAM = np.frombuffer(b"stream", dtype=np.uint8)
_W_LAST_UPDATE_ID = np.frombuffer(b"lastUpdateId", dtype=np.uint8)

#: Kernels that create no array are compiled without the runtime's reference counting (otherwise every call
#: pays an atomic increment and decrement per array argument: ~30% of the scan time).
_njit_no_refcount = njit(cache=True, _nrt=False)

# Return codes of the scanner's readers besides a byte index.
_BAD = -1  # not readable by the scanner: the Python path decides
_FULL = -2  # level records are full: grow them and scan the line again


@_njit_no_refcount
def _eq_nb(buf, off, n, word):
    """True if buf[off:off+n] equals word."""
    if n != word.shape[0]:
        return False
    for j in range(n):
        if buf[off + j] != word[j]:
            return False
    return True


@_njit_no_refcount
def _ws_nb(buf, i, end):
    """Index of the first byte at or after i that is not a space, tab or carriage return (newline ends a line)."""
    while i < end and (buf[i] == 32 or buf[i] == 9 or buf[i] == 13):
        i += 1
    return i


@_njit_no_refcount
def _uint_nb(buf, i, end):
    """Unsigned JSON integer at i -> (value, next index); next index _BAD unless it fits int64."""
    v = np.int64(0)
    j = i
    while j < end:
        c = buf[j]
        if c < 48 or c > 57:
            break
        v = v * 10 + np.int64(c - 48)
        j += 1
    nd = j - i
    if nd == 0 or nd > 19:
        return v, _BAD
    if nd == 19:  # may have overflowed: check the first 18 digits against int64's limit
        v18 = np.int64(0)
        for q in range(i, i + 18):
            v18 = v18 * 10 + np.int64(buf[q] - 48)
        last = np.int64(buf[i + 18] - 48)
        if v18 > np.int64(922337203685477580) or (v18 == np.int64(922337203685477580) and last > 7):
            return v, _BAD
    if j < end and (buf[j] == 46 or buf[j] == 101 or buf[j] == 69):  # a fraction or exponent: not an integer
        return v, _BAD
    return v, j


@_njit_no_refcount
def _decimal_nb(buf, i, end, pow10):
    """Quoted plain decimal ("61800.20") at i -> (float, next index); next index _BAD unless exact.

    mantissa / 10**decimals with both exact in float64 is one correctly rounded division, equal to float(text).
    """
    if i >= end or buf[i] != 34:
        return 0.0, _BAD
    j = i + 1
    m = np.int64(0)
    while j < end:
        c = buf[j]
        if c < 48 or c > 57:
            break
        m = m * 10 + np.int64(c - 48)
        j += 1
    n_int = j - i - 1
    n_dec = 0
    if j < end and buf[j] == 46:
        j += 1
        f0 = j
        while j < end:
            c = buf[j]
            if c < 48 or c > 57:
                break
            m = m * 10 + np.int64(c - 48)
            j += 1
        n_dec = j - f0
        if n_dec == 0:
            return 0.0, _BAD
    if j >= end or buf[j] != 34 or n_int + n_dec == 0 or n_int + n_dec > 17 or n_dec > 22 or m > 9007199254740992:
        return 0.0, _BAD
    return float(m) / pow10[n_dec], j + 1


@_njit_no_refcount
def _string_nb(buf, i, end):
    """Quoted string without escapes at i -> (start, length, FNV-1a hash, next index); next index _BAD otherwise."""
    if i >= end or buf[i] != 34:
        return 0, 0, np.int64(0), _BAD
    j = i + 1
    h = np.int64(-3750763034362895579)
    while j < end:
        c = buf[j]
        if c == 34:
            return i + 1, j - i - 1, h, j + 1
        if c == 92 or c == 10:
            return 0, 0, h, _BAD
        h = (h ^ np.int64(c)) * np.int64(1099511628211)
        j += 1
    return 0, 0, h, _BAD


@_njit_no_refcount
def _key_nb(buf, i, end):
    """Quoted key at i -> (start, length, next index); next index _BAD if not a plain string."""
    j = i + 1
    while j < end:
        c = buf[j]
        if c == 34:
            return i + 1, j - i - 1, j + 1
        if c == 92 or c == 10:
            return 0, 0, _BAD
        j += 1
    return 0, 0, _BAD


@_njit_no_refcount
def _skip_value_nb(buf, i, end):
    """Index after the JSON value at i (string, number, literal, array or object) on this line; _BAD if malformed."""
    if i >= end:
        return _BAD
    c = buf[i]
    if c == 34:
        j = i + 1
        while j < end and buf[j] != 10:
            if buf[j] == 92:
                j += 2
                continue
            if buf[j] == 34:
                return j + 1
            j += 1
        return _BAD
    if c == 91 or c == 123:
        depth = 0
        j = i
        while j < end and buf[j] != 10:
            b = buf[j]
            if b == 34:
                j += 1
                while j < end and buf[j] != 34 and buf[j] != 10:
                    if buf[j] == 92:
                        j += 1
                    j += 1
                if j >= end or buf[j] != 34:
                    return _BAD
            elif b == 91 or b == 123:
                depth += 1
            elif b == 93 or b == 125:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return _BAD
    j = i
    while j < end:
        b = buf[j]
        if b == 44 or b == 125 or b == 93 or b == 32 or b == 9 or b == 13 or b == 10:
            break
        j += 1
    return j if j > i else _BAD


@_njit_no_refcount
def _levels_nb(buf, i, end, side, levels, n_lv, pow10):
    """Array of ["price", "qty"] pairs at i appended to levels -> (next index or _BAD/_FULL, new count)."""
    if i >= end or buf[i] != 91:
        return _BAD, n_lv
    i = _ws_nb(buf, i + 1, end)
    if i < end and buf[i] == 93:
        return i + 1, n_lv
    cap = levels.shape[0]
    while i < end:
        if buf[i] != 91:
            return _BAD, n_lv
        i = _ws_nb(buf, i + 1, end)
        px, i = _decimal_nb(buf, i, end, pow10)
        if i < 0:
            return _BAD, n_lv
        i = _ws_nb(buf, i, end)
        if i >= end or buf[i] != 44:
            return _BAD, n_lv
        i = _ws_nb(buf, i + 1, end)
        qty, i = _decimal_nb(buf, i, end, pow10)
        if i < 0:
            return _BAD, n_lv
        i = _ws_nb(buf, i, end)
        if i >= end or buf[i] != 93:
            return _BAD, n_lv
        if n_lv >= cap:
            return _FULL, n_lv
        lv = levels[n_lv]
        lv["price"] = px
        lv["qty"] = qty
        lv["side"] = side
        n_lv += 1
        i = _ws_nb(buf, i + 1, end)
        if i >= end:
            return _BAD, n_lv
        if buf[i] == 44:
            i = _ws_nb(buf, i + 1, end)
        elif buf[i] == 93:
            return i + 1, n_lv
        else:
            return _BAD, n_lv
    return _BAD, n_lv


@_njit_no_refcount
def _scan_line_nb(buf, ls, end, msg, levels, n_lv, pow10):
    """Read the line starting at ls into msg (and levels) -> (new level count, index of its newline or end).

    The index is _BAD if the scanner cannot read the line exactly (msg.kind stays UNREAD, no level kept) or
    _FULL if the level records ran out.
    """
    lv0 = n_lv
    ts, i = _uint_nb(buf, ls, end)
    if i < 0 or i >= end or (buf[i] != 32 and buf[i] != 9):
        return lv0, _BAD
    msg["ts_local_raw"] = ts
    i = _ws_nb(buf, i, end)
    if i >= end or buf[i] != 123:
        return lv0, _BAD
    i += 1
    depth = 1
    seen = 0
    ev = _EV_NONE
    while True:
        i = _ws_nb(buf, i, end)
        if i >= end:
            return lv0, _BAD
        c = buf[i]
        if c == 125:  # '}'
            depth -= 1
            i += 1
            if depth == 0:
                break
            i = _ws_nb(buf, i, end)
            if i < end and buf[i] == 44:
                i += 1
                continue
            if i < end and buf[i] == 125:
                continue
            return lv0, _BAD
        if c != 34:
            return lv0, _BAD
        k0, kl, i = _key_nb(buf, i, end)
        if i < 0:
            return lv0, _BAD
        i = _ws_nb(buf, i, end)
        if i >= end or buf[i] != 58:  # ':'
            return lv0, _BAD
        i = _ws_nb(buf, i + 1, end)
        if i >= end:
            return lv0, _BAD
        k = buf[k0]
        handled = False
        if kl == 1:
            handled = True
            if k == 69 or k == 84 or k == 85 or k == 117 or k == 116:  # E T U u t
                v, i = _uint_nb(buf, i, end)
                if i < 0:
                    return lv0, _BAD
                if k == 69:
                    msg["E_ms"] = v
                    seen |= _F_E
                elif k == 84:
                    msg["T_ms"] = v
                    seen |= _F_T
                elif k == 85:
                    msg["U"] = v
                    seen |= _F_U
                elif k == 117:
                    msg["u"] = v
                    seen |= _F_u
                else:
                    msg["trade_id"] = v
                    seen |= _F_t
            elif k == 115:  # s
                s0, sl, sh, i = _string_nb(buf, i, end)
                if i < 0 or sl == 0:
                    return lv0, _BAD
                msg["sym_off"] = s0
                msg["sym_len"] = sl
                msg["sym_hash"] = sh
                seen |= _F_S
            elif k == 101:  # e
                if buf[i] != 34:
                    return lv0, _BAD
                s0, sl, i = _key_nb(buf, i, end)
                if i < 0:
                    return lv0, _BAD
                ev = _EV_OTHER
                if _eq_nb(buf, s0, sl, _W_DEPTH_UPDATE):
                    ev = _EV_DEPTH
                elif _eq_nb(buf, s0, sl, _W_TRADE):
                    ev = _EV_TRADE
                elif _eq_nb(buf, s0, sl, _W_BOOK_TICKER):
                    ev = _EV_BOOK_TICKER
            elif k == 98 or k == 97:  # b a
                if buf[i] == 91:
                    i, n_lv = _levels_nb(buf, i, end, 1 if k == 98 else -1, levels, n_lv, pow10)
                    if i < 0:
                        return lv0, i
                    seen |= _F_BLV if k == 98 else _F_ALV
                else:
                    v, i = _decimal_nb(buf, i, end, pow10)
                    if i < 0:
                        return lv0, _BAD
                    if k == 98:
                        msg["price_1"] = v
                        seen |= _F_BSTR
                    else:
                        msg["price_2"] = v
                        seen |= _F_ASTR
            elif k == 66 or k == 65 or k == 112 or k == 113:  # B A p q
                v, i = _decimal_nb(buf, i, end, pow10)
                if i < 0:
                    return lv0, _BAD
                if k == 66:
                    msg["qty_1"] = v
                    seen |= _F_BQ
                elif k == 65:
                    msg["qty_2"] = v
                    seen |= _F_AQ
                elif k == 112:
                    msg["price_1"] = v
                    seen |= _F_P
                else:
                    msg["qty_1"] = v
                    seen |= _F_Q
            elif k == 109:  # m
                if i + 4 <= end and buf[i] == 116 and buf[i + 1] == 114 and buf[i + 2] == 117 and buf[i + 3] == 101:
                    msg["buyer_maker"] = 1
                    i += 4
                elif (i + 5 <= end and buf[i] == 102 and buf[i + 1] == 97 and buf[i + 2] == 108 and buf[i + 3] == 115
                      and buf[i + 4] == 101):
                    msg["buyer_maker"] = 0
                    i += 5
                else:
                    return lv0, _BAD
                seen |= _F_M
            else:
                handled = False
        elif kl == 2 and k == 112 and buf[k0 + 1] == 117:  # pu
            handled = True
            v, i = _uint_nb(buf, i, end)
            if i < 0:
                return lv0, _BAD
            msg["pu"] = v
            seen |= _F_pu
        elif depth == 1 and _eq_nb(buf, k0, kl, _W_DATA):
            if buf[i] == 123:
                depth = 2
                i += 1
                continue
        elif _eq_nb(buf, k0, kl, _W_BIDS) or _eq_nb(buf, k0, kl, _W_ASKS):
            handled = True
            i, n_lv = _levels_nb(buf, i, end, 1 if k == 98 else -1, levels, n_lv, pow10)
            if i < 0:
                return lv0, i
            seen |= _F_BIDS if k == 98 else _F_ASKS
        elif _eq_nb(buf, k0, kl, _W_STREAM):
            handled = True
            s0, sl, sh, i = _string_nb(buf, i, end)
            if i < 0:
                return lv0, _BAD
            msg["stream_off"] = s0
            msg["stream_len"] = sl
            msg["stream_hash"] = sh
        elif _eq_nb(buf, k0, kl, _W_LAST_UPDATE_ID):
            handled = True
            v, i = _uint_nb(buf, i, end)
            if i < 0:
                return lv0, _BAD
            msg["last_update_id"] = v
            seen |= _F_LID
        if not handled:
            i = _skip_value_nb(buf, i, end)
            if i < 0:
                return lv0, _BAD
        i = _ws_nb(buf, i, end)
        if i >= end:
            return lv0, _BAD
        if buf[i] == 44:
            i += 1
        elif buf[i] != 125:
            return lv0, _BAD
    i = _ws_nb(buf, i, end)
    if i < end and buf[i] != 10:
        return lv0, _BAD
    # Which message the keys make, with every required field present.
    kind = MsgKind.UNREAD
    if ev == _EV_DEPTH:
        need = _F_E | _F_U | _F_u | _F_BLV | _F_ALV | _F_S
        if (seen & need) == need:
            kind = MsgKind.DEPTH
    elif ev == _EV_TRADE:
        need = _F_T | _F_t | _F_P | _F_Q | _F_M | _F_S
        if (seen & need) == need:
            kind = MsgKind.TRADE
    elif ev == _EV_BOOK_TICKER or (ev == _EV_NONE and (seen & _F_LID) == 0):
        need = _F_u | _F_BSTR | _F_ASTR | _F_BQ | _F_AQ | _F_S
        if (seen & need) == need and (seen & (_F_BLV | _F_ALV)) == 0:
            kind = MsgKind.BOOK_TICKER
    elif ev == _EV_NONE:
        need = _F_LID | _F_BIDS | _F_ASKS
        if (seen & need) == need:
            kind = MsgKind.SNAPSHOT
    if kind == MsgKind.UNREAD:
        return lv0, _BAD
    msg["kind"] = kind
    msg["level_start"] = lv0
    msg["n_levels"] = n_lv - lv0
    return n_lv, i


@_njit_no_refcount
def _scan_nb(buf, pos, line_no, msgs, n_msg, levels, n_lv, file_idx, base, pow10):
    """Read lines from byte pos on into msgs/levels until buf ends or a record array is full.

    buf holds whole lines of a file's text starting at text offset base (offsets in msgs are text offsets).
    Returns (pos, line_no, n_msg, n_lv): the scan is complete when pos >= len(buf); otherwise grow the full
    array and call again with these values. Blank lines make no message.
    """
    n = buf.shape[0]
    cap = msgs.shape[0]
    while pos < n:
        if n_msg >= cap:
            return pos, line_no, n_msg, n_lv
        s = _ws_nb(buf, pos, n)
        if s >= n:
            return n, line_no + 1, n_msg, n_lv
        if buf[s] == 10:
            pos = s + 1
            line_no += 1
            continue
        m = msgs[n_msg]
        m["line"] = line_no + 1
        m["line_off"] = s + base
        m["ts_local_raw"] = -1
        m["ts_local_ns"] = -1
        m["E_ms"] = -1
        m["T_ms"] = -1
        m["U"] = -1
        m["u"] = -1
        m["pu"] = -1
        m["trade_id"] = -1
        m["last_update_id"] = -1
        m["level_start"] = n_lv
        m["n_levels"] = 0
        m["price_1"] = np.nan
        m["qty_1"] = np.nan
        m["price_2"] = np.nan
        m["qty_2"] = np.nan
        m["sym_hash"] = 0
        m["sym_off"] = 0
        m["sym_len"] = 0
        m["stream_hash"] = 0
        m["stream_off"] = 0
        m["stream_len"] = 0
        m["file_idx"] = file_idx
        m["sym_id"] = -1
        m["kind"] = MsgKind.UNREAD
        m["buyer_maker"] = -1
        new_lv, e = _scan_line_nb(buf, s, n, m, levels, n_lv, pow10)
        if e == _FULL:
            return pos, line_no, n_msg, n_lv
        if e == _BAD:
            e = s
            while e < n and buf[e] != 10:
                e += 1
        else:
            n_lv = new_lv
        le = e
        while le > s and (buf[le - 1] == 13 or buf[le - 1] == 32 or buf[le - 1] == 9):
            le -= 1
        m["line_end"] = le + base
        if m["sym_len"] > 0:
            m["sym_off"] += base
        if m["stream_len"] > 0:
            m["stream_off"] += base
        n_msg += 1
        line_no += 1
        pos = e + 1
    return pos, line_no, n_msg, n_lv


# ============================================================================================ sequencer kernel


@njit(cache=True, inline="always")
def _row_nb(out_ts_exch, out_ts_local, out_kind, out_side, out_price, out_qty, out_update_id, out_batch_end, n_out,
            ts_exch, ts_local, kind, side, price, qty, update_id):
    """Write one store row at n_out (batch_end false); returns n_out + 1."""
    out_ts_exch[n_out] = ts_exch
    out_ts_local[n_out] = ts_local
    out_kind[n_out] = kind
    out_side[n_out] = side
    out_price[n_out] = price
    out_qty[n_out] = qty
    out_update_id[n_out] = update_id
    out_batch_end[n_out] = False
    return n_out + 1


@_njit_no_refcount
def _emit_levels_nb(levels, l0, n_levels, ts_exch, ts_local, kind, update_id, out_ts_exch, out_ts_local, out_kind,
                    out_side, out_price, out_qty, out_update_id, out_batch_end, n_out):
    """Write the valid levels[l0:l0+n_levels] as rows; returns (new row count, rows written, invalid rows)."""
    bad = 0
    start = n_out
    for j in range(l0, l0 + n_levels):
        px = levels[j]["price"]
        q = levels[j]["qty"]
        if not (np.isfinite(px) and px > 0.0 and np.isfinite(q) and q >= 0.0):
            bad += 1
            continue
        n_out = _row_nb(out_ts_exch, out_ts_local, out_kind, out_side, out_price, out_qty, out_update_id, out_batch_end,
                        n_out, ts_exch, ts_local, kind, levels[j]["side"], px, q, update_id)
    return n_out, n_out - start, bad


@njit(cache=True, inline="always")
def _older_than_snapshot_nb(u, snap_lid, futures):
    """True if a diff ending at u is covered by the snapshot (futures u < lastUpdateId, spot u <= lastUpdateId)."""
    return u < snap_lid if futures else u <= snap_lid


# Book states of the sequencer.
_NO_BOOK, _AWAIT_BRIDGE, _SYNCED, _LOST = 0, 1, 2, 3

#: Verdicts of :func:`diff_verdict_nb` on one depth diff while a snapshot is known.
DIFF_APPLY = 0  # apply it: the book is (or stays) synced at its u
DIFF_STALE = 1  # the snapshot already covers it: drop it
DIFF_GAP = 2  # it does not continue the book: the book is lost until a new snapshot


@njit(cache=True)
def diff_verdict_nb(state, snap_lid, prev_u, first_u, u, pu, futures):
    """Binance's diff-depth sync rule for one diff (``U`` = first_u, ``u``, ``pu``) in book state ``state``
    (_AWAIT_BRIDGE after a snapshot with ``lastUpdateId`` = snap_lid, else _SYNCED at ``prev_u``); returns
    (DIFF_* verdict, expected, got). The one rule of the ingest sequencer and the live adapter."""
    if state == _AWAIT_BRIDGE:
        if _older_than_snapshot_nb(u, snap_lid, futures):
            return DIFF_STALE, np.int64(0), np.int64(0)
        expected = snap_lid if futures else snap_lid + 1
        got = first_u
        ok = got <= expected
    elif futures:
        expected = prev_u
        got = pu
        ok = got == expected
    else:
        expected = prev_u + 1
        got = first_u
        ok = got == expected
    return (DIFF_APPLY if ok else DIFF_GAP), np.int64(expected), np.int64(got)


@njit(cache=True)
def snapshot_is_old_nb(state, last_update_id, prev_u):
    """True if a REST snapshot is not newer than a synced book (dropped: the book keeps its diffs)."""
    return state == _SYNCED and last_update_id <= prev_u


@_njit_no_refcount
def _depth_nb(t, msgs, idx, levels, futures, ts_local, applied_status, state, snap_lid, prev_u, n_gaps, n_pending,
              unsync_gap, seq, gaps, pending, out_ts_exch, out_ts_local, out_kind, out_side, out_price, out_qty,
              out_update_id, out_batch_end, n_out):
    """One depth diff (position t) while a snapshot is known (_AWAIT_BRIDGE or _SYNCED); returns updated state."""
    m = msgs[idx[t]]
    verdict, expected, got = diff_verdict_nb(state, snap_lid, prev_u, m["U"], m["u"], m["pu"], futures)
    if verdict == DIFF_STALE:
        seq[t]["status"] = MsgStatus.STALE
        return n_out, state, prev_u, n_gaps, n_pending, unsync_gap
    if verdict == DIFF_GAP:
        gaps[n_gaps]["msg"] = t
        gaps[n_gaps]["expected"] = expected
        gaps[n_gaps]["got"] = got
        pending[n_pending] = t
        seq[t]["status"] = MsgStatus.PENDING
        return n_out, _LOST, prev_u, n_gaps + 1, n_pending + 1, n_gaps
    n0 = n_out
    n_out, w, bad = _emit_levels_nb(levels, m["level_start"], m["n_levels"], m["E_ms"] * 1_000_000, ts_local,
                                    Kind.DEPTH, m["u"], out_ts_exch, out_ts_local, out_kind, out_side, out_price,
                                    out_qty, out_update_id, out_batch_end, n_out)
    if n_out > n0:
        out_batch_end[n_out - 1] = True
    seq[t]["rows_written"] = w
    seq[t]["rows_bad"] = bad
    seq[t]["status"] = applied_status
    return n_out, _SYNCED, m["u"], n_gaps, n_pending, unsync_gap


@njit(cache=True)
def _sequence_nb(msgs, idx, levels, futures, seq, gaps, pending,
                 out_ts_exch, out_ts_local, out_kind, out_side, out_price, out_qty, out_update_id, out_batch_end):
    """Apply Binance's sync rules to one symbol's messages msgs[idx] (arrival order) and write its store rows.

    Returns (rows written, gaps found); per-message outcomes go to seq (by position in idx), gaps to gaps.
    """
    n = idx.shape[0]
    state = _NO_BOOK
    snap_lid = np.int64(-1)
    prev_u = np.int64(-1)
    unsync_gap = -1  # gap that made the book unknown, -1 before the first snapshot
    n_pending = 0
    n_gaps = 0
    n_out = 0
    last_depth_e_ms = np.int64(-1)
    for t in range(n):
        m = msgs[idx[t]]
        kind = m["kind"]
        seq[t]["status"] = MsgStatus.NONE
        seq[t]["gap_id"] = -1
        seq[t]["rows_written"] = 0
        seq[t]["rows_bad"] = 0
        if kind == MsgKind.SNAPSHOT:
            seq[t]["rows_described"] = m["n_levels"] + 1
        elif kind == MsgKind.DEPTH:
            seq[t]["rows_described"] = m["n_levels"]
        elif kind == MsgKind.TRADE:
            seq[t]["rows_described"] = 1
        elif kind == MsgKind.BOOK_TICKER:
            seq[t]["rows_described"] = 2
        else:
            seq[t]["rows_described"] = 0

    for t in range(n):
        m = msgs[idx[t]]
        kind = m["kind"]
        ts_local = m["ts_local_ns"]
        if kind == MsgKind.TRADE:
            px = m["price_1"]
            q = m["qty_1"]
            if np.isfinite(px) and px > 0.0 and np.isfinite(q) and q > 0.0:
                side = Side.ASK if m["buyer_maker"] == 1 else Side.BID
                n_out = _row_nb(out_ts_exch, out_ts_local, out_kind, out_side, out_price, out_qty, out_update_id,
                                out_batch_end, n_out, m["T_ms"] * 1_000_000, ts_local, Kind.TRADE, side, px, q,
                                m["trade_id"])
                out_batch_end[n_out - 1] = True
                seq[t]["rows_written"] = 1
            else:
                seq[t]["rows_bad"] = 1
            seq[t]["status"] = MsgStatus.APPLIED
        elif kind == MsgKind.BOOK_TICKER:
            if m["T_ms"] >= 0:
                te = m["T_ms"] * 1_000_000
            elif m["E_ms"] >= 0:
                te = m["E_ms"] * 1_000_000
            elif last_depth_e_ms >= 0:
                te = last_depth_e_ms * 1_000_000
            else:
                te = ts_local
            n0 = n_out
            for s in range(2):
                px = m["price_1"] if s == 0 else m["price_2"]
                q = m["qty_1"] if s == 0 else m["qty_2"]
                if np.isfinite(px) and px > 0.0 and np.isfinite(q) and q >= 0.0:
                    n_out = _row_nb(out_ts_exch, out_ts_local, out_kind, out_side, out_price, out_qty, out_update_id,
                                    out_batch_end, n_out, te, ts_local, Kind.BBO, Side.BID if s == 0 else Side.ASK,
                                    px, q, m["u"])
            if n_out > n0:
                out_batch_end[n_out - 1] = True
            seq[t]["rows_written"] = n_out - n0
            seq[t]["rows_bad"] = 2 - (n_out - n0)
            seq[t]["status"] = MsgStatus.APPLIED
        elif kind == MsgKind.DEPTH:
            last_depth_e_ms = m["E_ms"]
            if state == _NO_BOOK or state == _LOST:
                pending[n_pending] = t
                n_pending += 1
                seq[t]["status"] = MsgStatus.PENDING
                continue
            n_out, state, prev_u, n_gaps, n_pending, unsync_gap = _depth_nb(
                t, msgs, idx, levels, futures, ts_local, MsgStatus.APPLIED, state, snap_lid, prev_u, n_gaps,
                n_pending, unsync_gap, seq, gaps, pending, out_ts_exch, out_ts_local, out_kind, out_side, out_price,
                out_qty, out_update_id, out_batch_end, n_out)
        elif kind == MsgKind.SNAPSHOT:
            lid = m["last_update_id"]
            if snapshot_is_old_nb(state, lid, prev_u):
                seq[t]["status"] = MsgStatus.OLD_SNAPSHOT
                continue
            if m["E_ms"] >= 0:
                te = m["E_ms"] * 1_000_000
            elif last_depth_e_ms >= 0:
                te = last_depth_e_ms * 1_000_000
            else:
                te = ts_local
                for j in range(t + 1, n):
                    if msgs[idx[j]]["kind"] == MsgKind.DEPTH:
                        te = min(ts_local, msgs[idx[j]]["E_ms"] * 1_000_000)
                        break
            n_out = _row_nb(out_ts_exch, out_ts_local, out_kind, out_side, out_price, out_qty, out_update_id,
                            out_batch_end, n_out, te, ts_local, Kind.CLEAR, Side.BOTH, 0.0, 0.0, lid)
            n_out, w, bad = _emit_levels_nb(levels, m["level_start"], m["n_levels"], te, ts_local, Kind.SNAPSHOT, lid,
                                            out_ts_exch, out_ts_local, out_kind, out_side, out_price, out_qty,
                                            out_update_id, out_batch_end, n_out)
            out_batch_end[n_out - 1] = True
            seq[t]["rows_written"] = w + 1
            seq[t]["rows_bad"] = bad
            seq[t]["status"] = MsgStatus.APPLIED
            state = _AWAIT_BRIDGE
            snap_lid = lid
            # Diffs buffered while the book was unknown: older ones are quarantined, newer ones applied now, at
            # the snapshot's local time (the earliest moment a live book could apply them).
            held = pending[:n_pending].copy()
            held_gap = unsync_gap
            n_pending = 0
            for p in held:
                if state == _LOST:
                    pending[n_pending] = p
                    n_pending += 1
                    continue
                if state == _AWAIT_BRIDGE and _older_than_snapshot_nb(msgs[idx[p]]["u"], snap_lid, futures):
                    seq[p]["status"] = MsgStatus.PRE_SYNC if held_gap < 0 else MsgStatus.AFTER_GAP
                    seq[p]["gap_id"] = held_gap
                    continue
                n_out, state, prev_u, n_gaps, n_pending, unsync_gap = _depth_nb(
                    p, msgs, idx, levels, futures, ts_local, MsgStatus.DEFERRED, state, snap_lid, prev_u, n_gaps,
                    n_pending, unsync_gap, seq, gaps, pending, out_ts_exch, out_ts_local, out_kind, out_side,
                    out_price, out_qty, out_update_id, out_batch_end, n_out)
    # Depth still buffered at the end never found a snapshot.
    for j in range(n_pending):
        p = pending[j]
        seq[p]["status"] = MsgStatus.PRE_SYNC if unsync_gap < 0 else MsgStatus.AFTER_GAP
        seq[p]["gap_id"] = unsync_gap
    return n_out, n_gaps


# ================================================================================================ Python side


class _Unreadable(Exception):
    """A line the Python path cannot turn into a message; the text is the quarantine reason."""


_json = msgspec.json.Decoder()


def _int_field(data: dict, key: str, what: str) -> int:
    if key not in data:
        raise _Unreadable(f"{what} without field {key!r}")
    v = data[key]
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise _Unreadable(f"{what} field {key!r} is not an integer: {v!r}")
    try:
        iv = int(v)
    except ValueError:
        raise _Unreadable(f"{what} field {key!r} is not an integer: {v!r}") from None
    if not 0 <= iv < 2**63:
        raise _Unreadable(f"{what} field {key!r} out of range: {v!r}")
    return iv


def _num(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise _Unreadable(f"{what} is not a number: {v!r}")
    try:
        return float(v)
    except ValueError:
        raise _Unreadable(f"{what} is not a number: {v!r}") from None


def _float_field(data: dict, key: str, what: str) -> float:
    if key not in data:
        raise _Unreadable(f"{what} without field {key!r}")
    return _num(data[key], f"{what} field {key!r}")


def _levels_py(data: dict, key: str, side: int, what: str) -> list[tuple[float, float, int]]:
    if key not in data:
        raise _Unreadable(f"{what} without field {key!r}")
    arr = data[key]
    if not isinstance(arr, list):
        raise _Unreadable(f"{what} field {key!r} is not a list of [price, qty]")
    out = []
    for lv in arr:
        if not isinstance(lv, list) or len(lv) < 2:
            raise _Unreadable(f"{what} field {key!r} holds {lv!r}, not [price, qty]")
        out.append((_num(lv[0], f"{what} {key} price"), _num(lv[1], f"{what} {key} qty"), side))
    return out


def _read_line_py(line: bytes, rec: np.void) -> tuple[list, str | None, str | None]:
    """Fill rec from one line the scanner could not read; returns (levels, symbol, stream) or raises _Unreadable."""
    sp = -1
    for j, ch in enumerate(line):
        if ch in (32, 9):
            sp = j
            break
    if sp <= 0:
        raise _Unreadable(f"not a '<local_ts> <json>' line: {line[:60]!r}")
    ts_text = line[:sp]
    try:
        ts = int(ts_text)
    except ValueError:
        raise _Unreadable(f"local timestamp {ts_text[:40]!r} is not an integer") from None
    if not 0 < ts < 2**63:
        raise _Unreadable(f"local timestamp {ts} out of range")
    rec["ts_local_raw"] = ts
    try:
        obj = _json.decode(line[sp + 1 :])
    except msgspec.DecodeError as exc:
        raise _Unreadable(f"unparseable JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _Unreadable(f"JSON {type(obj).__name__} where a message object was expected")
    stream = obj.get("stream") if isinstance(obj.get("stream"), str) else None
    data = obj["data"] if isinstance(obj.get("data"), dict) else obj
    ev = data.get("e")
    sym = data.get("s") if isinstance(data.get("s"), str) and data.get("s") else None
    levels: list = []
    if ev is None and "lastUpdateId" in data:
        what = "depth snapshot"
        rec["last_update_id"] = _int_field(data, "lastUpdateId", what)
        if "E" in data:
            rec["E_ms"] = _int_field(data, "E", what)
        if "T" in data:
            rec["T_ms"] = _int_field(data, "T", what)
        levels = _levels_py(data, "bids", 1, what) + _levels_py(data, "asks", -1, what)
        rec["kind"] = MsgKind.SNAPSHOT
    elif ev == "depthUpdate":
        what = "depthUpdate"
        rec["E_ms"] = _int_field(data, "E", what)
        if "T" in data:
            rec["T_ms"] = _int_field(data, "T", what)
        rec["U"] = _int_field(data, "U", what)
        rec["u"] = _int_field(data, "u", what)
        if "pu" in data:
            rec["pu"] = _int_field(data, "pu", what)
        levels = _levels_py(data, "b", 1, what) + _levels_py(data, "a", -1, what)
        rec["kind"] = MsgKind.DEPTH
    elif ev == "trade":
        what = "trade"
        rec["T_ms"] = _int_field(data, "T", what)
        if "E" in data:
            rec["E_ms"] = _int_field(data, "E", what)
        rec["trade_id"] = _int_field(data, "t", what)
        rec["price_1"] = _float_field(data, "p", what)
        rec["qty_1"] = _float_field(data, "q", what)
        if not isinstance(data.get("m"), bool):
            raise _Unreadable(f"trade field 'm' (buyer is maker) missing or not true/false: {data.get('m')!r}")
        rec["buyer_maker"] = 1 if data["m"] else 0
        rec["kind"] = MsgKind.TRADE
    elif ev == "bookTicker" or (ev is None and all(key in data for key in ("u", "b", "B", "a", "A"))):
        what = "bookTicker"
        rec["u"] = _int_field(data, "u", what)
        if "T" in data:
            rec["T_ms"] = _int_field(data, "T", what)
        if "E" in data:
            rec["E_ms"] = _int_field(data, "E", what)
        rec["price_1"] = _float_field(data, "b", what)
        rec["qty_1"] = _float_field(data, "B", what)
        rec["price_2"] = _float_field(data, "a", what)
        rec["qty_2"] = _float_field(data, "A", what)
        rec["kind"] = MsgKind.BOOK_TICKER
    else:
        raise _Unreadable(f"unknown stream {stream!r} (event {ev!r}): not depth, trade, bookTicker or a depth snapshot")
    if sym is None and rec["kind"] != MsgKind.SNAPSHOT:
        if stream and "@" in stream:
            sym = stream.split("@", 1)[0]
        else:
            raise _Unreadable(f"{what} without field 's' (symbol)")
    return levels, (sym.upper() if sym else None), stream


def _stream_problem(stream: str) -> str | None:
    """Why a combined-stream name is not one this parser reads, or None."""
    if "@" not in stream:
        return f"stream {stream!r} has no '<symbol>@<channel>' form"
    chan = stream.split("@", 1)[1]
    if chan in ("trade", "bookTicker", "depth"):
        return None
    if chan.startswith("depth@") and chan[6:].endswith("ms") and chan[6:-2].isdigit():
        return None
    if chan.startswith("depth"):
        return f"unknown stream {stream!r}: partial book streams (depth<N>) are snapshots, not diffs"
    return f"unknown stream {stream!r}: only @depth, @trade and @bookTicker are ingested"


def _unit_of(raw: np.ndarray) -> np.ndarray:
    """Index into _UNITS of each epoch value by magnitude (-1: too small to be an epoch time)."""
    a = np.abs(raw.astype(np.float64))
    return np.select([a >= 1e17, a >= 1e14, a >= 1e11, a >= 1e8], [3, 2, 1, 0], -1)


_UNITS = ("s", "ms", "us", "ns")

@dataclass
class _File:
    """One capture file after scanning: its text, message and level records, and what the Python path found."""

    path: str
    name: str
    text: bytes
    msgs: np.ndarray
    levels: np.ndarray
    names: dict  # message index -> symbol read by the Python path
    streams: dict  # message index -> stream name read by the Python path
    reasons: dict  # message index -> quarantine reason of a corrupt line
    unit: str | None
    lines: int
    truncated: bool


class _Scan:
    """Scanner state of one file, fed whole lines (in one piece, or piece by piece with their text offsets)."""

    def __init__(self, file_idx: int, size_hint: int):
        # First guesses of the record counts (lines are >= ~100 bytes, levels >= ~14); grown when they run out.
        self.msgs = np.empty(size_hint // 100 + 1024, dtype=MSG_DTYPE)
        self.levels = np.empty(size_hint // 16 + 1024, dtype=LEVEL_DTYPE)
        self.file_idx = file_idx
        self.n_msg = self.n_lv = self.line_no = 0

    def feed(self, buf: np.ndarray, base: int) -> None:
        pos = 0
        while True:
            pos, self.line_no, self.n_msg, self.n_lv = _scan_nb(buf, pos, self.line_no, self.msgs, self.n_msg,
                                                                self.levels, self.n_lv, self.file_idx, base, _POW10)
            if pos >= len(buf):
                return
            if self.n_msg >= len(self.msgs):
                self.msgs = np.concatenate([self.msgs, np.empty(len(self.msgs), dtype=MSG_DTYPE)])
            else:
                self.levels = np.concatenate([self.levels, np.empty(len(self.levels), dtype=LEVEL_DTYPE)])


def _scan_file(path: str, file_idx: int, opts: IngestOptions) -> tuple[bytes, _Scan, bool]:
    """Text of a capture file (common.read_bytes: gzip, zip or plain) and its scan; True if it was truncated."""
    truncated = False
    if opts.allow_truncated:
        try:
            text = common.read_bytes(path)
        except DataError:
            text = common.read_bytes(path, allow_truncated=True)
            truncated = True
    else:
        text = common.read_bytes(path)
    scan = _Scan(file_idx, len(text))
    scan.feed(np.frombuffer(text, dtype=np.uint8), 0)
    return text, scan, truncated


def _read_file(path: str, file_idx: int, futures: bool, opts: IngestOptions) -> _File:
    text, scan, truncated = _scan_file(path, file_idx, opts)
    msgs = scan.msgs[: scan.n_msg]
    n_lv = scan.n_lv
    extra_levels: list = []
    names: dict = {}
    streams: dict = {}
    reasons: dict = {}
    for k in np.flatnonzero(msgs["kind"] == MsgKind.UNREAD):
        rec = msgs[k]
        line = text[rec["line_off"] : rec["line_end"]]
        # Forget whatever the scanner read before it gave up on the line.
        for fld in ("E_ms", "T_ms", "U", "u", "pu", "trade_id", "last_update_id", "ts_local_raw"):
            rec[fld] = -1
        for fld in ("price_1", "qty_1", "price_2", "qty_2"):
            rec[fld] = np.nan
        for fld in ("sym_hash", "sym_off", "sym_len", "stream_hash", "stream_off", "stream_len"):
            rec[fld] = 0
        rec["buyer_maker"] = -1
        try:
            lv, sym, stream = _read_line_py(line, rec)
        except _Unreadable as exc:
            rec["kind"] = MsgKind.CORRUPT
            reasons[int(k)] = str(exc)
            continue
        rec["level_start"] = n_lv + len(extra_levels)
        rec["n_levels"] = len(lv)
        extra_levels.extend(lv)
        if sym:
            names[int(k)] = sym
        if stream:
            streams[int(k)] = stream
    levels = scan.levels[:n_lv]
    if extra_levels:
        levels = np.concatenate([levels, np.array(extra_levels, dtype=LEVEL_DTYPE)])

    def corrupt(k, reason: str) -> None:
        msgs[k]["kind"] = MsgKind.CORRUPT
        reasons[int(k)] = reason

    ok = msgs["kind"] != MsgKind.CORRUPT
    # Local timestamp unit: the option, else the magnitude of the file's first readable line.
    if opts.local_ts_unit:
        unit = opts.local_ts_unit
        if unit not in common.UNIT_TO_NS:
            raise DataError(f"--local-ts-unit must be one of {', '.join(common.UNIT_TO_NS)}; got {unit!r}")
    elif ok.any():
        first = int(np.flatnonzero(ok)[0])
        unit = common.detect_ts_unit(float(msgs["ts_local_raw"][first]))
        odd = ok & (_unit_of(msgs["ts_local_raw"]) != _UNITS.index(unit))
        for k in np.flatnonzero(odd):
            corrupt(k, f"local timestamp {int(msgs[k]['ts_local_raw'])} is not in {unit} like the rest of the file "
                       "(pass --local-ts-unit if the file really mixes units)")
    else:
        unit = None
    if unit:
        mult = common.UNIT_TO_NS[unit]
        too_big = (msgs["kind"] != MsgKind.CORRUPT) & (msgs["ts_local_raw"] > (2**63 - 1) // mult)
        for k in np.flatnonzero(too_big):
            corrupt(k, f"local timestamp {int(msgs[k]['ts_local_raw'])} {unit} overflows int64 ns")
        msgs["ts_local_ns"] = np.where(msgs["kind"] != MsgKind.CORRUPT, msgs["ts_local_raw"], 0) * mult

    # Streams this parser does not read (e.g. partial book depth20, aggTrade).
    has_stream = (msgs["stream_len"] > 0) & (msgs["kind"] != MsgKind.CORRUPT)
    if has_stream.any():
        hashes, first_idx = np.unique(msgs["stream_hash"][has_stream], return_index=True)
        for h, k in zip(hashes, np.flatnonzero(has_stream)[first_idx]):
            off, ln = int(msgs[k]["stream_off"]), int(msgs[k]["stream_len"])
            problem = _stream_problem(text[off : off + ln].decode("utf-8", "replace"))
            if problem:
                for j in np.flatnonzero(has_stream & (msgs["stream_hash"] == h)):
                    corrupt(j, problem)
    for k, name in streams.items():
        problem = _stream_problem(name)
        if problem and msgs[k]["kind"] != MsgKind.CORRUPT:
            corrupt(k, problem)

    # The diff-depth flavour must match the venue: futures diffs carry pu, spot diffs do not.
    depth = msgs["kind"] == MsgKind.DEPTH
    if depth.any():
        with_pu = depth & (msgs["pu"] >= 0)
        if futures and not with_pu.any():
            raise DataError(
                f"{path}: depthUpdate messages have no 'pu' field, so this is a Binance spot capture, not futures; "
                "ingest it with --source binance-spot"
            )
        if not futures and with_pu.any():
            k = int(np.flatnonzero(with_pu)[0])
            raise DataError(
                f"{path}:{int(msgs[k]['line'])}: depthUpdate carries 'pu' (futures sequencing), so this is a Binance "
                "USD-M/COIN-M capture, not spot; ingest it with --source binance-usdm (or binance-coinm)"
            )
        if futures:
            for k in np.flatnonzero(depth & (msgs["pu"] < 0)):
                corrupt(k, "depthUpdate without field 'pu' (futures diffs must chain on pu)")
    return _File(path=path, name=Path(path).name, text=text, msgs=msgs, levels=levels, names=names, streams=streams,
                 reasons=reasons, unit=unit, lines=scan.line_no, truncated=truncated)


def _assign_symbols(files: list[_File]) -> list[str]:
    """Set msgs["sym_id"] of every message of every file; returns the symbol names by id (first seen first)."""
    symbols: list[str] = []
    ids: dict[str, int] = {}

    def sid(name: str) -> int:
        if name not in ids:
            ids[name] = len(symbols)
            symbols.append(name)
        return ids[name]

    for f in files:
        m = f.msgs
        named = np.flatnonzero((m["sym_len"] > 0) & (m["kind"] != MsgKind.CORRUPT))
        if len(named):
            hashes, first, inv = np.unique(m["sym_hash"][named], return_index=True, return_inverse=True)
            hid = np.empty(len(hashes), dtype=np.int32)
            for h in np.argsort(first, kind="stable"):  # ids in order of first appearance
                k = named[first[h]]
                off, ln = int(m[k]["sym_off"]), int(m[k]["sym_len"])
                hid[h] = sid(f.text[off : off + ln].decode("utf-8", "replace").upper())
            m["sym_id"][named] = hid[inv]
        for k, name in sorted(f.names.items()):
            if m[k]["kind"] != MsgKind.CORRUPT:
                m[k]["sym_id"] = sid(name)
    # Snapshots carry no symbol: give each to the depth stream it belongs to.
    for fi, f in enumerate(files):
        for k in np.flatnonzero((f.msgs["kind"] == MsgKind.SNAPSHOT) & (f.msgs["sym_id"] < 0)):
            sym = _snapshot_symbol(files, fi, int(k))
            f.msgs[k]["sym_id"] = sym
            if sym < 0:
                f.msgs[k]["kind"] = MsgKind.CORRUPT
                f.reasons[int(k)] = "depth snapshot line without any depth stream in the files to attribute it to"
    # Corrupt lines count in the stream of the nearest readable line (previous, else next, else the first stream).
    for f in files:
        bad = np.flatnonzero(f.msgs["kind"] == MsgKind.CORRUPT)
        if not len(bad):
            continue
        good = np.flatnonzero((f.msgs["kind"] != MsgKind.CORRUPT) & (f.msgs["sym_id"] >= 0))
        for k in bad:
            if len(good):
                j = np.searchsorted(good, k)
                f.msgs[k]["sym_id"] = f.msgs[good[j - 1] if j > 0 else good[0]]["sym_id"]
            else:
                f.msgs[k]["sym_id"] = 0 if symbols else -1
    return symbols


def _snapshot_symbol(files: list[_File], fi: int, k: int) -> int:
    """Symbol of a snapshot line (it names none): the only depth stream; else the stream whose diffs near it
    bridge its lastUpdateId, ties broken by the price nearest its best bid; else the nearest depth stream."""
    depth_ids: set[int] = set()
    for g in files:
        d = g.msgs["kind"] == MsgKind.DEPTH
        depth_ids.update(int(s) for s in np.unique(g.msgs["sym_id"][d]) if s >= 0)
    if len(depth_ids) <= 1:
        return depth_ids.pop() if depth_ids else -1
    f = files[fi]
    m = f.msgs
    lid = int(m[k]["last_update_id"])
    near = m[max(0, k - 1000) : k + 1001]
    bridge = (near["kind"] == MsgKind.DEPTH) & (near["sym_id"] >= 0) & (near["U"] <= lid + 1) & (near["u"] >= lid)
    cands = sorted(set(int(s) for s in near["sym_id"][bridge]))
    if len(cands) == 1:
        return cands[0]
    cands = cands or sorted(depth_ids)
    n_lv = int(m[k]["n_levels"])
    bid = math.nan
    if n_lv:
        lv = f.levels[int(m[k]["level_start"]) : int(m[k]["level_start"]) + n_lv]
        bids = lv["price"][lv["side"] == 1]
        bid = float(bids[0]) if len(bids) else float(lv["price"][0])
    priced = (m["kind"] == MsgKind.TRADE) | (m["kind"] == MsgKind.BOOK_TICKER)
    best, best_dist = -1, math.inf
    for s in cands:
        sel = np.flatnonzero(priced & (m["sym_id"] == s))
        if not len(sel) or not bid > 0:
            continue
        j = np.searchsorted(sel, k)
        px = float(m[sel[j - 1] if j > 0 else sel[0]]["price_1"])
        if px > 0:
            dist = abs(math.log(px / bid))
            if dist < best_dist:
                best, best_dist = s, dist
    if best >= 0:
        return best
    prev = np.flatnonzero((m["kind"][:k] == MsgKind.DEPTH) & (m["sym_id"][:k] >= 0))
    if len(prev):
        return int(m[prev[-1]]["sym_id"])
    return cands[0]


def _contract(venue: str, symbol: str, opts: IngestOptions) -> dict:
    if venue == "binance-coinm":
        size = opts.contract_size or (100.0 if symbol.upper().startswith("BTCUSD_") else 10.0)
        return {"type": "inverse", "contract_size": float(size),
                "contract_size_source": "option" if opts.contract_size else "default (100 USD for BTCUSD_*, else 10 USD)"}
    return {"type": "linear", "contract_size": float(opts.contract_size or 1.0)}


def _runs(lines: np.ndarray) -> str:
    """Compact text of sorted line numbers: '3-7, 12'."""
    if not len(lines):
        return ""
    parts = []
    start = prev = int(lines[0])
    for x in lines[1:]:
        x = int(x)
        if x != prev + 1:
            parts.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = x
        prev = x
    parts.append(f"{start}-{prev}" if prev > start else f"{start}")
    if len(parts) > 8:
        parts = parts[:4] + ["..."] + parts[-3:]
    return ", ".join(parts)


_QUARANTINED = (MsgStatus.PRE_SYNC, MsgStatus.STALE, MsgStatus.AFTER_GAP, MsgStatus.OLD_SNAPSHOT)


def _build_stream(venue: str, symbol: str, sym_id: int, msgs: np.ndarray, levels: np.ndarray, files: list[_File],
                  sources: list[dict], futures: bool, opts: IngestOptions) -> ParsedStream:
    """Sequence one symbol's messages (msgs: every file's records, levels: every file's levels) into a stream."""
    mine = msgs["sym_id"] == sym_id
    kinds_all = msgs["kind"]
    idx = np.flatnonzero(mine & (kinds_all != MsgKind.CORRUPT))
    corrupt_idx = np.flatnonzero(mine & (kinds_all == MsgKind.CORRUPT))
    kinds = kinds_all[idx]
    n_levels = msgs["n_levels"][idx]
    cap = int(n_levels.sum() + (kinds == MsgKind.SNAPSHOT).sum() + (kinds == MsgKind.TRADE).sum()
              + 2 * (kinds == MsgKind.BOOK_TICKER).sum())
    cols = {c: np.empty(cap, dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}
    seq = np.empty(len(idx), dtype=SEQ_DTYPE)
    gaps = np.empty(max(len(idx), 1), dtype=GAP_DTYPE)
    pending = np.empty(max(len(idx), 1), dtype=np.int64)
    n_out, n_gaps = _sequence_nb(msgs, idx, levels, futures, seq, gaps, pending, *(cols[c] for c in EVENT_COLUMNS))
    cols = {c: a[:n_out] for c, a in cols.items()}

    stream = ParsedStream(venue=venue, symbol=symbol, columns=cols, feed_latency={"kind": "recorded"},
                          contract=_contract(venue, symbol, opts))
    units = sorted({f.unit for f in files if f.unit})
    stream.local_ts_unit = ",".join(units) if units else None
    status = seq["status"]
    described = seq["rows_described"]
    file_of = msgs["file_idx"][idx]
    line_of = msgs["line"][idx]
    names = [f.name for f in files]
    stream.rows_in = int(described.sum()) + len(corrupt_idx)

    def group(mask: np.ndarray, reason: str) -> None:
        """One quarantine entry per file for the messages in mask."""
        for fi in np.unique(file_of[mask]):
            sel = mask & (file_of == fi)
            lines = line_of[sel]
            stream.add_quarantine(names[fi], int(lines[0]), f"{reason}: {int(sel.sum())} message(s), lines {_runs(lines)}",
                                  int(described[sel].sum()))

    group(status == MsgStatus.PRE_SYNC,
          "pre-sync: depth diff received before the first snapshot and older than it (book not known yet)")
    group(status == MsgStatus.STALE, "stale vs snapshot: depth diff already covered by the preceding snapshot")
    group(status == MsgStatus.OLD_SNAPSHOT,
          "snapshot older than the synced book (lastUpdateId <= last applied u): applying it would rewind the book")
    rule = "pu" if futures else "U"
    for g in range(n_gaps):
        t = int(gaps[g]["msg"])
        expected, got = int(gaps[g]["expected"]), int(gaps[g]["got"])
        held = (status == MsgStatus.AFTER_GAP) & (seq["gap_id"] == g)
        rows = int(described[held].sum())
        fname, line = names[int(file_of[t])], int(line_of[t])
        stream.gaps.append({
            "from_update_id": expected,
            "to_update_id": got,
            "ts_exch": int(msgs["E_ms"][idx[t]]) * _MS_TO_NS,
            "ts_local": int(msgs["ts_local_ns"][idx[t]]),
            "file": fname,
            "line": line,
            "rows_quarantined": rows,
            "messages_quarantined": int(held.sum()),
            "handled": "quarantined until next snapshot",
            "detail": f"expected {rule}={expected}, got {rule}={got}",
        })
        group(held, f"after sequence gap at {fname}:{line} (expected {rule}={expected}, got {rule}={got}): "
                    "depth diff held back until the next snapshot and not bridging it")
    for t in np.flatnonzero(seq["rows_bad"] > 0):
        k = idx[t]
        kind = MsgKind(int(msgs["kind"][k]))
        if kind in (MsgKind.DEPTH, MsgKind.SNAPSHOT):
            lv = levels[int(msgs["level_start"][k]) : int(msgs["level_start"][k]) + int(msgs["n_levels"][k])]
            bad = ~(np.isfinite(lv["price"]) & (lv["price"] > 0) & np.isfinite(lv["qty"]) & (lv["qty"] >= 0))
            vals = [f"price={p!r} qty={q!r}" for p, q in zip(lv["price"][bad][:3].tolist(), lv["qty"][bad][:3].tolist())]
        else:
            vals = [f"price={float(msgs['price_1'][k])!r} qty={float(msgs['qty_1'][k])!r}"]
            if kind == MsgKind.BOOK_TICKER:
                vals.append(f"price={float(msgs['price_2'][k])!r} qty={float(msgs['qty_2'][k])!r}")
        stream.add_quarantine(names[int(file_of[t])], int(line_of[t]),
                              f"invalid value in {kind.name.lower()} ({'; '.join(vals)}): price must be finite and > 0, "
                              "qty finite and >= 0 (> 0 for a trade)", int(seq["rows_bad"][t]))
    for k in corrupt_idx:
        f = files[int(msgs["file_idx"][k])]
        stream.add_quarantine(f.name, int(msgs["line"][k]), f.reasons.get(_local_index(files, k), "unreadable line"), 1)

    quarantined = np.isin(status, _QUARANTINED)
    expected_q = int(described[quarantined].sum()) + int(seq["rows_bad"].sum()) + len(corrupt_idx)
    if stream.rows_quarantined != expected_q or stream.rows_in != n_out + stream.rows_quarantined:
        raise DataError(
            f"internal: {venue}/{symbol} rows do not reconcile in the Binance parser: rows_in={stream.rows_in}, "
            f"written {n_out}, quarantined {stream.rows_quarantined} (expected {expected_q})"
        )

    file_all = msgs["file_idx"]
    per_file = [int(described[file_of == fi].sum()) + int((file_all[corrupt_idx] == fi).sum()) for fi in range(len(files))]
    stream.sources = [dict(src, rows_in=per_file[fi], lines=files[fi].lines, local_ts_unit=files[fi].unit,
                           truncated=files[fi].truncated)
                      for fi, src in enumerate(sources) if per_file[fi] or len(files) == 1]
    depth = kinds == MsgKind.DEPTH
    stream.extra = {
        "messages": {
            "depth": int(depth.sum()),
            "depth_applied": int((depth & (status == MsgStatus.APPLIED)).sum()),
            "depth_applied_after_snapshot": int((status == MsgStatus.DEFERRED).sum()),
            "depth_pre_sync": int((status == MsgStatus.PRE_SYNC).sum()),
            "depth_stale": int((status == MsgStatus.STALE).sum()),
            "depth_after_gap": int((status == MsgStatus.AFTER_GAP).sum()),
            "trade": int((kinds == MsgKind.TRADE).sum()),
            "book_ticker": int((kinds == MsgKind.BOOK_TICKER).sum()),
            "snapshot": int((kinds == MsgKind.SNAPSHOT).sum()),
            "snapshot_quarantined": int((status == MsgStatus.OLD_SNAPSHOT).sum()),
            "corrupt_lines": int(len(corrupt_idx)),
        }
    }
    return stream


def _local_index(files: list[_File], k: int) -> int:
    """Index inside its file of message k of the concatenated records."""
    for f in files:
        if k < len(f.msgs):
            return int(k)
        k -= len(f.msgs)
    return int(k)


def parse(paths: list[str | os.PathLike], *, venue: str, source: str, opts: IngestOptions) -> list[ParsedStream]:
    """Parse Binance capture files (one recording, given in order) into one stream per symbol.

    Parameters
    ----------
    paths : capture files with ``<local_ts> <raw JSON>`` lines, gzip or plain; several files of one recording
        are one continuous stream (sequence state carries over from file to file).
    venue : "binance-usdm", "binance-coinm" or "binance-spot" (decides the diff-depth sequencing rule).
    source : the --source name the caller resolved (used in messages).
    opts : ingest options; ``local_ts_unit``, ``allow_truncated`` and ``contract_size`` are read here.

    Returns
    -------
    list of ParsedStream, one per symbol, in order of first appearance.

    Examples
    --------
    >>> from mmlab.data.ingest import IngestOptions, parse
    >>> streams = parse(["usdm_btcusdt_20240808.gz"], "binance-usdm", IngestOptions())  # doctest: +SKIP
    >>> streams[0].symbol, streams[0].extra["messages"]["depth"]  # doctest: +SKIP
    ('BTCUSDT', 6551)
    """
    if venue not in VENUES:
        raise DataError(f"the Binance parser got venue {venue!r} (source {source!r}); use one of {', '.join(VENUES)}")
    futures = venue != "binance-spot"
    paths = [os.fspath(p) for p in paths]
    files = [_read_file(p, fi, futures, opts) for fi, p in enumerate(paths)]
    symbols = _assign_symbols(files)
    if not symbols:
        problems = [f"{f.name}:{int(f.msgs[k]['line'])}: {r}" for f in files for k, r in list(f.reasons.items())[:3]]
        raise DataError(
            f"no Binance messages found in {', '.join(paths)} (expected '<local_ts> <json>' lines of @depth, @trade "
            f"and @bookTicker streams){'; first problems: ' + ' | '.join(problems[:3]) if problems else ''}"
        )
    # One record array for all files (levels renumbered), so that sequencing runs across file boundaries.
    if len(files) == 1:
        msgs, levels = files[0].msgs, files[0].levels
    else:
        lv_off = np.cumsum([0] + [len(f.levels) for f in files[:-1]])
        for f, off in zip(files, lv_off):
            f.msgs["level_start"] += off
        msgs = np.concatenate([f.msgs for f in files])
        levels = np.concatenate([f.levels for f in files])
    sources = [common.source_record(f.path) for f in files]
    return [_build_stream(venue, sym, sid, msgs, levels, files, sources, futures, opts) for sid, sym in enumerate(symbols)]
