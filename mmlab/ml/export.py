"""ONNX export of a trained model directory and the LightGBM/onnxruntime parity check.

:func:`export_onnx` converts ``model.txt`` with skl2onnx and the onnxmltools LightGBM converter (``target_opset={"": 17, "ai.onnx.ml": 3}``,
``zipmap=False``), then keeps only what scoring reads: the converter's ``TreeEnsembleClassifier`` (outputs
``label`` int64 [n] and ``probabilities`` float32 [n, 2]) becomes a ``TreeEnsembleRegressor`` of the raw score
followed by ``Sigmoid``, one output ``probability`` float32 [n, 1] (the same trees and leaf values; no label
and no second column to compute or copy: about 10 % more rows per CPU second in batch, see
``benchmarks/bench_ml.py``). It stores the feature list, schema hash and thresholds in the ONNX metadata and
in ``model.json`` (``output``, ``positive_class_column``), and checks parity on the held-out (``test``, else
``valid``) rows of ``dataset.parquet``.

Parity: the ONNX model reads float32 features and sums leaves in float32, LightGBM in float64, so a
max-|diff| test would be flaky. The check passes when the ``quantile`` (default 0.99) of |p_lgbm - p_onnx| is
at most ``atol_quantile`` (1e-5) and the share of rows with |diff| > ``mismatch_atol`` (1e-4) is at most
``max_mismatch_rate`` (0.1 %). Figures go to ``parity.json``; a failure raises :class:`~mmlab.errors.ParityError`
naming the counts. The same figures of the compiled evaluator (:mod:`mmlab.ml.trees_nb`, the default
scoring backend) and its max |diff| to onnxruntime go to ``parity.json["compiled"]`` (informative).

The schema hash of ``lgbm_meta.json`` must equal the dataset sidecar's (``dataset.schema.json``), else
:class:`~mmlab.errors.ParityError` before anything is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmlab.errors import DataError, ParityError

ONNX_FILE = "model.onnx"
ONNX_META_FILE = "model.json"
PARITY_FILE = "parity.json"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = "input"
OUTPUT_NAME = "probability"


@dataclass(frozen=True)
class ParitySpec:
    """Pass criteria of the parity check."""

    quantile: float = 0.99
    atol_quantile: float = 1e-5
    mismatch_atol: float = 1e-4
    max_mismatch_rate: float = 0.001


def parity_figures(p_ref: np.ndarray, p_onnx: np.ndarray, spec: ParitySpec = ParitySpec()) -> dict:
    """|diff| quantile, max, mismatch count and rate of two score vectors, and whether they pass ``spec``."""
    d = np.abs(np.asarray(p_ref, dtype=np.float64) - np.asarray(p_onnx, dtype=np.float64))
    n = len(d)
    q = float(np.quantile(d, spec.quantile)) if n else 0.0
    n_mis = int((d > spec.mismatch_atol).sum())
    rate = n_mis / n if n else 0.0
    return {"rows": n, "quantile": spec.quantile, "abs_diff_quantile": q, "abs_diff_max": float(d.max()) if n else 0.0,
            "mismatch_atol": spec.mismatch_atol, "n_mismatch": n_mis, "mismatch_rate": rate,
            "passed": bool(q <= spec.atol_quantile and rate <= spec.max_mismatch_rate), "spec": asdict(spec)}


def _held_out(model_dir: Path, features: list[str]) -> tuple[np.ndarray, str]:
    import polars as pl

    p = model_dir / "dataset.parquet"
    if not p.exists():
        raise DataError(f"{p} does not exist (written by mmlab train); parity needs the held-out rows")
    df = pl.read_parquet(p)
    for name in ("test", "valid", "train"):
        part = df.filter(pl.col("split") == name)
        if part.height:
            return np.ascontiguousarray(np.column_stack([part[f].to_numpy().astype(np.float32) for f in features])), name
    raise DataError(f"{p} has no rows to check parity on")


def booster_to_onnx(booster, n_features: int, name: str = "mmlab_model", *, classifier: bool = False):
    """ONNX ModelProto of a binary LightGBM booster (skl2onnx + the onnxmltools LightGBM converter).

    The graph has one output ``probability`` [n, 1] (:func:`single_output`); ``classifier=True`` keeps the
    converter's classifier (outputs ``label`` and ``probabilities`` [n, 2]).

    skl2onnx writes the lowest default-domain opset the graph needs (<= 17); the import is raised to 17 so that
    every exported model declares the same opsets (its only default-domain nodes are Identity, unchanged in 17).
    """
    import lightgbm as lgb
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import (
        convert_lightgbm,
    )
    from skl2onnx import convert_sklearn, update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
    )

    update_registered_converter(lgb.LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    # A fitted classifier shell around the saved booster: the converter reads booster_, classes_ and n_features.
    clf = lgb.LGBMClassifier(objective="binary")
    clf._Booster = booster
    clf.fitted_ = True
    clf._n_features = clf._n_features_in = n_features
    clf._n_classes = 2
    clf._classes = np.array([0, 1])
    clf._objective = "binary"
    onx = convert_sklearn(clf, name=name, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
                          target_opset=TARGET_OPSET, options={id(clf): {"zipmap": False}})
    for imp in onx.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = TARGET_OPSET[""]
    return onx if classifier else single_output(onx)


def single_output(onx):
    """The binary ``TreeEnsembleClassifier`` graph of the converter as ``TreeEnsembleRegressor`` (raw score) ->
    ``Sigmoid`` with one output ``probability`` [n, 1]: p = sigmoid(sum of leaf values), as the classifier's
    ``LOGISTIC`` post transform computes for class 1."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [n for n in onx.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(nodes) != 1:
        raise ParityError(f"expected one TreeEnsembleClassifier in the converted graph, found {[n.op_type for n in onx.graph.node]}")
    attrs = {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}
    labels = list(attrs.get("classlabels_int64s") or [])
    post = attrs.get("post_transform", b"NONE")
    base = list(attrs.get("base_values") or [])
    if labels != [0, 1] or post not in (b"LOGISTIC", "LOGISTIC") or len(base) > 1 or set(attrs.get("class_ids", [])) - {0}:
        raise ParityError(f"cannot reduce the classifier to one output: labels {labels}, post_transform {post!r}, "
                          f"base_values {base}; export a binary LightGBM model (objective 'binary')")
    reg = {("target_" + k[len("class_"):] if k.startswith("class_") else k): v for k, v in attrs.items()
           if k not in ("classlabels_int64s", "classlabels_strings", "post_transform")}
    reg.update(n_targets=1, post_transform="NONE")
    graph = helper.make_graph(
        [helper.make_node("TreeEnsembleRegressor", [INPUT_NAME], ["raw_score"], domain="ai.onnx.ml", name="trees", **reg),
         helper.make_node("Sigmoid", ["raw_score"], [OUTPUT_NAME], name="sigmoid")],
        onx.graph.name, [onx.graph.input[0]],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 1])])
    out = helper.make_model(graph, opset_imports=list(onx.opset_import), producer_name=onx.producer_name,
                            producer_version=onx.producer_version)
    out.ir_version = onx.ir_version
    onnx.checker.check_model(out)
    return out


def compiled_parity(onx, X: np.ndarray, p_ref: np.ndarray, p_onnx: np.ndarray, spec: ParitySpec = ParitySpec(), *,
                    label: str = ONNX_FILE) -> dict:
    """Parity figures of the compiled evaluator (:mod:`mmlab.ml.trees_nb`, the default scoring backend) of the
    graph ``onx`` against LightGBM's ``p_ref`` (same criteria as onnxruntime's), and its max |diff| to
    onnxruntime's ``p_onnx``. Informative: the export passes or fails on onnxruntime's figures, and
    :class:`mmlab.ml.infer.OnnxScorer` checks the compiled backend against onnxruntime at load."""
    from mmlab.ml.trees_nb import read_tree_ensemble, tree_score_rows_nb

    ens = read_tree_ensemble(onx, OUTPUT_NAME, 0, label=label)
    p = np.empty(len(X), dtype=np.float64)
    tree_score_rows_nb(*ens.args(), np.ascontiguousarray(X, dtype=np.float32), 0, len(X), p)
    fig = parity_figures(p_ref, p, spec)
    fig["max_abs_diff_vs_onnxruntime"] = float(np.abs(p - p_onnx).max()) if len(p) else 0.0
    return fig


def check_schema(model_dir: str | os.PathLike) -> dict:
    """Compare the schema hash of ``lgbm_meta.json`` with the dataset sidecar's; returns the meta."""
    from mmlab.ml.dataset import read_sidecar, schema_hash
    from mmlab.ml.train import read_meta

    d = Path(model_dir)
    meta = read_meta(d)
    side = read_sidecar(d / "dataset.parquet")
    recomputed = schema_hash(meta["features"])
    if not (meta["schema_hash"] == side["schema_hash"] == recomputed):
        raise ParityError(f"feature schema hash mismatch in {d}: lgbm_meta.json {meta['schema_hash']}, "
                          f"dataset.schema.json {side['schema_hash']}, recomputed from the feature list {recomputed}; "
                          "retrain the model (mmlab train) so that model and dataset share one schema")
    return meta


def export_onnx(model_dir: str | os.PathLike, *, spec: ParitySpec = ParitySpec(), raise_on_fail: bool = True) -> dict:
    """Write ``model.onnx``, ``model.json`` and ``parity.json`` next to the LightGBM model; returns the parity figures."""
    import lightgbm as lgb
    import onnxruntime as ort

    d = Path(model_dir)
    meta = check_schema(d)
    feats = list(meta["features"])
    booster = lgb.Booster(model_file=str(d / "model.txt"))
    if booster.num_feature() != len(feats):
        raise ParityError(f"{d / 'model.txt'} has {booster.num_feature()} features, lgbm_meta.json lists {len(feats)}; retrain")
    onx = booster_to_onnx(booster, len(feats), name=meta["model_id"])
    info = {"model_id": meta["model_id"], "features": feats, "schema_hash": meta["schema_hash"],
            "thresholds": meta["thresholds"], "target": meta["target"], "input": INPUT_NAME,
            "output": OUTPUT_NAME, "positive_class_column": 0,
            "opset": {imp.domain or "": int(imp.version) for imp in onx.opset_import}}
    for k, v in (("model_id", meta["model_id"]), ("schema_hash", meta["schema_hash"]), ("features", json.dumps(feats)),
                 ("thresholds", json.dumps(meta["thresholds"])), ("target", meta["target"])):
        prop = onx.metadata_props.add()
        prop.key, prop.value = k, str(v)
    data = onx.SerializeToString()
    X, split = _held_out(d, feats)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    p_onnx = sess.run([OUTPUT_NAME], {INPUT_NAME: X})[0][:, 0]
    p_ref = booster.predict(X.astype(np.float64))
    fig = parity_figures(p_ref, p_onnx, spec)
    fig["split"] = split
    fig["compiled"] = compiled_parity(onx, X, p_ref, p_onnx, spec, label=str(d / ONNX_FILE))
    (d / PARITY_FILE).write_text(json.dumps(fig, indent=2, sort_keys=True))
    if not fig["passed"]:
        msg = (f"ONNX parity failed for {d}: {fig['n_mismatch']} of {fig['rows']} {split} rows differ by more than "
               f"{spec.mismatch_atol} (rate {fig['mismatch_rate']:.4%}, allowed {spec.max_mismatch_rate:.4%}); "
               f"q{spec.quantile:g} |diff| = {fig['abs_diff_quantile']:.3g} (allowed {spec.atol_quantile:g}); "
               "model.onnx was not written")
        if raise_on_fail:
            raise ParityError(msg)
        return fig
    (d / ONNX_FILE).write_bytes(data)
    info["parity"] = {k: fig[k] for k in ("rows", "split", "abs_diff_quantile", "n_mismatch", "mismatch_rate", "passed")}
    info["parity"]["compiled"] = {k: fig["compiled"][k] for k in ("abs_diff_quantile", "n_mismatch", "mismatch_rate",
                                                                  "passed", "max_abs_diff_vs_onnxruntime")}
    (d / ONNX_META_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))
    return fig
