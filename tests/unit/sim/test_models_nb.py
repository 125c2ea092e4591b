"""Queue, latency and fee kernels against hand-computed numbers."""

import math

import numpy as np
import pytest
from simcase import ASK, BID, MARKET, Tape, place, run

from mmlab.config import load_config
from mmlab.sim.engine import SymbolSpec, _sim_params
from mmlab.sim.fees_nb import fee_nb, notional_nb, pnl_nb
from mmlab.sim.latency_nb import entry_latency_nb, response_latency_nb, rng_uniform_nb
from mmlab.sim.queue_nb import queue_exec_qty_nb, queue_on_depth_nb, queue_on_trade_nb, queue_prob_nb
from mmlab.types import ContractType, LatencyModelId, QueueModelId, RequestKind, run_state_dtype

Q = QueueModelId


@pytest.mark.parametrize(
    "model,expected",
    [
        (Q.POWER_PROB, 3 - (1 - 49 / 58) * 3),  # p = 7^2 / (7^2 + 3^2)
        (Q.POWER_PROB2, 3 - (1 - 0.49) * 3),  # p = 7^2 / 10^2
        (Q.POWER_PROB3, 3 - (1 - 0.91) * 3),  # p = 1 - (3 / 10)^2
        (Q.LOG_PROB, 1.8),  # p = ln 8 / (ln 8 + ln 4) = 3/5
        (Q.LOG_PROB2, 3 - (1 - math.log(8) / math.log(11)) * 3),
        (Q.RISK_AVERSE, 3.0),  # cancellations never advance us
    ],
)
def test_queue_depth_decrease_splits_cancellations_by_probability(model, expected):
    # We have 3 ahead in a level of 10 (7 behind); it drops to 6, of which 1 was a trade already counted.
    front, cum = queue_on_depth_nb(int(model), 2.0, 3.0, 1.0, 10.0, 6.0)
    assert front == pytest.approx(expected)
    assert cum == (1.0 if model == Q.RISK_AVERSE else 0.0)


def test_queue_level_growth_and_caps():
    assert queue_on_depth_nb(int(Q.POWER_PROB), 2.0, 3.0, 0.0, 10.0, 12.0) == (3.0, 0.0)  # joined behind us
    assert queue_on_depth_nb(int(Q.RISK_AVERSE), 2.0, 3.0, 0.0, 10.0, 2.0) == (2.0, 0.0)  # capped by the level
    # Trades explain the whole decrease: no cancellation to split.
    assert queue_on_depth_nb(int(Q.LOG_PROB), 2.0, 1.0, 2.0, 5.0, 3.0) == (1.0, 0.0)
    # 0/0 probability at an empty level: falls back to the level size.
    assert queue_on_depth_nb(int(Q.POWER_PROB), 2.0, 0.0, 0.0, 0.0, 0.0) == (0.0, 0.0)


def test_queue_trade_and_execution_in_lots():
    assert queue_on_trade_nb(3.0, 0.5, 2.0) == (1.0, 2.5)
    assert queue_exec_qty_nb(-0.0015, 0.001) == pytest.approx(0.002)  # 1.5 lots rounds away from zero
    assert queue_exec_qty_nb(-0.0004, 0.001) == 0.0
    assert queue_exec_qty_nb(1.0, 0.001) == 0.0
    assert queue_prob_nb(int(Q.POWER_PROB), 1.0, 0.0, 5.0) == 1.0


def _latency_setup(**sim):
    cfg = load_config({"sim": sim})
    sp = _sim_params(cfg, 1)
    rs = np.zeros(1, dtype=run_state_dtype)
    rs["rng_state"] = np.uint64(cfg.sim.seed)
    return sp, rs


def test_empirical_latency_interpolates_between_recorded_round_trips():
    sp, rs = _latency_setup()
    sp["latency_model"] = int(LatencyModelId.EMPIRICAL)
    table = np.array([[0, 10, 15], [100, 130, 140]], dtype=np.int64)
    assert entry_latency_nb(sp, rs, table, -5, int(RequestKind.NEW)) == 10  # before the first row
    assert entry_latency_nb(sp, rs, table, 50, int(RequestKind.NEW)) == 20  # 10 + (30 - 10) / 100 * 50
    assert entry_latency_nb(sp, rs, table, 200, int(RequestKind.NEW)) == 30  # after the last row
    assert response_latency_nb(sp, rs, table, 70) == 7  # 5 + (10 - 5) / 120 * 60 = 7.5, truncated
    assert response_latency_nb(sp, rs, table, 500) == 10


def test_per_action_and_constant_latency():
    sp, rs = _latency_setup(latency_model="per_action", entry_latency_ms=2, cancel_latency_ms=1, modify_latency_ms=3)
    t = np.zeros((1, 3), dtype=np.int64)
    assert [entry_latency_nb(sp, rs, t, 0, int(k)) for k in (RequestKind.NEW, RequestKind.CANCEL, RequestKind.MODIFY)] == [
        2_000_000, 1_000_000, 3_000_000]
    sp, rs = _latency_setup(latency_model="constant", entry_latency_ms=2, cancel_latency_ms=1)
    assert entry_latency_nb(sp, rs, t, 0, int(RequestKind.CANCEL)) == 2_000_000


def test_random_latency_is_seeded_and_shocks_multiply():
    t = np.zeros((1, 3), dtype=np.int64)

    def draws(seed, **kw):
        sp, rs = _latency_setup(latency_model="random", entry_latency_ms=1, latency_jitter_ms=0.5, seed=seed, **kw)
        return [entry_latency_nb(sp, rs, t, 0, 1) for _ in range(200)]

    a, b, c = draws(7), draws(7), draws(8)
    assert a == b and a != c
    assert min(a) >= 1_000_000
    assert abs(np.mean(a) - 1_500_000) < 150_000  # exponential jitter of mean 0.5 ms
    sp, rs = _latency_setup(latency_model="random", entry_latency_ms=1, shock_prob=1.0, shock_mult=10.0)
    assert entry_latency_nb(sp, rs, t, 0, 1) == 10_000_000
    u = [rng_uniform_nb(rs) for _ in range(1000)]
    assert 0.0 <= min(u) and max(u) < 1.0


def test_fees_and_rebates():
    lin, inv = int(ContractType.LINEAR), int(ContractType.INVERSE)
    assert notional_nb(lin, 1.0, 100.0, 2.0) == 200.0
    assert fee_nb(lin, 1.0, 100.0, 2.0, True, -0.0001, 0.0005) == pytest.approx(-0.02)  # maker rebate
    assert fee_nb(lin, 1.0, 100.0, 2.0, False, -0.0001, 0.0005) == pytest.approx(0.1)
    assert notional_nb(inv, 100.0, 50_000.0, 10.0) == pytest.approx(0.02)  # 10 contracts of 100 USD in BTC
    # Long 10 inverse contracts bought at 50k, marked at 55k: 1000 * (1/50k - 1/55k) BTC.
    bal = -notional_nb(inv, 100.0, 50_000.0, 10.0)
    assert pnl_nb(inv, 100.0, bal, 10.0, 0.0, 55_000.0) == pytest.approx(1000 * (1 / 50_000 - 1 / 55_000))
    assert pnl_nb(lin, 1.0, -200.0, 2.0, -0.02, 110.0) == pytest.approx(20.02)


def test_inverse_contract_pnl_through_the_engine():
    inv = SymbolSpec("BTCUSD_PERP", tick_size=0.5, lot_size=1.0, contract_type="inverse", contract_size=100.0)
    tape = Tape().book(0, {99_998: 50.0}, {100_000: 50.0})  # ask 50000.0
    tape.depth(5, BID, 110_000, 50.0).depth(5, ASK, 100_000, 0.0).depth(5, ASK, 110_002, 50.0)  # mid ~55000.25
    tape.end(8)
    r = run(tape, [place(1, 1, BID, 0, 10.0, otype=MARKET)], symbols=[inv], taker_fee=0.0005)
    f = r.fills
    assert f["price"][0] == 50_000.0 and f["qty"][0] == 10.0
    assert f["fee"][0] == pytest.approx(0.02 * 0.0005)  # in BTC
    mark = 110_001 * 0.5
    expected = 1000 * (1 / 50_000 - 1 / mark) - 0.02 * 0.0005
    assert r.summary["pnl_net"] == pytest.approx(expected)
    assert r.summary["per_symbol"]["BTCUSD_PERP"]["contract"] == "inverse"
    assert r.state["pnl"][-1] == pytest.approx(expected)


def test_maker_rebate_sign_in_the_summary():
    tape = Tape().book(0, {100: 5.0}, {101: 5.0}).trade(2, ASK, 99, 1.0).end(4)
    r = run(tape, [place(1, 1, BID, 100, 2.0)], maker_fee=-0.0002)
    assert r.summary["fees"] == pytest.approx(2.0 * 10.0 * -0.0002)
    assert r.summary["fees"] < 0
    # Marked at mid 100.5 ticks: 2 * (10.05 - 10.0) = 0.1 plus the rebate.
    assert r.summary["pnl_net"] == pytest.approx(0.1 + 0.004)


def test_random_latency_shock_episodes_last_and_slow_reports_too():
    t = np.zeros((1, 3), dtype=np.int64)
    sp, rs = _latency_setup(latency_model="random", entry_latency_ms=1, response_latency_ms=2, shock_prob=1.0,
                            shock_mult=5.0)
    sp["shock_duration_ns"] = 1e9  # mean 1 s
    assert entry_latency_nb(sp, rs, t, 0, 1) == 5_000_000  # starts an episode at t = 0
    end = int(rs[0]["shock_until_ns"])
    assert end > 0
    assert response_latency_nb(sp, rs, t, end - 1) == 10_000_000  # reports are slow inside it
    assert response_latency_nb(sp, rs, t, end) == 2_000_000  # and normal after it (reports start no episode)
    sp["shock_prob"] = 1e-12
    assert entry_latency_nb(sp, rs, t, end + 1, 1) == 1_000_000
