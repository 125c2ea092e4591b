"""Days x symbols as independent parts: planning, merging, executors (local, Dask LocalCluster), determinism."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmlab.config import load_config
from mmlab.data.synth import synth
from mmlab.errors import ConfigError, DataError
from mmlab.sim.engine import run_backtest
from mmlab.sim.parallel import (
    Part,
    ProgressSink,
    merged_equity,
    plan_parts,
    run_parts,
    strip_wall_times,
)

SYMBOLS = ("AAAUSDT", "BBBUSDT")
DAYS = ("2024-01-01", "2024-01-02")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store_parts")
    seed = 10
    for sym in SYMBOLS:
        for day in DAYS:
            synth(root, hours=0.02, seed=seed, symbol=sym, date=day)
            seed += 1
    return root


def _cfg(store, **data):
    d = {
        "data": {"root": str(store), "symbols": list(SYMBOLS), **data},
        "strategy": {"half_spread_ticks": 1.0, "skew_ticks": 1.0, "order_qty": 0.01, "max_position": 0.05},
        "sim": {"maker_fee": -0.00005, "taker_fee": 0.0005, "initial_cash": 100.0},
    }
    return load_config(d)


@pytest.fixture(scope="module")
def merged(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "run"
    return run_parts(_cfg(store), jobs=1, out_dir=out)


def test_plan_is_days_then_symbols_and_tiles_local_time(store):
    parts = plan_parts(_cfg(store))
    assert [(p.day, p.symbol) for p in parts] == [(d, s) for d in DAYS for s in SYMBOLS]
    assert [p.index for p in parts] == [0, 1, 2, 3]
    a = [p for p in parts if p.symbol == "AAAUSDT"]
    # Open ends at both sides; consecutive parts meet at UTC midnight.
    assert (a[0].start, a[0].end) == (None, "2024-01-02T00:00:00Z")
    assert (a[1].start, a[1].end) == ("2024-01-02T00:00:00Z", None)
    assert all(p.events_est > 0 for p in parts)


def test_plan_clips_to_the_configured_range(store):
    parts = plan_parts(_cfg(store, start="2024-01-02T00:00:30Z"))
    assert [(p.symbol, p.day, p.start, p.end) for p in parts] == [
        ("AAAUSDT", "2024-01-02", "2024-01-02T00:00:30Z", None), ("BBBUSDT", "2024-01-02", "2024-01-02T00:00:30Z", None)]
    parts = plan_parts(_cfg(store, end="2024-01-01T00:00:30Z", symbols=["BBBUSDT"]))
    assert [(p.day, p.start, p.end) for p in parts] == [("2024-01-01", None, "2024-01-01T00:00:30Z")]
    with pytest.raises(DataError, match=r"falls in \[2025-01-01, None\)"):
        plan_parts(_cfg(store, start="2025-01-01"))
    with pytest.raises(DataError, match="NOPE"):
        plan_parts(_cfg(store, symbols=["NOPE"]))


def test_merged_frames_and_summary_add_up(merged):
    parts = merged.part_results
    assert len(parts) == 4 and merged.summary["n_parts"] == 4
    for name in ("fills", "orders", "state", "labels"):
        df = getattr(merged, name)
        assert df.columns[0] == "day" and "symbol" in df.columns, name
        assert df.height == sum(getattr(r, name).height for r in parts), name
        assert df["day"].unique().sort().to_list() == list(DAYS), name
    s = merged.summary
    for k in ("events", "n_orders", "n_fills", "n_decisions"):
        assert s[k] == sum(r.summary[k] for r in parts), k
    assert s["fees"] == pytest.approx(sum(r.summary["fees"] for r in parts))
    assert s["pnl_net"] == pytest.approx(sum(r.summary["pnl_net"] for r in parts))
    assert s["n_fills"] == merged.fills.height > 0
    assert set(s["per_symbol"]) == set(SYMBOLS) and set(s["per_day"]) == set(DAYS)
    assert s["per_symbol"]["AAAUSDT"]["pnl_net"] == pytest.approx(
        sum(r.summary["pnl_net"] for p, r in zip(merged.parts, parts) if p.symbol == "AAAUSDT"))
    assert [(r["symbol"], r["day"]) for r in s["parts"]] == [(p.symbol, p.day) for p in merged.parts]
    assert s["fill_rate"] == pytest.approx((merged.labels["filled_qty"] > 0).mean())
    assert s["markout_bps_1s"] == pytest.approx(merged.fills["markout_bps_1s"].fill_nan(None).mean())
    for key in ("sharpe", "max_drawdown", "queue_eta_ms_p50", "slippage_bps_mean", "definitions"):
        assert key in s, key


def test_merged_run_directory(merged):
    d = merged.run_dir
    for name in ("config.toml", "manifest.json", "summary.json", "fills.parquet", "orders.parquet", "state.parquet",
                 "labels.parquet"):
        assert (d / name).exists(), name
    for p in merged.parts:
        assert (d / p.subdir() / "summary.json").exists()
        assert (d / p.subdir() / "fills.parquet").exists()
    man = json.loads((d / "manifest.json").read_text())
    assert man["parts"] == [p.subdir() for p in merged.parts] and man["executor"] == "process"
    assert json.loads((d / "summary.json").read_text())["n_parts"] == 4
    # The merged config is the run's, not a part's.
    assert 'symbols = ["AAAUSDT", "BBBUSDT"]' in (d / "config.toml").read_text()


def test_each_part_is_the_standalone_backtest_of_its_window(store, merged):
    p = merged.parts[2]
    cfg = _cfg(store, symbols=[p.symbol], start=p.start, end=p.end)
    alone = run_backtest(cfg)
    got = merged.part_results[2]
    for name in ("fills", "orders", "state", "labels"):
        assert getattr(alone, name).equals(getattr(got, name)), name
    day = merged.fills.filter((pl.col("symbol") == p.symbol) & (pl.col("day") == p.day)).drop("day")
    assert day.equals(alone.fills)


def test_merged_equity_carries_pnl_across_days_and_symbols():
    state = pl.DataFrame({
        "ts_local": [10, 10, 20, 30, 30],
        "symbol": ["A", "B", "A", "A", "B"],
        "pnl": [1.0, 2.0, 3.0, 0.5, 4.0],
    })
    # Row 3 opens A's second day: A's first day ended at pnl_net 3.0.
    offsets = np.array([0.0, 0.0, 0.0, 3.0, 0.0])
    eq = merged_equity(state, 100.0, offsets)
    np.testing.assert_allclose(eq, [103.0, 103.0, 105.0, 107.5, 107.5])


def test_merged_equity_is_continuous_at_midnight(merged):
    state = merged.state.filter(pl.col("symbol") == "AAAUSDT")
    first_day = merged.part_results[0]
    assert first_day.state["symbol"][0] == "AAAUSDT"
    day2 = state.filter(pl.col("day") == DAYS[1])
    # At the first tick of day 2 the run equity holds A's day-1 pnl_net plus B's pnl so far.
    assert day2["equity"][0] >= 100.0 + first_day.summary["pnl_net"] - 5.0
    assert np.isfinite(merged.state["equity"].to_numpy()).all()


class _Recorder(ProgressSink):
    def __init__(self):
        self.calls = []

    def planned(self, parts):
        self.calls.append(("planned", len(parts)))

    def started(self, part):
        self.calls.append(("started", part.index))

    def finished(self, part, summary):
        self.calls.append(("finished", part.index, summary["events"]))

    def close(self):
        self.calls.append(("close",))


def test_progress_sink_sees_every_part(store, tmp_path):
    rec = _Recorder()
    res = run_parts(_cfg(store, symbols=["AAAUSDT"]), jobs=1, progress=rec, write=False)
    assert res.run_dir is None and not (tmp_path / "experiments").exists()
    assert rec.calls[0] == ("planned", 2) and rec.calls[-1] == ("close",)
    assert [c[:2] for c in rec.calls[1:-1]] == [("started", 0), ("finished", 0), ("started", 1), ("finished", 1)]
    assert rec.calls[2][2] == res.part_results[0].summary["events"] > 0


def test_rich_progress_prints_events_per_second(store):
    import io

    from rich.console import Console

    from mmlab.sim.parallel import RichProgress

    buf = io.StringIO()
    sink = RichProgress(console=Console(file=buf, force_terminal=True, width=120))
    run_parts(_cfg(store, symbols=["BBBUSDT"]), jobs=1, progress=sink, write=False)
    text = buf.getvalue()
    assert "BBBUSDT/2024-01-01" in text and "ev/s" in text and "events" in text


def test_bad_executor_and_jobs_are_config_errors(store):
    cfg = _cfg(store)
    with pytest.raises(ConfigError, match="executor must be one of"):
        run_parts(cfg, executor="threads", write=False)
    with pytest.raises(ConfigError, match="jobs must be >= 1, got 0"):
        run_parts(cfg, jobs=0, write=False)
    with pytest.raises(ConfigError, match="scheduler address"):
        run_parts(cfg, executor="dask", write=False)


def test_dask_local_cluster_gives_the_same_run(store, merged, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = run_parts(_cfg(store), executor="dask", client=client, out_dir=tmp_path / "dask")
    assert json.dumps(strip_wall_times(res.summary), sort_keys=True) == \
        json.dumps(strip_wall_times(merged.summary), sort_keys=True)
    for name in ("fills.parquet", "orders.parquet", "state.parquet", "labels.parquet", "config.toml"):
        assert (tmp_path / "dask" / name).read_bytes() == (merged.run_dir / name).read_bytes(), name
    assert json.loads((tmp_path / "dask" / "manifest.json").read_text())["executor"] == "dask"


def test_part_subdir():
    assert Part(0, "BTCUSDT", "2024-07-18", None, None).subdir() == str(Path("parts") / "BTCUSDT" / "2024-07-18")


def test_a_failing_part_is_named_in_the_error(store, tmp_path):
    cfg = load_config({**_cfg(store).to_dict(), "sim": {"latency_model": "empirical",
                                                        "latency_table": str(tmp_path / "nope.parquet")}})
    with pytest.raises(DataError, match=r"part AAAUSDT/2024-01-01 \(local time first row to 2024-01-02T00:00:00Z\): "
                                        r"latency table .*nope.parquet does not exist"):
        run_parts(cfg, jobs=1, write=False)


def test_the_allocator_needs_one_backtest(store):
    cfg = load_config({**_cfg(store).to_dict(), "allocator": {"enabled": True}})
    with pytest.raises(ConfigError, match="allocator"):
        plan_parts(cfg)
