"""The live gate kernel, LiveConfig validation and the ``mmlab live`` command's argument handling."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from live.gate import cancel_all_nb
from mmlab.cli import app
from mmlab.cli_live import parse_duration_s
from mmlab.config import load_config
from mmlab.errors import ConfigError
from mmlab.types import (
    ActionKind,
    OrderStatus,
    RequestKind,
    order_view_dtype,
    sim_action_dtype,
)


def test_cancel_all_cancels_acknowledged_orders_without_a_request_in_flight():
    v = np.zeros(4, dtype=order_view_dtype)
    v["order_id"] = [1, 2, 3, 4]
    v["status"] = [OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.NONE, OrderStatus.NEW]
    v["req"] = [RequestKind.NONE, RequestKind.NONE, RequestKind.NEW, RequestKind.CANCEL]
    v["cancel_pending"] = [False, False, False, True]
    out = np.zeros(8, dtype=sim_action_dtype)
    n = np.zeros(2, dtype=np.int64)
    assert cancel_all_nb(v, 4, out, n) == 2
    assert list(out["order_id"][:2]) == [1, 2] and (out["kind"][:2] == ActionKind.CANCEL).all()
    assert list(n) == [0, 2]


def test_live_config_validates_and_names_the_key():
    cfg = load_config({"live": {"venue": "bybit-spot", "warmup_s": 5, "tick_sizes": {"BTCUSDT": 0.01}}})
    assert cfg.live.warmup_s == 5.0
    with pytest.raises(ConfigError, match=r"\[live\] venue must be one of"):
        load_config({"live": {"venue": "okx"}})
    with pytest.raises(ConfigError, match=r"unknown key live.warmup in .*did you mean 'warmup_s'"):
        load_config({"live": {"warmup": 5}})
    with pytest.raises(ConfigError, match=r"\[live\] backoff_max_s must be >= backoff_initial_s"):
        load_config({"live": {"backoff_initial_s": 5, "backoff_max_s": 1}})
    # The live section does not change the config id: a live session and its backtest share it.
    assert load_config({"live": {"warmup_s": 1}}).config_id == load_config({}).config_id


def test_duration_parsing():
    assert parse_duration_s("60s") == 60.0 and parse_duration_s("500ms") == 0.5 and parse_duration_s("2h") == 7200
    with pytest.raises(ConfigError, match="--duration 'soon' is not a duration"):
        parse_duration_s("soon")


def test_live_command_requires_paper_and_reports_bad_input():
    r = CliRunner().invoke(app, ["live", "--symbols", "BTCUSDT"])
    assert r.exit_code == 2 and "needs --paper" in r.output
    r = CliRunner().invoke(app, ["live", "--paper", "--venue", "okx", "--symbols", "BTCUSDT"])
    assert r.exit_code == 2 and "[live] venue must be one of" in r.output
