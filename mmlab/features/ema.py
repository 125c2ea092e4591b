"""Exponential moving averages and decayed event rates.

>>> round(float(ema_nb(np.nan, 2.0, 0.1)), 6), round(float(ema_nb(1.0, 2.0, 0.1)), 6)
(2.0, 1.1)
>>> round(float(halflife_alpha_nb(1_000_000_000, 1_000_000_000)), 6)
0.5
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["decayed_rate_add_nb", "decayed_rate_at_nb", "ema_nb", "halflife_alpha_nb", "time_ema_nb"]

_LN2 = math.log(2.0)


@njit(cache=True)
def ema_nb(prev, x, alpha):
    """One EMA step ``prev + alpha * (x - prev)``; a NaN ``prev`` starts at ``x``; a NaN ``x`` keeps ``prev``."""
    if np.isnan(x):
        return prev
    if np.isnan(prev):
        return x
    return prev + alpha * (x - prev)


@njit(cache=True)
def halflife_alpha_nb(dt_ns, halflife_ns):
    """EMA weight of a new sample ``dt_ns`` after the previous one: ``1 - 2**(-dt / halflife)``."""
    if halflife_ns <= 0:
        return 1.0
    if dt_ns <= 0:
        return 0.0
    return 1.0 - math.exp(-_LN2 * dt_ns / halflife_ns)


@njit(cache=True)
def time_ema_nb(prev, prev_ts_ns, x, ts_ns, halflife_ns):
    """EMA on irregular times: the weight of ``x`` grows with the time since ``prev_ts_ns``."""
    if np.isnan(prev):
        return x
    return ema_nb(prev, x, halflife_alpha_nb(ts_ns - prev_ts_ns, halflife_ns))


@njit(cache=True)
def decayed_rate_at_nb(rate, rate_ts_ns, now_ns, halflife_ns):
    """A decayed event rate (units per second) stated at ``rate_ts_ns``, read at ``now_ns``."""
    if rate_ts_ns < 0 or now_ns <= rate_ts_ns:
        return rate
    return rate * math.exp(-_LN2 * (now_ns - rate_ts_ns) / halflife_ns)


@njit(cache=True)
def decayed_rate_add_nb(rate, rate_ts_ns, amount, ts_ns, halflife_ns):
    """Add an event of size ``amount`` at ``ts_ns`` to a decayed rate; returns the rate stated at ``ts_ns``.

    The estimate is ``sum(amount_i * exp(-(t - t_i) / tau)) / tau`` with ``tau = halflife / ln 2`` in seconds:
    a steady flow of ``r`` units per second converges to ``r``.
    """
    tau_s = halflife_ns / _LN2 * 1e-9
    return decayed_rate_at_nb(rate, rate_ts_ns, ts_ns, halflife_ns) + amount / tau_s
