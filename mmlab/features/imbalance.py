"""Order-book depth features on top-N depth arrays (best level first).

>>> b = np.array([3.0, 1.0]); a = np.array([1.0, 1.0])
>>> float(book_imbalance_nb(b, 2, a, 2, 1)), float(micro_price_ticks_nb(100, 102, 0.5))
(0.5, 101.5)
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["book_imbalance_nb", "depth_sum_nb", "level_qty_at_nb", "micro_price_ticks_nb"]


@njit(cache=True)
def depth_sum_nb(qty, n_held, levels):
    """Quantity over the first ``min(levels, n_held)`` levels."""
    m = min(levels, n_held, len(qty))
    s = 0.0
    for i in range(m):
        s += qty[i]
    return s


@njit(cache=True)
def book_imbalance_nb(bid_qty, n_bid, ask_qty, n_ask, levels):
    """``(bid - ask) / (bid + ask)`` depth over ``levels`` levels, in [-1, 1]; NaN when both are empty."""
    b = depth_sum_nb(bid_qty, n_bid, levels)
    a = depth_sum_nb(ask_qty, n_ask, levels)
    if b + a <= 0.0:
        return np.nan
    return (b - a) / (b + a)


@njit(cache=True)
def micro_price_ticks_nb(best_bid_tick, best_ask_tick, imbalance):
    """Mid moved toward the thinner side: ``mid + (ask - bid) / 2 * imbalance``; the mid when imbalance is NaN."""
    mid = 0.5 * (best_bid_tick + best_ask_tick)
    if np.isnan(imbalance):
        return mid
    return mid + 0.5 * (best_ask_tick - best_bid_tick) * imbalance


@njit(cache=True)
def level_qty_at_nb(ticks, qty, n_held, price_ticks):
    """Quantity resting at ``price_ticks`` among the held levels; 0.0 if not held."""
    m = min(n_held, len(ticks))
    for i in range(m):
        if ticks[i] == price_ticks:
            return qty[i]
    return 0.0
