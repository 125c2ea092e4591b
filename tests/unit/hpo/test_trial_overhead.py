"""A trial's lean path (prepared segment replay, summary-only frames, memoized kernel signature) gives the
results of plain ``run_backtest`` runs on the raw segment events."""

import numpy as np
import pytest
from conftest import study_dict

from mmlab.hpo import segments as seg_mod
from mmlab.hpo.objective import (
    combine_summaries,
    evaluate,
    evaluate_batch,
    run_segment,
    segment_result,
)
from mmlab.hpo.study import parse_study
from mmlab.sim import engine
from mmlab.sim.engine import WALL_TIME_KEYS, run_backtest, run_backtest_batch
from mmlab.types import Kind

pytestmark = pytest.mark.real_data


def _same_summary(a: dict, b: dict) -> None:
    for k, v in b.items():
        if k not in WALL_TIME_KEYS and k != "per_symbol":
            assert a[k] == pytest.approx(v, nan_ok=True), k
    assert a["per_symbol"] == b["per_symbol"]


def test_summary_only_frames_give_the_full_summary(btc_store):
    sc = parse_study(study_dict(btc_store))
    cfg = sc.trial_config({"strategy.half_spread_ticks": 1.0, "strategy.grid_num": 2})
    specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
    full = run_backtest(cfg, events=segs[0].events, symbols=specs)
    lean = run_backtest_batch(cfg, [cfg], events=segs[0].events, symbols=specs, decisions=False, frames=False)[0]
    _same_summary(lean.summary, full.summary)
    assert lean.orders is None and lean.mids is None and lean.decisions is None
    for name in ("fills", "state", "labels"):
        assert getattr(lean, name).equals(getattr(full, name)), name
    # A batch with summary-only frames: every set gets its own run's summary.
    cfgs = [sc.trial_config({"strategy.half_spread_ticks": h, "strategy.grid_num": 2}) for h in (0.5, 2.0)]
    res = run_backtest_batch(cfgs[0], cfgs, events=segs[0].events, symbols=specs, decisions=False, frames=False)
    for c, r in zip(cfgs, res):
        _same_summary(r.summary, run_backtest(c, events=segs[0].events, symbols=specs).summary)


def test_segments_carry_their_replay_rows_and_exchange_order(btc_store):
    sc = parse_study(study_dict(btc_store))
    _, segs = seg_mod.load_segments(sc.base_config(), sc.segment_ns, cache=False)
    for seg in segs:
        n_bbo = int((seg.events["kind"] == Kind.BBO).sum())
        local, ex = seg.replay.local, seg.replay.exch
        assert seg.replay.n_bbo == n_bbo and len(local) == len(seg.events) - n_bbo
        assert not (local["kind"] == Kind.BBO).any()
        assert np.array_equal(local, seg.events[seg.events["kind"] != Kind.BBO])
        assert np.array_equal(ex, local[np.argsort(local["ts_exch"], kind="stable")])
        assert seg.run_events is seg.replay


def test_trial_runs_take_the_exchange_order_from_the_segment(btc_store, monkeypatch):
    from mmlab.data import bridge

    sc = parse_study(study_dict(btc_store))
    cfg = sc.trial_config({"strategy.half_spread_ticks": 1.0, "strategy.grid_num": 2})
    specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
    want = run_backtest(cfg, events=segs[0].events, symbols=specs).summary

    def no_sort(_ev):
        raise AssertionError("the segment's exchange-time order was sorted again")

    monkeypatch.setattr(bridge, "exch_order", no_sort)
    _same_summary(run_segment(cfg, specs, segs[0]).summary, want)
    (got,) = evaluate_batch([cfg], specs, segs[:1])
    assert got.summary["events_bbo_skipped"] == want["events_bbo_skipped"] == segs[0].replay.n_bbo > 0


def test_trial_runs_equal_plain_runs_on_the_raw_events(btc_store):
    sc = parse_study(study_dict(btc_store))
    cfg = sc.trial_config({"strategy.half_spread_ticks": 0.5, "strategy.grid_num": 3})
    specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
    assert len(segs) == 2
    runs = [run_backtest(cfg, events=s.events, symbols=specs) for s in segs]
    for seg, r in zip(segs, runs):
        _same_summary(run_segment(cfg, specs, seg).summary, r.summary)
    plain = [segment_result(r, s.label, s.regime) for r, s in zip(runs, segs)]
    ev = evaluate(cfg, specs, segs)
    want = combine_summaries(plain)
    for k in ("pnl_net", "n_fills", "events", "events_bbo_skipped", "sharpe", "max_drawdown", "queue_eta_ms_p50",
              "notional", "net_bps", "fill_rate"):
        assert ev.summary[k] == pytest.approx(want[k], nan_ok=True), k
    assert want["events_bbo_skipped"] > 0
    (evb,) = evaluate_batch([cfg], specs, segs)
    assert evb.summary["pnl_net"] == ev.summary["pnl_net"]
    assert evb.summary["events_bbo_skipped"] == want["events_bbo_skipped"]


def test_kernel_signature_key_follows_numba_array_types():
    a = np.zeros(4)
    ro = a.copy()
    ro.flags.writeable = False
    assert engine._array_type_key(a) == engine._array_type_key(np.ones(7))
    assert engine._array_type_key(a) != engine._array_type_key(ro)
    assert engine._array_type_key(a) != engine._array_type_key(np.zeros((2, 2)))
    assert engine._array_type_key(a) != engine._array_type_key(np.zeros(8)[::2])
    assert engine._array_type_key(a) != engine._array_type_key(np.zeros(4, dtype=np.float32))
    assert engine._array_type_key(1.0) is None


def test_evaluation_combines_the_same_with_and_without_segment_reports(btc_store):
    sc = parse_study(study_dict(btc_store))
    cfg = sc.trial_config({"strategy.half_spread_ticks": 1.0, "strategy.grid_num": 2})
    specs, segs = seg_mod.load_segments(cfg, sc.segment_ns)
    seen: list = []
    reported = evaluate(cfg, specs, segs, on_segment=lambda k, c: seen.append(k))
    quiet = evaluate(cfg, specs, segs)
    assert seen == list(range(len(segs)))
    skip = set(WALL_TIME_KEYS) | {"events_per_s"}
    for ev in (reported, quiet):
        assert {k: v for k, v in ev.summary.items() if k not in skip} == \
            {k: v for k, v in combine_summaries(ev.segments).items() if k not in skip}
        for name, r in ev.regimes.items():
            own = [p for p in ev.segments if p.regime == name]
            assert r == {**combine_summaries(own), "n_segments": len(own)}
    assert reported.summary["pnl_net"] == quiet.summary["pnl_net"]
    (batched,) = evaluate_batch([cfg], specs, segs)
    assert batched.regimes.keys() == quiet.regimes.keys()
