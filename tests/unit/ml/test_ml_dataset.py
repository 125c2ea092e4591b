"""Datasets: tick features are causal, splits purge label windows, the schema hash is stable and written beside."""

import json

import numpy as np
import polars as pl
import pytest

from mmlab.errors import ConfigError, DataError
from mmlab.ml.dataset import (
    TICK_FEATURES,
    build_dataset,
    horizon_ns_of,
    read_sidecar,
    resolve_features,
    schema_hash,
    tick_features,
    time_splits,
    write_dataset,
)


def test_horizon_of_targets():
    assert horizon_ns_of("filled_100ms") == 100_000_000
    assert horizon_ns_of("filled_1s") == 1_000_000_000
    assert horizon_ns_of("filled_5s") == 5_000_000_000
    with pytest.raises(ConfigError, match="names no horizon"):
        horizon_ns_of("filled")


def test_splits_purge_so_no_label_window_reaches_the_next_split():
    rng = np.random.default_rng(0)
    ts = np.sort(rng.integers(0, 10**12, 5000))
    h = 3 * 10**9
    s = time_splits(ts, horizon_ns=h, embargo_ns=10**9)
    assert len(s.train) and len(s.valid) and len(s.test)
    assert ts[s.train].max() + h < ts[s.valid].min()
    assert ts[s.valid].max() + h < ts[s.test].min()
    assert s.n_purged > 0 and s.n_embargoed >= 0
    assert set(s.train) | set(s.valid) | set(s.test) <= set(range(len(ts)))
    assert s.windows["train"][1] < s.windows["valid"][0] < s.windows["test"][0]


def test_splits_embargo_drops_the_start_of_the_next_split():
    ts = np.arange(100) * 10
    s = time_splits(ts, horizon_ns=0, embargo_ns=25)
    assert ts[s.valid].min() >= 600 + 25 and ts[s.test].min() >= 800 + 25


def test_splits_need_sorted_rows():
    with pytest.raises(DataError, match="sorted"):
        time_splits(np.array([3, 1, 2]))


def test_schema_hash_depends_on_names_and_order():
    a = schema_hash(TICK_FEATURES)
    assert a == schema_hash(list(TICK_FEATURES)) and len(a) == 16
    assert a != schema_hash(TICK_FEATURES[::-1])
    assert resolve_features("tick") == TICK_FEATURES
    with pytest.raises(ConfigError, match="unknown features"):
        resolve_features("spread_ticks,nope")


def test_tick_features_are_causal(btc_run):
    state = pl.read_parquet(btc_run / "state.parquet")
    full = tick_features(state)
    cut = state.height // 2
    part = tick_features(state.head(cut))
    a = full.head(cut).drop(["ts_local", "symbol"]).to_numpy()
    b = part.drop(["ts_local", "symbol"]).to_numpy()
    assert np.array_equal(a, b, equal_nan=True)
    assert full.columns == ["ts_local", "symbol", *TICK_FEATURES]
    assert all(full[c].dtype == pl.Float32 for c in TICK_FEATURES)


def test_build_dataset_on_the_real_run(btc_run, tmp_path):
    ds = build_dataset([btc_run / "labels.parquet"], target="filled_1s")
    lab = pl.read_parquet(btc_run / "labels.parquet")
    assert ds.X.dtype == np.float32 and ds.X.shape == (len(ds.y), len(TICK_FEATURES))
    assert len(ds.y) + ds.n_dropped_end == lab.height == 1407
    assert ds.n_dropped_end > 0  # orders sent within 1 s of the end have no known label
    assert np.all(np.diff(ds.ts_ns) >= 0)
    assert 0.1 < ds.y.mean() < 0.3
    src = ds.sources[0]
    assert src["rows"] == len(ds.y) and len(src["sha256"]) == 64 and src["config_id"]
    side = write_dataset(ds, tmp_path / "train.parquet")
    meta = json.loads(side.read_text())
    assert side.name == "train.schema.json" and meta["schema_hash"] == ds.schema_hash == read_sidecar(tmp_path / "train.parquet")["schema_hash"]
    assert pl.read_parquet(tmp_path / "train.parquet").height == len(ds.y)


def test_two_runs_concatenate_in_time_order(btc_run):
    one = build_dataset([btc_run], target="filled_100ms")
    two = build_dataset([btc_run, btc_run / "labels.parquet"], target="filled_100ms")
    assert len(two.y) == 2 * len(one.y) and np.all(np.diff(two.ts_ns) >= 0)


def test_bad_inputs_name_the_file_and_the_fix(btc_run, tmp_path):
    with pytest.raises(ConfigError, match="target 'filled_2s' is not a column .*filled_1s"):
        build_dataset([btc_run / "labels.parquet"], target="filled_2s")
    with pytest.raises(DataError, match="does not exist"):
        build_dataset([tmp_path / "nope" / "labels.parquet"])
    (tmp_path / "lonely").mkdir()
    pl.read_parquet(btc_run / "labels.parquet").write_parquet(tmp_path / "lonely" / "labels.parquet")
    with pytest.raises(DataError, match="state.parquet does not exist"):
        build_dataset([tmp_path / "lonely" / "labels.parquet"])
