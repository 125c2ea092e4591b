"""Regime labels of data segments (normal / event / high-vol) measured from the data, and walk-forward splits.

Each segment (a UTC day by default) is described by its trades: realized volatility of the last-trade price
sampled every ``sample_ms`` (bps per sqrt(second)), the number of jumps (sampled returns beyond ``jump_sigma``
times the larger of the segment's and the median segment's return standard deviation) and the traded volume per hour. Relative to the
median segment of the set:

- ``event``: at least ``min_jumps`` jumps, or volume per hour above ``volume_mult`` x the median;
- ``high_vol``: otherwise, realized volatility above ``vol_mult`` x the median (or above ``vol_bps_abs`` when set);
- ``normal``: the rest.

>>> walk_forward_splits(5, train=2, test=1)
[([0, 1], [2]), ([1, 2], [3]), ([2, 3], [4])]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from mmlab.errors import ConfigError

REGIMES = ("normal", "event", "high_vol")
NS_PER_S = 1_000_000_000


@dataclass(frozen=True, kw_only=True)
class RegimeThresholds:
    """Thresholds of :func:`classify_segments` (the ``[regimes]`` table of a study)."""

    sample_ms: float = 1000.0  # price sampling period of the volatility estimate
    vol_mult: float = 1.5  # high_vol: realized vol > vol_mult x median segment
    vol_bps_abs: float = math.inf  # high_vol also when realized vol (bps/sqrt(s)) exceeds this
    jump_sigma: float = 6.0  # a jump: |sampled return| > jump_sigma x max(segment, median segment) return std
    min_jumps: int = 1  # event: at least this many jumps
    volume_mult: float = 3.0  # event: volume per hour > volume_mult x median segment

    @classmethod
    def from_dict(cls, d: dict, origin: str = "study") -> "RegimeThresholds":
        fields = {f for f in cls.__dataclass_fields__}
        for k in d:
            if k not in fields:
                import difflib

                m = difflib.get_close_matches(k, fields, n=1)
                hint = f"; did you mean {m[0]!r}?" if m else f"; valid keys: {', '.join(sorted(fields))}"
                raise ConfigError(f"unknown key regimes.{k} in {origin}{hint}")
        kw = {k: (int(v) if k == "min_jumps" else float(v)) for k, v in d.items()}
        t = cls(**kw)
        for k in ("sample_ms", "vol_mult", "jump_sigma", "volume_mult", "vol_bps_abs"):
            if not getattr(t, k) > 0:
                raise ConfigError(f"regimes.{k} in {origin} must be > 0, got {getattr(t, k)!r}")
        if t.min_jumps < 1:
            raise ConfigError(f"regimes.min_jumps in {origin} must be >= 1, got {t.min_jumps!r}")
        return t


def _sampled_returns(ts_ns: np.ndarray, price: np.ndarray, sample_ns: int) -> np.ndarray:
    """Log returns of the last trade price on a grid of ``sample_ns`` (empty when fewer than two samples)."""
    if len(ts_ns) < 2:
        return np.zeros(0)
    grid = np.arange(int(ts_ns[0]) + sample_ns, int(ts_ns[-1]) + 1, sample_ns)
    if len(grid) < 2:
        return np.zeros(0)
    idx = np.searchsorted(ts_ns, grid, side="right") - 1
    p = price[idx]
    return np.diff(np.log(p))


def segment_stats(events: np.ndarray, tick_sizes: np.ndarray, t0_ns: int, t1_ns: int,
                  sample_ms: float = 1000.0) -> dict:
    """Volatility, returns and volume of one segment's trades (``event_dtype`` rows; the first symbol's trades
    price the segment, every symbol's trades count in the volume)."""
    from mmlab.types import Kind

    tr = events[events["kind"] == Kind.TRADE]
    hours = max((t1_ns - t0_ns) / 3.6e12, 1e-9)
    volume = float(tr["qty"].sum()) if len(tr) else 0.0
    sym0 = tr[tr["symbol_id"] == 0] if len(tr) else tr
    rets = np.zeros(0)
    if len(sym0) >= 2:
        ts = sym0["ts_exch"].astype(np.int64)
        order = np.argsort(ts, kind="stable")
        px = sym0["price_ticks"][order].astype(np.float64) * float(tick_sizes[0])
        rets = _sampled_returns(ts[order], px, int(sample_ms * 1e6))
    vol = float(np.std(rets) * 1e4 / math.sqrt(sample_ms / 1000.0)) if len(rets) > 1 else 0.0
    return {"t0_ns": int(t0_ns), "t1_ns": int(t1_ns), "n_trades": int(len(tr)), "volume": volume,
            "volume_per_h": volume / hours, "vol_bps_per_sqrt_s": vol, "returns": rets}


def classify_segments(stats: list[dict], thresholds: RegimeThresholds | None = None) -> list[dict]:
    """Label each segment normal / event / high_vol (see the module doc); returns one dict per segment with the
    measures, the jump count and ``regime`` (the ``returns`` arrays are dropped)."""
    th = thresholds or RegimeThresholds()
    # The typical segment's return scale: the median of per-segment standard deviations (an event segment's
    # own jumps do not raise the bar they are measured against).
    sds = [float(np.std(s["returns"])) for s in stats if len(s["returns"]) > 1]
    sigma = float(np.median(sds)) if sds else 0.0
    vols = np.array([s["vol_bps_per_sqrt_s"] for s in stats])
    volumes = np.array([s["volume_per_h"] for s in stats])
    med_vol = float(np.median(vols)) if len(vols) else 0.0
    med_volume = float(np.median(volumes)) if len(volumes) else 0.0
    out = []
    for s in stats:
        r = s["returns"]
        # Against the larger of its own and the typical scale: a volatile segment's ordinary moves are no jumps.
        scale = max(sigma, float(np.std(r)) if len(r) > 1 else 0.0)
        jumps = int((np.abs(r) > th.jump_sigma * scale).sum()) if scale > 0 and len(r) else 0
        event = jumps >= th.min_jumps or (med_volume > 0 and s["volume_per_h"] > th.volume_mult * med_volume)
        high = (med_vol > 0 and s["vol_bps_per_sqrt_s"] > th.vol_mult * med_vol) or s["vol_bps_per_sqrt_s"] > th.vol_bps_abs
        regime = "event" if event else "high_vol" if high else "normal"
        row = {k: v for k, v in s.items() if k != "returns"}
        row.update({"jumps": jumps, "regime": regime, "median_vol_bps_per_sqrt_s": med_vol,
                    "median_volume_per_h": med_volume, "jump_threshold": th.jump_sigma * scale})
        out.append(row)
    return out


def walk_forward_splits(n_segments: int, *, train: int, test: int = 1, step: int | None = None,
                        expanding: bool = False) -> list[tuple[list[int], list[int]]]:
    """Segment indices of walk-forward folds: train on ``train`` consecutive segments (all earlier ones when
    ``expanding``), test on the ``test`` that follow, move by ``step`` (default ``test``)."""
    if train < 1 or test < 1:
        raise ConfigError(f"walk-forward needs train >= 1 and test >= 1 segments, got train={train} test={test}")
    step = step or test
    if step < 1:
        raise ConfigError(f"walk-forward step must be >= 1, got {step}")
    folds = []
    start = 0
    while start + train + test <= n_segments:
        tr0 = 0 if expanding else start
        folds.append((list(range(tr0, start + train)), list(range(start + train, start + train + test))))
        start += step
    if not folds:
        raise ConfigError(f"walk-forward with train={train} test={test} needs at least {train + test} segments, "
                          f"the data window has {n_segments} (use a shorter study.split or fewer segments)")
    return folds


def thresholds_dict(t: RegimeThresholds) -> dict:
    return {k: v for k, v in asdict(t).items() if not (isinstance(v, float) and math.isinf(v))}
