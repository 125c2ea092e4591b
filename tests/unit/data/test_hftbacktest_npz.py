"""hftbacktest .npz <-> store: layout and flags against the installed package, round trips, old layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mmlab.data.ingest import IngestOptions, ingest, parse
from mmlab.data.ingest.hftbacktest_npz import HftEv, to_hftbacktest_events, write_npz
from mmlab.errors import DataError
from mmlab.types import EVENT_COLUMNS, Kind, hftbacktest_event_dtype

hbt_types = pytest.importorskip("hftbacktest.types")
hbt_validation = pytest.importorskip("hftbacktest.data.validation")

LOCAL, EXCH = HftEv.LOCAL_EVENT, HftEv.EXCH_EVENT


def _store(root: Path, venue: str, symbol: str) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted((root / venue / symbol).glob("date=*/*.parquet"))])


def _reconciles(results) -> None:
    for r in results:
        assert r.rows_in == r.rows_written + r.rows_quarantined, r


def test_layout_and_flags_match_installed_hftbacktest():
    assert hftbacktest_event_dtype == hbt_types.event_dtype
    for name in ("EXCH_EVENT", "LOCAL_EVENT", "BUY_EVENT", "SELL_EVENT", "DEPTH_EVENT", "TRADE_EVENT",
                 "DEPTH_CLEAR_EVENT", "DEPTH_SNAPSHOT_EVENT", "DEPTH_BBO_EVENT"):
        assert getattr(HftEv, name) == getattr(hbt_types, name), name


def _rows(ts_exch, ts_local, kind, side, price, qty, update_id, batch_end) -> dict[str, np.ndarray]:
    from mmlab.data.schema import NUMPY_DTYPES

    vals = dict(zip(EVENT_COLUMNS, (ts_exch, ts_local, kind, side, price, qty, update_id, batch_end)))
    return {c: np.asarray(v, dtype=NUMPY_DTYPES[c]) for c, v in vals.items()}


T0 = 1_723_075_200_000_000_000


def _out_of_order_rows():
    # Rows in local order; the trade (row 4) happened before the delta (row 3) at the exchange.
    return _rows(
        ts_exch=[T0, T0, T0, T0 + 300, T0 + 200, T0 + 400],
        ts_local=[T0 + 50, T0 + 50, T0 + 50, T0 + 350, T0 + 360, T0 + 450],
        kind=[Kind.CLEAR, Kind.SNAPSHOT, Kind.SNAPSHOT, Kind.DEPTH, Kind.TRADE, Kind.BBO],
        side=[0, 1, -1, 1, -1, 1],
        price=[0.0, 100.0, 101.0, 100.5, 100.0, 100.5],
        qty=[0.0, 1.0, 2.0, 3.0, 0.5, 3.0],
        update_id=[7, 7, 7, 8, 55, 8],
        batch_end=[False, False, True, True, True, True],
    )


def test_to_events_orders_both_clocks():
    rows = _out_of_order_rows()
    ev = to_hftbacktest_events(rows)
    hbt_validation.validate_event_order(ev)  # raises if an EXCH or LOCAL view is out of order
    local = ev[(ev["ev"] & LOCAL) != 0]
    exch = ev[(ev["ev"] & EXCH) != 0]
    assert len(local) == len(exch) == 6 and len(ev) == 7  # only the trade is written twice
    np.testing.assert_array_equal(local["local_ts"], rows["ts_local"])
    assert (np.diff(exch["exch_ts"]) >= 0).all()
    assert (local["ev"] & 0xFF).tolist() == [3, 4, 4, 1, 2, 5]
    assert local["ev"][0] & (HftEv.BUY_EVENT | HftEv.SELL_EVENT) == 0  # CLEAR of both sides: no side flag
    assert local["ev"][1] & HftEv.BUY_EVENT and local["ev"][4] & HftEv.SELL_EVENT
    assert local["ival"].tolist() == [7, 7, 7, 8, 55, 8]


def test_round_trip_synthetic(tmp_path):
    rows = _out_of_order_rows()
    path = write_npz(rows, tmp_path / "x.npz", venue="bybit-linear", symbol="BTCUSDT", tick_size=0.5, lot_size=0.5)
    results = ingest([path], "hftbacktest-npz", tmp_path / "store", IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.venue, r.symbol, r.tick_size, r.lot_size) == ("bybit-linear", "BTCUSDT", 0.5, 0.5)
    df = _store(tmp_path / "store", "bybit-linear", "BTCUSDT")
    for c in EVENT_COLUMNS:
        np.testing.assert_array_equal(df[c].to_numpy(), rows[c], err_msg=c)
    meta = json.loads(Path(r.meta_path).read_text())
    assert meta["exchange_only_duplicates"] == 1 and meta["batch_end_source"] == "mmlab_batch_end"


@pytest.mark.real_data
def test_round_trip_real_store_day(real_data, tmp_path):
    """store -> npz -> ingest gives identical rows (Bybit capture, every linear symbol)."""
    results = ingest([real_data / "bybit" / "BYBIT.jsonl.gz"], "bybit-linear", tmp_path / "a", IngestOptions())
    for r in results:
        [day] = r.days
        day_dir = tmp_path / "a" / "bybit-linear" / r.symbol / f"date={day}"
        npz = write_npz(day_dir, tmp_path / f"{r.symbol}.npz")
        hbt_validation.validate_event_order(np.load(npz)["data"])
        back = ingest([npz], "hftbacktest-npz", tmp_path / "b", IngestOptions())
        _reconciles(back)
        a = _store(tmp_path / "a", "bybit-linear", r.symbol)
        b = _store(tmp_path / "b", "bybit-linear", r.symbol)
        assert a.equals(b), r.symbol
        assert back[0].tick_size == r.tick_size and back[0].lot_size == r.lot_size


@pytest.mark.slow
@pytest.mark.real_data
def test_hftbacktest_converted_binance_file(real_data, tmp_path):
    """hftbacktest's own converter output ingests, and converts back to the same EXCH and LOCAL event views."""
    from hftbacktest.data.utils import binancefutures

    npz = tmp_path / "btcusdt_20240808.npz"
    theirs = binancefutures.convert(str(real_data / "binance_usdm" / "usdm_btcusdt_20240808.gz"), str(npz))
    results = ingest([npz], "hftbacktest-npz", tmp_path / "store", IngestOptions())
    _reconciles(results)
    [r] = results
    assert (r.venue, r.symbol, r.rows_quarantined) == ("binance-usdm", "BTCUSDT", 0)
    df = _store(tmp_path / "store", "binance-usdm", "BTCUSDT").sort("ts_local", maintain_order=True)
    kinds = dict(df.group_by("kind").len().iter_rows())
    assert kinds[Kind.TRADE] == 21_313  # PROVENANCE: MARKET trades of the file
    assert (kinds[Kind.CLEAR], kinds[Kind.SNAPSHOT]) == (2, 2000)  # one snapshot: a clear per side, 1000 levels a side
    meta = json.loads(Path(r.meta_path).read_text())
    assert meta["exchange_only_duplicates"] == int(((theirs["ev"] & LOCAL) == 0).sum())
    assert meta["batch_end_source"].startswith("derived")
    ours = to_hftbacktest_events(df)
    keep = ~np.uint64(LOCAL | EXCH)
    for flag in (LOCAL, EXCH):
        a, b = theirs[(theirs["ev"] & flag) != 0], ours[(ours["ev"] & flag) != 0]
        assert len(a) == len(b)
        np.testing.assert_array_equal(a["ev"] & keep, b["ev"] & keep)
        for f in ("exch_ts", "local_ts", "px", "qty"):
            np.testing.assert_array_equal(a[f], b[f], err_msg=f)


def test_foreign_file_batches_and_symbol(tmp_path):
    ev = np.zeros(5, dtype=hftbacktest_event_dtype)
    both = EXCH | LOCAL
    ev["ev"] = [both | 1 | HftEv.BUY_EVENT, both | 1 | HftEv.SELL_EVENT, both | 2 | HftEv.SELL_EVENT, both | 103, both | 101]
    ev["exch_ts"] = [T0, T0, T0 + 10, T0 + 20, T0 + 30]
    ev["local_ts"] = [T0 + 5, T0 + 5, T0 + 15, T0 + 25, T0 + 35]
    ev["px"] = [100.0, 101.0, 100.0, 100.0, 99.0]
    ev["qty"] = [1.0, 2.0, 0.5, 4.0, 0.0]
    ev["ival"] = 123
    np.savez_compressed(tmp_path / "ethusdt_20240808.npz", data=ev)
    [s] = parse([tmp_path / "ethusdt_20240808.npz"], "hftbacktest-npz", IngestOptions())
    c = s.columns
    assert (s.venue, s.symbol) == ("binance-usdm", "ETHUSDT")
    assert c["kind"].tolist() == [Kind.DEPTH, Kind.DEPTH, Kind.TRADE, Kind.BBO]
    assert c["side"].tolist() == [1, -1, -1, 1]
    assert c["batch_end"].tolist() == [False, True, True, True]
    assert (c["update_id"] == -1).all()  # ival means nothing in files not written by write_npz
    assert s.extra["skipped_events"] == {"101": 1}
    assert s.rows_in == 4


def test_v1_layout_recovers_split_timestamps(tmp_path):
    # 1.x (N, 6): event, exch_ts, local_ts, side, px, qty in µs; -1 hides a copy from one processor.
    t = 1_723_075_200_000_000
    v1 = np.array([
        [1, t, t + 5, 1, 100.0, 1.0],
        [2, t + 20, -1, -1, 100.0, 0.5],  # exchange copy of a trade seen locally after the delta below
        [1, t + 30, t + 35, -1, 101.0, 2.0],
        [2, -1, t + 40, -1, 100.0, 0.5],  # its local copy
    ])
    np.savez(tmp_path / "btcusdt_v1.npz", data=v1)
    [s] = parse([tmp_path / "btcusdt_v1.npz"], "hftbacktest-npz", IngestOptions())
    c = s.columns
    assert c["kind"].tolist() == [Kind.DEPTH, Kind.DEPTH, Kind.TRADE]
    assert c["ts_exch"].tolist() == [t * 1000, (t + 30) * 1000, (t + 20) * 1000]
    assert c["ts_local"].tolist() == [(t + 5) * 1000, (t + 35) * 1000, (t + 40) * 1000]
    assert s.extra["exchange_only_duplicates"] == 1 and s.extra["hftbacktest_layouts"] == ["v1"]
    assert s.local_ts_unit == "us"


def test_unpaired_and_flagless_events_are_quarantined(tmp_path):
    ev = np.zeros(3, dtype=hftbacktest_event_dtype)
    ev["ev"] = [EXCH | LOCAL | 1 | HftEv.BUY_EVENT, 1 | HftEv.BUY_EVENT, EXCH | 1 | HftEv.SELL_EVENT]
    ev["exch_ts"] = [T0, T0 + 1, T0 + 2]
    ev["local_ts"] = [T0 + 5, T0 + 6, -1]
    ev["px"] = [100.0, 100.0, 101.0]
    ev["qty"] = [1.0, 1.0, 1.0]
    np.savez(tmp_path / "x.npz", data=ev)
    results = ingest([tmp_path / "x.npz"], "hftbacktest-npz", tmp_path / "out", IngestOptions(symbol="BTCUSDT"))
    _reconciles(results)
    [r] = results
    assert (r.rows_written, r.rows_quarantined) == (1, 2)
    q = json.loads(Path(r.meta_path).read_text())["quarantine"]
    assert q[0]["reason"] == f"event flagged neither EXCH_EVENT nor LOCAL_EVENT: 1 rows, first at index 1 (ev={int(ev['ev'][1])})"
    assert q[1]["reason"].startswith("event without a local timestamp (an exchange-only event): 1 rows, first at index 2")


def test_bad_files_name_the_problem(tmp_path):
    np.savez(tmp_path / "BTCUSDT.npz", data=np.zeros((3, 4)))
    with pytest.raises(DataError, match=r"BTCUSDT.npz: array of dtype float64 and shape \(3, 4\) is neither hftbacktest 2.x events"):
        parse([tmp_path / "BTCUSDT.npz"], "hftbacktest-npz", IngestOptions())
    np.savez(tmp_path / "events.npz", data=np.zeros(2, dtype=hftbacktest_event_dtype))
    with pytest.raises(DataError, match=r"events.npz: hftbacktest files do not name their symbol and the file name holds none; pass --symbol"):
        parse([tmp_path / "events.npz"], "hftbacktest-npz", IngestOptions())
    with pytest.raises(DataError, match=r"rows must be sorted by ts_local"):
        rows = _out_of_order_rows()
        rows["ts_local"] = rows["ts_local"][::-1].copy()
        to_hftbacktest_events(rows)
