"""Fill calibration: outcome censoring, likelihood, recovery of the generating queue model, live JSONL, preset, CLI."""

import json
import tomllib

import numpy as np
import polars as pl
import pytest
from conftest import WINDOW
from typer.testing import CliRunner

from mmlab.config import load_config
from mmlab.errors import ConfigError, DataError
from mmlab.hpo.calibrate import (
    calibrate_fills,
    candidates,
    loglik,
    orders_from_live,
    outcomes,
)

MS = 1_000_000


def test_outcomes_censor_orders_canceled_before_the_horizon():
    o = {"accept_ts": np.array([0, 0, 0, 0, -1]), "first_fill_ts": np.array([5 * MS, 50 * MS, -1, -1, -1]),
         "end_ts": np.array([-1, -1, 3 * MS, 20 * MS, -1])}
    mask, y = outcomes(o, 10 * MS)
    # filled in time -> 1; filled later -> 0; canceled unfilled at 3 ms -> out; canceled at 20 ms -> 0; never accepted -> out
    assert mask.tolist() == [True, True, False, True, False] and y.tolist() == [True, False, False]


def test_loglik_prefers_the_candidate_matching_the_observed_rates():
    rng = np.random.default_rng(0)
    n = 4000

    def orders(p):
        filled = rng.random(n) < p
        return {"touch_ticks": np.zeros(n), "queue_ahead_qty": np.ones(n), "accept_ts": np.zeros(n, np.int64),
                "first_fill_ts": np.where(filled, MS, -1).astype(np.int64), "end_ts": np.full(n, -1, np.int64)}

    obs = orders(0.3)
    edges = np.array([0.5, 1.5, 2.5])
    lls = {p: loglik(obs, orders(p), [10 * MS], edges) for p in (0.1, 0.3, 0.6)}
    assert max(lls, key=lls.get) == 0.3


def test_candidates_grid_and_errors():
    assert candidates(["risk_averse", "power_prob"], [1, 3]) == [("risk_averse", 2.0), ("power_prob", 1.0),
                                                                  ("power_prob", 3.0)]
    assert candidates(["log_prob"], [1, 3]) == [("log_prob", 2.0)]
    with pytest.raises(ConfigError, match="unknown queue model 'pwr'"):
        candidates(["pwr"], [1])
    with pytest.raises(ConfigError, match="powers must be > 0"):
        candidates(["power_prob"], [0])


@pytest.fixture(scope="module")
def pp3_run(btc_store, tmp_path_factory):
    from mmlab.sim.engine import run_backtest, write_run

    cfg = load_config({"data": {"root": str(btc_store), "venue": "binance-usdm", "symbols": ["BTCUSDT"],
                                "start": WINDOW["start"], "end": "2024-07-19T00:01:00Z"},
                       "sim": {"queue_model": "power_prob", "queue_power": 3.0},
                       "strategy": {"grid_num": 3, "half_spread_ticks": 0.5}})
    res = run_backtest(cfg)
    return write_run(res, tmp_path_factory.mktemp("pp3") / "run"), res


def test_calibration_recovers_the_generating_model_and_writes_a_preset(pp3_run, tmp_path):
    run_dir, _ = pp3_run
    res = calibrate_fills(run_dir, models=["risk_averse", "power_prob", "log_prob"], powers=(1.0, 3.0),
                          out=tmp_path / "cal")
    true = next(c for c in res["candidates"] if (c["queue_model"], c["queue_power"]) == ("power_prob", 3.0))
    assert res["best"]["loglik"] == pytest.approx(true["loglik"])  # the generating model attains the maximum
    assert all(c["loglik"] <= true["loglik"] + 1e-9 for c in res["candidates"])
    preset = tomllib.loads((tmp_path / "cal" / "queue_preset.toml").read_text())
    assert preset == {"sim": {"queue_model": res["best"]["queue_model"], "queue_power": res["best"]["queue_power"]}}
    assert load_config(tmp_path / "cal" / "queue_preset.toml").sim.queue_model == res["best"]["queue_model"]
    cur = res["curves"]["observed"]
    assert {r["bin"] for r in cur["by_touch_ticks"]} >= {"<=0", "1"}
    p = [r["p_fill"] for r in cur["by_time"] if r["p_fill"] is not None]
    assert p == sorted(p)  # more time, more fills
    assert (tmp_path / "cal" / "fill_curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())["best"] == res["best"]


def _write_live(run_dir, out):
    """The run's orders and fills as the live runner's orders.jsonl / fills.jsonl."""
    orders = pl.read_parquet(run_dir / "orders.parquet")
    fills = pl.read_parquet(run_dir / "fills.parquet")
    out.mkdir()
    with open(out / "orders.jsonl", "w") as f:
        f.writelines(json.dumps({"ts_local": r["ts_local"], "ts_exch": r["ts_exch"], "symbol": r["symbol"],
                                "order_id": r["order_id"], "order_seq": r["order_seq"], "event": r["event"],
                                "side": r["side"]}) + "\n" for r in orders.iter_rows(named=True))
    with open(out / "fills.jsonl", "w") as f:
        f.writelines(json.dumps({"ts_exch": r["ts_exch"], "symbol": r["symbol"], "order_id": r["order_id"],
                                "order_seq": r["order_seq"], "queue_ahead_qty": r["queue_ahead_qty"], "route": "paper"}) + "\n" for r in fills.iter_rows(named=True))
    return out / "fills.jsonl"


def test_live_fills_jsonl_and_cli(pp3_run, tmp_path):
    from mmlab.cli import app

    run_dir, res = pp3_run
    fills = _write_live(run_dir, tmp_path / "live")
    o = orders_from_live(fills)
    lab = res.labels.filter(res.labels["accepted"])
    assert len(o["accept_ts"]) == lab.height
    assert (o["first_fill_ts"] >= 0).sum() == (lab["first_fill_ts"].to_numpy() >= 0).sum()
    r = CliRunner().invoke(app, ["calibrate-fills", "--live-fills", str(fills), "--config", str(run_dir / "config.toml"),
                                 "--models", "risk_averse,power_prob", "--powers", "3", "--out", str(tmp_path / "c"),
                                 "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["observations"]["orders"] == lab.height and len(out["candidates"]) == 2
    r = CliRunner().invoke(app, ["calibrate-fills", "--live-fills", str(fills)])
    assert r.exit_code == 2 and "--config" in r.output
    (tmp_path / "live" / "orders.jsonl").unlink()
    with pytest.raises(DataError, match="orders.jsonl is missing"):
        orders_from_live(fills)
    with pytest.raises(DataError, match="labels.parquet is missing"):
        calibrate_fills(tmp_path)
