"""Parameter batches: K parameter sets in one pass over the events equal K separate runs, exactly."""

from pathlib import Path

import numpy as np
import pytest

from mmlab.config import load_config
from mmlab.data.synth import synth
from mmlab.errors import ConfigError
from mmlab.sim.engine import (
    WALL_TIME_KEYS,
    SymbolSpec,
    batch_config,
    check_batch_configs,
    run_backtest,
    run_backtest_batch,
)

#: Parameter sets differing in every key a batch may vary for the grid.
SETS = [
    {"strategy.half_spread_ticks": 1.0, "strategy.skew_ticks": 1.0, "strategy.order_qty": 0.01},
    {"strategy.half_spread_ticks": 0.5, "strategy.skew_ticks": 0.0, "strategy.order_qty": 0.02},
    {"strategy.half_spread_ticks": 3.0, "strategy.skew_ticks": 2.0, "strategy.order_qty": 0.01,
     "strategy.max_position": 0.02, "strategy.grid_interval_ticks": 2, "strategy.grid_num": 3},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    synth(root, hours=0.02, seed=3, symbol="SYNTHUSDT", date="2024-01-01")
    synth(root, hours=0.02, seed=5, symbol="ALTUSDT", date="2024-01-01")
    return root


def _cfg(store, name="grid", symbols=("SYNTHUSDT", "ALTUSDT"), **sections):
    d = {
        "data": {"root": str(store), "venue": "binance-usdm", "symbols": list(symbols)},
        "strategy": {"name": name, "grid_num": 5, "interval_ms": 100, "half_spread_ticks": 1.0, "skew_ticks": 1.0,
                     "order_qty": 0.01, "max_position": 0.05},
        "sim": {"entry_latency_ms": 5, "response_latency_ms": 5, "maker_fee": -0.00005, "taker_fee": 0.0005},
    }
    for k, v in sections.items():
        d.setdefault(k, {}).update(v)
    return load_config(d)


def _assert_same(single, member):
    for name in ("fills", "orders", "state", "labels", "mids", "decisions"):
        a, b = getattr(single, name), getattr(member, name)
        assert a.equals(b, null_equal=True), f"{name} differ"
    sa = {k: v for k, v in single.summary.items() if k not in WALL_TIME_KEYS}
    sb = {k: v for k, v in member.summary.items() if k not in WALL_TIME_KEYS}
    assert sa == sb


@pytest.mark.parametrize("name", ["grid", "grid_pipeline"])
def test_k_sets_in_one_pass_equal_k_separate_runs(store, name):
    cfg = _cfg(store, name)
    batch = run_backtest_batch(cfg, SETS)
    assert len(batch) == len(SETS)
    fills = set()
    for k, ov in enumerate(SETS):
        single = run_backtest(batch_config(cfg, ov))
        _assert_same(single, batch[k])
        assert batch[k].meta["batch_index"] == k and batch[k].meta["batch_size"] == len(SETS)
        fills.add(single.summary["n_fills"])
    assert len(fills) == len(SETS)  # the sets really differ
    assert min(fills) > 0


def test_one_set_batch_equals_run_backtest(store):
    cfg = _cfg(store)
    (member,) = run_backtest_batch(cfg, [{}])
    _assert_same(run_backtest(cfg), member)


def test_pipeline_stage_keys_may_differ(store):
    cfg = _cfg(store, "grid_pipeline", symbols=("SYNTHUSDT",))
    sets = [{"pipeline.inventory.skew_ticks": 0.0}, {"pipeline.inventory.skew_ticks": 3.0}]
    try:
        cfgs = [batch_config(cfg, s) for s in sets]
    except ConfigError:
        pytest.skip("grid_pipeline has no inventory.skew_ticks key")
    batch = run_backtest_batch(cfg, cfgs)
    for c, member in zip(cfgs, batch):
        _assert_same(run_backtest(c), member)


def test_in_memory_events_and_empirical_latency(store, tmp_path):
    from mmlab.data.bridge import load_events

    ev, infos = load_events(store, "binance-usdm", ["SYNTHUSDT"])
    specs = [SymbolSpec(i.symbol, i.tick_size, i.lot_size) for i in infos]
    t0 = int(ev["ts_local"][0])
    lat = np.array([[t0 + k * 10**9, t0 + k * 10**9 + (3 + k % 5) * 10**6, t0 + k * 10**9 + (9 + k % 7) * 10**6]
                    for k in range(200)], dtype=np.int64)
    path = tmp_path / "latency.csv"
    np.savetxt(path, lat, fmt="%d", delimiter=",", header="req_ts,exch_ts,resp_ts", comments="")
    cfg = _cfg(store, symbols=("SYNTHUSDT",), sim={"latency_model": "empirical", "latency_table": str(path)})
    batch = run_backtest_batch(cfg, SETS[:2], events=ev, symbols=specs)
    for ov, member in zip(SETS[:2], batch):
        _assert_same(run_backtest(batch_config(cfg, ov), events=ev, symbols=specs), member)


def test_sets_that_cannot_share_a_pass_are_refused(store):
    cfg = _cfg(store)
    with pytest.raises(ConfigError, match=r"parameter set 1: strategy.interval_ms = 50.0 differs from set 0"):
        run_backtest_batch(cfg, [{}, {"strategy.interval_ms": 50}])
    with pytest.raises(ConfigError, match=r"parameter set 1: sim.entry_latency_ms = 1.0 differs"):
        run_backtest_batch(cfg, [{}, {"sim.entry_latency_ms": 1.0}])
    with pytest.raises(ConfigError, match="latency_model = 'random' cannot run in a parameter batch"):
        check_batch_configs([batch_config(cfg, {"sim.latency_model": "random"})])
    with pytest.raises(ConfigError, match="unknown key strategy.half_spred_ticks"):
        run_backtest_batch(cfg, [{"strategy.half_spred_ticks": 1.0}])
    with pytest.raises(ConfigError, match="at least one parameter set"):
        run_backtest_batch(cfg, [])


def test_batch_on_the_real_btcusdt_capture(real_data, tmp_path):
    from mmlab.data.bridge import load_events
    from mmlab.data.ingest import IngestOptions, ingest

    ingest([real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz"], "binance-usdm", tmp_path, IngestOptions())
    ev, infos = load_events(tmp_path, "binance-usdm", ["BTCUSDT"])
    ev = ev[:150_000]
    specs = [SymbolSpec(i.symbol, i.tick_size, i.lot_size) for i in infos]
    cfg = load_config({"strategy": {"grid_num": 3, "interval_ms": 100, "order_qty": 0.001, "max_position": 0.01},
                       "sim": {"entry_latency_ms": 10, "response_latency_ms": 10}})
    sets = [{"strategy.half_spread_ticks": h, "strategy.skew_ticks": s} for h, s in ((0.5, 0.0), (2.0, 1.0))]
    batch = run_backtest_batch(cfg, sets, events=ev, symbols=specs)
    for ov, member in zip(sets, batch):
        _assert_same(run_backtest(batch_config(cfg, ov), events=ev, symbols=specs), member)
    assert batch[0].summary["n_fills"] != batch[1].summary["n_fills"]


def test_windowed_batch_equals_separate_runs(store):
    # Windows of 20 s: rows carried over between windows, each set ends in the last one.
    cfg = _cfg(store)
    batch = run_backtest_batch(cfg, SETS[:2], window_ns=20 * 10**9)
    for ov, member in zip(SETS[:2], batch):
        _assert_same(run_backtest(batch_config(cfg, ov)), member)
