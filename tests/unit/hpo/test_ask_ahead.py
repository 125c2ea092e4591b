"""The study loops: ask-ahead (the default; fixed ask/tell order, seeded studies reproduce, errors leave no trial
running) and one by one (the trials of Optuna's ``study.optimize``)."""

import dataclasses

import pytest
from conftest import study_dict
from optuna.trial import TrialState

from mmlab.errors import ConfigError, DataError
from mmlab.hpo import runner
from mmlab.hpo.runner import create_study, run_study
from mmlab.hpo.study import parse_study
from mmlab.sim.engine import WALL_TIME_KEYS

TIMINGS = set(WALL_TIME_KEYS) | {"events_per_s"}

pytestmark = pytest.mark.real_data


def _recording(study, log: list):
    ask, tell = study.ask, study.tell

    def rec_ask(*a, **k):
        t = ask(*a, **k)
        log.append(("ask", t.number))
        return t

    def rec_tell(trial, *a, **k):
        out = tell(trial, *a, **k)
        log.append(("tell", trial.number))
        return out

    study.ask, study.tell = rec_ask, rec_tell
    return study


def test_background_thread_asks_one_ahead_in_a_fixed_order(btc_store, tmp_path):
    sc = parse_study(study_dict(btc_store, pruner="none", ask_ahead=True))
    log: list = []
    st = _recording(create_study(sc, f"journal:{tmp_path / 'o.log'}"), log)
    assert runner._optimize(st, sc, 4, 4) == 4
    assert log == [("ask", 0), ("ask", 1), ("tell", 0), ("ask", 2), ("tell", 1), ("ask", 3), ("tell", 2),
                   ("tell", 3)]
    assert [t.state for t in st.trials] == [TrialState.COMPLETE] * 4
    assert all(t.user_attrs["result"]["wait_s"] >= 0 for t in st.trials)


def test_seeded_ask_ahead_studies_give_the_same_trials(btc_store, tmp_path):
    sc = parse_study(study_dict(btc_store, pruner="none", ask_ahead=True))
    got = []
    for name in ("a", "b"):
        res = run_study(sc, 4, storage=f"journal:{tmp_path / (name + '.log')}", out=tmp_path / name, export=False)
        st = create_study(sc, res["storage"])
        got.append([(t.params, t.values) for t in st.trials])
    assert got[0] == got[1] and len(got[0]) == 4


def test_target_total_stops_asking_ahead(btc_store, tmp_path):
    sc = parse_study(study_dict(btc_store, pruner="none", ask_ahead=True))
    st = create_study(sc, f"journal:{tmp_path / 't.log'}")
    assert runner._optimize(st, sc, 10, 2) == 2
    assert [t.state for t in st.trials] == [TrialState.COMPLETE] * 2


def _flaky(real, boom_at: int):
    """``_evaluate_trial`` failing trial 1 with a ``DataError`` and trial ``boom_at`` with a ``RuntimeError``."""

    def flaky(trial, *a, **k):
        if trial.number == 1:
            raise DataError("no events in segment X")
        if trial.number == boom_at:
            raise RuntimeError("boom")
        return real(trial, *a, **k)

    return flaky


def test_failed_trial_is_recorded_and_an_unexpected_error_leaves_no_trial_running(btc_store, tmp_path, monkeypatch):
    sc = parse_study(study_dict(btc_store, pruner="none", ask_ahead=True))
    monkeypatch.setattr(runner, "_evaluate_trial", _flaky(runner._evaluate_trial, boom_at=3))
    st = create_study(sc, f"journal:{tmp_path / 'f.log'}")
    with pytest.raises(RuntimeError, match="boom"):
        runner._optimize(st, sc, 6, 6)
    states = [t.state for t in st.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert "no events in segment X" in st.trials[1].user_attrs["error"]
    assert "not run" in st.trials[4].user_attrs["error"]


def test_ask_ahead_is_the_default_and_stored_only_when_off(btc_store, tmp_path):
    on = parse_study(study_dict(btc_store))
    assert on.ask_ahead is True and "ask_ahead" not in on.to_dict()["study"]
    off = parse_study(study_dict(btc_store, ask_ahead=False))
    assert off.ask_ahead is False and off.to_dict()["study"]["ask_ahead"] is False
    assert parse_study(off.to_dict()) == dataclasses.replace(off, source="study dict")
    with pytest.raises(ConfigError, match="study.ask_ahead .* must be true or false"):
        parse_study(study_dict(btc_store, ask_ahead="yes"))
    # The setting orders one process's asks and tells only: a study joins with either.
    url = f"journal:{tmp_path / 'd.log'}"
    create_study(off, url)
    assert create_study(on, url).user_attrs[runner.STUDY_ATTR]["study"]["ask_ahead"] is False
    with pytest.raises(ConfigError, match="different definition"):
        create_study(parse_study(study_dict(btc_store, seed=8)), url)


def test_one_by_one_loop_gives_the_trials_of_optuna_optimize(btc_store, tmp_path):
    sc = parse_study(study_dict(btc_store, pruner="median", split="0.5min", ask_ahead=False))
    ours = create_study(sc, f"journal:{tmp_path / 's.log'}")
    assert runner._optimize(ours, sc, 4, 4) == 4
    ref = create_study(sc, f"journal:{tmp_path / 'r.log'}")
    ref.optimize(runner.make_objective(sc), n_trials=4, gc_after_trial=False)
    for a, b in zip(ours.trials, ref.trials, strict=True):
        assert (a.params, a.values, a.state, a.intermediate_values) == (b.params, b.values, b.state,
                                                                        b.intermediate_values)
        sa, sb = (t.user_attrs["result"]["summary"] for t in (a, b))
        assert {k: v for k, v in sa.items() if k not in TIMINGS} == {k: v for k, v in sb.items() if k not in TIMINGS}
    assert "wait_s" not in ours.trials[0].user_attrs["result"]


def test_one_by_one_loop_records_failed_trials_and_goes_on(btc_store, tmp_path, monkeypatch):
    sc = parse_study(study_dict(btc_store, pruner="none", ask_ahead=False))
    monkeypatch.setattr(runner, "_evaluate_trial", _flaky(runner._evaluate_trial, boom_at=2))
    st = create_study(sc, f"journal:{tmp_path / 'f.log'}")
    with pytest.raises(RuntimeError, match="boom"):
        runner._optimize(st, sc, 4, 4)
    assert [t.state for t in st.trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert "no events in segment X" in st.trials[1].user_attrs["error"]


_STUDY_IN_PROCESS = """
import json, sys
from mmlab.hpo.runner import create_study, run_study
from mmlab.hpo.study import parse_study
sc = parse_study(json.loads(sys.argv[1]))
res = run_study(sc, 4, storage="journal:" + sys.argv[2], out=sys.argv[2] + ".out", export=False)
print(json.dumps([[t.params, t.values] for t in create_study(sc, res["storage"]).trials]))
"""


def _study_in_process(spec: dict, path: str) -> list:
    """Run the seeded study in a fresh interpreter; its trials' (params, values) as JSON."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _STUDY_IN_PROCESS, json.dumps(spec), path], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_seeded_default_study_is_identical_in_another_process(btc_store, tmp_path):
    spec = study_dict(btc_store, pruner="none")
    assert parse_study(spec).ask_ahead
    here = _study_in_process(spec, str(tmp_path / "a.log"))
    there = _study_in_process(spec, str(tmp_path / "b.log"))
    assert here == there and len(here) == 4


def test_step_gate_runs_steps_only_while_open_and_closing_waits_for_the_step():
    import threading

    gate = runner._StepGate()
    started, release, closed = threading.Event(), threading.Event(), threading.Event()
    log: list = []

    def step():
        started.set()
        release.wait(5)
        log.append("step done")

    worker = threading.Thread(target=gate.step, args=(step,))
    worker.start()
    assert not started.wait(0.05)  # closed: the step does not start
    gate.set()
    assert started.wait(5)

    def close():
        gate.clear()
        log.append("closed")
        closed.set()

    closer = threading.Thread(target=close)
    closer.start()
    assert not closed.wait(0.05)  # closing waits for the step in progress
    release.set()
    assert closed.wait(5)
    worker.join(5)
    closer.join(5)
    assert log == ["step done", "closed"]
