"""Order-book imbalance skew: the fair price leans toward the thinner side of the book.

Fair price = micro price plus ``imbalance_skew_ticks`` (1.0) times the imbalance ``(bid - ask) / (bid + ask)``
of the top ``imbalance_levels`` (5) levels: a heavy bid side (buyers queueing) moves both quotes up, so the bid
joins more often and the ask backs off. Fixed half spread ``half_spread_ticks`` and reservation skew
``skew_ticks`` per ``order_qty`` of position around it; one level per side.

``[strategy]`` keys used: ``half_spread_ticks``, ``skew_ticks``, ``order_qty``, ``max_position``.
"""

from strategies.base import Preset, quoting_tables


def stage_tables(*, half_spread_ticks=2.0, skew_ticks=0.0, order_qty=0.001, max_position=0.01) -> dict:
    """Micro price plus imbalance skew, fixed spread."""
    return quoting_tables(
        spread=dict(model="fixed", fair="micro", half_spread_ticks=half_spread_ticks, imbalance_levels=5,
                    imbalance_skew_ticks=1.0),
        inventory=dict(order_qty=order_qty, max_position=max_position, skew_mode="fixed", skew_ticks=skew_ticks),
    )


PRESET = Preset(
    name="imbalance_alpha",
    stage_tables=stage_tables,
    not_used={"grid_num": "one level per side: set [pipeline.inventory] grid_num for a ladder",
              "grid_interval_ticks": "one level per side: set [pipeline.inventory] grid_interval_ticks"},
)
