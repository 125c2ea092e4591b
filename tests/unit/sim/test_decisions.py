"""decisions.parquet, sampled per-stage timing, stage_latency_ns and the perf gate reading it."""

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from test_hooks import SPEC, cfg_of, market

from mmlab.analysis.perf_gate import perf_gate
from mmlab.config import load_config
from mmlab.errors import ConfigError, DataError
from mmlab.sim.decisions import DECISION_COLUMNS, decisions_frame, stage_latency_summary
from mmlab.sim.engine import run_backtest, simulate, write_run
from mmlab.sim.pipeline_strategy import STAGE_NAMES, grid_pipeline_spec
from mmlab.types import (
    ActionKind,
    QuoteAction,
    decision_quote_dtype,
    decision_row_dtype,
    sim_action_dtype,
)


@pytest.fixture(scope="module")
def ev():
    return market(n_steps=800, seed=4)


@pytest.fixture(scope="module")
def grid_run(ev):
    return run_backtest(cfg_of(), events=ev, symbols=[SPEC])


@pytest.fixture(scope="module")
def pipe_run(ev):
    return run_backtest(cfg_of(sample_stage_tracing=0.25), events=ev, symbols=[SPEC], strategy=grid_pipeline_spec())


def test_one_row_per_decision_and_symbol_with_fixed_columns(grid_run, pipe_run):
    for r in (grid_run, pipe_run):
        d = r.decisions
        assert tuple(d.columns) == DECISION_COLUMNS
        assert d.height == r.summary["n_decisions"] == r.state.height
        assert d["ts_local"].to_list() == r.state["ts_local"].to_list()
    assert grid_run.decisions.schema == pipe_run.decisions.schema


def test_desired_quotes_and_actions_match_state_and_orders(grid_run):
    d, st, orders = grid_run.decisions, grid_run.state, grid_run.orders
    best_bid = d["bid_price"].list.max().to_numpy()
    assert np.allclose(best_bid, st["quote_bid"].to_numpy(), equal_nan=True)
    best_ask = d["ask_price"].list.min().to_numpy()
    assert np.allclose(best_ask, st["quote_ask"].to_numpy(), equal_nan=True)
    assert (d["bid_qty"].list.len() == st["n_quotes_bid"]).all()
    assert (d["n_place"] + d["n_cancel"] + d["n_modify"] == st["n_actions"]).all()
    # Every action left the strategy (no local rejects here): places are SENT rows, cancels CANCEL_SENT rows.
    assert grid_run.summary["n_local_rejects"] == 0
    sent = orders.filter(pl.col("event") == "sent")
    assert d["n_place"].sum() == sent.height
    places = d.select("ts_local", "action_kind", "action_order_id", "action_price", "action_qty").explode(
        "action_kind", "action_order_id", "action_price", "action_qty").filter(pl.col("action_kind") == "place")
    assert places["ts_local"].to_list() == sent["ts_local"].to_list()
    assert places["action_order_id"].to_list() == sent["order_id"].to_list()
    assert np.allclose(places["action_price"].to_numpy(), sent["price"].to_numpy())
    assert d["n_cancel"].sum() == orders.filter(pl.col("event") == "cancel_sent").height


def test_reference_grid_has_zero_reason_codes_and_no_timings(grid_run):
    d = grid_run.decisions
    for c in ("md_reason", "spread_reason", "guard_reason", "inventory_reason", "queue_reason", "emit_reason",
              "quote_action"):
        assert (d[c] == 0).all()
    assert d["tick_total_ns"].null_count() == d.height
    assert "stage_latency_ns" not in grid_run.summary  # nothing timed: no key (the perf gate says so)


def test_pipeline_grid_decisions_equal_the_reference_grid(grid_run, pipe_run):
    a, b = grid_run.decisions, pipe_run.decisions
    for c in DECISION_COLUMNS[:14]:
        assert a[c].equals(b[c]), c
    # Stage reasons of the pipeline: QUOTE with a two-sided book.
    assert set(b["quote_action"].unique().to_list()) <= {int(QuoteAction.QUOTE), int(QuoteAction.SKIP)}


def test_sampled_stage_timing(pipe_run):
    d = pipe_run.decisions
    n = d.height
    timed = d.filter(pl.col("tick_total_ns").is_not_null())
    assert timed.height == int(np.floor(n * 0.25))  # an even spread of a quarter of the ticks
    for name in STAGE_NAMES:
        col = timed[f"{name}_ns"]
        assert col.null_count() == 0 and (col >= 0).all()
        assert d.filter(pl.col("tick_total_ns").is_null())[f"{name}_ns"].null_count() == n - timed.height
    lat = pipe_run.summary["stage_latency_ns"]
    assert set(lat) == set(STAGE_NAMES) | {"tick_total"}
    for v in lat.values():
        assert 0 <= v["p50"] <= v["p95"] <= v["p99"] and v["n"] == timed.height


def test_timing_does_not_change_decisions(ev, pipe_run):
    untimed = run_backtest(cfg_of(), events=ev, symbols=[SPEC], strategy=grid_pipeline_spec())
    for name in ("fills", "orders", "state"):
        assert getattr(untimed, name).equals(getattr(pipe_run, name), null_equal=True), name
    keep = [c for c in DECISION_COLUMNS if not c.endswith("_ns")]
    assert untimed.decisions.select(keep).equals(pipe_run.decisions.select(keep))


def test_write_run_writes_decisions_and_the_perf_gate_reads_the_summary(pipe_run, tmp_path):
    out = write_run(pipe_run, tmp_path / "run")
    back = pl.read_parquet(out / "decisions.parquet")
    assert back.equals(pipe_run.decisions, null_equal=True)
    lat = json.loads((out / "summary.json").read_text())["stage_latency_ns"]
    budgets = {"units": "ns", "budgets": {k: {"p95": v["p95"] * 10 + 1} for k, v in lat.items()}}
    (tmp_path / "b.json").write_text(json.dumps(budgets))
    ok, rows = perf_gate(tmp_path / "b.json", out, threshold_pct=3)
    assert ok and {r["stage"] for r in rows} == set(lat)
    tight = {"units": "ns", "budgets": {"stage_emit": {"p95": lat["stage_emit"]["p95"] / 2}}}
    (tmp_path / "t.json").write_text(json.dumps(tight))
    assert not perf_gate(tmp_path / "t.json", out, threshold_pct=3)[0]


def test_decisions_frame_of_hand_built_buffers():
    rows = np.zeros(2, dtype=decision_row_dtype)
    rows["ts_local"] = [10, 20]
    rows["symbol_id"] = [1, 0]
    rows["n_quotes"] = [3, 0]
    rows["n_actions"] = [1, 2]
    rows["reason"] = [(2 << 48) | (7 << 8) | 4, 0]
    rows["tick_ns"] = [-1, 500]
    rows["stage_ns"] = -1
    rows["stage_ns"][1, :2] = [100, 200]
    q = np.zeros(3, dtype=decision_quote_dtype)
    q["side"] = [1, -1, 1]
    q["price_ticks"] = [100, 103, 99]
    q["qty"] = [1.0, 2.0, 3.0]
    a = np.zeros(3, dtype=sim_action_dtype)
    a["kind"] = [ActionKind.PLACE, ActionKind.CANCEL, ActionKind.MODIFY]
    a["side"] = [1, -1, 1]
    a["order_id"] = [5, 6, 7]
    a["price_ticks"] = [100, 50, 51]
    a["qty"] = [1.0, 0.5, 0.25]
    df = decisions_frame(rows, q, a, ["A", "B"], [1.0, 0.5], reasons_packed=True,
                         stage_names=("stage_fetch_md", "custom"))
    r0, r1 = df.row(0, named=True), df.row(1, named=True)
    assert r0["symbol"] == "B" and r0["bid_price"] == [50.0, 49.5] and r0["bid_qty"] == [1.0, 3.0]
    assert r0["ask_price"] == [51.5] and r0["action_kind"] == ["place"] and r0["n_place"] == 1
    assert (r0["md_reason"], r0["spread_reason"], r0["quote_action"]) == (4, 7, 2)
    assert r0["tick_total_ns"] is None and r0["stage_fetch_md_ns"] is None
    assert r1["bid_price"] == [] and r1["action_kind"] == ["cancel", "modify"] and r1["action_price"] == [50.0, 51.0]
    assert (r1["n_cancel"], r1["n_modify"], r1["tick_total_ns"]) == (1, 1, 500)
    assert r1["stage_fetch_md_ns"] == 100 and r1["custom_ns"] == 200 and r1["stage_emit_ns"] is None
    lat = stage_latency_summary(rows, ("stage_fetch_md", "custom"))
    assert lat["tick_total"]["p95"] == 500 and lat["custom"]["p50"] == 200
    with pytest.raises(DataError, match="rows announce 3 quotes / 3 actions, buffers hold 2 / 3"):
        decisions_frame(rows, q[:2], a, ["A", "B"], [1.0, 0.5])


def test_sample_stage_tracing_is_range_checked():
    with pytest.raises(ConfigError, match="sample_stage_tracing"):
        load_config({"pipeline": {"sample_stage_tracing": 1.5}})
    assert load_config({"pipeline": {"sample_stage_tracing": 0.2}}).pipeline.sample_stage_tracing == 0.2


_SECOND = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from test_hooks import SPEC, cfg_of, market
from mmlab.sim.engine import simulate
from mmlab.sim.loop_nb import run_loop_nb
from mmlab.sim.pipeline_strategy import grid_pipeline_spec
raw = simulate(cfg_of(sample_stage_tracing=1.0), [SPEC], [market(n_steps=200, seed=4)], strategy=grid_pipeline_spec())
st = run_loop_nb.stats
print(json.dumps({"hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values()),
                  "timed": int((raw["out"]["decisions"]["tick_ns"] >= 0).sum())}))
"""


def test_a_second_process_loads_the_timed_loop_from_the_disk_cache(ev):
    from pathlib import Path

    # This process compiles (or loads) the same specialization first, so the cache holds it.
    simulate(cfg_of(sample_stage_tracing=1.0), [SPEC], [market(n_steps=200, seed=4)], strategy=grid_pipeline_spec())
    r = subprocess.run([sys.executable, "-c", _SECOND, str(Path(__file__).parent)], capture_output=True, text=True,
                       check=True)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["misses"] == 0 and got["hits"] >= 1 and got["timed"] > 0
