"""Progress inside a backtest: the loop runs in slices when a callback listens, with the same result."""

from pathlib import Path

import pytest

from mmlab.config import load_config
from mmlab.data.synth import synth
from mmlab.sim import engine
from mmlab.sim.engine import run_backtest
from mmlab.sim.parallel import ProgressSink, run_parts
from mmlab.sim.strategies import get_strategy, list_strategies


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store_progress")
    synth(root, hours=0.02, seed=3, symbol="AAAUSDT", date="2024-01-01")
    return root


def _cfg(store):
    return load_config({
        "data": {"root": str(store), "symbols": ["AAAUSDT"]},
        "strategy": {"half_spread_ticks": 1.0, "skew_ticks": 1.0, "order_qty": 0.01, "max_position": 0.05},
        "sim": {"maker_fee": -0.00005, "taker_fee": 0.0005, "initial_cash": 100.0},
    })


def _same(a, b):
    for name in ("fills", "orders", "state"):
        assert getattr(a, name).equals(getattr(b, name)), name
    skip = {"wall_s", "loop_s", "jit_s", "events_per_s"}
    assert {k: v for k, v in a.summary.items() if k not in skip} == {k: v for k, v in b.summary.items() if k not in skip}


def test_sliced_run_with_progress_equals_the_plain_run(store, monkeypatch):
    cfg = _cfg(store)
    plain = run_backtest(cfg)
    monkeypatch.setattr(engine, "PROGRESS_EVENTS", 997)  # many slices, cut at odd places
    calls = []
    sliced = run_backtest(cfg, progress=lambda done, total: calls.append((done, total)))
    _same(plain, sliced)
    n = int(plain.summary["events"])
    assert len(calls) >= n // 997
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == n
    assert all(c[1] is None for c in calls)  # store windows: the total is not known in advance


def test_progress_total_is_known_for_in_memory_events(store, monkeypatch):
    cfg = _cfg(store)
    specs, windows, _ = engine._store_windows(cfg, None)
    events = [w.local.copy() for w in windows]  # BBO-free event arrays
    monkeypatch.setattr(engine, "PROGRESS_EVENTS", 4096)
    calls = []
    res = run_backtest(cfg, events=events, symbols=list(specs), progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (res.summary["events"], res.summary["events"])


def test_run_parts_reports_progress_of_running_parts(store, monkeypatch, tmp_path):
    monkeypatch.setattr(engine, "PROGRESS_EVENTS", 2000)

    class Sink(ProgressSink):
        def __init__(self):
            self.seen = []

        def advanced(self, part, events_done, events_total):
            self.seen.append((part.index, events_done))

    sink = Sink()
    res = run_parts(_cfg(store), jobs=1, progress=sink, write=False)
    assert sink.seen and sink.seen[-1] == (0, res.summary["events"])


def test_list_strategies_names_builtins_then_presets():
    names = list_strategies()
    assert names[:2] == ["grid", "grid_pipeline"]
    assert "avellaneda_stoikov" in names and "glft" in names
    assert "strategies.grid" in names and "base" not in names  # the preset named like the built-in
    assert not any(n.startswith("test_") for n in names)
    for name in names[:2]:
        assert get_strategy(name).name
