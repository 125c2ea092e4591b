"""Golden numbers of the reference ``grid`` strategy on the shared Binance USD-M BTCUSDT capture (8 minutes).

The capture (2024-07-18 23:57 -> 2024-07-19 00:05 UTC) crosses midnight, so the default replay runs two day
windows; the result must equal a single-window replay and a rerun. The same numbers come out of hftbacktest
2.4.4 running the same grid in ticks (tests/unit/sim/test_hftbacktest_parity.py, slow).
"""

import pytest

from mmlab.config import load_config
from mmlab.data.ingest import IngestOptions, ingest
from mmlab.sim.engine import WALL_TIME_KEYS, run_backtest

pytestmark = pytest.mark.real_data

GRID = {
    "strategy": {"name": "grid", "grid_num": 5, "interval_ms": 100, "half_spread_ticks": 2, "skew_ticks": 1.0,
                 "order_qty": 0.001, "max_position": 0.01},
    "sim": {"queue_model": "risk_averse", "exchange_model": "no_partial", "latency_model": "constant",
            "entry_latency_ms": 10, "response_latency_ms": 10, "maker_fee": -0.00005, "taker_fee": 0.0007},
}

GOLDEN = {
    "events": 413_370,
    "events_bbo_skipped": 104_520,
    "n_decisions": 4_795,
    "n_orders": 1_407,
    "n_requests": 2_348,
    "n_fills": 436,
    "n_maker_fills": 436,
    "n_taker_fills": 0,
    "volume_qty": 0.436,
    "fees": -1.39315329,
    "pnl_net": -2.52774671,
    "position_final": 0.01,
    "max_drawdown": 2.5776796049998816,
    "fill_rate": 0.30987917555081734,
    "queue_eta_ms_p50": 461.0,
    "markout_bps_100ms": -0.5894926688479427,
    "markout_bps_1s": -0.9435255288167347,
    "markout_bps_5s": -1.1162264504836452,
    "slippage_bps_mean": -0.08222313246467568,
}


@pytest.fixture(scope="module")
def btc_store(real_data, tmp_path_factory):
    src = real_data / "binance_usdm"
    root = tmp_path_factory.mktemp("store")
    ingest([src / "usdm_btcusdt_20240718.gz", src / "usdm_btcusdt_20240719.gz"], "binance-usdm", root, IngestOptions())
    return root


@pytest.fixture(scope="module")
def cfg(btc_store):
    return load_config({"data": {"root": str(btc_store), "venue": "binance-usdm", "symbols": ["BTCUSDT"]}, **GRID})


@pytest.fixture(scope="module")
def result(cfg):
    return run_backtest(cfg)


def test_grid_golden_numbers(result):
    s = result.summary
    for key, want in GOLDEN.items():
        if isinstance(want, int):
            assert s[key] == want, key
        else:
            assert s[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key


def test_rerun_and_single_window_replay_are_identical(cfg, result):
    again = run_backtest(cfg, window_ns=10**15)
    for name in ("fills", "orders", "state", "labels"):
        assert getattr(again, name).equals(getattr(result, name)), name
    assert {k: v for k, v in again.summary.items() if k not in WALL_TIME_KEYS} == {
        k: v for k, v in result.summary.items() if k not in WALL_TIME_KEYS}
