"""A pass's output rows ordered by parameter set, and per-tick totals of each set (the batch's result frames)."""

import numpy as np

from mmlab.sim.engine import _tick_totals, rows_by_set
from mmlab.types import fill_dtype


def _rows(sids: list[int]) -> np.ndarray:
    a = np.zeros(len(sids), dtype=fill_dtype)
    a["symbol_id"] = sids
    a["order_id"] = np.arange(len(sids))
    a["price_ticks"] = 100 + np.arange(len(sids))
    return a


def test_rows_keep_their_order_within_each_set_and_get_the_symbol_of_their_own_run():
    # 2 symbols x 3 sets: instance i = set i // 2 on symbol i % 2.
    a = _rows([5, 0, 3, 1, 0, 4, 2, 5])
    out, bounds = rows_by_set(a, 2, 3)
    assert bounds.tolist() == [0, 3, 5, 8]
    assert out["order_id"].tolist() == [1, 3, 4, 2, 6, 0, 5, 7]
    assert out["symbol_id"].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert out["price_ticks"].tolist() == (100 + out["order_id"]).tolist()  # whole records moved


def test_a_set_without_rows_gets_empty_bounds_and_one_set_is_returned_as_is():
    a = _rows([0, 2, 0])
    out, bounds = rows_by_set(a, 1, 3)
    assert bounds.tolist() == [0, 2, 2, 3]
    assert out["order_id"].tolist() == [0, 2, 1]
    same, b1 = rows_by_set(a, 1, 1)
    assert same is a and b1.tolist() == [0, 3]


def test_quote_rows_follow_an_explicit_set_without_remapping():
    a = _rows([7, 7, 7, 7])
    out, bounds = rows_by_set(a, 2, 2, np.array([1, 0, 1, 0]), remap=False)
    assert out["order_id"].tolist() == [1, 3, 0, 2]
    assert out["symbol_id"].tolist() == [7, 7, 7, 7]
    assert bounds.tolist() == [0, 2, 4]


def test_tick_totals_add_each_sets_rows_of_one_time_only():
    ts = np.array([10, 10, 20, 10, 10, 30])
    v = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    assert _tick_totals(ts, v, np.array([0, 3, 6])).tolist() == [3.0, 3.0, 4.0, 24.0, 24.0, 32.0]
    # Rows out of time order within a set fall back to a sort of that set's times.
    ts2 = np.array([20, 10, 20, 5, 5])
    assert _tick_totals(ts2, v[:5], np.array([0, 3, 5])).tolist() == [5.0, 2.0, 5.0, 24.0, 24.0]
