"""``mmlab release check MODEL_ID``: the release checklist of a registered candidate model.

Checks, each PASS / FAIL / SKIP with a detail:

1. ``schema`` — the candidate's ``lgbm_meta.json``, ``model.json`` and dataset sidecar agree on the feature
   schema hash, and it equals the active model's (a model fed another schema would score garbage);
2. ``pr_auc`` and ``precision`` — test-split PR-AUC and precision at tau_entry at least the active model's
   (SKIP when no model is active or the candidate is the active one);
3. ``parity`` — LightGBM and onnxruntime agree on the held-out rows (:func:`mmlab.ml.export.parity_figures`);
4. backtest gates on the chosen days (``--config``, ``--day``), the candidate scoring in the loop:
   ``winrate`` (share of fills whose 1 s markout is > 0) >= ``min_winrate``, ``avg_markout`` (mean
   ``markout_bps_1s``) >= ``min_markout_bps``, ``fill_rate`` >= ``min_fill_rate``; SKIP without a config.

>>> res = release_check("m2", registry="models/registry", config="experiments/grid_btcusdt.toml")  # doctest: +SKIP
>>> res["passed"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError, MmlabError


@dataclass(frozen=True)
class ReleaseGates:
    """Backtest gate thresholds."""

    min_winrate: float = 0.5
    min_markout_bps: float = 0.0
    min_fill_rate: float = 0.05


def _row(check: str, ok: bool | None, detail: str) -> dict:
    return {"check": check, "status": "SKIP" if ok is None else ("PASS" if ok else "FAIL"), "detail": detail}


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _parity(model_dir: Path) -> dict:
    import lightgbm as lgb

    from mmlab.ml.export import ParitySpec, _held_out, parity_figures
    from mmlab.ml.infer import OnnxScorer

    sc = OnnxScorer(model_dir)
    X, split = _held_out(model_dir, sc.features)
    booster = lgb.Booster(model_file=str(model_dir / "model.txt"))
    fig = parity_figures(booster.predict(X.astype(np.float64)), sc.score_batch(X), ParitySpec())
    fig["split"] = split
    return fig


def _day_overrides(day: str) -> list[str]:
    try:
        d = date.fromisoformat(day)
    except ValueError as exc:
        raise ConfigError(f"--day {day!r} must be a UTC date YYYY-MM-DD") from exc
    return [f'data.start="{d.isoformat()}T00:00:00Z"', f'data.end="{(d + timedelta(days=1)).isoformat()}T00:00:00Z"']


def backtest_gates(model_id: str, registry, config, overrides=(), days=(), gates: ReleaseGates = ReleaseGates()) -> list[dict]:
    """Run the candidate in the loop on each day (or the config's range) and evaluate the gates on all fills."""
    from mmlab.config import load_config
    from mmlab.sim.engine import run_backtest

    runs = [list(_day_overrides(d)) for d in days] or [[]]
    markouts, n_orders, n_filled = [], 0, 0
    for extra in runs:
        cfg = load_config(config, overrides=list(overrides) + extra + [f'model.id="{model_id}"',
                                                                       f'model.registry="{Path(registry)}"'])
        res = run_backtest(cfg)
        if res.fills.height:
            markouts.append(res.fills["markout_bps_1s"].to_numpy())
        lab = res.labels
        n_orders += lab.height
        n_filled += int((lab["filled_qty"].to_numpy() > 0).sum()) if lab.height else 0
    mk = np.concatenate(markouts) if markouts else np.zeros(0)
    mk = mk[~np.isnan(mk)]
    winrate = float((mk > 0).mean()) if len(mk) else float("nan")
    avg = float(mk.mean()) if len(mk) else float("nan")
    fill_rate = n_filled / n_orders if n_orders else float("nan")
    where = f"{len(runs)} run(s){' on ' + ','.join(days) if days else ''}"
    return [
        _row("winrate", (not math.isnan(winrate)) and winrate >= gates.min_winrate,
             f"{_fmt(winrate)} of {len(mk)} fills with markout_bps_1s > 0 (min {gates.min_winrate}; {where})"),
        _row("avg_markout", (not math.isnan(avg)) and avg >= gates.min_markout_bps,
             f"mean markout_bps_1s {_fmt(avg)} (min {gates.min_markout_bps})"),
        _row("fill_rate", (not math.isnan(fill_rate)) and fill_rate >= gates.min_fill_rate,
             f"{_fmt(fill_rate)} = {n_filled} filled / {n_orders} orders (min {gates.min_fill_rate})"),
    ]


def release_check(model_id: str, *, registry="models/registry", config=None, overrides=(), days=(),
                  gates: ReleaseGates = ReleaseGates()) -> dict:
    """Run the checklist; returns ``{"model_id", "active", "checks": [{check, status, detail}], "passed"}``."""
    from mmlab.ml.dataset import read_sidecar, schema_hash
    from mmlab.ml.registry import Registry
    from mmlab.ml.train import read_meta

    reg = Registry(registry)
    model_id = reg.resolve_id(model_id)
    cand = reg.entry(model_id)
    d = reg.model_dir(model_id)
    meta = read_meta(d)
    m = reg.load()
    active_id = m.get("active")
    active = reg.entry(active_id, m) if active_id and active_id != model_id else None
    checks = []

    onnx_meta_p = d / "model.json"
    onnx_hash = json.loads(onnx_meta_p.read_text())["schema_hash"] if onnx_meta_p.exists() else None
    try:
        side_hash = read_sidecar(d / "dataset.parquet")["schema_hash"]
    except MmlabError:
        side_hash = None
    hashes = {"lgbm_meta": meta["schema_hash"], "model.json": onnx_hash, "sidecar": side_hash,
              "features": schema_hash(meta["features"]), "registry": cand["schema_hash"]}
    same = len(set(hashes.values())) == 1 and None not in hashes.values()
    detail = f"{meta['schema_hash']}" if same else ", ".join(f"{k}={v}" for k, v in hashes.items())
    if active is not None:
        same = same and active["schema_hash"] == meta["schema_hash"]
        detail += f"; active {active_id}: {active['schema_hash']}"
    checks.append(_row("schema", same, detail))

    test = meta["metrics"].get("test", {})
    for key, name in (("pr_auc", "pr_auc"), ("precision_at_tau", "precision")):
        mine = test.get(key)
        if active is None:
            checks.append(_row(name, None, f"{_fmt(mine)} (no other active model to compare with)"))
            continue
        theirs = (active.get("metrics") or {}).get(key)
        ok = mine is not None and (theirs is None or mine >= theirs)
        checks.append(_row(name, ok, f"{_fmt(mine)} vs active {active_id} {_fmt(theirs)}"))

    if (d / "model.onnx").exists():
        fig = _parity(d)
        checks.append(_row("parity", fig["passed"], f"q{fig['quantile']:g} |diff| {fig['abs_diff_quantile']:.3g}, "
                                                    f"{fig['n_mismatch']} of {fig['rows']} {fig['split']} rows mismatch"))
    else:
        checks.append(_row("parity", False, f"{d / 'model.onnx'} is missing (mmlab export-onnx {d})"))

    if config is None:
        checks.append(_row("backtest", None, "no --config: backtest gates (winrate, avg_markout, fill_rate) not run"))
    else:
        checks.extend(backtest_gates(model_id, registry, config, overrides, days, gates))
    passed = all(c["status"] != "FAIL" for c in checks)
    return {"model_id": model_id, "active": active_id, "checks": checks, "passed": passed}
