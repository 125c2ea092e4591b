"""Regime-specific thresholds from a sweep: per regime, the parameter values of the best feasible trial.

A sweep is a study whose ``[search]`` holds the thresholds (e.g. ``pipeline.queue_aware.tau_entry`` and
``tau_hold``); each trial stores its metrics per regime (``regime.<name>.<metric>`` columns of
``trials.parquet``). For each regime the builder takes the complete, feasible trials (study constraints
evaluated on the regime's own metrics where they were recorded), ranks them by the regime's value of the
objective metric (precision-first sweeps: put the precision-like metric first), and writes the winner's
parameters.

>>> th = build_thresholds("experiments/studies/tau_sweep")  # doctest: +SKIP
>>> th["regimes"]["high_vol"]["params"]  # doctest: +SKIP
{'pipeline.queue_aware.tau_entry': 0.7, 'pipeline.queue_aware.tau_hold': 0.5}
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from mmlab.errors import ConfigError, DataError


def build_thresholds(study_dir: str | os.PathLike, *, params: list[str] | None = None, metric: str | None = None,
                     direction: str | None = None, min_trials: int = 1, out: str | os.PathLike | None = None) -> dict:
    """Read ``<study_dir>/trials.parquet`` + ``study.toml``; return and write ``thresholds.toml``/``.json``."""
    import polars as pl

    d = Path(study_dir)
    tp, sp = d / "trials.parquet", d / "study.toml"
    if not tp.exists() or not sp.exists():
        raise DataError(f"{d} is not a study folder (needs trials.parquet and study.toml written by mmlab hpo)")
    study = tomllib.loads(sp.read_text())
    obj = study.get("objective", {})
    metric = metric or obj.get("metrics", ["pnl_net"])[0]
    direction = direction or dict(zip(obj.get("metrics", []), obj.get("directions", []))).get(metric, "maximize")
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be maximize or minimize, got {direction!r}")
    constraints = obj.get("constraints", [])
    df = pl.read_parquet(tp).filter(pl.col("state") == "complete")
    all_params = [c[len("param."):] for c in df.columns if c.startswith("param.")]
    params = params or all_params
    missing = [p for p in params if p not in all_params]
    if missing:
        raise ConfigError(f"parameter(s) {missing} were not searched in {d} (searched: {all_params})")
    regimes = sorted({c.split(".")[1] for c in df.columns if c.startswith("regime.")})
    if not regimes:
        raise DataError(f"{tp} has no per-regime columns (regime.<name>.<metric>); rerun the study with mmlab hpo")
    from mmlab.hpo.study import _constraint

    out_d: dict = {"study": study.get("study", {}).get("name"), "metric": metric, "direction": direction,
                   "params": params, "regimes": {}}
    for reg in regimes:
        col = f"regime.{reg}.{metric}"
        if col not in df.columns:
            raise DataError(f"{tp} has no column {col}; add {metric!r} to study.regime_metrics and rerun")
        sub = df.filter(pl.col(col).is_not_null() & pl.col(col).is_not_nan())
        for text in constraints:
            c = _constraint(text, str(sp))
            rc = f"regime.{reg}.{c.metric}"
            src = rc if rc in sub.columns else f"m.{c.metric}"
            if src in sub.columns:
                sub = sub.filter(pl.col(src).map_elements(lambda v, c=c: c.violation(v) <= 0, return_dtype=pl.Boolean))
        if sub.height < min_trials:
            out_d["regimes"][reg] = {"params": None, "n_trials": sub.height,
                                     "note": f"fewer than {min_trials} feasible trials"}
            continue
        best = sub.sort(col, descending=direction == "maximize").row(0, named=True)
        out_d["regimes"][reg] = {"params": {p: best[f"param.{p}"] for p in params}, "value": best[col],
                                 "trial": best["number"], "n_trials": sub.height,
                                 "n_segments": best.get(f"regime.{reg}.n_segments")}
    dest = Path(out) if out else d / "thresholds.toml"
    lines = [f"# regime-specific thresholds from study {out_d['study']}: {direction} {metric} per regime"]
    for reg, v in out_d["regimes"].items():
        lines.append(f"\n[{reg}]")
        if v["params"] is None:
            lines.append(f"# {v['note']}")
            continue
        lines += [f"{json.dumps(p)} = {json.dumps(x)}" for p, x in v["params"].items()]
        lines.append(f"# trial {v['trial']}: {metric} = {v['value']:.6g} over {v['n_trials']} feasible trials")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(lines) + "\n")
    dest.with_suffix(".json").write_text(json.dumps(out_d, indent=2, default=str))
    out_d["path"] = str(dest)
    return out_d
