"""Causal feature kernels: EMA, decayed rates, realized volatility, intensity fit, book imbalance."""

import math

import numpy as np
import pytest

from mmlab.features import (
    book_imbalance_nb,
    decayed_rate_add_nb,
    decayed_rate_at_nb,
    depth_sum_nb,
    ema_nb,
    halflife_alpha_nb,
    intensity_fit_nb,
    intensity_push_nb,
    level_qty_at_nb,
    micro_price_ticks_nb,
    realized_sigma_nb,
    ring_push_nb,
    time_ema_nb,
    trade_depth_bucket_nb,
)

S = 1_000_000_000


def test_ema():
    assert ema_nb(np.nan, 3.0, 0.1) == 3.0
    assert ema_nb(1.0, 3.0, 0.25) == 1.5
    assert ema_nb(1.0, np.nan, 0.25) == 1.0


def test_halflife_weights_and_time_ema():
    assert halflife_alpha_nb(S, S) == pytest.approx(0.5)
    assert halflife_alpha_nb(2 * S, S) == pytest.approx(0.75)
    assert halflife_alpha_nb(0, S) == 0.0
    assert time_ema_nb(np.nan, 0, 4.0, S, S) == 4.0
    assert time_ema_nb(0.0, 0, 4.0, S, S) == pytest.approx(2.0)


def test_decayed_rate_converges_to_a_steady_flow():
    hl = 2 * S
    rate, ts = 0.0, -1
    for k in range(2000):  # 3 units every 10 ms = 300 units/s
        rate = decayed_rate_add_nb(rate, ts, 3.0, k * 10_000_000, hl)
        ts = k * 10_000_000
    assert rate == pytest.approx(300.0, rel=0.01)
    assert decayed_rate_at_nb(rate, ts, ts + hl, hl) == pytest.approx(rate / 2)


def test_realized_sigma_and_ring_eviction():
    vals = np.zeros(3)
    ts = np.zeros(3, dtype=np.int64)
    head = count = 0
    assert math.isnan(realized_sigma_nb(vals, ts, head, count, 3))
    for i, m in enumerate([0.0, 10.0, 12.0, 10.0]):  # the first sample is evicted
        head, count = ring_push_nb(vals, ts, head, count, 3, m, i * S)
    assert count == 3 and head == 1
    # kept: 10 @1s, 12 @2s, 10 @3s -> (4 + 4) / 2 s
    assert realized_sigma_nb(vals, ts, head, count, 3) == pytest.approx(2.0)


def test_trade_depth_bucket():
    assert trade_depth_bucket_nb(1, 101, 100, 101, 10) == 0  # 0.5 ticks above mid
    assert trade_depth_bucket_nb(1, 103, 100, 101, 10) == 2
    assert trade_depth_bucket_nb(-1, 97, 100, 101, 10) == 3
    assert trade_depth_bucket_nb(-1, 50, 100, 101, 10) == 9  # clipped
    assert trade_depth_bucket_nb(1, 99, 100, 101, 10) == 0  # through the mid: 0
    assert trade_depth_bucket_nb(1, 101, -(2**62), 101, 10) == -1  # no mid


def test_intensity_push_evicts_and_fit_recovers_an_exponential():
    cap = 4
    ts_buf = np.zeros(cap, dtype=np.int64)
    b_buf = np.zeros(cap, dtype=np.int64)
    counts = np.zeros(8, dtype=np.int64)
    head = count = 0
    for i, b in enumerate([5, 0, 1, 0, 2]):
        head, count = intensity_push_nb(ts_buf, b_buf, counts, head, count, cap, i, b)
    assert counts.tolist() == [2, 1, 1, 0, 0, 0, 0, 0]  # the 5 was evicted
    # N(>=d) = 1000 exp(-0.5 d) exactly -> A = 1000 / window, k = 0.5
    tail = 1000.0 * np.exp(-0.5 * np.arange(6))
    per_bucket = np.append(tail[:-1] - tail[1:], tail[-1])
    a, k = intensity_fit_nb(per_bucket, 6, 2.0)
    assert k == pytest.approx(0.5) and a == pytest.approx(500.0)
    assert np.isnan(intensity_fit_nb(np.array([3, 0, 0], dtype=np.int64), 3, 1.0)[0])  # one depth only


def test_depth_imbalance_micro_price_and_level_lookup():
    bq = np.array([3.0, 1.0, 5.0])
    aq = np.array([1.0, 1.0, 1.0])
    assert depth_sum_nb(bq, 3, 2) == 4.0 and depth_sum_nb(bq, 1, 3) == 3.0
    assert book_imbalance_nb(bq, 3, aq, 3, 2) == pytest.approx((4 - 2) / 6)
    assert math.isnan(book_imbalance_nb(bq, 0, aq, 0, 2))
    assert micro_price_ticks_nb(100, 102, -1.0) == 100.0
    assert micro_price_ticks_nb(100, 102, np.nan) == 101.0
    ticks = np.array([100, 99, 97])
    assert level_qty_at_nb(ticks, bq, 3, 97) == 5.0 and level_qty_at_nb(ticks, bq, 2, 97) == 0.0


def test_incremental_sums_match_the_recomputed_estimate_through_wraps():
    from mmlab.features import realized_push_nb

    cap = 7
    vals = np.zeros(cap)
    ts = np.zeros(cap, dtype=np.int64)
    head = count = 0
    sum_sq, sum_dt = 0.0, 0
    rng = np.random.default_rng(1)
    t = 0
    for _ in range(50):
        t += int(rng.integers(1, 5)) * 100_000_000
        head, count, sum_sq, sum_dt = realized_push_nb(vals, ts, head, count, cap, float(rng.normal()) * 3, t, sum_sq, sum_dt)
        if count >= 2:
            assert math.sqrt(sum_sq / (sum_dt * 1e-9)) == pytest.approx(realized_sigma_nb(vals, ts, head, count, cap), rel=1e-12)
