"""What every venue adapter shares: frame outcome codes and the growable event buffer the adapters append to."""

from __future__ import annotations

from enum import IntEnum
from itertools import accumulate

import numpy as np
from numba import njit, typeof

from mmlab.types import event_dtype


class Frame(IntEnum):
    """What one received frame was (counted per venue in ``mm_ws_frames_total{kind}``)."""

    MARKET = 0  # market data: rows appended
    CONTROL = 1  # subscription ack, pong, REST-sync bookkeeping: no rows
    SKIPPED = 2  # a valid frame of a topic the runner does not use (tickers, kline, ...)
    GARBAGE = 3  # undecodable or of unknown shape: counted and skipped
    GAP = 4  # a sequence gap: the symbol's book is invalid until a fresh snapshot (resubscribe)
    DROPPED = 5  # book frame dropped by the sequence rules (duplicate, inside an open gap)


@njit(cache=True, error_model="numpy")
def append_rows_nb(out, off, ts_exch, ts_local, kind, side, price, qty, update_id, batch_end, tick_size, symbol_id):
    """Write one frame's valid rows into ``out[off:]`` (price -> round(price / tick_size) ticks); returns rows.

    ``ts_exch`` / ``update_id`` are arrays of the rows or of length 1 (one value for the frame). Rows ingest would
    quarantine (non-finite or non-positive price, negative qty, zero-size trade) are left out, and a dropped
    ``batch_end`` moves to the frame's previous kept row, as ``mmlab data ingest`` does.
    """
    n = 0
    pend_end = False
    for j in range(price.shape[0]):
        k = kind[j]
        p = price[j]
        q = qty[j]
        if k != 3 and (not np.isfinite(p) or p <= 0.0 or not np.isfinite(q) or q < 0.0 or (k == 2 and q == 0.0)):
            if batch_end[j] and n > 0:
                pend_end = True
            continue
        r = out[off + n]
        r.ts_exch = ts_exch[j] if ts_exch.shape[0] > 1 else ts_exch[0]
        r.ts_local = ts_local
        x = p / tick_size
        r.price_ticks = np.int64(np.rint(x)) if abs(x) < 9.2e18 else np.int64(-9223372036854775808)
        r.qty = q
        r.update_id = update_id[j] if update_id.shape[0] > 1 else update_id[0]
        r.kind = k
        r.side = side[j]
        r.batch_end = batch_end[j]
        r.symbol_id = symbol_id
        n += 1
    if pend_end:
        out[off + n - 1].batch_end = True
    return n


class EventBuffer:
    """Append-only ``event_dtype`` rows of the frames received since the last simulator step."""

    def __init__(self, capacity: int = 1 << 14):
        self.ev = np.zeros(capacity, dtype=event_dtype)
        self.n = 0
        self._append_nb = None

    def reserve(self, k: int) -> None:
        """Room for ``k`` more rows after ``n`` (kernels write at ``ev[n:]``, then the caller adds to ``n``)."""
        if self.n + k > len(self.ev):
            grown = np.zeros(max(2 * len(self.ev), self.n + k), dtype=event_dtype)
            grown[: self.n] = self.ev[: self.n]
            self.ev = grown

    def append(self, ts_exch, ts_local_ns: int, kind, side, price, qty, update_id, batch_end, tick_size: float,
               symbol_id: int) -> None:
        """Append one frame's rows (``ts_exch`` / ``update_id`` may be scalars); invalid rows are left out."""
        k = len(price)
        if k == 0:
            return
        self.reserve(k)
        ts_exch = np.atleast_1d(np.asarray(ts_exch, np.int64))
        update_id = np.atleast_1d(np.asarray(update_id, np.int64))
        args = (self.ev, self.n, ts_exch, int(ts_local_ns), np.ascontiguousarray(kind, np.uint8),
                np.ascontiguousarray(side, np.int8), np.ascontiguousarray(price, np.float64),
                np.ascontiguousarray(qty, np.float64), np.ascontiguousarray(update_id),
                np.ascontiguousarray(batch_end, np.bool_), float(tick_size), int(symbol_id))
        if self._append_nb is None:
            self._append_nb = entry_point(append_rows_nb, *(typeof(x) for x in args))
        self.n += self._append_nb(*args)

    def warm(self) -> None:
        """Load (or compile) the append kernel for the argument types :meth:`append` passes, before frames arrive."""
        if self._append_nb is None:
            i8 = np.zeros(0, np.int64)
            f8 = np.zeros(0, np.float64)
            args = (self.ev, 0, i8, 0, np.zeros(0, np.uint8), np.zeros(0, np.int8), f8, f8, i8,
                    np.zeros(0, np.bool_), 1.0, 0)
            self._append_nb = entry_point(append_rows_nb, *(typeof(x) for x in args))

    def take(self) -> np.ndarray:
        """The rows appended so far (a copy); the buffer is empty afterwards."""
        out = self.ev[: self.n].copy()
        self.n = 0
        return out


# ------------------------------------------------------------------------------- frame bytes -> event rows
#
# Book frames are parsed straight from the frame's bytes into the event buffer: no Python object per price
# level. Decimal text is converted exactly (the correctly rounded double, as float() or msgspec give) when its
# digits fit the fast path (at most 15 significant digits and a power of ten up to 1e22: both operands exact,
# one IEEE division); anything else makes the kernel return -1 and the caller takes the general decoder.

_POW10 = np.array([10.0 ** k for k in range(23)])

#: Kernels that create no array run without the runtime's reference counting: otherwise every call between the
#: small readers pays an atomic increment and decrement per array argument (most of a frame's parse time).
njit_no_refcount = njit(cache=True, _nrt=False, error_model="numpy")


@njit_no_refcount
def _skip_ws_nb(buf, i):
    n = buf.shape[0]
    while i < n and (buf[i] == 32 or buf[i] == 9 or buf[i] == 10 or buf[i] == 13):
        i += 1
    return i


@njit_no_refcount
def _number_nb(buf, i, res):
    """Parse a decimal number (optionally in quotes) at ``buf[i]``: res[0] = value; returns the next index or -1."""
    n = buf.shape[0]
    quoted = False
    if i < n and buf[i] == 34:
        quoted = True
        i += 1
    neg = False
    if i < n and buf[i] == 45:
        neg = True
        i += 1
    mant = 0
    digits = 0
    frac = 0
    seen_dot = False
    start = i
    while i < n:
        c = buf[i]
        if 48 <= c <= 57:
            if digits > 0 or c != 48:
                digits += 1
                if digits > 15:
                    return -1
            mant = mant * 10 + (c - 48)
            if seen_dot:
                frac += 1
            i += 1
        elif c == 46 and not seen_dot:
            seen_dot = True
            i += 1
        else:
            break
    if i == start or frac > 22:
        return -1
    if quoted:
        if i >= n or buf[i] != 34:
            return -1
        i += 1
    v = float(mant) / _POW10[frac] if frac else float(mant)
    res[0] = -v if neg else v
    return i


@njit_no_refcount
def _levels_nb(buf, i, price, qty, k, res):
    """Parse ``[["p","q"],...]`` at ``buf[i]`` into price/qty from ``k`` (``res``: one float of scratch); returns
    (next index, new k) or (-1, k)."""
    n = buf.shape[0]
    i = _skip_ws_nb(buf, i)
    if i >= n or buf[i] != 91:
        return -1, k
    i = _skip_ws_nb(buf, i + 1)
    if i < n and buf[i] == 93:
        return i + 1, k
    while True:
        if i >= n or buf[i] != 91 or k >= price.shape[0]:
            return -1, k
        i = _number_nb(buf, _skip_ws_nb(buf, i + 1), res)
        if i < 0:
            return -1, k
        price[k] = res[0]
        i = _skip_ws_nb(buf, i)
        if i >= n or buf[i] != 44:
            return -1, k
        i = _number_nb(buf, _skip_ws_nb(buf, i + 1), res)
        if i < 0:
            return -1, k
        qty[k] = res[0]
        k += 1
        i = _skip_ws_nb(buf, i)
        if i >= n or buf[i] != 93:
            return -1, k
        i = _skip_ws_nb(buf, i + 1)
        if i < n and buf[i] == 44:
            i = _skip_ws_nb(buf, i + 1)
            continue
        if i < n and buf[i] == 93:
            return i + 1, k
        return -1, k


@njit_no_refcount
def _skip_value_nb(buf, i):
    """Index after the JSON value at ``buf[i]`` (strings, numbers, literals, nested arrays/objects), or -1."""
    n = buf.shape[0]
    depth = 0
    in_str = False
    while i < n:
        c = buf[i]
        if in_str:
            if c == 92:
                i += 2
                continue
            if c == 34:
                in_str = False
                if depth == 0:
                    return i + 1
        elif c == 34:
            in_str = True
        elif c == 91 or c == 123:
            depth += 1
        elif c == 93 or c == 125:
            if depth == 0:
                return i
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == 44 and depth == 0:
            return i
        i += 1
    return -1


@njit(cache=True, inline="always")
def put_row_nb(out, n, ts_exch, ts_local, kind, side, price, qty, update_id, tick_size, symbol_id):
    """Write one row at ``out[n]`` (batch_end false) unless ingest would quarantine it; returns the new count."""
    if kind != 3 and (not np.isfinite(price) or price <= 0.0 or not np.isfinite(qty) or qty < 0.0
                      or (kind == 2 and qty == 0.0)):
        return n
    r = out[n]
    r.ts_exch = ts_exch
    r.ts_local = ts_local
    x = price / tick_size
    r.price_ticks = np.int64(np.rint(x)) if abs(x) < 9.2e18 else np.int64(-9223372036854775808)
    r.qty = qty
    r.update_id = update_id
    r.kind = kind
    r.side = side
    r.batch_end = False
    r.symbol_id = symbol_id
    return n + 1


@njit_no_refcount
def book_levels_nb(buf, scratch, res, head):
    """Read a book frame's ``data`` object (bytes ``buf``: ``{"s":..,"b":[[p,q],..],"a":[..],"u":..,..}``) in one
    pass: bid levels into ``scratch[0]`` (price) / ``scratch[1]`` (qty), ask levels into ``scratch[2]`` /
    ``scratch[3]``; head = (bid count, ask count, start and end of the ``s`` text or -1, ``u`` or -1, index after
    the object). Returns False when the bytes are outside the fast path (or ``scratch`` lacks room)."""
    n = buf.shape[0]
    nb = -1
    na = -1
    s0 = -1
    s1 = -1
    u = -1
    i = _skip_ws_nb(buf, 0)
    if i >= n or buf[i] != 123:
        return False
    i += 1
    while True:
        i = _skip_ws_nb(buf, i)
        if i >= n:
            return False
        if buf[i] == 125:
            break
        if buf[i] == 44:
            i += 1
            continue
        if buf[i] != 34:
            return False
        # Key: "b" and "a" are the levels, "s" the symbol, "u" the update id; any other key's value is skipped.
        key = 0
        if i + 2 < n and buf[i + 2] == 34:
            key = buf[i + 1]
        j = i + 1
        while j < n and buf[j] != 34:
            j += 1
        i = _skip_ws_nb(buf, j + 1)
        if i >= n or buf[i] != 58:
            return False
        i = _skip_ws_nb(buf, i + 1)
        if key == 98:
            i, nb = _levels_nb(buf, i, scratch[0], scratch[1], 0, res)
        elif key == 97:
            i, na = _levels_nb(buf, i, scratch[2], scratch[3], 0, res)
        elif key == 115 and i < n and buf[i] == 34 and s0 < 0:  # "s": a plain string
            s0 = i + 1
            i = s0
            while i < n and buf[i] != 34:
                if buf[i] == 92 or buf[i] < 32 or buf[i] >= 128:
                    return False
                i += 1
            s1 = i
            i += 1
        elif key == 117 and u < 0 and i < n and 48 <= buf[i] <= 57:  # "u": a plain integer
            v = 0
            k = 0
            while i < n and 48 <= buf[i] <= 57:
                v = v * 10 + (buf[i] - 48)
                i += 1
                k += 1
            if k > 18:
                return False
            u = v
        elif key == 115 or key == 117:
            return False
        else:
            i = _skip_value_nb(buf, i)
        if i < 0:
            return False
    head[0] = max(nb, 0)
    head[1] = max(na, 0)
    head[2] = s0
    head[3] = s1
    head[4] = u
    head[5] = i + 1
    return True


@njit_no_refcount
def book_level_rows_nb(out, off, ts_exch, ts_local, update_id, snapshot, tick_size, symbol_id, scratch, nb, na):
    """Rows of the levels :func:`book_levels_nb` read into ``out[off:]``: CLEAR + SNAPSHOT rows when ``snapshot``
    else DEPTH rows, bids then asks, the last kept row ``batch_end``, rows ingest would quarantine left out (as
    :func:`append_rows_nb`). Returns the rows written, or -1 when ``out`` lacks room (nothing written)."""
    if off + nb + na + 1 > out.shape[0]:
        return -1
    k = off
    if snapshot:
        k = put_row_nb(out, k, ts_exch, ts_local, 3, 0, 0.0, 0.0, update_id, tick_size, symbol_id)
    lvl_kind = 4 if snapshot else 1
    for j in range(nb):
        k = put_row_nb(out, k, ts_exch, ts_local, lvl_kind, 1, scratch[0, j], scratch[1, j], update_id, tick_size,
                       symbol_id)
    for j in range(na):
        k = put_row_nb(out, k, ts_exch, ts_local, lvl_kind, -1, scratch[2, j], scratch[3, j], update_id, tick_size,
                       symbol_id)
    if k > off:
        out[k - 1].batch_end = True
    return k - off


@njit(cache=True, error_model="numpy")
def book_frame_rows_nb(buf, out, off, ts_exch, ts_local, update_id, snapshot, tick_size, symbol_id):
    """Rows of one book frame's ``data`` bytes (:func:`book_levels_nb` then :func:`book_level_rows_nb`, with
    its own scratch); returns the rows written, or -1 when the bytes are outside the fast path."""
    scratch = np.empty((4, buf.shape[0] // 6 + 2))
    head = np.zeros(6, np.int64)
    if not book_levels_nb(buf, scratch, np.zeros(1), head):
        return -1
    return book_level_rows_nb(out, off, ts_exch, ts_local, update_id, snapshot, tick_size, symbol_id, scratch,
                              head[0], head[1])


#: Columns of the per-frame ``meta`` rows a batch frame kernel writes (int64): what the frame was (a venue's
#: ``FAST_*`` code, or SLOW: the general decoder decides), its symbol, venue-specific values, its rows in the
#: scratch rows.
M_STATUS, M_SID, M_A, M_B, M_ROW0, M_NROW = range(6)
#: ``meta[:, M_STATUS]`` of a frame the batch kernel left to the venue's general (per-frame) decoder.
SLOW = 0


@njit_no_refcount
def commit_rows_nb(src, meta, keep, j0, j1, out, off):
    """Copy the rows of frames ``j0 <= j < j1`` with ``keep[j]`` (uint8) (``meta[j, ROW0]``, ``meta[j, NROW]``: their
    rows in ``src``) to ``out[off:]`` in frame order (room checked by the caller); returns the new row count."""
    k = off
    for j in range(j0, j1):
        if keep[j]:
            r0 = meta[j, M_ROW0]
            for r in range(r0, r0 + meta[j, M_NROW]):
                out[k] = src[r]
                k += 1
    return k




class FrameBatch:
    """Scratch of a venue's batch frame kernel: the frames' bytes joined, their offsets and receive times, the
    rows they produce (committed to the session's :class:`EventBuffer` only where the sequence rules allow),
    per-frame ``meta`` and the level scratch. Grows as needed; nothing is allocated per frame."""

    def __init__(self):
        self.rows = np.zeros(1 << 12, dtype=event_dtype)
        self.meta = np.zeros((256, 6), dtype=np.int64)
        self.levels = np.zeros((4, 1 << 12))
        self.res = np.zeros(1)
        self.head = np.zeros(6, dtype=np.int64)

    def prepare(self, raws: list, ts: list) -> tuple:
        """(bytes, frame ends, ts_local) arrays of ``raws`` (bytes) received at ``ts``; room for their rows."""
        n = len(raws)
        lens = list(map(len, raws))
        joined = b"".join(raws)
        both = np.array(list(accumulate(lens)) + ts, dtype=np.int64)
        if len(self.meta) < n:
            self.meta = np.zeros((max(n, 2 * len(self.meta)), 6), dtype=np.int64)
        need = len(joined) // 6 + 2 * n + 2  # a level takes at least 7 bytes (``["1","1"]``), a frame adds a CLEAR
        if len(self.rows) < need:
            self.rows = np.zeros(max(need, 2 * len(self.rows)), dtype=event_dtype)
        big = max(lens) // 6 + 2 if n else 2
        if self.levels.shape[1] < big:
            self.levels = np.zeros((4, max(big, 2 * self.levels.shape[1])))
        return np.frombuffer(joined, dtype=np.uint8), both[:n], both[n:]


def symbol_ticks(venue: str, symbols, instruments: dict, rest_name: str) -> tuple[list[str], dict, np.ndarray]:
    """(upper-case symbols, symbol -> id, tick sizes) of an adapter; a symbol without a tick size is a
    ``ConfigError`` naming the config key and the REST endpoint (``rest_name``) that would give it."""
    from mmlab.errors import ConfigError

    names = [s.upper() for s in symbols]
    tick = np.zeros(len(names))
    for i, s in enumerate(names):
        inst = instruments.get(s)
        if not inst or not inst.get("tick_size"):
            raise ConfigError(f"no tick size for {venue}/{s}: set [live] tick_sizes = {{{s} = ...}} or let the "
                              f"runner read it from REST {rest_name} (live.rest_url)")
        tick[i] = float(inst["tick_size"])
    return names, {s: i for i, s in enumerate(names)}, tick


def entry_point(dispatcher, *arg_types):
    """The compiled entry of ``dispatcher`` for ``arg_types`` (loaded from numba's cache when present): calling
    it skips the dispatcher's per-call type resolution (microseconds per argument)."""
    dispatcher.compile(arg_types)
    return dispatcher.overloads[tuple(arg_types)].entry_point
