"""The reference grid strategy's decision kernel, by hand."""

import numpy as np
import pytest

from mmlab.data.book_nb import book_apply_nb, new_books
from mmlab.sim.grid_nb import GRID_NO_BOOK, GRID_OK, grid_decide_nb
from mmlab.types import (
    ActionKind,
    Kind,
    OrderStatus,
    RequestKind,
    Side,
    TimeInForce,
    grid_params_dtype,
    order_view_dtype,
    quote_dtype,
    sim_action_dtype,
)


def _book(bid, ask):
    book, bq, aq = new_books(1, 1024)
    if bid is not None:
        book_apply_nb(book, bq, aq, 0, int(Kind.DEPTH), int(Side.BID), bid, 1.0)
    if ask is not None:
        book_apply_nb(book, bq, aq, 0, int(Kind.DEPTH), int(Side.ASK), ask, 1.0)
    return book, bq, aq


def _params(**kw):
    p = np.zeros(1, dtype=grid_params_dtype)
    base = dict(grid_num=2, grid_interval_ticks=2, half_spread_ticks=1.5, skew_ticks=1.0, order_qty=1.0, max_position=2.0)
    base.update(kw)
    for k, v in base.items():
        p[k] = v
    return p


def _view(*orders):
    v = np.zeros(16, dtype=order_view_dtype)
    for i, (oid, side, status, req) in enumerate(orders):
        v[i]["order_id"] = oid
        v[i]["price_ticks"] = oid
        v[i]["side"] = side
        v[i]["status"] = status
        v[i]["req"] = req
        v[i]["qty"] = 1.0
    return v, len(orders)


def _decide(book, position, view, n, params):
    bk, bq, aq = book
    quotes = np.zeros(8, dtype=quote_dtype)
    actions = np.zeros(32, dtype=sim_action_dtype)
    out_n = np.zeros(2, dtype=np.int64)
    reason = grid_decide_nb(0, 0, bk, bq, aq, 0, position, view, n, params, np.zeros((1, 1)), quotes, actions, out_n)
    q = [(int(x["side"]), int(x["price_ticks"])) for x in quotes[: out_n[0]]]
    a = [(int(x["kind"]), int(x["order_id"]), int(x["side"]), int(x["tif"])) for x in actions[: out_n[1]]]
    return reason, q, a


B, A = int(Side.BID), int(Side.ASK)
NEW, NONE = int(OrderStatus.NEW), int(OrderStatus.NONE)
PLACE, CANCEL = int(ActionKind.PLACE), int(ActionKind.CANCEL)
GTX = int(TimeInForce.GTX)


def test_flat_grid_prices_from_the_reservation_price():
    # mid 101, reservation 101: bid min(floor(99.5), 100) = 99, ask max(ceil(102.5), 102) = 103.
    reason, q, a = _decide(_book(100, 102), 0.0, *_view(), _params())
    assert reason == GRID_OK
    assert q == [(B, 99), (B, 97), (A, 103), (A, 105)]
    assert a == [(PLACE, 99, B, GTX), (PLACE, 97, B, GTX), (PLACE, 103, A, GTX), (PLACE, 105, A, GTX)]


def test_skew_moves_quotes_and_the_touch_bounds_them():
    # position 1 = 1 order_qty: reservation 100 -> bid min(98, 100) = 98, ask max(102, 102) = 102.
    _, q, _ = _decide(_book(100, 102), 1.0, *_view(), _params())
    assert q == [(B, 98), (B, 96), (A, 102), (A, 104)]
    # position -3 with max_position 5: reservation 104 -> the bid is capped at the best bid 100.
    _, q, _ = _decide(_book(100, 102), -3.0, *_view(), _params(max_position=5.0))
    assert q[:2] == [(B, 100), (B, 98)] and q[2:] == [(A, 106), (A, 108)]


def test_position_limits_drop_a_side():
    _, q, _ = _decide(_book(100, 102), 2.0, *_view(), _params())
    assert all(s == A for s, _ in q)
    _, q, _ = _decide(_book(100, 102), -2.0, *_view(), _params())
    assert all(s == B for s, _ in q)


def test_cancels_unwanted_acknowledged_orders_and_places_missing_ones():
    view = _view(
        (99, B, NEW, int(RequestKind.NONE)),  # desired: kept
        (50, B, NEW, int(RequestKind.NONE)),  # not desired: canceled
        (103, A, NEW, int(RequestKind.CANCEL)),  # desired but a cancel is in flight: neither canceled nor replaced
        (60, A, NONE, int(RequestKind.NEW)),  # not acknowledged yet: not cancellable
    )
    _, _, a = _decide(_book(100, 102), 0.0, *view, _params())
    assert a == [(CANCEL, 50, B, 0), (PLACE, 97, B, GTX), (PLACE, 105, A, GTX)]


def test_no_quotes_and_cancel_everything_without_a_two_sided_book():
    view = _view((99, B, NEW, int(RequestKind.NONE)))
    reason, q, a = _decide(_book(100, None), 0.0, *view, _params())
    assert reason == GRID_NO_BOOK and q == [] and a == [(CANCEL, 99, B, 0)]


@pytest.mark.parametrize("half_spread", [0.0, 0.5, 2.0, 3.7])
def test_quotes_never_cross_the_touch(half_spread):
    _, q, _ = _decide(_book(100, 101), 0.0, *_view(), _params(half_spread_ticks=half_spread, skew_ticks=0.0))
    assert max(p for s, p in q if s == B) <= 100 and min(p for s, p in q if s == A) >= 101
