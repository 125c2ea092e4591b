"""The recording's writer thread: same bytes as writing in the caller's thread, order kept, drained at close,
a failed write raised (once) by the next call with a clear error."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from pathlib import Path

import pytest

from live.recorder import PENDING_LINES, OrderedWriter, Recorder, RecordingError

DAY = 86_400 * 10**9


def _lines(n: int, t0: int = 20_000 * DAY) -> list[tuple[int, bytes]]:
    return [(t0 + k, b'{"topic":"orderbook.1.BTCUSDT","k":%d,"p":"%d.5"}' % (k, 60_000 + k % 97)) for k in range(n)]


def _record(path: Path, lines, threaded: bool, batch: int = 16) -> Recorder:
    rec = Recorder(path, "bybit-linear", threaded=threaded)
    for j, (ts, raw) in enumerate(lines):
        rec.write(ts, raw)
        if j % batch == batch - 1:
            rec.write_pending()
    rec.close()
    return rec


def _without_mtime(data: bytes) -> bytes:
    return data[:4] + b"\0\0\0\0" + data[8:]  # (the gzip header's mtime, bytes 4-7)


def test_the_writer_thread_writes_the_bytes_the_caller_would(tmp_path):
    lines = _lines(3 * PENDING_LINES + 5)
    a = _record(tmp_path / "thread", lines, threaded=True)
    b = _record(tmp_path / "inline", lines, threaded=False)
    assert len(a.files) == len(b.files) == 1 and a.frames == b.frames == len(lines)
    da, db = Path(a.files[0]).read_bytes(), Path(b.files[0]).read_bytes()
    assert _without_mtime(da) == _without_mtime(db)
    assert gzip.decompress(da) == b"".join(b"%d %s\n" % x for x in lines)


def test_close_drains_a_slow_writer_and_flush_waits_for_it(tmp_path, monkeypatch):
    rec = Recorder(tmp_path, "bybit-linear")
    slow = rec._do_write

    def do_write(lines):
        time.sleep(0.002)
        slow(lines)

    monkeypatch.setattr(rec, "_do_write", do_write)
    lines = _lines(40 * 16)
    for j, (ts, raw) in enumerate(lines):
        rec.write(ts, raw)
        if j % 16 == 15:
            rec.write_pending()  # returns at once: the batch is queued
    rec.flush()  # every line compressed and flushed when it returns
    got = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(Path(rec.files[0]).read_bytes())
    assert got == b"".join(b"%d %s\n" % x for x in lines)
    more = _lines(100, t0=20_000 * DAY + 10_000)
    for ts, raw in more:
        rec.write(ts, raw)
    rec.close()
    assert rec.writer._thread is None  # (the thread ended)
    assert gzip.decompress(Path(rec.files[0]).read_bytes()) == b"".join(b"%d %s\n" % x for x in lines + more)


def test_a_failed_write_is_raised_by_the_next_call_and_close_still_closes(tmp_path, monkeypatch):
    rec = Recorder(tmp_path, "bybit-linear")
    calls = []

    def do_write(lines):
        calls.append(len(lines))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rec, "_do_write", do_write)
    for ts, raw in _lines(10):
        rec.write(ts, raw)
    rec.write_pending()  # queued: the failure happens on the writer thread
    with pytest.raises(RecordingError, match=r"writing 10 lines to .*bybit-linear_\d{8}\.gz failed \(OSError.*"
                                             r"No space left.*Check free space"):
        rec.flush()
    assert calls == [10]
    for ts, raw in _lines(5, t0=20_000 * DAY + 100):
        rec.write(ts, raw)
    rec.close()  # reported once; the file is closed, the thread ended
    assert rec.writer._thread is None and rec._f is None and rec.writer.dropped >= 1


def test_a_failure_surfaces_at_close_when_nothing_else_was_called(tmp_path, monkeypatch):
    rec = Recorder(tmp_path, "bybit-linear")
    monkeypatch.setattr(rec, "_do_write", lambda lines: 1 / 0)
    for ts, raw in _lines(3):
        rec.write(ts, raw)
    with pytest.raises(RecordingError, match="ZeroDivisionError"):
        rec.close()
    assert rec.writer._thread is None


def test_the_ordered_writer_keeps_order_and_bounds_its_queue():
    w = OrderedWriter("test", maxsize=4)
    gate = threading.Event()
    seen = []
    w.submit(gate.wait, "waiting")
    for k in range(4):
        w.submit(lambda k=k: seen.append(k), f"append {k}")
    t = threading.Thread(target=w.submit, args=(lambda: seen.append(4), "append 4"))
    t.start()
    t.join(0.05)
    assert t.is_alive()  # the queue is full: the hand-over waits for the writer
    gate.set()
    t.join(5)
    w.close()
    assert seen == [0, 1, 2, 3, 4]
