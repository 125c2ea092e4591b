"""``mmlab data ls`` / ``scan-gaps``: store listing from _meta.json, missing days and silences."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmlab.cli import app
from mmlab.data import store
from mmlab.data.catalog import list_store, scan_gaps
from mmlab.data.schema import NUMPY_DTYPES
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind

S = 1_000_000_000
DAY0 = 1_721_347_200 * S  # 2024-07-19T00:00:00Z


def write(root, ts_local_ns, venue="binance-usdm", symbol="TESTUSDT", kinds=None):
    """A stream with one row per timestamp; meta days filled the way ingest fills them."""
    ts = np.asarray(ts_local_ns, dtype=np.int64)
    n = len(ts)
    kind = np.full(n, int(Kind.TRADE), np.uint8) if kinds is None else np.asarray(kinds, np.uint8)
    cols = {
        "ts_exch": ts - 1000,
        "ts_local": ts,
        "kind": kind,
        "side": np.ones(n),
        "price": np.full(n, 100.0),
        "qty": np.ones(n),
        "update_id": np.arange(n),
        "batch_end": np.ones(n, bool),
    }
    cols = {c: np.asarray(cols[c], dtype=NUMPY_DTYPES[c]) for c in EVENT_COLUMNS}
    written = store.write_days(root, venue, symbol, cols)
    meta = store.empty_meta(venue, symbol)
    meta.update(tick_size=0.1, lot_size=0.001)
    for w in written:
        sel = (cols["ts_exch"] // store.NS_PER_DAY) == np.datetime64(w.day, "D").astype(np.int64)
        kk, cc = np.unique(cols["kind"][sel], return_counts=True)
        meta["days"][w.day] = {
            "rows": w.rows,
            "files": list(w.files),
            "rows_by_kind": {store.kind_name(int(k)): int(v) for k, v in zip(kk, cc)},
            "ts_local_min": int(ts[sel].min()),
            "ts_local_max": int(ts[sel].max()),
        }
    store.write_meta(root, venue, symbol, meta)


def test_list_store_reads_meta_and_sizes(tmp_path):
    ts = [DAY0 + 5 * S, DAY0 + 6 * S, DAY0 + 2 * store.NS_PER_DAY + 7 * S]
    write(tmp_path, ts, kinds=[1, 2, 2])
    write(tmp_path, [DAY0 + S], venue="bybit-linear", symbol="ETHUSDT")
    rows = list_store(tmp_path)
    assert [(r["venue"], r["symbol"]) for r in rows] == [("binance-usdm", "TESTUSDT"), ("bybit-linear", "ETHUSDT")]
    r = rows[0]
    assert r["days"] == ["2024-07-19", "2024-07-21"]
    assert r["rows"] == 3 and r["rows_by_kind"] == {"DEPTH": 1, "TRADE": 2}
    assert r["start"] == "2024-07-19T00:00:05.000Z" and r["end"] == "2024-07-21T00:00:07.000Z"
    assert 0 < r["size_mb"] < 0.1
    assert list_store(tmp_path / "nothing") == []


def test_scan_gaps_missing_days_and_silences(tmp_path):
    ts = [DAY0, DAY0 + 10 * S, DAY0 + 100 * S, DAY0 + 101 * S]  # a 90 s silence
    ts += [DAY0 + store.NS_PER_DAY * 2 + 30 * S]  # day 2024-07-20 missing; silence across it
    write(tmp_path, ts)
    gaps = scan_gaps(tmp_path, silence_s=60)
    assert [g["kind"] for g in gaps] == ["missing_day", "silence", "silence"]
    assert gaps[0]["start"] == "2024-07-20T00:00:00.000Z" and gaps[0]["duration_s"] == 86_400.0
    assert gaps[1] == {
        "venue": "binance-usdm", "symbol": "TESTUSDT", "kind": "silence",
        "start": "2024-07-19T00:00:10.000Z", "end": "2024-07-19T00:01:40.000Z", "duration_s": 90.0,
    }
    assert gaps[2]["start"] == "2024-07-19T00:01:41.000Z" and gaps[2]["end"] == "2024-07-21T00:00:30.000Z"
    assert len(scan_gaps(tmp_path, silence_s=200_000)) == 1  # only the missing day
    assert scan_gaps(tmp_path, venue="binance-usdm", symbol="testusdt", silence_s=5)[1]["duration_s"] == 10.0
    with pytest.raises(DataError, match="no data for binance-spot"):
        scan_gaps(tmp_path, venue="binance-spot")
    with pytest.raises(DataError, match="silence-s must be > 0"):
        scan_gaps(tmp_path, silence_s=0)


def test_cli_ls_and_scan_gaps(tmp_path):
    write(tmp_path, [DAY0, DAY0 + 100 * S])
    res = CliRunner().invoke(app, ["data", "ls", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)[0]["rows"] == 2
    res = CliRunner().invoke(app, ["data", "scan-gaps", str(tmp_path), "--silence-s", "30", "--json"])
    assert res.exit_code == 0, res.output
    assert [g["duration_s"] for g in json.loads(res.output)] == [100.0]
    res = CliRunner().invoke(app, ["data", "ls", str(tmp_path)])
    assert res.exit_code == 0 and "TESTUSDT" in res.output


@pytest.mark.real_data
def test_nexousdt_spot_silences(real_data, tmp_path):
    """A thin market: every stream (depth @100ms, trades, bookTicker) quiet at once for up to 43.5 s."""
    from mmlab.data.ingest import ingest

    ingest([real_data / "binance_spot" / f"nexousdt_202407{d}.dat.gz" for d in (23, 24, 25)], "binance-spot", tmp_path)
    (row,) = list_store(tmp_path)
    assert row["days"] == ["2024-07-23", "2024-07-24", "2024-07-25"] and row["rows"] == 318_888
    assert row["start"] == "2024-07-23T15:39:43.043Z" and row["end"] == "2024-07-25T01:51:47.140Z"
    assert scan_gaps(tmp_path, silence_s=60) == []
    g30 = scan_gaps(tmp_path, silence_s=30)
    assert len(g30) == 18 and all(g["kind"] == "silence" for g in g30)
    assert max(g["duration_s"] for g in g30) == 43.5
    assert len(scan_gaps(tmp_path, silence_s=20)) == 154
