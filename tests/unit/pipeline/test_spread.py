"""spread: one test per SpreadReason and hand-computed FIXED / VOL_SCALED / AS / GLFT values."""

import math

import numpy as np
import pytest

from mmlab.features import intensity_fit_nb
from mmlab.pipeline import on_trade_nb, spread_nb
from mmlab.types import SpreadReason

S = 1_000_000_000


def run(t, now_ns, pricing_stale=0):
    pl = t.pl
    t.out["pricing_stale"] = pricing_stale
    return SpreadReason(spread_nb(np.int64(now_ns), t.inp, *t.depth(), pl.params("spread"), pl.state("spread"), t.out))


def warm_sigma_one(t, n=5):
    """Mids alternating 100.5 / 101.5 one second apart: sigma = 1 tick per sqrt(second)."""
    for i in range(n):
        t.set_book(100 + (i % 2), 101 + (i % 2))
        run(t, (i + 1) * S)
    t.set_book(100, 101)


def test_skipped_without_a_pricing_view(tick):
    t = tick()
    assert run(t, S, pricing_stale=2) == SpreadReason.SKIPPED
    assert math.isnan(t.out["fair_ticks"]) and math.isnan(t.out["half_spread_ticks"])


def test_fixed_mid_ok(tick):
    t = tick(spread=dict(half_spread_ticks=2.0))
    assert run(t, S) == SpreadReason.OK
    assert t.out["fair_ticks"] == 100.5 and t.out["half_spread_ticks"] == 2.0
    assert t.out["skew_per_qty_ticks"] == 0.0


def test_micro_price_moves_toward_the_thin_side(tick):
    t = tick(spread=dict(fair="micro", imbalance_levels=1))
    t.bid_qty[0] = 3.0  # imbalance (3 - 1) / 4 = 0.5
    run(t, S)
    assert t.out["imbalance"] == 0.5
    assert t.out["fair_ticks"] == 100.5 + 0.5 * 1 * 0.5


def test_min_spread_ticks_and_bps(tick):
    t = tick(spread=dict(half_spread_ticks=2.0, min_half_spread_ticks=3.0))
    assert run(t, S) == SpreadReason.MIN_SPREAD
    assert t.out["half_spread_ticks"] == 3.0
    t2 = tick(bid=9_999, ask=10_001, spread=dict(half_spread_ticks=1.0, min_spread_bps=10.0))
    assert run(t2, S) == SpreadReason.MIN_SPREAD
    assert t2.out["half_spread_ticks"] == pytest.approx(5.0)  # 10 bps of 10_000 ticks, halved


def test_max_spread(tick):
    t = tick(spread=dict(half_spread_ticks=9.0, max_half_spread_ticks=4.0))
    assert run(t, S) == SpreadReason.MAX_SPREAD
    assert t.out["half_spread_ticks"] == 4.0


def test_widened_on_a_stale_pricing_view(tick):
    t = tick(spread=dict(half_spread_ticks=2.0, stale_widen_mult=1.5))
    assert run(t, S, pricing_stale=1) == SpreadReason.WIDENED_STALE
    assert t.out["half_spread_ticks"] == 3.0


def test_warming_falls_back_to_fixed(tick):
    t = tick(spread=dict(model="vol_scaled", half_spread_ticks=2.5, vol_min_samples=3))
    assert run(t, S) == SpreadReason.WARMING
    assert t.out["half_spread_ticks"] == 2.5 and math.isnan(t.out["sigma_ticks_1s"])


def test_vol_scaled(tick):
    t = tick(spread=dict(model="vol_scaled", vol_mult=2.0, vol_horizon_ms=4000.0, vol_min_samples=2, vol_sample_ms=0.0))
    warm_sigma_one(t)
    assert run(t, 10 * S) == SpreadReason.OK
    # four 1-tick moves over 1..5 s, then an unchanged mid at 10 s: 4 tick^2 over 9 s
    sigma = math.sqrt(4.0 / 9.0)
    assert t.out["sigma_ticks_1s"] == pytest.approx(sigma)
    assert t.out["half_spread_ticks"] == pytest.approx(2.0 * sigma * 2.0)
    assert t.out["vol_bps_1s"] == pytest.approx(sigma / 100.5 * 1e4)


def test_vol_sampling_interval(tick):
    t = tick(spread=dict(vol_sample_ms=500.0))
    run(t, S)
    run(t, S + 100_000_000)  # 100 ms later: not sampled
    assert t.pl.state("spread")["vol_count"] == 1
    run(t, S + 600_000_000)
    assert t.pl.state("spread")["vol_count"] == 2


def test_stale_views_are_not_sampled(tick):
    t = tick()
    run(t, S, pricing_stale=1)
    assert t.pl.state("spread")["vol_count"] == 0


def test_avellaneda_stoikov(tick):
    t = tick(spread=dict(model="as", risk_factor=0.1, horizon_s=1.0, intensity_k_per_tick=1.0, calibrate_intensity=False,
                         vol_min_samples=2, vol_sample_ms=0.0, unit_qty=0.5))
    warm_sigma_one(t)
    t.pl.state("spread")["sigma_ticks_1s"] = 1.0  # a call at the last sample's time adds no sample
    assert run(t, 5 * S) == SpreadReason.OK
    sigma = t.out["sigma_ticks_1s"]
    assert sigma == 1.0
    gamma, kappa = 0.1, 1.0
    assert t.out["skew_per_qty_ticks"] == pytest.approx(gamma * sigma**2 / 0.5)
    assert t.out["half_spread_ticks"] == pytest.approx(0.5 * (gamma + 2 / gamma * math.log(1 + gamma / kappa)))
    assert t.out["half_spread_ticks"] == pytest.approx(1.003102, abs=1e-6)


def test_glft_with_fixed_intensity(tick):
    t = tick(spread=dict(model="glft", risk_factor=0.1, intensity_a_per_s=2.0, intensity_k_per_tick=1.0,
                         calibrate_intensity=False, vol_min_samples=2, vol_sample_ms=0.0, unit_qty=1.0))
    warm_sigma_one(t)
    t.pl.state("spread")["sigma_ticks_1s"] = 1.0
    assert run(t, 5 * S) == SpreadReason.OK
    c1 = math.log(1.1) / 0.1
    c2 = math.sqrt(0.1 / (2 * 2.0 * 1.0) * 1.1 ** (1.0 / 0.1 + 1))
    assert t.out["half_spread_ticks"] == pytest.approx(c1 + 0.5 * c2)
    assert t.out["half_spread_ticks"] == pytest.approx(1.086638, abs=1e-6)
    assert t.out["skew_per_qty_ticks"] == pytest.approx(c2)


def test_glft_warming_until_intensity_calibrated(tick):
    t = tick(spread=dict(model="glft", calibrate_intensity=True, intensity_min_trades=4, vol_min_samples=2, vol_sample_ms=0.0))
    warm_sigma_one(t)
    assert run(t, 6 * S) == SpreadReason.WARMING
    # Buyer trades at depth 0.5, 0.5, 1.5, 2.5 ticks from mid 100.5: buckets 0, 0, 1, 2.
    for i, price in enumerate([101, 101, 102, 103]):
        on_trade_nb(t.r, 6 * S + i, 1, price, 1.0, 100, 101)
    assert run(t, 8 * S) == SpreadReason.OK
    counts = np.zeros(32, dtype=np.int64)
    counts[:3] = [2, 1, 1]
    a, k = intensity_fit_nb(counts, 10, (8 * S - 6 * S) * 1e-9)
    assert t.out["intensity_a_per_s"] == pytest.approx(a) and t.out["intensity_k_per_tick"] == pytest.approx(k)
    assert k > 0


def test_flow_rate_of_trades(tick):
    t = tick(spread=dict(flow_halflife_ms=1000.0))
    on_trade_nb(t.r, S, -1, 100, 2.0, 100, 101)  # seller hits the bid
    run(t, S)
    tau_s = 1.0 / math.log(2.0)
    assert t.out["flow_bid_qty_per_s"] == pytest.approx(2.0 / tau_s)
    assert t.out["flow_ask_qty_per_s"] == 0.0
    run(t, 2 * S)  # one half-life later
    assert t.out["flow_bid_qty_per_s"] == pytest.approx(1.0 / tau_s)


def test_order_amount_shape_scales_the_inventory_increasing_side(tick):
    t = tick(spread=dict(order_amount_shape=0.5, unit_qty=1.0))
    t.inp["position"] = 2.0
    run(t, S)
    assert t.out["size_mult_bid"] == pytest.approx(math.exp(-1.0)) and t.out["size_mult_ask"] == 1.0
    t.inp["position"] = -2.0
    run(t, 2 * S)
    assert t.out["size_mult_ask"] == pytest.approx(math.exp(-1.0)) and t.out["size_mult_bid"] == 1.0


def test_model_score_shifts_and_widens(tick):
    t = tick(spread=dict(half_spread_ticks=2.0, score_skew_ticks=2.0, score_widen=1.0))
    t.inp["model_score"] = -0.5
    run(t, S)
    assert t.out["fair_ticks"] == 100.5 - 1.0
    assert t.out["half_spread_ticks"] == 3.0
    t.inp["model_score"] = np.nan  # NaN = no score
    run(t, 2 * S)
    assert t.out["fair_ticks"] == 100.5 and t.out["half_spread_ticks"] == 2.0
