"""Walk-forward runner: folds from the segments, search on train, out-of-sample evaluation, report, CLI."""

import json
import tomllib

import pytest
from conftest import study_dict
from typer.testing import CliRunner

from mmlab.config import load_config
from mmlab.errors import DataError
from mmlab.hpo.study import load_study
from mmlab.hpo.walkforward import run_walk_forward


def _study(root, **kw):
    d = study_dict(root, **kw)
    d["base"]["data"]["end"] = "2024-07-19T00:03:00Z"  # three 1-minute segments
    return d


def test_walk_forward_folds_and_out_of_sample(btc_store, tmp_path):
    sc = load_study(_study(btc_store, name="wf"))
    res = run_walk_forward(sc, folds=2, n_trials=3, out=tmp_path / "wf")
    assert res["segments"] == 3 and res["train"] == 1 and len(res["folds"]) == 2
    f0, f1 = res["folds"]
    assert f0["train"] == ["2024-07-19T00:00"] and f0["test"] == ["2024-07-19T00:01"]
    assert f1["train"] == ["2024-07-19T00:01"] and f1["test"] == ["2024-07-19T00:02"]
    for f in res["folds"]:
        assert f["n_trials"] == 3
        if f["best_params"] is not None:
            assert f["test_value"] is not None and f["base_test_value"] is not None
            cfg = load_config(f["best_toml"])
            assert cfg.strategy.grid_num == f["best_params"]["strategy.grid_num"]
    assert json.loads((tmp_path / "wf" / "walkforward.json").read_text())["folds"][0]["test"] == f0["test"]
    assert "| fold |" in (tmp_path / "wf" / "walkforward.md").read_text()
    # Seeded: the same study gives the same folds.
    again = run_walk_forward(sc, folds=2, n_trials=3, out=tmp_path / "wf2")
    assert [f["best_params"] for f in again["folds"]] == [f["best_params"] for f in res["folds"]]


def test_walk_forward_needs_enough_segments(btc_store, tmp_path):
    sc = load_study(_study(btc_store, name="wf3"))
    with pytest.raises(DataError, match="need at least 4 segments"):
        run_walk_forward(sc, folds=3, n_trials=1, out=tmp_path)


def test_walk_forward_cli(btc_store, tmp_path):
    from mmlab.cli import app
    from mmlab.config import dumps_toml

    p = tmp_path / "study.toml"
    d = _study(btc_store, name="wfcli")
    p.write_text(dumps_toml({k: v for k, v in d.items() if k != "base" and k != "search"})
                 + "\n" + "\n".join(f"[base.{s}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in t.items())
                                    for s, t in d["base"].items())
                 + "\n[search]\n" + "\n".join(f'"{k}" = {{low = {v["low"]}, high = {v["high"]}}}'
                                              for k, v in d["search"].items()) + "\n")
    assert tomllib.loads(p.read_text())["search"]
    r = CliRunner().invoke(app, ["hpo", "walk-forward", "--config", str(p), "--folds", "1", "--n-trials", "2",
                                 "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert len(res["folds"]) == 1 and res["folds"][0]["test"] == ["2024-07-19T00:02"] and res["train"] == 2
    r = CliRunner().invoke(app, ["hpo", "walk-forward", "--config", str(p), "--folds", "0"])
    assert r.exit_code == 2 and "--folds must be >= 1" in r.output
