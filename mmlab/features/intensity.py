"""Trade-arrival intensity by depth from the mid, ``lambda(d) = A * exp(-k * d)``, fitted online.

Each trade is bucketed by its distance from the mid at the time it printed (whole ticks, clipped to the last
bucket). A trade at depth ``d_t`` would have filled a quote at any depth ``d <= d_t``, so the arrival rate of
fills at depth ``d`` is ``N(bucket >= d) / window``, with ``window`` the time since the oldest trade kept. The fit
is an ordinary least squares of ``ln lambda(d)`` on ``d`` over the buckets with trades; ``A`` is the intensity at
the mid (arrivals per second), ``k`` its decay per tick.

>>> counts = np.zeros(4, dtype=np.int64); counts[0], counts[1], counts[2] = 4, 2, 1  # N(>=d) = 7, 3, 1
>>> a, k = intensity_fit_nb(counts, 3, 1.0)
>>> round(float(k), 3)
0.973
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["intensity_fit_nb", "intensity_push_nb", "trade_depth_bucket_nb"]


@njit(cache=True)
def trade_depth_bucket_nb(side, price_ticks, best_bid_tick, best_ask_tick, n_buckets):
    """Depth bucket of a trade: whole ticks between its price and the mid on its aggressor side; -1 if no mid.

    ``side`` is the aggressor side (+1 buyer lifts asks: depth = price - mid; -1 seller hits bids: mid - price).
    """
    if best_bid_tick <= -(2**61) or best_ask_tick >= 2**61 or best_bid_tick >= best_ask_tick:
        return -1
    mid = 0.5 * (best_bid_tick + best_ask_tick)
    if side > 0:
        d = price_ticks - mid
    else:
        d = mid - price_ticks
    if d < 0.0:
        d = 0.0
    b = int(math.floor(d))
    if b > n_buckets - 1:
        b = n_buckets - 1
    return b


@njit(cache=True)
def intensity_push_nb(ts_buf, bucket_buf, bucket_count, head, count, cap, ts_ns, bucket):
    """Add one trade to the ring (evicting the oldest when full); returns the new ``(head, count)``."""
    if count == cap:
        bucket_count[bucket_buf[head]] -= 1
    ts_buf[head] = ts_ns
    bucket_buf[head] = bucket
    bucket_count[bucket] += 1
    head += 1
    if head >= cap:
        head = 0
    if count < cap:
        count += 1
    return head, count


@njit(cache=True)
def intensity_fit_nb(bucket_count, n_buckets, window_s):
    """Fit ``(A per second, k per tick)`` from per-bucket trade counts over ``window_s``; NaNs when it cannot.

    Needs at least two depths with trades, a positive window and a decaying fit (k > 0).
    """
    if window_s <= 0.0:
        return np.nan, np.nan
    tail = 0
    n = 0
    sx = 0.0
    sy = 0.0
    sxx = 0.0
    sxy = 0.0
    for d in range(n_buckets - 1, -1, -1):
        tail += bucket_count[d]
        if tail > 0:
            y = math.log(tail / window_s)
            n += 1
            sx += d
            sy += y
            sxx += d * d
            sxy += d * y
    if n < 2:
        return np.nan, np.nan
    den = n * sxx - sx * sx
    if den <= 0.0:
        return np.nan, np.nan
    slope = (n * sxy - sx * sy) / den
    intercept = (sy - slope * sx) / n
    k = -slope
    if not k > 0.0:
        return np.nan, np.nan
    return math.exp(intercept), k
