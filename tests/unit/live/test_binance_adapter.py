"""The Binance USD-M adapter builds, frame by frame, the rows the ingest stores for the same capture (REST
snapshot sync, diffs held until the snapshot, trades, bookTicker)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from live.venues import make_adapter
from live.venues.common import EventBuffer, Frame
from mmlab.data import bridge
from mmlab.data.ingest import IngestOptions, ingest
from mmlab.errors import ConfigError


def _lines(paths):
    for p in paths:
        with gzip.open(p, "rb") as f:
            for line in f:
                ts, _, raw = line.rstrip(b"\n").partition(b" ")
                yield int(ts), raw


def test_adapter_rows_equal_the_ingest_of_the_capture(real_data, tmp_path):
    paths = [real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz"]
    ad = make_adapter("binance-usdm", ["BTCUSDT"], {"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}},
                      book_depth=1000)
    buf = EventBuffer()
    kinds = {}
    for ts, raw in _lines(paths):
        if b'"lastUpdateId"' in raw[:40]:
            ad.expect_snapshot(ts, 0)  # the runner knows which symbol's snapshot it requested
        code, _ = ad.on_frame(raw, ts, buf)
        kinds[Frame(code).name] = kinds.get(Frame(code).name, 0) + 1
    mine = buf.take()
    assert "GAP" not in kinds and "GARBAGE" not in kinds and ad.book_valid[0]
    # The live runner stamps frames with its own clock: no recorder-skew correction.
    ingest([str(p) for p in paths], "binance-usdm", tmp_path / "store",
           IngestOptions(tick_size=0.1, clock_correction=False))
    stored, _ = bridge.load_events(tmp_path / "store", "binance-usdm", ["BTCUSDT"], None, None)
    assert len(mine) == len(stored) > 90_000
    for col in ("ts_exch", "ts_local", "price_ticks", "qty", "update_id", "kind", "side", "batch_end"):
        np.testing.assert_array_equal(mine[col], stored[col], err_msg=col)


def test_pu_break_loses_the_book_until_a_new_snapshot(real_data):
    ad = make_adapter("binance-usdm", ["BTCUSDT"], {"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}},
                      book_depth=1000)
    buf = EventBuffer()
    depth = 0
    seen_gap = False
    for ts, raw in _lines([real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz"]):
        if b'"lastUpdateId"' in raw[:40]:
            ad.expect_snapshot(ts, 0)
        if b"depthUpdate" in raw[:80]:
            depth += 1
            if depth == 300:
                continue  # dropped diff: the next one's pu does not match
        code, _ = ad.on_frame(raw, ts, buf)
        if code == Frame.GAP:
            seen_gap = True
            assert not ad.book_valid[0]
            break
    assert seen_gap and ad.gaps[0]["got"] != ad.gaps[0]["expected"]
    assert "fapi/v1/depth?symbol=BTCUSDT&limit=1000" in ad.snapshot_url(0, None)


def test_stream_url_and_bad_depth():
    ad = make_adapter("binance-usdm", ["BTCUSDT", "ETHUSDT"], {"BTCUSDT": {"tick_size": 0.1},
                                                                "ETHUSDT": {"tick_size": 0.01}}, book_depth=1000)
    assert ad.ws_url("ws://127.0.0.1:9/") == ("ws://127.0.0.1:9/stream?streams=btcusdt@depth@0ms/btcusdt@trade/"
                                              "btcusdt@bookTicker/ethusdt@depth@0ms/ethusdt@trade/ethusdt@bookTicker")
    with pytest.raises(ConfigError, match="book_depth = 200 is no Binance depth snapshot limit"):
        make_adapter("binance-usdm", ["BTCUSDT"], {"BTCUSDT": {"tick_size": 0.1}}, book_depth=200)
