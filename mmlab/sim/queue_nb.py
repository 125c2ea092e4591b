"""Queue position models on L2 (market-by-price) data.

Our order's queue position is the quantity ahead of it at its price level, ``front_qty``. At acceptance it is the
level's size (we join the back). Trades at our price move us forward; level size changes (cancels, new orders)
move us forward only as the model says:

- ``RISK_AVERSE``: only trades advance us; when the level shrinks below our position, our position is capped at
  the new level size (we cannot be behind more than the level holds).
- the probability family (``POWER_PROB``, ``POWER_PROB2``, ``POWER_PROB3``, ``LOG_PROB``, ``LOG_PROB2``): a
  decrease of the level not explained by trades since the last depth update is a cancellation; with probability
  ``p(front, back)`` it happened behind us, else in front. The forms of ``p`` are those of hftbacktest's
  ProbQueueModel family (``f(back) / (f(back) + f(front))``, ``f(back) / f(back + front)`` and
  ``1 - f(front / (front + back))``, with ``f(x) = x ** n`` or ``log(1 + x)``).

``front_qty`` below zero is quantity traded beyond us: executable quantity, turned into fills by the exchange
model in lots (``queue_exec_qty_nb``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from mmlab.types import QueueModelId

_RISK_AVERSE = int(QueueModelId.RISK_AVERSE)
_POWER_PROB = int(QueueModelId.POWER_PROB)
_POWER_PROB2 = int(QueueModelId.POWER_PROB2)
_POWER_PROB3 = int(QueueModelId.POWER_PROB3)
_LOG_PROB = int(QueueModelId.LOG_PROB)
_LOG_PROB2 = int(QueueModelId.LOG_PROB2)


@njit(cache=True, _nrt=False, error_model="numpy")
def queue_prob_nb(model, power, front_qty, back_qty):
    """Probability that a cancellation at the level happened behind our order (inf -> 1; 0/0 gives nan)."""
    if model == _POWER_PROB:
        fb = back_qty**power
        p = fb / (fb + front_qty**power)
    elif model == _POWER_PROB2:
        p = back_qty**power / (back_qty + front_qty) ** power
    elif model == _POWER_PROB3:
        p = 1.0 - (front_qty / (front_qty + back_qty)) ** power
    elif model == _LOG_PROB:
        fb = np.log1p(back_qty)
        p = fb / (fb + np.log1p(front_qty))
    elif model == _LOG_PROB2:
        p = np.log1p(back_qty) / np.log1p(back_qty + front_qty)
    else:
        p = 1.0
    if np.isinf(p):
        p = 1.0
    return p


@njit(cache=True, _nrt=False, error_model="numpy")
def queue_on_trade_nb(front_qty, cum_trade_qty, trade_qty):
    """A trade of ``trade_qty`` at our price: returns (front_qty, cum_trade_qty)."""
    return front_qty - trade_qty, cum_trade_qty + trade_qty


@njit(cache=True, _nrt=False, error_model="numpy")
def queue_on_depth_nb(model, power, front_qty, cum_trade_qty, prev_qty, new_qty):
    """The level at our price changed from ``prev_qty`` to ``new_qty``: returns (front_qty, cum_trade_qty)."""
    if model == _RISK_AVERSE:
        return min(front_qty, new_qty), cum_trade_qty
    # Trades at the level since the last depth update already moved us; only the rest of the change is new.
    chg = prev_qty - new_qty - cum_trade_qty
    if chg < 0.0:
        # The level grew: orders joined behind us.
        return min(front_qty, new_qty), 0.0
    back = prev_qty - front_qty
    p = queue_prob_nb(model, power, front_qty, back)
    est = front_qty - (1.0 - p) * chg + min(back - p * chg, 0.0)
    # An undefined estimate (0/0 probability at an empty level) falls back to the level size, as Rust's f64::min.
    if np.isnan(est):
        return new_qty, 0.0
    return min(est, new_qty), 0.0


@njit(cache=True, _nrt=False, error_model="numpy")
def queue_exec_qty_nb(front_qty, lot_size):
    """Quantity executable now (a whole number of lots, >= 0) when trades went beyond our queue position."""
    # Halves round away from zero (hftbacktest's Rust ``round``), not to even.
    lots = np.floor(-front_qty / lot_size + 0.5)
    if lots > 0.0:
        return lots * lot_size
    return 0.0
