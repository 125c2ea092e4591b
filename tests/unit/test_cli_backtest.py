"""`mmlab backtest` as a researcher uses it: flags over the config file, --set last, --jobs, default data."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmlab import cli
from mmlab.cli import app, backtest_overrides
from mmlab.data.synth import synth
from mmlab.sim.parallel import strip_wall_times

runner = CliRunner()
SYMBOLS = ("AAAUSDT", "BBBUSDT")
DAYS = ("2024-03-01", "2024-03-02")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_store")
    seed = 20
    for sym in SYMBOLS:
        for day in DAYS:
            synth(root, hours=0.015, seed=seed, symbol=sym, date=day)
            seed += 1
    return root


@pytest.fixture()
def config_file(tmp_path, store) -> Path:
    p = tmp_path / "x.toml"
    p.write_text(f'[data]\nroot = "{store}"\nsymbols = ["AAAUSDT"]\n\n[strategy]\nhalf_spread_ticks = 3.0\n'
                 'order_qty = 0.01\nmax_position = 0.05\n')
    return p


def _run(args, ok=True):
    r = runner.invoke(app, ["backtest", "--quiet", "--no-report", *args])
    if ok:
        assert r.exit_code == 0, r.output + repr(r.exception)
    return r


def _resolved(run_dir: Path) -> str:
    return (run_dir / "config.toml").read_text()


def test_flags_become_overrides_before_set_items():
    items = backtest_overrides(Path("d"), "binance-usdm", ["A,B", "C"], "2024-01-01", "2024-01-02", "grid",
                               ["data.symbols=['Z']"])
    assert items == ['data.root="d"', 'data.venue="binance-usdm"', 'data.symbols=["A", "B", "C"]',
                     'data.start="2024-01-01"', 'data.end="2024-01-02"', 'strategy.name="grid"', "data.symbols=['Z']"]
    assert backtest_overrides() == []


def test_flags_override_the_config_file_and_set_comes_last(config_file, store, tmp_path):
    out = tmp_path / "run"
    _run(["--config", str(config_file), "--symbol", "BBBUSDT", "--start", "2024-03-02", "--strategy", "grid",
          "--set", "strategy.half_spread_ticks=1", "--out", str(out), "--json"])
    cfg = _resolved(out)
    assert 'symbols = ["BBBUSDT"]' in cfg and 'start = "2024-03-02"' in cfg and "half_spread_ticks = 1.0" in cfg
    assert 'name = "grid"' in cfg
    # --set wins over a flag naming the same key.
    _run(["--config", str(config_file), "--symbol", "BBBUSDT", "--set", 'data.symbols=["AAAUSDT"]',
          "--end", "2024-03-01T00:00:30Z", "--out", str(tmp_path / "run2")])
    assert 'symbols = ["AAAUSDT"]' in _resolved(tmp_path / "run2")


def test_json_output_is_clean_and_names_the_run(config_file, tmp_path):
    r = _run(["--config", str(config_file), "--out", str(tmp_path / "r"), "--json", "--end", "2024-03-01T00:00:20Z"])
    doc = json.loads(r.stdout)
    assert doc["run_dir"] == str(tmp_path / "r") and doc["report"] is None and doc["n_orders"] >= 0


def test_unknown_key_names_the_nearest_valid_key(config_file):
    r = _run(["--config", str(config_file), "--set", "strategy.half_spred_ticks=1"], ok=False)
    assert r.exit_code == 2 and "half_spread_ticks" in r.output
    r = _run(["--config", str(config_file), "--executor", "threads"], ok=False)
    assert r.exit_code == 2 and "--executor must be process or dask" in r.output
    r = _run(["--config", str(config_file), "--symbol", "NOPEUSDT", "--jobs", "2"], ok=False)
    assert r.exit_code == 2 and "NOPEUSDT" in r.output


def test_jobs_1_and_jobs_2_write_identical_runs(store, tmp_path):
    args = ["--data", str(store), "--symbol", ",".join(SYMBOLS), "--set", "strategy.order_qty=0.01",
            "--set", "strategy.max_position=0.05", "--set", "strategy.half_spread_ticks=1"]
    a, b = tmp_path / "j1", tmp_path / "j2"
    _run([*args, "--jobs", "1", "--out", str(a)])
    r = _run([*args, "--jobs", "2", "--out", str(b)])
    assert "parts" in r.output
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert len([f for f in files if f.name == "fills.parquet"]) == 1 + len(SYMBOLS) * len(DAYS)
    for f in files:
        if f.suffix == ".parquet" or f.name == "config.toml":
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    assert strip_wall_times(sa) == strip_wall_times(sb)
    assert sa["n_parts"] == 4 and sa["n_fills"] > 0
    for f in files:
        if f.name == "summary.json" and f.parent != Path("."):
            wall = ("wall_s", "loop_s", "jit_s", "events_per_s", "stage_latency_ns")
            ja, jb = (json.loads((d / f).read_text()) for d in (a, b))
            assert {k: v for k, v in ja.items() if k not in wall} == {k: v for k, v in jb.items() if k not in wall}


def test_default_run_generates_the_synthetic_day_first(tmp_path, monkeypatch):
    """No config and an empty default root: the seeded SYNTHUSDT day is generated, then backtested."""
    monkeypatch.chdir(tmp_path)
    calls = []
    original = cli._ensure_default_data

    def short_day(root, *, hours=1.0, seed=7):
        calls.append((Path(root), hours, seed))
        original(root, hours=0.01, seed=seed)  # a short day keeps the test fast

    monkeypatch.setattr(cli, "_ensure_default_data", short_day)
    r = _run(["--out", "run"])
    assert calls == [(Path("data"), 1.0, 7)]
    assert (tmp_path / "data" / "binance-usdm" / "SYNTHUSDT" / "_meta.json").exists()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["events"] > 0
    assert "generating the synthetic default day" in r.stderr
    # A second run finds the day and generates nothing.
    calls.clear()
    before = sorted(p.name for p in (tmp_path / "data" / "binance-usdm" / "SYNTHUSDT").iterdir())
    _run(["--out", "run2"])
    assert sorted(p.name for p in (tmp_path / "data" / "binance-usdm" / "SYNTHUSDT").iterdir()) == before
