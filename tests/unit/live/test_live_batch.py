"""The live hot path in batches: a backlog of Bybit frames normalized in one compiled call gives the rows, frame
codes, gaps and book states of frame-by-frame normalization with the general decoder (frames outside the fast
path included), and decision rows streamed to decisions.parquet in row groups give the file written at once."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from live.venues import make_adapter
from live.venues.common import EventBuffer

INST = {"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}, "ETHUSDT": {"tick_size": 0.01, "lot_size": 0.01},
        "SOLUSDT": {"tick_size": 0.01, "lot_size": 0.1}, "DOGEUSDT": {"tick_size": 0.00001, "lot_size": 1.0}}

ODD = [
    b"{not json",
    b'{"success":true,"ret_msg":"pong","op":"pong"}',
    b'{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{}}',
    b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":"x"}}',
    (b'{"topic":"orderbook.200.BTCUSDT","type":"delta","ts":1786310818328,"data":{"s":"BTCUSDT","b":[["1e5","1"]],'
     b'"a":[],"u":5}}'),  # a number outside the fast path: the general decoder reads it
    b'{"topic":"orderbook.200.XRPUSDT","type":"delta","ts":1786310818328,"data":{"s":"XRPUSDT","b":[],"a":[],"u":5}}',
    (b'{"topic":"publicTrade.BTCUSDT","ts":1786310846428,"type":"snapshot","data":[{"i":"229","T":1786310846427,'
     b'"p":"65135.10","v":"0.001","S":"Sell","s":"BTCUSDT"},{"i":"x1","T":1786310846427,"p":"3400.5","v":"0.01",'
     b'"S":"Buy","s":"ETHUSDT"},{"i":7,"T":1786310846427,"p":"65135.2","v":"0","S":"Buy","s":"BTCUSDT"},'
     b'{"i":null,"T":1786310846428,"p":"1.0","v":"1","S":"None","s":"SOLUSDT"}]}'),  # two symbols, a zero size
    b'{"topic":"publicTrade.BTCUSDT","ts":1,"type":"snapshot","data":[{"T":1,"p":"1","v":"1","S":"Buy"}]}',
    b'{"topic":"publicTrade.BTCUSDT","ts":1,"type":"snapshot","data":[]}',
]


def _frames(bybit_linear):
    out = []
    for j, (ts, raw) in enumerate(zip(bybit_linear.local_ns, bybit_linear.frames)):
        out.append((ts, raw))
        if j % 97 == 5:
            out += [(ts, x) for x in ODD]
    # A gap: a BTCUSDT delta left out.
    deltas = [k for k, (_, raw) in enumerate(out) if b'"orderbook.200.BTCUSDT","type":"delta"' in raw[:80]]
    del out[deltas[40]]
    return out


def _run(frames, batch):
    ad = make_adapter("bybit-linear", list(INST), INST, book_depth=200)
    buf = EventBuffer(16)
    ad.warm(buf)
    codes, sids, valid = [], [], []
    if batch == 0:
        for ts, raw in frames:
            c, i = ad._on_frame_general(raw, ts, buf)
            codes.append(int(c))
            sids.append(i)
            valid.append(bool(i >= 0 and ad.book_valid[i]))
    else:
        for k in range(0, len(frames), batch):
            c, s, v = ad.on_frames(frames[k:k + batch], buf)
            codes += [int(x) for x in c]
            sids += s
            valid += v
    return buf.take(), (codes, sids, valid), ad


@pytest.mark.parametrize("batch", [1, 64, 100_000])
def test_batch_normalization_equals_the_general_decoder_frame_by_frame(bybit_linear, batch):
    frames = _frames(bybit_linear)
    ref, ref_out, ref_ad = _run(frames, 0)
    ev, out, ad = _run(frames, batch)
    assert len(ev) == len(ref) > 10_000
    for col in ev.dtype.names:
        np.testing.assert_array_equal(ev[col], ref[col], err_msg=col)
    assert out == ref_out
    assert ad.gaps == ref_ad.gaps and len(ad.gaps) == 1
    np.testing.assert_array_equal(ad.last_data_ns, ref_ad.last_data_ns)
    np.testing.assert_array_equal(ad.book_valid, ref_ad.book_valid)


def test_two_symbol_trade_frame_rows_grouped_by_symbol():
    ad = make_adapter("bybit-linear", list(INST), INST, book_depth=200)
    buf = EventBuffer()
    codes, sids, _ = ad.on_frames([(10, ODD[6])], buf)
    ev = buf.take()
    assert codes == [0] and sids == [1]  # MARKET, the last symbol with a kept trade
    assert ev["symbol_id"].tolist() == [0, 1] and ev["batch_end"].all()  # the zero-size trade is left out
    assert ev["update_id"].tolist() == [229, -1] and ev["side"].tolist() == [-1, 1]
    assert ad.last_data_ns[:3].tolist() == [10, 10, 0]


def test_decisions_stream_to_parquet_in_row_groups(bybit_linear, tmp_path):
    from live.runner import LiveRunner
    from mmlab.config import load_config

    cfg = load_config({"data": {"venue": "bybit-linear", "symbols": ["BTCUSDT", "ETHUSDT"]},
                       "strategy": {"grid_num": 2, "half_spread_ticks": 1.0, "order_qty": 0.01, "max_position": 1.0},
                       "live": {"venue": "bybit-linear", "warmup_s": 0, "book_depth": 200, "stale_ms": 60000.0,
                                "tick_sizes": {k: v["tick_size"] for k, v in INST.items()},
                                "lot_sizes": {k: v["lot_size"] for k, v in INST.items()}}})
    pairs = list(zip(bybit_linear.local_ns, bybit_linear.frames))[:3000]

    def run(out, chunk_rows):
        now = [pairs[0][0]]
        r = LiveRunner(cfg, out_dir=out, clock_ns=lambda: now[0])
        r.setup()
        r.t_start_ns = now[0]
        if chunk_rows:
            r.decisions_chunk_rows = chunk_rows
        for j, (ts, raw) in enumerate(pairs):
            now[0] = ts
            r.queue.append([(ts, raw)])
            if j % 16 == 15:
                r.process_pending(ts - 50_000_000)
        return r.shutdown(0.0)

    whole = run(tmp_path / "whole", None)
    parts = run(tmp_path / "parts", 5)
    a = pl.read_parquet(tmp_path / "whole" / "decisions.parquet")
    b = pl.read_parquet(tmp_path / "parts" / "decisions.parquet")
    assert a.height > 100 and (a["bid_price"].list.len() > 0).sum() > 10
    assert a.schema == b.schema and a.equals(b)
    assert pq.ParquetFile(tmp_path / "parts" / "decisions.parquet").num_row_groups > 10
    assert json.dumps(whole["stage_latency_ns"]) == json.dumps(parts["stage_latency_ns"])


def test_binance_batch_scanner_rows_equal_frame_by_frame(real_data):
    import gzip

    frames, snaps = [], []
    with gzip.open(real_data / "binance_usdm" / "usdm_btcusdt_20240718.gz", "rb") as f:
        for k, line in enumerate(f):
            if k >= 20_000:
                break
            ts, _, raw = line.rstrip(b"\n").partition(b" ")
            if b'"lastUpdateId"' in raw[:40]:
                snaps.append(int(ts))
            frames.append((int(ts), raw))
    frames.insert(500, (frames[499][0], b'{"result":null,"id":1}'))
    frames.insert(700, (frames[699][0], b"{not json"))
    del frames[3000]  # a lost diff: a pu break, the book waits for the next snapshot

    def run(batch):
        ad = make_adapter("binance-usdm", ["BTCUSDT"], {"BTCUSDT": {"tick_size": 0.1, "lot_size": 0.001}},
                          book_depth=1000)
        for ts in snaps:
            ad.expect_snapshot(ts, 0)
        buf = EventBuffer()
        codes = []
        if batch == 0:
            for ts, raw in frames:
                codes.append(int(ad.on_frame(raw, ts, buf)[0]))
        else:
            for k in range(0, len(frames), batch):
                codes += [int(c) for c in ad.on_frames(frames[k:k + batch], buf)[0]]
        return buf.take(), codes, ad

    ref, ref_codes, ref_ad = run(0)
    ev, codes, ad = run(64)
    assert len(ev) == len(ref) > 10_000 and codes == ref_codes and ad.gaps == ref_ad.gaps
    assert {1, 3, 4} <= set(codes)  # CONTROL, GARBAGE and the GAP
    for col in ev.dtype.names:
        np.testing.assert_array_equal(ev[col], ref[col], err_msg=col)
