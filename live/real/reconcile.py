"""Reconciliation of real mode: the venue's open orders and position (REST) against the order manager's view,
at start and periodically.

- an open order at the venue we do not know (placed by hand, left by an earlier session): ``foreign``; with
  ``policy="cancel"`` (default) it is cancelled, with ``"adopt"`` it is tracked, with ``"report"`` only logged;
- an order of ours the venue holds though we thought it closed (a create whose answer was lost): tracked again;
- an order we think is working that the venue does not hold (its cancel/fill message was lost): ``missing``,
  marked closed;
- the position: the venue's value replaces ours; a difference is reported.
"""

from __future__ import annotations

from live.real.order_manager import OrderManager, WorkingOrder

POLICIES = ("cancel", "adopt", "report")


def reconcile(om: OrderManager, *, policy: str = "cancel") -> dict:
    """Compare and repair; returns the report (also logged as one ``reconcile`` record)."""
    if policy not in POLICIES:
        raise ValueError(f"reconcile policy {policy!r}; use one of {POLICIES}")
    report = {"foreign": [], "missing": [], "revived": [], "position_diff": {}, "canceled_foreign": 0}
    for sym in om.symbols:
        venue_rows = om.rest.open_orders(category=om.category, symbol=sym)
        pos_rows = om.rest.positions(category=om.category, symbol=sym)
        seen = set()
        with om.lock:
            for r in venue_rows:
                link = r.get("orderLinkId") or ""
                o = om.orders.get(link) if link else None
                if o is None and r.get("orderId") in om.by_venue_id:
                    o = om.orders.get(om.by_venue_id[r["orderId"]])
                if o is None:
                    report["foreign"].append({"symbol": sym, "order_id": r.get("orderId"), "order_link_id": link,
                                              "side": r.get("side"), "price": r.get("price"),
                                              "leaves_qty": r.get("leavesQty")})
                    continue
                seen.add(o.link_id)
                if not o.working:
                    report["revived"].append(o.link_id)
                o.order_id = r.get("orderId") or o.order_id
                om.by_venue_id[o.order_id] = o.link_id
                o.status = r.get("orderStatus") or "New"
                o.leaves_qty = float(r.get("leavesQty") or 0.0)
                o.price = r.get("price") or o.price
            for o in om.orders.values():
                if o.symbol == sym and o.working and o.status != "Sent" and o.link_id not in seen:
                    o.status, o.leaves_qty = "Missing", 0.0
                    report["missing"].append(o.link_id)
            size = 0.0
            for p in pos_rows:
                s = float(p.get("size") or 0.0)
                size += -s if p.get("side") == "Sell" else s
            if abs(size - om.position[sym]) > 1e-12:
                report["position_diff"][sym] = {"ours": om.position[sym], "venue": size}
            om.position[sym] = size
        for f in [f for f in report["foreign"] if f["symbol"] == sym]:
            if policy == "cancel":
                om.rest.request("POST", "/v5/order/cancel",
                                {"category": om.category, "symbol": sym, "orderId": f["order_id"]})
                report["canceled_foreign"] += 1
            elif policy == "adopt":
                with om.lock:
                    link = f["order_link_id"] or f"venue-{f['order_id']}"
                    om.orders[link] = WorkingOrder(link, sym, 1 if f["side"] == "Buy" else -1, f["price"],
                                                   float(f["leaves_qty"] or 0.0), order_id=f["order_id"],
                                                   status="New", leaves_qty=float(f["leaves_qty"] or 0.0))
                    om.by_venue_id[f["order_id"]] = link
    om._count("reconciles")
    om.log({"event": "reconcile", "policy": policy, **report})
    return report
