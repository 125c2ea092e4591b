"""Recorder of every received frame: ``<local_ts_ns> <raw frame>`` lines, gzip, one file per UTC day.

The files are what ``mmlab data ingest`` reads for the venue (the ``timestamped`` format), so a live session
can be re-run through the backtest. Lines are handed to gzip in batches (:meth:`Recorder.write_pending`, called by
the runner after each step, and every :data:`PENDING_LINES` lines): one compressor call per batch instead of one
per frame, the same bytes. Files are flushed on every rotation, on :meth:`Recorder.flush` and on close; a crash
loses at most the unflushed gzip tail (the ingest's ``--allow-truncated`` reads the complete lines before it).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

NS_PER_DAY = 86_400 * 1_000_000_000
#: Lines held before they are handed to gzip without a :meth:`Recorder.write_pending` call.
PENDING_LINES = 256


def _day(ts_ns: int) -> str:
    import datetime as dt

    # Integer days: a float of the ns time would round the last microseconds of a day into the next one.
    return (dt.date(1970, 1, 1) + dt.timedelta(days=ts_ns // NS_PER_DAY)).strftime("%Y%m%d")


class Recorder:
    """Appends frames to ``<dir>/<prefix>_<YYYYMMDD>.gz``; a frame of a new UTC day opens the next file."""

    def __init__(self, directory: str | os.PathLike, prefix: str, *, compresslevel: int = 1):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.compresslevel = compresslevel
        self._f = None
        self._day_end = -1
        self._pending: list[bytes] = []  # lines not yet handed to gzip (all of the open file's day)
        self.files: list[str] = []
        self.frames = 0
        self.bytes = 0

    def _open(self, ts_ns: int) -> None:
        self.close()
        day0 = ts_ns - ts_ns % NS_PER_DAY
        self._day_end = day0 + NS_PER_DAY
        path = self.dir / f"{self.prefix}_{_day(ts_ns)}.gz"
        # A restarted session on the same day appends a new gzip member (gzip readers concatenate members).
        self._f = gzip.open(path, "ab", compresslevel=self.compresslevel)
        if str(path) not in self.files:
            self.files.append(str(path))

    def write(self, ts_local_ns: int, raw: bytes | str) -> None:
        """One line ``<ts_local_ns> <raw>``; newlines inside ``raw`` (never in JSON frames) are escaped away."""
        if ts_local_ns >= self._day_end or self._f is None:
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
        """Hand the held lines to gzip (one write)."""
        if self._pending and self._f is not None:
            self._f.write(b"".join(self._pending))
        self._pending.clear()

    def flush(self) -> None:
        self.write_pending()
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        self.write_pending()
        if self._f is not None:
            self._f.close()
            self._f = None
