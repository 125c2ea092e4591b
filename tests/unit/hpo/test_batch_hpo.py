"""`mmlab hpo --batch K`: trials asked K at a time and run in one pass get the values of one-by-one runs."""

import polars as pl
import pytest
from conftest import study_dict
from typer.testing import CliRunner

from mmlab.cli import app
from mmlab.hpo import segments as seg_mod
from mmlab.hpo.objective import evaluate, evaluate_batch
from mmlab.hpo.runner import run_study
from mmlab.hpo.study import parse_study

pytestmark = pytest.mark.real_data


def _params(row: dict) -> dict:
    return {k[len("param."):]: v for k, v in row.items() if k.startswith("param.") and v is not None}


def test_batched_trials_get_the_values_of_one_by_one_runs(btc_store, tmp_path):
    sc = parse_study(study_dict(btc_store, pruner="none"))
    res = run_study(sc, 4, storage=f"journal:{tmp_path / 'j.log'}", out=tmp_path / "out", batch=4)
    assert res["batch"] == 4
    df = pl.read_parquet(tmp_path / "out" / "trials.parquet")
    assert df.height == 4 and set(df["state"].to_list()) == {"complete"}
    values = set()
    for row in df.iter_rows(named=True):
        cfg = sc.trial_config({k: (int(v) if k == "strategy.grid_num" else v) for k, v in _params(row).items()})
        specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
        assert evaluate(cfg, specs, segs).summary["pnl_net"] == row["value.pnl_net"]
        values.add(row["value.pnl_net"])
    assert len(values) > 1


def test_evaluate_batch_stops_the_sets_it_is_told_to(btc_store):
    sc = parse_study(study_dict(btc_store))
    cfgs = [sc.trial_config({"strategy.half_spread_ticks": h, "strategy.grid_num": 2}) for h in (0.5, 1.5, 3.0)]
    specs, segs = seg_mod.load_segments(cfgs[0], sc.segment_ns)
    assert len(segs) == 2
    seen = []

    def on_segment(k, combined):
        seen.append([c is not None for c in combined])
        return {1} if k == 0 else set()

    evs = evaluate_batch(cfgs, specs, segs, on_segment=on_segment)
    assert seen == [[True, True, True], [True, False, True]]
    assert evs[1] is None
    for cfg, ev in zip((cfgs[0], cfgs[2]), (evs[0], evs[2])):
        one = evaluate(cfg, specs, segs)
        assert ev.summary["pnl_net"] == one.summary["pnl_net"] and ev.summary["n_fills"] == one.summary["n_fills"]
        assert ev.regimes.keys() == one.regimes.keys()


def test_pruning_and_sets_that_cannot_share_a_pass(btc_store, tmp_path):
    # Median pruning over 1-minute segments works inside batches.
    sc = parse_study(study_dict(btc_store, name="pruned"))
    run_study(sc, 6, storage=f"journal:{tmp_path / 'p.log'}", out=tmp_path / "p", batch=3, export=False)
    # A search over a sim key cannot share a pass: the trials run one by one, with the same values.
    d = study_dict(btc_store, name="sim", pruner="none")
    d["search"] = {"sim.entry_latency_ms": {"low": 1.0, "high": 20.0}}
    sc = parse_study(d)
    res = run_study(sc, 2, storage=f"journal:{tmp_path / 's.log'}", out=tmp_path / "s", batch=2)
    df = pl.read_parquet(tmp_path / "s" / "trials.parquet")
    assert set(df["state"].to_list()) == {"complete"} and res["batch"] == 2
    row = df.row(0, named=True)
    cfg = sc.trial_config(_params(row))
    specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
    assert evaluate(cfg, specs, segs).summary["pnl_net"] == row["value.pnl_net"]


def test_cli_batch_option(btc_store, tmp_path):
    from test_cli_hpo import study_toml

    path = tmp_path / "study.toml"
    path.write_text(study_toml(btc_store))
    r = CliRunner().invoke(app, ["hpo", "--config", str(path), "--n-trials", "2", "--batch", "2",
                                 "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    assert '"batch": 2' in r.output
    r = CliRunner().invoke(app, ["hpo", "--config", str(path), "--n-trials", "2", "--batch", "0",
                                 "--out", str(tmp_path / "o2")])
    assert r.exit_code == 2 and "--batch must be >= 1, got 0" in r.output
