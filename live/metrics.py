"""Prometheus metrics of the live runner (names of the predecessor's seed: ``mm_md_cache_*``, per-stage
durations, tick_total, deadline_miss, warmup_skip_total, backpressure_total, fail_safe_switch_total, ...).

Each runner owns a :class:`LiveMetrics` with its own registry, served on ``live.metrics_port`` at /metrics.
The per-symbol feature collectors (:data:`mmlab.features.collectors.METRICS`) are gauges ``mm_symbol_*{symbol}``;
model scoring (``[model] id``) adds ``mm_model_score``, ``mm_model_shadow_score``, ``mm_model_scored_ticks`` and
the per-tick scoring latency ``mm_model_score_seconds``.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mmlab.features.collectors import METRIC_HELP, METRICS

#: Wall-time buckets (s) of the per-frame and per-step histograms: 10 us .. 1 s.
LATENCY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.15, 0.25,
                   0.5, 1.0)


class LiveMetrics:
    """Every metric the runner exports, registered on ``self.registry``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        # md cache (seed 004): the live book as the strategy's market-data view.
        self.md_hit = Counter("mm_md_cache_hit", "decision ticks on a valid, fresh book", ["symbol"], registry=r)
        self.md_miss = Counter("mm_md_cache_miss", "decision ticks on an invalid or stale book", ["symbol"], registry=r)
        self.md_hit_ratio = Gauge("mm_md_cache_hit_ratio", "hits / (hits + misses) since start", ["symbol"], registry=r)
        self.md_invalidate = Counter("mm_md_cache_invalidate", "book invalidations", ["reason"], registry=r)
        self.md_depth_miss = Counter("mm_md_cache_depth_miss", "requested depth above the held depth", ["requested_have"],
                                     registry=r)
        self.md_age = Gauge("mm_md_cache_age_ms", "age of the newest market data of the symbol, ms", ["symbol"], registry=r)
        self.md_refresh = Histogram("mm_md_cache_refresh_latency_seconds", "invalidation -> fresh snapshot, s",
                                    registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.pricing_on_stale = Counter("mm_pricing_on_stale", "decision ticks held on stale data", ["reason"], registry=r)
        # Stages and ticks.
        self.stage = Histogram("mm_stage_duration_seconds", "wall time per runner stage", ["stage"], registry=r,
                               buckets=LATENCY_BUCKETS)
        self.tick_total = Histogram("mm_tick_total_seconds", "wall time of one runner step (frames -> decisions)",
                                    registry=r, buckets=LATENCY_BUCKETS)
        self.frame_latency = Histogram("mm_frame_to_decision_seconds", "frame received -> the actions of its step emitted, s",
                                       registry=r, buckets=LATENCY_BUCKETS)
        self.deadline_miss = Counter("mm_deadline_miss", "steps slower than live.step_ms", registry=r)
        self.decisions = Counter("mm_decision_ticks", "decision ticks run", ["symbol"], registry=r)
        # Resilience (seed 003).
        self.warmup_skip = Counter("warmup_skip", "decision ticks held by the warm-up gate", ["symbol"], registry=r)
        self.backpressure = Counter("backpressure", "frames coalesced into a full queue", ["venue"], registry=r)
        self.fail_safe = Counter("fail_safe_switch", "switches to the fail-safe HARD halt", ["reason"], registry=r)
        self.mode_switch = Counter("mode_switch", "routing mode switches", ["from_mode", "to_mode"], registry=r)
        self.rollback = Counter("rollback", "rollbacks of a rollout", ["reason"], registry=r)
        self.fail_safe_active = Gauge("fail_safe_active", "1 while the fail-safe mode routes everything to paper",
                                      registry=r)
        # Rollout (live/rollout.py): A/B buckets and canary supervision.
        self.ab_bucket = Gauge("ab_bucket", "A/B bucket of the symbol (0 = A, 1 = B)", ["symbol"], registry=r)
        self.rollout_mode = Gauge("rollout_mode", "canary rollout mode (0 disabled, 1 canary, 2 full)", registry=r)
        self.winrate_canary = Gauge("winrate_canary", "win rate of canary-routed trades since enabled", registry=r)
        self.winrate_baseline_active = Gauge("winrate_baseline_active", "win rate of paper-routed trades", registry=r)
        self.sample_canary = Gauge("sample_canary", "canary trades marked since enabled", registry=r)
        self.halted = Gauge("mm_symbol_halted", "LiveGate code holding the symbol (0 = quoting)", ["symbol"], registry=r)
        # Websocket.
        self.frames = Counter("mm_ws_frames", "frames received by kind", ["kind"], registry=r)
        self.reconnects = Counter("mm_ws_reconnects", "websocket reconnects", registry=r)
        self.gaps = Counter("mm_ws_sequence_gaps", "sequence gaps (resubscribed)", ["symbol"], registry=r)
        self.pings = Counter("mm_ws_pings", "keepalive pings sent", registry=r)
        self.queue_depth = Gauge("mm_ws_queue_depth", "frames waiting for the runner", registry=r)
        # Paper orders and fills (route = paper).
        self.trades_opened = Counter("trades_opened", "orders placed", ["route"], registry=r)
        self.fills = Counter("mm_fills", "paper fills", ["route", "symbol"], registry=r)
        self.position = Gauge("mm_position", "position (base units)", ["symbol"], registry=r)
        self.pnl = Gauge("mm_pnl", "mark-to-mid pnl net of fees", ["symbol"], registry=r)
        # Symbol features at the last decision tick.
        self.sym_mid = Gauge("mm_symbol_mid", "local book mid", ["symbol"], registry=r)
        self.sym_spread = Gauge("mm_symbol_spread_ticks", "local book spread, ticks", ["symbol"], registry=r)
        self.sym_imbalance = Gauge("mm_symbol_imbalance", "(bid_qty - ask_qty) / (bid_qty + ask_qty) at the touch",
                                   ["symbol"], registry=r)
        # Feature collectors of the symbol (mmlab.features.collectors.METRICS), set by the runner's publication; a
        # name the runner already exports (mm_symbol_spread_ticks) keeps its one gauge.
        own = {g._name: g for g in (self.sym_mid, self.sym_spread, self.sym_imbalance, self.halted)}
        self.sym_features = {name: own.get(name) or Gauge(name, METRIC_HELP.get(name, name), ["symbol"], registry=r)
                             for name in METRICS}
        # Model scores of live paper sessions with [model] id (live/scoring.py).
        self.model_score = Gauge("mm_model_score", "active model score at the last decision tick", ["symbol"],
                                 registry=r)
        self.model_shadow_score = Gauge("mm_model_shadow_score", "shadow model score at the last decision tick "
                                        "(never trades)", ["symbol"], registry=r)
        self.model_score_latency = Histogram("mm_model_score_seconds", "wall time of one decision tick's feature "
                                             "rows and model scores (all symbols, shadow included), s", registry=r,
                                             buckets=LATENCY_BUCKETS)
        self.model_ticks = Counter("mm_model_scored_ticks", "decision ticks scored by the model", ["symbol"],
                                   registry=r)

    def names(self) -> set[str]:
        """Every series name the registry can expose (``_total``, ``_bucket``, ``_sum``, ``_count`` included)."""
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                    "gauge": ("",), "summary": ("_sum", "_count", "_created")}
        out = set()
        for fam in self.registry.collect():
            out.update(fam.name + suf for suf in suffixes.get(fam.type, ("",)))
        return out

    def serve(self, port: int, addr: str = "127.0.0.1"):
        """Serve /metrics on ``port`` (a daemon thread); returns the server (``shutdown()`` stops it)."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server


def observe_many(hist, values_s) -> None:
    """Add every value of ``values_s`` (seconds) to the prometheus histogram ``hist`` (an unlabelled histogram
    or a labelled child) at once: one bucket count per bucket instead of one ``observe`` per value.

    The runner keeps its latencies in plain integers and publishes them periodically with this, so a frame
    pays no metrics call. A prometheus-client without the histogram internals used here gets plain observes.

    >>> from prometheus_client import CollectorRegistry, Histogram
    >>> h = Histogram("x_seconds", "x", registry=CollectorRegistry(), buckets=(0.001, 0.01))
    >>> observe_many(h, [0.0005, 0.002, 0.003])
    >>> [b.get() for b in h._buckets]
    [1.0, 2.0, 0.0]
    """
    v = np.asarray(values_s, dtype=np.float64).reshape(-1)
    if not len(v):
        return
    bounds = getattr(hist, "_upper_bounds", None)
    buckets = getattr(hist, "_buckets", None)
    total = getattr(hist, "_sum", None)
    if bounds is None or buckets is None or total is None or len(buckets) != len(bounds):
        for x in v:
            hist.observe(float(x))
        return
    # Bucket i takes the values with bounds[i - 1] < value <= bounds[i] (what observe does one by one).
    idx = np.minimum(np.searchsorted(np.asarray(bounds, dtype=np.float64), v, side="left"), len(bounds) - 1)
    counts = np.bincount(idx, minlength=len(bounds))
    for i in np.flatnonzero(counts):
        buckets[int(i)].inc(int(counts[i]))
    total.inc(float(v.sum()))
