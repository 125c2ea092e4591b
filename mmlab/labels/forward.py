"""Uses future events; training only. Markouts, adverse moves, fill-within-horizon and queue ETA labels.

Mid prices come from the simulator's exchange-side best bid/ask series (``mids``: one row per change, exchange
time); ``mid(t)`` is the last mid at or before t. Conventions (bps, sign-adjusted by side, side +1 buy / -1 sell):

- ``slippage_bps = side * (price - mid_send) / mid_send * 1e4``: positive = worse than the mid when sent.
- ``markout_bps_H = side * (mid(t_fill + H) - price) / price * 1e4``: positive = the fill earned.
- ``adverse_bps_H = max over mid(u), u in [t_fill, t_fill + H], of side * (price - mid(u)) / price * 1e4``: the
  largest move of the mid against the fill within H.
- order rows: ``queue_eta_ms`` = first fill - acceptance (exchange time); rows of orders that never filled are
  censored (``censored = True``, ``queue_eta_ms`` = time resting until cancel/expiry or the end of the run);
  ``filled_H`` = first fill within H of the send time; ``mid_move_bps_H = side * (mid(t + H) - mid(t)) /
  mid(t) * 1e4`` from the decision time t, exchange mids (positive = the mid rose for a buy / fell for a sell).
"""

from __future__ import annotations

import numpy as np
from numba import njit


def horizon_suffix(h_ms: float) -> str:
    """Column suffix of a horizon: 100 -> '100ms', 1000 -> '1s', 1500 -> '1500ms'."""
    if h_ms >= 1000 and float(h_ms) % 1000 == 0:
        return f"{int(h_ms) // 1000}s"
    if float(h_ms).is_integer():
        return f"{int(h_ms)}ms"
    return f"{h_ms:g}ms".replace(".", "p")


def mid_at(mid_ts: np.ndarray, mid_px: np.ndarray, query_ts: np.ndarray) -> np.ndarray:
    """Mid in force at each query time (last change at or before it); NaN before the first change."""
    idx = np.searchsorted(mid_ts, query_ts, side="right") - 1
    out = np.full(len(query_ts), np.nan)
    ok = idx >= 0
    out[ok] = mid_px[idx[ok]]
    return out


@njit(cache=True)
def adverse_bps_nb(mid_ts, mid_px, t0, t1, price, side):
    """For each row i: max of side * (price - mid(u)) / price * 1e4 over u in [t0[i], t1[i]] (NaN without a mid)."""
    n = len(t0)
    out = np.full(n, np.nan)
    m = len(mid_ts)
    for i in range(n):
        # The mid in force at t0 counts, then every change up to t1.
        j = np.searchsorted(mid_ts, t0[i], side="right") - 1
        best = np.nan
        if j < 0:
            j = 0
            if m == 0 or mid_ts[0] > t1[i]:
                continue
        while j < m and mid_ts[j] <= t1[i]:
            v = side[i] * (price[i] - mid_px[j]) / price[i] * 1e4
            if np.isnan(best) or v > best:
                best = v
            j += 1
        out[i] = best
    return out


@njit(cache=True, error_model="numpy")
def fill_forward_nb(ts, sym, sid, side, price, mid_ts, mid_px, h_ns, markout, adverse):
    """Markout and adverse move of the rows of symbol ``sid`` (``sym[i] == sid``) for each horizon ``h_ns[k]``
    into ``markout[k, i]`` / ``adverse[k, i]`` (other rows untouched): ``mid_at`` and ``adverse_bps_nb`` of
    every horizon in one pass, the same arithmetic in the same order."""
    m = len(mid_ts)
    for i in range(len(ts)):
        if sym[i] != sid:
            continue
        for k in range(len(h_ns)):
            t1 = ts[i] + h_ns[k]
            j = np.searchsorted(mid_ts, t1, side="right") - 1
            fwd = mid_px[j] if j >= 0 else np.nan
            markout[k, i] = side[i] * (fwd - price[i]) / price[i] * 1e4
            j = np.searchsorted(mid_ts, ts[i], side="right") - 1
            best = np.nan
            if j < 0:
                j = 0
                if m == 0 or mid_ts[0] > t1:
                    continue
            while j < m and mid_ts[j] <= t1:
                v = side[i] * (price[i] - mid_px[j]) / price[i] * 1e4
                if np.isnan(best) or v > best:
                    best = v
                j += 1
            adverse[k, i] = best


@njit(cache=True, error_model="numpy")
def mid_moves_nb(ts, sym, sid, side, mid_ts, mid_px, h_ns, out):
    """``side * (mid(t + h) - mid(t)) / mid(t) * 1e4`` of the rows of symbol ``sid`` for each horizon ``h_ns[k]``
    into ``out[k, i]`` (other rows untouched; ``mid`` as :func:`mid_at`, NaN before the first change)."""
    for i in range(len(ts)):
        if sym[i] != sid:
            continue
        j = np.searchsorted(mid_ts, ts[i], side="right") - 1
        now = mid_px[j] if j >= 0 else np.nan
        for k in range(len(h_ns)):
            j = np.searchsorted(mid_ts, ts[i] + h_ns[k], side="right") - 1
            fwd = mid_px[j] if j >= 0 else np.nan
            out[k, i] = side[i] * (fwd - now) / now * 1e4


@njit(cache=True)
def order_outcomes_nb(row_order, kind, ts_exch, qty, leaves_qty, queue_ahead_qty, n_orders, accepted_kind,
                      filled_kind, canceled_kind, rejected_kind, expired_kind):
    """Per order, from its lifecycle rows (``row_order[k]`` = the order of row k, -1 for none), in row order:
    first acceptance ts, queue ahead at the first acceptance, first fill ts, filled qty (summed in row order) and
    the last ts it stopped resting (final fill, cancel, rejection, expiry); -1 / NaN where absent."""
    accept = np.full(n_orders, -1, dtype=np.int64)
    queue = np.full(n_orders, np.nan)
    first_fill = np.full(n_orders, -1, dtype=np.int64)
    filled = np.zeros(n_orders)
    end = np.full(n_orders, -1, dtype=np.int64)
    for k in range(row_order.shape[0]):
        i = row_order[k]
        if i < 0:
            continue
        kd = kind[k]
        t = ts_exch[k]
        if kd == accepted_kind:
            if accept[i] < 0:
                queue[i] = queue_ahead_qty[k]
                accept[i] = t
            elif t < accept[i]:
                accept[i] = t
        elif kd == filled_kind:
            if first_fill[i] < 0 or t < first_fill[i]:
                first_fill[i] = t
            filled[i] += qty[k]
            if leaves_qty[k] <= 0.0:
                end[i] = max(end[i], t)
        elif kd == canceled_kind or kd == rejected_kind or kd == expired_kind:
            end[i] = max(end[i], t)
    return accept, queue, first_fill, filled, end


def _mids_by_symbol(mids: dict, symbol_id: int) -> tuple[np.ndarray, np.ndarray]:
    ts, px = mids.get(int(symbol_id), (np.empty(0, np.int64), np.empty(0)))
    return ts, px


def fill_labels(ts_exch, symbol_id, side, price, mid_send, mids: dict, horizons_ms) -> dict[str, np.ndarray]:
    """Per-fill labels: slippage_bps, markout_bps_H and adverse_bps_H for each horizon.

    ``mids`` maps symbol_id -> (ts_exch int64 sorted, mid price float64) of that symbol's exchange mid changes.
    """
    n = len(ts_exch)
    side = np.asarray(side, dtype=np.float64)
    price = np.asarray(price, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"slippage_bps": side * (price - mid_send) / mid_send * 1e4}
    h_ns = np.array([round(h * 1e6) for h in horizons_ms], dtype=np.int64)
    mk = np.full((len(h_ns), n), np.nan)
    adv = np.full((len(h_ns), n), np.nan)
    if n:
        ts = np.ascontiguousarray(ts_exch, dtype=np.int64)
        sym = np.ascontiguousarray(symbol_id, dtype=np.int64)
        for sid in np.unique(sym):
            mts, mpx = _mids_by_symbol(mids, sid)
            fill_forward_nb(ts, sym, int(sid), side, price, np.ascontiguousarray(mts, dtype=np.int64),
                            np.ascontiguousarray(mpx, dtype=np.float64), h_ns, mk, adv)
    for k, h in enumerate(horizons_ms):
        sfx = horizon_suffix(h)
        out[f"markout_bps_{sfx}"] = mk[k]
        out[f"adverse_bps_{sfx}"] = adv[k]
    return out


def order_labels(sent: dict, first_fill_ts, accept_ts, end_ts, run_end_ts, mids: dict, horizons_ms) -> dict[str, np.ndarray]:
    """Per-order labels from the send time: queue ETA (censored if never filled), filled_H, mid_move_bps_H.

    ``run_end_ts``: the run's final time (ns), or one per row (the rows of several parameter sets of one pass).

    ``sent`` holds arrays ts_local (send = decision time), symbol_id and side.
    ``first_fill_ts`` / ``accept_ts`` / ``end_ts`` are exchange times, -1 where absent (``end_ts``: when the
    order stopped resting: cancel, expiry, rejection or final fill).
    """
    ts = np.asarray(sent["ts_local"], dtype=np.int64)
    side = np.asarray(sent["side"], dtype=np.float64)
    sym = np.asarray(sent["symbol_id"])
    first_fill_ts = np.asarray(first_fill_ts, dtype=np.int64)
    accept_ts = np.asarray(accept_ts, dtype=np.int64)
    end_ts = np.asarray(end_ts, dtype=np.int64)
    filled = first_fill_ts >= 0
    rested = accept_ts >= 0
    censored = ~filled
    stop = np.where(end_ts >= 0, end_ts, run_end_ts)
    eta_ns = np.where(filled & rested, first_fill_ts - accept_ts, np.where(rested, stop - accept_ts, -1))
    eta_ms = np.where(eta_ns >= 0, eta_ns / 1e6, np.nan)
    out: dict[str, np.ndarray] = {"queue_eta_ms": eta_ms, "censored": censored}
    # Mid moves of every horizon, one compiled pass per symbol.
    h_ns = np.array([round(h * 1e6) for h in horizons_ms], dtype=np.int64)
    mv = np.full((len(h_ns), len(ts)), np.nan)
    if len(ts):
        sym64 = np.ascontiguousarray(sym, dtype=np.int64)
        for sid in np.unique(sym64):
            mts, mpx = _mids_by_symbol(mids, sid)
            mid_moves_nb(ts, sym64, int(sid), side, np.ascontiguousarray(mts, dtype=np.int64),
                         np.ascontiguousarray(mpx, dtype=np.float64), h_ns, mv)
    for k, h in enumerate(horizons_ms):
        sfx = horizon_suffix(h)
        out[f"filled_{sfx}"] = filled & (first_fill_ts - ts <= int(h_ns[k]))
        out[f"mid_move_bps_{sfx}"] = mv[k]
    return out
