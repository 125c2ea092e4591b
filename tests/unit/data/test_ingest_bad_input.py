"""Binance capture ingest on damaged copies of a real recording: nothing is lost, every count reconciles, and
each problem is reported with file, line, values and the fix."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import msgspec
import polars as pl
import pytest

from mmlab.data.ingest import IngestOptions, ingest, parse
from mmlab.errors import DataError
from mmlab.types import Kind

pytestmark = pytest.mark.real_data

BASE = "binance_usdm/usdm_btcusdt_20240718.gz"  # 11,414 lines; the snapshot is line 14
SNAPSHOT_LINE = 14


@pytest.fixture(scope="module")
def base_lines(real_data) -> list[bytes]:
    lines = zlib.decompress((real_data / BASE).read_bytes(), wbits=47).split(b"\n")
    assert lines[-1] == b""
    return lines[:-1]


@pytest.fixture(scope="module")
def base_parse(real_data):
    [s] = parse([real_data / BASE], "binance-usdm", IngestOptions())
    return s


def _write(tmp_path: Path, lines: list[bytes], name: str = "usdm_btcusdt_20240718.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1))
    return path


def _msg(line: bytes) -> dict:
    d = msgspec.json.decode(line.split(b" ", 1)[1])
    return d.get("data", d)


def _depth_lines(lines: list[bytes], start: int) -> list[int]:
    """0-based indexes of the depth diff lines from line index start on."""
    return [i for i in range(start, len(lines)) if b"@depth" in lines[i][:80]]


def _levels(line: bytes) -> int:
    d = _msg(line)
    return len(d["b"]) + len(d["a"])


def _reconciles(results) -> None:
    for r in results:
        assert r.rows_in == r.rows_written + r.rows_quarantined, r
        meta = json.loads(Path(r.meta_path).read_text())
        assert meta["ingest"]["rows_in"] == r.rows_in and meta["ingest"]["rows_quarantined"] == r.rows_quarantined


def test_truncated_gzip(real_data, tmp_path):
    raw = (real_data / BASE).read_bytes()
    path = tmp_path / "usdm_btcusdt_20240718.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"usdm_btcusdt_20240718\.gz: truncated or corrupt gzip .* --allow-truncated"):
        ingest([path], "binance-usdm", tmp_path / "out", IngestOptions())
    results = ingest([path], "binance-usdm", tmp_path / "out", IngestOptions(allow_truncated=True))
    _reconciles(results)
    meta = json.loads(Path(results[0].meta_path).read_text())
    [src] = meta["sources"]
    assert src["truncated"] is True and 4_000 < src["lines"] < 11_414
    assert meta["messages"]["corrupt_lines"] == 0  # cut at the last complete line
    assert results[0].gaps == 0


def test_garbage_lines_are_quarantined(base_lines, base_parse, tmp_path):
    lines = list(base_lines)
    bad = [
        b"garbage \x00\xff not a capture line",
        b'1721347021500000000 {"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":17213470',
        b'1721347021500000000 {"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1721347022000,"s":"BTCUSDT"}}',
        b'1721347021500000000 {"stream":"btcusdt@trade","data":{"e":"trade","E":1721347022000,"s":"BTCUSDT",'
        b'"t":1,"p":"1.0","q":"1.0","m":true}}',
        b'12x45 {"stream":"btcusdt@trade","data":{}}',
    ]
    # Insert them after line 100 (indexes 100..104 -> lines 101..105); the depth chain is untouched.
    lines[100:100] = bad
    path = _write(tmp_path, lines)
    [r] = ingest([path], "binance-usdm", tmp_path / "out", IngestOptions())
    _reconciles([r])
    assert r.gaps == 0
    assert r.rows_in == base_parse.rows_in + len(bad)
    assert r.rows_quarantined == base_parse.rows_quarantined + len(bad)
    meta = json.loads(Path(r.meta_path).read_text())
    reasons = {q["line"]: q["reason"] for q in meta["quarantine"] if q["file"] == path.name and q["line"] > 100}
    assert set(reasons) == {101, 102, 103, 104, 105}
    assert "local timestamp b'garbage' is not an integer" in reasons[101]
    assert "unparseable JSON" in reasons[102]
    assert "unknown stream 'btcusdt@kline_1m'" in reasons[103]
    assert "trade without field 'T'" in reasons[104]
    assert "local timestamp b'12x45' is not an integer" in reasons[105]
    assert meta["messages"]["corrupt_lines"] == len(bad)


def test_deleted_depth_line_is_a_gap_until_the_next_snapshot(base_lines, base_parse, tmp_path):
    lines = list(base_lines)
    depth = _depth_lines(lines, SNAPSHOT_LINE)
    prev, gone, nxt = depth[199], depth[200], depth[201]
    prev_u, gone_u = _msg(lines[prev])["u"], _msg(lines[gone])["u"]
    assert _msg(lines[nxt])["pu"] == gone_u
    del lines[gone]
    path = _write(tmp_path, lines)
    with_gap = ingest([path], "binance-usdm", tmp_path / "a", IngestOptions())
    _reconciles(with_gap)
    meta = json.loads(Path(with_gap[0].meta_path).read_text())
    [gap] = meta["gaps"]
    assert (gap["from_update_id"], gap["to_update_id"]) == (prev_u, gone_u)
    assert gap["file"] == path.name and gap["line"] == nxt  # 1-based line of the next diff after the deletion
    assert gap["handled"] == "quarantined until next snapshot"
    # No later snapshot: every diff from the gap on is held back.
    held = [i for i in _depth_lines(lines, nxt - 1)]
    assert gap["rows_quarantined"] == sum(_levels(lines[i]) for i in held)
    assert gap["messages_quarantined"] == len(held) == meta["messages"]["depth_after_gap"]
    assert with_gap[0].rows_in == base_parse.rows_in - _levels(base_lines[gone])
    assert with_gap[0].rows_quarantined == base_parse.rows_quarantined + gap["rows_quarantined"]
    # Trades and bookTicker rows keep flowing through the gap.
    assert meta["messages"]["trade"] == base_parse.extra["messages"]["trade"]
    assert meta["ingest"]["rows_by_kind"]["TRADE"] == base_parse.extra["messages"]["trade"]

    # A later snapshot line re-syncs: built for the state after diff `j` (lastUpdateId = u_j) and written after
    # diff j+1, as a recorder does; j bridges it and j+1 chains on, both applied right after the snapshot.
    j = held[100]
    dj = _msg(lines[j])
    snap = _msg(base_lines[SNAPSHOT_LINE - 1])
    snap.update(lastUpdateId=dj["u"], E=dj["E"], T=dj["T"])
    ts = lines[held[101]].split(b" ", 1)[0]
    lines.insert(held[101] + 1, ts + b" " + msgspec.json.encode(snap))
    path2 = _write(tmp_path, lines, "usdm_btcusdt_20240718_resync.gz")
    [r] = ingest([path2], "binance-usdm", tmp_path / "b", IngestOptions())
    _reconciles([r])
    meta = json.loads(Path(r.meta_path).read_text())
    [gap] = meta["gaps"]
    assert (gap["from_update_id"], gap["to_update_id"]) == (prev_u, gone_u)
    assert gap["messages_quarantined"] == 100 and gap["rows_quarantined"] == sum(_levels(lines[i]) for i in held[:100])
    m = meta["messages"]
    assert m["snapshot"] == 2 and m["depth_after_gap"] == 100 and m["depth_applied_after_snapshot"] == 1 + 2
    assert meta["ingest"]["rows_by_kind"]["CLEAR"] == 2
    df = pl.concat([pl.read_parquet(p) for p in sorted(Path(r.meta_path).parent.glob("date=*/*.parquet"))])
    clears = df.filter(pl.col("kind") == Kind.CLEAR)
    assert clears["update_id"].to_list() == [snap_lid(base_lines), dj["u"]]
    # After the re-sync every later diff is applied: the stored DEPTH update ids include the last diff's u.
    assert _msg(lines[_depth_lines(lines, 0)[-1]])["u"] in set(df.filter(pl.col("kind") == Kind.DEPTH)["update_id"])


def snap_lid(lines: list[bytes]) -> int:
    return _msg(lines[SNAPSHOT_LINE - 1])["lastUpdateId"]


def test_swapped_lines_are_sorted_and_counted(base_lines, base_parse, tmp_path):
    lines = list(base_lines)
    # A trade line and the bookTicker line after it swap places: local times go backwards once.
    i = next(k for k in range(200, len(lines) - 1) if b"@trade" in lines[k][:80] and b"@bookTicker" in lines[k + 1][:80]
             and lines[k].split(b" ")[0] < lines[k + 1].split(b" ")[0])
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    path = _write(tmp_path, lines)
    [r] = ingest([path], "binance-usdm", tmp_path / "out", IngestOptions())
    _reconciles([r])
    meta = json.loads(Path(r.meta_path).read_text())
    assert meta["rows_out_of_order_sorted"] == 1 and r.gaps == 0
    assert r.rows_in == base_parse.rows_in and r.rows_quarantined == base_parse.rows_quarantined
    df = pl.concat([pl.read_parquet(p) for p in sorted(Path(r.meta_path).parent.glob("date=*/*.parquet"))])
    assert df["ts_local"].is_sorted()

    # Two depth diffs swapped break the pu chain: that is a sequence gap, reported, never silently reordered.
    lines = list(base_lines)
    d = _depth_lines(lines, SNAPSHOT_LINE)
    lines[d[300]], lines[d[301]] = lines[d[301]], lines[d[300]]
    [s] = parse([_write(tmp_path, lines, "swapped_depth.gz")], "binance-usdm", IngestOptions())
    assert len(s.gaps) == 1 and s.gaps[0]["from_update_id"] == _msg(base_lines[d[299]])["u"]


def test_invalid_values_are_quarantined_with_reason(base_lines, base_parse, tmp_path):
    lines = list(base_lines)
    depth = _depth_lines(lines, SNAPSHOT_LINE)
    k = depth[50]
    d = msgspec.json.decode(lines[k].split(b" ", 1)[1])
    d["data"]["b"][0][1] = "NaN"
    d["data"]["a"][0][1] = "-1.000"
    lines[k] = lines[k].split(b" ", 1)[0] + b" " + msgspec.json.encode(d)
    t = next(i for i in range(k, len(lines)) if b"@trade" in lines[i][:80])
    lines[t] = lines[t].replace(b'"q":"', b'"q":"-', 1)
    path = _write(tmp_path, lines)
    [r] = ingest([path], "binance-usdm", tmp_path / "out", IngestOptions())
    _reconciles([r])
    assert r.gaps == 0  # the message still applies (minus its bad levels): the chain is intact
    assert r.rows_in == base_parse.rows_in and r.rows_quarantined == base_parse.rows_quarantined + 3
    meta = json.loads(Path(r.meta_path).read_text())
    by_line = {q["line"]: q for q in meta["quarantine"] if "invalid value" in q["reason"]}
    assert set(by_line) == {k + 1, t + 1}
    assert by_line[k + 1]["rows"] == 2 and "qty=nan" in by_line[k + 1]["reason"] and "qty=-1.0" in by_line[k + 1]["reason"]
    assert by_line[t + 1]["rows"] == 1 and "invalid value in trade" in by_line[t + 1]["reason"]
    assert by_line[k + 1]["file"] == path.name


def test_unknown_source_lists_sources(real_data, tmp_path):
    with pytest.raises(DataError, match=r"unknown --source 'binance-futures': use one of binance-coinm, binance-csv, "
                                        r"binance-spot, binance-usdm"):
        ingest([real_data / BASE], "binance-futures", tmp_path, IngestOptions())


def test_other_data_for_the_same_days_needs_overwrite(base_lines, real_data, tmp_path):
    root = tmp_path / "store"
    ingest([real_data / BASE], "binance-usdm", root, IngestOptions())
    lines = list(base_lines)
    lines.insert(500, b"garbage")
    other = _write(tmp_path, lines, "usdm_btcusdt_20240718_edited.gz")
    with pytest.raises(DataError, match=r"date=2024-07-18 already holds data ingested from other files "
                                        r"\(usdm_btcusdt_20240718\.gz\); pass --overwrite"):
        ingest([other], "binance-usdm", root, IngestOptions())
    [r] = ingest([other], "binance-usdm", root, IngestOptions(overwrite=True))
    _reconciles([r])
    meta = json.loads(Path(r.meta_path).read_text())
    assert meta["days"]["2024-07-18"]["source_files"] == [other.name]


def test_unreadable_files(tmp_path):
    empty = tmp_path / "empty.gz"
    empty.write_bytes(gzip.compress(b"\n\n"))
    with pytest.raises(DataError, match=r"no Binance messages found in .*empty\.gz"):
        parse([empty], "binance-usdm", IngestOptions())
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"hello\nworld\n")
    with pytest.raises(DataError, match=r"no Binance messages found .* junk\.txt:1: not a '<local_ts> <json>' line"):
        parse([junk], "binance-usdm", IngestOptions())
    with pytest.raises(DataError, match=r"missing\.gz: no such file"):
        parse([tmp_path / "missing.gz"], "binance-usdm", IngestOptions())


def test_mixed_units_and_unit_override(base_lines, tmp_path):
    lines = list(base_lines[:2000])
    ts, rest = lines[1500].split(b" ", 1)
    lines[1500] = str(int(ts) // 1000).encode() + b" " + rest  # one line in microseconds
    [s] = parse([_write(tmp_path, lines)], "binance-usdm", IngestOptions())
    reasons = [q["reason"] for q in s.quarantine if q["line"] == 1501]
    assert reasons and "is not in ns like the rest of the file" in reasons[0]
    assert s.rows_in == len(s.columns["ts_exch"]) + s.rows_quarantined
    # The unit option replaces the detection; a wrong one is caught when times overflow int64 ns.
    short = _write(tmp_path, base_lines[:50], "short.gz")
    [auto] = parse([short], "binance-usdm", IngestOptions())
    [given] = parse([short], "binance-usdm", IngestOptions(local_ts_unit="ns"))
    assert given.local_ts_unit == auto.local_ts_unit == "ns"
    assert (given.columns["ts_local"] == auto.columns["ts_local"]).all()
    with pytest.raises(DataError, match=r"short\.gz:1: local timestamp 1721347020984480942 ms overflows int64 ns"):
        parse([short], "binance-usdm", IngestOptions(local_ts_unit="ms"))
