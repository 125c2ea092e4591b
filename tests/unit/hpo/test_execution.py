"""Execution stress: seeded event transforms (liquidity holes, price jumps), random-latency scenarios, report, CLI."""

import json

import numpy as np
import pytest
from conftest import WINDOW
from typer.testing import CliRunner

from mmlab.config import load_config
from mmlab.data.book_nb import book_apply_nb, book_mid_ticks_nb, new_books
from mmlab.errors import ConfigError
from mmlab.hpo.execution import (
    StressSpec,
    liquidity_holes,
    price_jumps,
    scenario_config,
    scenario_events,
)
from mmlab.types import Kind


@pytest.fixture(scope="module")
def btc(btc_store):
    from mmlab.data import bridge
    from mmlab.sim.engine import SymbolSpec

    ev, infos = bridge.load_events(btc_store, "binance-usdm", ["BTCUSDT"], WINDOW["start"], WINDOW["end"])
    return ev, [SymbolSpec(i.symbol, i.tick_size, i.lot_size, i.contract_type, i.contract_size, i.meta) for i in infos]


def _final_book(ev):
    order = np.lexsort((np.arange(len(ev)), ev["ts_exch"]))
    book, bq, aq = new_books(1)
    crossed = 0
    for i in order:
        k = int(ev["kind"][i])
        if k in (1, 3, 4):
            book_apply_nb(book, bq, aq, 0, k, int(ev["side"][i]), int(ev["price_ticks"][i]), float(ev["qty"][i]))
        if ev["batch_end"][i] and book[0]["best_bid_tick"] >= book[0]["best_ask_tick"]:
            crossed += 1
    return book, crossed


def test_liquidity_holes_empty_depth_rows_in_windows_only(btc):
    ev, _ = btc
    before = ev.copy()
    out, info = liquidity_holes(ev, n_holes=2, hole_ms=3000, hole_frac=1.0, rng=np.random.default_rng(1))
    assert np.array_equal(ev, before)  # the input is never modified
    changed = out["qty"] != ev["qty"]
    assert changed.sum() == info["rows_emptied"] > 0
    assert (ev["kind"][changed] == Kind.DEPTH).all() and (out["qty"][changed] == 0).all()
    t = ev["ts_exch"][changed]
    inside = np.zeros(len(t), bool)
    for a, b in info["holes_ns"]:
        inside |= (t >= a) & (t < b)
    assert inside.all()
    again, info2 = liquidity_holes(ev, n_holes=2, hole_ms=3000, hole_frac=1.0, rng=np.random.default_rng(1))
    assert np.array_equal(again, out) and info2 == info


def test_price_jump_shifts_the_market_and_keeps_the_books_consistent(btc):
    ev, _ = btc
    out, info = price_jumps(ev, n_jumps=1, jump_ticks=500, rng=np.random.default_rng(3))
    (j,) = info["jumps"]
    assert abs(j["ticks"]) == 500 and len(out) == len(ev) + j["snapshot_rows"]
    assert (np.diff(out["ts_local"]) >= 0).all()
    b0, crossed0 = _final_book(ev)
    b1, crossed1 = _final_book(out)
    assert crossed1 == crossed0 == 0
    assert book_mid_ticks_nb(b1, 0) - book_mid_ticks_nb(b0, 0) == pytest.approx(j["ticks"], abs=5)
    # Trades after the jump print at shifted prices.
    tr0 = ev[(ev["kind"] == Kind.TRADE) & (ev["ts_exch"] > j["ts_exch"] + 10**9)]
    tr1 = out[(out["kind"] == Kind.TRADE) & (out["ts_exch"] > j["ts_exch"] + 10**9)]
    assert np.array_equal(tr1["price_ticks"] - tr0["price_ticks"], np.full(len(tr0), j["ticks"]))


def test_scenario_config_uses_random_latency_and_seed():
    cfg = load_config({"sim": {"latency_jitter_ms": 2.0}})
    spec = StressSpec(shock_prob=0.1, shock_mult=5.0)
    c = scenario_config(cfg, "latency_spike", 7, spec)
    assert (c.sim.latency_model, c.sim.seed, c.sim.latency_jitter_ms, c.sim.shock_prob, c.sim.shock_mult) == \
        ("random", 7, 2.0, 0.1, 5.0)
    assert scenario_config(load_config({}), "base", 1, spec).sim.latency_jitter_ms == 5.0
    assert scenario_config(cfg, "base", 1, spec).sim.shock_prob == 0.0


@pytest.mark.parametrize("kw", [{"scenarios": ("base", "meteor")}, {"n_seeds": 0}, {"hole_frac": 1.5},
                                {"shock_mult": 0.5}, {"jump_ticks": 0}])
def test_stress_spec_range_checks(kw):
    with pytest.raises(ConfigError):
        StressSpec(**kw).validate()


def test_scenario_events_are_seeded(btc):
    ev, _ = btc
    spec = StressSpec(n_holes=2)
    a, _ = scenario_events(ev, "liquidity_hole", 4, spec)
    b, _ = scenario_events(ev, "liquidity_hole", 4, spec)
    c, _ = scenario_events(ev, "liquidity_hole", 5, spec)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert scenario_events(ev, "base", 4, spec)[0] is ev


def test_simulate_execution_cli_report(btc_store, tmp_path):
    from mmlab.cli import app

    cfg = tmp_path / "x.toml"
    cfg.write_text(f"""
[data]
root = "{btc_store}"
venue = "binance-usdm"
symbols = ["BTCUSDT"]
start = "{WINDOW['start']}"
end = "2024-07-19T00:01:00Z"
[strategy]
grid_num = 2
""")
    out = tmp_path / "ex"
    r = CliRunner().invoke(app, ["simulate-execution", "--config", str(cfg), "--seeds", "2", "--out", str(out),
                                 "--jump-ticks", "100", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "execution.json").read_text())
    assert set(res["scenarios"]) == {"base", "latency_spike", "liquidity_hole", "price_jump"}
    assert len(res["runs"]) == 8 and all(r["n_fills"] is not None for r in res["runs"])
    for s in res["scenarios"].values():
        assert s["n"] == 2 and s["pnl_net"]["p5"] <= s["pnl_net"]["p50"] <= s["pnl_net"]["p95"]
    # Different seeds give different random latencies, hence (almost surely) different fills.
    base = [r for r in res["runs"] if r["scenario"] == "latency_spike"]
    assert base[0]["pnl_net"] != base[1]["pnl_net"] or base[0]["fill_rate"] != base[1]["fill_rate"]
    assert (out / "execution.png").stat().st_size > 1000
    # Same seeds, same results.
    r2 = CliRunner().invoke(app, ["simulate-execution", "--config", str(cfg), "--seeds", "2", "--scenarios",
                                  "price_jump", "--jump-ticks", "100", "--out", str(tmp_path / "ex2")])
    assert r2.exit_code == 0, r2.output
    again = json.loads((tmp_path / "ex2" / "execution.json").read_text())["runs"]
    assert [x["pnl_net"] for x in again] == [x["pnl_net"] for x in res["runs"] if x["scenario"] == "price_jump"]
