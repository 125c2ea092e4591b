"""The reader's stepping rule: a frame is stepped as soon as the websocket client holds no further frame (an idle
feed is stepped frame by frame), frames already read ahead join one step (a backlog is batched), a latency budget
of 0 steps every frame; no frame is lost or reordered, and what is queued when the connection ends is left to the
processor."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosedOK

from live.replay import _TS
from live.runner import SPLIT_FRAME_BYTES, LiveRunner, step_due, ws_read_ahead
from mmlab.config import load_config
from mmlab.errors import ConfigError

INST = {"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}}


def _cfg(**live):
    return load_config({"data": {"venue": "bybit-linear", "symbols": list(INST)},
                        "live": {"venue": "bybit-linear", "warmup_s": 0, "book_depth": 200,
                                 "tick_sizes": {"BTCUSDT": 0.1}, "lot_sizes": {"BTCUSDT": 0.001}, **live}})


class _Buffer:
    def __init__(self):
        self.frames: list[bytes] = []


class FakeWs:
    """Hands over frames in bursts: a burst's frames are all read ahead (``recv_messages.frames``) when its first
    is handed over; between bursts the client holds nothing (the feed is idle)."""

    def __init__(self, bursts: list[list[bytes]]):
        self.bursts = [list(b) for b in bursts]
        self.recv_messages = _Buffer()

    async def recv(self, decode=None):
        assert decode is False  # frames as bytes, not decoded and re-encoded
        buf = self.recv_messages.frames
        if not buf:
            await asyncio.sleep(0)
            if not self.bursts:
                raise ConnectionClosedOK(None, None)
            buf.extend(self.bursts.pop(0))
        return buf.pop(0)


def _frames(n: int) -> list[bytes]:
    return [b'{"k":%d}' % k for k in range(n)]


def _read(tmp_path, bursts, **live):
    """Run the reader's frame loop on ``bursts``; returns the runner and the frames of each step."""
    split = live.pop("split", None)
    r = LiveRunner(_cfg(**live), out_dir=tmp_path)
    if split is not None:
        r.split_frame_bytes = split
    steps: list[list[bytes]] = []

    def process_pending(horizon_ns, **kw):
        steps.append([raw for entry in r.queue for _, raw in entry])
        r.queue.clear()
        r.backlog = 0

    r.process_pending = process_pending
    asyncio.run(r._read_frames(FakeWs(bursts)))
    r.recorder.close()
    return r, steps


def test_step_due_steps_when_nothing_is_read_ahead_or_the_budget_is_spent():
    assert step_due(0, 0, 100_000)
    assert not step_due(5, 99_999, 100_000)
    assert step_due(5, 100_000, 100_000)
    assert step_due(5, 0, 0)


def test_an_idle_feed_is_stepped_frame_by_frame(tmp_path):
    fr = _frames(6)
    r, steps = _read(tmp_path, [[f] for f in fr])
    assert steps == [[f] for f in fr]
    assert r.recorder.frames == 6 and not r.queue


def test_frames_read_ahead_join_one_step_in_order(tmp_path):
    fr = _frames(12)
    _, steps = _read(tmp_path, [fr[:1], fr[1:8], fr[8:9], fr[9:]], latency_budget_us=1e9)
    assert steps == [fr[:1], fr[1:8], fr[8:9], fr[9:]]
    assert [f for s in steps for f in s] == fr  # none lost, none reordered


def test_a_zero_budget_steps_every_frame_even_with_a_backlog(tmp_path):
    fr = _frames(9)
    _, steps = _read(tmp_path, [fr[:4], fr[4:]], latency_budget_us=0.0)
    assert steps == [[f] for f in fr]


def test_a_full_queue_coalesces_and_still_steps_every_frame_once(tmp_path):
    fr = _frames(40)
    r, steps = _read(tmp_path, [fr], latency_budget_us=1e9, queue_max=3)
    assert steps == [fr] and r.counts["backpressure"] == 40 - 3


def test_frames_left_queued_when_the_connection_ends_wake_the_processor(tmp_path):
    r = LiveRunner(_cfg(latency_budget_us=1e9), out_dir=tmp_path)
    fr = _frames(3)

    class Broken(FakeWs):
        async def recv(self, decode=None):
            if self.recv_messages.frames == [b""]:
                raise OSError("connection reset")
            if not self.bursts and len(self.recv_messages.frames) == 1:
                raw = self.recv_messages.frames.pop(0)
                self.recv_messages.frames.append(b"")  # something read ahead: the last frame is not stepped
                return raw
            return await super().recv(decode)

    r.process_pending = lambda *a, **k: pytest.fail("stepped before the connection ended")
    with pytest.raises(OSError):
        asyncio.run(r._read_frames(Broken([fr])))
    assert [raw for e in r.queue for _, raw in e] == fr and r.wake.is_set()
    r.recorder.close()


def test_the_real_step_receives_every_frame(tmp_path, bybit_linear):
    """Recorded venue frames through the reader and the real step: every frame is normalized once."""
    frames = [f for f in bybit_linear.frames if b'"orderbook.200.BTCUSDT' in f[:60]
              or b'"publicTrade.BTCUSDT' in f[:60]][:300]
    now_ms = b"%d" % (time.time_ns() // 1_000_000)  # exchange times moved to now, as the replay venue sends them
    frames = [_TS.sub(lambda m: b'"' + m.group(1) + b'":' + now_ms, f) for f in frames]
    r = LiveRunner(_cfg(horizon_margin_ms=50.0, stale_ms=60000.0, latency_budget_us=1e9), out_dir=tmp_path)
    r.setup()
    n_steps = []
    step = r.process_pending

    def counted(horizon_ns, **kw):
        n_steps.append(r.backlog)
        step(horizon_ns, **kw)

    r.process_pending = counted
    bursts = [frames[i:j] for i, j in zip([0, *range(5, 300, 9)], [*range(5, 300, 9), 300])]
    asyncio.run(r._read_frames(FakeWs(bursts)))
    r.publish_metrics()
    assert sum(n_steps) == len(frames) == r.recorder.frames
    assert sum(v for k, v in r.counts.items() if k.startswith("frames_")) == len(frames)
    # One step per burst, plus one per large frame (a snapshot) not first in its burst: stepped apart.
    splits = sum(1 for b in bursts for f in b[1:] if len(f) >= SPLIT_FRAME_BYTES)
    assert len(n_steps) == len(bursts) + splits
    s = r.shutdown(0.0)
    assert s["frames"] == len(frames)


def test_latency_budget_is_validated():
    with pytest.raises(ConfigError, match="latency_budget_us"):
        _cfg(latency_budget_us=-1.0)


def test_ws_read_ahead_without_a_client_buffer_is_zero():
    assert ws_read_ahead(object()) == 0
    ws = FakeWs([])
    ws.recv_messages.frames.extend([b"a", b"b"])
    assert ws_read_ahead(ws) == 2


def test_a_backlog_is_cut_into_steps_when_the_oldest_frame_has_waited_the_budget(tmp_path, monkeypatch):
    import live.runner as runner_mod

    clock = [0]

    def perf_counter_ns():  # 40 us per frame read
        clock[0] += 40_000
        return clock[0]

    monkeypatch.setattr(runner_mod.time, "perf_counter_ns", perf_counter_ns)
    fr = _frames(10)
    _, steps = _read(tmp_path, [fr], latency_budget_us=100.0)
    assert steps == [fr[0:4], fr[4:8], fr[8:10]]  # waited 0/40/80/120 us: the fourth frame closes the step


def test_the_websocket_client_exposes_its_read_ahead():
    """The installed ``websockets`` client: frames it has received and not handed over are counted (else every
    frame would be stepped on its own and a backlog never batched)."""
    import websockets

    async def main():
        async def handler(ws):
            for k in range(5):
                await ws.send(b'{"k":%d}' % k)
            await ws.wait_closed()

        async with websockets.serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with websockets.connect(f"ws://127.0.0.1:{port}") as ws:
                for _ in range(500):  # until all five have arrived
                    if ws_read_ahead(ws) == 5:
                        break
                    await asyncio.sleep(0.01)
                seen = [ws_read_ahead(ws)]
                await ws.recv(decode=False)
                seen.append(ws_read_ahead(ws))
        return seen

    assert asyncio.run(main()) == [5, 4]


def test_a_large_frame_is_stepped_apart_from_the_frames_before_it(tmp_path):
    """A snapshot-sized frame does not delay the frames queued before it: they are stepped first, with the
    horizon capped at its receive time; it and the frames read after it follow the usual rule."""
    big = b'{"k":"' + b"x" * SPLIT_FRAME_BYTES + b'"}'
    fr = _frames(6)
    burst = [fr[0], fr[1], big, fr[2], fr[3]]
    _, steps = _read(tmp_path, [burst, fr[4:]], latency_budget_us=1e9)
    assert steps == [fr[:2], [big, fr[2], fr[3]], fr[4:]]
    _, steps2 = _read(tmp_path / "off", [burst], latency_budget_us=1e9, split=0)
    assert steps2 == [burst]


def test_the_split_step_horizon_stops_before_the_large_frame(tmp_path):
    r = LiveRunner(_cfg(latency_budget_us=1e9, horizon_margin_ms=0.0), out_dir=tmp_path)
    big = b'{"k":"' + b"x" * SPLIT_FRAME_BYTES + b'"}'
    calls = []

    def process_pending(horizon_ns, **kw):
        calls.append((horizon_ns, [ts for e in r.queue for ts, _ in e]))
        r.queue.clear()
        r.backlog = 0

    r.process_pending = process_pending
    asyncio.run(r._read_frames(FakeWs([[b"{}", b"{}", big]])))
    r.recorder.close()
    (h0, ts0), (h1, ts1) = calls
    assert len(ts0) == 2 and len(ts1) == 1 and max(ts0) < h0 <= ts1[0] <= h1
