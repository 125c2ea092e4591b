"""Faults of the live feed, each against a local replay venue: reconnect, keepalive, gaps, garbage, stalls,
warm-up, backpressure and graceful shutdown."""

from __future__ import annotations

import json

import polars as pl


def test_server_killed_mid_stream_reconnects_with_backoff_and_resubscribes(session):
    s = session(2.5, venue={"close_after": 120})
    assert s.venue.connections >= 2 and s.summary["reconnects"] >= 1
    subs = [m for m in s.venue.received if json.loads(m)["op"] == "subscribe"]
    assert len(subs) >= 2  # subscribed again on the new connection
    assert s.summary["per_symbol"]["BTCUSDT"]["book_valid"]  # re-synced from the new connection's snapshots
    assert s.summary["gaps"] == 0


def test_ping_keepalive_is_sent_and_answered(session):
    s = session(1.5, live={"ping_interval_s": 0.2})
    pings = [m for m in s.venue.received if json.loads(m)["op"] == "ping"]
    assert len(pings) >= 4 and s.summary["pings"] == len(pings)
    assert s.summary["frames_by_kind"]["control"] >= 1 + len(pings)  # subscribe ack + pongs


def test_dropped_delta_resubscribes_and_holds_quotes_until_a_fresh_snapshot(session):
    s = session(3.0, venue={"drop_deltas": (150,), "resync_delay_s": 0.4})
    assert s.summary["gaps"] == 1
    gap = s.summary["sequence_gaps"][0]
    assert gap["to_update_id"] == gap["from_update_id"] + 2
    ops = [json.loads(m) for m in s.venue.received]
    topic = f"orderbook.200.{gap['symbol']}"
    assert {"op": "unsubscribe", "args": [topic]} in ops and ops.count({"op": "subscribe", "args": [topic]}) == 1
    ticks = s.ticks().filter(pl.col("symbol") == gap["symbol"])
    held = ticks.filter(pl.col("gate") == "book_invalid")
    assert held.height >= 1 and (held["n_quotes_bid"] + held["n_quotes_ask"]).sum() == 0
    after = ticks.filter(pl.col("ts_local") > held["ts_local"].max())
    assert after.height > 0 and (after["gate"] == "open").any()  # quoting again once consistent
    assert s.summary["per_symbol"][gap["symbol"]]["book_valid"]


def test_garbage_and_unknown_frames_are_counted_and_skipped(session):
    s = session(1.5, venue={"garbage_every": 25})
    kinds = s.summary["frames_by_kind"]
    assert kinds["garbage"] >= 5 and kinds["skipped"] >= 5 and kinds["market"] > 100
    assert s.summary["n_decisions"] > 0 and s.summary["gaps"] == 0


def test_stalled_server_trips_the_stale_hard_guard_and_cancels_everything(session):
    s = session(2.5, venue={"stall_after": 150}, live={"stale_ms": 400.0})
    assert s.summary["halts"].get("stale", 0) >= 1
    ticks = s.ticks()
    for sym in ("BTCUSDT", "ETHUSDT"):
        t = ticks.filter(pl.col("symbol") == sym)
        stale = t.filter(pl.col("gate") == "stale")
        assert stale.height >= 2
        assert (stale["n_quotes_bid"] + stale["n_quotes_ask"]).sum() == 0
        assert stale["n_working"][-1] == 0  # every working order canceled while halted
    canceled = s.orders().filter(pl.col("event") == "canceled")
    assert canceled.height > 0


def test_warmup_gate_skips_ticks_then_quotes(session):
    s = session(2.0, live={"warmup_s": 0.8})
    ticks = s.ticks()
    warm = ticks.filter(pl.col("gate") == "warmup")
    assert warm.height > 0 and s.summary["warmup_skip_total"] == warm.height
    assert (warm["n_actions"]).sum() == 0  # nothing placed during warm-up
    later = ticks.filter(pl.col("ts_local") > warm["ts_local"].max())["gate"]
    assert (later.filter(later != "shutdown") == "open").all() and (later == "open").sum() > 5
    first_sent = s.orders().filter(pl.col("event") == "sent")["ts_local"].min()
    assert first_sent > warm["ts_local"].max()


def test_full_queue_coalesces_frames_and_counts_backpressure(session):
    s = session(1.5, venue={"speed": 0.0}, live={"queue_max": 2, "step_ms": 50.0})
    assert s.summary["backpressure_total"] > 0
    assert s.summary["gaps"] == 0 and s.summary["backlog_dropped_frames"] == 0  # coalescing loses nothing
    assert s.summary["frames_by_kind"]["market"] == s.venue.sent


def test_backlog_beyond_the_limit_is_dropped_and_books_resync(session):
    # A latency budget this long lets every frame read ahead join the step, so the backlog passes the limit.
    s = session(1.5, venue={"speed": 0.0}, live={"queue_max": 2, "step_ms": 50.0, "max_backlog_frames": 40,
                                                 "latency_budget_us": 1e9})
    assert s.summary["backlog_dropped_frames"] > 0
    assert any(json.loads(m)["op"] == "unsubscribe" for m in s.venue.received)


def test_graceful_shutdown_cancels_working_orders_and_flushes_logs(session):
    s = session(30.0, stop_after_s=2.0)
    assert s.summary["wall_s"] < 10
    assert s.summary["working_orders_at_shutdown"] > 0 and s.summary["working_orders_after_cancel_all"] == 0
    last = json.loads((s.out / "ticks.jsonl").read_text().splitlines()[-1])
    assert last["gate"] == "shutdown" and last["n_working"] >= 0
    assert (s.out / "summary.json").exists() and (s.out / "decisions.parquet").exists()
    import gzip

    lines = gzip.open(next((s.out / "recording").glob("*.gz"))).read().splitlines()
    assert len(lines) == s.summary["recorded_frames"]
