"""Walk-forward optimization: per fold, search on the train segments, evaluate the best parameters on the test
segments that follow (out of sample), and report every fold.

The study file is the one of ``mmlab hpo`` (``[base]``, ``[search]``, ``[objective]``, ``study.split``); folds
come from :func:`mmlab.hpo.regimes.walk_forward_splits` over the data window's segments (UTC days by default).
Each fold runs an in-memory Optuna study of ``n_trials`` trials with the study's seeded sampler (seed + fold)
on its train segments; the best feasible trial (constraints of ``[objective]``; first objective metric) is then
run on the test segments, next to the ``[base]`` config as a benchmark. Segments are evaluated as in
``mmlab hpo`` (:func:`mmlab.hpo.objective.evaluate`: each segment starts flat, summaries combined).

>>> from mmlab.hpo.study import load_study
>>> res = run_walk_forward(load_study("experiments/study_grid_btcusdt.toml"), folds=2, n_trials=10)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from mmlab.errors import ConfigError, DataError
from mmlab.hpo.study import StudyConfig, config_toml


def _feasible(sc: StudyConfig, summary: dict) -> bool:
    from mmlab.hpo.objective import metric

    return all(c.violation(metric(summary, c.metric)) <= 0 for c in sc.constraints)


def run_walk_forward(sc: StudyConfig, folds: int, *, n_trials: int = 20, train: int | None = None, test: int = 1,
                     expanding: bool = False, out: str | os.PathLike | None = None) -> dict:
    """Run ``folds`` walk-forward folds (see the module doc); write ``walkforward.json``, ``walkforward.md`` and
    each fold's ``fold<k>_best.toml`` under ``out``."""
    import optuna

    from mmlab.hpo.objective import evaluate, metric
    from mmlab.hpo.regimes import RegimeThresholds, walk_forward_splits
    from mmlab.hpo.runner import _quiet_optuna, make_sampler
    from mmlab.hpo.segments import load_segments

    if folds < 1:
        raise ConfigError(f"--folds must be >= 1, got {folds}")
    if n_trials < 1:
        raise ConfigError(f"--n-trials must be >= 1, got {n_trials}")
    if test < 1:
        raise ConfigError(f"--test must be >= 1 segment, got {test}")
    _quiet_optuna()
    base = sc.base_config()
    specs, segs = load_segments(base, sc.segment_ns, RegimeThresholds.from_dict(sc.regimes))
    n = len(segs)
    if train is None:
        train = n - folds * test
        if train < 1:
            raise DataError(f"{folds} fold(s) of {test} test segment(s) need at least {folds * test + 1} segments; "
                            f"the data window has {n} (study.split = {sc.split!r}): use fewer --folds or a shorter split")
    splits = walk_forward_splits(n, train=train, test=test, expanding=expanding)[-folds:]
    m0, d0 = sc.metrics[0], sc.directions[0]
    sign = 1.0 if d0 == "maximize" else -1.0
    rows = []
    for k, (tr_idx, te_idx) in enumerate(splits):
        tr, te = [segs[i] for i in tr_idx], [segs[i] for i in te_idx]
        sampler = make_sampler(sc, worker_index=k)
        study = optuna.create_study(direction=d0, sampler=sampler)
        results: dict[int, dict] = {}

        def objective(trial, tr=tr, results=results):
            values = {p.key: p.suggest(trial) for p in sc.params}
            ev = evaluate(sc.trial_config(values), specs, tr)
            v = metric(ev.summary, m0)
            results[trial.number] = {"values": values, "summary": ev.summary, "value": v,
                                     "feasible": _feasible(sc, ev.summary)}
            return v if v is not None else math.nan

        study.optimize(objective, n_trials=n_trials, gc_after_trial=False)
        ok = [(num, r) for num, r in results.items() if r["value"] is not None and r["feasible"]]
        row = {"fold": k, "train": [s.label for s in tr], "test": [s.label for s in te],
               "test_regimes": [s.regime for s in te], "n_trials": len(results), "n_feasible": len(ok)}
        if not ok:
            row.update({"best_params": None, "train_value": None, "test_value": None,
                        "note": "no feasible trial with a defined objective on the train segments"})
        else:
            num, best = max(ok, key=lambda t: (sign * t[1]["value"], -t[0]))
            cfg = sc.trial_config(best["values"])
            ev_test = evaluate(cfg, specs, te)
            ev_base = evaluate(base, specs, te)
            row.update({"best_trial": num, "best_params": best["values"], "train_value": best["value"],
                        "test_value": metric(ev_test.summary, m0), "base_test_value": metric(ev_base.summary, m0),
                        "test_feasible": _feasible(sc, ev_test.summary),
                        "test_summary": {x: metric(ev_test.summary, x) for x in
                                         dict.fromkeys([m0, "pnl_net", "net_bps", "n_fills", "fill_rate", "taker_share"])}})
            row["best_config"] = cfg
        rows.append(row)
    out_dir = Path(out) if out is not None else Path("experiments") / "studies" / f"{sc.name}_walkforward"
    out_dir.mkdir(parents=True, exist_ok=True)
    for row in rows:
        cfg = row.pop("best_config", None)
        if cfg is not None:
            p = out_dir / f"fold{row['fold']}_best.toml"
            p.write_text(config_toml(cfg, f"walk-forward fold {row['fold']} of study {sc.name}: best on train "
                                          f"{row['train']}, tested on {row['test']}"))
            row["best_toml"] = str(p)
    tv = [r["test_value"] for r in rows if r.get("test_value") is not None]
    bv = [r["base_test_value"] for r in rows if r.get("base_test_value") is not None]
    res = {"study": sc.name, "metric": m0, "direction": d0, "segments": n, "train": train, "test": test,
           "expanding": expanding, "folds": rows,
           "test_value_mean": sum(tv) / len(tv) if tv else None, "base_test_value_mean": sum(bv) / len(bv) if bv else None}
    (out_dir / "walkforward.json").write_text(json.dumps(res, indent=2, default=str))
    res["report"] = str(_report(res, out_dir / "walkforward.md"))
    return res


def _f(v) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def _report(res: dict, path: Path) -> Path:
    L = [f"# Walk-forward: {res['study']}", "",
         f"{res['metric']} ({res['direction']}); {res['segments']} segments, train {res['train']}"
         f"{' (expanding)' if res['expanding'] else ''}, test {res['test']}.", "",
         "| fold | train | test | test regimes | trials (feasible) | best params | train | test | base on test |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in res["folds"]:
        params = ", ".join(f"{k}={_f(v)}" for k, v in (r.get("best_params") or {}).items())
        L.append(f"| {r['fold']} | {', '.join(r['train'])} | {', '.join(r['test'])} | {', '.join(r['test_regimes'])} | "
                 f"{r['n_trials']} ({r['n_feasible']}) | {params} | {_f(r.get('train_value'))} | "
                 f"{_f(r.get('test_value'))} | {_f(r.get('base_test_value'))} |")
    L += ["", f"Mean out-of-sample {res['metric']}: {_f(res['test_value_mean'])} (base config: "
          f"{_f(res['base_test_value_mean'])}).", ""]
    path.write_text("\n".join(L))
    return path
