"""Optuna wiring: storages, seeded samplers, pruners, the trial objective, local jobs and joining workers.

Storage URLs: ``sqlite:///path/study.db`` (the default, under the study folder), ``postgresql://user@host:port/db``
(several machines), or a journal file (``journal:path`` or a path ending in ``.log``/``.journal``; several
processes on one machine or a shared file system). The study definition is stored in the study itself (user
attribute ``mmlab_study``), so ``mmlab hpo worker --study NAME --storage URL`` needs nothing else.

>>> sc = load_study("experiments/study_grid_btcusdt.toml")  # doctest: +SKIP
>>> res = run_study(sc, n_trials=20, out="experiments/studies/grid_btc")  # doctest: +SKIP
>>> res["best_values"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

from mmlab.errors import ConfigError, MmlabError
from mmlab.hpo.study import StudyConfig, load_study, parse_study

STUDY_ATTR = "mmlab_study"
#: Constraint violation stored for an undefined metric (JSON has no infinity).
UNDEFINED_VIOLATION = 1e300


def default_out_dir(name: str) -> Path:
    return Path("experiments") / "studies" / name


def resolve_storage(url: str | None, out_dir: str | os.PathLike | None) -> str:
    """Canonical storage URL: None -> SQLite file ``<out_dir>/study.db``; journal paths -> ``journal:<abs path>``."""
    if url is None or url == "":
        if out_dir is None:
            raise ConfigError("no --storage and no --out: give one so the study has somewhere to live")
        p = Path(out_dir).resolve()
        p.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{p / 'study.db'}"
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith(("sqlite:", "postgresql", "mysql")):
        return url
    if url.startswith("journal:"):
        return "journal:" + str(Path(url[len("journal:"):]).resolve())
    if url.endswith((".log", ".journal", ".jsonl")):
        return "journal:" + str(Path(url).resolve())
    raise ConfigError(f"storage {url!r} is not a storage URL: use sqlite:///path.db, postgresql://user@host:port/db, "
                      "or a journal file (journal:path or a path ending in .log)")


def driver_url(url: str) -> str:
    """``postgresql://`` names SQLAlchemy's default driver; use psycopg2 (the ``postgres`` extra) when psycopg 3
    is not installed."""
    if url.startswith("postgresql://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def open_storage(url: str):
    """An Optuna storage object for a canonical URL (see :func:`resolve_storage`)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    try:
        return optuna.storages.RDBStorage(driver_url(url), engine_kwargs={"pool_pre_ping": True})
    except Exception as exc:  # sqlalchemy raises driver-specific errors
        raise MmlabError(f"cannot open storage {url}: {exc} (is the server running and the database created?)") from exc


def _constraints_func(n: int):
    def f(trial):
        return tuple(trial.user_attrs.get("result", {}).get("constraints", [UNDEFINED_VIOLATION] * n))
    return f


def make_sampler(sc: StudyConfig, worker_index: int = 0):
    """The study's sampler, seeded with ``seed + worker_index`` (worker 0 reproduces a single-process study).

    Constraints reach the samplers through ``Trial.set_constraint`` (Optuna >= 5); older Optuna versions get
    a ``constraints_func`` reading the same values."""
    import optuna

    seed = sc.seed + worker_index
    cf = None
    if sc.constraints and not hasattr(optuna.trial.Trial, "set_constraint"):
        cf = _constraints_func(len(sc.constraints))
    if sc.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sc.sampler == "nsga2":
        kw = {"constraints_func": cf} if cf is not None else {}
        return optuna.samplers.NSGAIISampler(seed=seed, **kw)
    if sc.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    kw = {"constraints_func": cf} if cf is not None else {}
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=sc.n_startup_trials, **kw)


def make_pruner(sc: StudyConfig):
    import optuna

    if sc.pruner == "none" or sc.multi_objective:
        return optuna.pruners.NopPruner()
    if sc.pruner == "percentile":
        return optuna.pruners.PercentilePruner(sc.percentile, n_startup_trials=sc.n_startup_trials)
    if sc.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if sc.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.MedianPruner(n_startup_trials=sc.n_startup_trials)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)


def create_study(sc: StudyConfig, storage_url: str, worker_index: int = 0):
    """Create the study in the storage, or load it when it exists with the same definition."""
    import optuna

    _quiet_optuna()
    storage = open_storage(storage_url)
    study = optuna.create_study(study_name=sc.name, storage=storage, directions=list(sc.directions),
                                sampler=make_sampler(sc, worker_index), pruner=make_pruner(sc), load_if_exists=True)
    stored = study.user_attrs.get(STUDY_ATTR)
    if stored is None:
        study.set_user_attr(STUDY_ATTR, sc.to_dict())
    elif json.dumps(stored, sort_keys=True) != sc.to_json():
        raise ConfigError(f"study {sc.name!r} already exists in {storage_url} with a different definition; "
                          "choose another study.name (or --name) or another storage")
    return study


def load_stored_study(study_name: str, storage_url: str, worker_index: int = 1):
    """``(optuna study, StudyConfig)`` of a study created by ``mmlab hpo`` (the definition comes from storage)."""
    import optuna

    _quiet_optuna()
    storage = open_storage(storage_url)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    except Exception as exc:
        raise MmlabError(f"cannot read studies from {storage_url}: {exc}") from exc
    if study_name not in names:
        raise ConfigError(f"study {study_name!r} is not in {storage_url} (it holds: {', '.join(names) or 'none'}); "
                          "start it with `mmlab hpo --config study.toml --storage URL` first")
    probe = optuna.load_study(study_name=study_name, storage=storage)
    raw = probe.user_attrs.get(STUDY_ATTR)
    if raw is None:
        raise ConfigError(f"study {study_name!r} in {storage_url} was not created by mmlab hpo (no {STUDY_ATTR} attribute)")
    sc = parse_study(raw, origin=f"{storage_url} study {study_name}")
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=make_sampler(sc, worker_index),
                              pruner=make_pruner(sc))
    return study, sc


def make_objective(sc: StudyConfig):
    """The Optuna objective of a study: suggest, run segment by segment (pruning), record metrics as attributes."""
    import optuna

    from mmlab.hpo.objective import check_metrics, evaluate, metric
    from mmlab.hpo.regimes import RegimeThresholds
    from mmlab.hpo.segments import load_segments

    thresholds = RegimeThresholds.from_dict(sc.regimes)
    checked = [False]

    def objective(trial):
        t0 = time.perf_counter()
        values = {p.key: p.suggest(trial) for p in sc.params}
        suggest_s = time.perf_counter() - t0
        try:
            cfg = sc.trial_config(values)
        except ConfigError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        specs, segs = load_segments(cfg, sc.segment_ns, thresholds)

        def on_segment(k: int, combined: dict) -> None:
            if not checked[0]:
                check_metrics(combined, list(sc.metrics) + [c.metric for c in sc.constraints])
                checked[0] = True
            if sc.multi_objective or len(segs) < 2 or sc.pruner == "none":
                return
            v = metric(combined, sc.metrics[0])
            if v is not None:
                trial.report(v, k)
                if k < len(segs) - 1 and trial.should_prune():
                    trial.set_user_attr("pruned_after_segment", segs[k].label)
                    raise optuna.TrialPruned(f"pruned after segment {segs[k].label}")

        ev = evaluate(cfg, specs, segs, on_segment=on_segment)
        return _record_result(trial, sc, ev, t0, suggest_s)

    return objective


def _record_result(trial, sc: StudyConfig, ev, t0: float, suggest_s: float | None = None):
    """Store a trial's evaluation as its ``result`` attribute (summary, segments, regimes, constraints) and
    return its objective value(s). Timings: ``sim_s`` (the segments' backtests), ``suggest_s`` (the sampler's
    suggestions), ``trial_s`` (the whole objective up to this write)."""
    from mmlab.hpo.objective import metric

    summary = ev.summary
    # One attribute write per trial: storage round trips are the main cost beyond the simulation.
    attrs: dict = {
        "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v)},
        "sim_s": ev.sim_s,
        "pid": os.getpid(),
        "segments": [{"label": s.label, "regime": s.regime, "pnl_net": s.summary.get("pnl_net"),
                      "n_fills": s.summary.get("n_fills")} for s in ev.segments],
        "regimes": {},
    }
    for name, rs in ev.regimes.items():
        r = {m: metric(rs, m) for m in dict.fromkeys(list(sc.metrics) + list(sc.regime_metrics))}
        r["n_segments"] = rs.get("n_segments", 1)
        attrs["regimes"][name] = r
    if sc.constraints:
        viol = [min(c.violation(metric(summary, c.metric)), UNDEFINED_VIOLATION) for c in sc.constraints]
        attrs["constraints"] = viol
        if hasattr(trial, "set_constraint"):
            for c, v in zip(sc.constraints, viol):
                trial.set_constraint(str(c), v)
    out = []
    for m in sc.metrics:
        v = metric(summary, m)
        if v is None:
            attrs["error"] = f"metric {m} is undefined for this parameter set (e.g. no fills)"
            v = math.nan
        out.append(v)
    attrs["trial_s"] = time.perf_counter() - t0
    if suggest_s is not None:
        attrs["suggest_s"] = suggest_s
    trial.set_user_attr("result", attrs)
    return out[0] if len(out) == 1 else tuple(out)


def _optimize(study, sc: StudyConfig, n_trials: int, target_total: int | None, batch: int = 1) -> int:
    import optuna
    from optuna.study import MaxTrialsCallback

    if batch > 1:
        return _optimize_batch(study, sc, n_trials, target_total, batch)
    callbacks = [MaxTrialsCallback(target_total, states=None)] if target_total is not None else []
    before = len(study.trials)
    if target_total is not None and before >= target_total:
        return 0
    study.optimize(make_objective(sc), n_trials=n_trials, callbacks=callbacks, catch=(MmlabError,),
                   gc_after_trial=False)
    del optuna
    return len(study.trials) - before


def _optimize_batch(study, sc: StudyConfig, n_trials: int, target_total: int | None, batch: int) -> int:
    """Ask up to ``batch`` trials, evaluate them in one pass per segment (``evaluate_batch``), tell each its
    values (or PRUNED / FAIL); repeat until ``n_trials`` trials were run or the study holds ``target_total``.

    Pruning works per trial as in :func:`make_objective`: after each segment every trial reports its first
    metric, and pruned trials leave the batch's next passes. Trials whose configs cannot share a pass (the
    search varies more than strategy parameters, see ``check_batch_configs``) run one by one."""
    from optuna.trial import TrialState

    from mmlab.hpo.objective import check_metrics, evaluate_batch, metric
    from mmlab.hpo.regimes import RegimeThresholds
    from mmlab.hpo.segments import load_segments
    from mmlab.sim.engine import check_batch_configs

    thresholds = RegimeThresholds.from_dict(sc.regimes)
    checked = [False]
    before = len(study.trials)
    done = 0
    while done < n_trials:
        k = min(batch, n_trials - done)
        if target_total is not None:
            k = min(k, target_total - len(study.trials))
            if k <= 0:
                break
        t0 = time.perf_counter()
        trials, cfgs = [], []
        for _ in range(k):
            trial = study.ask()
            values = {p.key: p.suggest(trial) for p in sc.params}
            try:
                cfgs.append(sc.trial_config(values))
                trials.append(trial)
            except ConfigError as exc:
                trial.set_user_attr("error", str(exc))
                study.tell(trial, state=TrialState.FAIL)
        done += k
        if not trials:
            continue
        try:
            check_batch_configs(cfgs)
            groups = [list(range(len(trials)))]
        except ConfigError:
            groups = [[i] for i in range(len(trials))]
        for group in groups:
            tr = [trials[i] for i in group]
            try:
                specs, segs = load_segments(cfgs[group[0]], sc.segment_ns, thresholds)

                def on_segment(kseg: int, combined: list, tr=tr, segs=segs) -> set:
                    stop = set()
                    for i, c in enumerate(combined):
                        if c is None:
                            continue
                        if not checked[0]:
                            check_metrics(c, list(sc.metrics) + [x.metric for x in sc.constraints])
                            checked[0] = True
                        if sc.multi_objective or len(segs) < 2 or sc.pruner == "none":
                            continue
                        v = metric(c, sc.metrics[0])
                        if v is not None:
                            tr[i].report(v, kseg)
                            if kseg < len(segs) - 1 and tr[i].should_prune():
                                tr[i].set_user_attr("pruned_after_segment", segs[kseg].label)
                                stop.add(i)
                    return stop

                evs = evaluate_batch([cfgs[i] for i in group], specs, segs, on_segment=on_segment)
            except MmlabError as exc:
                for t in tr:
                    t.set_user_attr("error", str(exc))
                    study.tell(t, state=TrialState.FAIL)
                continue
            for t, ev in zip(tr, evs):
                if ev is None:
                    study.tell(t, state=TrialState.PRUNED)
                else:
                    study.tell(t, _record_result(t, sc, ev, t0))
    return len(study.trials) - before


def run_worker(storage_url: str, study_name: str, n_trials: int, *, target_total: int | None = None,
               worker_index: int = 1, batch: int = 1) -> int:
    """Join a stored study and run up to ``n_trials`` trials (stopping once the study holds ``target_total``);
    returns the number of trials this worker added (other workers' included when they ran meanwhile).
    ``batch`` > 1 evaluates that many trials per pass over the events (:func:`_optimize_batch`)."""
    study, sc = load_stored_study(study_name, storage_url, worker_index=worker_index)
    return _optimize(study, sc, n_trials, target_total, batch)


def run_study(sc: StudyConfig, n_trials: int, *, storage: str | None = None, jobs: int = 1,
              out: str | os.PathLike | None = None, export: bool = True, batch: int = 1) -> dict:
    """Run ``n_trials`` more trials of the study with ``jobs`` processes sharing the storage, then export the
    study folder (best.toml, trials.parquet, PNGs, report.md, presets/). Returns a dict of the outcome.

    ``batch`` > 1: each process asks ``batch`` trials at a time and runs them in one pass over the events
    (``mmlab.sim.engine.run_backtest_batch``; the results equal one-by-one runs)."""
    if n_trials < 1:
        raise ConfigError(f"--n-trials must be >= 1, got {n_trials}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    out_dir = Path(out) if out is not None else default_out_dir(sc.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    url = resolve_storage(storage, out_dir)
    t0 = time.perf_counter()
    study = create_study(sc, url, worker_index=0)
    target = len(study.trials) + n_trials
    if jobs == 1:
        _optimize(study, sc, n_trials, target, batch)
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=mp.get_context("spawn")) as pool:
            futs = [pool.submit(run_worker, url, sc.name, n_trials, target_total=target, worker_index=i,
                                batch=batch) for i in range(1, jobs)]
            _optimize(study, sc, n_trials, target, batch)
            for f in futs:
                f.result()
    wall = time.perf_counter() - t0
    result = {"study": sc.name, "storage": url, "out_dir": str(out_dir), "wall_s": wall, "jobs": jobs, "batch": batch}
    if export:
        from mmlab.hpo.export import export_study

        result.update(export_study(study, sc, out_dir))
    return result


__all__ = ["create_study", "load_stored_study", "load_study", "make_objective", "open_storage", "resolve_storage",
           "run_study", "run_worker"]
