"""The L2 book kernel: dense per-tick level arrays around the touch, one book per symbol.

State is a ``book_dtype`` array (one record per book) plus two ``(n_books, n_levels)`` float64 arrays of level
quantities, indexed by ``price_ticks - base_tick``. The window follows the market: when a level that matters
(one near the touch) falls outside it, the window is re-centered on the touch; non-empty levels that fall off
the far end, and new levels too far from the touch to fit, are dropped and counted in ``dropped_levels``.

The same kernel serves ``mmlab data verify``, the simulator and the live runner.

>>> book, bid_qty, ask_qty = new_books(1, n_levels=1024)
>>> book_apply_nb(book, bid_qty, ask_qty, 0, 1, 1, 100, 2.0)
>>> book_apply_nb(book, bid_qty, ask_qty, 0, 1, -1, 102, 1.0)
>>> float(book_mid_ticks_nb(book, 0))
101.0
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mmlab.types import Kind, Side, book_dtype

#: ``best_bid_tick`` of a book without bids.
NO_BID_TICK = -(2**62)
#: ``best_ask_tick`` of a book without asks.
NO_ASK_TICK = 2**62

_DEPTH = int(Kind.DEPTH)
_CLEAR = int(Kind.CLEAR)
_SNAPSHOT = int(Kind.SNAPSHOT)
_BID = int(Side.BID)
_ASK = int(Side.ASK)
_BOTH = int(Side.BOTH)

__all__ = [
    "NO_ASK_TICK",
    "NO_BID_TICK",
    "book_apply_nb",
    "book_depth_nb",
    "book_dtype",
    "book_level_qty_nb",
    "book_mid_ticks_nb",
    "new_books",
]


def new_books(n_books: int, n_levels: int = 1 << 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Allocate ``n_books`` empty books with a window of ``n_levels`` ticks each.

    Parameters
    ----------
    n_books : number of books (one per symbol); kernels address them by index ``b``.
    n_levels : window width in ticks; memory is ``2 * 8 * n_levels`` bytes per book.

    Returns
    -------
    (book, bid_qty, ask_qty) : ``book_dtype`` array of shape ``(n_books,)`` and two float64 arrays of shape
    ``(n_books, n_levels)``.
    """
    if n_books < 1:
        raise ValueError(f"n_books must be >= 1, got {n_books}")
    if n_levels < 4:
        raise ValueError(f"n_levels must be >= 4, got {n_levels}")
    book = np.zeros(n_books, dtype=book_dtype)
    book["n_levels"] = n_levels
    book["best_bid_tick"] = NO_BID_TICK
    book["best_ask_tick"] = NO_ASK_TICK
    bid_qty = np.zeros((n_books, n_levels), dtype=np.float64)
    ask_qty = np.zeros((n_books, n_levels), dtype=np.float64)
    return book, bid_qty, ask_qty


@njit(cache=True)
def _scan_bid_nb(bid_qty, b, start_idx):
    """Index of the highest non-empty bid at or below ``start_idx``, -1 if none."""
    i = start_idx
    while i >= 0:
        if bid_qty[b, i] > 0.0:
            return i
        i -= 1
    return -1


@njit(cache=True)
def _scan_ask_nb(ask_qty, b, start_idx, n):
    """Index of the lowest non-empty ask at or above ``start_idx``, -1 if none."""
    i = start_idx
    while i < n:
        if ask_qty[b, i] > 0.0:
            return i
        i += 1
    return -1


@njit(cache=True)
def _shift_side_nb(qty, b, shift, n):
    """Move a side's levels by ``shift`` indexes toward 0 (new_idx = old_idx - shift); returns levels lost."""
    lost = 0
    if shift >= n or shift <= -n:
        for i in range(n):
            if qty[b, i] > 0.0:
                lost += 1
            qty[b, i] = 0.0
        return lost
    if shift > 0:
        for i in range(shift):
            if qty[b, i] > 0.0:
                lost += 1
        for i in range(n - shift):
            qty[b, i] = qty[b, i + shift]
        for i in range(n - shift, n):
            qty[b, i] = 0.0
    elif shift < 0:
        s = -shift
        for i in range(n - s, n):
            if qty[b, i] > 0.0:
                lost += 1
        for i in range(n - 1, s - 1, -1):
            qty[b, i] = qty[b, i - s]
        for i in range(s):
            qty[b, i] = 0.0
    return lost


@njit(cache=True)
def _recenter_nb(book, bid_qty, ask_qty, b, center_tick):
    """Move the window so that ``center_tick`` sits in its middle; re-find a best price that fell off."""
    n = book[b].n_levels
    new_base = center_tick - n // 2
    shift = new_base - book[b].base_tick
    if shift == 0:
        return
    lost = _shift_side_nb(bid_qty, b, shift, n) + _shift_side_nb(ask_qty, b, shift, n)
    book[b].base_tick = new_base
    book[b].recenters += 1
    book[b].dropped_levels += lost
    bb = book[b].best_bid_tick
    if bb != NO_BID_TICK and (bb < new_base or bb >= new_base + n):
        j = _scan_bid_nb(bid_qty, b, min(bb - new_base, n - 1)) if bb >= new_base else -1
        book[b].best_bid_tick = new_base + j if j >= 0 else NO_BID_TICK
    ba = book[b].best_ask_tick
    if ba != NO_ASK_TICK and (ba < new_base or ba >= new_base + n):
        j = _scan_ask_nb(ask_qty, b, max(ba - new_base, 0), n) if ba < new_base + n else -1
        book[b].best_ask_tick = new_base + j if j >= 0 else NO_ASK_TICK


@njit(cache=True)
def _fit_level_nb(book, bid_qty, ask_qty, b, side, price_ticks):
    """Make room for a new non-empty level outside the window; returns False when it is too far to keep."""
    n = book[b].n_levels
    bb = book[b].best_bid_tick
    ba = book[b].best_ask_tick
    if side == _BID:
        if price_ticks > bb:
            bb = price_ticks
    else:
        if price_ticks < ba:
            ba = price_ticks
    # Center on the touch the book would have with this level; a one-sided, crossed or wider-than-window
    # book centers on this side's touch.
    if bb != NO_BID_TICK and ba != NO_ASK_TICK and bb < ba and ba - bb < n // 2:
        center = bb + (ba - bb) // 2
    elif side == _BID:
        center = bb
    else:
        center = ba
    half = n // 2
    if price_ticks - center >= half - 1 or center - price_ticks >= half - 1:
        return False
    # A deep level that the current window nearly covers is not worth an O(n) move of the arrays.
    cur_center = book[b].base_tick + half
    if abs(center - cur_center) < n // 8 and (price_ticks - center) * (price_ticks - center) * 4 > half * half:
        return False
    _recenter_nb(book, bid_qty, ask_qty, b, center)
    return True


@njit(cache=True)
def _set_level_nb(book, bid_qty, ask_qty, b, side, price_ticks, qty):
    n = book[b].n_levels
    if not book[b].initialized:
        if not qty > 0.0:
            return
        book[b].base_tick = price_ticks - n // 2
        book[b].initialized = True
    idx = price_ticks - book[b].base_tick
    if idx < 0 or idx >= n:
        if not qty > 0.0:
            return  # deleting a level the window does not hold
        if not _fit_level_nb(book, bid_qty, ask_qty, b, side, price_ticks):
            book[b].dropped_levels += 1
            return
        idx = price_ticks - book[b].base_tick
    if side == _BID:
        if qty > 0.0:
            bid_qty[b, idx] = qty
            if price_ticks > book[b].best_bid_tick:
                book[b].best_bid_tick = price_ticks
        else:
            bid_qty[b, idx] = 0.0
            if price_ticks == book[b].best_bid_tick:
                j = _scan_bid_nb(bid_qty, b, idx - 1)
                book[b].best_bid_tick = book[b].base_tick + j if j >= 0 else NO_BID_TICK
    elif side == _ASK:
        if qty > 0.0:
            ask_qty[b, idx] = qty
            if price_ticks < book[b].best_ask_tick:
                book[b].best_ask_tick = price_ticks
        else:
            ask_qty[b, idx] = 0.0
            if price_ticks == book[b].best_ask_tick:
                j = _scan_ask_nb(ask_qty, b, idx + 1, n)
                book[b].best_ask_tick = book[b].base_tick + j if j >= 0 else NO_ASK_TICK


@njit(cache=True)
def _clear_nb(book, bid_qty, ask_qty, b, side):
    n = book[b].n_levels
    if side == _BID or side == _BOTH:
        if book[b].best_bid_tick != NO_BID_TICK:
            bid_qty[b, :] = 0.0
        else:
            for i in range(n):  # levels may exist below a window edge only if best is set; be safe anyway
                if bid_qty[b, i] != 0.0:
                    bid_qty[b, :] = 0.0
                    break
        book[b].best_bid_tick = NO_BID_TICK
    if side == _ASK or side == _BOTH:
        if book[b].best_ask_tick != NO_ASK_TICK:
            ask_qty[b, :] = 0.0
        else:
            for i in range(n):
                if ask_qty[b, i] != 0.0:
                    ask_qty[b, :] = 0.0
                    break
        book[b].best_ask_tick = NO_ASK_TICK
    if side == _BOTH:
        # An empty book re-anchors its window on the next level it sees.
        book[b].initialized = False


@njit(cache=True)
def book_apply_nb(book, bid_qty, ask_qty, b, kind, side, price_ticks, qty):
    """Apply one event row to book ``b``: DEPTH/SNAPSHOT set a level (qty <= 0 deletes), CLEAR resets; others ignored."""
    if kind == _DEPTH or kind == _SNAPSHOT:
        _set_level_nb(book, bid_qty, ask_qty, b, side, price_ticks, qty)
    elif kind == _CLEAR:
        _clear_nb(book, bid_qty, ask_qty, b, side)


@njit(cache=True)
def book_level_qty_nb(book, bid_qty, ask_qty, b, side, price_ticks):
    """Quantity resting at ``price_ticks`` on ``side`` of book ``b``; 0.0 if absent or outside the window."""
    if not book[b].initialized:
        return 0.0
    idx = price_ticks - book[b].base_tick
    if idx < 0 or idx >= book[b].n_levels:
        return 0.0
    if side == _BID:
        return bid_qty[b, idx]
    if side == _ASK:
        return ask_qty[b, idx]
    return 0.0


@njit(cache=True)
def book_depth_nb(book, bid_qty, ask_qty, b, side, n, out_ticks, out_qty):
    """Write the top ``n`` levels of ``side`` (best first) into ``out_ticks``/``out_qty``; returns the count written."""
    m = min(n, len(out_ticks), len(out_qty))
    if m <= 0:
        return 0
    base = book[b].base_tick
    nl = book[b].n_levels
    k = 0
    if side == _BID:
        if book[b].best_bid_tick == NO_BID_TICK:
            return 0
        i = book[b].best_bid_tick - base
        while i >= 0 and k < m:
            q = bid_qty[b, i]
            if q > 0.0:
                out_ticks[k] = base + i
                out_qty[k] = q
                k += 1
            i -= 1
    elif side == _ASK:
        if book[b].best_ask_tick == NO_ASK_TICK:
            return 0
        i = book[b].best_ask_tick - base
        while i < nl and k < m:
            q = ask_qty[b, i]
            if q > 0.0:
                out_ticks[k] = base + i
                out_qty[k] = q
                k += 1
            i += 1
    return k


@njit(cache=True)
def book_mid_ticks_nb(book, b):
    """(best_bid + best_ask) / 2 in ticks, nan when a side is empty."""
    bb = book[b].best_bid_tick
    ba = book[b].best_ask_tick
    if bb == NO_BID_TICK or ba == NO_ASK_TICK:
        return np.nan
    return 0.5 * (bb + ba)
