"""Feature drift (PSI, KS) between a training window and a new window, and calibration (Brier, ECE) of scores.

Metric names follow the monitoring conventions of the live runner: ``psi_feature{feature="spread_ticks"}``,
``ks_feature{feature="spread_ticks"}``, ``brier_online``, ``ece_online``. Default blocks: PSI > 0.3 or KS > 0.2
is drift; ECE > 0.05 is out of calibration.

- PSI: bins are the deciles of the training values (ties merged); ``sum((a - e) * ln(a / e))`` over bins with
  the proportions floored at 1e-4 so that an empty bin gives a finite, large value.
- KS: the two-sample Kolmogorov-Smirnov statistic ``max |F_train(x) - F_new(x)|``.
- Brier: ``mean((p - y)^2)``; ECE: ``sum_b n_b / n * |mean(y_b) - mean(p_b)|`` over ``n_bins`` equal-width bins.

>>> import numpy as np
>>> round(ks_statistic(np.arange(100.0), np.arange(100.0) + 50), 2)
0.5
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmlab.errors import ConfigError

PSI_FLOOR = 1e-4


@dataclass(frozen=True)
class DriftThresholds:
    """Blocks of the drift report (a value above a block is flagged)."""

    psi_block: float = 0.3
    ks_block: float = 0.2
    ece_block: float = 0.05
    n_bins: int = 10

    def __post_init__(self):
        for k in ("psi_block", "ks_block", "ece_block"):
            if not getattr(self, k) > 0:
                raise ConfigError(f"drift threshold {k} must be > 0, got {getattr(self, k)!r}")
        if self.n_bins < 2:
            raise ConfigError(f"drift n_bins must be >= 2, got {self.n_bins!r}")


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def psi(expected, actual, n_bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` (quantile bins of ``expected``)."""
    e, a = _finite(expected), _finite(actual)
    if len(e) == 0 or len(a) == 0:
        return float("nan")
    edges = np.unique(np.quantile(e, np.linspace(0, 1, n_bins + 1)[1:-1]))
    ec = np.bincount(np.searchsorted(edges, e, side="right"), minlength=len(edges) + 1) / len(e)
    ac = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / len(a)
    ec = np.maximum(ec, PSI_FLOOR)
    ac = np.maximum(ac, PSI_FLOOR)
    return float(np.sum((ac - ec) * np.log(ac / ec)))


def ks_statistic(x, y) -> float:
    """Two-sample KS statistic (max distance between the empirical CDFs); NaN if a sample is empty."""
    a, b = np.sort(_finite(x)), np.sort(_finite(y))
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def brier_score(y_true, p) -> float:
    """Mean squared error of probabilities ``p`` against 0/1 outcomes."""
    y = np.asarray(y_true, dtype=np.float64)
    q = np.asarray(p, dtype=np.float64)
    return float(np.mean((q - y) ** 2)) if len(y) else float("nan")


def expected_calibration_error(y_true, p, n_bins: int = 10) -> float:
    """ECE over ``n_bins`` equal-width probability bins (weights = share of rows in the bin)."""
    y = np.asarray(y_true, dtype=np.float64)
    q = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if len(y) == 0:
        return float("nan")
    b = np.minimum((q * n_bins).astype(np.int64), n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    sy = np.bincount(b, weights=y, minlength=n_bins)
    sp = np.bincount(b, weights=q, minlength=n_bins)
    ok = n > 0
    return float(np.sum(np.abs(sy[ok] - sp[ok])) / len(y))


def metric_name(kind: str, feature: str) -> str:
    """``psi_feature{feature="x"}`` style metric name."""
    return f'{kind}_feature{{feature="{feature}"}}'


def drift_report(train: dict, new: dict, *, thresholds: DriftThresholds | None = None, y_new=None, p_new=None) -> dict:
    """PSI and KS per feature (``train``/``new``: {feature: values}), Brier/ECE of new scores when given.

    Returns ``{"features": {f: {psi, ks, n_train, n_new, drift}}, "metrics": {metric name: value},
    "drift": bool, "calibration": {...} | None, "thresholds": {...}}``.
    """
    th = thresholds or DriftThresholds()
    feats = [f for f in train if f in new]
    if not feats:
        raise ConfigError(f"no common features between the training ({sorted(train)}) and new ({sorted(new)}) windows")
    rows, metrics = {}, {}
    for f in feats:
        v_psi = psi(train[f], new[f], th.n_bins)
        v_ks = ks_statistic(train[f], new[f])
        flag = (not math.isnan(v_psi) and v_psi > th.psi_block) or (not math.isnan(v_ks) and v_ks > th.ks_block)
        rows[f] = {"psi": v_psi, "ks": v_ks, "n_train": int(len(_finite(train[f]))), "n_new": int(len(_finite(new[f]))),
                   "drift": bool(flag)}
        metrics[metric_name("psi", f)] = v_psi
        metrics[metric_name("ks", f)] = v_ks
    calib = None
    if y_new is not None and p_new is not None:
        calib = {"brier_online": brier_score(y_new, p_new),
                 "ece_online": expected_calibration_error(y_new, p_new, th.n_bins), "n": int(len(np.asarray(y_new)))}
        calib["out_of_spec"] = bool(calib["ece_online"] > th.ece_block)
        metrics["brier_online"] = calib["brier_online"]
        metrics["ece_online"] = calib["ece_online"]
    return {"features": rows, "metrics": metrics, "drift": any(r["drift"] for r in rows.values()),
            "calibration": calib,
            "thresholds": {"psi_block": th.psi_block, "ks_block": th.ks_block, "ece_block": th.ece_block, "n_bins": th.n_bins}}


def report_markdown(rep: dict, title: str = "Drift report") -> str:
    """Markdown of a :func:`drift_report` result."""
    t = rep["thresholds"]
    lines = [f"# {title}", "", f"Blocks: PSI > {t['psi_block']}, KS > {t['ks_block']}, ECE > {t['ece_block']}.", "",
             "| feature | psi | ks | n_train | n_new | drift |", "|---|---|---|---|---|---|"]
    for f, r in rep["features"].items():
        lines.append(f"| {f} | {r['psi']:.4f} | {r['ks']:.4f} | {r['n_train']} | {r['n_new']} | {'YES' if r['drift'] else 'no'} |")
    if rep["calibration"]:
        c = rep["calibration"]
        lines += ["", f"brier_online = {c['brier_online']:.5f}, ece_online = {c['ece_online']:.5f} (n = {c['n']})"
                  + (" — out of spec" if c["out_of_spec"] else "")]
    lines += ["", f"Drift: {'YES' if rep['drift'] else 'no'}", ""]
    return "\n".join(lines)
