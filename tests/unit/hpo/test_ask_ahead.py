"""The ask-ahead study loop: fixed ask/tell order, seeded studies reproduce, errors leave no trial running."""

import dataclasses

import pytest
from conftest import study_dict
from optuna.trial import TrialState

from mmlab.errors import ConfigError, DataError
from mmlab.hpo import runner
from mmlab.hpo.runner import create_study, run_study
from mmlab.hpo.study import parse_study

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


def test_failed_trial_is_recorded_and_an_unexpected_error_leaves_no_trial_running(btc_store, tmp_path, monkeypatch):
    sc = parse_study(study_dict(btc_store, pruner="none", ask_ahead=True))
    real = runner._evaluate_trial

    def flaky(trial, *a, **k):
        if trial.number == 1:
            raise DataError("no events in segment X")
        if trial.number == 3:
            raise RuntimeError("boom")
        return real(trial, *a, **k)

    monkeypatch.setattr(runner, "_evaluate_trial", flaky)
    st = create_study(sc, f"journal:{tmp_path / 'f.log'}")
    with pytest.raises(RuntimeError, match="boom"):
        runner._optimize(st, sc, 6, 6)
    states = [t.state for t in st.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL]
    assert "no events in segment X" in st.trials[1].user_attrs["error"]
    assert "not run" in st.trials[4].user_attrs["error"]


def test_ask_ahead_key_parses_and_is_stored_only_when_on(btc_store):
    off = parse_study(study_dict(btc_store))
    assert off.ask_ahead is False and "ask_ahead" not in off.to_dict()["study"]
    on = parse_study(study_dict(btc_store, ask_ahead=True))
    assert on.ask_ahead is True and on.to_dict()["study"]["ask_ahead"] is True
    assert parse_study(on.to_dict()) == dataclasses.replace(on, source="study dict")
    with pytest.raises(ConfigError, match="study.ask_ahead .* must be true or false"):
        parse_study(study_dict(btc_store, ask_ahead="yes"))


def test_one_by_one_loop_still_runs(btc_store, tmp_path):
    sc = parse_study(study_dict(btc_store, pruner="none"))
    res = run_study(sc, 2, storage=f"journal:{tmp_path / 's.log'}", out=tmp_path / "s", export=False)
    st = create_study(sc, res["storage"])
    assert [t.state for t in st.trials] == [TrialState.COMPLETE] * 2
    assert "wait_s" not in st.trials[0].user_attrs["result"]
