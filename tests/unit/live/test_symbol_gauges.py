"""The feature collectors of a live paper session as ``mm_symbol_*`` gauges on /metrics, one per symbol."""

from __future__ import annotations

import math
import urllib.request

import numpy as np

from live.metrics import LiveMetrics
from mmlab.features.collectors import (
    METRIC_HELP,
    METRICS,
    collectors_on_trades_nb,
    new_collectors,
)
from mmlab.types import Kind, event_dtype


def test_every_collector_metric_is_a_labelled_gauge_with_help():
    m = LiveMetrics()
    assert set(m.sym_features) == set(METRICS) == set(METRIC_HELP)
    assert m.sym_features["mm_symbol_spread_ticks"] is m.sym_spread  # one gauge per name
    names = m.names()
    assert all(n in names for n in METRICS)
    assert {"mm_model_score", "mm_model_shadow_score", "mm_model_score_seconds_bucket",
            "mm_model_scored_ticks_total"} <= names


def test_trade_rows_feed_the_collector_of_their_symbol():
    p, s = new_collectors(2)
    ev = np.zeros(3, dtype=event_dtype)
    ev["kind"] = [Kind.TRADE, Kind.DEPTH, Kind.TRADE]
    ev["symbol_id"] = [1, 0, 5]  # symbol 5 has no collector: skipped
    ev["side"] = [1, 1, -1]
    ev["qty"] = [2.0, 9.0, 1.0]
    ev["ts_local"] = [10, 20, 30]
    assert collectors_on_trades_nb(p, s, ev, 3) == 1
    assert s[1]["trades"] == 1 and s[0]["trades"] == 0 and s[1]["buy_rate"] > 0.0


def test_metrics_endpoint_shows_every_collector_gauge_per_symbol_after_a_session(session):
    s = session(3.0)
    assert s.summary["n_decisions"] > 5
    feats = s.summary["features"]
    assert set(feats) == {"BTCUSDT", "ETHUSDT"} and set(feats["BTCUSDT"]) == set(METRICS)
    server = s.runner.metrics.serve(0)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    values = {}
    for line in text.splitlines():
        if line.startswith("mm_symbol_") and "{" in line:
            key, val = line.rsplit(" ", 1)
            values[key] = float(val)
    for name in METRICS:
        for sym in ("BTCUSDT", "ETHUSDT"):
            assert f'{name}{{symbol="{sym}"}}' in values, (name, sym)
    # Book and trade features are known after a few ticks of a live book.
    for name in ("mm_symbol_spread_ticks", "mm_symbol_liq_top_depth", "mm_symbol_imbalance_depth1",
                 "mm_symbol_microprice_offset_ticks", "mm_symbol_latency_p95", "mm_symbol_fill_rate"):
        assert math.isfinite(values[f'{name}{{symbol="BTCUSDT"}}']), name
    assert values['mm_symbol_spread_ticks{symbol="BTCUSDT"}'] >= 1.0
    assert values['mm_symbol_fills_total{symbol="BTCUSDT"}'] + values['mm_symbol_fills_total{symbol="ETHUSDT"}'] \
        == s.summary["n_fills"]
