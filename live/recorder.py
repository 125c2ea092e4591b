"""Recorder of every received frame: ``<local_ts_ns> <raw frame>`` lines, gzip, one file per UTC day.

The files are what ``mmlab data ingest`` reads for the venue (the ``timestamped`` format), so a live session
can be re-run through the backtest. Lines are handed to gzip in batches (:meth:`Recorder.write_pending`, called by
the runner after each step, and every :data:`PENDING_LINES` lines): one compressor call per batch instead of one
per frame, the same bytes. The compression and the file writes run on a writer thread
(:class:`OrderedWriter`, zlib and file writes release the GIL), in the order the batches were handed over, so
the event loop only joins the lines. Files are flushed on every rotation, on :meth:`Recorder.flush` and on
close (both wait for the writer); a crash loses at most the unflushed gzip tail (the ingest's
``--allow-truncated`` reads the complete lines before it). A failed write is raised as :class:`RecordingError` by
the next call (``write_pending``, ``flush``, ``close``).
"""

from __future__ import annotations

import gzip
import os
import queue
import threading
from pathlib import Path

from mmlab.errors import MmlabError

NS_PER_DAY = 86_400 * 1_000_000_000
#: Lines held before they are handed to gzip without a :meth:`Recorder.write_pending` call.
PENDING_LINES = 256
#: Batches the writer thread may hold before a hand-over waits for it (the disk is slower than the feed).
WRITER_QUEUE = 256


class RecordingError(MmlabError):
    """A write of the recording (or of another output handed to an :class:`OrderedWriter`) failed."""


def _day(ts_ns: int) -> str:
    import datetime as dt

    # Integer days: a float of the ns time would round the last microseconds of a day into the next one.
    return (dt.date(1970, 1, 1) + dt.timedelta(days=ts_ns // NS_PER_DAY)).strftime("%Y%m%d")


class OrderedWriter:
    """One daemon thread running the calls handed to :meth:`submit` one after the other, in order.

    :meth:`submit` waits only when ``maxsize`` calls are queued. The first call that raises stops the rest: they
    are dropped (counted), and :meth:`check` (called by every :meth:`submit`, :meth:`wait` and :meth:`close`)
    raises :class:`RecordingError` naming the failed call and what was dropped. :meth:`wait` returns once every
    call handed over so far has run; :meth:`close` waits and ends the thread (a later submit starts a new one).
    """

    def __init__(self, name: str, maxsize: int = WRITER_QUEUE):
        self.name = name
        self.maxsize = maxsize
        self._q: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._error_what = ""
        self.dropped = 0  # calls not run after a failure
        self._reported = False

    def _start(self) -> None:
        self._q = queue.Queue(self.maxsize)
        self._thread = threading.Thread(target=self._work, args=(self._q,), name=self.name, daemon=True)
        self._thread.start()

    def _work(self, q: queue.Queue) -> None:
        while True:
            item = q.get()
            try:
                if item is None:
                    return
                fn, what = item
                if self._error is not None:
                    self.dropped += 1
                    continue
                try:
                    fn()
                except BaseException as exc:  # noqa: BLE001 - raised in the owner's thread by check()
                    self._error, self._error_what = exc, what
            finally:
                q.task_done()

    def submit(self, fn, what: str = "") -> None:
        """Run ``fn()`` on the writer thread after every call submitted before (``what`` names it in errors)."""
        self.check()
        if self._thread is None:
            self._start()
        self._q.put((fn, what))

    def wait(self) -> None:
        """Return once every submitted call has run; raise the writer's error if one failed."""
        if self._q is not None:
            self._q.join()
        self.check()

    def close(self) -> None:
        """Run what is queued, end the thread; raise the writer's error if a call failed."""
        if self._thread is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None
            self._q = None
        self.check()

    def check(self) -> None:
        """Raise :class:`RecordingError` once for a failed call (the calls after it were not run)."""
        if self._error is not None and not self._reported:
            self._reported = True
            exc = self._error
            raise RecordingError(
                f"{self.name}: {self._error_what} failed ({type(exc).__name__}: {exc}); the writes after it were "
                f"not made ({self.dropped} so far). Check free space and permissions of the output directory; "
                "the session's other outputs are unaffected.") from exc

    @property
    def failed(self) -> bool:
        return self._error is not None


class Recorder:
    """Appends frames to ``<dir>/<prefix>_<YYYYMMDD>.gz``; a frame of a new UTC day opens the next file.

    ``threaded=False`` compresses and writes in the caller's thread (the same bytes)."""

    def __init__(self, directory: str | os.PathLike, prefix: str, *, compresslevel: int = 1, threaded: bool = True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.compresslevel = compresslevel
        self._f = None  # the open gzip file (used by the writer thread only, when threaded)
        self._path: Path | None = None
        self._day_end = -1
        self._pending: list[bytes] = []  # lines not yet handed to gzip (all of the open file's day)
        self.writer = OrderedWriter(f"recording {self.dir}") if threaded else None
        self.files: list[str] = []
        self.frames = 0
        self.bytes = 0

    # The file operations, in the writer's order (the writer thread's, or the caller's without one).

    def _do_open(self, path: Path) -> None:
        self._do_close()
        # A restarted session on the same day appends a new gzip member (gzip readers concatenate members).
        self._f = gzip.open(path, "ab", compresslevel=self.compresslevel)

    def _do_write(self, lines: list[bytes]) -> None:
        self._f.write(b"".join(lines))

    def _do_flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def _do_close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            f.close()

    def _run(self, fn, what: str) -> None:
        if self.writer is None:
            fn()
        else:
            self.writer.submit(fn, what)

    def _open(self, ts_ns: int) -> None:
        self.write_pending()
        day0 = ts_ns - ts_ns % NS_PER_DAY
        self._day_end = day0 + NS_PER_DAY
        path = self._path = self.dir / f"{self.prefix}_{_day(ts_ns)}.gz"
        self._run(lambda: self._do_open(path), f"opening {path}")
        if str(path) not in self.files:
            self.files.append(str(path))

    def write(self, ts_local_ns: int, raw: bytes | str) -> None:
        """One line ``<ts_local_ns> <raw>``; newlines inside ``raw`` (never in JSON frames) are escaped away."""
        if ts_local_ns >= self._day_end or self._path is None:
            self._open(ts_local_ns)
        if isinstance(raw, str):
            raw = raw.encode()
        if b"\n" in raw:
            raw = raw.replace(b"\r", b"").replace(b"\n", b" ")
        line = b"%d %s\n" % (ts_local_ns, raw)
        self._pending.append(line)
        self.frames += 1
        self.bytes += len(line)
        if len(self._pending) >= PENDING_LINES:
            self.write_pending()

    def write_pending(self) -> None:
        """Hand the held lines to gzip (one write, on the writer thread when threaded)."""
        if self._pending and self._path is not None:
            lines, self._pending = self._pending, []
            self._run(lambda: self._do_write(lines), f"writing {len(lines)} lines to {self._path}")
        elif self.writer is not None:
            self.writer.check()

    def flush(self) -> None:
        """Every line so far compressed and flushed to the file (waits for the writer thread)."""
        self.write_pending()
        self._run(self._do_flush, f"flushing {self._path}")
        if self.writer is not None:
            self.writer.wait()

    def close(self) -> None:
        """Write the held lines, close the file, end the writer thread (raises a failed write's error once)."""
        try:
            self.write_pending()
            self._run(self._do_close, f"closing {self._path}")
        finally:
            self._path = None
            self._day_end = -1
            if self.writer is not None:
                try:
                    self.writer.close()
                finally:
                    self._do_close()  # (after a failure the file is still open: close what was written)
