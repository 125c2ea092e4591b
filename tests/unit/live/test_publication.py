"""The runner's metrics publication: spread over steps (one part per step), the same values as publishing at
once; labelled children resolved once; unchanged gauges not set again."""

from __future__ import annotations

import time

import numpy as np
from prometheus_client import Gauge

from live.replay import _TS
from live.runner import LiveRunner
from mmlab.config import load_config
from mmlab.features.collectors import METRICS, metric_values

SYMS = ["BTCUSDT", "ETHUSDT"]


def _runner(tmp_path):
    cfg = load_config({"data": {"venue": "bybit-linear", "symbols": SYMS},
                       "live": {"venue": "bybit-linear", "warmup_s": 0, "book_depth": 200, "stale_ms": 60000.0,
                                "horizon_margin_ms": 0.0, "tick_sizes": {"BTCUSDT": 0.1, "ETHUSDT": 0.01},
                                "lot_sizes": {"BTCUSDT": 0.001, "ETHUSDT": 0.01}}})
    r = LiveRunner(cfg, out_dir=tmp_path)
    r.setup()
    return r


def _frames(bybit_linear, n=400):
    now_ms = b"%d" % (time.time_ns() // 1_000_000)
    keep = [f for f in bybit_linear.frames if any(b"." + s.encode() in f[:60] for s in SYMS)][:n]
    return [_TS.sub(lambda m: b'"' + m.group(1) + b'":' + now_ms, f) for f in keep]


def _sample(r, name, labels=None):
    return r.metrics.registry.get_sample_value(name, labels or {})


def test_a_publication_is_spread_over_steps_and_equals_one_at_once(tmp_path, bybit_linear):
    r = _runner(tmp_path)
    frames = _frames(bybit_linear)
    r._published_ns = 1 << 62  # no publication while feeding
    for raw in frames:
        ts = r.now_ns()
        r.recorder.write(ts, raw)
        r.queue.append([(ts, raw)])
        r.process_pending(ts + 1)
    assert r._lat_pending and r._pub_gen is None
    n_lat = len(r._lat_pending)
    r._published_ns = -(1 << 62)  # due: the next step runs the first part
    parts = 0
    while True:
        r.process_pending(r.now_ns())
        parts += 1
        if r._pub_gen is None:
            break
        assert parts < 1000
    # Outputs, counts, latency chunks, each symbol, the model part: one per step.
    assert parts >= 3 + len(SYMS) + 1
    assert _sample(r, "mm_frame_to_decision_seconds_count") == n_lat
    assert sum(v for k, v in r.counts.items() if k.startswith("frames_")) == len(frames)
    for i, s in enumerate(SYMS):
        for name, v in metric_values(r.scoring.state, i).items():
            got = _sample(r, name, {"symbol": s})
            assert got == v or (np.isnan(v) and np.isnan(got)), (name, s, v, got)
    # A publication at once afterwards changes nothing (everything was published).
    # (the steps that ran the parts add step timings: published by the next publication)
    def values():
        return {(m.name, tuple(sorted(m.labels.items()))): None if np.isnan(m.value) else m.value
                for fam in r.metrics.registry.collect() for m in fam.samples
                if not m.name.endswith("_created") and not m.name.startswith(("mm_md_cache_age_ms", "mm_stage_",
                                                                                "mm_tick_total"))}

    before = values()
    r.publish_metrics()
    assert values() == before
    r.shutdown(0.0)


def test_collector_gauges_are_bound_once_and_set_only_when_changed(tmp_path, monkeypatch):
    r = _runner(tmp_path)
    st = r.scoring.state
    st["fills_total"] = [3, 4]
    st["imbalance"][:, 1] = [0.25, -0.5]
    r.scoring.publish(r.metrics)
    assert _sample(r, "mm_symbol_fills_total", {"symbol": "ETHUSDT"}) == 4.0
    assert _sample(r, "mm_symbol_imbalance_depth1", {"symbol": "BTCUSDT"}) == 0.25
    calls = {"labels": 0, "set": 0}
    labels, gset = Gauge.labels, Gauge.set

    def count_labels(self, *a, **k):
        calls["labels"] += 1
        return labels(self, *a, **k)

    def count_set(self, v):
        calls["set"] += 1
        return gset(self, v)

    monkeypatch.setattr(Gauge, "labels", count_labels)
    monkeypatch.setattr(Gauge, "set", count_set)
    r.scoring.publish(r.metrics)  # nothing changed: only the gauge the runner shares is set
    shared = sum(r.metrics.sym_features[n] is r.metrics.sym_spread for n in METRICS) * len(SYMS)
    assert calls == {"labels": 0, "set": shared}
    st["fills_total"][1] = 5
    st["vol_realized_bps"][0] = np.nan  # (it was NaN: unchanged)
    r.scoring.publish(r.metrics)
    assert calls == {"labels": 0, "set": 2 * shared + 1}
    assert _sample(r, "mm_symbol_fills_total", {"symbol": "ETHUSDT"}) == 5.0
    r.shutdown(0.0)


def test_a_failed_output_write_surfaces_at_shutdown_and_the_files_are_closed(tmp_path, bybit_linear):
    import pytest

    from live.recorder import RecordingError

    r = _runner(tmp_path)
    real = r._logs["ticks"]

    class Full:
        closed = False

        def write(self, data):
            raise OSError(28, "No space left on device")

        def flush(self):
            pass

        def close(self):
            self.closed = True
            real.close()

    r._logs["ticks"] = Full()
    for raw in _frames(bybit_linear, 300):
        ts = r.now_ns()
        r.recorder.write(ts, raw)
        r.queue.append([(ts, raw)])
        r.process_pending(ts + 1)
    with pytest.raises(RecordingError, match=r"writing \d+ bytes to ticks.jsonl failed \(OSError.*No space left"):
        r.shutdown(0.0)
    assert all(f.closed for f in r._logs.values()) and r.writer._thread is None
    assert r.recorder.frames == 300 and r.recorder._f is None  # (the recording was closed before)
