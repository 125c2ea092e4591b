"""A/B harness: deterministic routing, each safety gate and its duration, auto-rollback, report, CLI."""

import pytest
from typer.testing import CliRunner

from mmlab.analysis.ab import ABConfig, Gate, ab_report, default_gates, evaluate_gates, route_symbol, route_symbols
from mmlab.errors import ConfigError

MIN = 60 * 10**9


def series(values_a: dict, values_b_per_interval: list[dict]) -> list[dict]:
    """One-minute intervals with A constant and B given per interval."""
    base = {"net_bps": 1.0, "slippage_bps": 0.5, "fill_rate": 0.3, "taker_share": 0.02, "tick_total_p95": 10.0,
            "deadline_miss_rate": 0.0}
    out = []
    for k, b in enumerate(values_b_per_interval):
        out.append({"t0_ns": k * MIN, "t1_ns": (k + 1) * MIN, "a": {**base, **values_a}, "b": {**base, **b}})
    return out


def test_routing_is_deterministic_salted_and_respects_lists():
    syms = [f"S{i}USDT" for i in range(400)]
    r = route_symbols(syms, ABConfig(split_pct=0.2))
    assert r == route_symbols(syms, ABConfig(split_pct=0.2))
    assert 0.14 < sum(v == "B" for v in r.values()) / len(syms) < 0.26
    assert r != route_symbols(syms, ABConfig(split_pct=0.2, salt="other"))
    assert route_symbol("BTCUSDT", 1.0, blacklist=("BTCUSDT",)) == "A"
    assert route_symbol("ETHUSDT", 1.0, whitelist=("BTCUSDT",)) == "A"
    assert route_symbol("BTCUSDT", 1.0, whitelist=("BTCUSDT",)) == "B"
    assert route_symbol("BTCUSDT", 0.0) == "A"


@pytest.mark.parametrize("gate, bad", [
    ("slippage_degradation", {"slippage_bps": 0.6}),
    ("taker_share_increase", {"taker_share": 0.035}),
    ("latency_regression", {"tick_total_p95": 11.5}),
    ("deadline_miss_spike", {"deadline_miss_rate": 0.03}),
])
def test_each_gate_trips_only_after_its_duration_and_rolls_back(gate, bad):
    gates = default_gates(duration_s=180)
    # Violated for 2 minutes, then fine, then for 3 minutes: trips at the end of minute 6.
    s = series({}, [bad, bad, {}, bad, bad, bad, bad])
    res = evaluate_gates(s, gates)
    st = {g["gate"]: g for g in res["gates"]}
    assert st[gate]["status"] == "tripped" and st[gate]["tripped_at_ns"] == 6 * MIN
    assert st[gate]["violations"] == 6
    assert all(g["status"] == "pass" for name, g in st.items() if name != gate)
    rb = res["rollback"]
    assert rb["gate"] == gate and rb["ts_ns"] == 6 * MIN
    assert f"{gate}:" in rb["reason"] and "every symbol routed to A" in rb["reason"]


@pytest.mark.parametrize("gate, ok", [
    ("slippage_degradation", {"slippage_bps": 0.5}),  # equal is no degradation
    ("taker_share_increase", {"taker_share": 0.029}),  # +0.9 pp
    ("latency_regression", {"tick_total_p95": 10.9}),  # +9 %
    ("deadline_miss_spike", {"deadline_miss_rate": 0.02}),  # exactly 2 %
])
def test_gates_hold_within_their_margins(gate, ok):
    res = evaluate_gates(series({}, [ok] * 20), default_gates(60))
    assert res["rollback"] is None and all(g["status"] == "pass" for g in res["gates"])


def test_short_violation_does_not_trip_and_missing_data_is_reported():
    s = series({}, [{"slippage_bps": 0.9}, {}, {"slippage_bps": 0.9}])
    res = evaluate_gates(s, default_gates(120))
    assert res["rollback"] is None
    s = series({"tick_total_p95": None}, [{"tick_total_p95": None}] * 3)
    st = {g["gate"]: g["status"] for g in evaluate_gates(s, default_gates(60))["gates"]}
    assert st["latency_regression"] == "no data"


def test_auto_rollback_off_still_reports_the_trip():
    res = evaluate_gates(series({}, [{"taker_share": 0.5}] * 3), default_gates(60), auto_rollback=False)
    assert res["rollback"] is None
    assert {g["gate"]: g["status"] for g in res["gates"]}["taker_share_increase"] == "tripped"


def test_bad_ab_config_names_the_value():
    with pytest.raises(ConfigError, match="split_pct must be in \\[0, 1\\]"):
        ABConfig(split_pct=1.5).validate()
    with pytest.raises(ConfigError, match="gate 'x'"):
        ABConfig(gates=(Gate("x", "pnl", "gt_a"),)).validate()


def test_report_names_the_rollback(tmp_path):
    s = series({}, [{"taker_share": 0.5}] * 2)
    ev = evaluate_gates(s, default_gates(60))
    total = {"a": s[0]["a"], "b": s[0]["b"], "delta": {k: None for k in s[0]["a"]}}
    res = {"routing": {"BTCUSDT": "B"}, "routing_final": {"BTCUSDT": "A"}, "split_pct": 0.5, "salt": "x",
           "interval_s": 60.0, "total": total, **ev}
    text = ab_report(res, tmp_path / "r.md").read_text()
    assert "ROLLBACK at" in text and "TRIPPED" in text and "| BTCUSDT | B | A |" in text


@pytest.mark.real_data
def test_ab_over_two_backtests_of_the_same_days(btc_store, tmp_path):
    base = (f'[data]\nroot = "{btc_store}"\nvenue = "binance-usdm"\nsymbols = ["BTCUSDT"]\n'
            'start = "2024-07-19T00:00:00Z"\nend = "2024-07-19T00:02:00Z"\n')
    (tmp_path / "a.toml").write_text(base + "[strategy]\nhalf_spread_ticks = 2.0\n")
    (tmp_path / "b.toml").write_text(base + "[strategy]\nhalf_spread_ticks = 0.0\n[sim]\ntaker_fee = 0.0007\n")
    from mmlab.cli import app

    r = CliRunner().invoke(app, ["ab", "--a", str(tmp_path / "a.toml"), "--b", str(tmp_path / "b.toml"),
                                 "--split", "1.0", "--interval-s", "30", "--gate-duration-s", "30",
                                 "--out", str(tmp_path / "ab"), "--json"])
    assert r.exit_code == 0, r.output
    import json

    res = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert res["routing"] == {"BTCUSDT": "B"} and len(res["series"]) == 4
    assert set(res["total"]["a"]) == set(res["total"]["delta"])
    assert (tmp_path / "ab" / "ab_report.md").exists()
