"""Live paper sessions with a model (``[model] id``): one row per tick scored through ``mmlab.ml.infer`` with no
training library in the process, and the decisions and paper fills of the backtest of the session's recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from mmlab.cli import app

#: Trains and exports a model, then runs two live sessions (~50 s): run by `pytest -m slow` (CI runs it).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]

CONFIG = """
[data]
venue = "bybit-linear"
symbols = ["BTCUSDT", "ETHUSDT"]

[sim]
entry_latency_ms = 10.0
response_latency_ms = 10.0

[strategy]
name = "grid"
interval_ms = 100.0
grid_num = 3
half_spread_ticks = 1.0
order_qty = 0.01
max_position = 1.0

[model]
id = "{model}"
shadow_id = "{model}"
tau_entry = {tau}
tau_hold = {tau_hold}

[live]
warmup_s = 0.0
book_depth = 200
horizon_margin_ms = 300.0
stale_ms = 20000.0
"""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tick-feature model trained on the labels of a short grid backtest of a synthetic market and exported."""
    from mmlab.config import load_config
    from mmlab.data.synth import synth
    from mmlab.ml.export import export_onnx
    from mmlab.ml.train import train_model
    from mmlab.sim.engine import run_backtest, write_run

    root = tmp_path_factory.mktemp("live_model")
    synth(root / "store", hours=0.1, seed=3, symbol="BTCUSDT", venue="bybit-linear")
    cfg = load_config({"data": {"root": str(root / "store"), "venue": "bybit-linear", "symbols": ["BTCUSDT"]},
                       "strategy": {"interval_ms": 100.0, "grid_num": 3, "half_spread_ticks": 1.0, "order_qty": 0.01,
                                    "max_position": 1.0}})
    run = write_run(run_backtest(cfg), root / "run")
    d = root / "models" / "m3"
    train_model([run / "labels.parquet"], target="filled_1s", out=d, seed=7, num_boost_round=20, features="tick")
    export_onnx(d)
    return d


SESSION = r"""
import asyncio, json, sys
from pathlib import Path
from live.replay import ReplayVenue, load_cryptofeed
from live.runner import LiveRunner
from mmlab.config import load_config

rec = load_cryptofeed(Path(sys.argv[1]) / "bybit" / "BYBIT.jsonl.gz", "/v5/public/linear")

async def main():
    v = await ReplayVenue(rec, speed=4.0).start()
    raw = {"data": {"venue": "bybit-linear", "symbols": ["BTCUSDT", "ETHUSDT"]},
           "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.01, "max_position": 1.0},
           "model": {"id": sys.argv[2], "shadow_id": sys.argv[2]},
           "live": {"venue": "bybit-linear", "warmup_s": 0.0, "book_depth": 200, "horizon_margin_ms": 50.0,
                    "stale_ms": 20000.0, "step_ms": 10.0, "ws_url": v.url,
                    "tick_sizes": {"BTCUSDT": 0.1, "ETHUSDT": 0.01}, "lot_sizes": {"BTCUSDT": 0.001, "ETHUSDT": 0.01}}}
    r = LiveRunner(load_config(raw), out_dir=sys.argv[3])
    try:
        s = await r.run(2.0)
    finally:
        await v.close()
    hist = r.metrics.registry.get_sample_value("mm_model_score_seconds_count")
    return s, hist

s, hist = asyncio.run(main())
print(json.dumps({"modules": sorted(m for m in ("lightgbm", "sklearn", "onnxruntime", "onnx", "mmlab.ml.train",
                                                  "mmlab.labels.forward") if m in sys.modules),
                  "model": s["model"], "n_decisions": s["n_decisions"], "score_latency_count": hist}))
"""


def test_live_session_with_a_model_scores_every_tick_without_training_libraries(real_data, model_dir, tmp_path):
    r = subprocess.run([sys.executable, "-c", SESSION, str(real_data), str(model_dir), str(tmp_path / "out")],
                       check=False, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["modules"] == ["onnxruntime"]  # no lightgbm, sklearn, onnx (export) or label code
    m = got["model"]
    assert m["id"] == "m3" and m["scoring"] == "row" and m["shadow_id"] == "m3"
    # Every decision tick scored (the shutdown ticks included), each symbol a row.
    assert m["n_decision_ticks_scored"] >= got["n_decisions"] > 5
    assert m["n_ticks_scored"] == 2 * m["n_decision_ticks_scored"]
    assert m["shadow_score_distribution"] == m["model_score_distribution"]  # the same model in the shadow slot
    assert got["score_latency_count"] == m["n_decision_ticks_scored"]
    assert m["score_us_p50"] > 0


def test_live_paper_session_with_a_model_matches_the_backtest_of_its_recording(bybit_recording, live_then_backtest,
                                                                               model_dir, tmp_path):
    from live.replay import ReplayVenue

    # Thresholds inside the model's score range on this market: the model decides which quotes go out.
    cfg_path = tmp_path / "live.toml"
    cfg_path.write_text(CONFIG.replace("{model}", str(model_dir)).replace("{tau}", "0.375").replace("{tau_hold}", "0.37"))
    venue = ReplayVenue(bybit_recording, speed=12.0)
    summary, live_out, store, run = live_then_backtest(cfg_path, venue, venue_name="bybit-linear",
                                                       symbols="BTCUSDT,ETHUSDT")
    assert venue.done.is_set(), "the replay did not finish within the session"
    assert summary["late_exch_events"] == 0 and summary["gaps"] == 0 and summary["reconnects"] == 0
    assert summary["n_decisions"] > 50 and summary["working_orders_after_cancel_all"] == 0
    assert summary["strategy"] == "grid" and summary["model"]["tau_entry"] == 0.375
    bs = json.loads((run / "summary.json").read_text())
    assert bs["events"] == summary["events"] and bs["model"]["id"] == summary["model"]["id"] == "m3"

    # decisions.parquet row for row over the backtest's span (wall-time stage timings aside).
    bd = pl.read_parquet(run / "decisions.parquet")
    t_end = bd["ts_local"].max()
    ld = pl.read_parquet(live_out / "decisions.parquet").filter(pl.col("ts_local") <= t_end)
    assert ld.columns == bd.columns and ld.height == bd.height > 50
    same = [c for c in bd.columns if not c.endswith("_ns")]
    diff = [c for c in same if not ld[c].equals(bd[c])]
    assert not diff, diff
    lv = pl.read_ndjson(live_out / "ticks.jsonl").filter(pl.col("ts_local") <= t_end)
    assert (lv["reason"].to_numpy() >= 0).all()  # no live gate held a tick in the compared span
    # The same paper fills, one for one.
    bf = pl.read_parquet(run / "fills.parquet")
    text = (live_out / "fills.jsonl").read_text()
    lf = pl.read_ndjson(live_out / "fills.jsonl").filter(pl.col("ts_local") <= t_end) if text else pl.DataFrame()
    assert lf.height == bf.height > 0
    for col in ("ts_exch", "ts_local", "symbol", "order_id", "side", "price_ticks", "qty", "maker", "fee"):
        assert lf[col].to_list() == bf[col].to_list(), col

    # The model mattered: with its thresholds off the same recording gives other decisions.
    plain = tmp_path / "plain"
    r = CliRunner().invoke(app, ["backtest", "--config", str(cfg_path), "--data", str(store), "--out", str(plain),
                         "--no-report", "--quiet", "--set", "model.tau_entry=0.0", "--set", "model.tau_hold=0.0"])
    assert r.exit_code == 0, r.output
    pd_ = pl.read_parquet(plain / "decisions.parquet")
    assert pd_.height == bd.height and not pd_.select(same).equals(bd.select(same))
