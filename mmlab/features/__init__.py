"""Causal feature kernels, safe to run live: every value uses only data up to the time it is computed.

Kernels take arrays and scalars; their state lives in the caller's structured arrays (for the pipeline: the
``spread`` stage's state record). Times are int64 ns, prices integer ticks.

- :mod:`mmlab.features.ema` — EMA, half-life EMA on irregular times, decayed event rates.
- :mod:`mmlab.features.volatility` — ring buffer of mid samples and the realized volatility of its changes.
- :mod:`mmlab.features.intensity` — trade-arrival intensity by depth, ``lambda(d) = A exp(-k d)`` fitted online.
- :mod:`mmlab.features.imbalance` — order-book depth sums, imbalance and micro price.
"""

from mmlab.features.ema import decayed_rate_add_nb, decayed_rate_at_nb, ema_nb, halflife_alpha_nb, time_ema_nb
from mmlab.features.imbalance import book_imbalance_nb, depth_sum_nb, level_qty_at_nb, micro_price_ticks_nb
from mmlab.features.intensity import intensity_fit_nb, intensity_push_nb, trade_depth_bucket_nb
from mmlab.features.volatility import realized_push_nb, realized_sigma_nb, realized_sums_nb, ring_push_nb

__all__ = [
    "book_imbalance_nb",
    "decayed_rate_add_nb",
    "decayed_rate_at_nb",
    "depth_sum_nb",
    "ema_nb",
    "halflife_alpha_nb",
    "intensity_fit_nb",
    "intensity_push_nb",
    "level_qty_at_nb",
    "micro_price_ticks_nb",
    "realized_push_nb",
    "realized_sigma_nb",
    "realized_sums_nb",
    "ring_push_nb",
    "time_ema_nb",
    "trade_depth_bucket_nb",
]
