"""Feature collectors: hand-computed values per event kernel, causality, the live name table, a real-data replay."""

import math

import numpy as np
import pytest
from numba import njit

from mmlab.data.book_nb import book_apply_nb, book_depth_nb
from mmlab.errors import ConfigError
from mmlab.features.collectors import (
    METRICS,
    TICK_COLUMNS,
    collector_mid_sample_nb,
    collector_on_book_nb,
    collector_on_decision_nb,
    collector_on_fill_nb,
    collector_on_trade_nb,
    collector_tick_nb,
    metric_values,
    new_collectors,
    tick_features,
)
from mmlab.types import COLLECTOR_RING_MAX, Kind, collector_state_dtype

S = 1_000_000_000
MS = 1_000_000
LN2 = math.log(2.0)


def _book(p, s, t, bb, ba, bids, asks):
    bq, aq = np.array(bids, dtype=np.float64), np.array(asks, dtype=np.float64)
    collector_on_book_nb(p, s, t, bb, ba, bq, len(bq), aq, len(aq))


def test_book_features_by_hand():
    p, s = new_collectors(1, alpha=0.5, depth_levels=(1, 2, 10))
    _book(p[0], s[0], 0, 100, 102, [3.0, 1.0, 4.0], [1.0, 1.0, 2.0])
    r = s[0]
    assert r["spread_ticks"] == 2.0 and r["bid_qty"] == 3.0 and r["ask_qty"] == 1.0
    assert r["imbalance"][0] == pytest.approx(0.5)  # (3 - 1) / 4
    assert r["imbalance"][1] == pytest.approx((4 - 2) / 6)
    assert r["imbalance"][2] == pytest.approx((8 - 4) / 12)
    assert r["microprice_offset_ticks"] == pytest.approx(0.5)  # spread / 2 * imbalance
    assert r["mid"] == 101.0 and r["liq_top_depth_qty"] == 4.0
    _book(p[0], s[0], S, 100, 101, [1.0], [1.0])
    assert s[0]["liq_top_depth_qty"] == 3.0  # 4 + 0.5 * (2 - 4)
    assert s[0]["spread_ticks"] == 1.0 and s[0]["imbalance"][0] == 0.0
    _book(p[0], s[0], 2 * S, 100, 101, [1.0], [])  # one-sided: no spread, no mid
    assert np.isnan(s[0]["spread_ticks"]) and np.isnan(s[0]["mid"]) and s[0]["imbalance"][0] == 1.0


def test_returns_and_volatility_by_hand():
    p, s = new_collectors(1, alpha=0.5, ret_short_ms=1000, ret_long_ms=2000, vol_window_ms=2500)
    mids = [100.0, 101.0, 100.0, 102.0]
    for i, m in enumerate(mids):
        collector_mid_sample_nb(p[0], s[0], i * S, m)
    r = s[0]
    assert r["ret_bps_short"] == pytest.approx((102 / 100 - 1) * 1e4)  # vs the sample at t = 2 s
    assert r["ret_bps_long"] == pytest.approx((102 / 101 - 1) * 1e4)  # vs t = 1 s
    rets = [math.log(101 / 100) * 1e4, math.log(100 / 101) * 1e4, math.log(102 / 100) * 1e4]  # t in (0.5 s, 3 s]
    assert r["vol_bps"] == pytest.approx(float(np.std(rets, ddof=1)), rel=1e-12)
    v2 = float(np.std(rets[:2], ddof=1))  # first volatility at t = 2 s (returns at 1 s and 2 s)
    assert r["vol_realized_bps"] == pytest.approx(v2 + 0.5 * (r["vol_bps"] - v2), rel=1e-12)
    # The first samples have no reference yet.
    p, s = new_collectors(1)
    collector_mid_sample_nb(p[0], s[0], 0, 100.0)
    assert np.isnan(s[0]["ret_bps_short"]) and np.isnan(s[0]["vol_bps"]) and s[0]["mid_samples"] == 1


def test_trade_flow_and_absorption_rates_by_hand():
    p, s = new_collectors(1, flow_halflife_ms=1000, absorb_halflife_ms=1000)
    collector_on_trade_nb(p[0], s[0], 0, 1, 3.0)  # buyer aggressor
    collector_on_trade_nb(p[0], s[0], S, -1, 1.0)  # seller aggressor one half-life later
    _book(p[0], s[0], S, 100, 101, [1.0], [1.0])
    # rate = sum(q * exp(-dt / tau)) / tau, tau = half-life / ln 2: buy 3 ln2 / 2, sell ln2.
    assert s[0]["trade_flow_qty_s"] == pytest.approx(0.5 * LN2)
    assert s[0]["trade_flow_imbalance"] == pytest.approx(0.5 / 2.5)
    assert s[0]["queue_absorb_rate_qty_s"] == pytest.approx(2.5 * LN2)
    _book(p[0], s[0], 2 * S, 100, 101, [1.0], [1.0])  # decays between trades
    assert s[0]["queue_absorb_rate_qty_s"] == pytest.approx(1.25 * LN2)
    assert s[0]["trades"] == 2


def test_fills_slippage_taker_share_and_adverse_move_by_hand():
    p, s = new_collectors(1, alpha=0.5, adverse_horizon_ms=1000)
    collector_mid_sample_nb(p[0], s[0], 0, 100.0)
    collector_on_fill_nb(p[0], s[0], 0, 1, 100.0, 1.0, True, 100.5, 100.0)  # maker buy below the mid at send
    r = s[0]
    assert r["slippage_bps"] == pytest.approx((100 - 100.5) / 100.5 * 1e4)
    assert r["taker_share"] == 0.0 and r["fills_maker"] == 1 and r["fills_total"] == 1
    collector_mid_sample_nb(p[0], s[0], S // 2, 99.0)  # against the buy: 100 bps
    collector_mid_sample_nb(p[0], s[0], S, 99.5)  # inside the horizon, not worse
    assert np.isnan(s[0]["adverse_move_bps"])  # not final before the horizon has passed
    collector_mid_sample_nb(p[0], s[0], 3 * S // 2, 90.0)  # after the horizon: ignored, finalizes
    assert s[0]["adverse_move_bps"] == pytest.approx(100.0) and s[0]["pend_count"] == 0
    collector_on_fill_nb(p[0], s[0], 2 * S, -1, 101.0, 1.0, False, 100.5, 100.5)  # taker sell
    assert s[0]["taker_share"] == 0.5 and s[0]["fills_taker"] == 1
    assert s[0]["slippage_bps"] == pytest.approx(0.5 * ((100 - 100.5) / 100.5 * 1e4 + -1 * (101 - 100.5) / 100.5 * 1e4))


def test_decision_metrics_by_hand():
    p, s = new_collectors(1, alpha=0.5, window_n=4, absorb_halflife_ms=1000, pnl_target_bps=0.5)
    r = s[0]
    collector_on_decision_nb(p[0], r, 0, 4, 1 * MS, np.nan, 1000.0, 0.0)
    assert r["fill_rate"] == 0.0 and r["latency_q_ms"] == 1.0 and np.isnan(r["pnl_dev_bps"])
    collector_on_fill_nb(p[0], r, 1, 1, 100.0, 1.0, True, np.nan, np.nan)
    collector_on_decision_nb(p[0], r, 2, 2, 2 * MS, np.nan, 1001.0, 10_000.0)
    assert r["fill_rate"] == pytest.approx(0.5 / 3.0)  # EMA fills 0 -> 0.5, EMA placed 4 -> 3
    assert r["pnl_dev_bps"] == pytest.approx(1.0 - 0.5)  # 1 quote per 10,000 traded = 1 bps, target 0.5
    assert r["quotes_total"] == 6 and r["decisions"] == 2
    # Rolling latency window of 4 samples, p95 by nearest rank.
    for ms in (3, 4):
        collector_on_decision_nb(p[0], r, 3, 0, ms * MS, np.nan, np.nan, 0.0)
    assert r["latency_q_ms"] == 4.0
    collector_on_decision_nb(p[0], r, 4, 0, 10 * MS, np.nan, np.nan, 0.0)
    assert r["latency_q_ms"] == 10.0  # window 10, 2, 3, 4
    for _ in range(3):
        collector_on_decision_nb(p[0], r, 5, 0, MS // 2, np.nan, np.nan, 0.0)
    assert r["latency_q_ms"] == 10.0  # window 10, 0.5, 0.5, 0.5
    collector_on_decision_nb(p[0], r, 6, 0, MS // 2, np.nan, np.nan, 0.0)
    assert r["latency_q_ms"] == 0.5
    lat = [1, 2, 3, 4, 10, 10, 10, 10, 0.5]  # quantiles after each latency sample
    ema = lat[0]
    for x in lat[1:]:
        ema += 0.5 * (x - ema)
    assert r["latency_p95_ms"] == pytest.approx(ema)
    # Queue ETA: queue ahead / absorption rate (2 ln2 qty/s one half-life after 4 qty traded).
    collector_on_trade_nb(p[0], r, 0, 1, 4.0)
    collector_on_decision_nb(p[0], r, S, 0, -1, 2.0, np.nan, 0.0)
    assert r["queue_absorb_rate_qty_s"] == pytest.approx(2 * LN2)
    assert r["queue_eta_ms"] == pytest.approx(2.0 / (2 * LN2) * 1e3)


def test_windows_wider_than_the_ring_are_counted():
    p, s = new_collectors(1, ret_short_ms=500, ret_long_ms=5000, vol_window_ms=5000)
    n = COLLECTOR_RING_MAX + 200
    mids = 100.0 + np.cumsum(np.sin(np.arange(n)))
    for i in range(n):
        collector_mid_sample_nb(p[0], s[0], i * MS, mids[i])  # 1 ms apart: 5 s needs 5,000 samples
    r = s[0]
    assert r["window_overflows"] > 0 and np.isnan(r["ret_bps_long"])
    assert r["ret_bps_short"] == pytest.approx((mids[-1] / mids[-1 - 500] - 1) * 1e4)
    rets = np.diff(np.log(mids))[-COLLECTOR_RING_MAX:] * 1e4  # the held samples
    assert r["vol_bps"] == pytest.approx(float(np.std(rets, ddof=1)), rel=1e-9)


def _reference_tick_features(ts, mid, w_short, w_long, w_vol):
    """The earlier array implementation of the dataset's tick features (cumulative sums)."""
    out = {}
    for name, w in (("ret_bps_short", w_short), ("ret_bps_long", w_long)):
        j = np.searchsorted(ts, ts - w, side="right") - 1
        past = np.where(j >= 0, mid[np.maximum(j, 0)], np.nan)
        out[name] = (mid / past - 1.0) * 1e4
    r = np.r_[np.nan, np.diff(np.log(mid))] * 1e4
    ok = ~np.isnan(r)
    v = np.where(ok, r, 0.0)
    c0, c1, c2 = np.r_[0, np.cumsum(ok)], np.r_[0.0, np.cumsum(v)], np.r_[0.0, np.cumsum(v * v)]
    lo = np.searchsorted(ts, ts - w_vol, side="right")
    hi = np.arange(1, len(ts) + 1)
    n, s1, s2 = c0[hi] - c0[lo], c1[hi] - c1[lo], c2[hi] - c2[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (s2 - s1 * s1 / n) / (n - 1)
    out["vol_bps"] = np.where(n >= 2, np.sqrt(np.maximum(var, 0.0)), np.nan)
    return out


def test_tick_features_match_the_array_reference_and_are_causal():
    rng = np.random.default_rng(3)
    n = 3000
    ts = np.cumsum(rng.integers(50, 150, n)) * MS
    mid = 60_000 + np.cumsum(rng.normal(0, 2, n))
    mid[100:103] = np.nan  # one-sided books
    bq, aq = rng.lognormal(0, 1, n), rng.lognormal(0, 1, n)
    spread = rng.choice([1.0, 2.0], n)
    f = tick_features(ts, mid, spread, bq, aq)
    assert tuple(f) == TICK_COLUMNS
    ref = _reference_tick_features(ts, mid, S, 5 * S, 5 * S)
    for c in ("ret_bps_short", "ret_bps_long", "vol_bps"):
        assert np.allclose(f[c], ref[c], rtol=1e-9, atol=1e-9, equal_nan=True), c
    assert np.allclose(f["imbalance"], (bq - aq) / (bq + aq)) and np.array_equal(f["spread_ticks"], spread)
    half = tick_features(ts[:1500], mid[:1500], spread[:1500], bq[:1500], aq[:1500])
    for c in TICK_COLUMNS:
        assert np.array_equal(half[c], f[c][:1500], equal_nan=True)


def test_live_rows_equal_the_batch_rows():
    rng = np.random.default_rng(5)
    n = 400
    ts = np.cumsum(rng.integers(50, 150, n)) * MS
    mid = 100 + np.cumsum(rng.normal(0, 0.1, n))
    spread, bq, aq = rng.choice([1.0, 2.0], n), rng.lognormal(0, 1, n), rng.lognormal(0, 1, n)
    f = tick_features(ts, mid, spread, bq, aq)
    p, s = new_collectors(1)
    row = np.zeros(len(TICK_COLUMNS))
    for i in range(n):  # one call per decision tick, as the live runner makes them
        collector_tick_nb(p[0], s[0], ts[i], mid[i], spread[i], bq[i], aq[i], row)
        assert np.array_equal(row, [f[c][i] for c in TICK_COLUMNS], equal_nan=True)


def test_metric_names_cover_the_seed_and_point_at_fields():
    seed = ["vol_realized", "liq_top_depth", "latency_p95", "pnl_dev", "fill_rate", "taker_share", "queue_absorb_rate",
            "queue_eta_ms", "slippage_bps", "adverse_move_bps", "fills_total", "fills_maker", "fills_taker"]
    assert all(f"mm_symbol_{n}" in METRICS for n in seed)
    for name, (fld, k) in METRICS.items():
        assert name.startswith("mm_symbol_") and fld in collector_state_dtype.names
        assert (k < 0) == (collector_state_dtype[fld].shape == ())
    p, s = new_collectors(2)
    _book(p[1], s[1], 0, 100, 102, [1.0], [3.0])
    vals = metric_values(s, 1)
    assert vals["mm_symbol_spread_ticks"] == 2.0 and vals["mm_symbol_imbalance_depth0"] == -0.5
    assert vals["mm_symbol_fills_total"] == 0.0 and np.isnan(metric_values(s, 0)["mm_symbol_spread_ticks"])


def test_bad_params_name_the_value_and_the_rule():
    with pytest.raises(ConfigError, match=r"alpha must be in \(0, 1\], got 0"):
        new_collectors(1, alpha=0)
    with pytest.raises(ConfigError, match="window_n must be in \\[1, 1024\\]"):
        new_collectors(1, window_n=5000)
    with pytest.raises(ConfigError, match="depth_levels must be 3 book depths"):
        new_collectors(1, depth_levels=(1, 5))


# ------------------------------------------------------------------------------------------- real capture


@njit(cache=True)
def _replay_nb(ev, book, bq, aq, p, s, interval_ns, out_ts, out):
    """Book kernel + collectors over a capture; a book sample every interval of local time."""
    bt = np.zeros(10, np.int64)
    bqt = np.zeros(10)
    at = np.zeros(10, np.int64)
    aqt = np.zeros(10)
    nxt = ev[0].ts_local + interval_ns
    k = 0
    for i in range(len(ev)):
        e = ev[i]
        while e.ts_local > nxt and k < len(out_ts):
            nb = book_depth_nb(book, bq, aq, 0, 1, 10, bt, bqt)
            na = book_depth_nb(book, bq, aq, 0, -1, 10, at, aqt)
            collector_on_book_nb(p, s, nxt, book[0].best_bid_tick, book[0].best_ask_tick, bqt, nb, aqt, na)
            out_ts[k] = nxt
            out[k, 0] = s.mid
            out[k, 1] = s.spread_ticks
            out[k, 2] = s.imbalance[0]
            out[k, 3] = s.imbalance[1]
            out[k, 4] = s.imbalance[2]
            out[k, 5] = s.microprice_offset_ticks
            out[k, 6] = s.trade_flow_qty_s
            out[k, 7] = s.ret_bps_short
            out[k, 8] = s.vol_bps
            out[k, 9] = s.liq_top_depth_qty
            out[k, 10] = s.bid_qty + s.ask_qty
            k += 1
            nxt += interval_ns
        if e.kind == 2:
            collector_on_trade_nb(p, s, e.ts_local, e.side, e.qty)
        elif e.kind != 5:
            book_apply_nb(book, bq, aq, 0, e.kind, e.side, e.price_ticks, e.qty)
    return k


@pytest.mark.real_data
def test_replay_of_the_btcusdt_capture(real_data, tmp_path):
    from typer.testing import CliRunner

    from mmlab.cli import app
    from mmlab.data.book_nb import new_books
    from mmlab.data.bridge import load_events

    cap = real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz"
    res = CliRunner().invoke(app, ["data", "ingest", str(cap), "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    ev, _ = load_events(tmp_path, "binance-usdm", ["BTCUSDT"])
    book, bq, aq = new_books(1)
    p, s = new_collectors(1, alpha=0.1)
    interval = 100 * MS
    n_max = int((ev["ts_local"][-1] - ev["ts_local"][0]) // interval) + 1
    out_ts, out = np.zeros(n_max, np.int64), np.full((n_max, 11), np.nan)
    k = _replay_nb(ev, book, bq, aq, p[0], s[0], interval, out_ts, out)
    out_ts, out = out_ts[:k], out[:k]
    r = s[0]
    assert k > 1000 and r["mid_samples"] == k
    assert r["trades"] == int((ev["kind"] == Kind.TRADE).sum())
    ok = np.isfinite(out[:, 1])
    assert ok.mean() > 0.99 and np.all(out[ok, 1] >= 1)  # never crossed
    for c in (2, 3, 4):
        assert np.all(np.abs(out[ok, c]) <= 1.0)
    assert np.all(np.abs(out[ok, 5]) <= out[ok, 1] / 2 + 1e-12)
    # Deeper books are less lopsided than the touch on this capture.
    assert np.nanmean(np.abs(out[:, 4])) < np.nanmean(np.abs(out[:, 2]))
    # Returns and volatility agree with the array reference on the sampled mids.
    ref = _reference_tick_features(out_ts, out[:, 0], S, 5 * S, 5 * S)
    assert np.allclose(out[:, 7], ref["ret_bps_short"], rtol=1e-9, atol=1e-9, equal_nan=True)
    assert np.allclose(out[:, 8], ref["vol_bps"], rtol=1e-6, atol=1e-9, equal_nan=True)
    # liq_top_depth is the EMA (alpha 0.1) of the top quantities.
    ema = np.nan
    for x in out[:, 10]:
        ema = x if np.isnan(ema) else ema + 0.1 * (x - ema)
    assert out[-1, 9] == pytest.approx(ema, rel=1e-9)
    # Trade flow at the last sample equals the decayed sums over every trade before it.
    tr = ev[(ev["kind"] == Kind.TRADE) & (ev["ts_local"] <= out_ts[-1])]
    tau_s = 1.0 / LN2
    w = np.exp(-(out_ts[-1] - tr["ts_local"]) * 1e-9 / tau_s) / tau_s
    assert out[-1, 6] == pytest.approx(float((tr["side"] * tr["qty"] * w).sum()), rel=1e-6, abs=1e-9)
    vals = metric_values(s, 0)
    for name in ("mm_symbol_vol_realized", "mm_symbol_liq_top_depth", "mm_symbol_queue_absorb_rate",
                 "mm_symbol_spread_ticks", "mm_symbol_imbalance_depth1"):
        assert np.isfinite(vals[name]), name
