"""Day classification (normal / event / high-vol) and walk-forward splits."""

import numpy as np
import pytest

from mmlab.errors import ConfigError
from mmlab.hpo.regimes import RegimeThresholds, classify_segments, walk_forward_splits


def _stats(sd_bps, volume_per_h, jump_bps=None, n=600, seed=0):
    r = np.random.default_rng(seed).normal(0, sd_bps * 1e-4, n)
    if jump_bps is not None:
        r[n // 2] = jump_bps * 1e-4
    return {"t0_ns": 0, "t1_ns": 1, "n_trades": 100, "volume": volume_per_h, "volume_per_h": volume_per_h,
            "vol_bps_per_sqrt_s": float(np.std(r) * 1e4), "returns": r}


def test_segments_are_labelled_from_their_own_volatility_jumps_and_volume():
    stats = [_stats(1.0, 100, seed=1), _stats(1.0, 110, seed=2), _stats(1.0, 90, seed=3),
             _stats(3.0, 100, seed=4),  # persistently higher volatility
             _stats(1.0, 100, jump_bps=30.0, seed=5),  # one jump of 30 sigma
             _stats(1.0, 1000, seed=6)]  # ten times the volume
    labels = [s["regime"] for s in classify_segments(stats, RegimeThresholds())]
    assert labels == ["normal", "normal", "normal", "high_vol", "event", "event"]


def test_absolute_volatility_threshold():
    stats = [_stats(1.0, 100, seed=1), _stats(1.0, 100, seed=2)]
    assert [s["regime"] for s in classify_segments(stats, RegimeThresholds(vol_bps_abs=0.5))] == ["high_vol"] * 2


def test_walk_forward_rolling_and_expanding():
    assert walk_forward_splits(4, train=2, test=1) == [([0, 1], [2]), ([1, 2], [3])]
    assert walk_forward_splits(4, train=1, test=1, expanding=True) == [([0], [1]), ([0, 1], [2]), ([0, 1, 2], [3])]
    with pytest.raises(ConfigError, match="needs at least 4 segments, the data window has 3"):
        walk_forward_splits(3, train=3, test=1)


def test_unknown_regime_key_names_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'vol_mult'"):
        RegimeThresholds.from_dict({"vol_mul": 2.0})
