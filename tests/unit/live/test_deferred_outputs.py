"""Deferred live outputs: a step's rows are written after its actions are emitted, in batches, and the files
are byte-identical to writing every step's rows at once (JSON lines as the per-row encoding gave them,
decisions.parquet with the same row groups); a full output buffer during a held step, shutdown and a failed
session lose no row."""

from __future__ import annotations

import asyncio
import json
import math

import msgspec
import numpy as np
import pytest

from live.runner import LiveRunner, gate_name
from mmlab.config import load_config
from mmlab.types import OrderEventKind

INST = {"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}, "ETHUSDT": {"tick_size": 0.01, "lot_size": 0.01}}
FILES = ("ticks.jsonl", "fills.jsonl", "orders.jsonl", "decisions.parquet")


def _cfg():
    return load_config({"data": {"venue": "bybit-linear", "symbols": list(INST)},
                        "strategy": {"grid_num": 2, "half_spread_ticks": 0.0, "order_qty": 0.01,
                                     "max_position": 1.0},
                        "live": {"venue": "bybit-linear", "warmup_s": 0, "book_depth": 200, "stale_ms": 60000.0,
                                 "tick_sizes": {k: v["tick_size"] for k, v in INST.items()},
                                 "lot_sizes": {k: v["lot_size"] for k, v in INST.items()}}})


def _session(pairs, out, *, defer: bool, drain_rows: int = 1 << 30, small_buffers: bool = False, seen=None):
    now = [pairs[0][0]]
    r = LiveRunner(_cfg(), out_dir=out, clock_ns=lambda: now[0])
    r.defer_outputs = defer
    r.setup()
    r.t_start_ns = now[0]
    r.decisions_chunk_rows = 7  # row groups cut inside the held rows
    r.drain_rows = drain_rows
    r.drain_after_ns = 1 << 62
    if small_buffers:  # the loop fills them during held steps: they are set aside, the rows stay
        a = r.paper.a
        for name in ("states", "decisions"):
            setattr(a, name, np.zeros(6, dtype=getattr(a, name).dtype))
        r.paper._rebind_outputs()
    if seen is not None:
        write = r._write_rows

        def record(o, dec_steps=None):
            seen.append({k: [x.copy() for x in v] for k, v in o.items()})
            write(o, dec_steps)

        r._write_rows = record
    for j, (ts, raw) in enumerate(pairs):
        now[0] = ts
        r.queue.append([(ts, raw)])
        if j % 8 == 7:
            r.process_pending(ts - 50_000_000)
    s = r.shutdown(0.0)
    return r, s


@pytest.fixture(scope="module")
def pairs(bybit_linear):
    return list(zip(bybit_linear.local_ns, bybit_linear.frames))[:2500]


@pytest.fixture(scope="module")
def reference(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("now")
    seen = []
    r, s = _session(pairs, out, defer=False, seen=seen)
    return out, r, s, seen


def _same_files(a, b):
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("drain_rows", [1 << 30, 5])
def test_deferred_outputs_write_the_same_bytes(pairs, reference, tmp_path, drain_rows):
    ref_out, ref, ref_s, _ = reference
    r, s = _session(pairs, tmp_path, defer=True, drain_rows=drain_rows)
    assert r.paper.holding and not ref.paper.holding
    _same_files(ref_out, tmp_path)
    assert ref_s["n_fills"] > 0 and ref_s["n_decisions"] > 50
    for k in ("n_fills", "n_decisions", "n_orders", "warmup_skip_total"):
        assert s[k] == ref_s[k], k
    assert r.counts["orders_sent"] == ref.counts["orders_sent"] > 0
    assert r._sym_n == ref._sym_n and r._sym_last == ref._sym_last and r._sym_acct == ref._sym_acct
    np.testing.assert_array_equal(r._hits, ref._hits)
    # The collectors saw the same rows and books (their latency samples are wall times of the steps).
    drop = lambda f: {s: {k: v for k, v in d.items() if "latency" not in k} for s, d in f.items()}
    assert json.dumps(drop(s["features"]), sort_keys=True) == json.dumps(drop(ref_s["features"]), sort_keys=True)


def test_a_buffer_filled_during_a_held_step_loses_no_row(pairs, reference, tmp_path):
    ref_out = reference[0]
    r, _ = _session(pairs, tmp_path, defer=True, small_buffers=True)
    assert len(r.paper.a.states) == 6  # (fresh buffers of the same size after each swap)
    _same_files(ref_out, tmp_path)


def _per_row_lines(r, out) -> dict[str, bytes]:
    """The JSON lines of one step as the per-row encoding wrote them (one dict per row)."""
    enc = msgspec.json.Encoder().encode

    def fnum(x):
        x = float(x)
        return x if math.isfinite(x) else None

    specs = r.specs
    lines = {"ticks": b"", "fills": b"", "orders": b""}
    for rows in out["states"]:
        for row in rows:
            tick = specs[int(row["symbol_id"])].tick_size
            bb, ba = int(row["best_bid_ticks"]), int(row["best_ask_ticks"])
            ok = bb > -(2**61) and ba < 2**61
            reason = int(row["reason"])
            lines["ticks"] += enc({
                "ts_local": int(row["ts_local"]), "symbol": specs[int(row["symbol_id"])].symbol,
                "best_bid": bb * tick if ok else None, "best_ask": ba * tick if ok else None,
                "mid": fnum(float(row["mid_ticks"]) * tick),
                "quote_bid": int(row["quote_bid_ticks"]) * tick if row["quote_bid_ticks"] >= 0 else None,
                "quote_ask": int(row["quote_ask_ticks"]) * tick if row["quote_ask_ticks"] >= 0 else None,
                "n_quotes_bid": int(row["n_quotes_bid"]), "n_quotes_ask": int(row["n_quotes_ask"]),
                "n_actions": int(row["n_actions"]), "n_working": int(row["n_working"]),
                "position": float(row["position"]), "fees": float(row["fees"]), "pnl": fnum(row["pnl"]),
                "reason": reason, "gate": gate_name(reason)}) + b"\n"
    for rows in out["fills"]:
        for f in rows:
            sp = specs[int(f["symbol_id"])]
            lines["fills"] += enc({
                "ts_exch": int(f["ts_exch"]), "ts_local": int(f["ts_local"]), "symbol": sp.symbol,
                "order_id": int(f["order_id"]), "order_seq": int(f["order_seq"]), "side": int(f["side"]),
                "price": int(f["price_ticks"]) * sp.tick_size, "price_ticks": int(f["price_ticks"]),
                "qty": float(f["qty"]), "maker": bool(f["maker"]), "fee": float(f["fee"]),
                "queue_ahead_qty": fnum(f["queue_ahead_qty"]), "position_after": float(f["position_after"]),
                "route": "paper"}) + b"\n"
    for rows in out["oev"]:
        for e in rows:
            sp = specs[int(e["symbol_id"])]
            lines["orders"] += enc({
                "ts_local": int(e["ts_local"]), "ts_exch": int(e["ts_exch"]), "symbol": sp.symbol,
                "order_id": int(e["order_id"]), "order_seq": int(e["order_seq"]),
                "event": OrderEventKind(int(e["kind"])).name.lower(), "side": int(e["side"]),
                "price": int(e["price_ticks"]) * sp.tick_size, "qty": float(e["qty"]),
                "leaves_qty": float(e["leaves_qty"]), "reason": int(e["reason"])}) + b"\n"
    return lines


def test_json_lines_equal_the_per_row_encoding(reference):
    out, r, _, seen = reference
    want = {"ticks": b"", "fills": b"", "orders": b""}
    for o in seen:
        for k, v in _per_row_lines(r, o).items():
            want[k] += v
    for k, v in want.items():
        assert v and (out / f"{k}.jsonl").read_bytes() == v, k


def test_a_failed_session_still_writes_every_held_row(bybit_linear, tmp_path, monkeypatch):
    from live.paper import PaperExchange
    from live.replay import ReplayVenue

    real_step = PaperExchange.step
    produced = {"states": 0, "decisions": 0, "calls": 0}

    def step(self, events, horizon_ns):
        out = real_step(self, events, horizon_ns)
        n = sum(len(x) for x in out["states"])
        produced["states"] += n
        produced["decisions"] += sum(len(x) for x in out["decisions"])
        produced["calls"] += bool(n)
        if produced["calls"] >= 12:
            produced["held_at_failure"] = held[0]._held_rows
            raise RuntimeError("venue adapter failed")
        return out

    monkeypatch.setattr(PaperExchange, "step", step)

    async def main():
        v = await ReplayVenue(bybit_linear, speed=4.0).start()
        raw = _cfg().to_dict()
        raw["live"].update({"ws_url": v.url, "horizon_margin_ms": 50.0, "step_ms": 10.0})
        r = LiveRunner(load_config(raw), out_dir=tmp_path)
        r.setup()
        r.drain_rows, r.drain_after_ns, r.drain_when_idle = 1 << 30, 1 << 62, False
        r._published_ns = 1 << 62  # no publication (it writes the held rows) before the failure
        held.append(r)
        try:
            await r.run(20.0)
        finally:
            await v.close()

    held = []
    with pytest.raises(RuntimeError, match="venue adapter failed"):
        asyncio.run(main())
    import gc

    import polars as pl

    assert gc.isenabled()  # (the step turns it off until its actions are emitted, and back on when it fails)
    assert produced["held_at_failure"] > 0 and produced["states"] > 12
    assert len((tmp_path / "ticks.jsonl").read_bytes().splitlines()) == produced["states"]
    assert pl.read_parquet(tmp_path / "decisions.parquet").height == produced["decisions"]



def test_recorder_batches_lines_and_flushes_them_on_rotation_flush_and_close(tmp_path):
    import gzip
    import zlib
    from pathlib import Path

    from live.recorder import PENDING_LINES, Recorder

    day = 86_400 * 10**9
    t0 = 20_001 * day - 2 * PENDING_LINES - 7
    rec = Recorder(tmp_path, "bybit-linear")
    lines = [(t0 + k, b'{"k":%d}' % k) for k in range(3 * PENDING_LINES)]  # crosses midnight
    for ts, raw in lines[:5]:
        rec.write(ts, raw)
    rec.flush()  # (what a failed session does): the held lines reach the file
    partial = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(Path(rec.files[0]).read_bytes())
    assert partial == b"".join(b"%d %s\n" % x for x in lines[:5])
    for ts, raw in lines[5:]:
        rec.write(ts, raw)
    rec.close()
    assert len(rec.files) == 2 and rec.frames == len(lines)
    files = [gzip.decompress(Path(f).read_bytes()) for f in rec.files]
    got = b"".join(files)
    assert got == b"".join(b"%d %s\n" % x for x in lines)
    first = files[0].splitlines()
    assert all(int(x.split()[0]) < 20_001 * day for x in first) and len(first) == 2 * PENDING_LINES + 7


def test_a_full_speed_feed_is_stepped_by_the_reader_and_ends_on_time(bybit_linear, tmp_path):
    from live.replay import ReplayVenue

    async def main():
        v = await ReplayVenue(bybit_linear, speed=0.0, loop=True).start()
        raw = _cfg().to_dict()
        raw["live"].update({"ws_url": v.url, "horizon_margin_ms": 50.0, "step_ms": 10.0})
        r = LiveRunner(load_config(raw), out_dir=tmp_path)
        try:
            return r, await r.run(1.5)
        finally:
            await v.close()

    r, s = asyncio.run(main())
    # A loose floor on frames (a loaded machine takes fewer): the feed ran, was stepped, and the session ended.
    assert s["frames"] > 200 and s["feed_s"] < 3.0 and s["working_orders_after_cancel_all"] == 0
    assert r.step_ns and not r._held_rows
    ticks = (tmp_path / "ticks.jsonl").read_bytes().splitlines()
    assert len(ticks) == sum(sum(n[:1]) for n in r._sym_n) > 0
