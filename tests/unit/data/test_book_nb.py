"""The dense L2 book kernel against a slow dict-based reference book."""

import numpy as np
import pytest

from mmlab.data.book_nb import (
    NO_ASK_TICK,
    NO_BID_TICK,
    book_apply_nb,
    book_depth_nb,
    book_level_qty_nb,
    book_mid_ticks_nb,
    new_books,
)
from mmlab.types import Kind, Side, book_dtype

DEPTH, CLEAR, SNAPSHOT, TRADE, BBO = int(Kind.DEPTH), int(Kind.CLEAR), int(Kind.SNAPSHOT), int(Kind.TRADE), int(Kind.BBO)
BID, ASK, BOTH = int(Side.BID), int(Side.ASK), int(Side.BOTH)


class RefBook:
    """Slow reference: two dicts price_ticks -> qty."""

    def __init__(self):
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}

    def apply(self, kind, side, px, qty):
        if kind in (DEPTH, SNAPSHOT):
            d = self.bids if side == BID else self.asks
            if qty > 0:
                d[px] = qty
            else:
                d.pop(px, None)
        elif kind == CLEAR:
            if side in (BID, BOTH):
                self.bids.clear()
            if side in (ASK, BOTH):
                self.asks.clear()

    def best_bid(self):
        return max(self.bids) if self.bids else NO_BID_TICK

    def best_ask(self):
        return min(self.asks) if self.asks else NO_ASK_TICK


def random_walk_batches(rng, n_batches, start_tick, depth_ticks, keep_ticks, max_jump_ticks, drift_ticks=0.0):
    """Venue-like diff messages: levels near a walking mid, stale and far levels deleted, shuffled rows."""
    ref = RefBook()
    mid = start_tick
    for _ in range(n_batches):
        step = int(round(rng.normal(drift_ticks, 4)))
        if rng.random() < 0.02:
            step = int(rng.integers(-max_jump_ticks, max_jump_ticks + 1))
        mid += step
        rows = []
        for px in list(ref.bids):
            if px >= mid or px < mid - keep_ticks:
                rows.append((DEPTH, BID, px, 0.0))
        for px in list(ref.asks):
            if px <= mid or px > mid + keep_ticks:
                rows.append((DEPTH, ASK, px, 0.0))
        for _ in range(int(rng.integers(1, 12))):
            k = int(rng.integers(1, depth_ticks))
            side = BID if rng.random() < 0.5 else ASK
            px = mid - k if side == BID else mid + k
            qty = 0.0 if rng.random() < 0.3 else float(rng.integers(1, 100)) / 10
            rows.append((DEPTH, side, px, qty))
        if rng.random() < 0.1:
            rows.append((TRADE, BID, mid, 1.0))
            rows.append((BBO, ASK, mid + 1, 1.0))
        rng.shuffle(rows)
        for r in rows:
            ref.apply(*r)
        yield rows, ref


def assert_same(book, bid_qty, ask_qty, b, ref, n_top=8):
    assert book[b]["best_bid_tick"] == ref.best_bid()
    assert book[b]["best_ask_tick"] == ref.best_ask()
    for side, d, rev in ((BID, ref.bids, True), (ASK, ref.asks, False)):
        out_t = np.zeros(n_top, np.int64)
        out_q = np.zeros(n_top, np.float64)
        k = book_depth_nb(book, bid_qty, ask_qty, b, side, n_top, out_t, out_q)
        want = sorted(d.items(), reverse=rev)[:n_top]
        assert k == len(want)
        assert [(int(t), float(q)) for t, q in zip(out_t[:k], out_q[:k])] == want
        for px, q in d.items():
            assert book_level_qty_nb(book, bid_qty, ask_qty, b, side, px) == q


def test_new_books_layout():
    book, bid_qty, ask_qty = new_books(3, n_levels=64)
    assert book.dtype == book_dtype
    assert book.shape == (3,) and bid_qty.shape == (3, 64) and ask_qty.shape == (3, 64)
    assert (book["best_bid_tick"] == NO_BID_TICK).all() and (book["best_ask_tick"] == NO_ASK_TICK).all()
    assert not book["initialized"].any()
    assert np.isnan(book_mid_ticks_nb(book, 0))


def test_basic_levels_and_best_rescan_on_delete():
    book, bq, aq = new_books(2, n_levels=128)
    for px, q in ((100, 1.0), (98, 2.0), (95, 3.0)):
        book_apply_nb(book, bq, aq, 1, DEPTH, BID, px, q)
    for px, q in ((103, 1.5), (110, 2.5)):
        book_apply_nb(book, bq, aq, 1, SNAPSHOT, ASK, px, q)
    assert book[1]["best_bid_tick"] == 100 and book[1]["best_ask_tick"] == 103
    assert book_mid_ticks_nb(book, 1) == 101.5
    assert not book[0]["initialized"]  # other book untouched
    book_apply_nb(book, bq, aq, 1, DEPTH, BID, 100, 0.0)
    assert book[1]["best_bid_tick"] == 98
    book_apply_nb(book, bq, aq, 1, DEPTH, ASK, 103, 0.0)
    assert book[1]["best_ask_tick"] == 110
    # TRADE and BBO rows never touch the book.
    book_apply_nb(book, bq, aq, 1, TRADE, BID, 200, 5.0)
    book_apply_nb(book, bq, aq, 1, BBO, ASK, 99, 5.0)
    assert book[1]["best_bid_tick"] == 98 and book[1]["best_ask_tick"] == 110
    assert book_level_qty_nb(book, bq, aq, 1, ASK, 99) == 0.0
    assert book_level_qty_nb(book, bq, aq, 1, BID, 95) == 3.0
    assert book_level_qty_nb(book, bq, aq, 1, BID, 10_000) == 0.0  # outside the window
    out_t, out_q = np.zeros(5, np.int64), np.zeros(5)
    assert book_depth_nb(book, bq, aq, 1, BID, 5, out_t, out_q) == 2
    assert list(out_t[:2]) == [98, 95] and list(out_q[:2]) == [2.0, 3.0]
    assert book_depth_nb(book, bq, aq, 1, ASK, 1, out_t, out_q) == 1 and out_t[0] == 110


def test_clear_one_side_and_both():
    book, bq, aq = new_books(1, n_levels=64)
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 10, 1.0)
    book_apply_nb(book, bq, aq, 0, DEPTH, ASK, 12, 1.0)
    book_apply_nb(book, bq, aq, 0, CLEAR, ASK, 0, 0.0)
    assert book[0]["best_ask_tick"] == NO_ASK_TICK and book[0]["best_bid_tick"] == 10
    assert book_level_qty_nb(book, bq, aq, 0, ASK, 12) == 0.0
    book_apply_nb(book, bq, aq, 0, CLEAR, BOTH, 0, 0.0)
    assert book[0]["best_bid_tick"] == NO_BID_TICK and not book[0]["initialized"]
    assert not bq.any() and not aq.any()
    # After a full clear the window re-anchors on the next level, however far away.
    book_apply_nb(book, bq, aq, 0, SNAPSHOT, BID, 1_000_000, 2.0)
    assert book[0]["best_bid_tick"] == 1_000_000 and book[0]["dropped_levels"] == 0


def test_far_deep_level_is_dropped_and_counted():
    book, bq, aq = new_books(1, n_levels=64)
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 100, 1.0)
    book_apply_nb(book, bq, aq, 0, DEPTH, ASK, 101, 1.0)
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 10, 1.0)  # 90 ticks deep, window is 64
    assert book[0]["dropped_levels"] == 1 and book[0]["recenters"] == 0
    assert book[0]["best_bid_tick"] == 100
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 10, 0.0)  # deleting it again is a no-op
    assert book[0]["dropped_levels"] == 1


def test_recenter_follows_the_touch_and_drops_far_levels():
    book, bq, aq = new_books(1, n_levels=64)
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 100, 1.0)
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 75, 1.0)
    book_apply_nb(book, bq, aq, 0, DEPTH, ASK, 101, 1.0)
    # The market moves up 40 ticks: new touch outside the window -> re-center, the bid at 75 falls off.
    book_apply_nb(book, bq, aq, 0, DEPTH, ASK, 101, 0.0)
    book_apply_nb(book, bq, aq, 0, DEPTH, ASK, 141, 2.0)
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 140, 2.0)
    assert book[0]["recenters"] >= 1
    assert book[0]["best_bid_tick"] == 140 and book[0]["best_ask_tick"] == 141
    assert book[0]["dropped_levels"] == 1
    assert book_level_qty_nb(book, bq, aq, 0, BID, 100) == 1.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_walk_over_ten_windows_matches_reference(seed):
    n_levels = 512
    rng = np.random.default_rng(seed)
    book, bq, aq = new_books(2, n_levels=n_levels)
    b = 1
    lo = hi = start = 5_000_000
    n_batches = 6000
    for i, (rows, ref) in enumerate(
        random_walk_batches(
            rng, n_batches, start, depth_ticks=40, keep_ticks=60, max_jump_ticks=n_levels // 4, drift_ticks=1.5 * (1 - 2 * (seed % 2))
        )
    ):
        for kind, side, px, qty in rows:
            book_apply_nb(book, bq, aq, b, kind, side, px, qty)
        bb, ba = ref.best_bid(), ref.best_ask()
        if bb != NO_BID_TICK:
            lo, hi = min(lo, bb), max(hi, bb)
        assert book[b]["best_bid_tick"] == bb, f"batch {i}"
        assert book[b]["best_ask_tick"] == ba, f"batch {i}"
        if i % 97 == 0:
            assert_same(book, bq, aq, b, ref)
    assert_same(book, bq, aq, b, ref)
    # The walk covered ten windows and the window followed it.
    assert hi - lo > 10 * n_levels
    assert book[b]["recenters"] > 10
    # Venue-like data never strays beyond half a window from the touch: nothing lost.
    assert book[b]["dropped_levels"] == 0


def test_random_walk_is_ten_windows_wide():
    rng = np.random.default_rng(7)
    n_levels = 256
    book, bq, aq = new_books(1, n_levels=n_levels)
    mids = []
    for rows, ref in random_walk_batches(rng, 8000, 0, depth_ticks=20, keep_ticks=30, max_jump_ticks=64, drift_ticks=0.5):
        for kind, side, px, qty in rows:
            book_apply_nb(book, bq, aq, 0, kind, side, px, qty)
        assert book[0]["best_bid_tick"] == ref.best_bid()
        assert book[0]["best_ask_tick"] == ref.best_ask()
        m = book_mid_ticks_nb(book, 0)
        if not np.isnan(m):
            mids.append(m)
    assert max(mids) - min(mids) > 10 * n_levels
    assert book[0]["dropped_levels"] == 0


def test_snapshot_resync_after_jump_beyond_window():
    book, bq, aq = new_books(1, n_levels=64)
    book_apply_nb(book, bq, aq, 0, DEPTH, BID, 100, 1.0)
    book_apply_nb(book, bq, aq, 0, DEPTH, ASK, 101, 1.0)
    book_apply_nb(book, bq, aq, 0, CLEAR, BOTH, 0, 0.0)
    for px in range(10_000, 10_010):
        book_apply_nb(book, bq, aq, 0, SNAPSHOT, BID, px, 1.0)
        book_apply_nb(book, bq, aq, 0, SNAPSHOT, ASK, px + 20, 1.0)
    assert book[0]["best_bid_tick"] == 10_009 and book[0]["best_ask_tick"] == 10_020
    assert book[0]["dropped_levels"] == 0


_NO_REFCOUNT_PROBE = r"""
import numpy as np
from mmlab.data import book_nb as m
from mmlab.types import event_dtype
ev = np.zeros(1, dtype=event_dtype)
book, bq, aq = m.new_books(1, n_levels=64)
m.book_apply_nb(book, bq, aq, 0, ev["kind"][0], ev["side"][0], ev["price_ticks"][0], ev["qty"][0])
m.book_level_qty_nb(book, bq, aq, 0, 1, 5)
m.book_depth_nb(book, bq, aq, 0, 1, 3, np.zeros(3, np.int64), np.zeros(3))
m.book_mid_ticks_nb(book, 0)
for f in (m.book_apply_nb, m.book_level_qty_nb, m.book_depth_nb, m.book_mid_ticks_nb):
    for sig in f.signatures:
        asm = f.inspect_asm(sig)
        body = asm[: asm.find(".Lfunc_end0")]
        print(f.__name__, body.count("NRT_incref") + body.count("NRT_decref"))
"""


def test_per_event_kernels_compile_without_reference_counting(tmp_path):
    """Regression: an out-of-line helper call made book_apply_nb do 6 atomic NRT calls per event (5-15x slower)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))  # a fresh compile: cached code cannot be inspected
    out = subprocess.run([sys.executable, "-c", _NO_REFCOUNT_PROBE], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.split("\n")
    counts = [ln.split() for ln in lines if ln.strip()]
    assert len(counts) == 4
    assert all(c[1] == "0" for c in counts), out.stdout
