"""Canary rollout: deterministic per-signal routing, every guard rail, rollback, cooldown, MODE_SWITCH, replay, CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmlab.config import load_config
from mmlab.errors import ConfigError
from mmlab.hpo.canary import (
    REASONS,
    Route,
    RunStream,
    route_signals,
    signal_hash_u,
    supervise,
)

S = 1_000_000_000
T1 = 600 * S  # ten minutes


def rollout(**kw):
    base = {"mode": "canary", "canary_fraction": 0.5, "min_sample": 20, "drift_min_sample": 100, "check_interval_s": 60,
            "cooldown_s": 120, "drift_features": ["x"]}
    return load_config({"rollout": {**base, **kw}}).rollout


def stream(n=600, won_rate=0.6, x_shift=0.0, seed=0, t_end=T1) -> RunStream:
    """One signal and one trade per second; trades are won with ``won_rate``; feature x ~ N(shift, 1)."""
    rng = np.random.default_rng(seed)
    ts = np.linspace(0, t_end - S, n).astype(np.int64)
    u = signal_hash_u(7, np.array(["BTCUSDT"] * n), ts, np.ones(n), np.arange(n))
    won = rng.random(n) < won_rate
    return RunStream(sig_ts_ns=ts, sig_u=u, sig_filled=np.ones(n, bool), features={"x": rng.normal(x_shift, 1.0, n)},
                     trade_sig_ts_ns=ts, trade_u=u, trade_out_ts_ns=ts + S, trade_won=won,
                     trade_markout_bps=np.where(won, 1.0, -1.0))


def reference(seed=99):
    return {"x": np.random.default_rng(seed).normal(0.0, 1.0, 2000)}


def test_routing_is_deterministic_per_signal_and_splits_by_fraction():
    n = 20_000
    sym = np.array(["BTCUSDT", "ETHUSDT"] * (n // 2))
    ts = np.arange(n, dtype=np.int64) * 1_000_000
    u = signal_hash_u(1337, sym, ts, np.ones(n), np.arange(n) % 50)
    assert np.array_equal(u, signal_hash_u(1337, sym, ts, np.ones(n), np.arange(n) % 50))
    assert (u >= 0).all() and (u < 1).all()
    r = route_signals(u, "canary", 0.10)
    assert 0.09 < (r == Route.CANARY).mean() < 0.11
    # Each signal keeps its route when the others change (hash of the signal's own content).
    assert route_signals(u[:5], "canary", 0.1).tolist() == r[:5].tolist()
    assert not np.array_equal(u, signal_hash_u(1, sym, ts, np.ones(n), np.arange(n) % 50))
    assert (route_signals(u, "full", 0.1) == Route.FULL).all()
    assert (route_signals(u, "disabled", 0.1) == Route.PAPER).all()


@pytest.mark.parametrize("key, value", [("mode", "canry"), ("canary_fraction", 0.0), ("canary_fraction", 1.5),
                                        ("winrate_delta_pp", -1.0), ("min_sample", 0), ("psi_block", 0.0),
                                        ("ks_block", 1.5), ("cooldown_s", -1.0), ("parity_fail_max", -1),
                                        ("winrate_target", 2.0), ("check_interval_s", 0.0)])
def test_rollout_config_range_checks(key, value):
    with pytest.raises(ConfigError, match=f"rollout.*{key}"):
        load_config({"rollout": {key: value}})


def test_no_rail_no_rollback_and_gates():
    rc = rollout()
    res = supervise(stream(won_rate=0.6, seed=1), stream(won_rate=0.6, seed=2), rc, 0, T1, reference=reference())
    assert res["events"] == [] and res["final_mode"] == "canary"
    assert res["metrics"]["rollback_total"] == 0 and res["metrics"]["mode_switch_total"] == 0
    c = res["outcome"]["canary"]
    assert 250 < c["signals"] < 350 and res["outcome"]["baseline"]["signals"] == 600 - c["signals"]
    assert {g["gate"]: g["status"] for g in res["gates"]} == {"winrate": "pass", "markout": "pass", "fill_rate": "pass"}


def test_winrate_rail_needs_min_sample_then_rolls_back():
    rc = rollout(winrate_delta_pp=5.0, min_sample=100)
    res = supervise(stream(won_rate=0.2, seed=1), stream(won_rate=0.7, seed=2), rc, 0, T1, reference=reference())
    ev = res["events"]
    assert len(ev) == 1 and ev[0]["event"] == "MODE_SWITCH" and ev[0]["reason"] == "winrate_drop"
    assert ev[0]["from"] == "canary" and ev[0]["to"] == "disabled"
    # Not before the canary sample reached min_sample.
    first = next(c for c in res["checks"] if c["action"])
    assert first["sample_canary"] >= 100
    assert all(c["sample_canary"] < 100 for c in res["checks"] if c["ts_ns"] < first["ts_ns"])
    assert res["rollbacks"]["winrate_drop"] == 1 and res["metrics"]['rollback_total{reason="winrate_drop"}'] == 1
    assert res["final_mode"] == "disabled"
    # After the rollback no new signal goes to the candidate.
    assert {g["gate"]: g["status"] for g in res["gates"]}["winrate"] == "fail"


def test_winrate_within_delta_holds():
    rc = rollout(winrate_delta_pp=50.0)
    res = supervise(stream(won_rate=0.3, seed=1), stream(won_rate=0.6, seed=2), rc, 0, T1, reference=reference())
    assert res["events"] == []


def test_parity_rail_rolls_back_on_any_failure_in_window():
    rc = rollout(parity_window_s=600)
    res = supervise(stream(seed=1), stream(seed=2), rc, 0, T1, reference=reference(), parity_fail_ts_ns=[130 * S])
    ev = res["events"]
    assert len(ev) == 1 and ev[0]["reason"] == "parity_failure" and ev[0]["ts_ns"] == 180 * S
    # parity_fail_max tolerates that many.
    rc2 = rollout(parity_fail_max=1)
    assert supervise(stream(seed=1), stream(seed=2), rc2, 0, T1, reference=reference(),
                     parity_fail_ts_ns=[130 * S])["events"] == []


@pytest.mark.parametrize("shift, reason, kw", [(2.0, "drift_psi", {"ks_block": 1.0}),
                                                (0.8, "drift_ks", {"psi_block": 100.0})])
def test_drift_rails(shift, reason, kw):
    rc = rollout(**kw)
    res = supervise(stream(x_shift=shift, seed=1), stream(seed=2), rc, 0, T1, reference=reference())
    ev = res["events"]
    assert len(ev) == 1 and ev[0]["reason"] == reason
    name = "psi" if reason == "drift_psi" else "ks"
    assert res["metrics"][f'{name}_feature{{feature="x"}}'] > (2.0 if name == "psi" else 0.2) * 0.1
    # Without drift the same rails hold.
    assert supervise(stream(seed=1), stream(seed=2), rc, 0, T1, reference=reference())["events"] == []


def test_drift_rail_waits_for_min_sample():
    rc = rollout(drift_min_sample=10_000)
    res = supervise(stream(x_shift=3.0, seed=1), stream(seed=2), rc, 0, T1, reference=reference())
    assert res["events"] == []


def test_cooldown_and_auto_reenable_count_switches_and_rollbacks():
    # A persistent parity failure stream: rollback, cooldown of 120 s, re-enable, rollback again, ...
    rc = rollout(auto_reenable=True, cooldown_s=120)
    par = list(range(0, T1, 10 * S))
    res = supervise(stream(seed=1), stream(seed=2), rc, 0, T1, reference=reference(), parity_fail_ts_ns=par)
    ev = res["events"]
    kinds = [(e["from"], e["to"]) for e in ev]
    assert kinds[0] == ("canary", "disabled") and kinds[1] == ("disabled", "canary")
    # Re-enabled only once the cooldown elapsed since the rollback.
    for a, b in zip(ev, ev[1:]):
        if a["to"] == "disabled":
            assert b["ts_ns"] - a["ts_ns"] >= 120 * S
    assert res["metrics"]["mode_switch_total"] == len(ev)
    assert res["metrics"]["rollback_total"] == sum(1 for e in ev if e["to"] == "disabled") == 4
    assert res["blocked_by_cooldown"] > 0
    # Without auto_reenable the rollout stays disabled.
    res2 = supervise(stream(seed=1), stream(seed=2), rollout(cooldown_s=120), 0, T1, reference=reference(),
                     parity_fail_ts_ns=par)
    assert len(res2["events"]) == 1 and res2["final_mode"] == "disabled"


def test_full_mode_routes_everything_and_rolls_back():
    rc = rollout(mode="full", min_sample=50)
    res = supervise(stream(won_rate=0.1, seed=1), stream(won_rate=0.7, seed=2), rc, 0, T1, reference=reference())
    assert res["events"][0]["from"] == "full" and res["events"][0]["reason"] == "winrate_drop"
    assert res["outcome"]["signals_by_route"]["full"] > 0


def test_disabled_mode_never_switches():
    res = supervise(stream(won_rate=0.0, seed=1), stream(seed=2), rollout(mode="disabled"), 0, T1,
                    reference=reference(), parity_fail_ts_ns=[5 * S])
    assert res["events"] == [] and res["outcome"]["canary"]["signals"] == 0
    assert all(g["status"] == "no data" for g in res["gates"])


def test_canary_replay_on_real_data_and_cli(btc_store, tmp_path):
    from mmlab.cli import app

    cfg = tmp_path / "cand.toml"
    cfg.write_text(f"""
[data]
root = "{btc_store}"
venue = "binance-usdm"
symbols = ["BTCUSDT"]
start = "2024-07-19T00:00:00Z"
end = "2024-07-19T00:02:00Z"
[strategy]
grid_num = 2
[rollout]
mode = "canary"
canary_fraction = 0.5
min_sample = 5
check_interval_s = 10
drift_features = ["spread_ticks"]
""")
    out = tmp_path / "canary"
    r = CliRunner().invoke(app, ["canary", "--config", str(cfg), "--segment", "1min", "--per-regime", "2",
                                 "--parity-fail-at", "30", "--out", str(out), "--json"])
    assert r.exit_code in (0, 1), r.output
    res = json.loads((out / "canary.json").read_text())
    assert len(res["segments"]) == 2 and {s["regime"] for s in res["segments"]} <= {"normal", "event", "high_vol"}
    for s in res["segments"]:
        # The injected parity failure rolls each segment back at the first check after it.
        assert s["events"][0]["reason"] == "parity_failure" and s["final_mode"] == "disabled"
        assert s["outcome"]["canary"]["signals"] > 0 and s["outcome"]["baseline"]["signals"] > 0
    assert res["totals"]["rollback_total"] == 2 and res["totals"]['rollback_total{reason="parity_failure"}'] == 2
    assert "MODE_SWITCH" in (out / "canary_report.md").read_text()
    assert r.exit_code == 1  # a rollback fails the replay
    # Deterministic: the same replay gives the same routes and events.
    CliRunner().invoke(app, ["canary", "--config", str(cfg), "--segment", "1min", "--per-regime", "2",
                                  "--parity-fail-at", "30", "--out", str(tmp_path / "c2")])
    res2 = json.loads((tmp_path / "c2" / "canary.json").read_text())
    assert [s["events"] for s in res2["segments"]] == [s["events"] for s in res["segments"]]
    assert [s["outcome"] for s in res2["segments"]] == [s["outcome"] for s in res["segments"]]


def test_reasons_are_documented():
    assert REASONS == ("winrate_drop", "parity_failure", "drift_psi", "drift_ks")
