"""The documented round trip from the command line on the shared BTCUSDT capture:
backtest -> labels -> train -> export-onnx -> promote -> backtest with the model scoring every decision tick."""

import json
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from mmlab.cli import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _ok(args: list[str]) -> str:
    r = runner.invoke(app, args)
    assert r.exit_code == 0, f"mmlab {' '.join(args)}\n{r.output}"
    return r.output


def test_backtest_train_export_promote_backtest(real_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default paths (data/, models/registry) land in the test's directory
    caps = [str(real_data / "binance_usdm" / f"usdm_btcusdt_2024071{d}.gz") for d in (8, 9)]
    _ok(["data", "ingest", *caps, "--out", "data", "--json"])
    cfg = tmp_path / "grid_btcusdt.toml"
    cfg.write_text((REPO / "experiments" / "grid_btcusdt.toml").read_text())

    _ok(["backtest", "--config", str(cfg), "--out", "runs/base", "--no-report", "--json"])
    labels = pl.read_parquet("runs/base/labels.parquet")
    assert labels.height == 1407 and {"filled_100ms", "filled_1s", "filled_5s"} <= set(labels.columns)

    out = _ok(["train", "--labels", "runs/base/labels.parquet", "--target", "filled_1s", "--out", "models/m1",
               "--seed", "1", "--rounds", "40"])
    assert "tau_entry=" in out
    meta = json.loads(Path("models/m1/lgbm_meta.json").read_text())
    assert meta["seed"] == 1 and meta["config_id"] == json.loads(Path("runs/base/manifest.json").read_text())["config_id"]

    out = _ok(["export-onnx", "models/m1"])
    assert "PASS" in out and Path("models/m1/model.onnx").exists()
    assert json.loads(Path("models/m1/model.json").read_text())["schema_hash"] == \
        json.loads(Path("models/m1/dataset.schema.json").read_text())["schema_hash"] == meta["schema_hash"]

    _ok(["registry", "promote", "--to", "active", "--id", "m1"])
    assert json.loads(Path("models/registry/manifest.json").read_text())["active"] == "m1"
    assert "active=m1" in _ok(["registry", "list"])

    out = _ok(["backtest", "--config", str(cfg), "--set", "model.id=m1", "--out", "runs/model", "--no-report", "--json"])
    base = json.loads(Path("runs/base/summary.json").read_text())
    scored = json.loads(Path("runs/model/summary.json").read_text())
    assert scored["model"]["id"] == "m1" and scored["model"]["schema_hash"] == meta["schema_hash"]
    assert scored["model"]["n_ticks_scored"] == scored["n_decisions"] == base["n_decisions"]
    assert scored["model"]["tau_entry"] == meta["thresholds"]["tau_entry"]
    assert 0 < scored["n_orders"] < base["n_orders"]
    assert "[model]" in Path("runs/model/config.toml").read_text()

    # The same sequence through the active slot gives the same run.
    _ok(["backtest", "--config", str(cfg), "--set", "model.id=active", "--out", "runs/active", "--no-report"])
    assert pl.read_parquet("runs/active/fills.parquet").equals(pl.read_parquet("runs/model/fills.parquet"))
