"""Binance raw websocket captures: the real USD-M and spot recordings, exact values, clocks, idempotency,
source detection and the CLI."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import msgspec
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from mmlab.data.ingest import IngestOptions, detect_source, ingest, parse
from mmlab.errors import DataError
from mmlab.types import Kind

pytestmark = pytest.mark.real_data

# PROVENANCE.md: messages per recording.
RECORDINGS = {
    "btc_pair": (["binance_usdm/usdm_btcusdt_20240718.gz", "binance_usdm/usdm_btcusdt_20240719.gz"], "binance-usdm",
                 "BTCUSDT", {"depth": 9_022, "trade": 10_701, "book_ticker": 52_260, "snapshot": 1}),
    "eth_pair": (["binance_usdm/usdm_ethusdt_20240718.gz", "binance_usdm/usdm_ethusdt_20240719.gz"], "binance-usdm",
                 "ETHUSDT", {"depth": 8_929, "trade": 13_655, "snapshot": 1}),
    "btc_0808": (["binance_usdm/usdm_btcusdt_20240808.gz"], "binance-usdm", "BTCUSDT",
                 {"depth": 6_551, "trade": 21_313, "book_ticker": 66_089, "snapshot": 1}),
    "nexo_spot": ([f"binance_spot/nexousdt_2024072{d}.dat.gz" for d in (3, 4, 5)], "binance-spot", "NEXOUSDT",
                  {"depth": 99_030, "trade": 18_817, "book_ticker": 48_992, "snapshot": 1}),
}


def _lines(path: Path) -> list[bytes]:
    return zlib.decompress(path.read_bytes(), wbits=47).split(b"\n")


def _store(root: Path, venue: str, symbol: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((root / venue / symbol).glob("date=*/*.parquet"))])


def _kinds(df: pl.DataFrame) -> dict[str, int]:
    return {Kind(k).name: n for k, n in df.group_by("kind").len().sort("kind").iter_rows()}


def _meta(result) -> dict:
    return json.loads(Path(result.meta_path).read_text())


@pytest.fixture(scope="module")
def parsed(real_data):
    """Every real recording parsed once: name -> ParsedStream."""
    out = {}
    for name, (files, source, symbol, _) in RECORDINGS.items():
        [out[name]] = parse([real_data / f for f in files], source, IngestOptions())
    return out


@pytest.fixture(scope="module")
def ingested(real_data, tmp_path_factory):
    """The recordings whose store output is checked, ingested once: name -> (result, meta, store frame)."""
    out = {}
    for name in ("btc_pair", "btc_0808"):
        files, source, _, _ = RECORDINGS[name]
        root = tmp_path_factory.mktemp(name)
        [r] = ingest([real_data / f for f in files], source, root, IngestOptions())
        out[name] = (r, _meta(r), _store(root, r.venue, r.symbol))
    return out


@pytest.mark.parametrize("name", list(RECORDINGS))
def test_real_recording_parses_without_gaps(parsed, name):
    files, source, symbol, counts = RECORDINGS[name]
    s = parsed[name]
    assert (s.venue, s.symbol, s.gaps) == (source, symbol, [])
    c = s.columns
    assert s.rows_in == len(c["ts_exch"]) + s.rows_quarantined
    msgs = s.extra["messages"]
    for key, n in counts.items():
        assert msgs[key] == n, key
    # Only depth diffs received before the first snapshot (and older than it) are quarantined.
    assert msgs["depth_stale"] == msgs["depth_after_gap"] == msgs["corrupt_lines"] == 0
    assert msgs["depth_applied"] + msgs["depth_applied_after_snapshot"] + msgs["depth_pre_sync"] == msgs["depth"]
    assert all(q["reason"].startswith("pre-sync") for q in s.quarantine)
    assert sum(q["rows"] for q in s.quarantine) == s.rows_quarantined
    # Rows by kind follow the message counts.
    kinds, n = np.unique(c["kind"], return_counts=True)
    kinds = {Kind(k).name: int(v) for k, v in zip(kinds, n)}
    assert kinds["TRADE"] == msgs["trade"]
    assert kinds.get("BBO", 0) == 2 * msgs["book_ticker"]
    assert kinds["CLEAR"] == msgs["snapshot"]
    depth = c["kind"] == Kind.DEPTH
    applied = msgs["depth_applied"] + msgs["depth_applied_after_snapshot"]
    assert c["batch_end"][depth].sum() <= applied and len(np.unique(c["update_id"][depth])) <= applied
    assert c["batch_end"][-1]
    assert [x["name"] for x in s.sources] == [Path(f).name for f in files]


@pytest.mark.parametrize("name", ["btc_pair", "btc_0808"])
def test_real_recording_store(ingested, name):
    r, meta, df = ingested[name]
    assert r.gaps == 0 and meta["gaps"] == []
    assert r.rows_in == r.rows_written + r.rows_quarantined == meta["ingest"]["rows_in"]
    msgs = meta["messages"]
    assert _kinds(df) == {**meta["ingest"]["rows_by_kind"]}
    assert _kinds(df)["TRADE"] == msgs["trade"] and _kinds(df)["BBO"] == 2 * msgs["book_ticker"]
    assert df["ts_local"].is_sorted()
    assert meta["tick_size"] == 0.1 and meta["lot_size"] == 0.001 and meta["tick_size_source"] == "inferred"
    assert meta["feed_latency"] == {"kind": "recorded"} and meta["local_ts_unit"] == "ns"


def test_usdm_pair_is_one_stream(ingested, real_data, tmp_path):
    r, meta, df = ingested["btc_pair"]
    assert r.days == ["2024-07-18", "2024-07-19"]
    assert [s["name"] for s in meta["sources"]] == ["usdm_btcusdt_20240718.gz", "usdm_btcusdt_20240719.gz"]
    assert {q["file"] for q in meta["quarantine"]} == {"usdm_btcusdt_20240718.gz"}  # 0719 continues without a gap
    assert meta["tick_size"] == 0.1 and meta["lot_size"] == 0.001
    assert meta["contract"] == {"type": "linear", "contract_size": 1.0}
    # Alone, the second file has no snapshot: every diff waits for one and is quarantined as pre-sync.
    [alone] = parse([real_data / "binance_usdm" / "usdm_btcusdt_20240719.gz"], "binance-usdm", IngestOptions())
    m = alone.extra["messages"]
    assert m["depth_pre_sync"] == m["depth"] == 5_696 and alone.gaps == []
    assert not (alone.columns["kind"] == Kind.DEPTH).any()


def test_snapshot_bridged_by_buffered_diff(real_data):
    # The recorder writes the snapshot line after the diff that bridges it (line 13: U <= lastUpdateId <= u);
    # that diff is applied right after the snapshot, at the snapshot's local time.
    path = real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz"
    lines = _lines(path)
    snap = msgspec.json.decode(lines[13].split(b" ", 1)[1])
    bridge = msgspec.json.decode(lines[12].split(b" ", 1)[1])["data"]
    assert bridge["U"] <= snap["lastUpdateId"] <= bridge["u"]
    [s] = parse([path], "binance-usdm", IngestOptions())
    c = s.columns
    assert s.extra["messages"]["depth_applied_after_snapshot"] == 1 and s.extra["messages"]["depth_pre_sync"] == 5
    first_depth = np.flatnonzero(c["kind"] == Kind.DEPTH)[0]
    clear = np.flatnonzero(c["kind"] == Kind.CLEAR)[0]
    assert clear < first_depth and c["update_id"][clear] == snap["lastUpdateId"]
    assert c["update_id"][first_depth] == bridge["u"]
    assert c["ts_local"][first_depth] == c["ts_local"][clear] == int(lines[13].split(b" ", 1)[0])
    assert c["ts_exch"][first_depth] == bridge["E"] * 1_000_000 and c["ts_exch"][clear] == snap["E"] * 1_000_000
    n_snap = len(snap["bids"]) + len(snap["asks"])
    assert (c["kind"][clear + 1 : clear + 1 + n_snap] == Kind.SNAPSHOT).all()
    assert c["batch_end"][clear + n_snap] and not c["batch_end"][clear : clear + n_snap].any()


def _reference(path: Path, futures: bool):
    """Rows by kind, straight from msgspec + float(text), in file order (depth: messages u >= lastUpdateId)."""
    dec = msgspec.json.Decoder()
    trades, bbo, snaps, depth = [], [], [], []
    lid = None
    for ln in _lines(path):
        if not ln:
            continue
        ts, raw = ln.split(b" ", 1)
        d = dec.decode(raw)
        d = d.get("data", d)
        if "lastUpdateId" in d:
            lid = d["lastUpdateId"]
            snaps += [(1, float(p), float(q)) for p, q in d["bids"]] + [(-1, float(p), float(q)) for p, q in d["asks"]]
        elif d.get("e") == "trade":
            trades.append((d["T"] * 1_000_000, -1 if d["m"] else 1, float(d["p"]), float(d["q"]), d["t"]))
        elif d.get("e") == "depthUpdate":
            depth.append(d)
        else:
            bbo += [(1, float(d["b"]), float(d["B"]), d["u"]), (-1, float(d["a"]), float(d["A"]), d["u"])]
    keep = [d for d in depth if (d["u"] >= lid if futures else d["u"] > lid)]
    levels = [(d["u"], 1, float(p), float(q)) for d in keep for p, q in d["b"]]
    levels += [(d["u"], -1, float(p), float(q)) for d in keep for p, q in d["a"]]
    return trades, bbo, snaps, sorted(levels, key=lambda x: x[0])


@pytest.mark.parametrize("rel, venue", [("binance_usdm/usdm_btcusdt_20240718.gz", "binance-usdm"),
                                        ("binance_spot/nexousdt_20240723.dat.gz", "binance-spot")])
def test_values_equal_float_of_text(real_data, rel, venue):
    path = real_data / rel
    trades, bbo, snaps, levels = _reference(path, venue != "binance-spot")
    [s] = parse([path], venue, IngestOptions())
    c = s.columns

    def rows(kind, *cols):
        sel = c["kind"] == kind
        return list(zip(*(c[k][sel].tolist() for k in cols)))

    assert rows(Kind.TRADE, "ts_exch", "side", "price", "qty", "update_id") == trades
    assert rows(Kind.BBO, "side", "price", "qty", "update_id") == bbo
    assert rows(Kind.SNAPSHOT, "side", "price", "qty") == snaps
    got = rows(Kind.DEPTH, "update_id", "side", "price", "qty")
    assert sorted(got, key=lambda x: x[0]) == levels  # stable sort keeps each message's level order


def test_bbo_and_snapshot_times(parsed, real_data):
    # USD-M bookTicker carries T: ts_exch = T. Spot bookTicker has neither T nor E: the last depth E before it.
    s = parsed["nexo_spot"]
    c = s.columns
    lines = _lines(real_data / "binance_spot" / "nexousdt_20240723.dat.gz")
    # Line 1 is the snapshot (no E, nothing before it): its ts_exch is min(own local time, next depth's E).
    snap_local = int(lines[0].split(b" ")[0]) * 1000
    next_e = msgspec.json.decode(lines[1].split(b" ", 1)[1])["data"]["E"] * 1_000_000
    assert c["kind"][0] == Kind.CLEAR and c["ts_exch"][0] == min(snap_local, next_e) and c["ts_local"][0] == snap_local
    first_bbo = np.flatnonzero(c["kind"] == Kind.BBO)[0]
    last_depth_before = np.flatnonzero(c["kind"][:first_bbo] == Kind.DEPTH)[-1]
    assert c["ts_exch"][first_bbo] == c["ts_exch"][last_depth_before]
    assert c["side"][first_bbo] == 1 and c["side"][first_bbo + 1] == -1 and c["batch_end"][first_bbo + 1]
    assert not c["batch_end"][first_bbo]
    # Spot local times are microseconds in the files: stored in nanoseconds.
    assert s.local_ts_unit == "us" and [x["local_ts_unit"] for x in s.sources] == ["us", "us", "us"]
    assert c["ts_local"].min() > 1_700_000_000 * 10**9
    days = np.unique(c["ts_exch"] // (86_400 * 10**9))
    assert len(days) == 3  # 2024-07-23 .. 2024-07-25
    # USD-M: bookTicker ts_exch is its T.
    b = parsed["btc_0808"].columns
    line = next(ln for ln in _lines(real_data / "binance_usdm" / "usdm_btcusdt_20240808.gz") if b"@bookTicker" in ln)
    bt = msgspec.json.decode(line.split(b" ", 1)[1])["data"]
    i = np.flatnonzero(b["kind"] == Kind.BBO)[0]
    got = (b["ts_exch"][i], b["update_id"][i], b["price"][i], b["qty"][i])
    assert got == (bt["T"] * 10**6, bt["u"], float(bt["b"]), float(bt["B"]))


def test_clock_offset_of_20240808(ingested, real_data, tmp_path):
    r, meta, df = ingested["btc_0808"]
    # The recorder clock ran ~1.27 s behind the exchange: ts_local is shifted so latency is never negative.
    assert 1.2e9 < r.clock_offset_ns == meta["clock_offset_ns"] < 1.35e9
    assert (df["ts_local"] - df["ts_exch"]).min() == 0
    path = real_data / "binance_usdm" / "usdm_btcusdt_20240808.gz"
    [raw] = ingest([path], "binance-usdm", tmp_path, IngestOptions(clock_correction=False))
    assert raw.clock_offset_ns == 0 and _meta(raw)["clock_correction"] is False
    raw_df = _store(tmp_path, raw.venue, raw.symbol)
    first_trade_local = int(next(ln for ln in _lines(path) if b"@trade" in ln).split(b" ")[0])
    assert raw_df.filter(pl.col("kind") == Kind.TRADE)["ts_local"][0] == first_trade_local
    assert (raw_df["ts_local"] - raw_df["ts_exch"]).min() < -1.2e9
    assert (df["ts_local"] - raw_df["ts_local"]).unique().to_list() == [r.clock_offset_ns]


def test_reingest_is_idempotent(real_data, tmp_path):
    path = real_data / "binance_usdm" / "usdm_ethusdt_20240718.gz"
    first = ingest([path], "binance-usdm", tmp_path, IngestOptions())
    parts = sorted((tmp_path / "binance-usdm" / "ETHUSDT").glob("date=*/*.parquet"))
    before = {p: p.read_bytes() for p in parts}
    second = ingest([path], "binance-usdm", tmp_path, IngestOptions())
    assert first == second
    assert sorted((tmp_path / "binance-usdm" / "ETHUSDT").glob("date=*/*.parquet")) == parts
    assert all(p.read_bytes() == b for p, b in before.items())
    meta = _meta(second[0])
    assert len(meta["sources"]) == 1 and meta["quarantine"] == _meta(first[0])["quarantine"]


def test_multi_symbol_file_gives_one_stream_per_symbol(real_data, tmp_path):
    # Interleave the ETH and BTC captures of 2024-07-18 by local time into one file (as a multi-stream recorder
    # writes them): each symbol keeps its own sequence, and each snapshot finds its symbol.
    lines = []
    for rel in ("usdm_btcusdt_20240718.gz", "usdm_ethusdt_20240718.gz"):
        lines += [ln for ln in _lines(real_data / "binance_usdm" / rel) if ln]
    lines.sort(key=lambda ln: int(ln.split(b" ", 1)[0]))
    path = tmp_path / "usdm_both_20240718.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", compresslevel=1))
    streams = {s.symbol: s for s in parse([path], "binance-usdm", IngestOptions())}
    assert sorted(streams) == ["BTCUSDT", "ETHUSDT"]
    for sym, rel in (("BTCUSDT", "usdm_btcusdt_20240718.gz"), ("ETHUSDT", "usdm_ethusdt_20240718.gz")):
        [alone] = parse([real_data / "binance_usdm" / rel], "binance-usdm", IngestOptions())
        both = streams[sym]
        assert both.gaps == [] and both.extra["messages"] == alone.extra["messages"]
        assert both.rows_in == alone.rows_in and both.rows_quarantined == alone.rows_quarantined
        for col in ("kind", "price", "qty", "update_id"):
            assert np.array_equal(both.columns[col], alone.columns[col]), (sym, col)


def test_coinm_contract_and_wrong_venue(real_data, tmp_path):
    # A COIN-M capture has the USD-M layout; its contract is inverse (100 USD for BTCUSD_*).
    src = [ln for ln in _lines(real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz")[:400] if ln]
    text = b"\n".join(src).replace(b"btcusdt@", b"btcusd_perp@").replace(b'"s":"BTCUSDT"', b'"s":"BTCUSD_PERP"')
    path = tmp_path / "coinm_btcusd_perp.gz"
    path.write_bytes(gzip.compress(text + b"\n", compresslevel=1))
    assert detect_source([path]) == "binance-coinm"
    [s] = parse([path], "binance-coinm", IngestOptions())
    assert s.symbol == "BTCUSD_PERP" and s.contract["type"] == "inverse" and s.contract["contract_size"] == 100.0
    [s10] = parse([path], "binance-coinm", IngestOptions(contract_size=10))
    assert s10.contract["contract_size"] == 10.0
    with pytest.raises(DataError, match="binance-spot"):
        parse([real_data / "binance_spot" / "nexousdt_20240723.dat.gz"], "binance-usdm", IngestOptions())
    with pytest.raises(DataError, match="binance-usdm"):
        parse([real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz"], "binance-spot", IngestOptions())


# ------------------------------------------------------------------------------------------------ detection


@pytest.mark.parametrize("rel, source", [
    ("binance_usdm/usdm_btcusdt_20240718.gz", "binance-usdm"),
    ("binance_usdm/usdm_ethusdt_20240719.gz", "binance-usdm"),
    ("binance_spot/nexousdt_20240723.dat.gz", "binance-spot"),
    ("binance_spot/nexousdt_20240725.dat.gz", "binance-spot"),
    ("bybit/BYBIT.jsonl.gz", "bybit"),
    ("bybit/xrpusdt-ob500.data.zip", "bybit-dump"),
    ("tardis/deltas_1.csv", "tardis"),
    ("tardis/binance-futures_book_snapshot_5_BTCUSDT.csv", "tardis"),
    ("binance_csv/btcusdt-depth-update.csv", "binance-csv"),
    ("binance_csv/btcusdt-trades.parquet", "binance-csv"),
])
def test_detect_real_files(real_data, rel, source):
    assert detect_source([real_data / rel]) == source


def test_detect_other_formats_and_failures(real_data, tmp_path):
    (tmp_path / "x.npz").write_bytes(b"")
    assert detect_source([tmp_path / "x.npz"]) == "hftbacktest-npz"
    dump = tmp_path / "2024-12-01_BTCUSDT_ob200.data"
    dump.write_text('{"topic":"orderbook.200.BTCUSDT","type":"snapshot","ts":1,"data":{}}\n')
    assert detect_source([dump]) == "bybit-dump"
    uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    lin = tmp_path / "bybit_linear.txt"
    lin.write_text(f'1786310846428000000 {{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{{"i":"{uuid}"}}]}}\n')
    assert detect_source([lin]) == "bybit-linear"
    spot = tmp_path / "bybit_spot.txt"
    spot.write_text('1786310846428000000 {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"i":"2290000000123"}]}\n')
    assert detect_source([spot]) == "bybit-spot"
    book = tmp_path / "bybit_book.txt"
    book.write_text('1786310846428000000 {"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,'
                    '"data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}\n')
    with pytest.raises(DataError, match=r"--source bybit-linear or --source bybit-spot"):
        detect_source([book])
    junk = tmp_path / "notes.txt"
    junk.write_text("hello world\n")
    with pytest.raises(DataError, match=r"cannot tell the source of .*notes\.txt.*binance-usdm.*tardis"):
        detect_source([junk])
    with pytest.raises(DataError, match="different sources"):
        detect_source([real_data / "binance_usdm/usdm_btcusdt_20240718.gz", real_data / "tardis/deltas_1.csv"])
    # ingest with source None detects.
    [r] = ingest([real_data / "binance_spot/nexousdt_20240723.dat.gz"], None, tmp_path / "store", IngestOptions())
    assert r.venue == "binance-spot"


# ----------------------------------------------------------------------------------------------------- CLI


def test_cli_data_ingest(real_data, tmp_path):
    from mmlab.cli import app

    runner = CliRunner()
    path = real_data / "binance_usdm" / "usdm_ethusdt_20240718.gz"
    res = runner.invoke(app, ["data", "ingest", str(path), "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert (row["venue"], row["symbol"], row["gaps"]) == ("binance-usdm", "ETHUSDT", 0)
    assert row["rows_in"] == row["rows_written"] + row["rows_quarantined"]
    assert (tmp_path / "binance-usdm" / "ETHUSDT" / "_meta.json").exists()
    res = runner.invoke(app, ["data", "ingest", str(path), "--out", str(tmp_path), "--source", "binance-futures"])
    assert res.exit_code == 2
    assert "unknown --source 'binance-futures'" in res.output and "binance-usdm" in res.output


@pytest.mark.parametrize("name", ["btc_pair", "btc_0808", "nexo_spot"])
def test_rebuilt_book_matches_book_ticker(parsed, name):
    # Replaying the stored rows (CLEAR, SNAPSHOT, DEPTH) gives the venue's best bid/ask wherever a bookTicker
    # carries the update id of a depth diff: the sync (buffered bridge diff, chaining across files) is right.
    c = parsed[name].columns
    kind, side, price, qty, uid, end = (c[k].tolist() for k in ("kind", "side", "price", "qty", "update_id", "batch_end"))
    bbo_u = {u for k, u in zip(kind, uid) if k == Kind.BBO}
    bids: dict[float, float] = {}
    asks: dict[float, float] = {}
    tops = {}
    for k, s, p, q, u, e in zip(kind, side, price, qty, uid, end):
        if k == Kind.CLEAR:
            bids.clear()
            asks.clear()
        elif k == Kind.SNAPSHOT or k == Kind.DEPTH:
            book = bids if s == 1 else asks
            if q == 0.0:
                book.pop(p, None)
            else:
                book[p] = q
            if k == Kind.DEPTH and e and u in bbo_u:
                tops[u] = (max(bids), min(asks))
    checked = 0
    for i in np.flatnonzero((c["kind"] == Kind.BBO) & (c["side"] == 1)):
        u = int(c["update_id"][i])
        if u in tops:
            assert tops[u] == (c["price"][i], c["price"][i + 1]), u
            checked += 1
    assert checked > 100, checked
