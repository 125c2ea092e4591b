"""Stage perf gate against the committed budgets."""

import json
from pathlib import Path

import pytest

from mmlab.analysis.perf_gate import load_budgets, perf_gate
from mmlab.errors import DataError

REPO = Path(__file__).resolve().parents[3]
BUDGETS = REPO / "benchmarks" / "stage_budgets.json"
STAGES = ("stage_fetch_md", "stage_spread", "stage_guards", "stage_inventory", "stage_queue_aware", "stage_emit",
          "tick_total")
# The stage-budget design's p95 targets, milliseconds.
SEED_P95_MS = {"stage_fetch_md": 60, "stage_spread": 15, "stage_guards": 12, "stage_inventory": 12,
               "stage_queue_aware": 15, "stage_emit": 35, "tick_total": 150}


@pytest.fixture()
def seed_budgets(tmp_path) -> Path:
    """A budgets file holding the design's p95 targets (the committed file holds measured figures)."""
    p = tmp_path / "seed_budgets.json"
    p.write_text(json.dumps({"units": "ns", "source": "seed targets",
                             "budgets": {s: {"p95": ms * 1_000_000} for s, ms in SEED_P95_MS.items()}}))
    return p


def _current(scale: dict | None = None) -> dict:
    budgets, _ = load_budgets(BUDGETS)
    scale = scale or {}
    return {s: {p: v * (scale.get(s, 1.0) if p == "p95" else 1.0) for p, v in b.items()} for s, b in budgets.items()}


def test_committed_budgets_cover_the_six_stages_and_the_tick_in_ns():
    doc = json.loads(BUDGETS.read_text())
    assert doc["units"] == "ns" and doc["source"]
    assert tuple(doc["budgets"]) == STAGES
    for s in STAGES:  # measured on mmlab (benchmarks/bench_pipeline.py --budgets), far below the seed targets
        b = doc["budgets"][s]
        assert 0 < b["p50"] <= b["p95"] <= b["p99"] < SEED_P95_MS[s] * 1_000_000


def test_gate_passes_on_equal_numbers(tmp_path):
    ok, rows = perf_gate(BUDGETS, BUDGETS, report_path=tmp_path / "gate.md")
    assert ok and [r["status"] for r in rows] == ["ok"] * 7
    assert all(r["delta_pct"] == 0 for r in rows)
    assert (tmp_path / "gate.md").read_text().startswith("# Stage perf gate: PASS")


def test_gate_fails_on_a_ten_percent_p95_regression_and_names_the_stage(tmp_path, seed_budgets):
    cur = tmp_path / "current.json"
    seed = {s: {"p95": ms * 1_000_000 * (1.10 if s == "stage_spread" else 1.0)} for s, ms in SEED_P95_MS.items()}
    cur.write_text(json.dumps(seed))
    ok, rows = perf_gate(seed_budgets, cur, threshold_pct=3.0, report_path=tmp_path / "out" / "gate.md")
    assert not ok
    bad = [r for r in rows if r["status"] == "regression"]
    assert [r["stage"] for r in bad] == ["stage_spread"]
    assert bad[0]["delta_pct"] == pytest.approx(10.0)
    md = (tmp_path / "out" / "gate.md").read_text()
    assert md.startswith("# Stage perf gate: FAIL")
    assert "- `stage_spread`: p95 16_500_000 ns vs budget 15_000_000 ns (+10.00% > +3%)" in md
    assert "| stage_spread |" in md and "REGRESSION" in md


def test_gate_allows_regressions_within_the_threshold():
    ok, rows = perf_gate(BUDGETS, _current({"stage_emit": 1.029, "tick_total": 0.5}), threshold_pct=3.0)
    assert ok and {r["status"] for r in rows} == {"ok"}
    assert not perf_gate(BUDGETS, _current({"stage_emit": 1.029}), threshold_pct=2.0)[0]


def test_gate_reads_a_run_directory_summary(tmp_path, seed_budgets):
    run = tmp_path / "run"
    run.mkdir()
    lat = {s: {"p50": 100.0, "p95": 200.0, "p99": 300.0} for s in STAGES}
    (run / "summary.json").write_text(json.dumps({"pnl_net": 1.0, "stage_latency_ns": lat}))
    ok, rows = perf_gate(seed_budgets, run)
    assert ok and rows[0]["p95_ns"] == 200.0


def test_gate_on_a_run_without_stage_timings_says_so(run_dir):
    with pytest.raises(DataError, match="did not time the stages"):
        perf_gate(BUDGETS, run_dir)


def test_missing_and_unbudgeted_stages(tmp_path):
    cur = _current()
    del cur["stage_guards"]
    cur["stage_extra"] = {"p50": 1.0, "p95": 2.0, "p99": 3.0}
    ok, rows = perf_gate(BUDGETS, cur, report_path=tmp_path / "g.md")
    status = {r["stage"]: r["status"] for r in rows}
    assert not ok and status["stage_guards"] == "missing" and status["stage_extra"] == "unbudgeted"
    assert "`stage_guards`: budgeted but not measured" in (tmp_path / "g.md").read_text()
    assert perf_gate(BUDGETS, cur, allow_missing=True)[0]


def test_units_of_the_current_file_are_converted(tmp_path, seed_budgets):
    ms = {"units": "ms", **{s: {"p50": 1.0, "p95": p95, "p99": p95} for s, p95 in SEED_P95_MS.items()}}
    p = tmp_path / "ms.json"
    p.write_text(json.dumps(ms))
    ok, rows = perf_gate(seed_budgets, p)
    assert ok and rows[0]["p95_ns"] == 60_000_000


def test_bad_inputs_name_the_file_and_value(tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"units": "ns", "budgets": {"stage_spread": {"p50": 1}}}))
    with pytest.raises(DataError, match=r"b.json: every budget needs a p95; missing for \['stage_spread'\]"):
        perf_gate(bad, BUDGETS)
    bad.write_text(json.dumps({"units": "minutes", "budgets": {"stage_spread": {"p95": 1}}}))
    with pytest.raises(DataError, match="units must be one of"):
        perf_gate(bad, BUDGETS)
    with pytest.raises(DataError, match="stage_spread.p95 must be a finite number >= 0, got 'fast'"):
        perf_gate(BUDGETS, {"stage_spread": {"p95": "fast"}})
    with pytest.raises(DataError, match="does not exist"):
        perf_gate(tmp_path / "none.json", BUDGETS)
