"""``mmlab`` commands of the ml area, registered on the main app by :func:`register` (heavy imports inside commands).

``train``, ``export-onnx``, ``registry list|promote|rollback``, ``release check``, ``drift`` and
``calib aggregate|summary|write-logs``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

DEFAULT_REGISTRY = Path("models") / "registry"
DEFAULT_FEEDS = Path("data") / "calib" / "feeds"
DEFAULT_DATASETS = Path("data") / "calib" / "datasets"

registry_app = typer.Typer(no_args_is_help=True, help="Model registry (models/registry/manifest.json).")
release_app = typer.Typer(no_args_is_help=True, help="Release checks of a registered model.")
calib_app = typer.Typer(no_args_is_help=True, help="Calibration logs (JSONL) and interval datasets.")


def _fail(exc: Exception, code: int = 2) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code)


def _table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    from mmlab.cli import _print_table

    _print_table(rows, columns, title=title)


# --------------------------------------------------------------------------------------------- train/export


def train_cmd(
    labels: List[Path] = typer.Option(..., "--labels", "--data", help="RUN_DIR/labels.parquet of a backtest (repeatable)."),
    target: str = typer.Option("filled_1s", "--target", help="Boolean label column: filled_100ms, filled_1s, filled_5s, ..."),
    out: Path = typer.Option(..., "--out", "--output-dir", help="Model directory, e.g. models/<id> (its name is the model id)."),
    seed: int = typer.Option(0, "--seed", help="LightGBM seed."),
    features: str = typer.Option("tick", "--features", help="Feature set (tick: usable in the backtest loop; order: tick + order features) or comma list."),
    rounds: int = typer.Option(200, "--rounds", help="Boosting rounds (early stopping on the valid split)."),
    embargo_ms: float = typer.Option(0.0, "--embargo-ms", help="Rows within this time after a split boundary are dropped."),
    hold_ratio: float = typer.Option(0.8, "--hold-ratio", help="tau_hold = hold_ratio * tau_entry."),
    min_precision: Optional[float] = typer.Option(None, "--min-precision", help="tau_entry: best F1 among thresholds with at least this precision."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train a LightGBM fill-probability model on backtest labels (writes model.txt, lgbm_meta.json, dataset + sidecar)."""
    from mmlab.errors import MmlabError
    from mmlab.ml.train import train_model

    try:
        meta = train_model([str(p) for p in labels], target=target, out=out, seed=seed, features=features,
                           num_boost_round=rounds, embargo_ms=embargo_ms, hold_ratio=hold_ratio, min_precision=min_precision)
    except MmlabError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return
    rows = [{"split": k, **v} for k, v in meta["metrics"].items()]
    _table(rows, ["split", "rows", "base_rate", "pr_auc", "precision_at_tau", "recall_at_tau", "brier", "ece"],
           title=f"{meta['model_id']}: {meta['target']} ({len(meta['features'])} features, schema {meta['schema_hash']})")
    th = meta["thresholds"]
    typer.echo(f"tau_entry={th['tau_entry']:.6g} tau_hold={th['tau_hold']:.6g} best_iteration={meta['best_iteration']} -> {out}")


def export_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory written by mmlab train."),
    registry: Path = typer.Option(DEFAULT_REGISTRY, "--registry", help="Registry directory to register the model in."),
    no_register: bool = typer.Option(False, "--no-register", help="Do not add the model to the registry."),
    notes: str = typer.Option("", "--notes", help="Registry notes (data regimes covered, ...)."),
    quantile: float = typer.Option(0.99, "--quantile", help="Parity: quantile of |diff| judged."),
    atol_quantile: float = typer.Option(1e-5, "--atol-quantile", help="Parity: largest allowed |diff| at --quantile."),
    mismatch_atol: float = typer.Option(1e-4, "--mismatch-atol", help="Parity: a row mismatches when |diff| exceeds this."),
    max_mismatch_rate: float = typer.Option(0.001, "--max-mismatch-rate", help="Parity: largest allowed share of mismatching rows."),
):
    """Export model.onnx + model.json next to the model, print the parity figures (exit 1 on a parity failure)."""
    from mmlab.errors import MmlabError, ParityError
    from mmlab.ml.export import ParitySpec, export_onnx
    from mmlab.ml.registry import Registry

    spec = ParitySpec(quantile=quantile, atol_quantile=atol_quantile, mismatch_atol=mismatch_atol,
                      max_mismatch_rate=max_mismatch_rate)
    try:
        fig = export_onnx(model_dir, spec=spec, raise_on_fail=False)
    except ParityError as exc:
        _fail(exc, 1)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(f"parity on {fig['rows']} {fig['split']} rows: q{fig['quantile']:g} |diff| = {fig['abs_diff_quantile']:.3g}, "
               f"max |diff| = {fig['abs_diff_max']:.3g}, mismatches (> {fig['mismatch_atol']:g}) = {fig['n_mismatch']} "
               f"({fig['mismatch_rate']:.4%}) -> {'PASS' if fig['passed'] else 'FAIL'}")
    if not fig["passed"]:
        typer.echo(f"error: ONNX parity failed for {model_dir}: {fig['n_mismatch']} of {fig['rows']} rows mismatch; "
                   "model.onnx was not written", err=True)
        raise typer.Exit(1)
    typer.echo(str(Path(model_dir) / "model.onnx"))
    if not no_register:
        try:
            entry = Registry(registry).register(model_dir, notes=notes)
        except MmlabError as exc:
            _fail(exc)
        typer.echo(f"registered {entry['id']} in {Path(registry) / 'manifest.json'}")


# ---------------------------------------------------------------------------------------------- registry


@registry_app.command("list")
def registry_list(
    registry: Path = typer.Option(DEFAULT_REGISTRY, "--registry"),
    as_json: bool = typer.Option(False, "--json"),
):
    """List registered models with their slot, test metrics and thresholds."""
    from mmlab.errors import MmlabError
    from mmlab.ml.registry import Registry

    try:
        reg = Registry(registry)
        rows = reg.rows()
        m = reg.load()
    except MmlabError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps({"active": m["active"], "shadow": m["shadow"], "models": rows}, indent=2))
        return
    _table(rows, ["id", "slot", "created_at", "target", "schema_hash", "pr_auc", "precision", "tau_entry", "tau_hold", "path"],
           title=f"{Path(registry) / 'manifest.json'}: active={m['active']} shadow={m['shadow']}")


@registry_app.command("promote")
def registry_promote(
    model_id: str = typer.Option(..., "--id", help="Registered model id."),
    to: str = typer.Option("active", "--to", help="active or shadow."),
    registry: Path = typer.Option(DEFAULT_REGISTRY, "--registry"),
):
    """Point the active (or shadow) slot at a registered model."""
    from mmlab.errors import MmlabError
    from mmlab.ml.registry import Registry

    try:
        m = Registry(registry).promote(model_id, to=to)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(f"{to} = {model_id} (active={m['active']}, shadow={m['shadow']})")


@registry_app.command("rollback")
def registry_rollback(
    slot: str = typer.Option("active", "--slot", help="active or shadow."),
    registry: Path = typer.Option(DEFAULT_REGISTRY, "--registry"),
):
    """Return a slot to the model it held before its last promotion."""
    from mmlab.errors import MmlabError
    from mmlab.ml.registry import Registry

    try:
        m = Registry(registry).rollback(slot)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(f"{slot} = {m[slot]} (rolled back)")


# ----------------------------------------------------------------------------------------------- release


@release_app.command("check")
def release_check_cmd(
    model_id: str = typer.Argument(..., help="Registered model id (candidate)."),
    registry: Path = typer.Option(DEFAULT_REGISTRY, "--registry"),
    config: Optional[Path] = typer.Option(None, "--config", help="Backtest config of the gate runs (omit to skip the backtest gates)."),
    overrides: List[str] = typer.Option([], "--set", help="Config override for the gate runs (repeatable)."),
    days: List[str] = typer.Option([], "--day", help="UTC day YYYY-MM-DD of a gate run (repeatable; default: the config's range)."),
    min_winrate: float = typer.Option(0.5, "--min-winrate", help="Gate: share of fills with markout_bps_1s > 0."),
    min_markout_bps: float = typer.Option(0.0, "--min-markout-bps", help="Gate: mean markout_bps_1s of the fills."),
    min_fill_rate: float = typer.Option(0.05, "--min-fill-rate", help="Gate: orders with a fill / orders sent."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Release checklist: schema hash, PR-AUC/precision >= active's, ONNX parity, backtest gates. Exit 1 on a failure."""
    from mmlab.errors import MmlabError
    from mmlab.ml.release import ReleaseGates, release_check

    try:
        res = release_check(model_id, registry=registry, config=config, overrides=overrides, days=days,
                            gates=ReleaseGates(min_winrate=min_winrate, min_markout_bps=min_markout_bps, min_fill_rate=min_fill_rate))
    except MmlabError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
    else:
        _table(res["checks"], ["check", "status", "detail"], title=f"release check {model_id}: {'PASS' if res['passed'] else 'FAIL'}")
    if not res["passed"]:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------- drift


def drift_cmd(
    train: List[Path] = typer.Option(..., "--train", help="labels.parquet / run dir of the training window, or a model dir (its dataset.parquet)."),
    new: List[Path] = typer.Option(..., "--new", help="labels.parquet / run dir of the new window (repeatable)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Model directory: its features, and Brier/ECE of its scores on the new window."),
    target: str = typer.Option("filled_1s", "--target", help="Outcome column for Brier/ECE."),
    features: str = typer.Option("tick", "--features", help="Feature set or comma list (ignored with --model)."),
    psi_block: float = typer.Option(0.3, "--psi-block"),
    ks_block: float = typer.Option(0.2, "--ks-block"),
    ece_block: float = typer.Option(0.05, "--ece-block"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the markdown report here (and .json beside it)."),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 1 when any feature drifts."),
    as_json: bool = typer.Option(False, "--json"),
):
    """PSI and KS per feature between a training window and a new window; Brier/ECE of a model's scores."""
    from mmlab.analysis.drift import DriftThresholds, report_markdown
    from mmlab.errors import MmlabError
    from mmlab.ml.drift_data import drift_between

    try:
        rep = drift_between([str(p) for p in train], [str(p) for p in new], model=model, target=target, features=features,
                            thresholds=DriftThresholds(psi_block=psi_block, ks_block=ks_block, ece_block=ece_block))
    except MmlabError as exc:
        _fail(exc)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report_markdown(rep))
        out.with_suffix(".json").write_text(json.dumps(rep, indent=2))
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
    else:
        rows = [{"feature": f, **r} for f, r in rep["features"].items()]
        _table(rows, ["feature", "psi", "ks", "n_train", "n_new", "drift"], title=f"drift: {'YES' if rep['drift'] else 'no'}")
        if rep["calibration"]:
            c = rep["calibration"]
            typer.echo(f"brier_online={c['brier_online']:.5f} ece_online={c['ece_online']:.5f} n={c['n']}")
        if out is not None:
            typer.echo(str(out))
    if fail_on_drift and rep["drift"]:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------------------- calib


@calib_app.command("write-logs")
def calib_write_logs(
    run_dir: Path = typer.Argument(..., help="Backtest run directory."),
    out: Path = typer.Option(DEFAULT_FEEDS, "--out", help="Feeds directory (fills_YYYYMMDD.jsonl, pipeline_ticks_YYYYMMDD.jsonl)."),
    sample_every: int = typer.Option(10, "--sample-every", help="Log every Nth decision tick."),
):
    """Derive the fills and pipeline-tick JSONL logs of a backtest run."""
    from mmlab.calib import write_calibration_logs
    from mmlab.errors import MmlabError

    try:
        counts = write_calibration_logs(run_dir, out, sample_every=sample_every)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(f"{counts['fills']} fill records, {counts['ticks']} tick records -> {out}")


@calib_app.command("aggregate")
def calib_aggregate(
    from_ts: str = typer.Option(..., "--from", help="Start, ISO-8601 UTC (inclusive)."),
    to_ts: str = typer.Option(..., "--to", help="End, ISO-8601 UTC (exclusive)."),
    interval_sec: int = typer.Option(300, "--interval-sec", help="Interval length, s."),
    symbols: List[str] = typer.Option([], "--symbols", help="Symbols: repeatable, comma or quoted space-separated "
                                      "list (--symbols \"BTCUSDT ETHUSDT\"); default: all."),
    feeds: Path = typer.Option(DEFAULT_FEEDS, "--feeds", help="Feeds directory of the JSONL logs."),
    out: Path = typer.Option(DEFAULT_DATASETS, "--out", help="Datasets directory."),
    max_deadline_miss_rate: float = typer.Option(0.05, "--max-deadline-miss-rate"),
    min_ticks: int = typer.Option(10, "--min-ticks", help="Minimum tick records per interval."),
    max_ws_gap_ms: float = typer.Option(1000.0, "--max-ws-gap-ms", help="Drop intervals with a feed gap above this."),
):
    """Aggregate calibration logs into an interval dataset (targets + features) with sanity filters."""
    from mmlab.calib.aggregate import AggregateFilters, aggregate
    from mmlab.errors import MmlabError

    # Options take one value each (click): lists come repeated, comma-separated or quoted with spaces.
    syms = [s for item in symbols for s in item.replace(",", " ").split()]
    try:
        res = aggregate(feeds, from_ts, to_ts, interval_sec=interval_sec, symbols=syms or None, out_dir=out,
                        filters=AggregateFilters(max_deadline_miss_rate=max_deadline_miss_rate, min_ticks=min_ticks,
                                                 max_ws_gap_ms=max_ws_gap_ms))
    except MmlabError as exc:
        _fail(exc)
    f = res["filters"]
    typer.echo(f"intervals: {f['intervals_in']} in, {f['intervals_kept']} kept; dropped: "
               + ", ".join(f"{k}={v}" for k, v in f["dropped"].items()))
    typer.echo(res["path"])


@calib_app.command("summary")
def calib_summary(
    dataset: Optional[Path] = typer.Argument(None, help="calib_*.json dataset (default: the newest in --datasets)."),
    datasets: Path = typer.Option(DEFAULT_DATASETS, "--datasets"),
    out: Optional[Path] = typer.Option(None, "--out", help="Markdown path; default reports/calib_summary_<dataset>.md."),
):
    """Markdown report of an interval dataset: distributions, missing data, intervals by symbol, filters."""
    from mmlab.calib.aggregate import summary_markdown
    from mmlab.errors import MmlabError

    try:
        path = summary_markdown(dataset, datasets_dir=datasets, out=out)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("train")(train_cmd)
    app.command("export-onnx")(export_cmd)
    app.command("drift")(drift_cmd)
    app.add_typer(registry_app, name="registry")
    app.add_typer(release_app, name="release")
    app.add_typer(calib_app, name="calib")
