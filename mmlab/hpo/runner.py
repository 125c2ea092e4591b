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
import sys
import time
from pathlib import Path

from mmlab.errors import ConfigError, MmlabError
from mmlab.hpo.study import StudyConfig, load_study, parse_study

STUDY_ATTR = "mmlab_study"
#: Constraint violation stored for an undefined metric (JSON has no infinity).
UNDEFINED_VIOLATION = 1e300
#: Thread switch interval (s) while the sampler works ahead in a background thread (see :func:`_optimize_ahead`).
ASK_AHEAD_SWITCH_S = 0.0005


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


#: A journal file is flushed to the OS at every write (other processes read it at once; a crash of the process
#: loses nothing) but synced to disk at most this often (s): an OS crash or power loss loses at most the
#: writes of the last interval. Optuna's own backend syncs every write (~1 ms each, several per trial).
JOURNAL_FSYNC_S = 1.0


def _journal_backend(path: str):
    """Optuna's journal file backend, syncing to disk at most every :data:`JOURNAL_FSYNC_S` (see there)."""
    from optuna.storages.journal import JournalFileBackend

    try:
        from optuna.storages.journal._file import get_lock_file
    except ImportError:  # an Optuna whose internals differ: its own backend (syncs every write)
        return JournalFileBackend(path)

    class _Backend(JournalFileBackend):
        _last_sync = 0.0

        def append_logs(self, logs: list) -> None:
            text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
            with get_lock_file(self._lock), open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                now = time.monotonic()
                if now - self._last_sync >= JOURNAL_FSYNC_S:
                    os.fsync(f.fileno())
                    self._last_sync = now

    backend = _Backend(path)
    if not (hasattr(backend, "_lock") and hasattr(backend, "_file_path")):
        return JournalFileBackend(path)  # (the same fallback for other internals)
    return backend


def open_storage(url: str):
    """An Optuna storage object for a canonical URL (see :func:`resolve_storage`)."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalStorage

        path = Path(url[len("journal:"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(_journal_backend(str(path)))
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


def _definition(d: dict) -> str:
    """A stored study definition as compared on joining: without ``study.ask_ahead``, which decides only how
    one process orders its asks and tells (a definition stored with or without the key matches either)."""
    d = {**d, "study": {k: v for k, v in d.get("study", {}).items() if k != "ask_ahead"}}
    return json.dumps(d, sort_keys=True)


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
    elif _definition(stored) != _definition(sc.to_dict()):
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


class _StudyRun:
    """What a process's trial loop computes once per study instead of once per trial: the regime thresholds,
    the metric names checked against the first summary, whether segments are reported to the pruner, and the
    loaded segments (kept while trial configs share the base config's ``[data]`` section object, as
    ``StudyConfig.trial_config`` gives them unless a ``data.*`` key is searched)."""

    def __init__(self, sc: StudyConfig) -> None:
        from mmlab.hpo.regimes import RegimeThresholds

        self.sc = sc
        self.thresholds = RegimeThresholds.from_dict(sc.regimes)
        self.check_names = list(sc.metrics) + [c.metric for c in sc.constraints]
        self.checked = False  # the metric names were checked against a trial's summary
        self.reports = not (sc.multi_objective or sc.pruner == "none")
        self._data = None
        self._loaded: tuple | None = None

    def segments(self, cfg) -> tuple[list, list]:
        """``(symbol specs, segments)`` of ``cfg``'s data window (``mmlab.hpo.segments.load_segments``)."""
        if self._loaded is None or cfg.data is not self._data:
            from mmlab.hpo.segments import load_segments

            self._loaded = load_segments(cfg, self.sc.segment_ns, self.thresholds)
            self._data = cfg.data
        return self._loaded

    def needs_reports(self, segs: list) -> bool:
        """Whether a trial's segments must be combined and reported one by one (else only the final summary)."""
        return not self.checked or (self.reports and len(segs) > 1)


def _report_segment(run: _StudyRun, trial, k: int, combined: dict, segs: list, before_prune=None) -> bool:
    """After segment ``k`` of a trial: check the study's metrics once (against the first summary), report the
    first objective to the pruner and return True when the trial should stop there (its
    ``pruned_after_segment`` attribute is then set). ``before_prune()`` is called before each report (the
    ask-ahead loop waits there until the previous trial is told, so the pruner sees the same trials whatever
    the timing). Used for single trials (:func:`_evaluate_trial`) and batches (:func:`_optimize_batch`)."""
    from mmlab.hpo.objective import check_metrics, metric

    if not run.checked:
        check_metrics(combined, run.check_names)
        run.checked = True
    if not run.reports or len(segs) < 2:
        return False
    v = metric(combined, run.sc.metrics[0])
    if v is None:
        return False
    if before_prune is not None:
        before_prune()
    trial.report(v, k)
    if k < len(segs) - 1 and trial.should_prune():
        trial.set_user_attr("pruned_after_segment", segs[k].label)
        return True
    return False


def _evaluate_trial(trial, run: _StudyRun, cfg, before_prune=None, defer: bool = False):
    """Run one trial's config segment by segment (:func:`mmlab.hpo.objective.evaluate`), reporting after each
    segment (:func:`_report_segment`); raises ``optuna.TrialPruned`` when the pruner stops the trial.
    ``defer``: return a function building the ``Evaluation`` (the final combining), for another thread."""
    import functools

    import optuna

    from mmlab.hpo.objective import build_evaluation, run_segments

    specs, segs = run.segments(cfg)

    def on_segment(k: int, combined: dict) -> None:
        if _report_segment(run, trial, k, combined, segs, before_prune):
            raise optuna.TrialPruned(f"pruned after segment {segs[k].label}")

    out = run_segments(cfg, specs, segs, on_segment=on_segment if run.needs_reports(segs) else None)
    return functools.partial(build_evaluation, *out) if defer else build_evaluation(*out)


def make_objective(sc: StudyConfig):
    """The Optuna objective of a study (for ``study.optimize``): suggest, run segment by segment (pruning),
    record metrics as attributes. :func:`run_study` runs the same steps in its own loops."""
    run = _StudyRun(sc)

    def objective(trial):
        t0 = time.perf_counter()
        values = {p.key: p.suggest(trial) for p in sc.params}
        suggest_s = time.perf_counter() - t0
        try:
            cfg = sc.trial_config(values)
        except ConfigError as exc:
            trial.set_user_attr("error", str(exc))
            raise
        ev = _evaluate_trial(trial, run, cfg)
        return _record_result(trial, sc, ev, t0, suggest_s)

    return objective


def _record_result(trial, sc: StudyConfig, ev, t0: float, suggest_s: float | None = None,
                   trial_s: float | None = None, wait_s: float | None = None):
    """Store a trial's evaluation as its ``result`` attribute (summary, segments, regimes, constraints) and
    return its objective value(s). Timings: ``sim_s`` (the segments' backtests), ``suggest_s`` (the sampler's
    suggestions), ``trial_s`` (the whole objective up to this write, or the given value), ``wait_s`` (ask-ahead
    loop: time the run waited for this trial's suggestions)."""
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
    attrs["trial_s"] = time.perf_counter() - t0 if trial_s is None else trial_s
    if suggest_s is not None:
        attrs["suggest_s"] = suggest_s
    if wait_s is not None:
        attrs["wait_s"] = wait_s
    trial.set_user_attr("result", attrs)
    return out[0] if len(out) == 1 else tuple(out)


def _n_trials(study) -> int:
    """Trials in the study, running ones included (no copies of the trials)."""
    return len(study.get_trials(deepcopy=False))


def _optimize(study, sc: StudyConfig, n_trials: int, target_total: int | None, batch: int = 1) -> int:
    """Run up to ``n_trials`` trials, stopping once the study holds ``target_total``; returns how many the study
    gained meanwhile. ``batch`` > 1: :func:`_optimize_batch`; ``sc.ask_ahead`` (the default):
    :func:`_optimize_ahead`; else :func:`_optimize_serial`."""
    if batch > 1:
        return _optimize_batch(study, sc, n_trials, target_total, batch)
    if sc.ask_ahead:
        return _optimize_ahead(study, sc, n_trials, target_total)
    return _optimize_serial(study, sc, n_trials, target_total)


def _optimize_serial(study, sc: StudyConfig, n_trials: int, target_total: int | None) -> int:
    """Ask, run, tell one trial at a time: the trials of Optuna's ``study.optimize(make_objective(sc))`` (the
    sampler sees the same finished trials in the same order), without its per-trial callback copies. A trial
    whose config or run raises an ``MmlabError`` is told FAIL with an ``error`` attribute and the loop goes on;
    another error tells the trial FAIL and is raised."""
    import optuna
    from optuna.trial import TrialState

    run = _StudyRun(sc)
    log = logging.getLogger(__name__)
    before = _n_trials(study)
    for _ in range(n_trials):
        if target_total is not None and _n_trials(study) >= target_total:
            break
        trial = study.ask()
        t0 = time.perf_counter()
        try:
            values = {p.key: p.suggest(trial) for p in sc.params}
            suggest_s = time.perf_counter() - t0
            cfg = sc.trial_config(values)
            ev = _evaluate_trial(trial, run, cfg)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except MmlabError as exc:
            trial.set_user_attr("error", str(exc))
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, exc)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, _record_result(trial, sc, ev, t0, suggest_s))
    return _n_trials(study) - before


class _StepGate:
    """When the ask-ahead loop's background thread may run a step (an ask, a suggestion, a result write, a tell):
    only while it is open, i.e. while the study's thread is inside the compiled loop (which releases the GIL;
    ``mmlab.sim.engine.LOOP_GATE``) or waits for a background result. Closing it (the loop returned) waits
    for the step in progress to finish: the study's thread sleeps (GIL released) instead of trading the GIL
    with the background thread step after step, which on a machine without a free core costs a scheduler
    time slice per exchange."""

    def __init__(self) -> None:
        import threading

        self._cond = threading.Condition()
        self._open = False
        self._busy = False

    def set(self) -> None:
        """Open (study thread: entering the compiled loop, or waiting for a background result)."""
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Close, after the background step in progress (if any) finished (study thread)."""
        with self._cond:
            self._open = False
            while self._busy:
                self._cond.wait()

    def step(self, fn, *args):
        """Run ``fn(*args)`` once the gate is open (background thread)."""
        with self._cond:
            while not self._open:
                self._cond.wait()
            self._busy = True
        try:
            return fn(*args)
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


def _optimize_ahead(study, sc: StudyConfig, n_trials: int, target_total: int | None) -> int:
    """Run up to ``n_trials`` trials (stopping once the study holds ``target_total``) with the sampler working
    ahead: while trial n's backtests run here (the compiled loop releases the GIL), one background thread
    stores trial n-1's result and asks trial n+1.

    The background thread does all of the study's sampling and result writes, strictly in this order::

        ask 0, ask 1, tell 0, ask 2, tell 1, ask 3, tell 2, ...

    so ask n (the sampler drawing trial n's parameters, and building its config) always sees trials 0..n-2
    finished and trial n-1 running, whatever the timing: a seeded study gives the same trials run after run
    (not the trials of ``ask_ahead = false``, where ask n sees trial n-1 finished too). A trial's pruning
    reports wait until the previous trial is told, so the pruner also sees the same finished trials. A trial
    is asked only while this process has run fewer than ``n_trials`` and the study holds fewer than
    ``target_total`` (running ones included), so no asked trial is left unrun when the loop ends normally;
    after an error the trial asked ahead is told FAIL (``error`` attribute) and the error is raised.

    The background thread does its work in short steps (the trial count, the ask, each suggestion, the
    config, the result attribute, the tell), each started only while this thread is inside the compiled loop,
    which releases the GIL (``mmlab.sim.engine.LOOP_GATE``), or waits for a background result; leaving the
    loop, this thread sleeps until the step in progress ends (:class:`_StepGate`). The sampler then takes no
    CPU time from the trial's Python work, and on a free core costs no wall time at all; on a machine whose
    cores are all busy it competes for them (``ask_ahead = false`` is then as fast or faster). While the
    loop runs, the interpreter's thread switch interval is lowered to :data:`ASK_AHEAD_SWITCH_S` (restored
    after): a trial leaving the compiled loop gets the GIL back from a running step after at most that long
    instead of Python's default 5 ms."""
    from concurrent.futures import ThreadPoolExecutor

    import optuna
    from optuna.trial import TrialState

    from mmlab.sim import engine

    run = _StudyRun(sc)
    log = logging.getLogger(__name__)
    before = _n_trials(study)
    if target_total is not None and before >= target_total:
        return 0

    gate = _StepGate()

    def wait_for(fut):
        """This thread waits for a background result: let the background thread run meanwhile."""
        if not fut.done():
            gate.set()
        try:
            return fut.result()
        finally:
            gate.clear()

    def timed(fn, *args):
        t = time.perf_counter()
        return fn(*args), time.perf_counter() - t

    # Each piece of background work runs as short steps through the gate (see _StepGate).
    def ask():
        if target_total is not None and gate.step(_n_trials, study) >= target_total:
            return None
        trial, suggest_s = gate.step(timed, study.ask)
        values = {}
        for p in sc.params:
            values[p.key], dt = gate.step(timed, p.suggest, trial)
            suggest_s += dt
        try:
            return trial, gate.step(sc.trial_config, values), None, suggest_s
        except ConfigError as exc:
            return trial, None, exc, suggest_s

    def tell(trial, ev, exc, t0: float, suggest_s: float, trial_s: float, wait_s: float) -> None:
        if exc is None:
            if callable(ev):  # the trial's final combining, left to this thread
                ev = gate.step(ev)
            values = gate.step(_record_result, trial, sc, ev, t0, suggest_s, trial_s, wait_s)
            gate.step(study.tell, trial, values)
        elif isinstance(exc, optuna.TrialPruned):
            gate.step(study.tell, trial, None, TrialState.PRUNED)
        else:
            gate.step(trial.set_user_attr, "error", str(exc))
            gate.step(study.tell, trial, None, TrialState.FAIL)
            if isinstance(exc, MmlabError):
                log.warning("trial %d failed: %s", trial.number, exc)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmlab-hpo-ask")
    switch_s = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_s, ASK_AHEAD_SWITCH_S))
    prev_gate = engine.LOOP_GATE
    engine.LOOP_GATE = gate
    asked = 0
    nxt = pool.submit(ask)
    asked += 1
    told = None
    tells: list = []  # tells not yet checked (a failed write raises here, in order)
    try:
        while nxt is not None:
            while tells and tells[0].done():
                tells.pop(0).result()
            t_wait = time.perf_counter()
            item = wait_for(nxt)
            if item is None:
                break
            trial, cfg, exc, suggest_s = item
            nxt = None
            if asked < n_trials:
                nxt = pool.submit(ask)
                asked += 1
            t0 = time.perf_counter()
            wait_s = t0 - t_wait
            ev = None
            if exc is None:
                prev = told
                try:
                    ev = _evaluate_trial(trial, run, cfg,
                                         before_prune=None if prev is None else (lambda f=prev: wait_for(f)),
                                         defer=True)
                except (optuna.TrialPruned, MmlabError) as e:
                    exc = e
                except BaseException as e:
                    told = pool.submit(tell, trial, None, e, t0, suggest_s, 0.0, wait_s)
                    raise
            told = pool.submit(tell, trial, ev, exc, t0, suggest_s, time.perf_counter() - t0, wait_s)
            tells.append(told)
        gate.set()
        for f in tells:
            f.result()
    except BaseException:
        gate.set()
        if nxt is not None:
            item = nxt.result()
            if item is not None:
                pool.submit(tell, item[0], None, MmlabError("not run: the study stopped on an error"), 0.0,
                            item[3], 0.0, 0.0).result()
        raise
    finally:
        gate.set()
        pool.shutdown(wait=True)
        engine.LOOP_GATE = prev_gate
        sys.setswitchinterval(switch_s)
    return _n_trials(study) - before


def _optimize_batch(study, sc: StudyConfig, n_trials: int, target_total: int | None, batch: int) -> int:
    """Ask up to ``batch`` trials, evaluate them in one pass per segment (``evaluate_batch``), tell each its
    values (or PRUNED / FAIL); repeat until ``n_trials`` trials were run or the study holds ``target_total``.

    Pruning works per trial as one by one (:func:`_report_segment`): after each segment every trial reports its
    first metric, and pruned trials leave the batch's next passes. Trials whose configs cannot share a pass (the
    search varies more than strategy parameters, see ``check_batch_configs``) run one by one."""
    from optuna.trial import TrialState

    from mmlab.hpo.objective import evaluate_batch
    from mmlab.sim.engine import check_batch_configs

    run = _StudyRun(sc)
    before = _n_trials(study)
    done = 0
    while done < n_trials:
        k = min(batch, n_trials - done)
        if target_total is not None:
            k = min(k, target_total - _n_trials(study))
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
                specs, segs = run.segments(cfgs[group[0]])

                def on_segment(kseg: int, combined: list, tr=tr, segs=segs) -> set:
                    return {i for i, c in enumerate(combined)
                            if c is not None and _report_segment(run, tr[i], kseg, c, segs)}

                evs = evaluate_batch([cfgs[i] for i in group], specs, segs,
                                     on_segment=on_segment if run.needs_reports(segs) else None)
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
    return _n_trials(study) - before


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
    target = _n_trials(study) + n_trials
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
