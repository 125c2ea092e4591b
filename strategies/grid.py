"""The reference grid through the pipeline stages: the same decisions as the simulator's built-in ``grid``.

Run it as ``[strategy] name = "strategies.grid"`` (``"grid"`` is the built-in reference); unlike the reference
it accepts ``[pipeline.*]`` tables, e.g. a warm-up or a fill-probability filter on top of the grid. Every
``[strategy]`` key applies: fixed half spread ``half_spread_ticks`` around the mid, reservation skew
``skew_ticks`` per ``order_qty`` of position, ``grid_num`` levels ``grid_interval_ticks`` apart, ``order_qty``
per order, no bids at ``+max_position``, no asks at ``-max_position``.
"""

from mmlab.pipeline_config import grid_stage_tables
from strategies.base import Preset


def stage_tables(*, half_spread_ticks=2.0, skew_ticks=0.0, order_qty=0.001, max_position=0.01, grid_num=5,
                 grid_interval_ticks=1) -> dict:
    """Stage tables of the reference grid (:func:`mmlab.pipeline_config.grid_stage_tables`)."""
    return grid_stage_tables(half_spread_ticks=half_spread_ticks, skew_ticks=skew_ticks, order_qty=order_qty,
                             max_position=max_position, grid_num=grid_num, grid_interval_ticks=grid_interval_ticks)


PRESET = Preset(name="grid", stage_tables=stage_tables)
