"""Gueant-Lehalle-Fernandez-Tapia: the closed-form asymptotic quotes with online intensity calibration.

In ticks, ``c1 = ln(1 + gamma / k) / gamma``, ``c2 = sqrt(gamma / (2 A k) (1 + gamma / k)^(k / gamma + 1))``,
half spread ``c1 + sigma c2 / 2`` and skew ``sigma c2`` per unit ``q = position / order_qty``; ``A`` (arrivals
per second at the touch) and ``k`` (decay per tick) are fitted online from public trades by depth
(``intensity_a_per_s`` / ``intensity_k_per_tick`` until enough trades are held), ``sigma`` from the mid at
decisions, ``gamma = [pipeline.spread] risk_factor``. One level per side.

``[strategy]`` keys used: ``half_spread_ticks`` (while the estimates warm up), ``order_qty``, ``max_position``.
"""

from strategies.base import Preset, quoting_tables


def stage_tables(*, half_spread_ticks=2.0, order_qty=0.001, max_position=0.01) -> dict:
    """GLFT pricing over the common quoting tables."""
    return quoting_tables(
        spread=dict(model="glft", half_spread_ticks=half_spread_ticks, risk_factor=0.001, intensity_a_per_s=1.0,
                    intensity_k_per_tick=0.5, calibrate_intensity=True, intensity_buffer_size=1000,
                    intensity_min_trades=100, min_half_spread_ticks=0.5, max_half_spread_ticks=50.0),
        inventory=dict(order_qty=order_qty, max_position=max_position, skew_mode="model"),
    )


PRESET = Preset(
    name="glft",
    stage_tables=stage_tables,
    not_used={"skew_ticks": "the model sets the inventory skew: tune [pipeline.spread] risk_factor",
              "grid_num": "one level per side: set [pipeline.inventory] grid_num for a ladder",
              "grid_interval_ticks": "one level per side: set [pipeline.inventory] grid_interval_ticks"},
)
