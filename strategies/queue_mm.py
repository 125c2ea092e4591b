"""Queue-position market making for large-tick assets (the spread is one tick most of the time).

Price improvement is rarely available, so the edge is the place in the queue: quote at the touch on both sides
(half spread 0, clamped to the touch), keep a working order when the touch moves by up to ``keep_ticks`` (2)
ticks toward it or ``keep_back_ticks`` (2) away from it instead of re-queueing at the back, and enter a level
only when the estimated probability to fill within ``horizon_ms`` (1 s) from the queue ahead and the traded
flow on that side is at least ``tau_entry`` (0.02; held orders need ``tau_hold`` 0.005). Inventory skew:
``skew_ticks`` per ``order_qty`` of position, which moves the side that adds to the position off the touch.

``[strategy]`` keys used: ``skew_ticks``, ``order_qty``, ``max_position``.
"""

from strategies.base import Preset, quoting_tables


def stage_tables(*, skew_ticks=1.0, order_qty=0.001, max_position=0.01) -> dict:
    """Join-the-touch quoting with queue keeping and fill-probability gates."""
    return quoting_tables(
        spread=dict(model="fixed", half_spread_ticks=0.0, flow_halflife_ms=5000.0),
        inventory=dict(order_qty=order_qty, max_position=max_position, skew_mode="fixed", skew_ticks=skew_ticks),
        queue_aware=dict(keep_ticks=2, keep_back_ticks=2, tau_entry=0.02, tau_hold=0.005, horizon_ms=1000.0),
    )


PRESET = Preset(
    name="queue_mm",
    stage_tables=stage_tables,
    not_used={"half_spread_ticks": "it quotes at the touch; set [pipeline.spread] half_spread_ticks to back off",
              "grid_num": "one level per side: set [pipeline.inventory] grid_num for a ladder",
              "grid_interval_ticks": "one level per side: set [pipeline.inventory] grid_interval_ticks"},
)
