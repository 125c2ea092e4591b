"""Grafana dashboard and Prometheus alert rules in live/monitoring: valid syntax, every metric they name exists."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import yaml

from live.metrics import LiveMetrics

MON = Path(__file__).resolve().parents[3] / "live" / "monitoring"
PROMQL_WORDS = {"increase", "rate", "sum", "max", "min", "avg", "by", "without", "and", "or", "unless", "le",
                "histogram_quantile", "clamp_min", "clamp_max", "max_over_time", "min_over_time", "count", "abs",
                "bool", "on", "ignoring", "offset"}


def metric_names(expr: str) -> set[str]:
    """Identifiers of a PromQL expression that name series (label matchers, durations and functions removed)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", "", expr)  # numbers such as 1e-9
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS and not re.fullmatch(r"\d+(e-?\d+)?", w)}


def test_alert_rules_parse_and_reference_only_exported_metrics():
    doc = yaml.safe_load((MON / "alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 10
    names = LiveMetrics().names()
    for r in rules:
        assert set(r) >= {"alert", "expr", "for", "labels", "annotations"}, r
        assert r["labels"]["severity"] in ("warning", "critical")
        assert re.fullmatch(r"\d+[smh]", r["for"]), r["for"]
        missing = metric_names(r["expr"]) - names
        assert not missing, f"{r['alert']} references unknown metrics {missing}"


def test_dashboard_is_grafana_json_whose_queries_name_exported_metrics():
    dash = json.loads((MON / "grafana_dashboard.json").read_text())
    names = LiveMetrics().names()
    assert dash["panels"] and dash["uid"] == "mmlab-live"
    for p in dash["panels"]:
        for t in p["targets"]:
            missing = metric_names(t["expr"]) - names
            assert not missing, f"panel {p['title']!r} references unknown metrics {missing}"


def test_seed_metric_names_are_exported():
    names = LiveMetrics().names()
    for n in ("mm_md_cache_hit_total", "mm_md_cache_miss_total", "mm_md_cache_invalidate_total",
              "mm_md_cache_depth_miss_total", "mm_pricing_on_stale_total", "mm_stage_duration_seconds_bucket",
              "mm_tick_total_seconds_bucket", "mm_deadline_miss_total", "warmup_skip_total", "backpressure_total",
              "fail_safe_switch_total", "mode_switch_total", "rollback_total", "trades_opened_total"):
        assert n in names, n


def test_metrics_endpoint_serves_the_registry():
    m = LiveMetrics()
    m.warmup_skip.labels("BTCUSDT").inc(3)
    server = m.serve(0)
    try:
        port = server.server_port
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert 'warmup_skip_total{symbol="BTCUSDT"} 3.0' in text


def test_metric_name_extraction():
    assert metric_names('histogram_quantile(0.95, sum(rate(a_bucket{x="y"}[5m])) by (le)) > 0.15') == {"a_bucket"}
