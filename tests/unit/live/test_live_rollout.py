"""A/B and canary rollout on a live session: symbols on config B's parameters, gates and auto-rollback on the
session's own fills and ticks, canary routing of signals, guard-rail rollback, real-route filtering."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import polars as pl
import pytest

from mmlab.errors import ConfigError
from mmlab.types import (
    ActionKind,
    OrderEventKind,
    Side,
    decision_row_dtype,
    fill_dtype,
    order_event_dtype,
    sim_action_dtype,
    sim_state_row_dtype,
)

S = 1_000_000_000
BASE = {
    "data": {"venue": "bybit-linear", "symbols": ["BTCUSDT", "ETHUSDT"]},
    "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.01, "max_position": 1.0},
    "live": {"venue": "bybit-linear", "warmup_s": 0.0, "book_depth": 200, "horizon_margin_ms": 50.0,
             "stale_ms": 20000.0, "step_ms": 10.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.4,
             "tick_sizes": {"BTCUSDT": 0.1, "ETHUSDT": 0.01}, "lot_sizes": {"BTCUSDT": 0.001, "ETHUSDT": 0.01}},
}
# ETHUSDT alone may go to B, and does (split 100 %).
AB = {"ab_b_set": ["strategy.half_spread_ticks=6.0"], "ab_split_pct": 1.0, "ab_whitelist": ["ETHUSDT"]}


def _cfg(live=None, rollout=None):
    from mmlab.config import load_config

    raw = json.loads(json.dumps(BASE))
    raw["live"].update(live or {})
    if rollout:
        raw["rollout"] = rollout
    return load_config(raw)


def _runner(tmp_path, **kw):
    from live.runner import LiveRunner

    r = LiveRunner(_cfg(**kw), out_dir=tmp_path / "out")
    r.setup()
    return r


def _session(rec, tmp_path, duration_s=2.5, speed=4.0, script=None, **kw):
    from live.replay import ReplayVenue
    from live.runner import LiveRunner

    async def main():
        v = await ReplayVenue(rec, speed=speed).start()
        cfg = _cfg(**kw)
        cfg = cfg.__class__(**{**cfg.__dict__, "live": cfg.live.__class__(**{**cfg.live.__dict__, "ws_url": v.url})})
        r = LiveRunner(cfg, out_dir=tmp_path / "out")
        task = asyncio.get_running_loop().create_task(script(v, r)) if script else None
        try:
            return await r.run(duration_s), r
        finally:
            if task is not None:
                task.cancel()
            await v.close()

    return asyncio.run(main())


def test_b_symbols_run_config_b_params_and_rollback_restores_a(tmp_path):
    r = _runner(tmp_path, live={**AB, "ab_interval_s": 1.0, "ab_gate_duration_s": 0.0})
    ro = r.rollout
    assert ro.routing == {"BTCUSDT": "A", "ETHUSDT": "B"}
    p = r.paper.a.strat_params
    assert p["half_spread_ticks"].tolist() == [1.0, 6.0]
    assert r.metrics.registry.get_sample_value("ab_bucket", {"symbol": "ETHUSDT"}) == 1.0
    # One interval: A fills are maker, B fills taker -> taker_share_increase trips (duration 0) -> rollback.
    t0 = 10 * S
    st = np.zeros(4, dtype=sim_state_row_dtype)
    st["ts_local"] = [t0, t0, t0 + S // 2, t0 + S // 2]
    st["symbol_id"] = [0, 1, 0, 1]
    st["mid_ticks"] = [600000, 300000, 600000, 300000]
    st["best_bid_ticks"], st["best_ask_ticks"] = st["mid_ticks"] - 1, st["mid_ticks"] + 1
    st["pnl"] = [0.0, 0.0, 1.0, -1.0]
    ev = np.zeros(2, dtype=order_event_dtype)
    ev["kind"], ev["symbol_id"], ev["order_seq"], ev["ts_local"] = int(OrderEventKind.SENT), [0, 1], [1, 1], t0
    ev["side"], ev["price_ticks"] = int(Side.BID), [599999, 299999]
    fl = np.zeros(2, dtype=fill_dtype)
    fl["symbol_id"], fl["order_seq"], fl["ts_exch"], fl["ts_local"] = [0, 1], [1, 1], t0 + 1000, t0 + 2000
    fl["price_ticks"], fl["mid_send_ticks"], fl["qty"] = [599999, 300001], [600000, 300000], 0.01
    fl["side"], fl["maker"] = int(Side.BID), [True, False]
    ro.on_step({"states": [st], "oev": [ev], "fills": [fl]}, 1000)
    ro.check(t0 + S)  # interval [t0, t0 + 1 s) closes
    row = ro.series[0]
    assert row["a"]["taker_share"] == 0.0 and row["b"]["taker_share"] == 1.0
    assert row["b"]["slippage_bps"] == pytest.approx(1 / 300000 * 1e4)
    assert row["a"]["fill_rate"] == 1.0 and row["b"]["net_bps"] < 0 < row["a"]["net_bps"]
    assert ro.rolled_back["gate"] in ("slippage_degradation", "taker_share_increase")
    assert p["half_spread_ticks"].tolist() == [1.0, 1.0]  # every symbol back on A
    reg = r.metrics.registry
    assert reg.get_sample_value("rollback_total", {"reason": ro.rolled_back["gate"]}) == 1.0
    assert reg.get_sample_value("mode_switch_total", {"from_mode": "ab", "to_mode": "a"}) == 1.0
    s = ro.summary()
    assert s["rollback_total"] == 1 and s["ab"]["routing_final"] == {"BTCUSDT": "A", "ETHUSDT": "A"}
    ro.close()
    log = [json.loads(x) for x in (tmp_path / "out" / "rollout.jsonl").read_text().splitlines()]
    assert [x["event"] for x in log] == ["ab_start", "ab_interval", "MODE_SWITCH"]
    assert "every symbol routed to A" in log[-1]["detail"]


def test_config_b_that_cannot_share_the_session_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="sim.maker_fee"):
        _runner(tmp_path, live={"ab_b_set": ["sim.maker_fee=0.001"]})
    with pytest.raises(ConfigError, match="drift_features"):
        _runner(tmp_path, rollout={"mode": "canary", "drift_features": ["queue_ahead_qty"]})


def test_live_ab_session_quotes_b_symbols_with_config_b(bybit_linear, tmp_path):
    s, _ = _session(bybit_linear, tmp_path, live=AB)
    assert s["rollout"]["ab"]["routing"] == {"BTCUSDT": "A", "ETHUSDT": "B"}
    ticks = pl.read_ndjson(tmp_path / "out" / "ticks.jsonl").filter(
        (pl.col("gate") == "open") & pl.col("quote_bid").is_not_null())
    tick = {"BTCUSDT": 0.1, "ETHUSDT": 0.01}
    dist = {sym: float(((g["mid"] - g["quote_bid"]) / tick[sym]).median())
            for sym, g in ((k, ticks.filter(pl.col("symbol") == k)) for k in tick)}
    assert dist["BTCUSDT"] < 3 and dist["ETHUSDT"] >= 5.5  # half spread 1 tick (A) vs 6 ticks (B)


def test_canary_routes_a_fraction_of_signals_and_rolls_back_on_a_guard_rail(bybit_linear, tmp_path):
    from mmlab.hpo.canary import route_signals, signal_hash_u

    # One parity failure (parity_fail_max = 0) rolls the canary back at the next check.
    rollout = {"mode": "canary", "canary_fraction": 0.5, "check_interval_s": 0.3, "winrate_horizon_ms": 100.0}

    async def drill(v, runner):
        while runner.rollout is None or len(runner.rollout.route_by_seq) < 6:
            await asyncio.sleep(0.02)
        runner.rollout.parity_failure(detail="decision mismatch against the replay")

    s, r = _session(bybit_linear, tmp_path, duration_s=3.0, script=drill, rollout=rollout)
    ro = s["rollout"]
    assert ro["rollback_total"] == 1 and ro["mode_switch_total"] == 1 and ro["canary"]["mode_final"] == "disabled"
    log = [json.loads(x) for x in (tmp_path / "out" / "rollout.jsonl").read_text().splitlines()]
    sw = [x for x in log if x["event"] == "MODE_SWITCH"]
    assert len(sw) == 1 and sw[0]["from"] == "canary" and sw[0]["to"] == "disabled"
    assert sw[0]["reason"] == "parity_failure" and "parity failure(s)" in sw[0]["detail"]
    reg = r.metrics.registry
    assert reg.get_sample_value("rollback_total", {"reason": sw[0]["reason"]}) == 1.0
    assert reg.get_sample_value("mode_switch_total", {"from_mode": "canary", "to_mode": "disabled"}) == 1.0
    # Routes: before the switch, the hash decides; after it, every signal is paper.
    orders = pl.read_ndjson(tmp_path / "out" / "orders.jsonl").filter(pl.col("event") == "sent")
    by_route = ro["canary"]["signals_by_route"]
    assert by_route["canary"] > 0 and by_route["paper"] > 0 and sum(by_route.values()) == orders.height
    assert reg.get_sample_value("trades_opened_total", {"route": "canary"}) == by_route["canary"]
    assert reg.get_sample_value("trades_opened_total", {"route": "paper"}) == by_route["paper"]
    tick = {"BTCUSDT": 0.1, "ETHUSDT": 0.01}
    early = orders.filter(pl.col("ts_local") < sw[0]["at_ns"])  # before the check that switched
    assert early.height >= 6
    u = signal_hash_u(1337, early["symbol"].to_numpy().astype(object), early["ts_local"].to_numpy(),
                      early["side"].to_numpy(),
                      np.round(early["price"].to_numpy() / np.array([tick[x] for x in early["symbol"]])).astype(np.int64))
    want = route_signals(u, "canary", 0.5)
    got = np.array([r.rollout.route_by_seq[(0 if x == "BTCUSDT" else 1, q)]
                    for x, q in zip(early["symbol"], early["order_seq"], strict=True)])
    assert (got == want).all()
    late = orders.filter(pl.col("ts_local") > sw[0]["ts_ns"])
    assert all(r.rollout.route_by_seq[(0 if x == "BTCUSDT" else 1, q)] == 0
               for x, q in zip(late["symbol"], late["order_seq"], strict=True))
    if (tmp_path / "out" / "fills.jsonl").stat().st_size:
        fills = pl.read_ndjson(tmp_path / "out" / "fills.jsonl")
        assert set(fills["route"].unique()) <= {"paper", "canary"}


def test_real_route_keeps_only_canary_places(tmp_path):
    r = _runner(tmp_path, rollout={"mode": "canary", "canary_fraction": 0.5})
    ro = r.rollout
    ro.route_by_id[(0, 1)] = 1  # canary
    ro.route_by_id[(0, 2)] = 0  # paper
    dec = np.zeros(1, dtype=decision_row_dtype)
    dec["symbol_id"], dec["n_actions"], dec["ts_local"] = 0, 3, 5 * S
    acts = np.zeros(3, dtype=sim_action_dtype)
    acts["order_id"] = [1, 2, 7]
    acts["kind"] = [int(ActionKind.PLACE), int(ActionKind.PLACE), int(ActionKind.CANCEL)]
    out = ro.real_out({"decisions": [dec], "dec_actions": [acts]})
    assert out["decisions"][0]["n_actions"].tolist() == [2]
    assert out["dec_actions"][0]["order_id"].tolist() == [1, 7]  # the paper place withheld, the cancel kept
    ro.close()
