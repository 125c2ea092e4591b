"""Builders of one symbol's pipeline record and buffers for the stage tests."""

import numpy as np
import pytest

from mmlab.pipeline_config import make_pipeline
from mmlab.types import OrderStatus, RequestKind


class Tick:
    """A pipeline record plus buffers, with a book of ``depth`` levels of ``level_qty`` from bid/ask outwards."""

    def __init__(self, pl, bid=100, ask=101, depth=5, level_qty=1.0, max_orders=16):
        self.pl = pl
        self.r = pl.rec(0)
        self.b = pl.buffers(max_orders=max_orders)
        self.n_orders = 0
        self.set_book(bid, ask, depth, level_qty)

    @property
    def inp(self):
        return self.r["inp"]

    @property
    def out(self):
        return self.r["out"]

    @property
    def md(self):
        return self.r["md"]

    @property
    def bid_ticks(self):
        return self.r["bid_ticks"]

    @property
    def bid_qty(self):
        return self.r["bid_qty"]

    @property
    def ask_ticks(self):
        return self.r["ask_ticks"]

    @property
    def ask_qty(self):
        return self.r["ask_qty"]

    def depth(self):
        """The four depth arrays, as stage functions take them."""
        return self.bid_ticks, self.bid_qty, self.ask_ticks, self.ask_qty

    def set_book(self, bid, ask, depth=5, level_qty=1.0):
        self.inp["best_bid_tick"] = bid
        self.inp["best_ask_tick"] = ask
        self.inp["n_bid_levels"] = depth
        self.inp["n_ask_levels"] = depth
        for a in self.depth():
            a[:] = 0
        self.bid_ticks[:depth] = bid - np.arange(depth)
        self.ask_ticks[:depth] = ask + np.arange(depth)
        self.bid_qty[:depth] = level_qty
        self.ask_qty[:depth] = level_qty

    def book_update(self, ts_local_ns, update_id=-1, snapshot=False):
        from mmlab.pipeline import on_book_update_nb

        return on_book_update_nb(self.r, ts_local_ns, ts_local_ns, update_id, snapshot)

    def add_order(self, order_id, side, price_ticks, qty=1.0, queue_ahead_qty=np.nan, sent_ts_ns=0, cancel_pending=False,
                  status=OrderStatus.NEW, req=RequestKind.NONE):
        w = self.b.orders[self.n_orders]
        w["order_id"] = order_id
        w["side"] = side
        w["price_ticks"] = price_ticks
        w["qty"] = qty
        w["queue_ahead_qty"] = queue_ahead_qty
        w["sent_ts_ns"] = sent_ts_ns
        w["cancel_pending"] = cancel_pending
        w["status"] = status
        w["req"] = RequestKind.CANCEL if cancel_pending else req
        self.n_orders += 1

    def decide(self, now_ns):
        return self.pl.decide(now_ns, self.b, self.n_orders)

    def quotes(self):
        q = self.b.quotes[: self.out["n_quotes"]]
        return [(int(r["side"]), int(r["price_ticks"]), float(r["qty"])) for r in q]

    def actions(self):
        a = self.b.actions[: self.out["n_actions"]]
        return [(int(r["kind"]), int(r["order_id"]), int(r["side"]), int(r["price_ticks"]), float(r["qty"])) for r in a]


@pytest.fixture
def tick():
    """Factory: ``tick(fetch_md=..., spread=..., ..., bid=100, ask=101)`` -> Tick."""

    def make(bid=100, ask=101, depth=5, level_qty=1.0, max_orders=16, **stages):
        return Tick(make_pipeline(**stages), bid=bid, ask=ask, depth=depth, level_qty=level_qty, max_orders=max_orders)

    return make
