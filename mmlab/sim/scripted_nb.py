"""The ``scripted`` strategy: replays a fixed table of actions (``script_row_dtype``) at the decision ticks.

Useful to test exchange, queue and latency models by hand and to replay a recorded action log. Each row is
emitted at the first decision tick whose time is at or after ``ts``, for its symbol, in table order (the table
must be sorted by ``ts``). No quotes are written.

>>> import numpy as np
>>> from mmlab.types import script_row_dtype
>>> spec = scripted_strategy_spec(np.zeros(0, dtype=script_row_dtype))
>>> spec.name
'scripted'
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mmlab.types import script_row_dtype


@njit(cache=True, error_model="numpy")
def scripted_decide_nb(symbol_id, now_ns, book, bid_qty, ask_qty, b, position, orders, n_orders, params, state,
                       out_quotes, out_actions, out_n):
    """Emit the script rows of ``symbol_id`` due at ``now_ns``; ``state[symbol_id, 0]`` is the row cursor."""
    k = np.int64(state[symbol_id, 0])
    n_a = 0
    while k < params.shape[0] and params[k].ts <= now_ns and n_a < out_actions.shape[0]:
        r = params[k]
        if r.symbol_id == symbol_id:
            a = out_actions[n_a]
            a.order_id = r.order_id
            a.price_ticks = r.price_ticks
            a.qty = r.qty
            a.kind = r.kind
            a.side = r.side
            a.tif = r.tif
            a.flags = 0
            a.level = -1
            a.order_type = r.order_type
            n_a += 1
        k += 1
    state[symbol_id, 0] = k
    out_n[0] = 0
    out_n[1] = n_a
    return 0


def scripted_strategy_spec(script: np.ndarray):
    """A ``StrategySpec`` replaying ``script`` (a ``script_row_dtype`` array sorted by ``ts``)."""
    from mmlab.sim.strategies import StrategySpec

    script = np.ascontiguousarray(script, dtype=script_row_dtype)
    if len(script) > 1 and np.any(np.diff(script["ts"]) < 0):
        raise ValueError("script rows must be sorted by ts")
    if len(script) == 0:
        script = np.zeros(1, dtype=script_row_dtype)
        script["ts"] = np.iinfo(np.int64).max
        script["symbol_id"] = -1
    return StrategySpec(
        name="scripted",
        decide=scripted_decide_nb,
        params_dtype=script_row_dtype,
        build_params=lambda cfg, specs: script,
        n_state=1,
        max_quotes=lambda cfg: 2,
        per_symbol_params=False,
    )
