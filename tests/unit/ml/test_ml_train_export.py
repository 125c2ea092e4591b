"""Training is reproducible to the byte; metrics are right; ONNX export keeps parity or fails loudly."""

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from mmlab.analysis.drift import brier_score, expected_calibration_error
from mmlab.cli import app
from mmlab.errors import DataError, ParityError
from mmlab.ml.export import ParitySpec, export_onnx, parity_figures
from mmlab.ml.train import average_precision, choose_tau, train_model

runner = CliRunner()


def test_average_precision_matches_sklearn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    y = rng.random(2000) < 0.2
    p = np.round(np.clip(y * 0.3 + rng.random(2000) * 0.7, 0, 1), 2)  # rounded: ties
    assert average_precision(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_brier_and_ece_by_hand():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.1, 0.6, 0.6])
    assert brier_score(y, p) == pytest.approx((0.01 + 0.01 + 0.16 + 0.36) / 4)
    # bins: 0.1 -> [0], 0.6 -> two rows (mean y 0.5, mean p 0.6), 0.9 -> [1]
    assert expected_calibration_error(y, p) == pytest.approx((0.1 + 2 * 0.1 + 0.1) / 4)


def test_choose_tau_maximizes_f1_and_respects_min_precision():
    y = np.array([1, 1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    assert choose_tau(y, p) == 0.6
    assert choose_tau(y, p, min_precision=1.0) == 0.8


def test_same_inputs_give_the_same_model_bytes(btc_run, tmp_path):
    a = train_model([btc_run / "labels.parquet"], target="filled_1s", out=tmp_path / "a", seed=3, num_boost_round=40)
    b = train_model([btc_run / "labels.parquet"], target="filled_1s", out=tmp_path / "b", seed=3, num_boost_round=40,
                    model_id="a")
    assert (tmp_path / "a" / "model.txt").read_bytes() == (tmp_path / "b" / "model.txt").read_bytes()
    assert (tmp_path / "a" / "lgbm_meta.json").read_bytes() == (tmp_path / "b" / "lgbm_meta.json").read_bytes()
    assert a == b


def test_meta_holds_what_a_release_needs(trained):
    meta = json.loads((trained / "lgbm_meta.json").read_text())
    for k in ("features", "schema_hash", "thresholds", "metrics", "data_windows", "config_id", "seed", "sources"):
        assert meta[k] is not None, k
    assert meta["seed"] == 7 and meta["target"] == "filled_1s" and meta["horizon_ms"] == 1000.0
    th = meta["thresholds"]
    assert 0 < th["tau_hold"] == pytest.approx(0.8 * th["tau_entry"])
    test = meta["metrics"]["test"]
    for k in ("pr_auc", "precision_at_tau", "brier", "ece", "base_rate", "rows"):
        assert k in test
    assert test["pr_auc"] > test["base_rate"]  # better than chance on held-out rows
    w = meta["data_windows"]
    assert w["train"][1] + 1e9 < w["valid"][0] and w["valid"][1] + 1e9 < w["test"][0]


def test_export_writes_onnx_with_the_opsets_and_passes_parity(trained):
    info = json.loads((trained / "model.json").read_text())
    assert info["opset"] == {"": 17, "ai.onnx.ml": 3}
    par = json.loads((trained / "parity.json").read_text())
    assert par["passed"] and par["split"] == "test" and par["n_mismatch"] == 0 and par["rows"] > 100
    import onnx

    m = onnx.load(str(trained / "model.onnx"))
    props = {p.key: p.value for p in m.metadata_props}
    assert props["schema_hash"] == info["schema_hash"] and json.loads(props["features"]) == info["features"]
    assert [o.name for o in m.graph.output] == ["probability"]  # one output: no label, no p(0) column
    assert [n.op_type for n in m.graph.node] == ["TreeEnsembleRegressor", "Sigmoid"] and info["positive_class_column"] == 0


def test_parity_figures_count_mismatches():
    a = np.zeros(1000)
    b = a.copy()
    b[:5] = 1e-3
    f = parity_figures(a, b, ParitySpec())
    assert f["n_mismatch"] == 5 and f["mismatch_rate"] == 0.005 and not f["passed"]
    assert parity_figures(a, a + 1e-7)["passed"]


def test_parity_failure_raises_with_counts_and_cli_exits_1(trained, tmp_path):
    import shutil

    d = tmp_path / "strict"
    shutil.copytree(trained, d)
    (d / "model.onnx").unlink()
    with pytest.raises(ParityError, match=r"rows differ by more than 0\.0 .*model.onnx was not written"):
        export_onnx(d, spec=ParitySpec(atol_quantile=0.0, mismatch_atol=0.0, max_mismatch_rate=0.0))
    assert not (d / "model.onnx").exists()
    r = runner.invoke(app, ["export-onnx", str(d), "--no-register", "--mismatch-atol", "0", "--atol-quantile", "0",
                            "--max-mismatch-rate", "0"])
    assert r.exit_code == 1 and "FAIL" in r.output and "mismatch" in r.output


def test_schema_mismatch_with_the_sidecar_is_refused(trained, tmp_path):
    import shutil

    d = tmp_path / "tampered"
    shutil.copytree(trained, d)
    side = d / "dataset.schema.json"
    s = json.loads(side.read_text())
    s["schema_hash"] = "0" * 16
    side.write_text(json.dumps(s))
    with pytest.raises(ParityError, match="schema hash mismatch .*dataset.schema.json 0000000000000000"):
        export_onnx(d)


def test_train_cli_forms(btc_run, tmp_path):
    out = tmp_path / "models" / "cli1"
    r = runner.invoke(app, ["train", "--labels", str(btc_run / "labels.parquet"), "--target", "filled_1s",
                            "--out", str(out), "--seed", "5", "--rounds", "30"])
    assert r.exit_code == 0, r.output
    assert "tau_entry=" in r.output and (out / "model.txt").exists()
    r = runner.invoke(app, ["train", "--labels", str(btc_run / "labels.parquet"), "--target", "filled_9s", "--out", str(out)])
    assert r.exit_code == 2 and "filled_9s" in r.output
    with pytest.raises(DataError, match="not a model directory"):
        export_onnx(tmp_path / "nothing")


@pytest.mark.parametrize("backend", ["compiled", "onnxruntime"])
def test_infer_imports_no_training_library(trained, backend):
    code = ("import json, sys; import numpy as np; from mmlab.ml.infer import OnnxScorer; "
            f"s = OnnxScorer({str(trained)!r}, backend={backend!r}); s.score_row(np.zeros(len(s.features))); "
            "s.score_batch(np.zeros((3, len(s.features)))); print(json.dumps(sorted(sys.modules)))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout))
    for bad in ("lightgbm", "sklearn", "skl2onnx", "onnxmltools", "polars", "mmlab.ml.train", "mmlab.sim"):
        assert bad not in loaded, bad
    assert "onnxruntime" in loaded
    # The compiled backend's kernels are numba's (the live runner loads numba anyway); no backend loads the onnx
    # package (the compiled one decodes the graph itself).
    assert ("numba" in loaded and "mmlab.ml.trees_nb" in loaded) == (backend == "compiled")
    assert "onnx" not in loaded and "google.protobuf" not in loaded


def test_batch_scores_equal_row_scores(trained):
    import polars as pl

    from mmlab.ml.infer import OnnxScorer

    sc = OnnxScorer(trained)
    df = pl.read_parquet(trained / "dataset.parquet")
    X = np.column_stack([df[f].to_numpy() for f in sc.features]).astype(np.float32)
    batch = sc.score_batch(X, chunk_rows=97)
    rows = np.array([sc.score_row(x) for x in X])
    assert np.array_equal(batch, rows)
    with pytest.raises(DataError, match="expects shape"):
        sc.score_batch(X[:, :3])


def test_exports_of_the_two_column_layout_score_the_same(trained, tmp_path):
    """model.onnx files written with the converter's classifier (label + probabilities [n, 2]) still load."""
    import shutil

    import lightgbm as lgb
    import polars as pl

    from mmlab.ml.export import booster_to_onnx
    from mmlab.ml.infer import OnnxScorer

    old = tmp_path / "old"
    shutil.copytree(trained, old)
    info = json.loads((old / "model.json").read_text())
    booster = lgb.Booster(model_file=str(old / "model.txt"))
    (old / "model.onnx").write_bytes(booster_to_onnx(booster, len(info["features"]), classifier=True).SerializeToString())
    for k in ("output", "positive_class_column"):
        info.pop(k)
    (old / "model.json").write_text(json.dumps(info))
    df = pl.read_parquet(trained / "dataset.parquet")
    X = np.column_stack([df[f].to_numpy() for f in info["features"]]).astype(np.float32)
    new, legacy, two = OnnxScorer(trained), OnnxScorer(old), OnnxScorer(trained, batch_threads=2)
    assert np.allclose(new.score_batch(X), legacy.score_batch(X), rtol=0, atol=1e-6)
    # Two threads score separate row chunks with the same single-threaded kernel: bit-identical scores.
    assert np.array_equal(two.score_batch(X, chunk_rows=257), new.score_batch(X))
    assert legacy.score_row(X[0]) == pytest.approx(new.score_row(X[0]), abs=1e-6)
