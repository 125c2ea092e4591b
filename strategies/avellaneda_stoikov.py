"""Avellaneda-Stoikov: reservation price skewed by inventory risk, optimal spread from volatility and intensity.

In ticks, with ``sigma`` the mid volatility (ticks per sqrt(s), sampled at decisions), ``q = position /
order_qty``, ``gamma = [pipeline.spread] risk_factor``, ``T = horizon_s`` and ``kappa`` the order-arrival decay
(fitted online from public trades, ``intensity_k_per_tick`` until then): reservation ``mid - q gamma sigma^2 T``,
half spread ``(gamma sigma^2 T + 2 / gamma ln(1 + gamma / kappa)) / 2``; with ``order_amount_shape`` (eta, 0 by
default) the inventory-increasing side's size is scaled by ``exp(-eta |q|)`` and rounded down to the lot. One level
per side (``[pipeline.inventory] grid_num`` for a ladder).

``[strategy]`` keys used: ``half_spread_ticks`` (while sigma warms up), ``order_qty``, ``max_position``.
"""

from strategies.base import Preset, quoting_tables


def stage_tables(*, half_spread_ticks=2.0, order_qty=0.001, max_position=0.01) -> dict:
    """AS pricing over the common quoting tables."""
    return quoting_tables(
        spread=dict(model="avellaneda_stoikov", half_spread_ticks=half_spread_ticks, risk_factor=0.0005,
                    horizon_s=1.0, intensity_k_per_tick=0.5, calibrate_intensity=True, order_amount_shape=0.0,
                    min_half_spread_ticks=0.5, max_half_spread_ticks=50.0),
        inventory=dict(order_qty=order_qty, max_position=max_position, skew_mode="model"),
    )


PRESET = Preset(
    name="avellaneda_stoikov",
    stage_tables=stage_tables,
    not_used={"skew_ticks": "the model sets the inventory skew: tune [pipeline.spread] risk_factor",
              "grid_num": "one level per side: set [pipeline.inventory] grid_num for a ladder",
              "grid_interval_ticks": "one level per side: set [pipeline.inventory] grid_interval_ticks"},
)
