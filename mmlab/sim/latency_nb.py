"""Order latency models: how long a request takes to reach the exchange and a report to come back.

- ``CONSTANT``: ``entry_latency_ns`` for every request, ``response_latency_ns`` for every report.
- ``PER_ACTION``: place / cancel / modify requests each have their own entry latency.
- ``EMPIRICAL``: interpolated from a recorded table of order round trips (``req_ts``, ``exch_ts``, ``resp_ts``
  in ns): the entry latency at local time t is ``exch_ts - req_ts`` interpolated linearly between the rows whose
  ``req_ts`` bracket t; the response latency at exchange time t is ``resp_ts - exch_ts`` interpolated between
  the rows whose ``exch_ts`` bracket t; before the first / after the last row the end rows' values hold (the
  interpolation of hftbacktest's IntpOrderLatency). Queries must come in non-decreasing time (cursors only move
  forward), which the event loop guarantees.
- ``RANDOM``: ``base + Exponential(jitter_ns)`` (base: the per-action entry latency, or the response latency),
  multiplied by ``shock_mult`` during shock episodes: a request sent outside an episode starts one with
  probability ``shock_prob``; it lasts an exponential time of mean ``shock_duration_ns`` and slows every
  request and report of the run meanwhile. Draws come from the run's seeded generator (splitmix64), so a run
  is a pure function of its seed.

The generator state and the table cursors live in the run-state record (``run_state_dtype``): fields
``rng_state``, ``lat_entry_row``, ``lat_resp_row``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mmlab.types import LatencyModelId, RequestKind

_CONSTANT = int(LatencyModelId.CONSTANT)
_PER_ACTION = int(LatencyModelId.PER_ACTION)
_EMPIRICAL = int(LatencyModelId.EMPIRICAL)
_RANDOM = int(LatencyModelId.RANDOM)
_REQ_CANCEL = int(RequestKind.CANCEL)
_REQ_MODIFY = int(RequestKind.MODIFY)

# Columns of the empirical latency table (int64 array of shape (n, 3)).
REQ_TS = 0
EXCH_TS = 1
RESP_TS = 2


@njit(cache=True, _nrt=False, error_model="numpy")
def rng_next_u64_nb(rs):
    """splitmix64: advance ``rs[0].rng_state`` and return the next 64-bit output."""
    s = rs[0].rng_state + np.uint64(0x9E3779B97F4A7C15)
    rs[0].rng_state = s
    z = s
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, _nrt=False, error_model="numpy")
def rng_uniform_nb(rs):
    """Uniform float in [0, 1) from the run's generator (53 random bits)."""
    return np.float64(rng_next_u64_nb(rs) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, _nrt=False, error_model="numpy")
def _intp_nb(x, x1, y1, x2, y2):
    # Same arithmetic as hftbacktest's IntpOrderLatency (float slope, truncated toward zero).
    return np.int64((np.float64(y2 - y1) / np.float64(x2 - x1)) * np.float64(x - x1)) + y1


@njit(cache=True, _nrt=False, error_model="numpy")
def _table_latency_nb(table, rs, t, key_col, val_col, entry):
    n = table.shape[0]
    if t < table[0, key_col]:
        return table[0, val_col] - table[0, key_col]
    if entry:
        row = rs[0].lat_entry_row
    else:
        row = rs[0].lat_resp_row
    while row + 1 < n and table[row + 1, key_col] <= t:
        row += 1
    if entry:
        rs[0].lat_entry_row = row
    else:
        rs[0].lat_resp_row = row
    if row + 1 >= n:
        return table[n - 1, val_col] - table[n - 1, key_col]
    x1 = table[row, key_col]
    x2 = table[row + 1, key_col]
    y1 = table[row, val_col] - x1
    y2 = table[row + 1, val_col] - x2
    if x2 == x1:
        return y1
    return _intp_nb(t, x1, y1, x2, y2)


@njit(cache=True, _nrt=False, error_model="numpy")
def _random_latency_nb(sp, rs, base_ns, t, may_start_shock):
    lat = np.float64(base_ns)
    if sp[0].jitter_ns > 0.0:
        lat += -np.log(1.0 - rng_uniform_nb(rs)) * sp[0].jitter_ns
    if sp[0].shock_prob > 0.0:
        if may_start_shock and t >= rs[0].shock_until_ns and rng_uniform_nb(rs) < sp[0].shock_prob:
            rs[0].shock_until_ns = t + 1 + np.int64(-np.log(1.0 - rng_uniform_nb(rs)) * sp[0].shock_duration_ns)
        if t < rs[0].shock_until_ns:
            lat *= sp[0].shock_mult
    return np.int64(lat)


@njit(cache=True, _nrt=False, error_model="numpy")
def entry_latency_nb(sp, rs, table, t_local, req_kind):
    """Latency (ns, >= 0) of a request of ``req_kind`` (RequestKind) sent at local time ``t_local``."""
    model = sp[0].latency_model
    if model == _EMPIRICAL:
        return max(_table_latency_nb(table, rs, t_local, REQ_TS, EXCH_TS, True), 0)
    base = sp[0].entry_latency_ns
    if model == _PER_ACTION or model == _RANDOM:
        if req_kind == _REQ_CANCEL:
            base = sp[0].cancel_latency_ns
        elif req_kind == _REQ_MODIFY:
            base = sp[0].modify_latency_ns
    if model == _RANDOM:
        return _random_latency_nb(sp, rs, base, t_local, True)
    return base


@njit(cache=True, _nrt=False, error_model="numpy")
def response_latency_nb(sp, rs, table, t_exch):
    """Latency (ns, >= 0) of a report the exchange sends at exchange time ``t_exch``."""
    model = sp[0].latency_model
    if model == _EMPIRICAL:
        return max(_table_latency_nb(table, rs, t_exch, EXCH_TS, RESP_TS, False), 0)
    if model == _RANDOM:
        return _random_latency_nb(sp, rs, sp[0].response_latency_ns, t_exch, False)
    return sp[0].response_latency_ns
