"""Training datasets from backtest outputs: features at decision time, forward targets, purged time splits.

A run directory written by :func:`mmlab.sim.engine.write_run` holds ``labels.parquet`` (one row per order sent:
features at its decision tick and forward labels such as ``filled_1s``) and ``state.parquet`` (one row per
decision tick and symbol). :func:`build_dataset` joins the two:

- **tick features** (:data:`TICK_FEATURES`), computed by :func:`tick_features` from the decision-tick rows
  alone and causally (each value uses ticks at or before its own time) with the feature collectors of
  :mod:`mmlab.features.collectors`: spread, top-of-book quantities, imbalance, mid returns over 1 s / 5 s,
  realized volatility over 5 s. They do not depend on the strategy's own
  orders (market replay is not altered by them), so the backtest can compute the same values for any
  strategy before a run and score them in batch (:mod:`mmlab.ml.loop_scores`).
- **order features** (:data:`ORDER_FEATURES`): side, distance from the mid, size and position of the order's
  decision; feature set ``order`` = tick + order features (not usable in the loop: one score per tick there).
- **targets**: any boolean label column, e.g. ``filled_100ms``, ``filled_1s``, ``filled_5s`` (filled within H
  of the send time). Rows whose label window runs past the end of their run are dropped (their label is
  unknown, not False).

Features are float32 (what the ONNX model reads); the schema hash (:func:`schema_hash`) covers names, dtypes
and order and is written next to the dataset parquet as ``<name>.schema.json`` (the sidecar that export and
release checks compare with the model's metadata).

Time-ordered splits (:func:`time_splits`) cut by decision time; a row is *purged* from a split when its label
window ``[ts, ts + H]`` reaches the next split's first time, and the first ``embargo`` of the next split is
dropped, so no label window overlaps the following split.

>>> ds = build_dataset(["runs/a/labels.parquet"], target="filled_1s")  # doctest: +SKIP
>>> splits = time_splits(ds.ts_ns, horizon_ns=ds.horizon_ns)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmlab.errors import ConfigError, DataError

#: Order-independent features of a decision tick (usable in the backtest loop).
TICK_FEATURES = ("spread_ticks", "bid_qty", "ask_qty", "imbalance", "ret_bps_1s", "ret_bps_5s", "vol_bps_5s")
#: Features of the order itself, taken from labels.parquet.
ORDER_FEATURES = ("side", "distance_ticks", "qty", "position")
FEATURE_SETS = {"tick": TICK_FEATURES, "order": TICK_FEATURES + ORDER_FEATURES}
FEATURE_DTYPE = "float32"
SCHEMA_VERSION = 1
NS_PER_MS = 1_000_000

_HORIZON_RE = re.compile(r"_(\d+(?:p\d+)?)(ms|s)$")


@dataclass
class Dataset:
    """Feature matrix, target and provenance of a training set (rows sorted by decision time)."""

    X: np.ndarray  # (n, n_features) float32
    y: np.ndarray  # (n,) int8 0/1
    ts_ns: np.ndarray  # (n,) int64 decision time, local clock
    features: tuple[str, ...]
    target: str
    horizon_ns: int
    sources: list[dict] = field(default_factory=list)  # per labels file: path, sha256, rows, config_id, run_id
    n_dropped_end: int = 0  # rows whose label window ran past the end of their run

    @property
    def schema_hash(self) -> str:
        return schema_hash(self.features)

    def frame(self):
        """The dataset as a polars frame (ts_decision, features..., target)."""
        import polars as pl

        cols = {"ts_decision": self.ts_ns}
        cols.update({f: self.X[:, j] for j, f in enumerate(self.features)})
        cols[self.target] = self.y.astype(bool)
        return pl.DataFrame(cols)


def schema_hash(features) -> str:
    """Hash of the feature schema: names, order and dtype (16 hex digits).

    >>> schema_hash(["a", "b"]) == schema_hash(("a", "b"))
    True
    """
    doc = {"version": SCHEMA_VERSION, "features": [[f, FEATURE_DTYPE] for f in features]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def horizon_ns_of(target: str) -> int:
    """Label window of a target named ``*_<H>ms`` or ``*_<H>s`` (``filled_1s`` -> 1e9 ns)."""
    m = _HORIZON_RE.search(target)
    if not m:
        raise ConfigError(f"target {target!r} names no horizon; use a label such as filled_100ms, filled_1s, filled_5s")
    value = float(m.group(1).replace("p", "."))
    return int(round(value * (1e9 if m.group(2) == "s" else 1e6)))


def resolve_features(features: str | list | tuple | None) -> tuple[str, ...]:
    """A feature set name (``tick``, ``order``), a comma list or a sequence -> tuple of known feature names."""
    if features is None:
        return TICK_FEATURES
    if isinstance(features, str):
        if features in FEATURE_SETS:
            return FEATURE_SETS[features]
        features = [f.strip() for f in features.split(",") if f.strip()]
    known = FEATURE_SETS["order"]
    bad = [f for f in features if f not in known]
    if bad or not features:
        raise ConfigError(f"unknown features {bad or features!r}; use a set {sorted(FEATURE_SETS)} or names from {list(known)}")
    return tuple(features)


# ------------------------------------------------------------------------------------------- tick features


def tick_features_arrays(ts_ns, mid, spread_ticks, bid_qty, ask_qty) -> dict[str, np.ndarray]:
    """:data:`TICK_FEATURES` of one symbol's decision ticks (arrays sorted by time); causal, float32.

    The values come from the feature collectors (:func:`mmlab.features.collectors.tick_features`, the kernels
    the live runner updates): level-1 imbalance, mid returns over 1 s / 5 s (vs the last tick at or before
    t - window) and the std of per-tick log returns (bps) over the ticks in (t - 5 s, t]. The collector's ring holds
    1,024 ticks: decision clocks faster than 5 ms see NaN 5 s returns and a volatility of the last 1,024 ticks.
    """
    from mmlab.features.collectors import TICK_COLUMNS
    from mmlab.features.collectors import tick_features as collector_tick_features

    f = collector_tick_features(ts_ns, mid, spread_ticks, bid_qty, ask_qty, ret_short_ms=1_000, ret_long_ms=5_000,
                                vol_window_ms=5_000)
    # Same order: spread, bid/ask qty, imbalance, returns short/long, volatility.
    return {k: f[c].astype(np.float32) for k, c in zip(TICK_FEATURES, TICK_COLUMNS)}


def tick_features(state) -> "object":
    """Per decision tick and symbol: ts_local, symbol and :data:`TICK_FEATURES` (polars frame) of a state frame."""
    import polars as pl

    need = ("ts_local", "symbol", "mid", "spread_ticks", "bid_qty", "ask_qty")
    missing = [c for c in need if c not in state.columns]
    if missing:
        raise DataError(f"state frame lacks columns {missing}; it needs {list(need)} (written by mmlab backtest)")
    parts = []
    for sym in sorted(state["symbol"].unique().to_list()):
        s = state.filter(pl.col("symbol") == sym).sort("ts_local", maintain_order=True)
        f = tick_features_arrays(s["ts_local"].to_numpy(), s["mid"].to_numpy(), s["spread_ticks"].to_numpy(),
                                 s["bid_qty"].to_numpy(), s["ask_qty"].to_numpy())
        parts.append(pl.DataFrame({"ts_local": s["ts_local"], "symbol": s["symbol"], **f}))
    if not parts:
        return pl.DataFrame({"ts_local": [], "symbol": [], **{k: [] for k in TICK_FEATURES}},
                            schema={"ts_local": pl.Int64, "symbol": pl.String, **{k: pl.Float32 for k in TICK_FEATURES}})
    return pl.concat(parts)


# ---------------------------------------------------------------------------------------------- datasets


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run_meta(run_dir: Path) -> dict:
    p = run_dir / "manifest.json"
    if not p.exists():
        return {}
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError:
        return {}
    return {"config_id": m.get("config_id"), "run_id": m.get("run_id")}


def _labels_path(p: str | os.PathLike) -> Path:
    path = Path(p)
    if path.is_dir():
        path = path / "labels.parquet"
    if not path.exists():
        raise DataError(f"labels file {path} does not exist (pass RUN_DIR/labels.parquet of a `mmlab backtest` run)")
    return path


def load_rows(labels_path: str | os.PathLike, target: str, features: tuple[str, ...]):
    """One run's rows: labels joined with the tick features of its state.parquet; returns (frame, source, n_dropped)."""
    import polars as pl

    path = _labels_path(labels_path)
    state_path = path.parent / "state.parquet"
    if not state_path.exists():
        raise DataError(f"{state_path} does not exist: the tick features of {path} come from the run's state.parquet "
                        "(write the run with mmlab backtest / write_run)")
    lab = pl.read_parquet(path)
    if target not in lab.columns:
        cands = [c for c in lab.columns if lab[c].dtype == pl.Boolean and c not in ("accepted", "censored")]
        raise ConfigError(f"target {target!r} is not a column of {path}; boolean targets there: {cands} "
                          "(other horizons: set [labels] horizons_ms of the backtest)")
    if lab[target].dtype != pl.Boolean:
        raise ConfigError(f"target {target!r} of {path} is {lab[target].dtype}, a classification target must be Boolean")
    state = pl.read_parquet(state_path, columns=["ts_local", "symbol", "mid", "spread_ticks", "bid_qty", "ask_qty"])
    tf = tick_features(state).rename({"ts_local": "ts_decision"})
    tick_cols = [c for c in TICK_FEATURES]
    lab = lab.drop([c for c in tick_cols if c in lab.columns])
    df = lab.join(tf, on=["ts_decision", "symbol"], how="left")
    run_end = int(state["ts_local"].max()) if state.height else 0
    h = horizon_ns_of(target)
    keep = df["ts_decision"] + h <= run_end
    n_drop = int((~keep).sum())
    df = df.filter(keep)
    source = {"path": str(path), "sha256": _sha256(path), "rows": int(df.height), **_run_meta(path.parent)}
    return df.select(["ts_decision", *features, target]), source, n_drop


def build_dataset(labels: list | tuple | str, target: str = "filled_1s", features: str | tuple | list | None = None) -> Dataset:
    """Rows of one or more runs' labels.parquet as a :class:`Dataset` sorted by decision time (stable)."""
    import polars as pl

    feats = resolve_features(features)
    paths = [labels] if isinstance(labels, (str, os.PathLike)) else list(labels)
    if not paths:
        raise ConfigError("build_dataset needs at least one labels.parquet (--labels RUN_DIR/labels.parquet)")
    frames, sources, dropped = [], [], 0
    for p in paths:
        df, src, nd = load_rows(p, target, feats)
        frames.append(df.with_columns([pl.col(f).cast(pl.Float32) for f in feats]))
        sources.append(src)
        dropped += nd
    df = pl.concat(frames).sort("ts_decision", maintain_order=True)
    if df.height == 0:
        raise DataError(f"no training rows in {[s['path'] for s in sources]} (every label window ran past the end "
                        "of its run, or no orders were sent): backtest a longer window")
    X = np.ascontiguousarray(np.column_stack([df[f].to_numpy().astype(np.float32) for f in feats]))
    y = df[target].to_numpy().astype(np.int8)
    return Dataset(X=X, y=y, ts_ns=df["ts_decision"].to_numpy().astype(np.int64), features=feats, target=target,
                   horizon_ns=horizon_ns_of(target), sources=sources, n_dropped_end=dropped)


def write_dataset(ds: Dataset, path: str | os.PathLike) -> Path:
    """Write the dataset parquet and its schema sidecar ``<stem>.schema.json``; returns the sidecar path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ds.frame().write_parquet(p, statistics=True)
    return write_sidecar(ds, p)


def write_sidecar(ds: Dataset, parquet_path: str | os.PathLike) -> Path:
    """Write ``<stem>.schema.json`` (schema hash, features, dtype, target, rows, sources) beside a dataset parquet."""
    side = sidecar_path(parquet_path)
    side.write_text(json.dumps({
        "schema_hash": ds.schema_hash, "schema_version": SCHEMA_VERSION, "features": list(ds.features),
        "dtype": FEATURE_DTYPE, "target": ds.target, "rows": int(len(ds.y)), "sources": ds.sources,
    }, indent=2, sort_keys=True))
    return side


def sidecar_path(parquet_path: str | os.PathLike) -> Path:
    p = Path(parquet_path)
    return p.with_name(p.stem + ".schema.json")


def read_sidecar(parquet_path: str | os.PathLike) -> dict:
    side = sidecar_path(parquet_path)
    if not side.exists():
        raise DataError(f"schema sidecar {side} does not exist (written by mmlab train next to {Path(parquet_path).name})")
    return json.loads(side.read_text())


# ------------------------------------------------------------------------------------------------ splits


@dataclass
class Splits:
    """Row indices of the train / valid / test splits and the time window of each (ns, inclusive)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    windows: dict
    n_purged: int
    n_embargoed: int


def time_splits(ts_ns: np.ndarray, *, fractions=(0.6, 0.2, 0.2), horizon_ns: int = 0, embargo_ns: int = 0) -> Splits:
    """Time-ordered train/valid/test split of rows sorted by ``ts_ns`` with purge and embargo.

    The boundaries fall at the row quantiles of ``fractions``. A row is purged when ``ts + horizon_ns`` reaches
    the next split's start; rows of the next split within ``embargo_ns`` after its start are dropped.

    >>> s = time_splits(np.arange(10) * 10, horizon_ns=5)
    >>> s.train.tolist(), s.valid.tolist(), s.test.tolist()
    ([0, 1, 2, 3, 4, 5], [6, 7], [8, 9])
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    n = len(ts)
    if np.any(np.diff(ts) < 0):
        raise DataError("time_splits needs rows sorted by time (build_dataset sorts them)")
    fr = np.asarray(fractions, dtype=np.float64)
    if len(fr) != 3 or np.any(fr < 0) or fr.sum() <= 0:
        raise ConfigError(f"split fractions must be three non-negative numbers, got {tuple(fractions)}")
    fr = fr / fr.sum()
    c1, c2 = int(round(n * fr[0])), int(round(n * (fr[0] + fr[1])))
    b1 = ts[c1] if c1 < n else np.iinfo(np.int64).max
    b2 = ts[c2] if c2 < n else np.iinfo(np.int64).max
    idx = np.arange(n)
    in_train = ts < b1
    in_valid = (ts >= b1) & (ts < b2)
    in_test = ts >= b2
    purge = (in_train & (ts + horizon_ns >= b1)) | (in_valid & (ts + horizon_ns >= b2))
    emb = (in_valid & (ts < b1 + embargo_ns)) | (in_test & (ts < b2 + embargo_ns))
    keep = ~purge & ~emb
    out = {k: idx[m & keep] for k, m in (("train", in_train), ("valid", in_valid), ("test", in_test))}
    windows = {k: ([int(ts[v[0]]), int(ts[v[-1]])] if len(v) else None) for k, v in out.items()}
    return Splits(train=out["train"], valid=out["valid"], test=out["test"], windows=windows,
                  n_purged=int(purge.sum()), n_embargoed=int((emb & ~purge).sum()))
