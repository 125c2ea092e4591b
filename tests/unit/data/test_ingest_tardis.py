"""Tardis.dev CSV ingest: the real samples, incremental L2 snapshot runs and batches, and bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmlab.data.ingest import IngestOptions, ingest, parse
from mmlab.errors import DataError
from mmlab.types import Kind

HEADER_L2 = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"
HEADER_TRADES = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount"


def _store(root: Path, venue: str, symbol: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((root / venue / symbol).glob("date=*/*.parquet"))])


def _kinds(df: pl.DataFrame) -> dict[str, int]:
    return {Kind(k).name: n for k, n in df.group_by("kind").len().sort("kind").iter_rows()}


def _reconciles(results) -> None:
    for r in results:
        assert r.rows_in == r.rows_written + r.rows_quarantined, r


@pytest.mark.real_data
@pytest.mark.parametrize("levels", [5, 25])
def test_real_book_snapshots(real_data, tmp_path, levels):
    path = real_data / "tardis" / f"binance-futures_book_snapshot_{levels}_BTCUSDT.csv"
    results = ingest([path], "tardis", tmp_path, IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.venue, r.symbol, r.rows_quarantined) == ("tardis-binance-futures", "BTCUSDT", 0)
    df = _store(tmp_path, r.venue, r.symbol)
    assert _kinds(df) == {"CLEAR": 10, "SNAPSHOT": 10 * 2 * levels}
    assert df["batch_end"].sum() == 10
    first = pl.read_csv(path, n_rows=1)
    assert df["ts_exch"][0] == first["timestamp"][0] * 1000 and df["ts_local"][0] == first["local_timestamp"][0] * 1000
    # Row order inside a snapshot: CLEAR, bids from the best down, asks from the best up.
    snap = df.head(1 + 2 * levels)
    assert snap["price"][1] == first["bids[0].price"][0] and snap["price"][1 + levels] == first["asks[0].price"][0]
    assert snap["side"].to_list() == [0] + [1] * levels + [-1] * levels
    meta = json.loads(Path(r.meta_path).read_text())
    assert meta["local_ts_unit"] == "us" and meta["feed_latency"]["kind"] == "recorded"


@pytest.mark.real_data
def test_real_deltas_and_trades(real_data, tmp_path):
    results = ingest([real_data / "tardis" / "deltas_1.csv", real_data / "tardis" / "trades_1.csv"], "tardis", tmp_path, IngestOptions())
    _reconciles(results)
    by = {r.venue: r for r in results}
    assert sorted(by) == ["tardis-bitmex", "tardis-deribit"]
    deltas = _store(tmp_path, "tardis-deribit", "BTC-PERPETUAL")
    assert _kinds(deltas) == {"CLEAR": 1, "SNAPSHOT": 2}
    assert deltas["batch_end"].to_list() == [False, False, True]
    assert deltas["ts_exch"][0] == 1585699200245000000  # this sample's timestamps are already ns
    trades = _store(tmp_path, "tardis-bitmex", "XBTUSD")
    assert trades["kind"].to_list() == [Kind.TRADE] * 2
    assert trades["side"].to_list() == [-1, 1]
    assert trades["update_id"].to_list() == [-1, -1]  # UUID ids


def _l2_file(tmp_path: Path, rows: list[str], name="binance_incremental_book_L2_2020-09-01_BTCUSDT.csv.gz") -> Path:
    path = tmp_path / name
    path.write_bytes(gzip.compress(("\n".join([HEADER_L2] + rows) + "\n").encode()))
    return path


def test_incremental_l2_snapshot_runs_and_batches(tmp_path):
    t = 1598918403696000
    rows = [
        f"binance,BTCUSDT,{t},{t + 50},true,bid,100.0,1",
        f"binance,BTCUSDT,{t},{t + 50},true,ask,101.0,2",
        f"binance,BTCUSDT,{t + 10},{t + 60},false,bid,100.0,0",
        f"binance,BTCUSDT,{t + 10},{t + 60},false,bid,99.5,3",
        f"binance,BTCUSDT,{t + 20},{t + 70},false,ask,101.5,1",
        f"binance,BTCUSDT,{t + 30},{t + 80},true,bid,99.0,1",  # a new snapshot after a reconnect
        f"binance,BTCUSDT,{t + 30},{t + 80},true,ask,100.5,1",
        f"binance,BTCUSDT,{t + 40},{t + 90},false,ask,100.5,4",
    ]
    [s] = parse([_l2_file(tmp_path, rows)], "tardis", IngestOptions())
    c = s.columns
    assert c["kind"].tolist() == [Kind.CLEAR, Kind.SNAPSHOT, Kind.SNAPSHOT, Kind.DEPTH, Kind.DEPTH, Kind.DEPTH, Kind.CLEAR, Kind.SNAPSHOT, Kind.SNAPSHOT, Kind.DEPTH]
    assert c["batch_end"].tolist() == [False, False, True, False, True, True, False, False, True, True]
    assert c["side"].tolist() == [0, 1, -1, 1, 1, -1, 0, 1, -1, -1]
    assert c["ts_local"][6] == (t + 80) * 1000 and c["ts_exch"][6] == (t + 30) * 1000
    assert (c["update_id"] == -1).all()
    assert s.rows_in == 10


def test_snapshot_run_spanning_two_timestamps_ends_one_batch(tmp_path):
    t = 1598918403696000
    rows = [f"binance,BTCUSDT,{t},{t + 5},true,bid,100.0,1", f"binance,BTCUSDT,{t + 1},{t + 6},true,ask,101.0,2"]
    [s] = parse([_l2_file(tmp_path, rows)], "tardis", IngestOptions())
    assert s.columns["batch_end"].tolist() == [False, False, True]


def test_bad_rows_are_quarantined_with_line(tmp_path):
    t = 1598918403696000
    rows = [
        f"binance,BTCUSDT,{t},{t + 50},true,bid,100.0,1",
        f"binance,BTCUSDT,{t},{t + 50},true,ask,abc,2",
        f"binance,BTCUSDT,,{t + 60},false,bid,100.0,0",
        f"binance,BTCUSDT,{t + 10},{t + 60},false,middle,100.0,0",
    ]
    results = ingest([_l2_file(tmp_path, rows)], "tardis", tmp_path / "out", IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.rows_written, r.rows_quarantined) == (2, 3)
    q = json.loads(Path(r.meta_path).read_text())["quarantine"]
    assert sorted(e["line"] for e in q) == [3, 4, 5]
    by_line = {e["line"]: e["reason"] for e in q}
    assert by_line[3] == "bad incremental_book_L2 row: is_snapshot=true side=ask price=abc amount=2"
    assert by_line[4] == f"unreadable timestamp: timestamp= local_timestamp={t + 60}"
    assert by_line[5] == "bad incremental_book_L2 row: is_snapshot=false side=middle price=100.0 amount=0"


def test_missing_column_names_file_column_and_header(tmp_path):
    path = tmp_path / "deribit_trades_2020-04-01_BTC-PERPETUAL.csv"
    path.write_text("exchange,symbol,timestamp,local_timestamp,id,side,price\nderibit,BTC-PERPETUAL,1,2,3,buy,4\n")
    with pytest.raises(DataError) as exc:
        parse([path], "tardis", IngestOptions())
    assert str(exc.value) == (
        f"{path}: column 'amount' is missing from the trades header exchange,symbol,timestamp,local_timestamp,id,side,price; "
        f"expected header: {HEADER_TRADES} (is this the Tardis CSV you meant, and is its first line the header?)"
    )
    l2 = tmp_path / "deltas.csv"
    l2.write_text("exchange,symbol,timestamp,local_timestamp,is_snapshot,price,amount\nx,Y,1,2,true,1,1\n")
    with pytest.raises(DataError, match=r"deltas.csv: column 'side' is missing from the incremental_book_L2 header .*expected header: " + HEADER_L2):
        parse([l2], "tardis", IngestOptions())


def test_trades_sides_and_numeric_ids(tmp_path):
    path = tmp_path / "binance_trades.csv"
    path.write_text(
        HEADER_TRADES + "\n"
        "binance,BTCUSDT,1598918403696000,1598918403700000,12345,buy,100.5,0.1\n"
        "binance,BTCUSDT,1598918403697000,1598918403701000,12346,unknown,100.4,0.2\n"
    )
    [s] = parse([path], "tardis", IngestOptions(local_ts_unit="us"))
    assert s.columns["side"].tolist() == [1, 0]
    assert s.columns["update_id"].tolist() == [12345, 12346]
    assert s.extra["trades_unknown_side"] == 1


def test_quotes_become_bbo_rows(tmp_path):
    path = tmp_path / "binance_quotes_2020-09-01_BTCUSDT.csv"
    path.write_text(
        "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
        "binance,BTCUSDT,1598918403696000,1598918403700000,2,101,100,1\n"
        "binance,BTCUSDT,1598918403697000,1598918403701000,,,100,3\n"
    )
    [s] = parse([path], "tardis", IngestOptions())
    c = s.columns
    assert c["kind"].tolist() == [Kind.BBO] * 3
    assert list(zip(c["side"].tolist(), c["price"].tolist(), c["qty"].tolist(), c["batch_end"].tolist())) == [
        (1, 100.0, 1.0, False), (-1, 101.0, 2.0, True), (1, 100.0, 3.0, True)]
    assert np.diff(c["ts_local"]).min() >= 0


def test_liquidations_are_refused_by_name(tmp_path):
    path = tmp_path / "binance-futures_liquidations_2020-09-01_BTCUSDT.csv"
    path.write_text(HEADER_TRADES + "\nbinance-futures,BTCUSDT,1598918403696000,1598918403700000,1,buy,100,1\n")
    with pytest.raises(DataError, match=r"liquidations_2020-09-01_BTCUSDT.csv: Tardis liquidations files have no place in the event store"):
        parse([path], "tardis", IngestOptions())
