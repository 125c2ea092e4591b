"""``mmlab`` commands of the hpo area, registered on the main app by :func:`register` (heavy imports inside commands).

``mmlab hpo`` is both a command (run a study) and a group (``mmlab hpo worker``, ``mmlab hpo export``): the
group's callback runs the study when no subcommand follows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _echo_result(res: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
        return
    for k in ("study", "storage", "out_dir", "n_trials", "states", "best_trial", "best_values", "best_params",
              "best_toml", "report"):
        if k in res:
            typer.echo(f"{k}: {res[k]}")


hpo_app = typer.Typer(invoke_without_command=True, help="Optuna studies over backtests: `mmlab hpo --config study.toml`, "
                      "`mmlab hpo worker --study NAME --storage URL`, `mmlab hpo export`.")


@hpo_app.callback()
def hpo(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", help="Study TOML: [study], [base], [search], [objective], [regimes]."),
    n_trials: int = typer.Option(20, "--n-trials", help="Trials to add to the study (all jobs together)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="sqlite:///x.db, postgresql://..., or a journal file (journal:PATH or *.log); default: SQLite in the study folder."),
    jobs: int = typer.Option(1, "--jobs", help="Worker processes on this machine sharing the storage."),
    batch: int = typer.Option(1, "--batch", help="Trials asked at a time and run in one pass over the events (strategy parameters only)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Study folder; default experiments/studies/<name>."),
    name: Optional[str] = typer.Option(None, "--name", help="Override study.name."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override study.seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
):
    """Run (or continue) a study and write its folder: best.toml, trials.parquet, PNGs, report.md, presets/."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from mmlab.errors import MmlabError
    from mmlab.hpo.runner import run_study
    from mmlab.hpo.study import load_study

    try:
        sc = load_study(config, overrides={"name": name, "seed": seed})
        res = run_study(sc, n_trials, storage=storage, jobs=jobs, out=out, batch=batch)
    except MmlabError as exc:
        _fail(exc)
    _echo_result(res, as_json)


@hpo_app.command("worker")
def hpo_worker(
    study: str = typer.Option(..., "--study", help="Name of a study created by `mmlab hpo`."),
    storage: str = typer.Option(..., "--storage", help="The study's storage URL (PostgreSQL, SQLite or journal file)."),
    n_trials: int = typer.Option(10, "--n-trials", help="Trials this worker runs."),
    worker_index: int = typer.Option(1, "--worker-index", help="Offsets the sampler seed (give each worker its own)."),
    batch: int = typer.Option(1, "--batch", help="Trials asked at a time and run in one pass over the events."),
):
    """Join a running study from this process (or machine) and run trials into its storage."""
    from mmlab.errors import ConfigError, MmlabError
    from mmlab.hpo.runner import resolve_storage, run_worker

    try:
        if batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {batch}")
        n = run_worker(resolve_storage(storage, None), study, n_trials, worker_index=worker_index, batch=batch)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(f"worker added {n} trial(s) to study {study}")


@hpo_app.command("export")
def hpo_export(
    study: str = typer.Option(..., "--study", help="Study name."),
    storage: str = typer.Option(..., "--storage", help="The study's storage URL."),
    out: Optional[Path] = typer.Option(None, "--out", help="Study folder; default experiments/studies/<name>."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Rewrite a study's folder (best.toml, trials.parquet, charts, report, presets) from its storage."""
    from mmlab.errors import MmlabError
    from mmlab.hpo.export import export_study
    from mmlab.hpo.runner import default_out_dir, load_stored_study, resolve_storage

    try:
        st, sc = load_stored_study(study, resolve_storage(storage, None))
        res = export_study(st, sc, out or default_out_dir(sc.name))
    except MmlabError as exc:
        _fail(exc)
    _echo_result(res, as_json)


@hpo_app.command("walk-forward")
def hpo_walk_forward(
    config: Path = typer.Option(..., "--config", help="Study TOML (the same file as `mmlab hpo --config`)."),
    folds: int = typer.Option(3, "--folds", help="Folds (the last K train/test windows of the data)."),
    n_trials: int = typer.Option(20, "--n-trials", help="Trials per fold, on its train segments."),
    train: Optional[int] = typer.Option(None, "--train", help="Train segments per fold (default: all but folds x test)."),
    test: int = typer.Option(1, "--test", help="Test segments per fold."),
    expanding: bool = typer.Option(False, "--expanding", help="Train on every earlier segment."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder; default experiments/studies/<name>_walkforward."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Walk-forward: optimize on each fold's train segments, evaluate the best on the test segments that follow."""
    from mmlab.errors import MmlabError
    from mmlab.hpo.study import load_study
    from mmlab.hpo.walkforward import run_walk_forward

    try:
        res = run_walk_forward(load_study(config), folds, n_trials=n_trials, train=train, test=test,
                               expanding=expanding, out=out)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(json.dumps(res, indent=2, default=str) if as_json else Path(res["report"]).read_text())


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.add_typer(hpo_app, name="hpo")
    _register_more(app)


thresholds_app = typer.Typer(no_args_is_help=True, help="Regime-specific thresholds from sweeps.")


@thresholds_app.command("build")
def thresholds_build(
    study_dir: Path = typer.Option(..., "--study-dir", help="Study folder written by `mmlab hpo` (trials.parquet, study.toml)."),
    params: Optional[str] = typer.Option(None, "--params", help="Comma-separated searched keys (default: all)."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Metric to rank by (default: the study's first objective)."),
    direction: Optional[str] = typer.Option(None, "--direction", help="maximize or minimize (default: the study's)."),
    min_trials: int = typer.Option(1, "--min-trials", help="Feasible trials a regime needs."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output TOML; default <study-dir>/thresholds.toml (+ .json)."),
):
    """Per regime (normal / event / high_vol) the parameters of the best feasible trial of a sweep."""
    from mmlab.errors import MmlabError
    from mmlab.hpo.thresholds import build_thresholds

    try:
        res = build_thresholds(study_dir, params=params.split(",") if params else None, metric=metric,
                               direction=direction, min_trials=min_trials, out=out)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(json.dumps(res, indent=2, default=str))


def ab_cmd(
    config_a: Path = typer.Option(..., "--a", help="Backtest config of bucket A (the reference)."),
    config_b: Path = typer.Option(..., "--b", help="Backtest config of bucket B (the candidate); same [data] as A."),
    split: float = typer.Option(0.5, "--split", help="Fraction of eligible symbols routed to B."),
    salt: str = typer.Option("mmlab-ab", "--salt", help="Routing hash salt."),
    whitelist: Optional[str] = typer.Option(None, "--whitelist", help="Comma-separated symbols that may go to B."),
    blacklist: Optional[str] = typer.Option(None, "--blacklist", help="Comma-separated symbols kept on A."),
    interval_s: float = typer.Option(60.0, "--interval-s", help="Metric interval, s."),
    gate_duration_s: float = typer.Option(600.0, "--gate-duration-s", help="How long a gate condition must hold to trip, s."),
    no_rollback: bool = typer.Option(False, "--no-rollback", help="Report gate trips without rolling back."),
    out: Path = typer.Option(Path("reports/ab"), "--out", help="Output folder (ab.json, ab_report.md)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """A/B of two backtest configs on the same days: routing, per-bucket metrics, safety gates, auto-rollback."""
    from mmlab.analysis.ab import ABConfig, default_gates
    from mmlab.errors import MmlabError
    from mmlab.hpo.abtest import run_ab

    def _list(v):
        return tuple(s for s in (v or "").split(",") if s)

    try:
        ab = ABConfig(split_pct=split, salt=salt, whitelist=_list(whitelist), blacklist=_list(blacklist),
                      interval_s=interval_s, gates=default_gates(gate_duration_s), auto_rollback=not no_rollback)
        res = run_ab(config_a, config_b, ab=ab, out=out)
    except MmlabError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in res.items() if k != "series"}, indent=2, default=str))
    else:
        typer.echo(Path(res["report"]).read_text())


def _csv(v: Optional[str]) -> tuple[str, ...]:
    return tuple(s.strip() for s in (v or "").split(",") if s.strip())


def canary_cmd(
    config: Path = typer.Option(..., "--config", help="Candidate backtest config with its [rollout] section."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Active (baseline) config; default: the candidate itself."),
    segment: str = typer.Option("day", "--segment", help="Replay unit: day | none | <N>min."),
    regimes: str = typer.Option("normal,event,high_vol", "--regimes", help="Regimes to replay (classified from the data)."),
    per_regime: int = typer.Option(1, "--per-regime", help="Segments replayed per regime."),
    parity_fail_at: list[float] = typer.Option([], "--parity-fail-at", help="Inject a parity failure this many s after each segment's start (drill; repeatable)."),
    overrides: list[str] = typer.Option([], "--set", help="section.key=value overrides of both configs."),
    out: Path = typer.Option(Path("reports/canary"), "--out", help="Output folder (canary.json, canary_report.md)."),
    as_json: bool = typer.Option(False, "--json", help="Print totals and gate outcomes as JSON."),
):
    """Replay a canary rollout over normal / event / high-vol segments: routing, guard rails, rollbacks, gates.

    Exit code 1 when a rollback happened or a release gate failed."""
    from mmlab.errors import MmlabError
    from mmlab.hpo.canary import run_canary

    try:
        res = run_canary(config, baseline=baseline, segment=segment, regimes=_csv(regimes), per_regime=per_regime,
                         parity_fail_s=tuple(parity_fail_at), out=out, overrides=tuple(overrides))
    except MmlabError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({"passed": res["passed"], "totals": res["totals"], "report": res["report"],
                               "segments": [{"segment": s["segment"], "regime": s["regime"], "final_mode": s["final_mode"],
                                             "events": s["events"], "gates": s["gates"]} for s in res["segments"]]},
                              indent=2, default=str))
    else:
        typer.echo(Path(res["report"]).read_text())
    if not res["passed"]:
        raise typer.Exit(1)


def simulate_execution_cmd(
    config: Path = typer.Option(..., "--config", help="Backtest config (its [sim] random-latency keys are the base)."),
    seeds: int = typer.Option(20, "--seeds", help="Monte-Carlo seeds per scenario."),
    scenarios: str = typer.Option("base,latency_spike,liquidity_hole,price_jump", "--scenarios", help="Comma-separated scenarios."),
    seed0: int = typer.Option(0, "--seed0", help="First seed."),
    jitter_ms: Optional[float] = typer.Option(None, "--jitter-ms", help="latency_jitter_ms (default: [sim] value, else 5)."),
    shock_prob: float = typer.Option(0.05, "--shock-prob", help="latency_spike: shock probability per request."),
    shock_mult: float = typer.Option(10.0, "--shock-mult", help="latency_spike: latency multiplier in a shock."),
    holes: int = typer.Option(3, "--holes", help="liquidity_hole: holes per run."),
    hole_ms: float = typer.Option(2000.0, "--hole-ms", help="liquidity_hole: length of a hole, ms."),
    hole_frac: float = typer.Option(0.8, "--hole-frac", help="liquidity_hole: share of depth updates emptied in a hole."),
    jumps: int = typer.Option(1, "--jumps", help="price_jump: jumps per run."),
    jump_ticks: int = typer.Option(50, "--jump-ticks", help="price_jump: size of a jump, ticks."),
    overrides: list[str] = typer.Option([], "--set", help="section.key=value overrides."),
    out: Path = typer.Option(Path("reports/execution"), "--out", help="Output folder (execution.json, PNG)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Monte-Carlo execution stress: random latency, latency spikes, liquidity holes, price jumps over N seeds."""
    from mmlab.errors import MmlabError
    from mmlab.hpo.execution import StressSpec, run_execution_stress

    try:
        spec = StressSpec(scenarios=_csv(scenarios), n_seeds=seeds, seed0=seed0, jitter_ms=jitter_ms,
                          shock_prob=shock_prob, shock_mult=shock_mult, n_holes=holes, hole_ms=hole_ms,
                          hole_frac=hole_frac, n_jumps=jumps, jump_ticks=jump_ticks)
        res = run_execution_stress(config, spec, out=out, overrides=tuple(overrides))
    except MmlabError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=2, default=str))
    else:
        for name, d in res["scenarios"].items():
            p, f = d["pnl_net"], d["fill_rate"]
            typer.echo(f"{name:15s} pnl_net p5 {p['p5']:.4g} p50 {p['p50']:.4g} p95 {p['p95']:.4g} | "
                       f"fill_rate p50 {f['p50']:.4g} | n={d['n']}")
        typer.echo(f"report: {res['json']} {res['png']}")


def calibrate_fills_cmd(
    run_dir: Optional[Path] = typer.Argument(None, help="Backtest run directory (orders.parquet, labels.parquet, config.toml)."),
    live_fills: Optional[Path] = typer.Option(None, "--live-fills", help="Live fills.jsonl (orders.jsonl beside it is read too)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Config of the data to re-simulate (default: the run's config.toml)."),
    models: str = typer.Option("", "--models", help="Queue models to try (default: all six)."),
    powers: str = typer.Option("0.5,1,2,3,4", "--powers", help="queue_power values tried for the probability models."),
    horizon_ms: float = typer.Option(1000.0, "--horizon-ms", help="Fill horizon of the likelihood, ms after acceptance."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default <run_dir>/calibration)."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Empirical fill curves and the queue model (and power n) of highest likelihood, written as a sim-section preset (queue_model, queue_power)."""
    from mmlab.errors import MmlabError
    from mmlab.hpo.calibrate import calibrate_fills

    try:
        res = calibrate_fills(run_dir, live_fills=live_fills, config=config, models=_csv(models) or None,
                              powers=tuple(float(p) for p in _csv(powers)), horizon_ms=horizon_ms, out=out)
    except MmlabError as exc:
        _fail(exc)
    except ValueError as exc:
        _fail(ValueError(f"--powers must be comma-separated numbers: {exc}"))
    if as_json:
        typer.echo(json.dumps({k: v for k, v in res.items() if k != "curves"}, indent=2, default=str))
    else:
        for c in res["candidates"]:
            typer.echo(f"{c['queue_model']:12s} n={c['queue_power']:<5g} loglik {c['loglik']:.3f}")
        b = res["best"]
        typer.echo(f"best: queue_model={b['queue_model']} queue_power={b['queue_power']:g} -> {res['preset']}")


validate_app = typer.Typer(no_args_is_help=True, help="Cross-checks: `mmlab validate symbols`, `mmlab validate config X.toml`.")


@validate_app.command("symbols")
def validate_symbols_cmd(
    root: Path = typer.Option(Path("data"), "--root", help="Store root."),
    venue: Optional[str] = typer.Option(None, "--venue"),
    symbol: Optional[str] = typer.Option(None, "--symbol"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Reference table (default mmlab/data/symbols_reference.toml)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Also check this config's [sim] fees against the reference."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Tick size, lot size, contract and fees of the store's _meta.json against the reference table (exit 1 on a mismatch)."""
    from mmlab.errors import MmlabError
    from mmlab.hpo.validate import format_checks, validate_symbols

    try:
        res = validate_symbols(root, venue=venue, symbol=symbol, reference=reference, config=config)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(json.dumps(res, indent=2, default=str) if as_json else format_checks(res))
    if not res["ok"]:
        raise typer.Exit(1)


@validate_app.command("config")
def validate_config_cmd(
    config: Path = typer.Argument(..., help="Backtest config TOML."),
    overrides: list[str] = typer.Option([], "--set", help="section.key=value overrides."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Reference table of symbol facts."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Load a config and cross-check it: data present for the window, fees sane, latencies, sizes (exit 1 on a failure)."""
    from mmlab.hpo.validate import format_checks, validate_config

    res = validate_config(config, overrides=tuple(overrides), reference=reference)
    typer.echo(json.dumps(res, indent=2, default=str) if as_json else format_checks(res))
    if not res["ok"]:
        raise typer.Exit(1)


def _register_more(app: typer.Typer) -> None:
    app.add_typer(thresholds_app, name="thresholds")
    app.command("ab")(ab_cmd)
    app.command("canary")(canary_cmd)
    app.command("simulate-execution")(simulate_execution_cmd)
    app.command("calibrate-fills")(calibrate_fills_cmd)
    app.add_typer(validate_app, name="validate")
