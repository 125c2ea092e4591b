"""`calib aggregate` targets, features and sanity filters; `calib summary`; logs derived from a real run."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlab.calib import read_jsonl, write_calibration_logs
from mmlab.calib.aggregate import AggregateFilters, aggregate, summary_markdown
from mmlab.calib.loggers import FillLogger, PipelineTickLogger
from mmlab.cli import app
from mmlab.errors import ConfigError, DataError

runner = CliRunner()
T0 = 1_721_260_800_000_000_000  # 2024-07-18T00:00:00Z
S = 1_000_000_000
REPO = Path(__file__).resolve().parents[3]


def _feeds(d: Path) -> None:
    """Four 300 s intervals of BTCUSDT: good, deadline misses, few ticks, a feed gap; one interval without fills."""
    with FillLogger(d) as fl, PipelineTickLogger(d, sample_every=1) as tl:
        for k in range(5):
            base = T0 + k * 300 * S
            n_ticks = 3 if k == 2 else 20
            for i in range(n_ticks):
                tl.log(ts_ns=base + i * S, symbol="BTCUSDT", tick_total_ms=1.0 + i * 0.1, cache_hit=i % 2 == 0,
                       cache_age_ms=50.0, used_stale=i % 4 == 0, deadline_miss=(k == 1 and i < 5),
                       ws_gap_ms=5000.0 if (k == 3 and i == 0) else 100.0, n_orders_sent=1)
            if k == 4:
                continue
            for j in range(4):
                fl.log(ts_ns=base + j * S, symbol="BTCUSDT", side=1, price=100.0, qty=1.0, maker=j != 3,
                       slip_bps=0.5, fee=-0.01, markout_bps_1s=2.0, latency_ms=10.0)
        tl.log(ts_ns=T0, symbol="ETHUSDT", n_orders_sent=1)


def test_aggregate_targets_features_and_filter_counts(tmp_path):
    _feeds(tmp_path / "feeds")
    res = aggregate(tmp_path / "feeds", "2024-07-18T00:00:00", "2024-07-18T01:00:00", interval_sec=300,
                    symbols=["BTCUSDT"], out_dir=tmp_path / "ds")
    f = res["filters"]
    assert f["intervals_in"] == 5 and f["intervals_kept"] == 1
    assert f["dropped"] == {"deadline_miss": 1, "few_ticks": 1, "ws_gap": 1, "non_finite": 1}
    r = res["intervals"][0]
    assert r["net_bps"] == pytest.approx(2.0 + 1.0)  # markout 2 bps + 1 bps rebate
    assert r["slippage_bps"] == 0.5 and r["fill_rate"] == 4 / 20 and r["taker_share"] == 0.25
    assert r["cache_hit_ratio"] == 0.5 and r["stale_rate"] == 0.25 and r["deadline_miss_rate"] == 0.0
    assert r["latency_p95_ms"] == pytest.approx(1.0 + 0.1 * 19 * 0.95 + 0.0, rel=1e-3)
    saved = json.loads(Path(res["path"]).read_text())
    assert len(saved["all_intervals"]) == 5 and saved["filters"]["dropped"]["ws_gap"] == 1
    md = summary_markdown(res["path"], out=tmp_path / "s.md").read_text()
    assert "| few_ticks | 1 |" in md and "| net_bps | 1 |" in md and "## Missing data" in md


def test_aggregate_errors(tmp_path):
    with pytest.raises(DataError, match="feeds directory"):
        aggregate(tmp_path / "none", "2024-07-18", "2024-07-19")
    with pytest.raises(ConfigError, match="must be after"):
        aggregate(tmp_path, "2024-07-19", "2024-07-18")
    with pytest.raises(ConfigError, match="not an ISO-8601"):
        aggregate(tmp_path, "yesterday", "2024-07-18")
    with pytest.raises(DataError, match="no calib_"):
        summary_markdown(None, datasets_dir=tmp_path)
    assert AggregateFilters().max_deadline_miss_rate == 0.05


def test_logs_from_a_real_run_and_the_cli(real_data, tmp_path):
    from mmlab.config import load_config
    from mmlab.sim.engine import run_backtest, write_run

    r = runner.invoke(app, ["data", "ingest", str(real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz"),
                            "--out", str(tmp_path / "store"), "--json"])
    assert r.exit_code == 0, r.output
    cfg = load_config(REPO / "experiments" / "grid_btcusdt.toml", overrides=[f'data.root="{tmp_path / "store"}"'])
    run = write_run(run_backtest(cfg), tmp_path / "run")
    counts = write_calibration_logs(run, tmp_path / "feeds", sample_every=10)
    assert counts == {"fills": 27, "ticks": 177}
    rows, bad = read_jsonl(tmp_path / "feeds" / "fills_20240718.jsonl")
    assert bad == 0 and len(rows) == 27 and all(r["latency_ms"] == 10.0 for r in rows)
    ticks, _ = read_jsonl(tmp_path / "feeds" / "pipeline_ticks_20240718.jsonl")
    assert sum(t["n_orders_sent"] for t in ticks) <= 84 and all(t["n_ticks"] == 10 for t in ticks)
    r = runner.invoke(app, ["calib", "aggregate", "--from", "2024-07-18T00:00:00", "--to", "2024-07-19T00:00:00",
                            "--interval-sec", "60", "--symbols", "BTCUSDT", "--feeds", str(tmp_path / "feeds"),
                            "--out", str(tmp_path / "ds"), "--min-ticks", "1"])
    assert r.exit_code == 0 and "kept" in r.output, r.output
    r = runner.invoke(app, ["calib", "summary", "--datasets", str(tmp_path / "ds"), "--out", str(tmp_path / "s.md")])
    assert r.exit_code == 0 and (tmp_path / "s.md").read_text().startswith("# Calibration dataset")
