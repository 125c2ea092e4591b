"""LightGBM training of a fill-probability scorer, reproducible to the byte.

:func:`train_model` builds the dataset (:mod:`mmlab.ml.dataset`), splits it by time with purge/embargo, fits a
binary LightGBM model on the train split with early stopping on the valid split, picks the thresholds on the
valid split and reports metrics on the held-out test split. The model directory gets:

- ``model.txt`` — the LightGBM model (single-threaded, ``deterministic``, seeded: same inputs -> same bytes);
- ``dataset.parquet`` + ``dataset.schema.json`` — the rows with their ``split`` and the feature schema sidecar;
- ``lgbm_meta.json`` — model id, target, feature list, schema hash, thresholds ``tau_entry`` / ``tau_hold``,
  metrics per split (PR-AUC, precision/recall at ``tau_entry``, Brier, ECE, base rate, rows), data windows,
  label sources (sha256, config id, run id), seed and LightGBM parameters.

Thresholds: ``tau_entry`` maximizes F1 on the valid split (at least ``min_precision`` when given and reachable);
``tau_hold = hold_ratio * tau_entry`` (a working order keeps its queue spot down to a lower score).

>>> meta = train_model(["runs/a/labels.parquet"], target="filled_1s", out="models/m1", seed=7)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mmlab.analysis.drift import brier_score, expected_calibration_error
from mmlab.errors import ConfigError, DataError
from mmlab.ml.dataset import build_dataset, time_splits, write_sidecar

META_FILE = "lgbm_meta.json"
MODEL_FILE = "model.txt"
DATASET_FILE = "dataset.parquet"

DEFAULT_PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l2": 1.0,
    "max_bin": 255,
}


# ----------------------------------------------------------------------------------------------- metrics


def average_precision(y, p) -> float:
    """PR-AUC as average precision (ties of ``p`` share one threshold); NaN without positives."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), len(ps) - 1]
    tp = np.cumsum(ys)[last]
    k = last + 1
    prec = tp / k
    rec_step = np.diff(np.r_[0.0, tp]) / n_pos
    return float(np.sum(prec * rec_step))


def precision_recall_at(y, p, tau: float) -> tuple[float, float, int]:
    """Precision and recall of ``p >= tau`` and the count of rows selected."""
    y = np.asarray(y, dtype=bool)
    sel = np.asarray(p) >= tau
    n_sel = int(sel.sum())
    tp = int((sel & y).sum())
    prec = tp / n_sel if n_sel else float("nan")
    rec = tp / int(y.sum()) if y.sum() else float("nan")
    return float(prec), float(rec), n_sel


def choose_tau(y, p, min_precision: float | None = None) -> float:
    """Threshold maximizing F1 (among those reaching ``min_precision`` when any does); 0.5 without positives."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0 or y.sum() == 0:
        return 0.5
    order = np.argsort(-p, kind="stable")
    ys, ps = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(ps) != 0), len(ps) - 1]
    tp = np.cumsum(ys)[last]
    k = last + 1
    prec = tp / k
    rec = tp / y.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
    if min_precision is not None and np.any(prec >= min_precision):
        f1 = np.where(prec >= min_precision, f1, -1.0)
    return float(ps[last[int(np.argmax(f1))]])


def classification_metrics(y, p, tau: float) -> dict:
    """PR-AUC, precision/recall at tau, Brier, ECE, base rate and rows of one split."""
    if len(y) == 0:
        return {"rows": 0}
    prec, rec, n_sel = precision_recall_at(y, p, tau)
    return {"rows": int(len(y)), "base_rate": float(np.mean(y)), "pr_auc": average_precision(y, p),
            "precision_at_tau": prec, "recall_at_tau": rec, "n_selected": n_sel,
            "brier": brier_score(y, p), "ece": expected_calibration_error(y, p)}


# ----------------------------------------------------------------------------------------------- training


def _json_safe(x):
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def fit_booster(X, y, X_valid=None, y_valid=None, *, seed: int = 0, params: dict | None = None, features=None,
                num_boost_round: int = 200, early_stopping_rounds: int = 30):
    """Fit the binary LightGBM model (single thread, deterministic, seeded); returns (booster, best_iteration, params).

    Early stopping on the valid rows applies when they hold both classes and ``early_stopping_rounds > 0``.
    """
    import lightgbm as lgb

    p = dict(DEFAULT_PARAMS)
    p.update(params or {})
    p.update({"seed": int(seed), "num_threads": 1, "deterministic": True, "force_row_wise": True, "verbosity": -1})
    names = list(features) if features is not None else "auto"
    dtrain = lgb.Dataset(np.asarray(X, dtype=np.float64), label=y, feature_name=names, free_raw_data=False)
    callbacks, valid_sets = [], []
    if X_valid is not None and len(y_valid) and y_valid.min() != y_valid.max() and early_stopping_rounds > 0:
        valid_sets = [lgb.Dataset(np.asarray(X_valid, dtype=np.float64), label=y_valid, reference=dtrain)]
        callbacks.append(lgb.early_stopping(early_stopping_rounds, verbose=False))
    booster = lgb.train(p, dtrain, num_boost_round=num_boost_round, valid_sets=valid_sets, callbacks=callbacks)
    best = booster.best_iteration if booster.best_iteration and booster.best_iteration > 0 else booster.current_iteration()
    return booster, int(best), p


def train_model(labels, *, target: str = "filled_1s", out: str | os.PathLike, seed: int = 0,
                features: str | list | None = None, num_boost_round: int = 200, early_stopping_rounds: int = 30,
                fractions=(0.6, 0.2, 0.2), embargo_ms: float = 0.0, hold_ratio: float = 0.8,
                min_precision: float | None = None, params: dict | None = None, model_id: str | None = None) -> dict:
    """Train on the labels of one or more runs and write the model directory; returns the metadata dict.

    Parameters
    ----------
    labels : path or list of paths of ``labels.parquet`` (or run directories).
    target : boolean label column, e.g. ``filled_100ms``, ``filled_1s``, ``filled_5s``.
    out : model directory (its name is the model id unless ``model_id`` is given).
    seed : LightGBM seed (every random stream of LightGBM derives from it).
    features : feature set (``tick`` default, ``order``) or list of names.
    embargo_ms : rows of a split within this time after its start are dropped.
    hold_ratio : tau_hold = hold_ratio * tau_entry, in (0, 1].
    """
    if not 0 < hold_ratio <= 1:
        raise ConfigError(f"hold_ratio must be in (0, 1], got {hold_ratio!r}")
    if num_boost_round < 1:
        raise ConfigError(f"num_boost_round must be >= 1, got {num_boost_round!r}")
    ds = build_dataset(labels, target=target, features=features)
    sp = time_splits(ds.ts_ns, fractions=fractions, horizon_ns=ds.horizon_ns, embargo_ns=int(embargo_ms * 1e6))
    if len(sp.train) < 10:
        raise DataError(f"only {len(sp.train)} training rows after the time split of {len(ds.y)} rows "
                        f"({[s['path'] for s in ds.sources]}); backtest a longer window or add --labels")
    ytr = ds.y[sp.train]
    if ytr.min() == ytr.max():
        raise DataError(f"target {target!r} is constant ({int(ytr[0])}) on the {len(ytr)} training rows; "
                        "choose another horizon/target or more data")
    Xv, yv = (ds.X[sp.valid], ds.y[sp.valid]) if len(sp.valid) else (None, None)
    booster, best, p = fit_booster(ds.X[sp.train], ytr, Xv, yv, seed=seed, params=params, features=ds.features,
                                   num_boost_round=num_boost_round, early_stopping_rounds=early_stopping_rounds)

    def score(idx):
        return booster.predict(ds.X[idx].astype(np.float64), num_iteration=best) if len(idx) else np.zeros(0)

    pick = sp.valid if len(sp.valid) else sp.train
    tau_entry = choose_tau(ds.y[pick], score(pick), min_precision)
    tau_hold = hold_ratio * tau_entry
    metrics = {name: classification_metrics(ds.y[idx], score(idx), tau_entry)
               for name, idx in (("train", sp.train), ("valid", sp.valid), ("test", sp.test))}

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(out / MODEL_FILE), num_iteration=best)
    split = np.full(len(ds.y), "purged", dtype=object)
    for name, idx in (("train", sp.train), ("valid", sp.valid), ("test", sp.test)):
        split[idx] = name
    import polars as pl

    frame = ds.frame().with_columns(pl.Series("split", split.astype(str)))
    frame.write_parquet(out / DATASET_FILE, statistics=True)
    write_sidecar(ds, out / DATASET_FILE)
    config_ids = sorted({s.get("config_id") for s in ds.sources if s.get("config_id")})
    meta = {
        "model_id": model_id or out.name,
        "kind": "lightgbm-binary",
        "target": target,
        "horizon_ms": ds.horizon_ns / 1e6,
        "features": list(ds.features),
        "feature_dtype": "float32",
        "schema_hash": ds.schema_hash,
        "thresholds": {"tau_entry": tau_entry, "tau_hold": tau_hold, "hold_ratio": hold_ratio,
                       "min_precision": min_precision},
        "metrics": metrics,
        "data_windows": sp.windows,
        "splits": {"fractions": list(fractions), "embargo_ms": embargo_ms, "n_purged": sp.n_purged,
                   "n_embargoed": sp.n_embargoed, "n_dropped_end": ds.n_dropped_end},
        "sources": ds.sources,
        "config_ids": config_ids,
        "config_id": config_ids[0] if len(config_ids) == 1 else None,
        "seed": int(seed),
        "num_boost_round": int(num_boost_round),
        "best_iteration": int(best),
        "params": p,
        "versions": _versions(),
    }
    meta = _json_safe(meta)
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("lightgbm", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def read_meta(model_dir: str | os.PathLike) -> dict:
    """``lgbm_meta.json`` of a model directory."""
    p = Path(model_dir) / META_FILE
    if not p.exists():
        raise DataError(f"{p} does not exist: {model_dir} is not a model directory written by `mmlab train`")
    return json.loads(p.read_text())
