"""Binance USD-M resilience against a local venue (real websocket and HTTP over loopback) that keeps a current
order book and answers ``GET /fapi/v1/depth`` with it, as Binance does: a dropped diff (``pu`` break) ->
REST re-snapshot and no quoting until the book is consistent; the server dropping the connection -> reconnect,
resubscribe and a fresh snapshot."""

from __future__ import annotations

import asyncio
import json
import time

import polars as pl
import pytest

from live.replay import _BN_TS, BinanceReplayVenue, load_timestamped

CONFIG = {
    "data": {"venue": "binance-usdm", "symbols": ["BTCUSDT"]},
    "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.001, "max_position": 0.01},
    "live": {"venue": "binance-usdm", "book_depth": 1000, "warmup_s": 0.0, "horizon_margin_ms": 300.0,
             "stale_ms": 20000.0, "step_ms": 10.0, "backoff_initial_s": 0.05, "backoff_max_s": 0.4,
             "tick_sizes": {"BTCUSDT": 0.1}, "lot_sizes": {"BTCUSDT": 0.001}},
}


class CurrentBookVenue(BinanceReplayVenue):
    """The replay venue with a book kept current from the diffs it replays (REST snapshots are answered from
    it, not from the capture's first snapshot), plus faults: ``drop_depth`` diffs are applied to the venue's
    book but not sent (a gap for the client); ``close_after`` frames, the connection is closed once."""

    def __init__(self, rec, *, drop_depth=(), close_after=None, snapshot_delay_s=0.0, **kw):
        super().__init__(rec, **kw)
        self.snapshot_delay_s = snapshot_delay_s
        snap = json.loads(rec.instruments[0])
        self.bids = {p: q for p, q in snap["bids"]}
        self.asks = {p: q for p, q in snap["asks"]}
        self.last_u = int(snap["lastUpdateId"])
        self.drop_depth = set(drop_depth)
        self.close_after = close_after
        self.n_depth = 0
        self.snapshots_served: list[int] = []  # lastUpdateId of each REST snapshot

    async def _http(self, connection, request):
        if not request.path.startswith("/fapi/v1/depth"):
            return super()._http(connection, request)
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        if self.snapshot_delay_s and self.snapshots_served:  # re-syncs take a while (the book stays invalid)
            await asyncio.sleep(self.snapshot_delay_s)
        now = int(time.time() * 1000)
        doc = {"lastUpdateId": self.last_u, "E": now, "T": now,
               "bids": sorted(([p, q] for p, q in self.bids.items()), key=lambda x: -float(x[0]))[:1000],
               "asks": sorted(([p, q] for p, q in self.asks.items()), key=lambda x: float(x[0]))[:1000]}
        self.snapshots_served.append(self.last_u)
        body = json.dumps(doc, separators=(",", ":")).encode()
        return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                            ("Content-Length", str(len(body)))]), body)

    def _apply(self, frame: bytes) -> None:
        d = json.loads(frame)["data"]
        if int(d["u"]) <= self.last_u:
            return
        for side, book in (("b", self.bids), ("a", self.asks)):
            for p, q in d[side]:
                if float(q) == 0.0:
                    book.pop(p, None)
                else:
                    book[p] = q
        self.last_u = int(d["u"])

    async def _handler(self, ws) -> None:
        self.connections += 1
        q = ws.request.path.split("streams=", 1)[-1] if "streams=" in ws.request.path else ""
        wanted = set(q.split("/")) if q else set()
        try:
            t_wall0, t_rec0 = time.perf_counter(), None
            while self.pos < len(self.rec.frames):
                i = self.pos
                self.pos += 1
                if self._streams[i] not in wanted:
                    continue
                if self.speed > 0:
                    if t_rec0 is None:
                        t_rec0 = self.rec.local_ns[i]
                    wait = (self.rec.local_ns[i] - t_rec0) / 1e9 / self.speed - (time.perf_counter() - t_wall0)
                    if wait > 0:
                        await asyncio.sleep(wait)
                frame = self.rec.frames[i]
                if b"depthUpdate" in frame[:80]:
                    self._apply(frame)
                    k = self.n_depth
                    self.n_depth += 1
                    if k in self.drop_depth:
                        continue
                now_ms = b"%d" % int(time.time() * 1000)
                await ws.send(_BN_TS.sub(lambda m, now_ms=now_ms: b'"' + m.group(1) + b'":' + now_ms, frame).decode())
                self.sent += 1
                if self.close_after is not None and self.sent >= self.close_after:
                    self.close_after = None
                    await ws.close()
                    return
            self.done.set()
            await self._stop.wait()
        except Exception:  # noqa: BLE001, S110 - a client going away ends its connection
            pass


@pytest.fixture(scope="module")
def capture(real_data):
    return load_timestamped(real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz", max_lines=12_000)


def _session(rec, tmp_path, duration_s: float, **venue_kw):
    from live.runner import LiveRunner
    from mmlab.config import load_config

    async def main():
        v = await CurrentBookVenue(rec, sizes={"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}}, speed=6.0,
                                   **venue_kw).start()
        raw = json.loads(json.dumps(CONFIG))
        raw["live"].update({"ws_url": v.url, "rest_url": v.rest_url})
        r = LiveRunner(load_config(raw), out_dir=tmp_path / "out")
        try:
            return await r.run(duration_s), v
        finally:
            await v.close()

    return asyncio.run(main())


def test_dropped_diff_resnapshots_over_rest_and_holds_quotes_until_consistent(capture, tmp_path):
    s, v = _session(capture, tmp_path, 3.5, drop_depth=(200,), snapshot_delay_s=0.4)
    assert s["gaps"] == 1 and s["connect_errors"] == 0
    gap = s["sequence_gaps"][0]
    assert gap["symbol"] == "BTCUSDT" and gap["got"] != gap["expected"]
    # Two REST snapshots: the initial sync and the re-sync after the gap, the second at a later update id.
    assert len(v.snapshots_served) == 2 and v.snapshots_served[1] > v.snapshots_served[0]
    assert s["per_symbol"]["BTCUSDT"]["book_valid"] and s["late_exch_events"] == 0
    ticks = pl.read_ndjson(tmp_path / "out" / "ticks.jsonl")
    held = ticks.filter(pl.col("gate") == "book_invalid")
    assert held.height >= 1 and (held["n_quotes_bid"] + held["n_quotes_ask"]).sum() == 0
    after = ticks.filter(pl.col("ts_local") > held["ts_local"].max())
    assert (after["gate"] == "open").sum() > 5  # quoting again on the re-synced book
    assert (after["best_bid"] < after["best_ask"]).all()  # never a crossed book after the re-sync


def test_server_closing_the_connection_reconnects_resubscribes_and_resyncs(capture, tmp_path):
    s, v = _session(capture, tmp_path, 4.5, close_after=500, snapshot_delay_s=0.4)
    assert v.connections == 2 and s["reconnects"] == 1 and s["gaps"] == 0
    assert len(v.snapshots_served) == 2  # a fresh snapshot for the new connection
    assert s["per_symbol"]["BTCUSDT"]["book_valid"]
    ticks = pl.read_ndjson(tmp_path / "out" / "ticks.jsonl")
    held = ticks.filter(pl.col("gate") == "book_invalid")
    assert held.height >= 1  # no quoting between the reconnect and the new snapshot
    after = ticks.filter(pl.col("ts_local") > held["ts_local"].max())
    assert (after["gate"] == "open").sum() >= 3 and (after["best_bid"] < after["best_ask"]).all()
