"""JSONL calibration logs: daily files, UTF-8, one record per line, whole lines after a kill, sampling keeps counts."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mmlab.calib.loggers import FillLogger, JsonlDailyWriter, PipelineTickLogger, read_jsonl
from mmlab.errors import DataError

DAY1 = 1_721_347_061_452_000_000  # 2024-07-18T23:57:41Z
DAY2 = DAY1 + 3 * 60 * 1_000_000_000  # 2024-07-19


def test_daily_rotation_utf8_and_nan_as_null(tmp_path):
    with FillLogger(tmp_path) as fl:
        fl.log(ts_ns=DAY1, symbol="BTCUSDT", side=1, price=63944.2, qty=0.001, maker=True, slip_bps=float("nan"))
        fl.log(ts_ns=DAY2, symbol="ÉTHUSDT", side=-1, price=3400.5, qty=0.01, maker=False, latency_ms=12.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fills_20240718.jsonl", "fills_20240719.jsonl"]
    raw = (tmp_path / "fills_20240719.jsonl").read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1 and "ÉTHUSDT".encode("utf-8") in raw
    r1, bad = read_jsonl(tmp_path / "fills_20240718.jsonl")
    assert bad == 0 and r1[0]["slip_bps"] is None and r1[0]["side"] == "buy" and r1[0]["liquidity"] == "maker"
    assert r1[0]["ts_iso"] == "2024-07-18T23:57:41.452000+00:00"


def test_partial_last_line_is_repaired_on_open_and_skipped_by_readers(tmp_path):
    p = tmp_path / "fills_20240718.jsonl"
    p.write_bytes(b'{"a":1}\n{"b":')
    rows, bad = read_jsonl(p)
    assert rows == [{"a": 1}] and bad == 1
    with JsonlDailyWriter(tmp_path, "fills") as w:
        w.write({"c": 3}, DAY1)
        assert w.n_repaired_bytes == 5
    assert p.read_bytes() == b'{"a":1}\n{"c":3}\n'


def test_tick_sampling_keeps_the_counts(tmp_path):
    with PipelineTickLogger(tmp_path, sample_every=4) as tl:
        written = [tl.log(ts_ns=DAY1 + i * 100_000_000, symbol="BTCUSDT", n_orders_sent=i % 3, deadline_miss=(i == 5),
                          ws_gap_ms=float(i)) for i in range(12)]
    assert written == [False, False, False, True] * 3
    rows, _ = read_jsonl(tmp_path / "pipeline_ticks_20240718.jsonl")
    assert [r["n_ticks"] for r in rows] == [4, 4, 4]
    assert sum(r["n_orders_sent"] for r in rows) == sum(i % 3 for i in range(12))
    assert [r["n_deadline_miss"] for r in rows] == [0, 1, 0] and rows[1]["ws_gap_ms"] == 7.0
    with pytest.raises(DataError, match="sample_every must be >= 1"):
        PipelineTickLogger(tmp_path, sample_every=0)


WRITER = """
import sys
from mmlab.calib.loggers import FillLogger
fl = FillLogger(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    fl.log(ts_ns=%d + i, symbol="BTCUSDT", side=1, price=63944.2 + i, qty=0.001, maker=True,
           mid_at_quote=63944.0, spread_at_quote_bps=0.0156, latency_ms=10.0, slip_bps=-0.04)
    i += 1
""" % DAY1


def test_a_killed_writer_leaves_only_whole_lines(tmp_path):
    for attempt in range(3):
        d = tmp_path / f"k{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(d)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + 0.1 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        p = d / "fills_20240718.jsonl"
        data = p.read_bytes()
        assert data.endswith(b"\n")
        lines = data.split(b"\n")[:-1]
        assert len(lines) > 10
        recs = [json.loads(x) for x in lines]
        assert [r["ts"] for r in recs] == list(range(DAY1, DAY1 + len(recs)))
        # A new writer appends after the last whole line.
        with FillLogger(d) as fl:
            fl.log(ts_ns=DAY1, symbol="BTCUSDT", side=-1, price=1.0, qty=1.0, maker=False)
        rows, bad = read_jsonl(p)
        assert bad == 0 and len(rows) == len(recs) + 1
