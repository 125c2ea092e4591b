"""Structured numpy dtypes and integer enums shared by every layer.

Each record layout is defined once here as an aligned structured dtype. Enums are plain ``IntEnum`` classes
whose values numba reads as integer constants.
"""

from enum import IntEnum

import numpy as np


class Kind(IntEnum):
    """Event kind (column ``kind`` of the normalized store)."""

    DEPTH = 1  # absolute quantity at a price level; qty 0 deletes the level
    TRADE = 2  # a public trade; side is the aggressor side
    CLEAR = 3  # reset the side(s) given by ``side`` (0 = both) before a snapshot
    SNAPSHOT = 4  # one level of a full book snapshot
    BBO = 5  # venue best bid/ask message; informational, never applied to the book


class Side(IntEnum):
    """Book side or trade aggressor side."""

    BID = 1  # also: buyer-aggressor trade, buy order
    ASK = -1  # also: seller-aggressor trade, sell order
    BOTH = 0  # CLEAR of both sides


BUY = Side.BID
SELL = Side.ASK

#: Venue names of the store (ARCHITECTURE.md section 2). ``tardis-<exchange>`` is also accepted.
VENUES = ("binance-usdm", "binance-coinm", "binance-spot", "bybit-linear", "bybit-spot")

#: Column order and polars/arrow types of the normalized store.
EVENT_COLUMNS = ("ts_exch", "ts_local", "kind", "side", "price", "qty", "update_id", "batch_end")

#: Bumped whenever the store's columns or their meaning change.
SCHEMA_VERSION = 1

#: The kernels' event record: prices in integer ticks, times in int64 ns.
event_dtype = np.dtype(
    [
        ("ts_exch", np.int64),  # exchange time, ns
        ("ts_local", np.int64),  # local receive time, ns
        ("price_ticks", np.int64),  # round(price / tick_size)
        ("qty", np.float64),  # base units (contracts for inverse)
        ("update_id", np.int64),  # venue sequence, -1 if none
        ("kind", np.uint8),  # Kind
        ("side", np.int8),  # Side
        ("batch_end", np.bool_),  # book consistent after this row
        ("symbol_id", np.uint16),  # index into the run's symbol list
    ],
    align=True,
)

#: Per-book state of the dense L2 book kernel (``mmlab.data.book_nb``). Level quantities live in two
#: ``(n_books, n_levels)`` float64 arrays indexed by ``price_ticks - base_tick``.
book_dtype = np.dtype(
    [
        ("base_tick", np.int64),  # price in ticks of level index 0 of the window
        ("n_levels", np.int64),  # window width in ticks (columns of the quantity arrays)
        ("best_bid_tick", np.int64),  # highest non-empty bid, NO_BID_TICK if none
        ("best_ask_tick", np.int64),  # lowest non-empty ask, NO_ASK_TICK if none
        ("recenters", np.int64),  # times the window was moved to follow the touch
        ("dropped_levels", np.int64),  # non-empty levels lost outside the window
        ("initialized", np.bool_),  # base_tick is set (first level seen since creation or a full CLEAR)
    ],
    align=True,
)
