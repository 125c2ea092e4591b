"""Online realized volatility from a ring buffer of (time, mid) samples.

The estimate is ``sqrt(sum(d mid^2) / sum(dt))`` over consecutive samples in the buffer: a variance rate per
second that does not depend on how regularly the samples were taken. ``realized_push_nb`` keeps both sums as
samples enter and leave (O(1) per sample), recomputing them from the ring each time it wraps so rounding cannot
accumulate; ``realized_sigma_nb`` recomputes from scratch (O(n)).

>>> vals = np.zeros(8); ts = np.zeros(8, dtype=np.int64)
>>> head, count = 0, 0
>>> for i, m in enumerate([100.0, 101.0, 100.0, 101.0, 100.0]):
...     head, count = ring_push_nb(vals, ts, head, count, 8, m, i * 1_000_000_000)
>>> float(realized_sigma_nb(vals, ts, head, count, 8))
1.0
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["realized_push_nb", "realized_sigma_nb", "realized_sums_nb", "ring_push_nb"]


@njit(cache=True)
def ring_push_nb(vals, ts, head, count, cap, value, ts_ns):
    """Write ``(ts_ns, value)`` at ``head`` of a ring of capacity ``cap``; returns the new ``(head, count)``."""
    vals[head] = value
    ts[head] = ts_ns
    head += 1
    if head >= cap:
        head = 0
    if count < cap:
        count += 1
    return head, count


@njit(cache=True)
def realized_sums_nb(vals, ts, head, count, cap):
    """``(sum of squared changes, time spanned in ns)`` over the ring's consecutive samples."""
    if count < 2:
        return 0.0, 0
    start = head - count
    if start < 0:
        start += cap
    sum_sq = 0.0
    sum_dt_ns = 0
    prev_i = start
    for n in range(1, count):
        i = start + n
        if i >= cap:
            i -= cap
        d = vals[i] - vals[prev_i]
        sum_sq += d * d
        sum_dt_ns += ts[i] - ts[prev_i]
        prev_i = i
    return sum_sq, sum_dt_ns


@njit(cache=True)
def realized_sigma_nb(vals, ts, head, count, cap):
    """Standard deviation of the sampled value per sqrt(second); NaN with fewer than 2 samples or no elapsed time."""
    sum_sq, sum_dt_ns = realized_sums_nb(vals, ts, head, count, cap)
    if sum_dt_ns <= 0:
        return np.nan
    return math.sqrt(sum_sq / (sum_dt_ns * 1e-9))


@njit(cache=True)
def realized_push_nb(vals, ts, head, count, cap, value, ts_ns, sum_sq, sum_dt_ns):
    """``ring_push_nb`` that also updates the two sums; returns ``(head, count, sum_sq, sum_dt_ns)``.

    ``sqrt(sum_sq / (sum_dt_ns * 1e-9))`` is then the estimate of ``realized_sigma_nb``.
    """
    if count == cap and cap >= 2:
        # The oldest sample leaves: drop its change to the next one.
        nxt = head + 1
        if nxt >= cap:
            nxt = 0
        d = vals[nxt] - vals[head]
        sum_sq -= d * d
        sum_dt_ns -= ts[nxt] - ts[head]
    if count > 0:
        last = head - 1
        if last < 0:
            last += cap
        d = value - vals[last]
        sum_sq += d * d
        sum_dt_ns += ts_ns - ts[last]
    head, count = ring_push_nb(vals, ts, head, count, cap, value, ts_ns)
    if head == 0:
        sum_sq, sum_dt_ns = realized_sums_nb(vals, ts, head, count, cap)
    if sum_sq < 0.0:
        sum_sq = 0.0
    return head, count, sum_sq, sum_dt_ns
