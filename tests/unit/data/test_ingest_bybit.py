"""Bybit v5 ingest: the real cryptofeed capture and ob500 dump, the recorder's line format, and bad input."""

from __future__ import annotations

import gzip
import json
import zipfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmlab.data.ingest import IngestOptions, ingest, parse
from mmlab.data.ingest.bybit import decimal_seconds_to_ns
from mmlab.data.ingest.common import DEFAULT_FEED_LATENCY_MS
from mmlab.types import Kind

LINEAR_DELTAS = {"BTCUSDT": 413, "ETHUSDT": 420, "SOLUSDT": 382, "DOGEUSDT": 379}
SPOT_DELTAS = {"BTCUSDT": 299, "ETHUSDT": 249}


def _store(root: Path, venue: str, symbol: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((root / venue / symbol).glob("date=*/*.parquet"))])


def _meta(root: Path, venue: str, symbol: str) -> dict:
    return json.loads((root / venue / symbol / "_meta.json").read_text())


def _reconciles(results) -> None:
    for r in results:
        assert r.rows_in == r.rows_written + r.rows_quarantined, r


def _capture_frames(real_data: Path, venue_conn: str = "BYBIT.ws.2"):
    """(local ts text, frame text) of every recv record of one connection of the real capture."""
    out = []
    with gzip.open(real_data / "bybit" / "BYBIT.jsonl.gz", "rt") as f:
        for line in f:
            rec = json.loads(line, parse_float=Decimal)
            if rec["t"] == "recv" and rec["conn"] == venue_conn:
                out.append((rec["ts"], rec["data"]))
    return out


def _write_timestamped(path: Path, frames) -> Path:
    with open(path, "w") as f:
        for ts, data in frames:
            f.write(f"{int(Decimal(ts) * 10**9)} {data}\n")
    return path


def _book_frames(frames, topic):
    return [(ts, d) for ts, d in frames if f'"topic":"{topic}"' in d]


# ------------------------------------------------------------------------------------------- real capture


@pytest.mark.real_data
def test_real_capture_linear_streams_match_provenance(real_data, tmp_path):
    results = ingest([real_data / "bybit" / "BYBIT.jsonl.gz"], "bybit-linear", tmp_path, IngestOptions())
    _reconciles(results)
    assert sorted(r.symbol for r in results) == sorted(LINEAR_DELTAS)
    assert {r.venue for r in results} == {"bybit-linear"}
    for r in results:
        assert r.gaps == 0 and r.rows_quarantined == 0
        df = _store(tmp_path, "bybit-linear", r.symbol)
        book = df.filter(pl.col("kind") != Kind.TRADE)
        assert book.filter(pl.col("kind") == Kind.CLEAR).height == 1
        # One batch per venue message: the snapshot plus each delta (every delta here carries levels).
        assert book["batch_end"].sum() == 1 + LINEAR_DELTAS[r.symbol]
        assert book.filter(pl.col("kind") == Kind.DEPTH)["update_id"].n_unique() == LINEAR_DELTAS[r.symbol]
        meta = _meta(tmp_path, "bybit-linear", r.symbol)
        assert meta["tick_size_source"] == "source" and meta["lot_size_source"] == "source"
        assert meta["feed_latency"] == {"kind": "recorded"}
        assert meta["skipped_messages"]["tickers"] > 0 and meta["skipped_messages"]["op:subscribe"] == 17
        assert meta["gaps"] == []
    btc = next(r for r in results if r.symbol == "BTCUSDT")
    assert (btc.tick_size, btc.lot_size) == (0.1, 0.001)


@pytest.mark.real_data
def test_real_capture_spot_only_and_all_venues(real_data, tmp_path):
    spot = ingest([real_data / "bybit" / "BYBIT.jsonl.gz"], "bybit-spot", tmp_path / "s", IngestOptions())
    _reconciles(spot)
    assert sorted((r.venue, r.symbol) for r in spot) == [("bybit-spot", "BTCUSDT"), ("bybit-spot", "ETHUSDT")]
    for r in spot:
        book = _store(tmp_path / "s", "bybit-spot", r.symbol).filter(pl.col("kind") != Kind.TRADE)
        assert book["batch_end"].sum() == 1 + SPOT_DELTAS[r.symbol]
        # Spot trade ids are numeric: they become update_id.
        trades = _store(tmp_path / "s", "bybit-spot", r.symbol).filter(pl.col("kind") == Kind.TRADE)
        assert trades.height > 0 and (trades["update_id"] > 0).all()
    assert spot[0].lot_size == 1e-06  # basePrecision
    both = ingest([real_data / "bybit" / "BYBIT.jsonl.gz"], "bybit", tmp_path / "a", IngestOptions())
    assert len(both) == 6
    linear_trades = _store(tmp_path / "a", "bybit-linear", "BTCUSDT").filter(pl.col("kind") == Kind.TRADE)
    assert (linear_trades["update_id"] == -1).all()  # UUID trade ids


@pytest.mark.real_data
def test_real_capture_values_exact(real_data):
    """Local time from the decimal text (no float rounding); prices equal Python's float() of the text."""
    frames = _capture_frames(real_data)
    ts_text, snap = next((ts, d) for ts, d in frames if '"orderbook.200.BTCUSDT","type":"snapshot"' in d)
    [stream] = [s for s in parse([real_data / "bybit" / "BYBIT.jsonl.gz"], "bybit-linear", IngestOptions()) if s.symbol == "BTCUSDT"]
    c = stream.columns
    first = int(np.flatnonzero(c["kind"] == Kind.CLEAR)[0])
    assert int(c["ts_local"][first]) == int(Decimal(ts_text) * 10**9) == decimal_seconds_to_ns(str(ts_text))
    msg = json.loads(snap)
    assert int(c["ts_exch"][first]) == msg["cts"] * 1_000_000
    bids = [(float(p), float(q)) for p, q in msg["data"]["b"]]
    k = len(bids)
    assert list(zip(c["price"][first + 1 : first + 1 + k], c["qty"][first + 1 : first + 1 + k])) == bids


@pytest.mark.real_data
def test_real_capture_book_never_crosses(real_data):
    """Replaying the rows (CLEAR/SNAPSHOT/DEPTH, checked at batch ends) keeps best bid < best ask."""
    for stream in parse([real_data / "bybit" / "BYBIT.jsonl.gz"], "bybit-dump", IngestOptions()):
        c = stream.columns
        bids: dict[float, float] = {}
        asks: dict[float, float] = {}
        checked = 0
        for kind, side, px, qty, be in zip(c["kind"], c["side"], c["price"], c["qty"], c["batch_end"]):
            if kind == Kind.CLEAR:
                bids.clear()
                asks.clear()
            elif kind in (Kind.SNAPSHOT, Kind.DEPTH):
                book = bids if side > 0 else asks
                if qty == 0:
                    book.pop(px, None)
                else:
                    book[px] = qty
            if be and kind != Kind.TRADE and bids and asks:
                assert max(bids) < min(asks), (stream.venue, stream.symbol)
                checked += 1
        assert checked > 200


@pytest.mark.real_data
def test_real_dump_xrpusdt(real_data, tmp_path):
    results = ingest([real_data / "bybit" / "xrpusdt-ob500.data.zip"], "bybit-dump", tmp_path, IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.venue, r.symbol, r.gaps) == ("bybit-linear", "XRPUSDT", 0)
    df = _store(tmp_path, "bybit-linear", "XRPUSDT")
    assert df.filter(pl.col("kind") == Kind.CLEAR).height == 1
    assert df.filter(pl.col("kind") == Kind.SNAPSHOT).height == 1000
    assert df["batch_end"].sum() == 50  # 1 snapshot + 49 deltas
    assert df.filter(pl.col("kind") == Kind.DEPTH)["update_id"].n_unique() == 49
    lat = (df["ts_local"] - df["ts_exch"]).to_numpy()
    assert lat.min() >= DEFAULT_FEED_LATENCY_MS * 1e6 and (np.diff(df["ts_local"].to_numpy()) >= 0).all()
    meta = _meta(tmp_path, "bybit-linear", "XRPUSDT")
    assert meta["feed_latency"]["kind"] == "declared"
    assert meta["feed_latency"]["latency_ns"] == 10_000_000
    assert "no local receive time" in meta["feed_latency"]["reason"]
    assert meta["clock_offset_ns"] == 0


@pytest.mark.real_data
def test_dump_declared_latency_and_venue_options(real_data, tmp_path):
    raw = zipfile.ZipFile(real_data / "bybit" / "xrpusdt-ob500.data.zip").read("2024-12-01_XRPUSDT_ob500.data")
    gz = tmp_path / "2024-12-01_XRPUSDT_ob500.data.gz"
    gz.write_bytes(gzip.compress(raw))
    [s] = parse([gz], "bybit-dump", IngestOptions(feed_latency_ms=25, venue="bybit-spot"))
    assert s.venue == "bybit-spot"
    assert s.feed_latency["latency_ns"] == 25_000_000
    first = json.loads(raw.split(b"\n", 1)[0])
    assert int(s.columns["ts_exch"][0]) == first["cts"] * 1_000_000
    assert int(s.columns["ts_local"][0]) == first["cts"] * 1_000_000 + 25_000_000


# ------------------------------------------------------------------------------------ recorder line format


@pytest.mark.real_data
def test_timestamped_lines_equal_capture(real_data, tmp_path):
    """`<local_ts_ns> <frame>` lines give the same rows as the cryptofeed capture they came from."""
    path = _write_timestamped(tmp_path / "bybit_linear.txt", _capture_frames(real_data))
    gz = tmp_path / "bybit_linear.txt.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    a = {s.symbol: s for s in parse([real_data / "bybit" / "BYBIT.jsonl.gz"], "bybit-linear", IngestOptions())}
    b = {s.symbol: s for s in parse([gz], "bybit-linear", IngestOptions())}
    assert sorted(a) == sorted(b)
    for sym in a:
        for col in a[sym].columns:
            np.testing.assert_array_equal(a[sym].columns[col], b[sym].columns[col], err_msg=f"{sym} {col}")
    assert b["BTCUSDT"].local_ts_unit == "ns"


@pytest.mark.real_data
def test_key_order_does_not_matter(real_data, tmp_path):
    frames = _book_frames(_capture_frames(real_data), "orderbook.200.ETHUSDT")[:30]
    reordered = []
    for ts, d in frames:
        m = json.loads(d)
        m = {k: m[k] for k in reversed(list(m))}
        m["data"] = {k: m["data"][k] for k in reversed(list(m["data"]))}
        reordered.append((ts, json.dumps(m)))
    a = parse([_write_timestamped(tmp_path / "a.txt", frames)], "bybit-linear", IngestOptions())[0]
    b = parse([_write_timestamped(tmp_path / "b.txt", reordered)], "bybit-linear", IngestOptions())[0]
    for col in a.columns:
        np.testing.assert_array_equal(a.columns[col], b.columns[col])


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.real_data
def test_dropped_delta_is_a_gap_with_both_u(real_data, tmp_path):
    frames = _book_frames(_capture_frames(real_data), "orderbook.200.SOLUSDT")
    us = [json.loads(d)["data"]["u"] for _, d in frames]
    drop = 100
    kept = frames[:drop] + frames[drop + 1 :]
    # A later snapshot re-syncs the book: everything between is quarantined, nothing after it.
    snap_ts = str(Decimal(frames[-1][0]) + Decimal("0.5"))
    snap = json.loads(frames[0][1])
    snap["data"]["u"] = us[-1] + 5
    extra = json.loads(frames[-1][1])
    extra["data"]["u"] = us[-1] + 6
    kept += [(snap_ts, json.dumps(snap)), (snap_ts, json.dumps(extra))]
    path = _write_timestamped(tmp_path / "sol.txt", kept)
    results = ingest([path], "bybit-linear", tmp_path / "out", IngestOptions())
    _reconciles(results)
    [r] = results
    assert r.gaps == 1
    [gap] = _meta(tmp_path / "out", "bybit-linear", "SOLUSDT")["gaps"]
    assert (gap["from_update_id"], gap["to_update_id"]) == (us[drop - 1], us[drop + 1])
    assert gap["reason"] == f"orderbook.200.SOLUSDT: u jumped from {us[drop - 1]} to {us[drop + 1]} (expected {us[drop - 1] + 1})"
    assert gap["handled"].startswith(f"re-synced from the snapshot at u={us[-1] + 5}")
    assert gap["line"] == drop + 1 and gap["file"].endswith("sol.txt")
    levels = lambda d: len(json.loads(d)["data"]["b"]) + len(json.loads(d)["data"]["a"])  # noqa: E731
    assert gap["rows_quarantined"] == sum(levels(d) for _, d in frames[drop + 1 :]) == r.rows_quarantined
    df = _store(tmp_path / "out", "bybit-linear", "SOLUSDT")
    assert df.filter(pl.col("kind") == Kind.CLEAR).height == 2
    assert us[-1] + 6 in df["update_id"].to_list()  # the delta after the re-sync is kept


@pytest.mark.real_data
def test_gap_without_later_snapshot_quarantines_to_the_end(real_data, tmp_path):
    frames = _book_frames(_capture_frames(real_data), "orderbook.200.DOGEUSDT")
    us = [json.loads(d)["data"]["u"] for _, d in frames]
    path = _write_timestamped(tmp_path / "doge.txt", frames[:50] + frames[52:])
    [s] = parse([path], "bybit-linear", IngestOptions())
    [gap] = s.gaps
    assert (gap["from_update_id"], gap["to_update_id"]) == (us[49], us[52])
    assert gap["handled"] == "no snapshot followed: rows quarantined to the end of the input"
    assert s.rows_in == len(s.columns["kind"]) + s.rows_quarantined
    assert s.columns["update_id"].max() == us[49]


def test_garbage_frames_are_quarantined_with_file_and_line(tmp_path):
    snap = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1733011200691, "cts": 1733011200600,
            "data": {"s": "BTCUSDT", "b": [["100.0", "1"]], "a": [["101.0", "2"]], "u": 10, "seq": 1}}
    delta = {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1733011200791, "data": {"s": "BTCUSDT", "b": [["100.0", "0"]], "a": [], "u": 11}}
    lines = [
        f"1733011200700000000 {json.dumps(snap)}",
        '1733011200750000000 {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":17330112',
        "1733011200760000000 this is not json",
        f"1733011200800000000 {json.dumps(delta)}",
        "not-a-timestamp {}",
        '1733011200900000000 {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[["x","1"]],"a":[],"u":12}}',
    ]
    path = tmp_path / "rec.txt"
    path.write_text("\n".join(lines) + "\n")
    results = ingest([path], "bybit-linear", tmp_path / "out", IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.rows_written, r.rows_quarantined) == (4, 4)
    q = _meta(tmp_path / "out", "bybit-linear", "BTCUSDT")["quarantine"]
    assert [e["line"] for e in q] == [2, 3, 5, 6]
    assert all(e["file"] == str(path) for e in q)
    assert q[0]["reason"].startswith("corrupt frame (Input data was truncated): b'{\"topic\":\"orderbook.50.BTCUSDT\"")
    assert q[1]["reason"] == "corrupt frame (JSON is malformed: invalid character (byte 4)): b'this is not json'"
    assert q[2]["reason"].startswith("bad local timestamp (invalid literal for int() with base 10: b'not-a-timestamp')")
    assert q[3]["reason"].startswith("undecodable orderbook.50.BTCUSDT frame: Expected `float`, got `str`")


def _frame(kind, u, b=(), a=(), topic="orderbook.50.BTCUSDT", ts=1733011200000):
    return json.dumps({"topic": topic, "type": kind, "ts": ts + u, "data": {"s": "BTCUSDT", "b": [list(x) for x in b], "a": [list(x) for x in a], "u": u}})


def _lines(path: Path, frames) -> Path:
    path.write_text("".join(f"{1733011200000000000 + i * 1000} {f}\n" for i, f in enumerate(frames)))
    return path


def test_u_equal_1_and_resent_snapshots(tmp_path):
    frames = [
        _frame("snapshot", 5, b=[("100", "1")], a=[("101", "1")]),
        _frame("delta", 6, b=[("100", "2")]),
        _frame("snapshot", 6, b=[("100", "2")], a=[("101", "1")]),  # level-1 style re-send, same u: no gap
        _frame("delta", 7, a=[("101", "0")]),
        _frame("delta", 1, b=[("99", "3")], a=[("102", "4")]),  # service restart: a snapshot
        _frame("delta", 2, b=[("99", "0")]),
        _frame("delta", 2, b=[("98", "1")]),  # duplicate u: quarantined alone
        _frame("delta", 3, b=[("97", "1")]),
    ]
    [s] = parse([_lines(tmp_path / "r.txt", frames)], "bybit-linear", IngestOptions())
    c = s.columns
    assert s.gaps == []
    assert (c["kind"] == Kind.CLEAR).sum() == 3
    restart = np.flatnonzero(c["kind"] == Kind.CLEAR)[-1]
    assert c["kind"][restart + 1] == Kind.SNAPSHOT and c["update_id"][restart] == 1
    assert s.rows_quarantined == 1 and "duplicate delta u=2" in s.quarantine[0]["reason"]
    assert s.rows_in == len(c["kind"]) + 1
    assert c["update_id"][-1] == 3


def test_shallower_depth_of_same_symbol_is_skipped(tmp_path):
    frames = [
        _frame("snapshot", 5, b=[("100", "1"), ("99", "1")], a=[("101", "1")]),
        _frame("snapshot", 900, b=[("100", "1")], a=[("101", "1")], topic="orderbook.1.BTCUSDT"),
        _frame("delta", 6, b=[("100", "2")]),
        _frame("delta", 901, b=[("100", "2")], topic="orderbook.1.BTCUSDT"),
    ]
    [s] = parse([_lines(tmp_path / "r.txt", frames)], "bybit-linear", IngestOptions())
    assert s.extra["book_topic_depth"] == 50
    assert s.extra["skipped_messages"]["orderbook.1 (shallower than orderbook.50)"] == 2
    assert set(s.columns["update_id"].tolist()) == {5, 6}
    assert s.rows_in == len(s.columns["kind"])


def test_trades_rows(tmp_path):
    trade = {"topic": "publicTrade.BTCUSDT", "type": "snapshot", "ts": 1733011200010, "data": [
        {"T": 1733011200005, "s": "BTCUSDT", "S": "Buy", "v": "0.5", "p": "100.5", "i": "a9188a0a-82bc", "BT": False},
        {"i": "2280000001739247417", "T": 1733011200006, "p": "100.4", "v": "1.5", "S": "Sell", "s": "BTCUSDT"},
    ]}
    path = tmp_path / "t.txt"
    path.write_text(f"1733011200020000000 {json.dumps(trade)}\n1733011200030000000 {{\"success\":true,\"op\":\"pong\"}}\n")
    [s] = parse([path], "bybit-spot", IngestOptions())
    c = s.columns
    assert c["kind"].tolist() == [Kind.TRADE, Kind.TRADE]
    assert c["side"].tolist() == [1, -1]
    assert c["update_id"].tolist() == [-1, 2280000001739247417]
    assert c["ts_exch"].tolist() == [1733011200005000000, 1733011200006000000]
    assert c["batch_end"].tolist() == [False, True]
    assert s.extra["skipped_messages"] == {"op:pong": 1}


def test_unknown_format_names_the_file(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(Exception, match=r"x.csv: first line b'a,b,c' is no Bybit format"):
        parse([path], "bybit-linear", IngestOptions())


def test_decimal_seconds_to_ns():
    assert decimal_seconds_to_ns("1786310819.526357") == 1786310819526357000
    assert decimal_seconds_to_ns(b"1786310819.5264041") == 1786310819526404100
    assert decimal_seconds_to_ns("1786310819") == 1786310819000000000
    assert decimal_seconds_to_ns("1.7863108195264041e9") == 1786310819526404100
    assert decimal_seconds_to_ns("1786310819.1234567891") == 1786310819123456789


@pytest.mark.real_data
def test_corrupt_lines_in_capture_go_to_the_stream_they_name(real_data, tmp_path):
    lines = gzip.open(real_data / "bybit" / "BYBIT.jsonl.gz").read().split(b"\n")
    recv = next(i for i, ln in enumerate(lines) if b'orderbook.200.SOLUSDT\\",\\"type\\":\\"delta' in ln)
    bad = lines[recv][:300]  # a truncated record naming its topic
    lines = lines[: recv + 1] + [bad, b"\x00garbage"] + lines[recv + 1 :]
    path = tmp_path / "BYBIT.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    results = ingest([path], "bybit-linear", tmp_path / "out", IngestOptions())
    _reconciles(results)
    by = {r.symbol: r for r in results}
    assert by["SOLUSDT"].rows_quarantined == 1 and by["SOLUSDT"].gaps == 0
    # The unattributable line goes to the first stream of the venue, so nothing is lost.
    assert sum(r.rows_quarantined for r in results) == 2
    q = _meta(tmp_path / "out", "bybit-linear", "SOLUSDT")["quarantine"]
    assert q[0]["line"] == recv + 2 and q[0]["reason"].startswith("corrupt capture line (")
