"""The live gate around a strategy's decision kernel: HARD guards the runner raises (warm-up, stale feed,
invalid book, kill switch, shutdown) hold quoting and cancel the symbol's working orders; otherwise the
strategy's own kernel decides, unchanged (so an open gate gives exactly the backtest's decisions).

The gate value of symbol ``s`` lives in the last column of the strategy state array (``state[s, -1]``, a
``LiveGate`` code), which the runner sets between simulator steps.
"""

from __future__ import annotations

import dataclasses

from numba import njit

from mmlab.types import ActionKind, OrderStatus, RequestKind, TimeInForce

_CANCEL = int(ActionKind.CANCEL)
_REQ_NONE = int(RequestKind.NONE)
_NEW = int(OrderStatus.NEW)
_PARTIAL = int(OrderStatus.PARTIALLY_FILLED)
_GTC = int(TimeInForce.GTC)


@njit(cache=True, error_model="numpy")
def cancel_all_nb(orders, n_orders, out_actions, out_n):
    """No quotes; a CANCEL for every acknowledged working order without a request in flight. Returns actions."""
    n_a = 0
    for j in range(n_orders):
        o = orders[j]
        if o.req != _REQ_NONE or o.cancel_pending or not (o.status == _NEW or o.status == _PARTIAL):
            continue
        if n_a >= out_actions.shape[0]:
            break
        a = out_actions[n_a]
        a.order_id = o.order_id
        a.price_ticks = o.price_ticks
        a.qty = o.qty
        a.kind = _CANCEL
        a.side = o.side
        a.tif = _GTC
        a.flags = 0
        a.level = -1
        a.order_type = o.order_type
        n_a += 1
    out_n[0] = 0
    out_n[1] = n_a
    return n_a


_GATED: dict = {}


def gated_decide(inner):
    """A decision kernel with the strategy's signature that returns ``-gate`` after cancelling everything while
    ``state[symbol_id, -1] != 0``, and otherwise calls ``inner`` with the same arguments."""
    key = id(inner)
    if key in _GATED:
        return _GATED[key]

    @njit(error_model="numpy")
    def decide(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
               out_quotes, out_actions, out_n):
        gate = state[symbol_id, state.shape[1] - 1]
        if gate != 0.0:
            cancel_all_nb(orders, n_orders, out_actions, out_n)
            return -int(gate)
        return inner(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
                     out_quotes, out_actions, out_n)

    _GATED[key] = decide
    return decide


def gated_spec(spec):
    """``spec`` with its decision kernel gated and one more state slot (the gate) per symbol."""
    return dataclasses.replace(spec, decide=gated_decide(spec.decide), n_state=max(int(spec.n_state), 1) + 1)
