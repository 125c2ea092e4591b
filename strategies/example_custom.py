"""A strategy with its own compiled pricing function: trade-flow skew over the GLFT quotes.

The whole strategy is this file. ``flow_skew_pricing_nb`` has the spread stage's signature: it runs the stock
spread stage (GLFT here, chosen by the stage tables below) and then moves the fair price against the recent
aggressive flow: sells hitting the bids push it down, buys lifting the asks push it up, by up to
``FLOW_SKEW_TICKS``. ``Preset(pricing=...)`` compiles the simulator's decision function with this function in
place of the spread stage. Run it with ``[strategy] name = "example_custom"``.

Constants of the pricing function are module globals, frozen when it compiles (numba); editing this file
recompiles. Tunable values belong in the stage tables (``[pipeline.spread]`` keys such as ``risk_factor``).
"""

import numpy as np
from numba import njit

from mmlab.pipeline.spread import spread_nb
from mmlab.types import SpreadReason
from strategies.base import Preset
from strategies.glft import stage_tables as glft_tables

FLOW_SKEW_TICKS = 1.0  # fair price shift at fully one-sided flow, ticks
_SKIPPED = int(SpreadReason.SKIPPED)


@njit(cache=True)
def flow_skew_pricing_nb(now_ns, inp, bid_ticks, bid_qty, ask_ticks, ask_qty, params, state, out):
    """GLFT pricing, then the fair price shifted by the traded-flow imbalance (returns a ``SpreadReason``)."""
    reason = spread_nb(now_ns, inp, bid_ticks, bid_qty, ask_ticks, ask_qty, params, state, out)
    if reason == _SKIPPED:
        return reason
    sells = out.flow_bid_qty_per_s  # aggressive sells, base units per second
    buys = out.flow_ask_qty_per_s
    total = sells + buys
    if total > 0.0 and not np.isnan(total):
        out.fair_ticks = out.fair_ticks + FLOW_SKEW_TICKS * (buys - sells) / total
    return reason


PRESET = Preset(
    name="example_custom",
    stage_tables=glft_tables,
    not_used={"skew_ticks": "the GLFT model sets the inventory skew: tune [pipeline.spread] risk_factor"},
    pricing=flow_skew_pricing_nb,
)
