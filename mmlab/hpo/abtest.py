"""Run an A/B comparison over backtests: two configs on the same days, then :mod:`mmlab.analysis.ab`.

>>> res = run_ab("experiments/grid_btcusdt.toml", "b.toml", out="reports/ab")  # doctest: +SKIP
>>> res["rollback"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from mmlab.analysis.ab import ABConfig, ab_compare, ab_report
from mmlab.config import load_config
from mmlab.errors import ConfigError


def run_ab(config_a, config_b, *, ab: ABConfig | None = None, out: str | os.PathLike = "reports/ab",
           overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Backtest both configs (same ``[data]`` required), compare by bucket, write ``ab.json`` and ``ab_report.md``."""
    cfg_a = config_a if hasattr(config_a, "data") else load_config(config_a, overrides=overrides)
    cfg_b = config_b if hasattr(config_b, "data") else load_config(config_b, overrides=overrides)
    if asdict(cfg_a.data) != asdict(cfg_b.data):
        raise ConfigError(f"A/B needs the same [data] in both configs (same days and symbols); A has {asdict(cfg_a.data)}, "
                          f"B has {asdict(cfg_b.data)}")
    from mmlab.sim.engine import run_backtest

    frames = []
    for cfg in (cfg_a, cfg_b):
        r = run_backtest(cfg)
        frames.append({"fills": r.fills, "state": r.state, "labels": r.labels})
    res = ab_compare(frames[0], frames[1], list(cfg_a.data.symbols), ab)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name_a = str(config_a) if not hasattr(config_a, "data") else "A"
    name_b = str(config_b) if not hasattr(config_b, "data") else "B"
    res["report"] = str(ab_report(res, out_dir / "ab_report.md", name_a, name_b))
    (out_dir / "ab.json").write_text(json.dumps(res, indent=2, default=str))
    return res
