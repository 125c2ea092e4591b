"""Hand-built market data and scripted actions for the simulator's unit tests (times in ms, prices in ticks)."""

from __future__ import annotations

import numpy as np

from mmlab.config import load_config
from mmlab.sim.engine import SymbolSpec, run_backtest
from mmlab.sim.scripted_nb import scripted_strategy_spec
from mmlab.types import ActionKind, Kind, OrderType, Side, TimeInForce, event_dtype, script_row_dtype

MS = 1_000_000
BID, ASK = int(Side.BID), int(Side.ASK)
DEPTH, TRADE, CLEAR, SNAPSHOT = int(Kind.DEPTH), int(Kind.TRADE), int(Kind.CLEAR), int(Kind.SNAPSHOT)
GTC, GTX, IOC, FOK = int(TimeInForce.GTC), int(TimeInForce.GTX), int(TimeInForce.IOC), int(TimeInForce.FOK)
LIMIT, MARKET = int(OrderType.LIMIT), int(OrderType.MARKET)
PLACE, CANCEL, MODIFY = int(ActionKind.PLACE), int(ActionKind.CANCEL), int(ActionKind.MODIFY)

SPEC = SymbolSpec("TEST", tick_size=0.1, lot_size=0.001)


class Tape:
    """Market rows in time order. ``feed_ms`` = ts_local - ts_exch of every row (default 0)."""

    def __init__(self, feed_ms: float = 0.0):
        self.rows: list[tuple] = []
        self.feed_ms = feed_ms

    def _add(self, t_ms, kind, side, price, qty, symbol_id=0):
        te = int(round(t_ms * MS))
        self.rows.append((te, te + int(round(self.feed_ms * MS)), kind, side, price, qty, symbol_id))
        return self

    def book(self, t_ms, bids: dict, asks: dict, symbol_id=0):
        """A full snapshot: CLEAR both sides, then SNAPSHOT levels."""
        self._add(t_ms, CLEAR, 0, 0, 0.0, symbol_id)
        for p, q in bids.items():
            self._add(t_ms, SNAPSHOT, BID, p, q, symbol_id)
        for p, q in asks.items():
            self._add(t_ms, SNAPSHOT, ASK, p, q, symbol_id)
        return self

    def depth(self, t_ms, side, price, qty, symbol_id=0):
        return self._add(t_ms, DEPTH, side, price, qty, symbol_id)

    def trade(self, t_ms, aggressor, price, qty, symbol_id=0):
        return self._add(t_ms, TRADE, aggressor, price, qty, symbol_id)

    def end(self, t_ms, symbol_id=0):
        """A harmless row that keeps the run alive until ``t_ms`` (a deep level far from the touch)."""
        return self._add(t_ms, DEPTH, BID, 1, 1.0, symbol_id)

    def events(self) -> np.ndarray:
        ev = np.zeros(len(self.rows), dtype=event_dtype)
        for i, (te, tl, k, sd, p, q, sid) in enumerate(self.rows):
            ev[i] = (te, tl, p, q, -1, k, sd, True, sid)
        return ev[np.argsort(ev["ts_local"], kind="stable")]


def script(*rows) -> np.ndarray:
    """Rows (t_ms, kind, order_id, side, price_ticks, qty[, tif[, order_type[, symbol_id]]])."""
    out = np.zeros(len(rows), dtype=script_row_dtype)
    for i, r in enumerate(rows):
        t_ms, kind, oid, side, price, qty = r[:6]
        tif = r[6] if len(r) > 6 else GTC
        otype = r[7] if len(r) > 7 else LIMIT
        sid = r[8] if len(r) > 8 else 0
        out[i] = (int(round(t_ms * MS)), sid, oid, price, qty, kind, side, tif, otype)
    return out


def place(t_ms, oid, side, price, qty, tif=GTC, otype=LIMIT, symbol_id=0):
    return (t_ms, PLACE, oid, side, price, qty, tif, otype, symbol_id)


def cancel(t_ms, oid, symbol_id=0):
    return (t_ms, CANCEL, oid, BID, 0, 0.0, GTC, LIMIT, symbol_id)


def modify(t_ms, oid, side, price, qty, symbol_id=0):
    return (t_ms, MODIFY, oid, side, price, qty, GTC, LIMIT, symbol_id)


def run(tape: Tape, actions: list, symbols=None, **sim):
    """Run ``actions`` (scripted) over ``tape`` with a 1 ms decision tick; ``sim`` overrides [sim] keys."""
    sim_cfg = {"entry_latency_ms": 0.0, "response_latency_ms": 0.0, "maker_fee": 0.0, "taker_fee": 0.0}
    sim_cfg.update(sim)
    cfg = load_config({"strategy": {"interval_ms": 1.0}, "sim": sim_cfg})
    spec = scripted_strategy_spec(script(*actions))
    return run_backtest(cfg, events=tape.events(), symbols=symbols or [SPEC], strategy=spec)


def events_of(result, order_id=None):
    """(event, ts_exch, qty, leaves_qty, reason) of the orders frame, optionally for one order id."""
    df = result.orders
    if order_id is not None:
        df = df.filter(df["order_id"] == order_id)
    return list(zip(df["event"], df["ts_exch"], df["qty"], df["leaves_qty"], df["reason"]))
