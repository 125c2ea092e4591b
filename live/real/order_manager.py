"""Real-mode order manager: the decision actions of the strategy (``sim_action_dtype`` rows) -> signed Bybit v5
requests, with deterministic ``orderLinkId`` per action (a retry never duplicates an order), pre-trade limits
(max order notional, max position, max orders per second), the venue's view of our working orders and position
(from REST answers, the private websocket and reconciliation) and a halt on authentication errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass, field
from decimal import Decimal

from live.real.rest import AuthRejected, BybitRest, TokenBucket, VenueError
from mmlab.errors import ConfigError, MmlabError
from mmlab.types import ActionKind, OrderFlag, Side, TimeInForce

logger = logging.getLogger("mmlab.live.real")

#: Venue order statuses after which an order no longer works.
CLOSED = ("Filled", "Cancelled", "Rejected", "Deactivated", "Missing")


class LimitRefused(MmlabError):
    """A configured real-mode limit refused an order before it was sent."""


class Halted(MmlabError):
    """Real trading is halted (authentication rejected); nothing more is sent."""


@dataclass(frozen=True)
class RealLimits:
    """Pre-trade limits of real mode; each must be configured (> 0)."""

    max_order_notional: float  # quote currency per order (price * qty)
    max_position_qty: float  # |position + working orders on the side| in base units
    max_orders_per_s: float  # new orders per second (token bucket; extra orders are refused, not delayed)

    @classmethod
    def from_live_config(cls, lc) -> RealLimits:
        """The ``[live] real_max_*`` keys; a refusal naming each missing one."""
        keys = ("real_max_order_notional", "real_max_position_qty", "real_max_orders_per_s")
        missing = [k for k in keys if not (float(getattr(lc, k, 0.0) or 0.0) > 0)]
        if missing:
            raise ConfigError("real mode refused: set the limits " + ", ".join(f"[live] {k}" for k in missing)
                              + " (each > 0) in the config or with --set live.<key>=<value>")
        return cls(*(float(getattr(lc, k)) for k in keys))


@dataclass
class WorkingOrder:
    """Our view of one venue order."""

    link_id: str
    symbol: str
    side: int  # Side.BID / Side.ASK
    price: str
    qty: float
    order_id: str = ""
    status: str = "Sent"
    leaves_qty: float = 0.0
    cum_exec_qty: float = 0.0
    reduce_only: bool = False
    sim_key: tuple | None = None  # (symbol_id, strategy order id)
    history: list = field(default_factory=list)

    @property
    def working(self) -> bool:
        return self.status not in CLOSED


def _decimals(step: float) -> int:
    return max(0, -Decimal(repr(float(step))).normalize().as_tuple().exponent)


def fmt_step(x: float, step: float) -> str:
    """``x`` as a decimal string with the step's decimals (``fmt_step(65135.0, 0.1) == "65135.0"``)."""
    return f"{x:.{_decimals(step)}f}"


class OrderManager:
    """Routes actions to the venue; thread-safe (the runner calls it from a worker thread).

    Parameters
    ----------
    rest : BybitRest
    symbols : list of str
        Symbol of each ``symbol_id``.
    tick_sizes, lot_sizes : list of float
        Per symbol, to format prices and quantities.
    limits : RealLimits
    tag : str
        Session tag, the prefix of every ``orderLinkId`` (<= 16 chars).
    log : callable
        ``log(event: dict)`` for the session log.
    """

    def __init__(self, rest: BybitRest, symbols: list[str], tick_sizes, lot_sizes, limits: RealLimits, *,
                 tag: str, category: str = "linear", log=None):
        self.rest = rest
        self.symbols = list(symbols)
        self.tick = [float(x) for x in tick_sizes]
        self.lot = [float(x) for x in lot_sizes]
        self.limits = limits
        self.tag = tag[:16]
        self.category = category
        self.log = log or (lambda event: None)
        self.orders: dict[str, WorkingOrder] = {}  # link id -> order
        self.by_sim: dict[tuple, str] = {}
        self.by_venue_id: dict[str, str] = {}
        self.position = {s: 0.0 for s in self.symbols}
        self.place_seq = [0] * len(self.symbols)
        self.order_bucket = TokenBucket(limits.max_orders_per_s, burst=max(limits.max_orders_per_s, 1.0))
        self.halted: str | None = None
        self.counts: dict[str, int] = {}
        self.executions: list[dict] = []
        self.lock = threading.RLock()

    # ------------------------------------------------------------------------------------------ ids

    def link_id(self, symbol_id: int, seq: int) -> str:
        """Deterministic ``orderLinkId`` of the ``seq``-th placement of the session for ``symbol_id``."""
        return f"{self.tag}-{symbol_id}-{seq}"

    def _count(self, k: str, n: int = 1) -> None:
        self.counts[k] = self.counts.get(k, 0) + n

    def halt(self, reason: str) -> None:
        """Stop sending (an authentication error would repeat on every request)."""
        with self.lock:
            if self.halted is None:
                self.halted = reason
                logger.error("real trading HALTED: %s", reason)
                self.log({"event": "halt", "reason": reason})

    def _check_halt(self) -> None:
        if self.halted is not None:
            raise Halted(f"real trading is halted ({self.halted}); restart after fixing the cause")

    def _call(self, fn, **kw):
        self._check_halt()
        try:
            return fn(**kw)
        except AuthRejected as exc:
            self.halt(str(exc))
            raise

    # ---------------------------------------------------------------------------------------- orders

    def check_limits(self, symbol_id: int, side: int, price: float, qty: float, reduce_only: bool) -> None:
        """Raise :class:`LimitRefused` when the order breaks a configured limit."""
        sym = self.symbols[symbol_id]
        lim = self.limits
        notional = price * qty
        if notional > lim.max_order_notional:
            raise LimitRefused(f"{sym} order {qty} @ {price} has notional {notional:.2f} > [live] "
                               f"real_max_order_notional = {lim.max_order_notional}; lower the order size or raise "
                               "the limit")
        if not reduce_only:
            same = sum(o.leaves_qty or o.qty for o in self.orders.values()
                       if o.working and o.symbol == sym and o.side == side and not o.reduce_only)
            projected = self.position[sym] + side * (same + qty)
            if abs(projected) > lim.max_position_qty + 1e-12:
                raise LimitRefused(f"{sym} order {qty} on side {Side(side).name} would take the position to "
                                   f"{projected:g} (with working orders) > [live] real_max_position_qty = "
                                   f"{lim.max_position_qty}")
        if not self.order_bucket.try_take():
            raise LimitRefused(f"{sym} order refused: more than [live] real_max_orders_per_s = "
                               f"{lim.max_orders_per_s} new orders per second")

    def place(self, symbol_id: int, side: int, price: float, qty: float, *, post_only: bool = True,
              reduce_only: bool = False, link_id: str | None = None, sim_key: tuple | None = None) -> WorkingOrder:
        """Create a limit order (PostOnly unless ``post_only=False``); returns our record of it."""
        with self.lock:
            self._check_halt()
            sym = self.symbols[symbol_id]
            if link_id is None:
                self.place_seq[symbol_id] += 1
                link_id = self.link_id(symbol_id, self.place_seq[symbol_id])
            try:
                self.check_limits(symbol_id, side, price, qty, reduce_only)
            except LimitRefused as exc:
                self._count("refused")
                self.log({"event": "refused", "symbol": sym, "order_link_id": link_id, "reason": str(exc)})
                raise
            o = WorkingOrder(link_id, sym, int(side), fmt_step(price, self.tick[symbol_id]), float(qty),
                             leaves_qty=float(qty), reduce_only=reduce_only, sim_key=sim_key)
            self.orders[link_id] = o
            if sim_key is not None:
                self.by_sim[sim_key] = link_id
        try:
            res = self._call(self.rest.create_order, category=self.category, symbol=sym,
                             side="Buy" if side > 0 else "Sell", qty=fmt_step(qty, self.lot[symbol_id]),
                             price=o.price, order_link_id=link_id, post_only=post_only, reduce_only=reduce_only)
        except VenueError:
            with self.lock:
                if o.status == "Sent":
                    o.status = "Rejected"
            raise
        with self.lock:
            if res.get("orderId"):
                o.order_id = res["orderId"]
                self.by_venue_id[o.order_id] = link_id
            if o.status == "Sent":
                o.status = "New"
            self._count("placed")
            self.log({"event": "placed", "symbol": sym, "order_link_id": link_id, "order_id": o.order_id,
                      "side": o.side, "price": o.price, "qty": o.qty, "duplicate": bool(res.get("duplicate"))})
        return o

    def amend(self, link_id: str, *, price: float | None = None, qty: float | None = None) -> None:
        o = self.orders[link_id]
        sid = self.symbols.index(o.symbol)
        p = fmt_step(price, self.tick[sid]) if price is not None else None
        q = fmt_step(qty, self.lot[sid]) if qty is not None else None
        if qty is not None and price is not None and float(p) * qty > self.limits.max_order_notional:
            raise LimitRefused(f"{o.symbol} amend of {link_id} to {q} @ {p} exceeds [live] real_max_order_notional"
                               f" = {self.limits.max_order_notional}")
        try:
            self._call(self.rest.amend_order, category=self.category, symbol=o.symbol, order_link_id=link_id,
                       price=p, qty=q)
        except VenueError as exc:
            if isinstance(exc, AuthRejected):
                raise
            self._gone(o, exc)
            return
        with self.lock:
            if p is not None:
                o.price = p
            if qty is not None:
                o.qty = float(qty) + o.cum_exec_qty
                o.leaves_qty = float(qty)
            self._count("amended")
            self.log({"event": "amended", "symbol": o.symbol, "order_link_id": link_id, "price": o.price,
                      "qty": o.qty})

    def cancel(self, link_id: str) -> None:
        o = self.orders[link_id]
        try:
            self._call(self.rest.cancel_order, category=self.category, symbol=o.symbol, order_link_id=link_id)
        except VenueError as exc:
            if isinstance(exc, AuthRejected):
                raise
            self._gone(o, exc)
            return
        with self.lock:
            o.status = "Cancelled"
            o.leaves_qty = 0.0
            self._count("canceled")
            self.log({"event": "canceled", "symbol": o.symbol, "order_link_id": link_id})

    def _gone(self, o: WorkingOrder, exc: VenueError) -> None:
        """Amend/cancel of an order the venue no longer holds (it filled or was cancelled meanwhile)."""
        from live.real.rest import RET_ORDER_GONE

        if exc.ret_code not in RET_ORDER_GONE:
            raise exc
        with self.lock:
            if o.working:
                o.status = "Missing"
            self._count("order_gone")
            self.log({"event": "order_gone", "symbol": o.symbol, "order_link_id": o.link_id,
                      "ret_code": exc.ret_code})

    def cancel_all(self, symbol_id: int | None = None) -> None:
        """``cancel-all`` for one symbol (or every symbol); our records follow."""
        for sid in ([symbol_id] if symbol_id is not None else range(len(self.symbols))):
            sym = self.symbols[sid]
            self._call(self.rest.cancel_all, category=self.category, symbol=sym)
            with self.lock:
                for o in self.orders.values():
                    if o.symbol == sym and o.working:
                        o.status, o.leaves_qty = "Cancelled", 0.0
                self.log({"event": "cancel_all", "symbol": sym})

    def working(self, symbol: str | None = None) -> list[WorkingOrder]:
        with self.lock:
            return [o for o in self.orders.values() if o.working and (symbol is None or o.symbol == symbol)]

    # ------------------------------------------------------------------------------ strategy actions

    def route_actions(self, symbol_id: int, actions) -> list[tuple]:
        """Decision actions (``sim_action_dtype`` rows) of one symbol -> request tuples for :meth:`execute`.

        Runs on the runner's thread (cheap, no I/O): PLACE gets its ``orderLinkId`` here, so the id depends
        only on the order of the decisions.
        """
        reqs = []
        for a in actions:
            kind = int(a["kind"])
            key = (symbol_id, int(a["order_id"]))
            tick = self.tick[symbol_id]
            if kind == ActionKind.PLACE:
                self.place_seq[symbol_id] += 1
                link = self.link_id(symbol_id, self.place_seq[symbol_id])
                self.by_sim[key] = link
                post_only = bool(int(a["flags"]) & OrderFlag.POST_ONLY) or int(a["tif"]) == TimeInForce.GTX
                reqs.append(("place", symbol_id, int(a["side"]), int(a["price_ticks"]) * tick, float(a["qty"]),
                             post_only, bool(int(a["flags"]) & OrderFlag.REDUCE_ONLY), link, key))
            elif key in self.by_sim:
                link = self.by_sim[key]
                if kind == ActionKind.CANCEL:
                    reqs.append(("cancel", link))
                    del self.by_sim[key]
                elif kind == ActionKind.MODIFY:
                    reqs.append(("amend", link, int(a["price_ticks"]) * tick, float(a["qty"])))
        return reqs

    def execute(self, req: tuple) -> None:
        """Send one request from :meth:`route_actions` (blocking). Refusals and venue errors are logged."""
        op = req[0]
        try:
            if op == "place":
                _, sid, side, price, qty, post_only, reduce_only, link, key = req
                self.place(sid, side, price, qty, post_only=post_only, reduce_only=reduce_only, link_id=link,
                           sim_key=key)
            elif op == "cancel":
                if req[1] in self.orders and self.orders[req[1]].working:
                    self.cancel(req[1])
            elif op == "amend":
                if req[1] in self.orders and self.orders[req[1]].working:
                    self.amend(req[1], price=req[2], qty=req[3])
        except (LimitRefused, Halted):
            pass
        except AuthRejected:
            pass  # halted in _call
        except VenueError as exc:
            self._count("venue_errors")
            self.log({"event": "venue_error", "op": op, "error": str(exc)[:300]})
            if op == "place" and req[7] in self.orders:
                o = self.orders[req[7]]
                if o.status == "Sent":
                    o.status = "Rejected"

    # ---------------------------------------------------------------------------------- private stream

    def on_stream(self, topic: str, rows: list) -> None:
        """Apply private websocket rows (``order``, ``execution``, ``position``)."""
        with self.lock:
            for r in rows:
                if r.get("category", self.category) != self.category:
                    continue
                sym = r.get("symbol")
                if sym not in self.position:
                    continue
                if topic == "order":
                    link = r.get("orderLinkId") or self.by_venue_id.get(r.get("orderId", ""), "")
                    o = self.orders.get(link)
                    if o is None:
                        self._count("foreign_order_updates")
                        continue
                    o.order_id = r.get("orderId") or o.order_id
                    self.by_venue_id[o.order_id] = link
                    if o.status != "Missing":
                        o.status = r.get("orderStatus", o.status)
                    o.leaves_qty = float(r.get("leavesQty") or 0.0)
                    o.cum_exec_qty = max(o.cum_exec_qty, float(r.get("cumExecQty") or 0.0))
                    if o.status in ("Cancelled", "Rejected") and r.get("rejectReason") not in (None, "EC_NoError"):
                        self.log({"event": "venue_cancel", "symbol": sym, "order_link_id": link,
                                  "reason": r.get("rejectReason")})
                elif topic == "execution":
                    self._count("executions")
                    ex = {k: r.get(k) for k in ("symbol", "execId", "orderId", "orderLinkId", "side", "execPrice",
                                                "execQty", "execFee", "isMaker", "execTime")}
                    self.executions.append(ex)
                    self.log({"event": "execution", **ex})
                elif topic == "position":
                    size = float(r.get("size") or 0.0)
                    self.position[sym] = -size if r.get("side") == "Sell" else size

    def snapshot(self) -> dict:
        """Counts, positions and working orders (for the summary)."""
        with self.lock:
            return {"counts": dict(self.counts), "position": dict(self.position), "halted": self.halted,
                    "working": [{"order_link_id": o.link_id, "symbol": o.symbol, "side": o.side, "price": o.price,
                                 "leaves_qty": o.leaves_qty, "status": o.status} for o in self.working()],
                    "n_orders": len(self.orders), "n_executions": len(self.executions)}


def session_tag(config_id: str, start_ns: int) -> str:
    """Short tag of one session (first part of every orderLinkId): unique per start, 10 hex chars."""
    return "mm" + hashlib.sha256(f"{config_id}:{int(start_ns)}".encode()).hexdigest()[:8]


class JsonlLog:
    """The session log ``real.jsonl``; scrubs the key and secret from every record (they are never written)."""

    def __init__(self, path, secrets: tuple[str, ...] = ()):
        self.f = open(path, "a") if path is not None else None
        self._secrets = tuple(s for s in secrets if s)
        self.records: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict) -> None:
        line = json.dumps(event, default=str)
        for s in self._secrets:
            line = line.replace(s, "***")
        with self.lock:
            self.records.append(json.loads(line))
            if self.f is not None:
                self.f.write(line + "\n")
                self.f.flush()

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
