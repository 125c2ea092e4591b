"""Calibration loggers: fills and pipeline ticks as JSON lines, one file per UTC day, crash-safe.

Files: ``<dir>/fills_YYYYMMDD.jsonl`` and ``<dir>/pipeline_ticks_YYYYMMDD.jsonl`` (the day of the record's
``ts``, so a replay writes the days it covers and a live session rotates at midnight UTC). UTF-8, one JSON object
per line, NaN/inf written as ``null``.

Crash safety: a record is encoded completely and handed to the kernel in one ``os.write`` on a file opened with
``O_APPEND``; a process killed at any moment leaves whole lines. A file whose last line is partial (power loss
mid-write, a disk full) is cut back to its last newline when a writer opens it, and :func:`read_jsonl` skips
(and counts) a partial last line, so readers never see half a record.

The same writer classes serve the backtest (:func:`mmlab.calib.write_calibration_logs` derives the records from
a run directory) and the live runner (call :meth:`FillLogger.log` / :meth:`PipelineTickLogger.log` as things happen).

>>> with FillLogger("data/calib/feeds") as fl:  # doctest: +SKIP
...     fl.log(ts_ns=1721347061452000000, symbol="BTCUSDT", side=1, price=63944.0, qty=0.001, maker=True)
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

from mmlab.errors import DataError

FILLS_PREFIX = "fills"
TICKS_PREFIX = "pipeline_ticks"


def utc_day(ts_ns: int) -> str:
    """``YYYYMMDD`` of a ns timestamp (UTC)."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).strftime("%Y%m%d")


def iso(ts_ns: int) -> str:
    """ISO-8601 UTC with microseconds."""
    return datetime.fromtimestamp(ts_ns // 1000 / 1e6, tz=timezone.utc).isoformat(timespec="microseconds")


def _clean(v):
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if hasattr(v, "item"):  # numpy scalars
        return _clean(v.item())
    return v


def _repair_tail(path: Path) -> int:
    """Cut a partial last line; returns the bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        # Scan back in blocks for the last newline.
        pos = size
        block = 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = start + i + 1
                break
            pos = start
        fh.truncate(keep)
        return size - keep


class JsonlDailyWriter:
    """Append records to ``<dir>/<prefix>_YYYYMMDD.jsonl`` by the UTC day of each record's time."""

    def __init__(self, directory: str | os.PathLike, prefix: str, *, fsync: bool = False) -> None:
        self.dir = Path(directory)
        self.prefix = prefix
        self.fsync = fsync
        self._fd: int | None = None
        self._day: str | None = None
        self.n_written = 0
        self.n_repaired_bytes = 0

    def path_for(self, day: str) -> Path:
        return self.dir / f"{self.prefix}_{day}.jsonl"

    def _open(self, day: str) -> None:
        self.close()
        self.dir.mkdir(parents=True, exist_ok=True)
        p = self.path_for(day)
        if p.exists():
            self.n_repaired_bytes += _repair_tail(p)
        self._fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._day = day

    def write(self, record: dict, ts_ns: int) -> None:
        """Write one record (a dict) as one line of the file of ``ts_ns``'s UTC day."""
        day = utc_day(int(ts_ns))
        if day != self._day or self._fd is None:
            self._open(day)
        data = (json.dumps(_clean(record), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
        # One write call per record: a killed process leaves whole lines (regular files are not interrupted
        # by signals part-way); a short write (disk full) is completed or leaves a tail the next open repairs.
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(self._fd)
        self.n_written += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._day = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FillLogger(JsonlDailyWriter):
    """One record per fill: ts, ts_iso, symbol, side, price, qty, maker/taker, queue_pos_est, quote_price,
    mid_at_quote, mid_now, spread_at_quote_bps, latency_ms, slip_bps, fee, markout_bps_1s."""

    def __init__(self, directory: str | os.PathLike, *, fsync: bool = False) -> None:
        super().__init__(directory, FILLS_PREFIX, fsync=fsync)

    def log(self, *, ts_ns: int, symbol: str, side: int, price: float, qty: float, maker: bool,
            queue_pos_est: float | None = None, quote_price: float | None = None, mid_at_quote: float | None = None,
            mid_now: float | None = None, spread_at_quote_bps: float | None = None, latency_ms: float | None = None,
            slip_bps: float | None = None, fee: float | None = None, markout_bps_1s: float | None = None) -> None:
        self.write({
            "ts": int(ts_ns), "ts_iso": iso(int(ts_ns)), "symbol": symbol, "side": "buy" if side > 0 else "sell",
            "price": price, "qty": qty, "liquidity": "maker" if maker else "taker", "queue_pos_est": queue_pos_est,
            "quote_price": quote_price, "mid_at_quote": mid_at_quote, "mid_now": mid_now,
            "spread_at_quote_bps": spread_at_quote_bps, "latency_ms": latency_ms, "slip_bps": slip_bps, "fee": fee,
            "markout_bps_1s": markout_bps_1s,
        }, ts_ns)


class PipelineTickLogger(JsonlDailyWriter):
    """Every ``sample_every``-th decision tick of a symbol: ts, ts_iso, symbol, stage_latencies (ms),
    stage_p95_ms, tick_total_ms, cache_hit, cache_age_ms, used_stale, deadline_miss, ws_gap_ms, and the counts
    of the ticks since the previous record of the symbol (``n_ticks``, ``n_orders_sent``, ``n_deadline_miss``),
    so that sampling loses no counts."""

    def __init__(self, directory: str | os.PathLike, *, sample_every: int = 10, fsync: bool = False) -> None:
        if sample_every < 1:
            raise DataError(f"PipelineTickLogger sample_every must be >= 1, got {sample_every!r}")
        super().__init__(directory, TICKS_PREFIX, fsync=fsync)
        self.sample_every = sample_every
        self._acc: dict[str, list] = {}

    def log(self, *, ts_ns: int, symbol: str, tick_total_ms: float | None = None, stage_latencies: dict | None = None,
            stage_p95_ms: float | None = None, cache_hit: bool | None = None, cache_age_ms: float | None = None,
            used_stale: bool | None = None, deadline_miss: bool = False, ws_gap_ms: float | None = None,
            n_orders_sent: int = 0) -> bool:
        """Count the tick; write a record on every ``sample_every``-th tick of the symbol. Returns True if written."""
        acc = self._acc.setdefault(symbol, [0, 0, 0, 0.0])
        acc[0] += 1
        acc[1] += int(n_orders_sent)
        acc[2] += int(bool(deadline_miss))
        acc[3] = max(acc[3], float(ws_gap_ms or 0.0))
        if acc[0] < self.sample_every:
            return False
        self.write({
            "ts": int(ts_ns), "ts_iso": iso(int(ts_ns)), "symbol": symbol, "stage_latencies": stage_latencies or {},
            "stage_p95_ms": stage_p95_ms, "tick_total_ms": tick_total_ms, "cache_hit": cache_hit,
            "cache_age_ms": cache_age_ms, "used_stale": used_stale, "deadline_miss": bool(deadline_miss),
            "ws_gap_ms": acc[3], "sample_every": self.sample_every, "n_ticks": acc[0], "n_orders_sent": acc[1],
            "n_deadline_miss": acc[2],
        }, ts_ns)
        self._acc[symbol] = [0, 0, 0, 0.0]
        return True


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], int]:
    """Records of a JSONL file and the count of lines skipped (a partial last line, or a corrupt line)."""
    p = Path(path)
    rows, bad = [], 0
    with open(p, "rb") as fh:
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        lines.pop()  # no final newline: partial last record
        bad += 1
    for ln in lines:
        try:
            rows.append(json.loads(ln.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            bad += 1
    return rows, bad
