"""Real mode against the local fake Bybit venue (real HTTP and websocket over loopback): signed order round
trips, idempotent retries, reconciliation, limits and the halt on a rejected signature."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from live.fake_venue import FakeBybit
from live.real.order_manager import Halted, LimitRefused, OrderManager, RealLimits
from live.real.private_ws import PrivateStream
from live.real.reconcile import reconcile
from live.real.rest import AuthRejected, BybitRest, Credentials, VenueError, sign
from mmlab.types import ActionKind, OrderFlag, Side, sim_action_dtype

KEY, SECRET = "test-key-7", "s3cr3t-value-never-logged"


@pytest.fixture
def venue():
    v = FakeBybit(api_key=KEY, api_secret=SECRET).start()
    yield v
    v.close()


LIMITS = RealLimits(10_000.0, 1.0, 100.0)


def _om(venue, *, limits=LIMITS, secret=SECRET, log=None, **kw):
    rest = BybitRest(Credentials(KEY, secret), venue.rest_url, retries=3, backoff_s=0.01, log=log, **kw)
    return OrderManager(rest, ["BTCUSDT", "ETHUSDT"], [0.1, 0.01], [0.001, 0.01], limits, tag="mmtest", log=log)


def _wait(cond, timeout_s=5.0):
    t = time.monotonic()
    while not cond():
        if time.monotonic() - t > timeout_s:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_signature_matches_bybit_v5_definition():
    import hashlib
    import hmac

    want = hmac.new(b"sec", b"1700000000000key5000category=linear&symbol=BTCUSDT", hashlib.sha256).hexdigest()
    assert sign("sec", 1700000000000, "key", 5000, "category=linear&symbol=BTCUSDT") == want
    c = Credentials("key", "zq-private-9")
    assert "zq-private-9" not in repr(c) and "zq-private-9" not in str(c) and "zq-private-9" not in f"{c}"


def test_create_amend_cancel_round_trip(venue):
    om = _om(venue)
    o = om.place(0, Side.BID, 65000.0, 0.01)
    assert o.link_id == "mmtest-0-1" and o.order_id
    [vo] = venue.open_orders("BTCUSDT")
    assert (vo.order_link_id, vo.side, vo.price, vo.qty, vo.time_in_force) == ("mmtest-0-1", "Buy", "65000.0", 0.01,
                                                                              "PostOnly")
    om.amend(o.link_id, price=65000.5, qty=0.02)
    assert (vo.price, vo.qty) == ("65000.5", 0.02)
    om.cancel(o.link_id)
    assert vo.status == "Cancelled" and not venue.open_orders() and not om.working()
    paths = [r[1] for r in venue.requests]
    assert paths == ["/v5/order/create", "/v5/order/amend", "/v5/order/cancel"]
    assert all(r[3] == 0 and r[4] == 200 for r in venue.requests)
    # cancel-all and a reduce-only sell
    om.place(1, Side.ASK, 3000.0, 0.1)
    om.place(1, Side.ASK, 3001.0, 0.1)
    om.cancel_all(1)
    assert not venue.open_orders("ETHUSDT") and not om.working("ETHUSDT")


def test_actions_of_a_decision_route_with_deterministic_link_ids(venue):
    om = _om(venue)
    a = np.zeros(3, dtype=sim_action_dtype)
    a["kind"] = [ActionKind.PLACE, ActionKind.PLACE, ActionKind.MODIFY]
    a["order_id"] = [7, 8, 7]
    a["side"] = [Side.BID, Side.ASK, Side.BID]
    a["price_ticks"] = [650000, 650010, 649990]
    a["qty"] = [0.01, 0.01, 0.01]
    a["flags"] = OrderFlag.POST_ONLY
    reqs = om.route_actions(0, a)
    assert [r[0] for r in reqs] == ["place", "place", "amend"] and [r[7] for r in reqs[:2]] == ["mmtest-0-1",
                                                                                               "mmtest-0-2"]
    for r in reqs:
        om.execute(r)
    assert sorted(o.price for o in venue.open_orders()) == ["64999.0", "65001.0"]
    c = np.zeros(1, dtype=sim_action_dtype)
    c["kind"], c["order_id"] = ActionKind.CANCEL, 8
    for r in om.route_actions(0, c):
        om.execute(r)
    assert [o.order_link_id for o in venue.open_orders()] == ["mmtest-0-1"]


def test_5xx_after_acceptance_is_retried_with_the_same_link_id_and_no_duplicate(venue):
    venue.faults.http_5xx_after = 1  # the venue accepts, the gateway answers 502
    venue.faults.http_5xx_before = 0
    om = _om(venue)
    o = om.place(0, Side.BID, 65000.0, 0.01)
    creates = [r for r in venue.requests if r[1] == "/v5/order/create"]
    assert [r[4] for r in creates] == [502, 200] and creates[1][3] == 110072  # duplicate orderLinkId on the retry
    assert {r[2]["orderLinkId"] for r in creates} == {o.link_id}
    assert len(venue.open_orders()) == 1 and o.order_id == venue.open_orders()[0].order_id
    assert om.rest.n_retries == 1


def test_5xx_before_acceptance_is_retried_and_places_once(venue):
    venue.faults.http_5xx_before = 2
    om = _om(venue)
    om.place(0, Side.ASK, 65010.0, 0.01)
    creates = [r for r in venue.requests if r[1] == "/v5/order/create"]
    assert [r[4] for r in creates] == [503, 503, 200] and len(venue.open_orders()) == 1


def test_rejected_signature_halts_with_a_clear_log_line(venue, caplog):
    om = _om(venue, secret="not-the-secret")
    with caplog.at_level(logging.ERROR, logger="mmlab.live.real"), \
            pytest.raises(AuthRejected, match="retCode 10004 .signature rejected.: check BYBIT_API_KEY"):
        om.place(0, Side.BID, 65000.0, 0.01)
    assert om.halted and "real trading HALTED" in caplog.text and "retCode 10004" in caplog.text
    with pytest.raises(Halted, match="real trading is halted"):
        om.place(0, Side.BID, 65000.0, 0.01)
    assert len(venue.requests) == 1 and not venue.orders  # nothing was retried or placed


def test_stale_timestamp_is_rejected_by_the_venue(venue):
    om = _om(venue, clock_ms=lambda: time.time_ns() // 1_000_000 - 60_000)
    with pytest.raises(AuthRejected, match="retCode 10002"):
        om.place(0, Side.BID, 65000.0, 0.01)


def test_limits_refuse_oversized_orders_before_sending(venue):
    om = _om(venue, limits=RealLimits(1000.0, 0.02, 2.0))
    with pytest.raises(LimitRefused, match=r"notional 6500.00 > \[live\] real_max_order_notional = 1000.0"):
        om.place(0, Side.BID, 65000.0, 0.1)
    om.place(1, Side.BID, 3000.0, 0.01)
    om.place(1, Side.BID, 3000.0, 0.01)
    with pytest.raises(LimitRefused, match="real_max_position_qty"):
        om.place(1, Side.BID, 3000.0, 0.01)
    with pytest.raises(LimitRefused, match="real_max_orders_per_s"):
        om.place(1, Side.ASK, 3010.0, 0.01)
    assert len(venue.open_orders()) == 2 and om.counts["refused"] == 3
    with pytest.raises(Exception, match=r"real_max_order_notional, \[live\] real_max_orders_per_s"):
        RealLimits.from_live_config(type("L", (), {"real_max_order_notional": 0.0, "real_max_position_qty": 1.0,
                                                   "real_max_orders_per_s": 0.0})())


def test_reconcile_cancels_an_order_the_venue_has_but_we_do_not(venue):
    om = _om(venue)
    om.place(0, Side.BID, 65000.0, 0.01)
    foreign = venue.add_foreign_order("BTCUSDT", "Sell", "66000.0", 0.5)
    rep = reconcile(om)
    assert [f["order_id"] for f in rep["foreign"]] == [foreign] and rep["canceled_foreign"] == 1
    assert [o.order_link_id for o in venue.open_orders()] == ["mmtest-0-1"] and not rep["missing"]


def test_reconcile_marks_an_order_we_have_but_the_venue_does_not(venue):
    om = _om(venue)
    o = om.place(0, Side.BID, 65000.0, 0.01)
    venue.remove_order(o.order_id)
    rep = reconcile(om, policy="report")
    assert rep["missing"] == [o.link_id] and not o.working and not rep["foreign"]


def test_reconcile_adopts_the_venue_position_and_a_lost_create(venue):
    om = _om(venue)
    o = om.place(0, Side.BID, 65000.0, 0.01)
    venue.fill(o.order_id, 0.004)
    o.status = "Rejected"  # as if the create's answer had been lost
    rep = reconcile(om)
    assert rep["position_diff"]["BTCUSDT"] == {"ours": 0.0, "venue": 0.004} and om.position["BTCUSDT"] == 0.004
    assert rep["revived"] == [o.link_id] and o.working and o.leaves_qty == pytest.approx(0.006)


def test_private_stream_authenticates_and_applies_order_execution_position(venue):
    om = _om(venue)

    async def main():
        s = PrivateStream(Credentials(KEY, SECRET), venue.ws_url, om.on_stream, backoff_initial_s=0.05)
        task = asyncio.create_task(s.run())
        await asyncio.wait_for(s.authenticated.wait(), 5)
        await asyncio.sleep(0.05)
        o = await asyncio.to_thread(om.place, 0, Side.BID, 65000.0, 0.01)
        await asyncio.to_thread(venue.fill, o.order_id, 0.01)
        for _ in range(200):
            if om.position["BTCUSDT"] and not o.working:
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(venue.drop_ws)  # dropped connection: reconnect and authenticate again
        for _ in range(200):
            if s.connections >= 2 and s.authenticated.is_set():
                break
            await asyncio.sleep(0.01)
        s.stop()
        await asyncio.wait_for(task, 5)
        return s, o

    s, o = asyncio.run(main())
    assert o.status == "Filled" and om.position["BTCUSDT"] == pytest.approx(0.01)
    assert om.executions[0]["orderLinkId"] == o.link_id and om.executions[0]["isMaker"] is True
    assert s.connections >= 2 and venue.auth_ok >= 2


def test_private_stream_rejected_auth_stops(venue):
    failed = []

    async def main():
        s = PrivateStream(Credentials(KEY, "wrong"), venue.ws_url, lambda t, r: None, on_auth_failed=failed.append)
        await asyncio.wait_for(s.run(), 5)
        return s

    s = asyncio.run(main())
    assert s.auth_failed == "Signature verification failed" and failed == [s.auth_failed]


def test_http_errors_exhaust_retries_with_a_clear_error(venue):
    venue.faults.http_5xx_before = 10
    om = _om(venue)
    with pytest.raises(VenueError, match=r"failed after 4 attempts \(HTTP 503\)"):
        om.place(0, Side.BID, 65000.0, 0.01)
    assert not venue.orders
