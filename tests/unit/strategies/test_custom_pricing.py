"""A strategy file with its own compiled pricing function (strategies/example_custom.py) runs in the simulator."""

import numpy as np
import pytest

from mmlab.config import load_config
from mmlab.data.book_nb import book_apply_nb, new_books
from mmlab.errors import ConfigError
from mmlab.pipeline.spread import spread_on_trade_nb
from mmlab.sim.pipeline_strategy import pipeline_sim_decide_nb
from mmlab.sim.strategies import get_strategy
from mmlab.types import Kind, order_view_dtype, quote_dtype, sim_action_dtype
from strategies import example_custom
from strategies.base import Preset, compile_with_pricing


def _decide(fn, arr, now_ns):
    book, bq, aq = new_books(1, n_levels=256)
    for i in range(5):
        book_apply_nb(book, bq, aq, 0, int(Kind.SNAPSHOT), 1, 1000 - i, 2.0)
        book_apply_nb(book, bq, aq, 0, int(Kind.SNAPSHOT), -1, 1001 + i, 2.0)
    orders = np.zeros(8, dtype=order_view_dtype)
    q = np.zeros(64, dtype=quote_dtype)
    a = np.zeros(80, dtype=sim_action_dtype)
    cnt = np.zeros(2, dtype=np.int64)
    fn(0, now_ns, book, bq, aq, 0, 0.0, orders, 0, arr, np.zeros((1, 8)), q, a, cnt)
    return arr[0]["out"], q[: cnt[0]]


def test_custom_pricing_shifts_the_fair_price_against_one_sided_flow():
    cfg = load_config({"strategy": {"name": "example_custom"}, "pipeline": {"guards": {"warmup_s": 0.0}}})
    spec = get_strategy("example_custom")
    assert spec.decide is not pipeline_sim_decide_nb
    runs = {}
    for name, fn in (("base", pipeline_sim_decide_nb), ("custom", spec.decide)):
        arr = example_custom.PRESET.build(cfg, 1).arr
        for k in range(50):  # aggressive sells only
            spread_on_trade_nb(arr[0]["spread_params"], arr[0]["spread_state"], 10**9 + k * 10**6, -1, 1000, 0.5,
                               1000, 1001)
        runs[name] = _decide(fn, arr, 2 * 10**9)
    (base, qb), (custom, qc) = runs["base"], runs["custom"]
    assert base["flow_bid_qty_per_s"] > 0 and base["flow_ask_qty_per_s"] == 0
    assert base["fair_ticks"] == 1000.5  # the stock decision function still prices at the mid
    assert custom["fair_ticks"] == pytest.approx(base["fair_ticks"] - example_custom.FLOW_SKEW_TICKS)
    assert len(qb) == len(qc) == 2


def test_pricing_must_be_a_compiled_function():
    with pytest.raises(ConfigError, match="must be an @njit"):
        compile_with_pricing(pipeline_sim_decide_nb, lambda *a: 0, "bad")
    with pytest.raises(ConfigError, match="must be an @njit"):
        Preset(name="bad", stage_tables=dict, pricing=print).spec()
