"""Compiled tree ensemble scoring (mmlab.ml.trees_nb) against onnxruntime, and the OnnxScorer backends."""

import json

import numpy as np
import pytest

from mmlab.errors import ConfigError, DataError, ParityError

N_FEATURES = 5


def _booster():
    import lightgbm as lgb

    rng = np.random.default_rng(11)
    X = rng.normal(size=(3000, N_FEATURES)).astype(np.float32)
    X[::13, 1] = np.nan
    X[::7, 3] = 0.0
    y = (X[:, 0] + 0.5 * np.nan_to_num(X[:, 1], nan=1.0) * X[:, 2] + rng.normal(0, 0.5, len(X)) > 0).astype(np.int8)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": 0, "deterministic": True}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=30)


def _write(d, onx, output="probability", column=0):
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.onnx").write_bytes(onx.SerializeToString())
    (d / "model.json").write_text(json.dumps({"model_id": d.name, "features": [f"f{i}" for i in range(N_FEATURES)],
                                              "schema_hash": "x", "output": output, "positive_class_column": column}))
    return d


@pytest.fixture(scope="module")
def booster():
    return _booster()


@pytest.fixture(scope="module")
def model_dir(booster, tmp_path_factory):
    """The 30-tree model as ``mmlab export-onnx`` writes it (TreeEnsembleRegressor -> Sigmoid)."""
    from mmlab.ml.export import booster_to_onnx

    return _write(tmp_path_factory.mktemp("trees") / "m", booster_to_onnx(booster, N_FEATURES))


def _rows(n: int, seed: int = 5) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, N_FEATURES)).astype(np.float32)
    X[::17, 1] = np.nan
    X[::29, 4] = np.nan
    X[::31] = np.nan
    X[5::37, 0] = np.inf
    X[6::37, 2] = -np.inf
    return X


def _ort(path, X, output, column=0):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run([output], {sess.get_inputs()[0].name: X})[0][:, column].astype(np.float64)


def _compiled(path, X, output, column=0):
    from mmlab.ml.trees_nb import read_tree_ensemble, tree_score_rows_nb

    ens = read_tree_ensemble(path, output, column)
    out = np.empty(len(X))
    tree_score_rows_nb(*ens.args(), np.ascontiguousarray(X), 0, len(X), out)
    return ens, out


def _probe_and_rows(ens):
    from mmlab.ml.infer import probe_rows

    return np.concatenate([probe_rows(ens), _rows(5000)])


def test_exported_graph_matches_onnxruntime(model_dir):
    path = model_dir / "model.onnx"
    ens, _ = _compiled(path, _rows(10), "probability")
    X = _probe_and_rows(ens)
    _, got = _compiled(path, X, "probability")
    # onnxruntime's Sigmoid op approximates the logistic: about one float32 ulp apart.
    assert np.abs(got - _ort(path, X, "probability")).max() <= 2.5e-7


def test_graph_decoder_reads_what_the_onnx_package_reads(booster, tmp_path):
    import onnx
    from onnx import helper

    from mmlab.ml.export import booster_to_onnx
    from mmlab.ml.trees_nb import _decode_graph

    for onx in (booster_to_onnx(booster, N_FEATURES), booster_to_onnx(booster, N_FEATURES, classifier=True),
                _tree_graph(["BRANCH_LT"] * 3 + [L] * 4 + ["BRANCH_GT", L, "BRANCH_NEQ", L, L, L], [1] * 13,
                            base_values=[-0.5])):
        g = _decode_graph(onx.SerializeToString())
        assert [i.name for i in g.input] == [i.name for i in onx.graph.input]
        assert g.input[0].dims == [None, N_FEATURES] and g.input[0].elem_type == onnx.TensorProto.FLOAT
        assert g.output == [o.name for o in onx.graph.output]
        assert [(n.op_type, n.domain, n.input, n.output) for n in g.node] == \
            [(n.op_type, n.domain, list(n.input), list(n.output)) for n in onx.graph.node]
        for mine, ref in zip(g.node, onx.graph.node):
            want = {a.name: helper.get_attribute_value(a) for a in ref.attribute}
            want = {k: (v.decode() if isinstance(v, bytes) else [x.decode() for x in v]
                        if isinstance(v, list) and v and isinstance(v[0], bytes) else v) for k, v in want.items()}
            assert mine.attrs == want


def test_raw_sums_and_threshold_decisions_are_onnxruntime_s_bit_for_bit(booster, tmp_path):
    """Without the Sigmoid the compiled sum equals onnxruntime's exactly, on rows at, just below and just above
    every threshold and on NaN/inf rows: every node sends every row where onnxruntime does."""
    import onnx
    from onnx import TensorProto, helper

    from mmlab.ml.export import booster_to_onnx

    onx = booster_to_onnx(booster, N_FEATURES)
    g = onx.graph
    g.node.pop()  # Sigmoid
    g.output.pop()
    g.output.append(helper.make_tensor_value_info("raw_score", TensorProto.FLOAT, [None, 1]))
    path = tmp_path / "raw.onnx"
    onnx.save(onx, str(path))
    ens, _ = _compiled(path, _rows(10), "raw_score")
    X = _probe_and_rows(ens)
    _, got = _compiled(path, X, "raw_score")
    assert np.array_equal(got, _ort(path, X, "raw_score"))


@pytest.mark.parametrize("column", [1, 0])
def test_classifier_graph_is_bit_identical(booster, tmp_path, column):
    from mmlab.ml.export import booster_to_onnx
    from mmlab.ml.infer import OnnxScorer

    d = _write(tmp_path / "cls", booster_to_onnx(booster, N_FEATURES, classifier=True), "probabilities", column)
    comp, ref = OnnxScorer(d), OnnxScorer(d, backend="onnxruntime")
    X = _probe_and_rows(comp._ens)
    assert np.array_equal(comp.score_batch(X), ref.score_batch(X))
    assert comp.probe_max_abs_diff == 0.0


def _tree_graph(modes, tracks, **extra):
    """A hand-made TreeEnsembleRegressor (post_transform NONE) using every node mode, with NaN and inf edges."""
    import onnx
    from onnx import TensorProto, helper

    # tree 0: n0 ? n1 : n2; n1 ? l3 : l4; n2 ? l5 : l6.  tree 1: n0 ? l1 : n2; n2 ? l3 : l4.  tree 2: one leaf.
    feats = [0, 1, 2, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0]
    thr = [0.5, -1.0, 2.0, 0, 0, 0, 0, 0.25, 0, float("inf"), 0, 0, 0]
    ids = {"nodes_treeids": [0] * 7 + [1] * 5 + [2], "nodes_nodeids": [0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 0],
           "nodes_featureids": feats, "nodes_values": thr, "nodes_modes": modes,
           "nodes_truenodeids": [1, 3, 5, 0, 0, 0, 0, 1, 0, 3, 0, 0, 0],
           "nodes_falsenodeids": [2, 4, 6, 0, 0, 0, 0, 2, 0, 4, 0, 0, 0],
           "nodes_missing_value_tracks_true": tracks,
           "target_treeids": [0, 0, 0, 0, 1, 1, 1, 2], "target_nodeids": [3, 4, 5, 6, 1, 3, 4, 0],
           "target_ids": [0] * 8, "target_weights": [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 0.125], "n_targets": 1}
    ids.update(extra)
    node = helper.make_node("TreeEnsembleRegressor", ["input"], ["score"], domain="ai.onnx.ml", **ids)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_FEATURES])],
                          [helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


L = "LEAF"


@pytest.mark.parametrize("modes", [
    ["BRANCH_LT", "BRANCH_GTE", "BRANCH_EQ", L, L, L, L, "BRANCH_GT", L, "BRANCH_NEQ", L, L, L],
    ["BRANCH_EQ", "BRANCH_NEQ", "BRANCH_LEQ", L, L, L, L, "BRANCH_LT", L, "BRANCH_LEQ", L, L, L],
    ["BRANCH_NEQ", "BRANCH_GT", "BRANCH_GTE", L, L, L, L, "BRANCH_EQ", L, "BRANCH_GTE", L, L, L],
])
@pytest.mark.parametrize("tracks", [[0] * 13, [1] * 13, [1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]])
def test_every_node_mode_and_nan_rule_matches_onnxruntime(tmp_path, modes, tracks):
    import onnx

    path = tmp_path / "modes.onnx"
    onnx.save(_tree_graph(modes, tracks, base_values=[0.5]), str(path))
    ens, _ = _compiled(path, _rows(10), "score")
    edges = np.array([0.5, -1.0, 2.0, 0.25, 0.0, np.inf, -np.inf, np.nan], dtype=np.float32)
    edges = np.concatenate([edges, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, np.float32(-np.inf))])
    grid = np.array(np.meshgrid(*[edges] * 3, indexing="ij")).reshape(3, -1).T
    X = np.concatenate([_probe_and_rows(ens), np.column_stack([grid, grid[::-1, :2]]).astype(np.float32)])
    _, got = _compiled(path, X, "score")
    assert np.array_equal(got, _ort(path, X, "score"))


def test_row_and_batch_scores_are_bit_identical_for_any_thread_count(model_dir):
    from mmlab.ml.infer import OnnxScorer

    one, two = OnnxScorer(model_dir), OnnxScorer(model_dir, batch_threads=2)
    assert one.backend == "compiled" and one.probe_max_abs_diff <= 2.5e-7
    X = _rows(20_011)
    ref = one.score_batch(X)
    assert np.array_equal(two.score_batch(X), ref)
    assert np.array_equal(two.score_batch(X, chunk_rows=999), ref)
    assert np.array_equal(np.array([one.score_row(x) for x in X[::7]]), ref[::7])
    assert np.array_equal(np.array([two.score_row(x.astype(np.float64)) for x in X[:300]]), ref[:300])
    assert np.isnan(ref).sum() == 0 and ((ref > 0) & (ref < 1)).all()
    assert two.score_batch(np.zeros((0, N_FEATURES), np.float32)).shape == (0,)
    ort = OnnxScorer(model_dir, backend="onnxruntime", batch_threads=2)
    assert np.abs(ort.score_batch(X) - ref).max() <= 2.5e-7


def test_unsupported_graphs_raise_naming_file_and_op(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from mmlab.ml.infer import OnnxScorer
    from mmlab.ml.trees_nb import read_tree_ensemble

    w = helper.make_tensor("w", TensorProto.FLOAT, [N_FEATURES, 1], np.ones(N_FEATURES, np.float32))
    g = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["probability"])], "lin",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, N_FEATURES])],
                          [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [None, 1])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    d = _write(tmp_path / "lin", m)
    with pytest.raises(DataError, match=r"lin/model.onnx.*'MatMul'.*backend=\"onnxruntime\""):
        OnnxScorer(d)
    assert OnnxScorer(d, backend="onnxruntime").score_row(np.ones(N_FEATURES)) == pytest.approx(5.0)
    modes = ["BRANCH_LEQ"] * 3 + [L] * 4 + ["BRANCH_LEQ", L, "BRANCH_LEQ", L, L, L]
    path = tmp_path / "avg.onnx"
    onnx.save(_tree_graph(modes, [0] * 13, aggregate_function="AVERAGE"), str(path))
    with pytest.raises(DataError, match=r"avg.onnx: aggregate_function 'AVERAGE'"):
        read_tree_ensemble(path, "score")
    for post in ("SOFTMAX", "LOGISTIC"):  # onnxruntime ignores LOGISTIC on a one-target regressor
        onnx.save(_tree_graph(modes, [0] * 13, post_transform=post), str(path))
        with pytest.raises(DataError, match=rf"avg.onnx: post_transform '{post}' of TreeEnsembleRegressor"):
            read_tree_ensemble(path, "score")
    with pytest.raises(DataError, match="no graph output 'nope'"):
        read_tree_ensemble(path, "nope")
    (tmp_path / "junk.onnx").write_bytes(b"\x3a\xff\xff\x07junk")
    with pytest.raises(DataError, match=r"junk.onnx: not a readable ONNX model"):
        read_tree_ensemble(tmp_path / "junk.onnx")
    with pytest.raises(ConfigError, match="backend must be one of"):
        OnnxScorer(d, backend="numba")


def test_a_compiled_ensemble_that_disagrees_with_onnxruntime_is_refused(model_dir, monkeypatch):
    from mmlab.ml import trees_nb
    from mmlab.ml.infer import OnnxScorer

    real = trees_nb.read_tree_ensemble

    def tampered(*a, **k):
        ens = real(*a, **k)
        leaf = ens.leaf_value.copy()
        i = int(np.flatnonzero(leaf)[3])
        leaf[i] = np.float32(leaf[i] + np.float32(1e-3))
        return trees_nb.TreeEnsemble(ens.nodes, leaf, ens.roots, ens.depths, ens.leaf_start, ens.base_value,
                                     ens.post_transform, ens.sign, ens.n_features, ens.path)

    monkeypatch.setattr(trees_nb, "read_tree_ensemble", tampered)
    with pytest.raises(ParityError, match=r"model.onnx differ from onnxruntime by .*backend=\"onnxruntime\""):
        OnnxScorer(model_dir)
    assert OnnxScorer(model_dir, backend="onnxruntime").backend == "onnxruntime"


def test_model_backend_config_key():
    from mmlab.config import load_config

    assert load_config({}).model.backend == "compiled"
    assert load_config({"model": {"backend": "onnxruntime"}}).model.backend == "onnxruntime"
    with pytest.raises(ConfigError, match="backend"):
        load_config({"model": {"backend": "fast"}})


def test_export_reports_the_compiled_parity(trained):
    parity = json.loads((trained / "parity.json").read_text())
    comp = parity["compiled"]
    assert comp["passed"] and comp["rows"] == parity["rows"]
    assert comp["max_abs_diff_vs_onnxruntime"] <= 2.5e-7
    assert json.loads((trained / "model.json").read_text())["parity"]["compiled"]["passed"]
