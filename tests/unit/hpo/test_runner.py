"""Studies on a 2-minute window of the real BTCUSDT capture: outputs, seeds, pruning, reuse of loaded events."""

import json
import tomllib

import polars as pl
import pytest

from mmlab.config import load_config
from mmlab.hpo import segments as seg_mod
from mmlab.hpo.objective import combine_summaries, evaluate, segment_result
from mmlab.hpo.runner import run_study
from mmlab.hpo.study import parse_study
from mmlab.sim.engine import WALL_TIME_KEYS, run_backtest

from conftest import study_dict

pytestmark = pytest.mark.real_data


def test_study_folder_holds_best_toml_trials_charts_report_and_presets(btc_store, tmp_path):
    sc = parse_study(study_dict(btc_store, top_n=2, pruner="none"))
    res = run_study(sc, 3, storage=f"journal:{tmp_path / 'j.log'}", out=tmp_path / "out")
    out = tmp_path / "out"
    for name in ("best.toml", "trials.parquet", "history.png", "importances.png", "report.md", "study.toml"):
        assert (out / name).exists(), name
    assert len(list((out / "presets").glob("top*_trial*.toml"))) == 2
    df = pl.read_parquet(out / "trials.parquet")
    assert df.height == 3 and {"param.strategy.half_spread_ticks", "value.pnl_net", "feasible", "m.taker_share",
                               "regime.normal.pnl_net"} <= set(df.columns)
    # best.toml is a plain backtest config; its run over the same segments gives the stored value.
    cfg = load_config(out / "best.toml")
    assert cfg.strategy.half_spread_ticks == pytest.approx(res["best_params"]["strategy.half_spread_ticks"])
    specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
    assert evaluate(cfg, specs, segs).summary["pnl_net"] == pytest.approx(res["best_values"][0], abs=1e-9)
    assert "## Best trial" in (out / "report.md").read_text()
    assert tomllib.loads((out / "study.toml").read_text())["objective"]["metrics"] == ["pnl_net"]


def test_same_seed_gives_the_same_trials(btc_store, tmp_path):
    sc = parse_study(study_dict(btc_store, pruner="none"))
    a = run_study(sc, 3, storage=f"journal:{tmp_path / 'a.log'}", out=tmp_path / "a", export=False)
    b = run_study(sc, 3, storage=f"journal:{tmp_path / 'b.log'}", out=tmp_path / "b", export=False)
    from mmlab.hpo.export import export_study
    from mmlab.hpo.runner import create_study

    ra = export_study(create_study(sc, a["storage"]), sc, tmp_path / "a")
    rb = export_study(create_study(sc, b["storage"]), sc, tmp_path / "b")
    assert ra["best_params"] == rb["best_params"] and ra["best_values"] == rb["best_values"]


def test_pruner_stops_a_worse_trial_after_its_first_segment(btc_store, tmp_path):
    from mmlab.hpo.runner import create_study

    sc = parse_study(study_dict(btc_store, pruner="median", n_startup_trials=1, split="0.5min"))
    url = f"journal:{tmp_path / 'p.log'}"
    st = create_study(sc, url)
    st.enqueue_trial({"strategy.half_spread_ticks": 4.0, "strategy.grid_num": 1})  # better at every segment
    st.enqueue_trial({"strategy.half_spread_ticks": 0.5, "strategy.grid_num": 3})
    res = run_study(sc, 2, storage=url, out=tmp_path / "p")
    df = pl.read_parquet(tmp_path / "p" / "trials.parquet").sort("number")
    assert df["state"].to_list() == ["complete", "pruned"] and res["states"]["pruned"] == 1
    assert df["n_steps"].to_list() == [4, 1]
    assert df["pruned_after_segment"].to_list() == [None, "2024-07-19T00:00"]


def test_events_are_loaded_once_per_worker(btc_store, monkeypatch):
    sc = parse_study(study_dict(btc_store))
    seg_mod.clear_cache()
    calls = []
    from mmlab.data import bridge

    real = bridge.load_events
    monkeypatch.setattr(bridge, "load_events", lambda *a, **k: calls.append(1) or real(*a, **k))
    for hs in (1.0, 2.0):
        seg_mod.load_segments(sc.trial_config({"strategy.half_spread_ticks": hs}), sc.segment_ns)
    assert len(calls) == 1


def test_one_segment_summary_is_the_backtest_summary(btc_store):
    sc = parse_study(study_dict(btc_store, split="none"))
    cfg = sc.base_config()
    specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
    assert len(segs) == 1
    ev = evaluate(cfg, specs, segs)
    direct = run_backtest(cfg).summary
    for k, v in direct.items():
        if k not in WALL_TIME_KEYS and k != "per_symbol":
            assert ev.summary[k] == pytest.approx(v, nan_ok=True), k


def test_combined_segments_add_counts_and_weight_rates(btc_store):
    sc = parse_study(study_dict(btc_store))
    cfg = sc.base_config()
    specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
    parts = [segment_result(run_backtest(cfg, events=s.events, symbols=specs)) for s in segs]
    c = combine_summaries(parts)
    assert c["n_fills"] == sum(p.summary["n_fills"] for p in parts)
    assert c["pnl_net"] == pytest.approx(sum(p.summary["pnl_net"] for p in parts))
    w = sum(p.summary["fill_rate"] * p.summary["n_orders"] for p in parts) / sum(p.summary["n_orders"] for p in parts)
    assert c["fill_rate"] == pytest.approx(w)
    assert c["n_segments"] == len(segs) == 2
    json.dumps(c)
