"""Binance historical-data CSV/parquet ingest: the real heads, sequencing rules, trade files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmlab.data.ingest import IngestOptions, ingest, parse
from mmlab.errors import DataError
from mmlab.types import Kind

DEPTH_HEADER = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu"


def _store(root: Path, venue: str, symbol: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((root / venue / symbol).glob("date=*/*.parquet"))])


def _meta(root: Path, venue: str, symbol: str) -> dict:
    return json.loads((root / venue / symbol / "_meta.json").read_text())


def _reconciles(results) -> None:
    for r in results:
        assert r.rows_in == r.rows_written + r.rows_quarantined, r


@pytest.mark.real_data
def test_real_snapshot_head(real_data, tmp_path):
    results = ingest([real_data / "binance_csv" / "btcusdt-depth-snap.csv"], "binance-csv", tmp_path, IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.venue, r.symbol, r.gaps) == ("binance-usdm", "BTCUSDT", 0)
    df = _store(tmp_path, "binance-usdm", "BTCUSDT")
    assert df["kind"].to_list() == [Kind.CLEAR] + [Kind.SNAPSHOT] * 100
    assert df["batch_end"].to_list() == [False] * 100 + [True]
    assert (df["update_id"] == 2098021528332).all()
    assert df["ts_exch"][0] == 1667346579146 * 1_000_000
    assert (df["ts_local"] - df["ts_exch"] == 10_000_000).all()
    meta = _meta(tmp_path, "binance-usdm", "BTCUSDT")
    assert meta["feed_latency"]["kind"] == "declared" and meta["feed_latency"]["latency_ns"] == 10_000_000


@pytest.mark.real_data
def test_real_snapshot_then_non_contiguous_updates_is_a_gap(real_data, tmp_path):
    files = [real_data / "binance_csv" / "btcusdt-depth-update.csv", real_data / "binance_csv" / "btcusdt-depth-snap.csv"]
    results = ingest(files, "binance-csv", tmp_path, IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.rows_in, r.rows_written, r.rows_quarantined, r.gaps) == (201, 101, 100, 1)
    [gap] = _meta(tmp_path, "binance-usdm", "BTCUSDT")["gaps"]
    assert (gap["from_update_id"], gap["to_update_id"]) == (2098021528332, 2098041693435)
    assert (gap["first_update_id"], gap["last_update_id"], gap["pu"]) == (2098041693435, 2098041696700, 2098041693400)
    assert gap["reason"] == (
        "sequence gap after u=2098021528332: update U=2098041693435..u=2098041696700 "
        "(first update after the snapshot must have U <= 2098021528333 <= u, got U=2098041693435)"
    )
    assert gap["handled"] == "no snapshot followed: rows quarantined to the end of the input"
    assert gap["file"].endswith("btcusdt-depth-update.csv") and gap["line"] == 2 and gap["rows_quarantined"] == 100


@pytest.mark.real_data
def test_real_updates_alone_are_kept(real_data):
    [s] = parse([real_data / "binance_csv" / "btcusdt-depth-update.csv"], "binance-csv", IngestOptions())
    assert (s.columns["kind"] == Kind.DEPTH).all() and len(s.columns["kind"]) == 100
    assert s.extra["deltas_before_first_snapshot"] == 1
    assert s.columns["batch_end"].sum() == 1


@pytest.mark.real_data
def test_real_trades_and_quotes_parquet(real_data, tmp_path):
    src = real_data / "binance_csv"
    results = ingest([src / "btcusdt-trades.parquet", src / "btcusdt-quotes.parquet"], "binance-csv", tmp_path, IngestOptions(venue="binance-spot"))
    _reconciles(results)
    [r] = results
    assert (r.venue, r.symbol) == ("binance-spot", "BTCUSDT")
    df = _store(tmp_path, "binance-spot", "BTCUSDT")
    trades = df.filter(pl.col("kind") == Kind.TRADE)
    assert trades.height == 2001 and df.filter(pl.col("kind") == Kind.BBO).height == 902
    raw = pl.read_parquet(src / "btcusdt-trades.parquet")
    expected_side = np.where(raw["buyer_maker"].to_numpy() == "True", -1, 1)
    t = trades.sort("update_id")
    np.testing.assert_array_equal(t["side"].to_numpy(), expected_side)
    np.testing.assert_array_equal(t["update_id"].to_numpy(), raw["trade_id"].to_numpy())
    np.testing.assert_array_equal(t["ts_exch"].to_numpy(), raw["timestamp"].dt.epoch("ns").to_numpy())
    assert (np.diff(df["ts_local"].to_numpy()) >= 0).all()


def _depth(tmp_path: Path, rows: list[str], name="BTCUSDT-depth.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([DEPTH_HEADER] + rows) + "\n")
    return path


def test_sequencing_rules(tmp_path):
    t = 1667346579146
    rows = [
        f"BTCUSDT,{t},100,100,b,snap,20.0,1,-1",
        f"BTCUSDT,{t},100,100,a,snap,21.0,1,-1",
        f"BTCUSDT,{t + 1},90,95,b,set,20.0,2,89",  # stale: u < snapshot id
        f"BTCUSDT,{t + 2},96,103,b,set,20.0,3,95",  # straddles the snapshot: applied
        f"BTCUSDT,{t + 2},96,103,a,set,21.0,0,95",
        f"BTCUSDT,{t + 3},104,110,a,set,21.5,1,103",  # pu == previous u
        f"BTCUSDT,{t + 4},115,120,a,set,21.5,2,112",  # pu != 110: gap
        f"BTCUSDT,{t + 5},121,125,b,set,19.0,2,120",  # quarantined until the next snapshot
        f"BTCUSDT,{t + 6},200,200,b,snap,20.0,5,-1",
        f"BTCUSDT,{t + 7},201,205,b,set,20.0,6,200",
    ]
    results = ingest([_depth(tmp_path, rows)], "binance-csv", tmp_path / "out", IngestOptions())
    _reconciles(results)
    [r] = results
    df = _store(tmp_path / "out", "binance-usdm", "BTCUSDT")
    assert df["update_id"].to_list() == [100, 100, 100, 103, 103, 110, 200, 200, 205]
    assert df["kind"].to_list() == [Kind.CLEAR, Kind.SNAPSHOT, Kind.SNAPSHOT, Kind.DEPTH, Kind.DEPTH, Kind.DEPTH, Kind.CLEAR, Kind.SNAPSHOT, Kind.DEPTH]
    assert df["batch_end"].to_list() == [False, False, True, False, True, True, False, True, True]
    assert (r.rows_in, r.rows_written, r.rows_quarantined, r.gaps) == (12, 9, 3, 1)
    meta = _meta(tmp_path / "out", "binance-usdm", "BTCUSDT")
    [gap] = meta["gaps"]
    assert (gap["from_update_id"], gap["to_update_id"], gap["last_update_id"], gap["line"]) == (110, 112, 120, 8)
    assert gap["reason"] == "sequence gap after u=110: update U=115..u=120 (pu must equal the previous u 110, got pu=112)"
    assert gap["handled"] == "re-synced from the snapshot lastUpdateId=200 (BTCUSDT-depth.csv line 10)"
    assert gap["rows_quarantined"] == 2
    stale = [q for q in meta["quarantine"] if "precedes" in q["reason"]]
    assert stale == [{"file": str(tmp_path / "BTCUSDT-depth.csv"), "line": 4, "rows": 1,
                      "reason": "update u=95 precedes the snapshot lastUpdateId=100 (superseded by it)"}]


def test_spot_rule_without_pu(tmp_path):
    t = 1667346579146
    rows = [f"BTCUSDT,{t},10,10,b,snap,1.0,1,", f"BTCUSDT,{t + 1},11,12,b,set,1.0,2,", f"BTCUSDT,{t + 2},14,15,b,set,1.0,3,"]
    [s] = parse([_depth(tmp_path, rows)], "binance-csv", IngestOptions())
    [gap] = s.gaps
    assert (gap["from_update_id"], gap["to_update_id"]) == (13, 14)
    assert "U must be the previous u + 1 = 13, got U=14" in gap["reason"]


def test_trade_csv_with_and_without_header(tmp_path):
    with_header = tmp_path / "BTCUSDT-trades-2024-08-08.csv"
    with_header.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n5001,60000.1,0.010,600.001,1723075200123,true\n5002,60000.2,0.020,1200.004,1723075200124,false\n")
    spot = tmp_path / "ETHUSDT-trades-2025-01-01.csv"  # spot files: no header, is_best_match, µs times
    spot.write_text("77,3300.5,1.5,4950.75,1735689600000123,False,True\n")
    agg = tmp_path / "SOLUSDT-aggTrades-2024-08-08.csv"
    agg.write_text("agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n9,150.1,3,100,104,1723075200500,true\n")
    streams = {s.symbol: s for s in parse([with_header, spot, agg], "binance-csv", IngestOptions())}
    a = streams["BTCUSDT"].columns
    assert a["side"].tolist() == [-1, 1] and a["update_id"].tolist() == [5001, 5002]
    assert a["ts_exch"].tolist() == [1723075200123000000, 1723075200124000000]
    b = streams["ETHUSDT"].columns
    assert b["ts_exch"].tolist() == [1735689600000123000] and b["side"].tolist() == [1] and b["update_id"].tolist() == [77]
    c = streams["SOLUSDT"].columns
    assert c["update_id"].tolist() == [9] and c["qty"].tolist() == [3.0] and c["side"].tolist() == [-1]


def test_book_ticker_csv(tmp_path):
    path = tmp_path / "BTCUSDT-bookTicker-2024-08-08.csv"
    path.write_text(
        "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time\n"
        "4900000000001,60000.0,1.5,60000.1,2.5,1723075200001,1723075200002\n"
    )
    [s] = parse([path], "binance-csv", IngestOptions())
    c = s.columns
    assert c["kind"].tolist() == [Kind.BBO, Kind.BBO] and c["side"].tolist() == [1, -1]
    assert c["price"].tolist() == [60000.0, 60000.1] and c["update_id"].tolist() == [4900000000001] * 2


def test_missing_column_names_file_column_and_header(tmp_path):
    path = tmp_path / "BTCUSDT-depth.csv"
    path.write_text("symbol,timestamp,first_update_id,last_update_id,side,price,qty,pu\nBTCUSDT,1,2,3,b,1,1,-1\n")
    with pytest.raises(DataError) as exc:
        parse([path], "binance-csv", IngestOptions())
    assert str(exc.value) == (
        f"{path}: column 'update_type' is missing from the header symbol,timestamp,first_update_id,last_update_id,side,price,qty,pu; "
        f"expected header: {DEPTH_HEADER}"
    )
    trades = tmp_path / "BTCUSDT-trades.csv"
    trades.write_text("id,price,quote_qty,time,is_buyer_maker\n1,2,3,1723075200123,true\n")
    with pytest.raises(DataError, match=r"BTCUSDT-trades.csv: column 'qty' is missing .* expected header: id,price,qty,quote_qty,time,is_buyer_maker"):
        parse([trades], "binance-csv", IngestOptions())


def test_bad_rows_are_quarantined(tmp_path):
    t = 1667346579146
    rows = [f"BTCUSDT,{t},10,10,b,snap,1.0,1,-1", f"BTCUSDT,{t},10,10,x,snap,1.0,1,-1", f"BTCUSDT,{t},10,10,a,snap,2.0,oops,-1"]
    results = ingest([_depth(tmp_path, rows)], "binance-csv", tmp_path / "out", IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.rows_written, r.rows_quarantined) == (2, 2)
    q = _meta(tmp_path / "out", "binance-usdm", "BTCUSDT")["quarantine"]
    assert [e["line"] for e in q] == [3, 4]
    assert q[1]["reason"] == f"bad depth row: timestamp={t} first_update_id=10 last_update_id=10 side=a update_type=snap price=2.0 qty=oops"


def test_file_without_symbol_needs_one(tmp_path):
    path = tmp_path / "trades.csv"
    path.write_text("id,price,qty,quote_qty,time,is_buyer_maker\n1,2,3,6,1723075200123,true\n")
    with pytest.raises(DataError, match=r"trades.csv: the file has no symbol column and its name does not start with one; pass --symbol"):
        parse([path], "binance-csv", IngestOptions())
    [s] = parse([path], "binance-csv", IngestOptions(symbol="btcusdt"))
    assert s.symbol == "BTCUSDT"
