"""Feature windows for the drift report: training rows (labels or a model's dataset) against new runs' rows.

>>> rep = drift_between(["models/m1"], ["runs/new/labels.parquet"], model="models/m1")  # doctest: +SKIP
>>> rep["metrics"]['psi_feature{feature="spread_ticks"}']  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmlab.analysis.drift import DriftThresholds, drift_report
from mmlab.ml.dataset import build_dataset, resolve_features


def _window(paths: list[str], target: str, features: tuple[str, ...]) -> tuple[dict, np.ndarray | None]:
    """{feature: values} and outcomes of a window; a model directory contributes its train split."""
    import polars as pl

    cols: dict[str, list] = {f: [] for f in features}
    ys = []
    label_paths = []
    for p in paths:
        d = Path(p)
        if (d / "lgbm_meta.json").exists():
            df = pl.read_parquet(d / "dataset.parquet").filter(pl.col("split") == "train")
            for f in features:
                cols[f].append(df[f].to_numpy().astype(np.float64))
            tcol = json.loads((d / "lgbm_meta.json").read_text())["target"]
            ys.append(df[tcol].to_numpy().astype(np.float64))
        else:
            label_paths.append(p)
    if label_paths:
        ds = build_dataset(label_paths, target=target, features=features)
        for j, f in enumerate(features):
            cols[f].append(ds.X[:, j].astype(np.float64))
        ys.append(ds.y.astype(np.float64))
    return {f: np.concatenate(v) for f, v in cols.items()}, (np.concatenate(ys) if ys else None)


def drift_between(train: list[str], new: list[str], *, model=None, target: str = "filled_1s", features="tick",
                  thresholds: DriftThresholds | None = None) -> dict:
    """PSI/KS per feature of ``new`` against ``train``; with ``model`` (a model dir with model.onnx) also the
    Brier score and ECE of its scores against ``target`` on the new window (``brier_online``, ``ece_online``)."""
    scorer = None
    if model is not None:
        from mmlab.ml.infer import OnnxScorer

        scorer = OnnxScorer(model)
        feats = tuple(scorer.features)
        target = scorer.meta.get("target", target)
    else:
        feats = resolve_features(features)
    tr, _ = _window(list(train), target, feats)
    nw, y_new = _window(list(new), target, feats)
    p_new = None
    if scorer is not None:
        X = np.column_stack([nw[f] for f in feats]).astype(np.float32)
        p_new = scorer.score_batch(X)
    rep = drift_report(tr, nw, thresholds=thresholds, y_new=y_new if scorer is not None else None, p_new=p_new)
    rep["model"] = scorer.model_id if scorer is not None else None
    rep["target"] = target
    return rep
