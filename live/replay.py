"""A local Bybit v5 public venue that replays a recording over a real websocket (loopback), for tests,
benchmarks and dry runs of ``mmlab live --paper --ws-url ws://127.0.0.1:PORT/v5/public/linear``.

It answers subscribe/unsubscribe (with a fresh snapshot of a book topic built from the replayed book, as Bybit
does), ``{"op":"ping"}`` with a pong, serves ``GET /v5/market/instruments-info`` from the recording's REST
responses, and replays the recorded frames of the subscribed topics with their exchange times (``ts``, ``cts``,
``T``) moved to the send time: a replay looks like a live feed to the runner. Fault injection for the
resilience tests: drop a delta (sequence gap), insert garbage, close the connection after N frames, stall.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import time
from dataclasses import dataclass, field

_TS = re.compile(rb'"(ts|cts|T)":\d{13}')


@dataclass
class Recording:
    """Frames of one endpoint in receive order, recorded local times (ns) and REST instruments responses."""

    frames: list[bytes]
    local_ns: list[int]
    instruments: list[bytes] = field(default_factory=list)


def load_cryptofeed(path, endpoint: str = "/v5/public/linear") -> Recording:
    """Frames of ``endpoint`` from a cryptofeed raw capture (the shared ``bybit/BYBIT.jsonl.gz``)."""
    from mmlab.data.ingest.bybit import decimal_seconds_to_ns

    conns, frames, local, inst = set(), [], [], []
    category = endpoint.rstrip("/").rsplit("/", 1)[-1]
    with gzip.open(path, "rb") as f:
        for line in f:
            rec = json.loads(line)
            t = rec.get("t")
            if t == "connect" and str(rec.get("addr", "")).rstrip("/").endswith(endpoint):
                conns.add(rec["conn"])
            elif t == "http" and "instruments-info" in rec.get("url", "") and f"category={category}" in rec["url"]:
                inst.append(rec["data"].encode())
            elif t == "recv" and rec.get("conn") in conns:
                frames.append(rec["data"].encode())
                local.append(decimal_seconds_to_ns(repr(rec["ts"])))
    return Recording(frames, local, inst)


class _Book:
    """Levels of one replayed orderbook topic (to answer a subscription with a snapshot)."""

    def __init__(self):
        self.b: dict[str, str] = {}
        self.a: dict[str, str] = {}
        self.u = 0
        self.seq = 0
        self.symbol = ""

    def apply(self, doc: dict) -> None:
        d = doc["data"]
        if doc.get("type") == "snapshot":
            self.b, self.a = {}, {}
        for side, levels in (("b", d.get("b", [])), ("a", d.get("a", []))):
            book = getattr(self, side)
            for p, q in levels:
                if float(q) == 0.0:
                    book.pop(p, None)
                else:
                    book[p] = q
        self.u = d["u"]
        self.seq = d.get("seq", 0)
        self.symbol = d["s"]

    def snapshot(self, topic: str, ts_ms: int) -> bytes:
        bids = sorted(self.b.items(), key=lambda kv: -float(kv[0]))
        asks = sorted(self.a.items(), key=lambda kv: float(kv[0]))
        doc = {"topic": topic, "type": "snapshot", "ts": ts_ms,
               "data": {"s": self.symbol, "b": [list(x) for x in bids], "a": [list(x) for x in asks], "u": self.u,
                        "seq": self.seq}, "cts": ts_ms}
        return json.dumps(doc, separators=(",", ":")).encode()


class ReplayVenue:
    """Serve ``recording`` on ws://127.0.0.1:<port><path>; ``await start()`` then ``url`` / ``rest_url``.

    Parameters
    ----------
    speed : replay speed relative to the recorded receive times; 0 = as fast as the socket takes frames.
    drop_deltas : number of the book deltas (counted over the replay, from 0) not sent: each opens a gap.
    garbage_every : after every this many frames, send a garbage frame and an unknown-topic frame.
    close_after : close the connection abruptly after this many frames (once); the replay resumes at the next
        frame on the next connection (with fresh snapshots).
    stall_after : stop sending after this many frames (connection kept open).
    loop : start over at the end (book topics get fresh snapshots).
    resync_delay_s : delay of the snapshot answering a resubscription (the book stays invalid meanwhile).
    """

    def __init__(self, recording: Recording, *, path: str = "/v5/public/linear", speed: float = 1.0,
                 drop_deltas: tuple[int, ...] = (), garbage_every: int = 0, close_after: int | None = None,
                 stall_after: int | None = None, loop: bool = False, resync_delay_s: float = 0.0):
        self.rec = recording
        self.path = path
        self.speed = speed
        self.drop = set(drop_deltas)
        self.garbage_every = garbage_every
        self.close_after = close_after
        self.stall_after = stall_after
        self.loop = loop
        self.resync_delay_s = resync_delay_s
        self.pos = 0  # next frame of the recording
        self.sent = 0
        self.n_delta = 0
        self.books: dict[str, _Book] = {}
        self.received: list[str] = []  # client messages
        self.connections = 0
        self.done = asyncio.Event()
        self._stop = asyncio.Event()
        self.server = None
        self.port = None
        self._topics = [self._topic(f) for f in recording.frames]

    @staticmethod
    def _topic(frame: bytes) -> str | None:
        m = re.search(rb'"topic":"([^"]+)"', frame[:200])
        return m.group(1).decode() if m else None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> ReplayVenue:
        import websockets

        self.server = await websockets.serve(self._handler, "127.0.0.1", port, process_request=self._http,
                                             max_size=None, compression=None, ping_interval=None)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _http(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        if not request.path.startswith("/v5/market/instruments-info"):
            return None
        m = re.search(r"symbol=([A-Za-z0-9]+)", request.path)
        want = m.group(1).upper() if m else None
        for body in self.rec.instruments:
            doc = json.loads(body)
            items = [it for it in doc["result"]["list"] if want is None or it["symbol"] == want]
            if items:
                doc["result"]["list"] = items
                out = json.dumps(doc, separators=(",", ":")).encode()
                return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                                    ("Content-Length", str(len(out)))]), out)
        return Response(404, "Not Found", Headers([("Content-Length", "0")]), b"")

    async def _handler(self, ws) -> None:
        self.connections += 1
        subs: set[str] = set()
        closed_here = False

        async def control():
            async for msg in ws:
                self.received.append(msg if isinstance(msg, str) else msg.decode())
                doc = json.loads(msg)
                op = doc.get("op")
                if op == "ping":
                    await ws.send(json.dumps({"success": True, "ret_msg": "pong", "conn_id": "replay", "op": "pong"}))
                elif op in ("subscribe", "unsubscribe"):
                    for t in doc.get("args", []):
                        (subs.add if op == "subscribe" else subs.discard)(t)
                    await ws.send(json.dumps({"success": True, "ret_msg": "", "conn_id": "replay", "op": op}))
                    if op == "subscribe":
                        if self.resync_delay_s and any(self.books.get(t) for t in doc.get("args", [])):
                            await asyncio.sleep(self.resync_delay_s)
                        for t in doc.get("args", []):
                            bk = self.books.get(t)
                            if bk is not None and bk.u:
                                await ws.send(bk.snapshot(t, int(time.time() * 1000)).decode())

        ctl = asyncio.get_running_loop().create_task(control())
        try:
            while not subs:
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.02)  # the subscribe acks and snapshots go first
            frames, local = self.rec.frames, self.rec.local_ns
            t_wall0, t_rec0 = time.perf_counter(), None
            while True:
                if self.pos >= len(frames):
                    if not self.loop:
                        break
                    self.pos = 0
                    t_wall0, t_rec0 = time.perf_counter(), None
                    for t, bk in self.books.items():
                        if t in subs:
                            await ws.send(bk.snapshot(t, int(time.time() * 1000)).decode())
                if self.stall_after is not None and self.sent >= self.stall_after:
                    await self._stop.wait()
                    return
                i = self.pos
                self.pos += 1
                topic = self._topics[i]
                if topic is None or topic not in subs:
                    continue
                frame = frames[i]
                if self.speed > 0:
                    if t_rec0 is None:
                        t_rec0 = local[i]
                    wait = (local[i] - t_rec0) / 1e9 / self.speed - (time.perf_counter() - t_wall0)
                    if wait > 0:
                        await asyncio.sleep(wait)
                if topic.startswith("orderbook."):
                    doc = json.loads(frame)
                    bk = self.books.setdefault(topic, _Book())
                    bk.apply(doc)
                    if doc.get("type") == "delta":
                        k = self.n_delta
                        self.n_delta += 1
                        if k in self.drop:
                            continue
                now_ms = b"%d" % int(time.time() * 1000)
                await ws.send(_TS.sub(lambda m, now_ms=now_ms: b'"' + m.group(1) + b'":' + now_ms, frame).decode())
                self.sent += 1
                if self.garbage_every and self.sent % self.garbage_every == 0:
                    await ws.send("{not json")
                    await ws.send('{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{}}')
                if self.close_after is not None and self.sent >= self.close_after and not closed_here:
                    self.close_after = None
                    closed_here = True
                    await ws.close()
                    return
                if self.speed == 0 and self.sent % 64 == 0:
                    await asyncio.sleep(0)
            self.done.set()
            await self._stop.wait()  # keep the connection open: the runner decides when to stop
        except Exception:  # noqa: BLE001 - a client going away ends its connection
            pass
        finally:
            ctl.cancel()


# --------------------------------------------------------------------------------------------- Binance USD-M

_BN_TS = re.compile(rb'"(E|T)":\d{13}')
_BN_STREAM = re.compile(rb'"stream":"([^"]+)"')


def load_timestamped(path, max_lines: int | None = None) -> Recording:
    """``<local_ts> <frame>`` lines of a Binance capture; the inline REST snapshot goes to ``instruments[0]``."""
    frames, local, snaps = [], [], []
    with gzip.open(path, "rb") as f:
        for k, line in enumerate(f):
            if max_lines is not None and k >= max_lines:
                break
            ts, _, raw = line.rstrip(b"\n").partition(b" ")
            if b'"lastUpdateId"' in raw[:40]:
                snaps.append(raw)
                continue
            frames.append(raw)
            local.append(int(ts))
    return Recording(frames, local, snaps)


class BinanceReplayVenue(ReplayVenue):
    """A local Binance USD-M venue: ``/stream?streams=...`` replays the capture's frames of those streams with
    ``E``/``T`` moved to the send time; ``GET /fapi/v1/depth`` answers with the capture's REST snapshot (times
    moved likewise), ``GET /fapi/v1/exchangeInfo`` with the given tick/lot sizes.

    Parameters
    ----------
    current_book : keep an order book current from the diffs replayed and answer ``/fapi/v1/depth`` from it (as
        Binance does: a re-sync gets a snapshot at a later update id), starting from the capture's snapshot.
    drop_depth : numbers of the depth diffs (counted over the replay, from 0) applied to the venue's book but
        not sent: each is a ``pu`` break for the client.
    close_after : close the connection abruptly after this many frames (once); the replay resumes at the next
        frame on the next connection.
    snapshot_delay_s : delay of every REST snapshot after the first (a re-sync takes a while; the client's book
        stays invalid meanwhile).
    """

    def __init__(self, recording: Recording, *, sizes: dict, speed: float = 1.0, current_book: bool = False,
                 drop_depth: tuple[int, ...] = (), close_after: int | None = None, snapshot_delay_s: float = 0.0):
        super().__init__(recording, path="/stream", speed=speed, close_after=close_after)
        self.sizes = sizes
        self._streams = [(_BN_STREAM.search(f[:80]).group(1).decode() if _BN_STREAM.search(f[:80]) else None)
                         for f in recording.frames]
        self.current_book = current_book
        self.drop_depth = set(drop_depth)
        self.snapshot_delay_s = snapshot_delay_s
        self.n_depth = 0
        self.snapshots_served: list[int] = []  # lastUpdateId of each REST snapshot
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.last_u = -1
        if current_book and recording.instruments:
            snap = json.loads(recording.instruments[0])
            self.bids = {p: q for p, q in snap["bids"]}
            self.asks = {p: q for p, q in snap["asks"]}
            self.last_u = int(snap["lastUpdateId"])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _snapshot_body(self, now_ms: bytes) -> bytes:
        if not self.current_book:
            return _BN_TS.sub(lambda m: b'"' + m.group(1) + b'":' + now_ms, self.rec.instruments[0])
        now = int(now_ms)
        doc = {"lastUpdateId": self.last_u, "E": now, "T": now,
               "bids": sorted(([p, q] for p, q in self.bids.items()), key=lambda x: -float(x[0]))[:1000],
               "asks": sorted(([p, q] for p, q in self.asks.items()), key=lambda x: float(x[0]))[:1000]}
        return json.dumps(doc, separators=(",", ":")).encode()

    async def _http(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        if request.path.startswith("/fapi/v1/depth") and self.rec.instruments:
            if self.snapshot_delay_s and self.snapshots_served:
                await asyncio.sleep(self.snapshot_delay_s)
            body = self._snapshot_body(b"%d" % int(time.time() * 1000))
            self.snapshots_served.append(int(json.loads(body)["lastUpdateId"]))
        elif request.path.startswith("/fapi/v1/exchangeInfo"):
            body = json.dumps({"symbols": [{"symbol": s, "filters": [
                {"filterType": "PRICE_FILTER", "tickSize": str(v["tick_size"])},
                {"filterType": "LOT_SIZE", "stepSize": str(v["lot_size"])}]} for s, v in self.sizes.items()]}).encode()
        else:
            return None
        return Response(200, "OK", Headers([("Content-Type", "application/json"),
                                            ("Content-Length", str(len(body)))]), body)

    def _apply(self, frame: bytes) -> None:
        """A depth diff into the venue's book (diffs the book already holds are ignored)."""
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
                    if self.current_book:
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


class VenueThread:
    """A replay venue (``ReplayVenue`` / ``BinanceReplayVenue``) served from its own event loop in a daemon thread,
    for a client that runs its own loop in this thread (the ``mmlab live`` command, a notebook).

    >>> th = VenueThread(ReplayVenue(load_cryptofeed("BYBIT.jsonl.gz"), speed=10.0))  # doctest: +SKIP
    >>> th.venue.url, th.venue.rest_url  # doctest: +SKIP
    >>> th.close()  # doctest: +SKIP
    """

    def __init__(self, venue, start_timeout_s: float = 10.0):
        import threading

        self.venue = venue
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.venue.start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(start_timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop serving and end the thread."""
        asyncio.run_coroutine_threadsafe(self.venue.close(), self.loop).result(timeout_s)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout_s)
