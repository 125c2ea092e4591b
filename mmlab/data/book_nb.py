"""The L2 book kernel: dense per-tick level arrays around the touch, one book per symbol.

State is a ``book_dtype`` array (one record per book) plus two ``(n_books, n_levels)`` float64 arrays of level
quantities, indexed by ``price_ticks - base_tick``. The window follows the market: when a level that matters
(one near the touch) falls outside it, the window is re-centered on the touch; non-empty levels that fall off
the far end, and new levels too far from the touch to fit, are dropped and counted in ``dropped_levels``.

Watermarks bound the populated range of each side: every non-empty bid lies in ``[bid_low_tick, best_bid_tick]``
and every non-empty ask in ``[best_ask_tick, ask_high_tick]`` (a side's watermark resets when the side empties).
A CLEAR (before each snapshot) zeroes that range only, a re-centering moves only it, and a best-price rescan
stops at it: the cost follows the levels held (a few hundred), not the window (65,536 by default), with the
same results as sweeping the whole window.

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

from mmlab.errors import ConfigError
from mmlab.types import Kind, Side, book_dtype

#: ``best_bid_tick`` of a book without bids.
NO_BID_TICK = -(2**62)
#: ``best_ask_tick`` of a book without asks.
NO_ASK_TICK = 2**62

# Why ``book_apply_nb`` is one function with its cold paths written inline: numba reference-counts array
# arguments (an atomic NRT_incref/NRT_decref pair each) and removes those pairs only when the function calls no
# other compiled function that LLVM does not inline (the call's error path keeps the references alive). A call
# to an out-of-line re-center helper made every event 5-15x slower. ``test_book_nb`` checks the compiled code
# of the per-event kernels for NRT_incref. Scalar-only helpers are fine. Likewise every array argument must stay
# in use until the one exit (``keep = ...`` below), or its lifetime ends in different blocks and the pairs stay.

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
        raise ConfigError(f"n_books must be >= 1, got {n_books}")
    if n_levels < 4:
        raise ConfigError(f"n_levels must be >= 4, got {n_levels} (the book window in ticks; default 65536)")
    book = np.zeros(n_books, dtype=book_dtype)
    book["n_levels"] = n_levels
    book["best_bid_tick"] = NO_BID_TICK
    book["best_ask_tick"] = NO_ASK_TICK
    book["bid_low_tick"] = NO_ASK_TICK
    book["ask_high_tick"] = NO_BID_TICK
    book["msg_ts_local"] = -1  # message fields: mmlab.pipeline.fetch_md.count_book_message_nb
    book["msg_ts_exch"] = -1
    book["msg_update_id"] = -1
    bid_qty = np.zeros((n_books, n_levels), dtype=np.float64)
    ask_qty = np.zeros((n_books, n_levels), dtype=np.float64)
    return book, bid_qty, ask_qty


@njit(cache=True, _nrt=False, error_model="numpy")
def _fit_center_nb(n_levels, base_tick, best_bid_tick, best_ask_tick, side, price_ticks):
    """Window center that keeps a new out-of-window level near the touch, or NO_ASK_TICK to drop the level.

    Centers on the touch the book would have with this level, keeping both best prices at least n/8 from the
    edges; a one-sided, crossed or wider-than-window book centers on this side's touch.
    """
    half = n_levels // 2
    bb = best_bid_tick
    ba = best_ask_tick
    if side == _BID:
        if price_ticks > bb:
            bb = price_ticks
    elif price_ticks < ba:
        ba = price_ticks
    if bb != NO_BID_TICK and ba != NO_ASK_TICK and bb < ba and ba - bb <= n_levels - n_levels // 4:
        center = bb + (ba - bb) // 2
    elif side == _BID:
        center = bb
    else:
        center = ba
    if price_ticks - center >= half - 1 or center - price_ticks >= half - 1:
        return NO_ASK_TICK  # too far from the touch to matter
    if abs(center - (base_tick + half)) < n_levels // 8:
        return NO_ASK_TICK  # the touch is near the middle already: a deep level, not worth an O(n) move
    return center


@njit(cache=True, _nrt=False, error_model="numpy")
def book_apply_nb(book, bid_qty, ask_qty, b, kind, side, price_ticks, qty):
    """Apply one event row to book ``b``: DEPTH/SNAPSHOT set a level (qty <= 0 deletes), CLEAR resets; others ignored."""
    n = book[b].n_levels
    if kind == _DEPTH or kind == _SNAPSHOT:
        add = qty > 0.0  # also False for NaN: a bad quantity deletes rather than corrupts a level
        idx = price_ticks - book[b].base_tick
        if not book[b].initialized or idx < 0 or idx >= n:
            # Cold path: anchor an empty window, or move the window to follow the touch.
            if not add:
                idx = -1  # deleting a level the window does not hold is a no-op
            elif not book[b].initialized:
                book[b].base_tick = price_ticks - n // 2
                book[b].initialized = True
                idx = n // 2
            else:
                center = _fit_center_nb(
                    n, book[b].base_tick, book[b].best_bid_tick, book[b].best_ask_tick, side, price_ticks
                )
                if center == NO_ASK_TICK:
                    book[b].dropped_levels += 1
                    idx = -1
                else:
                    new_base = center - n // 2
                    shift = new_base - book[b].base_tick  # new_idx = old_idx - shift
                    base = book[b].base_tick
                    # Only the watermarked ranges can hold levels: [blo, bhi] bids, [alo, ahi] asks (old indices).
                    blo, bhi, alo, ahi = 0, -1, 0, -1
                    if book[b].best_bid_tick != NO_BID_TICK:
                        blo = max(book[b].bid_low_tick - base, 0)
                        bhi = book[b].best_bid_tick - base
                    if book[b].best_ask_tick != NO_ASK_TICK:
                        alo = book[b].best_ask_tick - base
                        ahi = min(book[b].ask_high_tick - base, n - 1)
                    lost = 0
                    if shift >= n or shift <= -n:
                        for i in range(blo, bhi + 1):
                            if bid_qty[b, i] > 0.0:
                                lost += 1
                            bid_qty[b, i] = 0.0
                        for i in range(alo, ahi + 1):
                            if ask_qty[b, i] > 0.0:
                                lost += 1
                            ask_qty[b, i] = 0.0
                    elif shift > 0:
                        # Levels below index shift fall off; the rest move down by shift (ascending copy), and the
                        # top shift indices of each range are left empty.
                        for i in range(blo, min(bhi + 1, shift)):
                            if bid_qty[b, i] > 0.0:
                                lost += 1
                        for i in range(max(blo, shift), bhi + 1):
                            bid_qty[b, i - shift] = bid_qty[b, i]
                        for i in range(max(blo, bhi - shift + 1), bhi + 1):
                            bid_qty[b, i] = 0.0
                        for i in range(alo, min(ahi + 1, shift)):
                            if ask_qty[b, i] > 0.0:
                                lost += 1
                        for i in range(max(alo, shift), ahi + 1):
                            ask_qty[b, i - shift] = ask_qty[b, i]
                        for i in range(max(alo, ahi - shift + 1), ahi + 1):
                            ask_qty[b, i] = 0.0
                    else:
                        s = -shift
                        # Levels at index n - s and above fall off; the rest move up by s (descending copy).
                        for i in range(max(blo, n - s), bhi + 1):
                            if bid_qty[b, i] > 0.0:
                                lost += 1
                        for i in range(min(bhi, n - 1 - s), blo - 1, -1):
                            bid_qty[b, i + s] = bid_qty[b, i]
                        for i in range(blo, min(bhi, blo + s - 1) + 1):
                            bid_qty[b, i] = 0.0
                        for i in range(max(alo, n - s), ahi + 1):
                            if ask_qty[b, i] > 0.0:
                                lost += 1
                        for i in range(min(ahi, n - 1 - s), alo - 1, -1):
                            ask_qty[b, i + s] = ask_qty[b, i]
                        for i in range(alo, min(ahi, alo + s - 1) + 1):
                            ask_qty[b, i] = 0.0
                    book[b].base_tick = new_base
                    book[b].recenters += 1
                    book[b].dropped_levels += lost
                    # A best price that fell off the window: the next one inside it, scanning from the edge.
                    bb = book[b].best_bid_tick
                    if bb != NO_BID_TICK and (bb < new_base or bb >= new_base + n):
                        j = n - 1 if bb >= new_base else -1
                        j_end = max(book[b].bid_low_tick - new_base, 0)  # no bids below the watermark
                        while j >= j_end and not bid_qty[b, j] > 0.0:
                            j -= 1
                        if j >= j_end:
                            book[b].best_bid_tick = new_base + j
                        else:
                            book[b].best_bid_tick = NO_BID_TICK
                            book[b].bid_low_tick = NO_ASK_TICK
                    ba = book[b].best_ask_tick
                    if ba != NO_ASK_TICK and (ba < new_base or ba >= new_base + n):
                        j = 0 if ba < new_base else n
                        j_end = min(book[b].ask_high_tick - new_base, n - 1)  # no asks above the watermark
                        while j <= j_end and not ask_qty[b, j] > 0.0:
                            j += 1
                        if j <= j_end:
                            book[b].best_ask_tick = new_base + j
                        else:
                            book[b].best_ask_tick = NO_ASK_TICK
                            book[b].ask_high_tick = NO_BID_TICK
                    idx = price_ticks - new_base
        if idx >= 0:
            if side == _BID:
                if add:
                    bid_qty[b, idx] = qty
                    if price_ticks > book[b].best_bid_tick:
                        book[b].best_bid_tick = price_ticks
                    book[b].bid_low_tick = min(book[b].bid_low_tick, price_ticks)
                else:
                    bid_qty[b, idx] = 0.0
                    if price_ticks == book[b].best_bid_tick:
                        # The best level went away: scan down to the next non-empty one (bounded by the watermark).
                        j = idx - 1
                        j_end = max(book[b].bid_low_tick - book[b].base_tick, 0)
                        while j >= j_end and not bid_qty[b, j] > 0.0:
                            j -= 1
                        if j >= j_end:
                            book[b].best_bid_tick = book[b].base_tick + j
                        else:
                            book[b].best_bid_tick = NO_BID_TICK
                            book[b].bid_low_tick = NO_ASK_TICK
            elif side == _ASK:
                if add:
                    ask_qty[b, idx] = qty
                    if price_ticks < book[b].best_ask_tick:
                        book[b].best_ask_tick = price_ticks
                    book[b].ask_high_tick = max(book[b].ask_high_tick, price_ticks)
                else:
                    ask_qty[b, idx] = 0.0
                    if price_ticks == book[b].best_ask_tick:
                        j = idx + 1
                        j_end = min(book[b].ask_high_tick - book[b].base_tick, n - 1)
                        while j <= j_end and not ask_qty[b, j] > 0.0:
                            j += 1
                        if j <= j_end:
                            book[b].best_ask_tick = book[b].base_tick + j
                        else:
                            book[b].best_ask_tick = NO_ASK_TICK
                            book[b].ask_high_tick = NO_BID_TICK
    elif kind == _CLEAR:
        # Non-empty levels imply a best price, so an empty side needs no reset; a non-empty one is zeroed only
        # between its watermark and its best price (the populated range), not over the whole window.
        base = book[b].base_tick
        if (side == _BID or side == _BOTH) and book[b].best_bid_tick != NO_BID_TICK:
            for i in range(max(book[b].bid_low_tick - base, 0), book[b].best_bid_tick - base + 1):
                bid_qty[b, i] = 0.0
        if (side == _ASK or side == _BOTH) and book[b].best_ask_tick != NO_ASK_TICK:
            for i in range(book[b].best_ask_tick - base, min(book[b].ask_high_tick - base, n - 1) + 1):
                ask_qty[b, i] = 0.0
        if side == _BID or side == _BOTH:
            book[b].best_bid_tick = NO_BID_TICK
            book[b].bid_low_tick = NO_ASK_TICK
        if side == _ASK or side == _BOTH:
            book[b].best_ask_tick = NO_ASK_TICK
            book[b].ask_high_tick = NO_BID_TICK
        if side == _BOTH:
            # An empty book re-anchors its window on the next level it sees.
            book[b].initialized = False
    # Every array stays in use up to this one exit, so numba can drop its reference counting (see above).
    keep = book.shape[0] + bid_qty.shape[0] + ask_qty.shape[0]  # noqa: F841


@njit(cache=True, _nrt=False, error_model="numpy")
def book_level_qty_nb(book, bid_qty, ask_qty, b, side, price_ticks):
    """Quantity resting at ``price_ticks`` on ``side`` of book ``b``; 0.0 if absent or outside the window."""
    q = 0.0
    idx = price_ticks - book[b].base_tick
    if book[b].initialized and idx >= 0 and idx < book[b].n_levels:
        if side == _BID:
            q = bid_qty[b, idx]
        elif side == _ASK:
            q = ask_qty[b, idx]
    keep = book.shape[0] + bid_qty.shape[0] + ask_qty.shape[0]  # noqa: F841 (one exit, see above)
    return q


@njit(cache=True, _nrt=False, error_model="numpy")
def book_depth_nb(book, bid_qty, ask_qty, b, side, n, out_ticks, out_qty):
    """Write the top ``n`` levels of ``side`` (best first) into ``out_ticks``/``out_qty``; returns the count written."""
    m = min(n, len(out_ticks), len(out_qty))
    base = book[b].base_tick
    nl = book[b].n_levels
    k = 0
    if side == _BID and book[b].best_bid_tick != NO_BID_TICK:
        i = book[b].best_bid_tick - base
        while i >= 0 and k < m:
            q = bid_qty[b, i]
            if q > 0.0:
                out_ticks[k] = base + i
                out_qty[k] = q
                k += 1
            i -= 1
    elif side == _ASK and book[b].best_ask_tick != NO_ASK_TICK:
        i = book[b].best_ask_tick - base
        while i < nl and k < m:
            q = ask_qty[b, i]
            if q > 0.0:
                out_ticks[k] = base + i
                out_qty[k] = q
                k += 1
            i += 1
    keep = book.shape[0] + bid_qty.shape[0] + ask_qty.shape[0] + out_ticks.shape[0] + out_qty.shape[0]  # noqa: F841
    return k


@njit(cache=True, _nrt=False, error_model="numpy")
def book_mid_ticks_nb(book, b):
    """(best_bid + best_ask) / 2 in ticks, nan when a side is empty."""
    bb = book[b].best_bid_tick
    ba = book[b].best_ask_tick
    if bb == NO_BID_TICK or ba == NO_ASK_TICK:
        return np.nan
    return 0.5 * (bb + ba)

