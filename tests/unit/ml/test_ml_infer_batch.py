"""Batch scoring of OnnxScorer: chunks spread over threads give the single-row scores bit for bit."""

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 40-tree binary LightGBM model on synthetic rows, exported as ``mmlab export-onnx`` writes it."""
    import lightgbm as lgb

    from mmlab.ml.export import OUTPUT_NAME, booster_to_onnx

    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 5)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 2] + rng.normal(0, 0.5, len(X)) > 0).astype(np.int8)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": 0, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=40)
    d = tmp_path_factory.mktemp("infer") / "m"
    d.mkdir()
    (d / "model.onnx").write_bytes(booster_to_onnx(booster, X.shape[1]).SerializeToString())
    (d / "model.json").write_text(json.dumps({"model_id": "m", "features": [f"f{i}" for i in range(X.shape[1])],
                                              "schema_hash": "x", "output": OUTPUT_NAME, "positive_class_column": 0}))
    return d


def _rows(n: int, seed: int = 4) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, 5)).astype(np.float32)
    X[::97, 1] = np.nan
    return X


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_batch_is_bit_identical_to_rows(model_dir, threads):
    from mmlab.ml.infer import OnnxScorer

    one, many = OnnxScorer(model_dir), OnnxScorer(model_dir, batch_threads=threads)
    X = _rows(20_011)
    ref = one.score_batch(X)
    assert np.array_equal(many.score_batch(X), ref)
    assert np.array_equal(many.score_batch(X, chunk_rows=1000), ref)
    assert np.array_equal(many.score_batch(X[:100]), ref[:100])  # small batch: on the calling thread
    rows = np.array([one.score_row(x) for x in X[::50]])
    assert np.array_equal(rows, ref[::50])


def test_batch_edges(model_dir):
    from mmlab.errors import ConfigError, DataError
    from mmlab.ml.infer import OnnxScorer

    sc = OnnxScorer(model_dir, batch_threads=2)
    assert sc.score_batch(np.zeros((0, 5), np.float32)).shape == (0,)
    X = _rows(9000)
    assert np.array_equal(sc.score_batch(X.astype(np.float64)), sc.score_batch(X))  # float64 input cast once
    assert np.array_equal(sc.score_batch(np.asfortranarray(X)), sc.score_batch(X))
    with pytest.raises(DataError, match="shape"):
        sc.score_batch(X[:, :3])
    with pytest.raises(ConfigError, match="batch_threads"):
        OnnxScorer(model_dir, batch_threads=0)
