"""Watermarks of the dense L2 book: CLEAR and re-centering touch only the populated range, with the same results.

Every non-empty bid lies in ``[bid_low_tick, best_bid_tick]`` and every non-empty ask in
``[best_ask_tick, ask_high_tick]``; a reference that moves a whole window (a dict book with the kernel's own
re-centering rule) gives the same level arrays, best prices and counters.
"""

import numpy as np
import pytest

from mmlab.data.book_nb import (
    NO_ASK_TICK,
    NO_BID_TICK,
    _fit_center_nb,
    book_apply_nb,
    new_books,
)
from mmlab.types import Kind, Side

DEPTH, CLEAR, SNAPSHOT, TRADE = int(Kind.DEPTH), int(Kind.CLEAR), int(Kind.SNAPSHOT), int(Kind.TRADE)
BID, ASK, BOTH = int(Side.BID), int(Side.ASK), int(Side.BOTH)


class WindowRef:
    """Slow windowed reference: dicts of the levels inside ``[base, base + n)``, the kernel's re-centering rule."""

    def __init__(self, n):
        self.n, self.base, self.init = n, 0, False
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.recenters = self.dropped = 0

    def best(self):
        return (max(self.bids) if self.bids else NO_BID_TICK, min(self.asks) if self.asks else NO_ASK_TICK)

    def apply(self, kind, side, px, qty):
        n = self.n
        if kind in (DEPTH, SNAPSHOT):
            add = qty > 0
            if not self.init or not (0 <= px - self.base < n):
                if not add:
                    return
                if not self.init:
                    self.base, self.init = px - n // 2, True
                else:
                    bb, ba = self.best()
                    center = _fit_center_nb.py_func(n, self.base, bb, ba, side, px)
                    if center == NO_ASK_TICK:
                        self.dropped += 1
                        return
                    self.base = center - n // 2
                    self.recenters += 1
                    for d in (self.bids, self.asks):
                        for p in [p for p in d if not (0 <= p - self.base < n)]:
                            del d[p]
                            self.dropped += 1
            d = self.bids if side == BID else self.asks
            if add:
                d[px] = qty
            else:
                d.pop(px, None)
        elif kind == CLEAR:
            if side in (BID, BOTH):
                self.bids.clear()
            if side in (ASK, BOTH):
                self.asks.clear()
            if side == BOTH:
                self.init = False


def check(book, bq, aq, ref, b=0):
    r = book[b]
    assert (int(r["best_bid_tick"]), int(r["best_ask_tick"])) == ref.best()
    assert (int(r["recenters"]), int(r["dropped_levels"])) == (ref.recenters, ref.dropped)
    n, base = int(r["n_levels"]), int(r["base_tick"])
    want_b, want_a = np.zeros(n), np.zeros(n)
    for p, q in ref.bids.items():
        want_b[p - base] = q
    for p, q in ref.asks.items():
        want_a[p - base] = q
    assert np.array_equal(bq[b], want_b) and np.array_equal(aq[b], want_a)
    # The watermark invariants.
    nz_b, nz_a = np.flatnonzero(bq[b]), np.flatnonzero(aq[b])
    if len(nz_b):
        assert r["bid_low_tick"] <= base + nz_b[0] and nz_b[-1] == r["best_bid_tick"] - base
    else:
        assert r["best_bid_tick"] == NO_BID_TICK
    if len(nz_a):
        assert r["ask_high_tick"] >= base + nz_a[-1] and nz_a[0] == r["best_ask_tick"] - base
    else:
        assert r["best_ask_tick"] == NO_ASK_TICK
    if r["best_bid_tick"] == NO_BID_TICK:
        assert r["bid_low_tick"] == NO_ASK_TICK or len(nz_b) == 0
    if r["best_ask_tick"] == NO_ASK_TICK:
        assert r["ask_high_tick"] == NO_BID_TICK or len(nz_a) == 0


def venue_like(rng, n_events, n_levels, start=10_000_000):
    """Diffs around a walking mid with jumps (some beyond the window), crossing levels, and snapshots: a CLEAR of
    one or both sides followed by 0..40 levels (an empty snapshot included), sometimes far from the old touch."""
    mid = start
    for _ in range(n_events):
        r = rng.random()
        if r < 0.01:
            side = (BID, ASK, BOTH)[int(rng.integers(3))]
            yield CLEAR, side, 0, 0.0
            if rng.random() < 0.3:
                mid += int(rng.integers(-3 * n_levels, 3 * n_levels))
            for _ in range(int(rng.integers(0, 40))):
                s = BID if rng.random() < 0.5 else ASK
                yield SNAPSHOT, s, mid - s * int(rng.integers(1, n_levels)), float(rng.integers(1, 9))
            continue
        mid += int(rng.integers(-n_levels, n_levels)) if r < 0.03 else round(rng.normal(0, 2))
        s = BID if rng.random() < 0.5 else ASK
        k = int(rng.exponential(n_levels / 6)) + 1
        if rng.random() < 0.05:
            k = -k  # a level on the other side of the touch: a crossed book for a while
        yield DEPTH, s, mid - s * k, 0.0 if rng.random() < 0.35 else float(rng.integers(1, 9))


@pytest.mark.parametrize("seed,n_levels", [(1, 16), (2, 64), (3, 256), (4, 64)])
def test_random_feed_matches_whole_window_reference(seed, n_levels):
    rng = np.random.default_rng(seed)
    book, bq, aq = new_books(1, n_levels=n_levels)
    ref = WindowRef(n_levels)
    for i, (kind, side, px, qty) in enumerate(venue_like(rng, 6000, n_levels)):
        book_apply_nb(book, bq, aq, 0, kind, side, px, qty)
        ref.apply(kind, side, px, qty)
        if i % 7 == 0 or kind == CLEAR:
            check(book, bq, aq, ref)
    check(book, bq, aq, ref)
    assert book[0]["recenters"] > 20 and book[0]["dropped_levels"] > 20  # both paths exercised


def test_new_books_watermarks_empty():
    book, _, _ = new_books(2, n_levels=32)
    assert (book["bid_low_tick"] == NO_ASK_TICK).all() and (book["ask_high_tick"] == NO_BID_TICK).all()


def test_clear_zeroes_only_the_populated_range_and_resets_watermarks():
    book, bq, aq = new_books(1, n_levels=64)
    for p in (100, 98, 90):
        book_apply_nb(book, bq, aq, 0, SNAPSHOT, BID, p, 1.0)
    for p in (101, 103, 110):
        book_apply_nb(book, bq, aq, 0, SNAPSHOT, ASK, p, 2.0)
    assert book[0]["bid_low_tick"] == 90 and book[0]["ask_high_tick"] == 110
    # A sentinel outside the watermarked ranges (never a level of this book) shows the clear does not sweep it.
    base = int(book[0]["base_tick"])
    bq[0, 0] = aq[0, 63] = -7.0
    book_apply_nb(book, bq, aq, 0, CLEAR, BID, 0, 0.0)
    assert book[0]["best_bid_tick"] == NO_BID_TICK and book[0]["bid_low_tick"] == NO_ASK_TICK
    assert not bq[0, 90 - base:101 - base].any() and bq[0, 0] == -7.0
    assert book[0]["ask_high_tick"] == 110 and aq[0, 110 - base] == 2.0
    book_apply_nb(book, bq, aq, 0, CLEAR, BOTH, 0, 0.0)
    assert book[0]["ask_high_tick"] == NO_BID_TICK and not aq[0, :63].any() and aq[0, 63] == -7.0
    assert not book[0]["initialized"]


def test_empty_snapshots_and_one_sided_clears():
    book, bq, aq = new_books(1, n_levels=64)
    ref = WindowRef(64)
    rows = [(CLEAR, BOTH, 0, 0.0), (CLEAR, BOTH, 0, 0.0),  # empty snapshots of an empty book
            (SNAPSHOT, BID, 500, 1.0), (SNAPSHOT, ASK, 502, 1.0), (CLEAR, ASK, 0, 0.0), (CLEAR, ASK, 0, 0.0),
            (DEPTH, ASK, 501, 3.0), (CLEAR, BOTH, 0, 0.0), (CLEAR, BID, 0, 0.0), (DEPTH, BID, 7, 1.0),
            (DEPTH, BID, 7, 0.0), (DEPTH, BID, 5, 2.0), (CLEAR, BID, 0, 0.0), (DEPTH, ASK, 9, 1.0)]
    for row in rows:
        book_apply_nb(book, bq, aq, 0, *row)
        ref.apply(*row)
        check(book, bq, aq, ref)


def test_side_emptied_by_deletes_resets_its_watermark():
    book, bq, aq = new_books(1, n_levels=64)
    for p in (100, 95):
        book_apply_nb(book, bq, aq, 0, DEPTH, BID, p, 1.0)
    for p in (95, 100):
        book_apply_nb(book, bq, aq, 0, DEPTH, BID, p, 0.0)
    assert book[0]["best_bid_tick"] == NO_BID_TICK and book[0]["bid_low_tick"] == NO_ASK_TICK
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 110, 1.0)
    assert book[0]["bid_low_tick"] == 110 and book[0]["best_bid_tick"] == 110


@pytest.mark.parametrize("direction", [1, -1])
def test_recentering_moves_both_sides_and_keeps_watermarks(direction):
    n = 64
    book, bq, aq = new_books(1, n_levels=n)
    ref = WindowRef(n)
    rows = [(DEPTH, BID, 1000 - i, float(i + 1)) for i in range(20)]
    rows += [(DEPTH, ASK, 1001 + i, float(i + 1)) for i in range(20)]
    # The touch walks out of the window one way in steps of 5 ticks: several re-centerings, levels falling off
    # the far end of each side, both sides moved.
    for k in range(1, 30):
        bid, ask = 1000 + direction * 5 * k, 1001 + direction * 5 * k
        rows += [(DEPTH, BID, bid, 1.0), (DEPTH, ASK, ask, 1.0)] if direction < 0 else \
            [(DEPTH, ASK, ask, 1.0), (DEPTH, BID, bid, 1.0)]
        # Levels of the other side now crossed by the touch are removed, as a venue would.
        rows += [(DEPTH, ASK, p, 0.0) for p in range(ask - 5 * direction, ask, direction)] if direction > 0 else \
            [(DEPTH, BID, p, 0.0) for p in range(bid + 5, bid, -1)]
    for row in rows:
        book_apply_nb(book, bq, aq, 0, *row)
        ref.apply(*row)
        check(book, bq, aq, ref)
    assert book[0]["recenters"] >= 3 and book[0]["dropped_levels"] > 0


def test_jump_beyond_the_window_loses_everything_and_counts_it():
    n = 64
    book, bq, aq = new_books(1, n_levels=n)
    ref = WindowRef(n)
    rows = [(DEPTH, BID, 100 - i, 1.0) for i in range(5)] + [(DEPTH, ASK, 101 + i, 1.0) for i in range(5)]
    rows += [(DEPTH, BID, 100 + 10 * n, 1.0), (DEPTH, ASK, 101 + 10 * n, 1.0)]
    for row in rows:
        book_apply_nb(book, bq, aq, 0, *row)
        ref.apply(*row)
        check(book, bq, aq, ref)
    assert book[0]["dropped_levels"] == ref.dropped
