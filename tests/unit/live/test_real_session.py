"""``mmlab live --real``: the refusals, and a session routing its decisions to the local fake Bybit venue (real
HTTP and websocket over loopback) while a local replay venue feeds the public stream."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from typer.testing import CliRunner

from live.fake_venue import FakeBybit
from mmlab.cli import app

KEY, SECRET = "session-key-1", "Zx9-top-secret-Qw7"
BASE = {
    "data": {"venue": "bybit-linear", "symbols": ["BTCUSDT", "ETHUSDT"]},
    "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.01, "max_position": 1.0},
    "live": {"venue": "bybit-linear", "warmup_s": 0.0, "book_depth": 200, "horizon_margin_ms": 50.0,
             "stale_ms": 20000.0, "step_ms": 10.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.4,
             "tick_sizes": {"BTCUSDT": 0.1, "ETHUSDT": 0.01}, "lot_sizes": {"BTCUSDT": 0.001, "ETHUSDT": 0.01}},
}
LIMITS = {"real_max_order_notional": 5000.0, "real_max_position_qty": 1.0, "real_max_orders_per_s": 50.0}


def test_real_without_confirmation_flag_is_refused(monkeypatch):
    monkeypatch.setenv("BYBIT_API_KEY", KEY)
    monkeypatch.setenv("BYBIT_API_SECRET", SECRET)
    r = CliRunner().invoke(app, ["live", "--real", "--symbols", "BTCUSDT"])
    assert r.exit_code == 2 and "real mode refused" in r.output and "--i-understand-this-trades-real-money" in r.output
    r = CliRunner().invoke(app, ["live", "--paper", "--real", "--symbols", "BTCUSDT"])
    assert r.exit_code == 2 and "one of the two modes" in r.output


def test_real_without_limits_or_keys_is_refused(monkeypatch):
    monkeypatch.delenv("BYBIT_API_KEY", raising=False)
    monkeypatch.delenv("BYBIT_API_SECRET", raising=False)
    base = ["live", "--real", "--i-understand-this-trades-real-money", "--symbols", "BTCUSDT"]
    r = CliRunner().invoke(app, base)
    assert r.exit_code == 2 and "set the limits [live] real_max_order_notional, [live] real_max_position_qty" in r.output
    sets = [x for k, v in LIMITS.items() for x in ("--set", f"live.{k}={v}")]
    r = CliRunner().invoke(app, base + sets)
    assert r.exit_code == 2 and "needs the environment variables BYBIT_API_KEY and BYBIT_API_SECRET" in r.output
    r = CliRunner().invoke(app, base + sets + ["--venue", "binance-usdm"])
    assert r.exit_code == 2 and "has no real-mode adapter" in r.output


def _real_session(bybit_linear, tmp_path, fake, monkeypatch, duration_s=2.5, live=None):
    from live.real.session import RealSession, check_real_mode
    from live.replay import ReplayVenue
    from live.runner import LiveRunner
    from mmlab.config import load_config

    monkeypatch.setenv("BYBIT_API_KEY", KEY)
    monkeypatch.setenv("BYBIT_API_SECRET", SECRET)

    async def main():
        v = await ReplayVenue(bybit_linear, speed=4.0).start()
        raw = json.loads(json.dumps(BASE))
        raw["live"].update({"ws_url": v.url, "real_rest_url": fake.rest_url, "real_ws_url": fake.ws_url,
                            "real_reconcile_interval_s": 0.5, **LIMITS, **(live or {})})
        cfg = load_config(raw)
        creds, limits = check_real_mode(cfg, real=True, confirmed=True)
        r = LiveRunner(cfg, out_dir=tmp_path / "out")
        r.real = RealSession(cfg, creds, limits, out_dir=r.out)
        try:
            return await r.run(duration_s)
        finally:
            await v.close()

    return asyncio.run(main())


@pytest.fixture
def fake():
    v = FakeBybit(api_key=KEY, api_secret=SECRET).start()
    yield v
    v.close()


def test_real_session_routes_decisions_reconciles_and_cancels_at_shutdown(bybit_linear, tmp_path, fake, monkeypatch,
                                                                          capfd, caplog):
    foreign = fake.add_foreign_order("BTCUSDT", "Buy", "1000.0", 0.001)
    with caplog.at_level(logging.DEBUG):
        s = _real_session(bybit_linear, tmp_path, fake, monkeypatch)
    real = s["real"]
    assert s["mode"] == "real" and real["halted"] is None and real["counts"]["placed"] > 0
    creates = [r for r in fake.requests if r[1] == "/v5/order/create"]
    links = [r[2]["orderLinkId"] for r in creates]
    assert len(links) == len(set(links)) and all(x.startswith(real["tag"] + "-") for x in links)
    assert all(r[2]["timeInForce"] == "PostOnly" and r[2]["category"] == "linear" for r in creates)
    assert not fake.open_orders()  # cancel-all at shutdown
    assert fake.orders[foreign].status == "Cancelled" and real["foreign_canceled"] >= 1  # reconciled at start
    assert real["reconciles"] >= 3 and real["ws_connections"] >= 1 and fake.auth_ok >= 1
    assert all(r[3] == 0 for r in fake.requests)  # every request was signed correctly
    # The secret is in no output file, log record or console line.
    out = tmp_path / "out"
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            if f.suffix == ".gz":
                import gzip

                data = gzip.decompress(data)
            assert SECRET.encode() not in data, f
    cap = capfd.readouterr()
    assert SECRET not in cap.out + cap.err + caplog.text
    records = [json.loads(x) for x in (out / "real.jsonl").read_text().splitlines()]
    assert {"start", "reconcile", "placed", "cancel_all", "stop"} <= {r["event"] for r in records}


def test_real_session_halts_on_rejected_signature(bybit_linear, tmp_path, fake, monkeypatch, caplog):
    fake.faults.reject_signature = True
    with caplog.at_level(logging.ERROR, logger="mmlab.live.real"):
        s = _real_session(bybit_linear, tmp_path, fake, monkeypatch, duration_s=1.5)
    assert "retCode 10004" in s["real"]["halted"] and "real trading HALTED" in caplog.text
    assert not fake.open_orders() and not [r for r in fake.requests if r[1] == "/v5/order/create"]
    gates = {json.loads(x)["gate"] for x in (tmp_path / "out" / "ticks.jsonl").read_text().splitlines()}
    assert gates <= {"kill_switch", "shutdown"} and s["n_orders"] == 0  # the paper side does not quote either
    assert SECRET not in caplog.text
