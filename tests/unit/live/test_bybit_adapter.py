"""The Bybit adapter builds the rows ``mmlab data ingest`` stores for the same frames (one shared normalizer)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from live.recorder import Recorder
from live.venues import make_adapter
from live.venues.common import EventBuffer, Frame
from mmlab.data import bridge
from mmlab.data.ingest import IngestOptions, ingest
from mmlab.errors import ConfigError

INST = {"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}, "ETHUSDT": {"tick_size": 0.01, "lot_size": 0.01},
        "SOLUSDT": {"tick_size": 0.01, "lot_size": 0.1}, "DOGEUSDT": {"tick_size": 0.00001, "lot_size": 1.0}}


def test_adapter_rows_equal_the_ingest_of_the_recording(bybit_linear, tmp_path):
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT"]
    ad = make_adapter("bybit-linear", symbols, INST, book_depth=200)
    buf = EventBuffer(16)
    rec = Recorder(tmp_path / "rec", "bybit-linear")
    kinds = {}
    for raw, ts in zip(bybit_linear.frames, bybit_linear.local_ns):
        code, _ = ad.on_frame(raw, ts, buf)
        kinds[Frame(code).name] = kinds.get(Frame(code).name, 0) + 1
        rec.write(ts, raw)
    for body in bybit_linear.instruments:
        rec.write(bybit_linear.local_ns[-1] + 1, body)
    rec.close()
    live_ev = buf.take()
    assert kinds["MARKET"] > 1500 and kinds["SKIPPED"] > 700 and kinds["CONTROL"] >= 1 and "GAP" not in kinds
    assert ad.book_valid.all()

    store = tmp_path / "store"
    ingest(rec.files, "bybit-linear", store, IngestOptions())
    for sid, sym in enumerate(symbols):
        stored, infos = bridge.load_events(store, "bybit-linear", [sym], None, None)
        assert infos[0].tick_size == INST[sym]["tick_size"]  # read from the recorded REST response
        mine = live_ev[live_ev["symbol_id"] == sid]
        mine = mine[np.argsort(mine["ts_local"], kind="stable")]
        assert len(mine) == len(stored) > 1000
        for col in ("ts_exch", "ts_local", "price_ticks", "qty", "update_id", "kind", "side", "batch_end"):
            np.testing.assert_array_equal(mine[col], stored[col], err_msg=f"{sym} {col}")


def test_gap_invalidates_the_book_until_the_next_snapshot(bybit_linear):
    ad = make_adapter("bybit-linear", ["BTCUSDT"], INST, book_depth=200)
    buf = EventBuffer()
    frames = [f for f in bybit_linear.frames if b'"orderbook.200.BTCUSDT"' in f[:60]]
    snap, d1, d2, d3 = frames[0], frames[1], frames[2], frames[3]
    assert ad.on_frame(snap, 1, buf) == (Frame.MARKET, 0) and ad.book_valid[0]
    assert ad.on_frame(d1, 2, buf)[0] == Frame.MARKET
    assert ad.on_frame(d1, 3, buf)[0] == Frame.DROPPED  # duplicate u
    assert ad.on_frame(d3, 4, buf) == (Frame.GAP, 0) and not ad.book_valid[0]
    assert ad.gaps[0]["to_update_id"] == ad.gaps[0]["from_update_id"] + 2
    assert ad.on_frame(d2, 5, buf)[0] == Frame.DROPPED  # inside the gap
    assert ad.on_frame(snap, 6, buf)[0] == Frame.MARKET and ad.book_valid[0]
    assert json.loads(ad.resubscribe_messages(0)[0]) == {"op": "unsubscribe", "args": ["orderbook.200.BTCUSDT"]}


def test_garbage_unknown_and_control_frames():
    ad = make_adapter("bybit-spot", ["BTCUSDT"], INST, book_depth=50)
    buf = EventBuffer()
    assert ad.on_frame(b"{not json", 1, buf)[0] == Frame.GARBAGE
    assert ad.on_frame(b'{"success":true,"ret_msg":"pong","op":"pong"}', 2, buf)[0] == Frame.CONTROL
    assert ad.on_frame(b'{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{}}', 3, buf)[0] == Frame.SKIPPED
    assert ad.on_frame(b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":"x"}}',
                       4, buf)[0] == Frame.GARBAGE
    assert buf.n == 0


def test_spot_trades_keep_numeric_ids_and_the_taker_side():
    ad = make_adapter("bybit-spot", ["BTCUSDT"], INST, book_depth=50)
    buf = EventBuffer()
    f = (b'{"topic":"publicTrade.BTCUSDT","ts":1786310846428,"type":"snapshot","data":[{"i":"2290000000909467211",'
         b'"T":1786310846427,"p":"65135.10","v":"0.001","S":"Sell","s":"BTCUSDT","BT":false,"RPI":false,"seq":1}]}')
    assert ad.on_frame(f, 10, buf) == (Frame.MARKET, 0)
    ev = buf.take()
    assert ev["kind"][0] == 2 and ev["side"][0] == -1 and ev["price_ticks"][0] == 651351
    assert ev["update_id"][0] == 2290000000909467211 and ev["ts_exch"][0] == 1786310846427_000_000


def test_missing_tick_size_names_the_fix():
    with pytest.raises(ConfigError, match=r"no tick size for bybit-linear/XRPUSDT: set \[live\] tick_sizes"):
        make_adapter("bybit-linear", ["XRPUSDT"], {}, book_depth=50)
    with pytest.raises(ConfigError, match="book_depth = 25 is no Bybit orderbook depth"):
        make_adapter("bybit-linear", ["BTCUSDT"], INST, book_depth=25)


def test_recorder_rotates_daily_and_writes_ingestible_lines(tmp_path):
    rec = Recorder(tmp_path, "bybit-spot")
    day = 86_400 * 10**9
    t0 = 20_000 * day + day - 10
    rec.write(t0, b'{"op":"pong"}')
    rec.write(t0 + 20, '{"op":"pong"}')
    rec.close()
    assert [p.rsplit("_", 1)[1] for p in rec.files] == ["20241004.gz", "20241005.gz"]
    assert gzip.open(rec.files[0]).read() == b'%d {"op":"pong"}\n' % t0


def test_book_bytes_parser_matches_float_and_falls_back_outside_its_fast_path():
    from numba import typeof, types

    from live.venues.common import book_frame_rows_nb, entry_point
    from mmlab.types import event_dtype

    rng = np.random.default_rng(3)
    texts = ["0.001", "65135.10", "0", "-0", "123456789012345", "0.000000000000000000001", "7."]
    texts += [f"{rng.integers(0, 10**6)}.{rng.integers(0, 10**6):06d}" for _ in range(200)]
    body = ",".join(f'["{t}","{t}"]' for t in texts)
    ev = np.zeros(1024, dtype=event_dtype)

    def run(data: bytes, snapshot=False):
        buf = np.frombuffer(data, np.uint8)
        f = entry_point(book_frame_rows_nb, typeof(buf), typeof(ev), types.int64, types.int64, types.int64,
                        types.int64, types.boolean, types.float64, types.int64)
        return f(buf, ev, 0, 5, 6, 7, snapshot, 0.001, 2)

    n = run(('{"s":"X","a":[["1.5","2"]],"x":{"y":[1,{"z":"]"}]},"b":[%s],"u":7}' % body).encode())
    kept = [t for t in texts if float(t) > 0]  # zero prices are left out, as ingest quarantines them
    assert n == len(kept) + 1
    np.testing.assert_array_equal(ev["qty"][: len(kept)], [float(t) for t in kept])
    assert ev["side"][n - 1] == -1 and ev["batch_end"][n - 1] and not ev["batch_end"][: n - 1].any()
    assert run(b'{"s":"X","b":[],"a":[]}', snapshot=True) == 1 and ev["kind"][0] == 3
    for outside in (b'{"b":[["1e5","1"]]}', b'{"b":[["1234567890123456","1"]]}', b'{"b":"x"}', b'{"b":[["1","2","3"]]}'):
        assert run(outside) == -1, outside
