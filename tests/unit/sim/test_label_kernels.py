"""The compiled label passes (``fill_forward_nb``, ``mid_moves_nb``) give exactly the per-horizon numpy formulas."""

import numpy as np

from mmlab.labels.forward import (
    adverse_bps_nb,
    fill_labels,
    horizon_suffix,
    mid_at,
    order_labels,
)

H = (100.0, 1000.0, 5000.0)


def _case(seed: int):
    rng = np.random.default_rng(seed)
    m, n = int(rng.integers(0, 300)), int(rng.integers(0, 1500))
    mids = {}
    for sid in range(2):  # symbol 2 has no mids
        ts = np.sort(rng.integers(0, 10**10, m)).astype(np.int64)
        px = 100 + rng.normal(0, 1, m)
        px[rng.random(m) < 0.05] = np.nan
        mids[sid] = (ts, px)
    ts = rng.integers(0, 10**10, n).astype(np.int64)
    sym = rng.integers(0, 3, n)
    side = rng.choice([-1, 1], n).astype(np.int8)
    return rng, mids, ts, sym, side, 100 + rng.normal(0, 1, n), 100 + rng.normal(0, 1, n)


def _mids(mids, sid):
    return mids.get(int(sid), (np.empty(0, np.int64), np.empty(0)))


def test_fill_labels_equal_the_per_horizon_formulas():
    for seed in range(8):
        _, mids, ts, sym, side, price, _ = _case(seed)
        got = fill_labels(ts, sym, side, price, price, mids, H)
        s = side.astype(np.float64)
        for h in H:
            h_ns = round(h * 1e6)
            mk, adv = np.full(len(ts), np.nan), np.full(len(ts), np.nan)
            for sid in np.unique(sym):
                sel = np.flatnonzero(sym == sid)
                mts, mpx = _mids(mids, sid)
                mk[sel] = s[sel] * (mid_at(mts, mpx, ts[sel] + h_ns) - price[sel]) / price[sel] * 1e4
                adv[sel] = adverse_bps_nb(mts, mpx, ts[sel], ts[sel] + h_ns, price[sel], s[sel])
            assert np.array_equal(got[f"markout_bps_{horizon_suffix(h)}"], mk, equal_nan=True)
            assert np.array_equal(got[f"adverse_bps_{horizon_suffix(h)}"], adv, equal_nan=True)


def test_order_mid_moves_equal_the_per_horizon_formulas():
    for seed in range(8):
        rng, mids, ts, sym, side, _, _ = _case(seed)
        first_fill = np.where(rng.random(len(ts)) < 0.5, ts + rng.integers(0, 10**9, len(ts)), -1)
        got = order_labels({"ts_local": ts, "symbol_id": sym, "side": side}, first_fill, ts + 5, ts + 10**9,
                           10**10, mids, H)
        s = side.astype(np.float64)
        for h in H:
            h_ns = round(h * 1e6)
            mv = np.full(len(ts), np.nan)
            for sid in np.unique(sym):
                sel = np.flatnonzero(sym == sid)
                mts, mpx = _mids(mids, sid)
                now = mid_at(mts, mpx, ts[sel])
                with np.errstate(invalid="ignore", divide="ignore"):
                    mv[sel] = s[sel] * (mid_at(mts, mpx, ts[sel] + h_ns) - now) / now * 1e4
            assert np.array_equal(got[f"mid_move_bps_{horizon_suffix(h)}"], mv, equal_nan=True)
            assert np.array_equal(got[f"filled_{horizon_suffix(h)}"], (first_fill >= 0) & (first_fill - ts <= h_ns))
