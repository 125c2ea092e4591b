"""Fail-safe mode: critical events route everything to paper for a cooldown, then the session returns when
healthy. State machine in isolation, then sessions against a local replay venue (and the local fake Bybit)."""

from __future__ import annotations

import asyncio
import json

import polars as pl
import pytest

from live.failsafe import REASONS, FailSafe
from mmlab.errors import ConfigError

S = 1_000_000_000
BASE = {
    "data": {"venue": "bybit-linear", "symbols": ["BTCUSDT", "ETHUSDT"]},
    "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.01, "max_position": 1.0},
    "live": {"venue": "bybit-linear", "warmup_s": 0.0, "book_depth": 200, "horizon_margin_ms": 50.0,
             "stale_ms": 20000.0, "step_ms": 10.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.4,
             "tick_sizes": {"BTCUSDT": 0.1, "ETHUSDT": 0.01}, "lot_sizes": {"BTCUSDT": 0.001, "ETHUSDT": 0.01}},
}


def test_enter_rearm_and_exit_only_when_cooled_down_and_healthy():
    fs = FailSafe(cooldown_s=10.0)
    assert fs.update(0, {"stale_feed": "BTCUSDT 31 s"}, {"stale_feed": "x"}) == "enter"
    assert fs.active and fs.reason == "stale_feed" and fs.switches == {"stale_feed": 1}
    assert fs.update(11 * S, {}, {"stale_feed": "x"}) is None  # cooldown over, cause still holds
    assert fs.update(12 * S, {"parity_desync": "late rows"}, {}) is None  # a new event while active re-arms
    assert fs.until_ns == 22 * S and fs.switches == {"stale_feed": 1}  # one switch: counted on entry only
    assert fs.update(21 * S, {}, {}) is None
    assert fs.update(22 * S, {}, {}) == "exit" and not fs.active
    assert [e["event"] for e in fs.events] == ["fail_safe_enter", "fail_safe_rearm", "fail_safe_exit"]
    assert fs.summary(30 * S)["active_s"] == 22.0
    with pytest.raises(ConfigError, match="unknown; use one of"):
        fs.trip("bad_reason", 0)
    assert set(REASONS) == {"real_auth", "real_rest", "reconnect_failures", "parity_desync", "stale_feed"}


def _metric(runner, name: str, labels: dict) -> float:
    return runner.metrics.registry.get_sample_value(name, labels) or 0.0


def _run(rec, tmp_path, live: dict, script=None, duration_s: float = 3.0, venue: dict | None = None):
    from live.replay import ReplayVenue
    from live.runner import LiveRunner
    from mmlab.config import load_config

    async def main():
        v = await ReplayVenue(rec, **{"speed": 4.0, **(venue or {})}).start()
        raw = json.loads(json.dumps(BASE))
        raw["live"].update({"ws_url": v.url, "failsafe": True, **live})
        r = LiveRunner(load_config(raw), out_dir=tmp_path / "out")
        task = asyncio.get_running_loop().create_task(script(v, r)) if script else None
        try:
            s = await r.run(duration_s)
        finally:
            if task is not None:
                task.cancel()
            await v.close()
        return s, r, v

    return asyncio.run(main())


def test_repeated_reconnect_failures_switch_to_fail_safe_and_return_when_healthy(bybit_linear, tmp_path):
    async def outage(v, r):
        while v.sent < 100:  # connected and streaming
            await asyncio.sleep(0.02)
        port = v.port
        v.server.close()  # the venue goes away: every reconnect attempt is refused
        await v.server.wait_closed()
        await asyncio.sleep(0.8)
        await v.start(port)  # back on the same port

    s, r, v = _run(bybit_linear, tmp_path, {"failsafe_cooldown_s": 0.4, "failsafe_reconnect_failures": 2,
                                            "backoff_initial_s": 0.05, "backoff_max_s": 0.1}, outage, 3.5)
    fs = s["failsafe"]
    assert fs["switches"] == {"reconnect_failures": 1} and s["connect_errors"] >= 2 and s["reconnects"] >= 1
    kinds = [e["event"] for e in fs["events"]]
    assert kinds[0] == "fail_safe_enter" and "fail_safe_exit" in kinds and not fs["active"]
    enter = fs["events"][0]
    exit_ = next(e for e in fs["events"] if e["event"] == "fail_safe_exit")
    assert exit_["ts_ns"] - enter["ts_ns"] >= 0.4 * S  # not before the cooldown
    assert _metric(r, "fail_safe_switch_total", {"reason": "reconnect_failures"}) == 1.0
    assert _metric(r, "fail_safe_active", {}) == 0.0
    assert v.connections >= 2 and s["per_symbol"]["BTCUSDT"]["book_valid"]
    ticks = pl.read_ndjson(tmp_path / "out" / "ticks.jsonl")
    after = ticks.filter(pl.col("ts_local") > exit_["ts_ns"])
    assert (after["gate"] == "open").any()  # quoting again after the return


def test_stale_feed_beyond_the_hard_limit_trips_and_stays_while_stale(bybit_linear, tmp_path):
    s, r, _ = _run(bybit_linear, tmp_path, {"failsafe_cooldown_s": 0.2, "failsafe_stale_ms": 500.0,
                                            "stale_ms": 300.0}, venue={"stall_after": 150}, duration_s=2.5)
    fs = s["failsafe"]
    assert fs["switches"] == {"stale_feed": 1} and fs["active"]  # never healthy again: stays in fail-safe
    assert "no market data" in fs["events"][0]["detail"]
    assert _metric(r, "fail_safe_switch_total", {"reason": "stale_feed"}) == 1.0
    assert _metric(r, "fail_safe_active", {}) == 1.0


def test_parity_desync_reported_by_a_check_trips_the_mode(bybit_linear, tmp_path):
    async def desync(v, r):
        while v.sent < 100:
            await asyncio.sleep(0.02)
        r.failsafe.trip("parity_desync", "decision mismatch against the replay")

    s, _, _ = _run(bybit_linear, tmp_path, {"failsafe_cooldown_s": 0.3}, desync, 2.0)
    fs = s["failsafe"]
    assert fs["switches"] == {"parity_desync": 1} and not fs["active"]
    assert fs["events"][0]["detail"] == "decision mismatch against the replay"


def test_real_auth_failure_routes_to_paper_then_resumes_the_venue_after_the_cooldown(bybit_linear, tmp_path,
                                                                                      monkeypatch):
    from live.fake_venue import FakeBybit
    from live.real.session import RealSession, check_real_mode
    from live.replay import ReplayVenue
    from live.runner import LiveRunner
    from mmlab.config import load_config

    key, secret = "fs-key", "fs-secret-123"
    monkeypatch.setenv("BYBIT_API_KEY", key)
    monkeypatch.setenv("BYBIT_API_SECRET", secret)
    fake = FakeBybit(api_key=key, api_secret=secret).start()
    fake.faults.reject_signature = True
    resumed_at = []

    async def main():
        v = await ReplayVenue(bybit_linear, speed=4.0).start()
        raw = json.loads(json.dumps(BASE))
        raw["live"].update({"ws_url": v.url, "real_rest_url": fake.rest_url, "real_ws_url": fake.ws_url,
                            "real_reconcile_interval_s": 0.5, "real_max_order_notional": 5000.0,
                            "real_max_position_qty": 1.0, "real_max_orders_per_s": 50.0,
                            "failsafe": True, "failsafe_cooldown_s": 0.5})
        cfg = load_config(raw)
        creds, limits = check_real_mode(cfg, real=True, confirmed=True)
        r = LiveRunner(cfg, out_dir=tmp_path / "out")
        r.real = RealSession(cfg, creds, limits, out_dir=r.out)

        async def heal():
            while v.sent < 150:
                await asyncio.sleep(0.02)
            fake.faults.reject_signature = False
            resumed_at.append(len(fake.requests))

        t = asyncio.get_running_loop().create_task(heal())
        try:
            return await r.run(5.0), r
        finally:
            t.cancel()
            await v.close()

    try:
        s, _ = asyncio.run(main())
    finally:
        fake.close()
    fs = s["failsafe"]
    assert fs["switches"] == {"real_auth": 1} and "10004" in fs["events"][0]["detail"]
    assert any(e["event"] == "real_probe_ok" for e in fs["events"]) and not fs["active"]
    assert s["n_orders"] > 0  # the strategy kept quoting on paper during the fail-safe
    creates = [q for q in fake.requests[resumed_at[0]:] if q[1] == "/v5/order/create"]
    assert creates and s["real"]["halted"] is None  # orders reach the venue again after the return
    assert not fake.open_orders()  # cancel-all at shutdown
