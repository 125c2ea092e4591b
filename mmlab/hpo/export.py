"""The study folder: ``best.toml``, ``trials.parquet``, ``presets/``, PNG charts and ``report.md``.

``best.toml`` is the resolved backtest config of the best feasible trial (single objective: best value;
several objectives: the Pareto-optimal trial best in the first metric), ready for ``mmlab backtest --config``.
``presets/`` holds the top ``study.top_n`` trials the same way. ``trials.parquet`` has one row per trial:
number, state, objective values, ``param.<key>`` columns, constraint violations and ``feasible``, combined
summary metrics (``m.<metric>``), per-regime metrics (``regime.<name>.<metric>``), timings and errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mmlab.hpo.study import StudyConfig, config_toml

#: Summary metrics copied into trials.parquet besides the objectives.
TRIAL_METRICS = ("pnl_net", "net_bps", "sharpe", "max_drawdown", "fees", "n_fills", "n_orders", "fill_rate",
                 "taker_share", "slippage_bps_mean", "markout_bps_1s", "volume_qty")


def _attrs(t) -> dict:
    """What the objective recorded for a trial (one ``result`` attribute; ``error`` may stand alone)."""
    a = dict(t.user_attrs.get("result", {}))
    for k in ("error", "pruned_after_segment"):
        if k in t.user_attrs:
            a.setdefault(k, t.user_attrs[k])
    return a


def _feasible(t) -> bool:
    return all(v <= 0 for v in _attrs(t).get("constraints", []))


def _complete(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.trials if t.state == TrialState.COMPLETE and t.values is not None
            and all(math.isfinite(v) for v in t.values)]


def ranked_trials(study, sc: StudyConfig) -> list:
    """Feasible complete trials, best first (Pareto-optimal first for several objectives, then by metric 0)."""
    trials = [t for t in _complete(study) if _feasible(t)]
    sign = 1.0 if sc.directions[0] == "minimize" else -1.0
    trials.sort(key=lambda t: (sign * t.values[0], t.number))
    if sc.multi_objective:
        front = {t.number for t in pareto_front(trials, sc.directions)}
        trials.sort(key=lambda t: (t.number not in front, sign * t.values[0], t.number))
    return trials


def pareto_front(trials: list, directions) -> list:
    """Trials no other trial dominates (all values at least as good, one strictly better)."""
    if not trials:
        return []
    v = np.array([t.values for t in trials], dtype=float)
    v = v * np.array([-1.0 if d == "maximize" else 1.0 for d in directions])  # minimize all
    keep = []
    for i in range(len(trials)):
        dom = np.all(v <= v[i], axis=1) & np.any(v < v[i], axis=1)
        if not dom.any():
            keep.append(trials[i])
    return keep


def trials_frame(study, sc: StudyConfig):
    """One row per trial (see the module doc) as a polars DataFrame."""
    import polars as pl

    rows = []
    for t in study.trials:
        r = {"number": t.number, "state": t.state.name.lower()}
        vals = t.values if t.values is not None else [None] * len(sc.metrics)
        for m, v in zip(sc.metrics, vals):
            r[f"value.{m}"] = float(v) if v is not None else None
        for p in sc.params:
            v = t.params.get(p.key)
            r[f"param.{p.key}"] = v if not isinstance(v, (list, dict)) else json.dumps(v)
        a = _attrs(t)
        cons = a.get("constraints")
        for c, i in zip(sc.constraints, range(len(sc.constraints))):
            r[f"constraint.{c}"] = float(cons[i]) if cons else None
        r["feasible"] = bool(t.state.name == "COMPLETE" and _feasible(t))
        summ = a.get("summary", {})
        for m in dict.fromkeys(list(sc.metrics) + list(TRIAL_METRICS)):
            r[f"m.{m}"] = summ.get(m)
        for reg, vals_r in sorted(a.get("regimes", {}).items()):
            for m, v in vals_r.items():
                r[f"regime.{reg}.{m}"] = float(v) if v is not None else None
        r["n_steps"] = len(t.intermediate_values)
        r["pruned_after_segment"] = a.get("pruned_after_segment")
        r["duration_s"] = t.duration.total_seconds() if t.duration is not None else None
        r["trial_s"] = a.get("trial_s")
        r["sim_s"] = a.get("sim_s")
        r["error"] = a.get("error")
        r["datetime_start"] = t.datetime_start.isoformat() if t.datetime_start else None
        rows.append(r)
    if not rows:
        return pl.DataFrame({"number": [], "state": []})
    cols = list(dict.fromkeys(k for r in rows for k in r))
    data = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        kinds = {type(v) for v in vals if v is not None}
        if kinds and kinds <= {int, float} and kinds != {int}:
            vals = [float(v) if v is not None else None for v in vals]
        elif len(kinds) > 1:
            vals = [json.dumps(v) if v is not None else None for v in vals]
        data[c] = vals
    return pl.DataFrame(data, strict=False)


def _plot_history(study, sc: StudyConfig, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from optuna.trial import TrialState

    done = _complete(study)
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.array([t.number for t in done])
    y = np.array([t.values[0] for t in done])
    feas = np.array([_feasible(t) for t in done])
    ax.scatter(x[feas], y[feas], s=18, label="complete, feasible")
    if (~feas).any():
        ax.scatter(x[~feas], y[~feas], s=18, marker="x", color="tab:red", label="complete, infeasible")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED and t.intermediate_values]
    if pruned:
        ax.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
                   s=14, marker="v", color="tab:gray", label="pruned (last report)")
    if feas.any():
        yf = np.where(feas, y, np.nan)
        best = np.fmax.accumulate(yf) if sc.directions[0] == "maximize" else np.fmin.accumulate(yf)
        ax.step(x, best, where="post", color="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(sc.metrics[0])
    ax.set_title(f"optimization history: {sc.name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def param_importances(study, sc: StudyConfig) -> dict[str, float] | None:
    """Importances of the parameters for the first objective over complete trials: fANOVA, or, where fANOVA
    finds no variance (few trials), the normalized absolute rank correlation. None below 2 trials."""
    import optuna

    done = _complete(study)
    if len(done) < 2 or not sc.params:
        return None
    try:
        return optuna.importance.get_param_importances(
            study, target=lambda t: t.values[0], evaluator=optuna.importance.FanovaImportanceEvaluator(seed=sc.seed))
    except (RuntimeError, ValueError, ZeroDivisionError):
        pass
    y = np.argsort(np.argsort([t.values[0] for t in done])).astype(float)
    imp = {}
    for p in sc.params:
        vals = [t.params.get(p.key) for t in done]
        if p.kind == "categorical":
            codes = {v: i for i, v in enumerate(dict.fromkeys(map(str, vals)))}
            x = np.array([codes[str(v)] for v in vals], dtype=float)
        else:
            x = np.array(vals, dtype=float)
        x = np.argsort(np.argsort(x)).astype(float)
        imp[p.key] = abs(float(np.corrcoef(x, y)[0, 1])) if x.std() > 0 and y.std() > 0 else 0.0
    tot = sum(imp.values())
    if tot <= 0:
        return None
    return dict(sorted(((k, v / tot) for k, v in imp.items()), key=lambda kv: -kv[1]))


def _plot_importances(imp: dict | None, sc: StudyConfig, path: Path) -> Path | None:
    if not imp:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(keys) + 1.5))
    ax.barh(keys, [imp[k] for k in keys])
    ax.set_xlabel(f"importance for {sc.metrics[0]}")
    ax.set_title("parameter importances")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_pareto(study, sc: StudyConfig, path: Path) -> Path | None:
    if not sc.multi_objective:
        return None
    done = _complete(study)
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feas = [t for t in done if _feasible(t)]
    front = pareto_front(feas, sc.directions)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([t.values[0] for t in done], [t.values[1] for t in done], s=16, color="tab:gray", label="trials")
    if front:
        f = sorted(front, key=lambda t: t.values[0])
        ax.plot([t.values[0] for t in f], [t.values[1] for t in f], "o-", color="tab:red", label="Pareto front")
        for t in f:
            ax.annotate(str(t.number), (t.values[0], t.values[1]), fontsize=7)
    ax.set_xlabel(f"{sc.metrics[0]} ({sc.directions[0]})")
    ax.set_ylabel(f"{sc.metrics[1]} ({sc.directions[1]})")
    ax.set_title(f"Pareto front: {sc.name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _md_table(rows: list[dict], cols: list[str]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return out + [""]


def _segments_info(sc: StudyConfig) -> list[dict]:
    try:
        from mmlab.hpo.regimes import RegimeThresholds
        from mmlab.hpo.segments import load_segments

        _, segs = load_segments(sc.base_config(), sc.segment_ns, RegimeThresholds.from_dict(sc.regimes))
    except Exception:  # the data may not be on the machine that exports
        return []
    return [{"segment": s.label, "regime": s.regime, "events": len(s.events),
             "vol_bps_per_sqrt_s": s.stats.get("vol_bps_per_sqrt_s"), "jumps": s.stats.get("jumps"),
             "volume_per_h": s.stats.get("volume_per_h"), "n_trades": s.stats.get("n_trades")} for s in segs]


def export_study(study, sc: StudyConfig, out_dir) -> dict:
    """Write the study folder from the stored trials; returns paths and the best trial's numbers."""
    from optuna.trial import TrialState

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.toml").write_text(_study_toml(sc))
    frame = trials_frame(study, sc)
    frame.write_parquet(out / "trials.parquet")
    ranked = ranked_trials(study, sc)
    presets = out / "presets"
    presets.mkdir(exist_ok=True)
    for old in presets.glob("*.toml"):
        old.unlink()
    res: dict = {"n_trials": len(study.trials),
                 "states": {s.name.lower(): sum(t.state == s for t in study.trials) for s in TrialState},
                 "trials_parquet": str(out / "trials.parquet")}
    best = ranked[0] if ranked else None
    if best is not None:
        cfg = sc.trial_config(best.params)
        vals = ", ".join(f"{m} = {v:.6g}" for m, v in zip(sc.metrics, best.values))
        (out / "best.toml").write_text(config_toml(cfg, f"best trial {best.number} of study {sc.name}: {vals}\n"
                                                        "run it: mmlab backtest --config best.toml"))
        res.update({"best_trial": best.number, "best_params": dict(best.params), "best_values": list(best.values),
                    "best_toml": str(out / "best.toml")})
        for rank, t in enumerate(ranked[: sc.top_n], start=1):
            c = sc.trial_config(t.params)
            v = ", ".join(f"{m} = {x:.6g}" for m, x in zip(sc.metrics, t.values))
            (presets / f"top{rank}_trial{t.number}.toml").write_text(
                config_toml(c, f"rank {rank} of study {sc.name} (trial {t.number}): {v}"))
    else:
        stale = out / "best.toml"
        if stale.exists():
            stale.unlink()
    imp = param_importances(study, sc)
    charts = {}
    for name, fn in (("history", lambda p: _plot_history(study, sc, p)),
                     ("importances", lambda p: _plot_importances(imp, sc, p)),
                     ("pareto", lambda p: _plot_pareto(study, sc, p))):
        p = fn(out / f"{name}.png")
        if p is not None:
            charts[name] = str(p)
    res["charts"] = charts
    res["importances"] = imp
    (out / "report.md").write_text(_report(study, sc, ranked, imp, charts, res))
    res["report"] = str(out / "report.md")
    (out / "result.json").write_text(json.dumps(res, indent=2, default=str))
    return res


def _study_toml(sc: StudyConfig) -> str:
    from mmlab.config import dumps_toml

    d = sc.to_dict()
    lines = ["[study]"] + [f"{k} = {json.dumps(v)}" for k, v in d["study"].items()] + [""]
    for section, values in d["base"].items():
        lines.append(dumps_toml({f"base.{section}": values}))
    lines.append("[search]")
    for k, v in d["search"].items():
        lines.append(f"{json.dumps(k)} = {{" + ", ".join(f"{a} = {json.dumps(b)}" for a, b in v.items()) + "}")
    lines += ["", "[objective]"] + [f"{k} = {json.dumps(v)}" for k, v in d["objective"].items()]
    if d["regimes"]:
        lines += ["", "[regimes]"] + [f"{k} = {json.dumps(v)}" for k, v in d["regimes"].items()]
    return "\n".join(lines) + "\n"


def _report(study, sc: StudyConfig, ranked: list, imp, charts: dict, res: dict) -> str:
    L = [f"# Study `{sc.name}`", ""]
    L.append(f"Objective: " + ", ".join(f"{d} `{m}`" for m, d in zip(sc.metrics, sc.directions))
             + (f"; constraints: " + ", ".join(f"`{c}`" for c in sc.constraints) if sc.constraints else ""))
    L.append(f"Sampler `{sc.sampler}` (seed {sc.seed}), pruner `{sc.pruner if not sc.multi_objective else 'none'}`, "
             f"segments: `{sc.split}`.")
    L.append("Trials: " + ", ".join(f"{k} {v}" for k, v in res["states"].items() if v) + ".")
    L.append("")
    L.append("## Search space")
    L.append("")
    L += _md_table([{"key": p.key, "kind": p.kind, "range": (", ".join(map(str, p.choices)) if p.choices
                    else f"[{p.low}, {p.high}]" + (" log" if p.log else "") + (f" step {p.step}" if p.step else ""))}
                   for p in sc.params], ["key", "kind", "range"])
    segs = _segments_info(sc)
    if segs:
        L += ["## Data segments and regimes", ""]
        L += _md_table(segs, ["segment", "regime", "events", "vol_bps_per_sqrt_s", "jumps", "volume_per_h", "n_trades"])
    if ranked:
        b = ranked[0]
        L += ["## Best trial", "", f"Trial {b.number}; `best.toml` reproduces it with `mmlab backtest --config best.toml`.", ""]
        L += _md_table([{"param": k, "value": v} for k, v in b.params.items()], ["param", "value"])
        summ = _attrs(b).get("summary", {})
        L += _md_table([{"metric": m, "value": summ.get(m)} for m in dict.fromkeys(list(sc.metrics) + list(TRIAL_METRICS))],
                       ["metric", "value"])
        regs = _attrs(b).get("regimes", {})
        if regs:
            L += ["### Best trial by regime", ""]
            cols = ["regime", "n_segments"] + list(dict.fromkeys(list(sc.metrics) + list(sc.regime_metrics)))
            L += _md_table([{"regime": k, **v} for k, v in sorted(regs.items())], cols)
        L += [f"## Top {min(sc.top_n, len(ranked))} trials (presets/)", ""]
        rows = []
        for rank, t in enumerate(ranked[: sc.top_n], start=1):
            r = {"rank": rank, "trial": t.number, **{m: v for m, v in zip(sc.metrics, t.values)}}
            r.update({p.key: t.params.get(p.key) for p in sc.params})
            rows.append(r)
        L += _md_table(rows, ["rank", "trial"] + list(sc.metrics) + [p.key for p in sc.params])
    else:
        L += ["## Best trial", "", "No complete feasible trial: no best.toml was written.", ""]
    if sc.multi_objective:
        feas = [t for t in _complete(study) if _feasible(t)]
        L += ["## Pareto front", ""]
        L += _md_table([{"trial": t.number, **dict(zip(sc.metrics, t.values))}
                        for t in sorted(pareto_front(feas, sc.directions), key=lambda t: t.values[0])],
                       ["trial"] + list(sc.metrics))
    L += ["## Parameter importances", ""]
    if imp:
        L += _md_table([{"param": k, "importance": v} for k, v in imp.items()], ["param", "importance"])
    else:
        L += ["Not computed (fewer than 2 complete trials, or no parameter varied).", ""]
    errors = {_attrs(t)["error"] for t in study.trials if _attrs(t).get("error")}
    if errors:
        L += ["## Errors", ""] + [f"- {e}" for e in sorted(errors)] + [""]
    if charts:
        L += ["## Charts", ""] + [f"![{k}]({Path(v).name})" for k, v in charts.items()] + [""]
    return "\n".join(L)
