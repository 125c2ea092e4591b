"""Single-run report: files, sections, determinism, pnl decomposition, degraded run directories."""

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmlab.analysis.metrics import (
    busiest_window,
    fill_rate_by_distance,
    guard_reason_counts,
    load_run,
    markout_curves,
    numeric_summary,
    pnl_decomposition,
)
from mmlab.analysis.report import build_report, chart_stage_latency
from mmlab.errors import DataError
from mmlab.types import GuardReason

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHARTS = ("equity", "inventory", "quotes", "markouts", "queue_eta", "fill_rate", "reasons")


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_report_writes_pngs_and_a_self_contained_html(run_dir, tmp_path):
    path = build_report(run_dir, tmp_path / "rep")
    assert path == tmp_path / "rep" / "report.html"
    for name in CHARTS:
        png = (tmp_path / "rep" / f"{name}.png").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 2000, name
    text = path.read_text()
    for section in ("summary", *CHARTS, "stage_latency", "notes", "config", "manifest"):
        assert f'<section id="{section}">' in text, section
    assert text.count("data:image/png;base64,") == len(CHARTS)
    assert "<img" in text and 'src="data:image/png;base64,' in text and "src=\"http" not in text
    for needle in ("pnl_net", "half_spread_ticks", "config_id", "spread_capture", "inventory_pnl", "SYNTHUSDT"):
        assert needle in text, needle
    # The grid times no stage: that chart is skipped with a note, not an error.
    assert "skipped: stage latency not recorded" in text
    # Every chart of a backtest report, one section each, in this order.
    keys = [*CHARTS, "stage_latency"]
    pos = [text.index(f'<section id="{k}">') for k in keys]
    assert pos == sorted(pos)
    for needle in ("spread capture", "inventory pnl", "fees", "markers: fills", "Markout curves by side",
                   "Fill rate by distance from mid", "Guard reasons", "Per-stage latency"):
        assert needle in text, needle


def test_report_defaults_to_the_run_directory(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "run")
    assert build_report(run) == run / "report.html"
    assert (run / "equity.png").exists()


def test_report_files_are_identical_across_builds(run_dir, tmp_path):
    a = build_report(run_dir, tmp_path / "a").parent
    b = build_report(run_dir, tmp_path / "b").parent
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    assert b"Software" not in (a / "equity.png").read_bytes()


def test_pnl_decomposition_sums_to_summary_pnl(run_dir):
    run = load_run(run_dir)
    dec = pnl_decomposition(run)
    t = dec.totals
    pnl_net = run.summary["pnl_net"]
    assert t["spread_capture"] + t["inventory_pnl"] - t["fees"] == pytest.approx(pnl_net, rel=1e-6, abs=1e-9)
    assert t["pnl"] == pnl_net
    # Fees come from the fills alone and must agree with the engine's summary (maker rebates: negative).
    assert t["fees"] == pytest.approx(run.summary["fees"], rel=1e-9, abs=1e-12)
    assert t["fees"] < 0
    s = dec.series
    np.testing.assert_allclose(s["spread_capture"] + s["inventory_pnl"] - s["fees"], s["pnl"], rtol=0, atol=1e-9)
    state = run.frame("state")
    assert s["pnl"][-1] == pytest.approx(state["equity"][-1] - 1000.0, abs=1e-9)


def test_inventory_pnl_equals_position_carried_at_mid(run_dir):
    """The residual term equals sum over reported fills of side * qty * (mid_t - mid_at_fill) at every tick."""
    run = load_run(run_dir)
    s = pnl_decomposition(run).series
    state, fills = run.frame("state"), run.frame("fills")
    ts, mid = state["ts_local"].to_numpy(), state["mid"].to_numpy()
    f_ts = fills["ts_local"].to_numpy()
    carried = fills["side"].to_numpy() * fills["qty"].to_numpy()
    mid_fill = fills["mid_fill"].to_numpy()
    direct = np.array([np.sum((carried * (m - mid_fill))[f_ts <= t]) for t, m in zip(ts, mid)])
    scale = max(1.0, float(np.abs(s["pnl"].to_numpy()).max()))
    np.testing.assert_allclose(s["inventory_pnl"].to_numpy(), direct, rtol=0, atol=1e-6 * scale)


def test_markout_curves_by_side_match_the_fill_columns(run_dir):
    fills = load_run(run_dir).frame("fills")
    cur = markout_curves(fills)
    assert sorted(set(cur["horizon_ms"].to_list())) == [100.0, 1000.0, 5000.0]
    buy = cur.filter((pl.col("side") == "buy") & (pl.col("horizon_ms") == 1000.0))
    expect = fills.filter(pl.col("side") > 0)["markout_bps_1s"].drop_nans().mean()
    assert buy["mean_bps"][0] == pytest.approx(expect)


def test_fill_rate_from_orders_agrees_with_labels(run_dir, tmp_path):
    run = load_run(run_dir)
    from_labels, src = fill_rate_by_distance(run)
    assert "labels" in src
    assert from_labels["n_orders"].sum() == run.frame("labels").height
    assert ((from_labels["fill_rate"] >= 0) & (from_labels["fill_rate"] <= 1)).all()
    bare = _copy_run(run_dir, tmp_path / "bare")
    (bare / "labels.parquet").unlink()
    from_orders, src = fill_rate_by_distance(load_run(bare))
    assert "orders" in src
    assert from_orders["n_orders"].sum() == from_labels["n_orders"].sum()
    assert from_orders["n_filled"].sum() == from_labels["n_filled"].sum()


def test_report_skips_charts_whose_inputs_are_absent(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "degraded")
    for name in ("fills", "labels", "orders", "decisions"):
        (run / f"{name}.parquet").unlink(missing_ok=True)
    state = pl.read_parquet(run / "state.parquet").drop("quote_bid", "quote_ask", "reason")
    state.write_parquet(run / "state.parquet")
    text = build_report(run, tmp_path / "rep").read_text()
    assert (tmp_path / "rep" / "inventory.png").exists()
    assert (tmp_path / "rep" / "quotes.png").exists()
    for gone in ("equity", "markouts", "queue_eta", "fill_rate", "reasons"):
        assert not (tmp_path / "rep" / f"{gone}.png").exists(), gone
    assert "skipped: fills.parquet lacks side/price/qty/mid_fill" in text
    assert "skipped: fills.parquet has no markout_bps_" in text
    assert "columns absent: quote_bid, quote_ask" in text


def test_packed_pipeline_reasons_and_stage_timings_are_reported(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "pipe")
    (run / "decisions.parquet").unlink(missing_ok=True)  # the reasons under test are the state frame's
    cfg = (run / "config.toml").read_text().replace('name = "grid"', 'name = "grid_pipeline"')
    assert 'name = "grid_pipeline"' in cfg
    (run / "config.toml").write_text(cfg)
    state = pl.read_parquet(run / "state.parquet")
    n = state.height
    guard = np.where(np.arange(n) < 50, int(GuardReason.WARMUP), int(GuardReason.NONE))
    guard[60:70] = int(GuardReason.VOL_WIDEN)
    packed = (guard.astype(np.int64) << 16) | (3 << 48) * (guard == int(GuardReason.WARMUP))
    rng = np.random.default_rng(0)
    state = state.with_columns(pl.Series("reason", packed), pl.Series("stage_spread_ns", rng.integers(50, 500, n)),
                               pl.Series("tick_total_ns", rng.integers(500, 5000, n)))
    state.write_parquet(run / "state.parquet")
    summary = json.loads((run / "summary.json").read_text())
    summary["stage_latency_ns"] = {"stage_spread": {"p50": 250.0, "p95": 480.0, "p99": 495.0}}
    (run / "summary.json").write_text(json.dumps(summary))

    title, rows = guard_reason_counts(load_run(run))
    assert "packed" in title
    assert dict(rows) == {"NONE": n - 60, "WARMUP": 50, "VOL_WIDEN": 10}
    text = build_report(run, tmp_path / "rep").read_text()
    assert (tmp_path / "rep" / "stage_latency.png").read_bytes().startswith(PNG_MAGIC)
    assert "WARMUP" in text and "480" in text
    assert "stage latency not recorded" not in text


def test_load_run_names_the_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(DataError, match=r"summary.json is missing .*mmlab backtest"):
        load_run(tmp_path)
    (tmp_path / "summary.json").write_text('{"pnl_net": 1.0,\n "x": }')
    with pytest.raises(DataError, match=r"summary.json line 2: invalid JSON"):
        load_run(tmp_path)


def test_numeric_summary_flattens_nested_numbers():
    flat = numeric_summary({"a": 1, "b": True, "c": "x", "d": {"e": 2.5, "f": None}, "g": float("nan")})
    assert flat == {"a": 1, "d.e": 2.5, "d.f": None, "g": None}


def test_busiest_window_holds_the_most_events():
    ts = np.array([0, 10, 100, 101, 102, 103, 500], dtype=np.int64)
    assert busiest_window(ts, 0, 1000, 10) == (100, 110)
    assert busiest_window(ts, 0, 5, 10) == (0, 5)
    assert busiest_window(np.zeros(0, np.int64), 0, 1000, 10) == (0, 10)


def test_stage_timing_columns_without_values_are_not_recorded(run_dir, tmp_path):
    run = _copy_run(run_dir, tmp_path / "untimed")
    state = pl.read_parquet(run / "state.parquet")
    state = state.with_columns(pl.lit(None, dtype=pl.Int64).alias("stage_spread_ns"))
    state.write_parquet(run / "state.parquet")
    chart = chart_stage_latency(load_run(run))
    assert chart.png is None and chart.note.startswith("stage latency not recorded")


def test_merged_run_report_has_parts_and_per_day_tables(run_dir, tmp_path):
    from mmlab.config import load_config
    from mmlab.sim.parallel import run_parts

    res = run_parts(load_config(run_dir / "config.toml"), jobs=1, out_dir=tmp_path / "merged")
    text = build_report(res.run_dir).read_text()
    assert '<section id="parts">' in text and '<a href="#parts">' in text
    assert "parts/SYNTHUSDT/2024-01-01" in text and "2024-01-01" in text
    assert (res.run_dir / "equity.png").exists()
    # The merged run compares with a single run like any other run directory.
    from mmlab.analysis.compare import compare_runs

    cmp = compare_runs(res.run_dir, res.run_dir, tmp_path / "cmp")
    assert cmp["metrics"]["n_parts"]["delta"] == 0
