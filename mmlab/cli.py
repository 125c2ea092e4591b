"""The ``mmlab`` command line. Each command parses its options, calls one library function and prints.

Imports of heavy modules happen inside the commands so that ``mmlab --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="mmlab: backtest-first research framework for crypto market making.")
data_app = typer.Typer(no_args_is_help=True, help="Market data: ingest, verify, list, download, synthesize.")
app.add_typer(data_app, name="data")

DEFAULT_ROOT = "data"


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


def _print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[_fmt(r.get(c)) for c in columns])
    Console(width=200).print(table)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict):
        return " ".join(f"{k}={val}" for k, val in v.items())
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return "" if v is None else str(v)


# ------------------------------------------------------------------------------------------------------- data


@data_app.command("ingest")
def data_ingest(
    src: List[Path] = typer.Argument(..., help="Raw capture files (several files of one recording ingest as one stream)."),
    source: str = typer.Option("auto", "--source", help="Venue (binance-usdm, binance-coinm, binance-spot, bybit-linear, bybit-spot) or format (bybit = every Bybit venue in the file, bybit-dump, tardis, binance-csv, hftbacktest-npz); auto-detected when unambiguous."),
    out: Path = typer.Option(Path(DEFAULT_ROOT), "--out", help="Store root."),
    symbol: Optional[str] = typer.Option(None, "--symbol", help="Keep only this symbol (and name single-symbol sources)."),
    tick_size: Optional[float] = typer.Option(None, "--tick-size", help="Override the tick size."),
    lot_size: Optional[float] = typer.Option(None, "--lot-size", help="Override the lot size."),
    contract: Optional[str] = typer.Option(None, "--contract", help="linear or inverse."),
    contract_size: Optional[float] = typer.Option(None, "--contract-size"),
    local_ts_unit: Optional[str] = typer.Option(None, "--local-ts-unit", help="ns|us|ms|s; default: detected from magnitude."),
    no_clock_correction: bool = typer.Option(False, "--no-clock-correction", help="Keep raw local times even when they precede exchange times."),
    feed_latency_ms: Optional[float] = typer.Option(None, "--feed-latency-ms", help="Declared feed latency for sources without local time."),
    venue: Optional[str] = typer.Option(None, "--venue", help="Venue name to store under (format sources)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace days another set of files wrote."),
    allow_truncated: bool = typer.Option(False, "--allow-truncated", help="Ingest the readable lines of a truncated gzip."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Convert raw venue captures into the normalized parquet store."""
    from dataclasses import asdict

    from mmlab.data.ingest import IngestOptions, ingest
    from mmlab.errors import MmlabError

    if local_ts_unit and local_ts_unit not in ("ns", "us", "ms", "s"):
        _fail(ValueError(f"--local-ts-unit must be one of ns, us, ms, s; got {local_ts_unit!r}"))
    opts = IngestOptions(
        symbol=symbol, tick_size=tick_size, lot_size=lot_size, contract=contract, contract_size=contract_size,
        local_ts_unit=local_ts_unit, clock_correction=not no_clock_correction, feed_latency_ms=feed_latency_ms,
        overwrite=overwrite, venue=venue, allow_truncated=allow_truncated,
    )
    try:
        results = ingest(src, None if source == "auto" else source, out, opts)
    except MmlabError as exc:
        _fail(exc)
    rows = [asdict(r) for r in results]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["venue", "symbol", "rows_in", "rows_written", "rows_quarantined", "gaps", "days", "clock_offset_ns", "tick_size", "lot_size"], title=f"ingested into {out}")


@data_app.command("verify")
def data_verify(
    root: Path = typer.Argument(Path(DEFAULT_ROOT)),
    venue: Optional[str] = typer.Option(None, "--venue"),
    symbol: Optional[str] = typer.Option(None, "--symbol"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Replay each stream through the book: gaps, crossed books, timestamps, bad values, BBO agreement."""
    from mmlab.data.verify import verify
    from mmlab.errors import MmlabError

    try:
        report = verify(root, venue=venue, symbol=symbol)
    except MmlabError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_table(report["streams"], ["venue", "symbol", "ok", "events", "sequence_gaps", "crossed_books", "ts_non_monotonic", "bad_values", "bbo_checked", "bbo_agreement", "problems"], title=f"verify {root}")
    if not report["ok"]:
        raise typer.Exit(1)


@data_app.command("ls")
def data_ls(root: Path = typer.Argument(Path(DEFAULT_ROOT)), as_json: bool = typer.Option(False, "--json")):
    """List venues, symbols, dates, rows by kind, time span and size."""
    from mmlab.data.catalog import list_store

    rows = list_store(root)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["venue", "symbol", "days", "rows", "rows_by_kind", "start", "end", "size_mb"], title=f"store {root}")


@data_app.command("scan-gaps")
def data_scan_gaps(
    root: Path = typer.Argument(Path(DEFAULT_ROOT)),
    venue: Optional[str] = typer.Option(None, "--venue"),
    symbol: Optional[str] = typer.Option(None, "--symbol"),
    silence_s: float = typer.Option(60.0, "--silence-s", help="Report intra-day silences longer than this."),
    as_json: bool = typer.Option(False, "--json"),
):
    """Missing days and intra-day silences longer than a threshold."""
    from mmlab.data.catalog import scan_gaps

    rows = scan_gaps(root, venue=venue, symbol=symbol, silence_s=silence_s)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, ["venue", "symbol", "kind", "start", "end", "duration_s"], title=f"gaps in {root}")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(Path(DEFAULT_ROOT), "--out"),
    like: Optional[Path] = typer.Option(None, "--like", help="ROOT/venue/SYMBOL to fit the statistics from."),
    hours: float = typer.Option(1.0, "--hours"),
    seed: int = typer.Option(7, "--seed"),
    symbol: str = typer.Option("SYNTHUSDT", "--symbol"),
    date: str = typer.Option("2024-01-01", "--date", help="UTC start date of the synthetic day."),
):
    """Generate a seeded synthetic market with the statistics of a real one."""
    from mmlab.data.synth import synth
    from mmlab.errors import MmlabError

    try:
        result = synth(out, like=like, hours=hours, seed=seed, symbol=symbol, date=date)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(json.dumps(result, indent=2))


@data_app.command("download")
def data_download(
    source: str = typer.Argument(..., help="tardis or bybit"),
    symbol: str = typer.Option(..., "--symbol"),
    start: str = typer.Option(..., "--from", help="First UTC day, YYYY-MM-DD."),
    end: Optional[str] = typer.Option(None, "--to", help="Last UTC day (inclusive); default: --from."),
    exchange: str = typer.Option("binance-futures", "--exchange", help="Tardis exchange id."),
    data_types: str = typer.Option("incremental_book_L2,trades", "--data-types", help="Tardis data types, comma separated."),
    category: str = typer.Option("linear", "--category", help="Bybit category: linear or spot."),
    out: Path = typer.Option(Path("data/raw"), "--out"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="Override the dataset host (mirrors, tests)."),
    retries: int = typer.Option(5, "--retries"),
):
    """Download historical days (Tardis.dev datasets, Bybit daily orderbook dumps) with resume and checksums."""
    from mmlab.data.download import download
    from mmlab.errors import MmlabError

    try:
        files = download(source, symbol=symbol, start=start, end=end, exchange=exchange, data_types=data_types.split(","),
                         category=category, out_dir=out, base_url=base_url, retries=retries)
    except MmlabError as exc:
        _fail(exc)
    for f in files:
        typer.echo(str(f))


# ---------------------------------------------------------------------------------------------------- top level


@app.command("quickstart")
def quickstart(
    root: Path = typer.Option(Path(DEFAULT_ROOT), "--root"),
    hours: float = typer.Option(1.0, "--hours"),
    seed: int = typer.Option(7, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory; default experiments/runs/<run_id>."),
):
    """The main job on the embedded default: synthesize the default day if absent, verify it, backtest it, report."""
    _ensure_default_data(root, hours=hours, seed=seed)
    data_ls(root=root, as_json=False)
    data_verify(root=root, venue=None, symbol=None, as_json=False)
    backtest(config=None, out=out, data=root, venue=None, symbols=[], start=None, end=None, strategy=None, overrides=[],
             jobs=None, executor="process", scheduler=None, quiet=False, as_json=False, make_report=True)


DEFAULT_SYMBOL = "SYNTHUSDT"


def _ensure_default_data(root: Path, *, hours: float = 1.0, seed: int = 7) -> None:
    """Generate the seeded synthetic default day (SYNTHUSDT) when the root does not hold it yet."""
    from mmlab.data import store
    from mmlab.data.synth import synth

    if not any(s == DEFAULT_SYMBOL for _, s in store.list_symbols(root)):
        typer.echo(f"generating the synthetic default day into {root} (seed {seed}, {hours} h)", err=True)
        synth(root, like=None, hours=hours, seed=seed, symbol=DEFAULT_SYMBOL, date="2024-01-01")


def backtest_overrides(data: Optional[Path] = None, venue: Optional[str] = None, symbols: Optional[List[str]] = None,
                       start: Optional[str] = None, end: Optional[str] = None, strategy: Optional[str] = None,
                       overrides: Optional[List[str]] = None) -> list[str]:
    """``--set`` items of the backtest flags, flags first and the user's ``--set`` items last (they win)."""
    items = []
    if data is not None:
        items.append(f"data.root={json.dumps(str(data))}")
    if venue:
        items.append(f"data.venue={json.dumps(venue)}")
    names = [s.strip() for item in (symbols or []) for s in item.split(",") if s.strip()]
    if names:
        items.append(f"data.symbols={json.dumps(names)}")
    if start:
        items.append(f"data.start={json.dumps(start)}")
    if end:
        items.append(f"data.end={json.dumps(end)}")
    if strategy:
        items.append(f"strategy.name={json.dumps(strategy)}")
    return items + list(overrides or [])


@app.command("backtest")
def backtest(
    config: Optional[Path] = typer.Option(None, "--config", help="Backtest config (TOML); default: the built-in defaults (synthetic SYNTHUSDT day)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory; default: output.dir of the config, else experiments/runs/<run_id>."),
    data: Optional[Path] = typer.Option(None, "--data", help="Store root (data.root)."),
    venue: Optional[str] = typer.Option(None, "--venue", help="Venue (data.venue), e.g. binance-usdm."),
    symbols: List[str] = typer.Option([], "--symbol", help="Symbol (data.symbols); repeatable or a comma list."),
    start: Optional[str] = typer.Option(None, "--start", help="First local time, ISO-8601 UTC (data.start), e.g. 2024-07-19T00:00:00Z."),
    end: Optional[str] = typer.Option(None, "--end", help="End of local time, exclusive, ISO-8601 UTC (data.end)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="Strategy name (strategy.name)."),
    overrides: List[str] = typer.Option([], "--set", help="Override a config value: section.key=value (repeatable; applied after the flags)."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Run each (symbol, day) as an independent backtest, N at once, merged into one run directory; default: one continuous run."),
    executor: str = typer.Option("process", "--executor", help="Where --jobs parts run: process (local processes) or dask."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address for --executor dask, e.g. tcp://host:8786."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display (it is also off when stderr is not a terminal)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    make_report: bool = typer.Option(True, "--report/--no-report", help="Build report.html + PNGs in the run directory."),
):
    """Run the event simulator on the configured data and write the run directory (and its report).

    Flags override the config file; --set items are applied last.
    """
    import sys

    from mmlab.config import load_config
    from mmlab.errors import ConfigError, MmlabError

    try:
        cfg = load_config(config, overrides=backtest_overrides(data, venue, symbols, start, end, strategy, overrides))
        if cfg.data.symbols == (DEFAULT_SYMBOL,) and cfg.data.venue == "binance-usdm":
            _ensure_default_data(Path(cfg.data.root))
        if executor not in ("process", "dask"):
            raise ConfigError(f"--executor must be process or dask, got {executor!r}")
        show = not quiet and sys.stderr.isatty()
        if jobs is not None or executor == "dask":
            from mmlab.sim.parallel import RichProgress, run_parts

            res = run_parts(cfg, jobs=jobs, executor=executor, scheduler=scheduler, out_dir=out,
                            progress=RichProgress() if show else None)
            summary, run_dir = res.summary, res.run_dir
        else:
            summary, run_dir = _single_run(cfg, out, show)
        report_path = None
        if make_report:
            from mmlab.analysis.report import build_report

            report_path = build_report(run_dir)
    except MmlabError as exc:
        _fail(exc)
    hidden = ("per_symbol", "per_day", "parts", "definitions", "stage_latency_ns")
    report_file = str(report_path) if report_path else None
    if as_json:
        shown = {k: v for k, v in summary.items() if k not in ("per_symbol", "definitions")}
        typer.echo(json.dumps({"run_dir": str(run_dir), "report": report_file, **shown}, indent=2))
        return
    if summary.get("parts"):
        _print_table(summary["parts"], ["symbol", "day", "events", "n_orders", "n_fills", "fees", "pnl_net",
                                        "position_final", "wall_s"], title="parts")
    _print_table([{"key": k, "value": v} for k, v in summary.items() if k not in hidden], ["key", "value"],
                 title=f"backtest -> {run_dir}")
    if report_file:
        typer.echo(f"report: {report_file}")


def _single_run(cfg, out: Optional[Path], show: bool) -> tuple[dict, Path]:
    """One continuous backtest of the whole configured range (state carried across days)."""
    from mmlab.errors import MmlabError
    from mmlab.sim.engine import run_backtest, write_run
    from mmlab.sim.parallel import Part, RichProgress, plan_parts

    sink = None
    if show:
        try:
            est = sum(p.events_est for p in plan_parts(cfg))
        except MmlabError:
            est = 0  # run_backtest reports what is wrong with the data
        part = Part(0, ",".join(cfg.data.symbols), "whole range", cfg.data.start, cfg.data.end, est)
        sink = RichProgress(title="backtest")
        sink.planned([part])
        sink.started(part)
    try:
        result = run_backtest(cfg, progress=None if sink is None else (lambda done, total: sink.advanced(part, done, total)))
        if sink is not None:
            sink.finished(part, result.summary)
    finally:
        if sink is not None:
            sink.close()
    return result.summary, write_run(result, out)


@app.command("report")
def report(
    run: Path = typer.Argument(..., help="Run directory (written by `mmlab backtest`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory; default: the run directory."),
):
    """Write the run's charts (PNG) and a self-contained report.html."""
    from mmlab.analysis.report import build_report
    from mmlab.errors import MmlabError

    try:
        path = build_report(run, out)
    except MmlabError as exc:
        _fail(exc)
    typer.echo(str(path))


@app.command("compare")
def compare(
    run_a: Path = typer.Argument(..., help="Reference run directory (A)."),
    run_b: Path = typer.Argument(..., help="Run directory compared with A (B)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory; default: reports/compare/<A>_vs_<B>."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
):
    """Metric deltas (B - A) of two runs, printed, plus a side-by-side compare.html."""
    from mmlab.analysis.compare import compare_runs
    from mmlab.errors import MmlabError

    try:
        res = compare_runs(run_a, run_b, out)
    except MmlabError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    rows = [{"key": k, "a": v["a"], "b": v["b"], "b - a": v["delta"], "pct": v["pct"]} for k, v in res["metrics"].items()]
    _print_table(rows, ["key", "a", "b", "b - a", "pct"], title=f"{res['name_b']} (B) vs {res['name_a']} (A)")
    if res["config_diff"]:
        _print_table([{"key": k, **v} for k, v in res["config_diff"].items()], ["key", "a", "b"], title="config differences")
    typer.echo(res["report"])


@app.command("perf-gate")
def perf_gate_cmd(
    current: Path = typer.Option(..., "--current", help="Run directory (summary.json stage_latency_ns) or JSON of {stage: {p50, p95, p99}}."),
    baseline: Path = typer.Option(Path("benchmarks/stage_budgets.json"), "--baseline", help="Stage budgets file."),
    threshold: float = typer.Option(3.0, "--threshold", help="Allowed p95 regression over the budget, percent."),
    report_path: Optional[Path] = typer.Option(None, "--report", help="Write a markdown report here."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Do not fail on budgeted stages without a measurement."),
):
    """Fail (exit 1) when a stage's p95 latency regresses beyond the threshold against the budgets."""
    from mmlab.analysis.perf_gate import perf_gate
    from mmlab.errors import MmlabError

    try:
        ok, rows = perf_gate(baseline, current, threshold_pct=threshold, report_path=report_path, allow_missing=allow_missing)
    except MmlabError as exc:
        _fail(exc)
    shown = [{k: (round(v) if isinstance(v, float) and k.endswith("_ns") else round(v, 2) if isinstance(v, float) else v)
              for k, v in r.items()} for r in rows]
    _print_table(shown, ["stage", "p50_ns", "p95_ns", "p99_ns", "budget_p95_ns", "delta_pct", "status"],
                 title=f"stage perf gate (+{threshold:g}% on p95): {'PASS' if ok else 'FAIL'}")
    if report_path is not None:
        typer.echo(str(report_path))
    if not ok:
        raise typer.Exit(1)


def _register_areas() -> None:
    from mmlab import cli_hpo, cli_live, cli_ml

    for area in (cli_ml, cli_hpo, cli_live):
        area.register(app)


_register_areas()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
