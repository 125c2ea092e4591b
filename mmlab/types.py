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
        # Watermarks: every non-empty bid lies in [bid_low_tick, best_bid_tick], every non-empty ask in
        # [best_ask_tick, ask_high_tick], so CLEAR and re-centering touch only that range (new_books sets them).
        ("bid_low_tick", np.int64),  # lowest tick a bid was set at since the bid side was last empty, NO_ASK_TICK if none
        ("ask_high_tick", np.int64),  # highest tick an ask was set at since the ask side was last empty, NO_BID_TICK if none
        # Book messages (the batch_end row of each DEPTH / SNAPSHOT / CLEAR message; count_book_message_nb), kept by
        # the event loop for the local books: a strategy derives its market-data status from them at its
        # decision (fetch_md's md_sync_nb) instead of a hook call per message. Events are numbered from 1.
        ("n_messages", np.int64),  # book messages applied
        ("msg_ts_local", np.int64),  # ts_local of the last one, -1 if none
        ("msg_ts_exch", np.int64),  # ts_exch of the last one, -1 if none
        ("msg_update_id", np.int64),  # the last update_id >= 0 seen, -1 if none
        ("msg_n_snapshots", np.int64),  # snapshot messages (SNAPSHOT or CLEAR last row)
        ("msg_last_snapshot", np.int64),  # number of the last snapshot message, 0 if none
        ("msg_n_rewinds", np.int64),  # messages whose update_id is below the previous one's
        ("msg_last_rewind", np.int64),  # number of the last such message, 0 if none
        ("msg_n_gaps", np.int64),  # messages whose update_id skips past the previous one's + 1
        ("msg_last_gap", np.int64),  # number of the last such message, 0 if none
    ],
    align=True,
)


# ---------------------------------------------------------------------------------------------------------------
# Shared pipeline (mmlab.pipeline): enums, reason codes and record layouts. Each stage returns one int reason code
# of its own enum; the decision record keeps all six per tick.
# ---------------------------------------------------------------------------------------------------------------

#: Most price levels per side a strategy quotes (size of the ladder part of ``quote_dtype`` buffers).
MAX_QUOTE_LEVELS = 32
#: Capacity of the mid-price ring buffer of the online volatility estimate (``vol_buffer_size`` <= this).
VOL_BUFFER_MAX = 1024
#: Capacity of the trade ring buffer of the arrival-intensity estimate (``intensity_buffer_size`` <= this).
TRADE_BUFFER_MAX = 1024
#: Depth buckets (whole ticks from mid) of the arrival-intensity fit ``lambda(d) = A * exp(-k d)``.
INTENSITY_DEPTH_BUCKETS = 32


class QuoteAction(IntEnum):
    """What one decision tick does with the quotes as a whole."""

    QUOTE = 0  # price and quote normally
    WIDEN = 1  # quote with a widened spread (stale pricing view or a SOFT guard)
    SKIP = 2  # no pricing this tick; working orders are left as they are
    HALT = 3  # a HARD guard: no quotes, cancel every working order


class ActionKind(IntEnum):
    """Kind of one order action emitted by the ``emit`` stage."""

    PLACE = 1  # new limit order (order_id = client id assigned by emit)
    CANCEL = 2  # cancel working order ``order_id``
    MODIFY = 3  # change price/qty of working order ``order_id``


class TimeInForce(IntEnum):
    """Time in force of a placed order."""

    GTC = 0  # good till cancel
    GTX = 1  # post-only: the venue rejects the order if it would take liquidity on arrival
    IOC = 2  # immediate or cancel
    FOK = 3  # fill or kill


class OrderFlag(IntEnum):
    """Bit flags of an order action (``action_dtype.flags``)."""

    POST_ONLY = 1  # venue-side post-only (GTX)
    REDUCE_ONLY = 2  # may only reduce the position


class SeqCheck(IntEnum):
    """How ``md_on_book_update_nb`` checks the venue sequence (``update_id``) of book messages."""

    NONE = 0  # no check (the caller detects gaps itself, or the data has no sequence)
    MONOTONIC = 1  # a decrease is a rewind (Binance ``u``: gaps need ``pu``, checked at ingest)
    CONTIGUOUS = 2  # also ``u != prev_u + 1`` is a gap (Bybit v5 deltas); an equal ``u`` is a resend


class MdInvalid(IntEnum):
    """Why the local book is invalid until the next snapshot; also the index of ``invalidations`` counters."""

    NONE = 0  # valid
    GAP = 1  # sequence gap (update_id jumped)
    REWIND = 2  # update_id went backwards
    MANUAL = 3  # invalidated by the caller (e.g. reconnect)


class StaleReason(IntEnum):
    """Index of the ``pricing_on_stale`` counters of the fetch_md state."""

    PRICING_THRESHOLD = 0  # pricing ran on a view older than fresh_ms_for_pricing
    GUARD_BLOCK = 1  # guards (fresh_only) saw a view older than ttl_ms or invalid


class FetchReason(IntEnum):
    """Reason code of the ``fetch_md`` stage (highest precedence first when several hold)."""

    OK = 0  # view valid, age <= fresh_ms_for_pricing, requested depth held
    INVALID_GAP = 1  # sequence gap seen, no snapshot since: no pricing
    INVALID_REWIND = 2  # update_id rewind seen, no snapshot since: no pricing
    INVALID_MANUAL = 3  # invalidated by the caller, no snapshot since: no pricing
    NO_BOOK = 4  # a side is empty or the book never updated: no pricing
    CROSSED = 5  # best bid >= best ask (reject_crossed): no pricing
    STALE_TTL = 6  # age > ttl_ms and not stale_ok: cache miss, no pricing
    STALE_PRICING_SKIP = 7  # age > fresh_ms_for_pricing, skip_pricing_on_stale: no pricing
    STALE_PRICING_WIDEN = 8  # age > fresh_ms_for_pricing: price with a widened spread
    DEPTH_MISS = 9  # requested depth above held depth (miss, never upscaled); top of book still priced


class SpreadModel(IntEnum):
    """Pricing model of the ``spread`` stage."""

    FIXED = 0  # half_spread_ticks
    VOL_SCALED = 1  # vol_mult * sigma over vol_horizon_ms, in ticks
    AVELLANEDA_STOIKOV = 2  # reservation skew gamma sigma^2 T, spread gamma sigma^2 T + 2/gamma ln(1 + gamma/k)
    GLFT = 3  # Gueant-Lehalle-Fernandez-Tapia closed form with online intensity A, k


class FairPrice(IntEnum):
    """Fair price of the ``spread`` stage."""

    MID = 0  # (best_bid_tick + best_ask_tick) / 2
    MICRO = 1  # mid + spread/2 * order-book imbalance over imbalance_levels


class SpreadReason(IntEnum):
    """Reason code of the ``spread`` stage."""

    OK = 0  # model priced normally
    SKIPPED = 1  # fetch_md gave no pricing view: nothing priced
    WARMING = 2  # model estimates not ready yet: fixed half_spread_ticks used
    MIN_SPREAD = 3  # half spread raised to min_half_spread_ticks / min_spread_bps
    MAX_SPREAD = 4  # half spread capped at max_half_spread_ticks
    WIDENED_STALE = 5  # stale pricing view: half spread multiplied by stale_widen_mult


class GuardLevel(IntEnum):
    """Severity of the guards' outcome."""

    NONE = 0  # quote normally
    SOFT = 1  # widen the spread by widen_mult
    SIDE = 2  # one side blocked (near-liquidation, liquidity-by-side)
    HARD = 3  # stop quoting and cancel every working order


class GuardReason(IntEnum):
    """Reason code of the ``guards`` stage: the highest-precedence guard tripped (bit ``1 << value`` in guard_mask)."""

    NONE = 0  # no guard tripped
    KILL_SWITCH = 1  # HARD, latched: drawdown from peak equity above kill_drawdown_usd / kill_drawdown_pct
    STALE_BOOK = 2  # HARD: fresh_only and the view is older than ttl_ms or invalid
    VOL_HALT = 3  # HARD: volatility above vol_halt_bps
    LATENCY = 4  # HARD: order round trip above latency_halt_ms
    WARMUP = 5  # HARD: within warmup_s of the first decision (counts warmup_skip)
    DEADLINE_MISS = 6  # deadline_level (SOFT by default): decision later than deadline_ms after its schedule
    NEAR_LIQ = 7  # SIDE: entries blocked, (entry - liq)/entry < sl_buffer_multiplier * assumed_sl_pct
    LIQUIDITY = 8  # SIDE: top liq_gate_levels levels of a side hold less than liq_gate_alpha * liq_gate_qty
    VOL_WIDEN = 9  # SOFT: volatility above vol_widen_bps


class SizingMode(IntEnum):
    """Order sizing of the ``inventory`` stage."""

    FIXED = 0  # order_qty * size multipliers
    BALANCE = 1  # floor((min(notional_cap_usd, free_balance * leverage) / price) / lot_step) * lot_step


class SkewMode(IntEnum):
    """Inventory skew of the ``inventory`` stage."""

    FIXED = 0  # reservation = fair - skew_ticks * position / skew_unit_qty
    MODEL = 1  # reservation = fair - position * the spread model's skew (AS, GLFT)


class InventoryReason(IntEnum):
    """Reason code of the ``inventory`` stage (highest precedence first)."""

    OK = 0  # both sides quoted
    NO_QUOTES = 1  # HALT or SKIP upstream: no quotes built
    BELOW_MIN = 2  # a side's size fell below the venue minimum: dropped, never inflated
    LOW_BALANCE = 3  # free balance below min_free_balance_usd: position-increasing side(s) dropped
    MAX_LONG = 4  # position >= max_position: no bids
    MAX_SHORT = 5  # position <= -max_position: no asks
    GUARD_SIDE = 6  # a side blocked by a SIDE guard
    SIZE_ZERO = 7  # size multiplier 0 (the allocator took the symbol out): no quotes


class QueueReason(IntEnum):
    """Reason code of the ``queue_aware`` stage (highest precedence first)."""

    PASS = 0  # desired quotes unchanged
    DROPPED_HOLD = 1  # a working order's fill probability/score fell below tau_hold: not kept
    DROPPED_ENTRY = 2  # a new quote's fill probability/score below tau_entry: not placed
    KEPT = 3  # a working order kept instead of chasing a move within keep_ticks


class EmitReason(IntEnum):
    """Reason code of the ``emit`` stage (highest precedence first)."""

    OK = 0  # working orders match the desired quotes after the emitted actions
    HALT_CANCEL = 1  # HALT: every working order canceled
    SKIPPED = 2  # SKIP: no actions
    TRUNCATED = 3  # the action buffer was full: remaining actions dropped this tick
    RATE_LIMITED = 4  # token bucket empty: remaining actions deferred to a later tick
    TOO_YOUNG = 5  # an order younger than min_order_age_ms was left in place
    FILTERED = 6  # maker_only / reduce_only removed desired quotes
    IN_FLIGHT = 7  # an order awaiting an acknowledgement or a request could not be canceled/modified yet, or
    # (id_from_price) a desired price is still held by an active order: retried at a later tick


#: Per-symbol market-data status, maintained by the caller: ``md_on_book_update_nb`` at each book message, or
#: ``md_sync_nb`` from the message fields of the book record (the event loop's local books) before a decision.
md_status_dtype = np.dtype(
    [
        ("last_ts_local_ns", np.int64),  # ts_local of the last applied book message, -1 if none
        ("last_ts_exch_ns", np.int64),  # ts_exch of the last applied book message, -1 if none
        ("last_update_id", np.int64),  # update_id of the last applied book message, -1 if none
        ("n_updates", np.int64),  # book messages applied
        ("n_gaps", np.int64),  # sequence gaps seen (cumulative)
        ("n_rewinds", np.int64),  # update_id rewinds seen (cumulative)
        ("n_snapshots", np.int64),  # snapshots applied (cumulative)
        ("invalid", np.int8),  # MdInvalid: set on a gap/rewind, cleared by the next snapshot
        # The book record's message counters at the last md_sync_nb.
        ("book_messages_seen", np.int64),
        ("book_snapshots_seen", np.int64),
        ("book_rewinds_seen", np.int64),
        ("book_gaps_seen", np.int64),
    ],
    align=True,
)

#: Per-tick scalar inputs of ``decide_nb`` besides the depth arrays and the working orders.
decide_input_dtype = np.dtype(
    [
        ("best_bid_tick", np.int64),  # local book best bid, ticks (<= -2**61 = no bid)
        ("best_ask_tick", np.int64),  # local book best ask, ticks (>= 2**61 = no ask)
        ("n_bid_levels", np.int64),  # valid rows of the bid depth arrays (held depth)
        ("n_ask_levels", np.int64),  # valid rows of the ask depth arrays (held depth)
        ("position", np.float64),  # signed position, base units
        ("entry_price", np.float64),  # average entry price, quote currency; NaN when flat/unknown
        ("liq_price", np.float64),  # liquidation price; NaN = derive from leverage and maint_margin_rate
        ("free_balance", np.float64),  # balance available for new orders, quote currency
        ("equity", np.float64),  # cash + position value, quote currency; NaN = kill switch off
        ("model_score", np.float64),  # optional model score; NaN = none
        ("size_mult", np.float64),  # size multiplier from an allocator; 1.0 = neutral
        ("order_rtt_ns", np.int64),  # latest order round trip estimate, ns; -1 = unknown
        ("tick_lag_ns", np.int64),  # now - scheduled decision time, ns (deadline guard); 0 if on time
    ],
    align=True,
)

#: A working order as the pipeline reads it (any record with these fields works: numba reads by name).
working_order_dtype = np.dtype(
    [
        ("order_id", np.int64),  # id actions refer to
        ("price_ticks", np.int64),
        ("qty", np.float64),  # leaves quantity, base units
        ("queue_ahead_qty", np.float64),  # estimated quantity ahead in the level's queue; NaN = unknown
        ("sent_ts_ns", np.int64),  # local time the order (or its last modify) was sent
        ("side", np.int8),  # Side.BID / Side.ASK
        ("cancel_pending", np.bool_),  # a cancel was sent: the order is no longer counted as working
        ("status", np.int8),  # OrderStatus; only NEW / PARTIALLY_FILLED orders can be canceled or modified
        ("req", np.int8),  # RequestKind in flight; an order waiting on a request cannot take another
    ],
    align=True,
)

#: One desired quote (output of inventory, adjusted by queue_aware and emit).
quote_dtype = np.dtype(
    [
        ("price_ticks", np.int64),
        ("qty", np.float64),  # base units
        ("keep_order_id", np.int64),  # working order kept for this quote by queue_aware; -1 = none
        ("p_fill", np.float64),  # queue_aware's fill-probability estimate over horizon_ms; NaN = not estimated
        ("queue_ahead_qty", np.float64),  # queue ahead used for p_fill
        ("level", np.int16),  # ladder index, 0 = nearest the touch
        ("side", np.int8),  # Side.BID / Side.ASK
    ],
    align=True,
)

#: One order action (output of emit).
action_dtype = np.dtype(
    [
        ("order_id", np.int64),  # CANCEL/MODIFY: target order; PLACE: client id assigned by emit
        ("price_ticks", np.int64),
        ("qty", np.float64),  # base units
        ("kind", np.int8),  # ActionKind
        ("side", np.int8),  # Side.BID / Side.ASK
        ("tif", np.int8),  # TimeInForce
        ("flags", np.uint8),  # OrderFlag bits
        ("level", np.int16),  # ladder index of the quote the action serves; -1 for cancels
    ],
    align=True,
)

#: One row per decision tick and symbol: stage outputs and reason codes (decisions.parquet / state.parquet).
decision_dtype = np.dtype(
    [
        ("ts_local_ns", np.int64),  # now_ns of the decision
        # fetch_md
        ("md_age_ns", np.int64),  # now - ts_local of the last book message; -1 if none
        ("held_depth", np.int64),  # min(n_bid_levels, n_ask_levels)
        # spread
        ("fair_ticks", np.float64),
        ("half_spread_ticks", np.float64),  # model half spread (before the guards' widen_mult)
        ("skew_per_qty_ticks", np.float64),  # model reservation skew per base unit of position
        ("sigma_ticks_1s", np.float64),  # volatility of mid, ticks per sqrt(second); NaN = not ready
        ("vol_bps_1s", np.float64),  # sigma_ticks_1s / fair_ticks in bps
        ("imbalance", np.float64),  # (bid - ask) / (bid + ask) depth over imbalance_levels, in [-1, 1]
        ("intensity_a_per_s", np.float64),  # trade arrival intensity at the mid, 1/s; NaN = not calibrated
        ("intensity_k_per_tick", np.float64),  # decay of the intensity with depth, 1/tick; NaN = not calibrated
        ("flow_bid_qty_per_s", np.float64),  # seller-aggressor volume rate hitting bids, base units/s
        ("flow_ask_qty_per_s", np.float64),  # buyer-aggressor volume rate lifting asks, base units/s
        ("size_mult_bid", np.float64),  # model size factor of bids (order_amount_shape)
        ("size_mult_ask", np.float64),
        # guards
        ("guard_mask", np.int64),  # bit (1 << GuardReason) of every guard tripped
        ("widen_mult", np.float64),  # half spread multiplier of SOFT guards (1.0 = none)
        # inventory
        ("reservation_ticks", np.float64),
        ("bid_qty", np.float64),  # per-level size of bids (0 = none)
        ("ask_qty", np.float64),
        # queue_aware
        ("n_kept", np.int64),
        ("n_dropped", np.int64),
        # emit
        ("n_place", np.int64),
        ("n_cancel", np.int64),
        ("n_modify", np.int64),
        ("n_deferred", np.int64),  # actions held back by the rate limit / min age / full buffer
        # composition
        ("n_quotes", np.int64),  # valid rows of the quotes buffer
        ("n_actions", np.int64),  # valid rows of the actions buffer
        ("quote_action", np.int8),  # QuoteAction
        ("pricing_stale", np.int8),  # 0 fresh, 1 widen, 2 skip (from fetch_md)
        ("guard_fresh", np.bool_),  # fetch_md: the view satisfies fresh_only (valid, age <= ttl_ms)
        ("depth_ok", np.bool_),  # fetch_md: requested depth held
        ("allow_bid", np.bool_),  # guards: bids allowed
        ("allow_ask", np.bool_),
        ("guard_level", np.int8),  # GuardLevel
        ("md_reason", np.int8),  # FetchReason
        ("spread_reason", np.int8),  # SpreadReason
        ("guard_reason", np.int8),  # GuardReason
        ("inventory_reason", np.int8),  # InventoryReason
        ("queue_reason", np.int8),  # QueueReason
        ("emit_reason", np.int8),  # EmitReason
    ],
    align=True,
)

# Params (read-only) and state (owned, mutated) of each pipeline stage: arrays of shape (1,) per symbol.
# Python constructors with defaults and range checks: ``mmlab.pipeline_config``.

fetch_params_dtype = np.dtype(
    [
        ("ttl_ms", np.float64),  # general freshness: age <= ttl_ms is a hit; guards' fresh_only bound
        ("fresh_ms_for_pricing", np.float64),  # stricter bound for pricing: older -> widen or skip
        ("depth_levels", np.int64),  # requested depth per side; more than held is a depth miss
        ("stale_ok", np.bool_),  # a view older than ttl_ms may still be priced (widened / per skip flag)
        ("skip_pricing_on_stale", np.bool_),  # older than fresh_ms_for_pricing: skip (True) or widen (False)
        ("reject_crossed", np.bool_),  # best bid >= best ask: no pricing
        ("seq_check", np.int8),  # SeqCheck used by md_on_book_update_nb
    ],
    align=True,
)

fetch_state_dtype = np.dtype(
    [
        ("calls", np.int64),
        ("hits", np.int64),  # valid view, age <= ttl_ms, requested depth held
        ("misses", np.int64),
        ("depth_miss", np.int64),
        ("pricing_on_stale", np.int64, (2,)),  # indexed by StaleReason
        ("invalidations", np.int64, (4,)),  # indexed by MdInvalid (index 0 unused)
        ("seen_gaps", np.int64),  # md.n_gaps at the previous call
        ("seen_rewinds", np.int64),
        ("seen_snapshots", np.int64),
        ("seen_update_id", np.int64),  # md.last_update_id at the previous call, -1 if none
        ("seen_invalid", np.int8),  # md.invalid at the previous call
        ("own_invalid", np.int8),  # MdInvalid found by this stage (rewind between calls), until a snapshot
    ],
    align=True,
)

spread_params_dtype = np.dtype(
    [
        ("half_spread_ticks", np.float64),  # FIXED half spread; fallback while model estimates warm up
        ("min_half_spread_ticks", np.float64),
        ("max_half_spread_ticks", np.float64),
        ("min_spread_bps", np.float64),  # minimum full spread, bps of fair
        ("vol_mult", np.float64),  # VOL_SCALED: half spread = vol_mult * sigma over vol_horizon_ms
        ("vol_horizon_ms", np.float64),
        ("risk_factor", np.float64),  # gamma of AS / GLFT, per unit_qty of inventory
        ("horizon_s", np.float64),  # AS: T - t
        ("order_amount_shape", np.float64),  # AS eta: size of the inventory-increasing side * exp(-eta |q|)
        ("unit_qty", np.float64),  # inventory unit q = position / unit_qty (base units)
        ("intensity_a_per_s", np.float64),  # GLFT A until calibrated (arrivals/s at the mid)
        ("intensity_k_per_tick", np.float64),  # AS kappa / GLFT k until calibrated, 1/tick
        ("flow_halflife_ms", np.float64),  # half-life of the per-side traded volume rates
        ("stale_widen_mult", np.float64),  # pricing view stale (WIDEN): half spread multiplier
        ("score_skew_ticks", np.float64),  # fair shift per unit of model score (NaN score = none)
        ("score_widen", np.float64),  # half spread * (1 + score_widen * |score|)
        ("imbalance_skew_ticks", np.float64),  # fair shift per unit of book imbalance (imbalance_levels deep)
        ("vol_sample_ms", np.float64),  # min interval between mid samples of the volatility buffer
        ("vol_buffer_size", np.int64),  # mid samples kept (<= VOL_BUFFER_MAX)
        ("vol_min_samples", np.int64),  # samples needed before sigma is reported
        ("intensity_buffer_size", np.int64),  # trades kept (<= TRADE_BUFFER_MAX)
        ("intensity_min_trades", np.int64),  # trades needed before A, k are calibrated
        ("intensity_buckets", np.int64),  # depth buckets fitted (<= INTENSITY_DEPTH_BUCKETS)
        ("imbalance_levels", np.int64),  # depth levels of the imbalance / micro price
        ("model", np.int8),  # SpreadModel
        ("fair", np.int8),  # FairPrice
        ("calibrate_intensity", np.bool_),  # fit A, k online from trades (else the fixed values)
    ],
    align=True,
)

spread_state_dtype = np.dtype(
    [
        ("calls", np.int64),
        ("vol_mid", np.float64, (VOL_BUFFER_MAX,)),  # ring of sampled mids, ticks
        ("vol_ts", np.int64, (VOL_BUFFER_MAX,)),  # their local times, ns
        ("vol_head", np.int64),  # next write index
        ("vol_count", np.int64),
        ("vol_sum_sq", np.float64),  # sum of squared mid changes over the ring (ticks^2)
        ("vol_sum_dt_ns", np.int64),  # time spanned by the ring, ns
        ("tr_ts", np.int64, (TRADE_BUFFER_MAX,)),  # ring of trade local times, ns
        ("tr_bucket", np.int64, (TRADE_BUFFER_MAX,)),  # their depth bucket (whole ticks from mid)
        ("tr_head", np.int64),
        ("tr_count", np.int64),
        ("tr_bucket_count", np.int64, (INTENSITY_DEPTH_BUCKETS,)),  # trades per depth bucket in the ring
        ("flow_bid_rate", np.float64),  # decayed seller-aggressor volume rate at flow_bid_ts
        ("flow_bid_ts", np.int64),
        ("flow_ask_rate", np.float64),
        ("flow_ask_ts", np.int64),
        ("sigma_ticks_1s", np.float64),  # last estimate, NaN until ready
        ("intensity_a_per_s", np.float64),  # last calibration, NaN until ready
        ("intensity_k_per_tick", np.float64),
        ("n_trades", np.int64),
    ],
    align=True,
)

guard_params_dtype = np.dtype(
    [
        ("warmup_s", np.float64),  # no quoting for this long after the first decision
        ("vol_halt_bps", np.float64),  # HARD above (sigma over 1 s, bps of fair)
        ("vol_widen_bps", np.float64),  # SOFT above
        ("widen_mult", np.float64),  # SOFT guards multiply the half spread by this
        ("latency_halt_ms", np.float64),  # HARD when order_rtt above
        ("deadline_ms", np.float64),  # DEADLINE_MISS when tick_lag above
        ("sl_buffer_multiplier", np.float64),  # near-liquidation buffer, multiples of assumed_sl_pct
        ("assumed_sl_pct", np.float64),  # assumed stop-loss distance, fraction of entry
        ("leverage", np.float64),  # derives liq price when liq_price is NaN
        ("maint_margin_rate", np.float64),  # derives liq price when liq_price is NaN
        ("liq_gate_alpha", np.float64),  # side needs >= alpha * liq_gate_qty in its top levels
        ("liq_gate_qty", np.float64),  # reference order size of the liquidity gate; 0 = gate off
        ("kill_drawdown_usd", np.float64),  # kill switch: drawdown from peak equity, quote currency
        ("kill_drawdown_pct", np.float64),  # kill switch: drawdown as a fraction of peak equity
        ("liq_gate_levels", np.int64),
        ("deadline_level", np.int8),  # GuardLevel of a deadline miss (SOFT or HARD)
        ("fresh_only", np.bool_),  # guards require a fresh view (else STALE_BOOK, HARD)
        ("near_liq_enabled", np.bool_),
    ],
    align=True,
)

guard_state_dtype = np.dtype(
    [
        ("calls", np.int64),
        ("start_ns", np.int64),  # first decision time, -1 before
        ("peak_equity", np.float64),  # NaN before the first finite equity
        ("warmup_skip", np.int64),
        ("deadline_miss", np.int64),
        ("hard", np.int64),  # ticks with a HARD outcome
        ("soft", np.int64),
        ("side", np.int64),
        ("trips", np.int64, (16,)),  # ticks each GuardReason tripped, indexed by GuardReason
        ("killed", np.bool_),  # kill switch latched (reset by the operator: state["killed"] = False)
    ],
    align=True,
)

inventory_params_dtype = np.dtype(
    [
        ("order_qty", np.float64),  # FIXED size, base units
        ("leverage", np.float64),  # BALANCE sizing
        ("notional_cap_usd", np.float64),  # BALANCE sizing
        ("min_free_balance_usd", np.float64),  # below: position-increasing sides dropped; 0 = off
        ("lot_step", np.float64),  # sizes rounded down to this; 0 = no rounding
        ("min_qty", np.float64),  # venue minimum size: smaller quotes dropped
        ("min_notional_usd", np.float64),  # venue minimum notional: smaller quotes dropped
        ("tick_size", np.float64),  # quote currency per tick (BALANCE sizing, min notional)
        ("max_position", np.float64),  # no bids at position >= this, no asks at <= -this
        ("skew_ticks", np.float64),  # FIXED skew per skew_unit_qty of position
        ("skew_unit_qty", np.float64),
        ("grid_num", np.int64),  # levels per side (<= MAX_QUOTE_LEVELS)
        ("grid_interval_ticks", np.int64),  # distance between levels
        ("sizing", np.int8),  # SizingMode
        ("skew_mode", np.int8),  # SkewMode
        ("clamp_to_touch", np.bool_),  # bid <= best bid, ask >= best ask (else only never cross)
    ],
    align=True,
)

inventory_state_dtype = np.dtype(
    [
        ("calls", np.int64),
        ("below_min", np.int64),  # sides dropped below the venue minimum
        ("low_balance", np.int64),
        ("max_long", np.int64),
        ("max_short", np.int64),
        ("guard_side", np.int64),
    ],
    align=True,
)

queue_params_dtype = np.dtype(
    [
        ("keep_eta_ms", np.float64),  # keep a working order only if its queue ETA is at most this
        ("tau_entry", np.float64),  # new quotes need p_fill (or score) >= tau_entry; 0 = off
        ("tau_hold", np.float64),  # working orders need p_fill (or score) >= tau_hold; 0 = off
        ("horizon_ms", np.float64),  # horizon of p_fill
        ("depth_decay_per_tick", np.float64),  # p_fill decay behind the touch until intensity k is calibrated
        ("keep_ticks", np.int64),  # keep a working order when the desired price improves by 1..keep_ticks
        ("keep_back_ticks", np.int64),  # ... or retreats by 1..keep_back_ticks
        ("use_model_score", np.bool_),  # thresholds compare the model score when it is not NaN
    ],
    align=True,
)

queue_state_dtype = np.dtype(
    [
        ("calls", np.int64),
        ("kept", np.int64),
        ("dropped_entry", np.int64),
        ("dropped_hold", np.int64),
        ("scratch_match", np.int64, (2 * MAX_QUOTE_LEVELS,)),  # per-call scratch: working order of each quote
        ("scratch_keep", np.int8, (2 * MAX_QUOTE_LEVELS,)),  # per-call scratch: 1 = quote survives
    ],
    align=True,
)

emit_params_dtype = np.dtype(
    [
        ("qty_tol_frac", np.float64),  # |working - desired| qty above this fraction re-quotes; inf = ignore qty
        ("max_actions_per_s", np.float64),  # token bucket refill rate; inf = no limit
        ("burst_actions", np.float64),  # token bucket capacity
        ("min_order_age_ms", np.float64),  # younger orders are not canceled/modified (except HALT)
        ("price_tol_ticks", np.int64),  # working order within this many ticks of a desired quote matches it
        ("tif", np.int8),  # TimeInForce of placed orders
        ("use_modify", np.bool_),  # re-price with MODIFY instead of CANCEL + PLACE
        ("post_only", np.bool_),  # OrderFlag.POST_ONLY on places
        ("maker_only", np.bool_),  # drop desired quotes that would cross the local book
        ("reduce_only", np.bool_),  # only position-reducing quotes, size capped at |position|
        ("cancel_on_halt", np.bool_),  # HALT cancels every working order
        ("cancel_on_skip", np.bool_),  # SKIP (no pricing view) also cancels every working order
        ("id_from_price", np.bool_),  # PLACE ids are the price tick; a price held by any active order is not placed
    ],
    align=True,
)

emit_state_dtype = np.dtype(
    [
        ("calls", np.int64),
        ("tokens", np.float64),  # token bucket level; NaN before the first call (starts full)
        ("last_refill_ns", np.int64),
        ("next_order_id", np.int64),  # client id of the next PLACE
        ("placed", np.int64),
        ("canceled", np.int64),
        ("modified", np.int64),
        ("deferred", np.int64),
        ("filtered", np.int64),
        ("halts", np.int64),
        ("in_flight", np.int64),  # actions held back because the order (or price) awaits a request
        ("scratch_match", np.int64, (2 * MAX_QUOTE_LEVELS,)),  # per-call scratch: working order of each quote
        ("scratch_modify", np.int8, (2 * MAX_QUOTE_LEVELS,)),  # per-call scratch: 1 = quote served by a MODIFY
    ],
    align=True,
)

#: Most depth levels per side the pipeline record holds (``fetch_md.depth_levels`` <= this).
PIPELINE_DEPTH_MAX = 64

#: Everything one symbol's pipeline reads and keeps, in one record: the six stages' params and states, the
#: market-data status, the per-tick inputs and depth arrays, and the last decision. ``decide_nb`` takes it.
pipeline_dtype = np.dtype(
    [
        ("fetch_params", fetch_params_dtype),
        ("spread_params", spread_params_dtype),
        ("guard_params", guard_params_dtype),
        ("inventory_params", inventory_params_dtype),
        ("queue_params", queue_params_dtype),
        ("emit_params", emit_params_dtype),
        ("fetch_state", fetch_state_dtype),
        ("spread_state", spread_state_dtype),
        ("guard_state", guard_state_dtype),
        ("inventory_state", inventory_state_dtype),
        ("queue_state", queue_state_dtype),
        ("emit_state", emit_state_dtype),
        ("md", md_status_dtype),  # maintained at every book message (on_book_update_nb)
        ("inp", decide_input_dtype),  # set by the caller before each decision
        ("out", decision_dtype),  # the last decision
        ("bid_ticks", np.int64, (PIPELINE_DEPTH_MAX,)),  # top-N depth, best first; inp.n_bid_levels valid rows
        ("bid_qty", np.float64, (PIPELINE_DEPTH_MAX,)),
        ("ask_ticks", np.int64, (PIPELINE_DEPTH_MAX,)),
        ("ask_qty", np.float64, (PIPELINE_DEPTH_MAX,)),
    ],
    align=True,
)


# ---------------------------------------------------------------------------------------------------------------
# Simulator (mmlab.sim): model ids, order lifecycle enums and record layouts. The strategy interface reuses the
# pipeline's ActionKind, TimeInForce, quote_dtype; ``sim_action_dtype`` and ``order_view_dtype`` are supersets of
# the pipeline's ``action_dtype`` and ``working_order_dtype`` (numba reads fields by name).
# ---------------------------------------------------------------------------------------------------------------


class OrderType(IntEnum):
    """Order type of a placed order."""

    LIMIT = 0  # rests at its price unless its time in force says otherwise
    MARKET = 1  # takes liquidity from the best price on; price_ticks ignored


class OrderStatus(IntEnum):
    """Status of an order, as the exchange holds it or as the strategy last heard of it."""

    NONE = 0  # sent, not yet acknowledged (local) / not yet arrived (exchange)
    NEW = 1  # resting in the book
    PARTIALLY_FILLED = 2  # resting, part of it filled
    FILLED = 3  # fully filled (terminal)
    CANCELED = 4  # canceled by request (terminal)
    REJECTED = 5  # rejected (terminal); see RejectReason
    EXPIRED = 6  # IOC/FOK/market remainder that could not fill (terminal)


class RequestKind(IntEnum):
    """A request travelling from the strategy to the exchange (also: the request an order waits on)."""

    NONE = 0  # no request in flight
    NEW = 1  # place
    CANCEL = 2  # cancel
    MODIFY = 3  # change price and/or quantity


class RejectReason(IntEnum):
    """Why an order or a request was rejected (0 = not rejected)."""

    NONE = 0
    POST_ONLY_WOULD_CROSS = 1  # exchange: a GTX order would have taken liquidity on arrival
    ORDER_NOT_WORKING = 2  # exchange: cancel/modify arrived after the order was filled, canceled or rejected
    DUPLICATE_ORDER_ID = 3  # local: an active order of the symbol already has this id
    UNKNOWN_ORDER_ID = 4  # local: cancel/modify of an id with no active order
    REQUEST_IN_FLIGHT = 5  # local: the order already waits on a request (or its acknowledgement)
    CAPACITY = 6  # local: order table or request queue full
    INVALID_ORDER = 7  # local: qty <= 0 or unknown kind/side/type
    NO_LIQUIDITY = 8  # exchange: IOC/FOK/market found nothing (or not enough, FOK) to take; expired


class OrderEventKind(IntEnum):
    """Kind of one row of orders.parquet (one order lifecycle event)."""

    SENT = 1  # new order request left the strategy (ts_local = send, ts_exch = arrival at the exchange)
    ACCEPTED = 2  # exchange: resting in the book (ts_exch = acceptance, ts_local = response arrival)
    REJECTED = 3  # exchange or local reject; reason set (local rejects have ts_exch = -1)
    MODIFIED = 4  # exchange applied a modify
    CANCELED = 5  # exchange canceled the order
    FILLED = 6  # one fill, partial or full (qty = fill qty, leaves_qty after it)
    EXPIRED = 7  # IOC/FOK/market remainder expired
    CANCEL_SENT = 8  # cancel request left the strategy
    MODIFY_SENT = 9  # modify request left the strategy
    CANCEL_REJECTED = 10  # cancel lost the race (order no longer working) or was refused locally
    MODIFY_REJECTED = 11  # modify lost the race or was refused locally


class QueueModelId(IntEnum):
    """Queue position model on L2 data (``sim.queue_model``)."""

    RISK_AVERSE = 0  # only trades at our price advance us; a level shrinking below our position caps it
    POWER_PROB = 1  # p = f(back) / (f(back) + f(front)), f(x) = x ** n
    POWER_PROB2 = 2  # p = f(back) / f(back + front), f(x) = x ** n
    POWER_PROB3 = 3  # p = 1 - f(front / (front + back)), f(x) = x ** n
    LOG_PROB = 4  # p = f(back) / (f(back) + f(front)), f(x) = log(1 + x)
    LOG_PROB2 = 5  # p = f(back) / f(back + front), f(x) = log(1 + x)


class ExchangeModelId(IntEnum):
    """Fill model of the simulated exchange (``sim.exchange_model``)."""

    NO_PARTIAL = 0  # resting orders fill fully; takers fill fully at the best price
    PARTIAL = 1  # queue-front fills are limited by the traded quantity; takers sweep level by level


class LatencyModelId(IntEnum):
    """Order latency model (``sim.latency_model``)."""

    CONSTANT = 0  # entry_latency_ms for every request, response_latency_ms for every response
    PER_ACTION = 1  # place / cancel / modify each with its own entry latency
    EMPIRICAL = 2  # interpolated from a recorded table of req_ts, exch_ts, resp_ts
    RANDOM = 3  # seeded: base + exponential jitter, times shock_mult with probability shock_prob


class ContractType(IntEnum):
    """How quantity and price make notional."""

    LINEAR = 0  # notional = price * qty * contract_size (quote currency)
    INVERSE = 1  # notional = qty * contract_size / price (base currency); pnl in base


class LoopStatus(IntEnum):
    """Return code of the simulator's event loop kernel."""

    HORIZON = 0  # every intent before the window's horizon processed: feed the next window
    FLUSH = 1  # an output buffer is nearly full: copy it out and call again
    FINISHED = 2  # last window: no event, order message or decision left
    RESPONSE_QUEUE_FULL = 3  # broken capacity invariant: the exchange -> local queue overflowed


class LiveGate(IntEnum):
    """Why the live runner holds a symbol's quoting (HARD: no quotes, working orders canceled); the gated
    decision returns ``-gate`` as its reason code."""

    OPEN = 0  # quoting allowed: the strategy decides
    WARMUP = 1  # warm-up period after start (warmup_skip_total)
    STALE = 2  # no market data for longer than live.stale_ms
    BOOK_INVALID = 3  # sequence gap, reconnect or no snapshot yet: waiting for a fresh snapshot
    KILL_SWITCH = 4  # the kill-switch file exists
    SHUTDOWN = 5  # graceful shutdown: cancel everything


#: One order action written by a strategy: the pipeline's ``action_dtype`` plus the order type.
sim_action_dtype = np.dtype(
    [
        ("order_id", np.int64),  # CANCEL/MODIFY: target order; PLACE: new id (unique among the symbol's active orders)
        ("price_ticks", np.int64),  # limit price (ignored for MARKET)
        ("qty", np.float64),  # PLACE: quantity; MODIFY: new leaves quantity; base units (contracts if inverse)
        ("kind", np.int8),  # ActionKind
        ("side", np.int8),  # Side.BID (buy) / Side.ASK (sell)
        ("tif", np.int8),  # TimeInForce
        ("flags", np.uint8),  # OrderFlag bits (POST_ONLY forces GTX)
        ("level", np.int16),  # ladder index of the quote the action serves; -1 if none
        ("order_type", np.int8),  # OrderType
    ],
    align=True,
)

#: One active order as the strategy sees it (local view): the pipeline's ``working_order_dtype`` plus status fields.
order_view_dtype = np.dtype(
    [
        ("order_id", np.int64),
        ("price_ticks", np.int64),  # price as last requested (a modify in flight shows its new price)
        ("qty", np.float64),  # leaves quantity as last heard, base units
        ("queue_ahead_qty", np.float64),  # NaN: the strategy does not see the exchange's queue
        ("sent_ts_ns", np.int64),  # local time of the last request on this order
        ("side", np.int8),  # Side.BID / Side.ASK
        ("cancel_pending", np.bool_),  # a cancel is in flight
        ("status", np.int8),  # OrderStatus (NONE = not yet acknowledged)
        ("req", np.int8),  # RequestKind in flight, NONE if none
        ("order_type", np.int8),  # OrderType
        ("tif", np.int8),  # TimeInForce
        ("order_seq", np.int64),  # run-unique sequence number of the order
        ("filled_qty", np.float64),  # filled so far (as last heard), base units
    ],
    align=True,
)

#: Simulator order slot: the exchange's copy and the strategy's copy of one order side by side.
order_dtype = np.dtype(
    [
        ("order_id", np.int64),  # strategy-chosen id (unique among the symbol's active orders)
        ("order_seq", np.int64),  # run-unique sequence number
        ("symbol_id", np.int64),
        ("side", np.int8),  # Side.BID (buy) / Side.ASK (sell)
        ("order_type", np.int8),  # OrderType
        ("tif", np.int8),  # TimeInForce
        ("used", np.bool_),  # slot holds an order
        # Local (strategy) view
        ("local_status", np.int8),  # OrderStatus as last heard
        ("local_req", np.int8),  # RequestKind in flight
        ("local_price_ticks", np.int64),
        ("local_leaves_qty", np.float64),
        ("local_filled_qty", np.float64),
        ("prev_price_ticks", np.int64),  # restored if a modify is rejected
        ("prev_leaves_qty", np.float64),
        ("req_seq", np.int64),  # counter of requests on this order (responses name the one they answer)
        ("sent_ts", np.int64),  # local ns of the NEW request
        ("last_req_ts", np.int64),  # local ns of the last request
        ("inflight", np.int64),  # messages in either queue that refer to this slot
        # Exchange view
        ("exch_status", np.int8),  # OrderStatus at the exchange (NONE = not arrived)
        ("exch_price_ticks", np.int64),
        ("exch_leaves_qty", np.float64),
        ("exch_filled_qty", np.float64),
        ("front_qty", np.float64),  # queue ahead of the order (may go negative: executable quantity)
        ("cum_trade_qty", np.float64),  # trades at the price since the last depth update (prob models)
        ("queue_ahead_entry_qty", np.float64),  # queue ahead at the last (re)queue
        ("accept_ts", np.int64),  # exchange ns of the last (re)queue, -1 if never resting
        ("first_fill_ts", np.int64),  # exchange ns of the first fill, -1 if none
        ("n_fills", np.int64),
        ("mid_send_ticks", np.float64),  # local mid at the NEW request, NaN if the book had no mid
    ],
    align=True,
)

#: One message in flight between the strategy and the exchange (request or response).
msg_dtype = np.dtype(
    [
        ("ts", np.int64),  # arrival time, ns (exchange clock for requests, local clock for responses)
        ("ts_origin", np.int64),  # send time: local ns (requests) / exchange ns (responses)
        ("slot", np.int64),  # order slot
        ("req_seq", np.int64),  # request this message is / answers
        ("price_ticks", np.int64),  # request: new price; response: order price / fill price
        ("qty", np.float64),  # request: qty / new leaves; response: fill qty
        ("leaves_qty", np.float64),  # response: leaves after the event
        ("fee", np.float64),  # response to a fill: fee (quote; base if inverse)
        ("kind", np.int8),  # RequestKind (requests) / OrderEventKind (responses)
        ("status", np.int8),  # response: exchange OrderStatus after the event
        ("reason", np.int8),  # RejectReason
        ("maker", np.bool_),
        # Fill reports only: the rest of the fill row (fill_dtype), for the strategy's on_fill hook
        ("fill_queue_ahead_qty", np.float64),
        ("fill_time_in_queue_ns", np.int64),
        ("fill_mid_ticks", np.float64),  # exchange mid at the fill
        ("fill_position_after", np.float64),  # exchange-side position after the fill
    ],
    align=True,
)

#: One fill (fills.parquet, before labels are joined).
fill_dtype = np.dtype(
    [
        ("ts_exch", np.int64),  # exchange time of the fill, ns
        ("ts_local", np.int64),  # time its report reaches the strategy, ns
        ("order_id", np.int64),
        ("order_seq", np.int64),
        ("symbol_id", np.int64),
        ("price_ticks", np.int64),  # execution price
        ("qty", np.float64),  # base units (contracts if inverse)
        ("fee", np.float64),  # quote currency (base if inverse); negative = rebate
        ("queue_ahead_qty", np.float64),  # queue ahead when the order (re)queued; 0 for taker fills
        ("time_in_queue_ns", np.int64),  # fill time - acceptance time; 0 for taker fills
        ("sent_ts", np.int64),  # local time the order was sent
        ("mid_send_ticks", np.float64),  # local mid at send
        ("mid_fill_ticks", np.float64),  # exchange mid at the fill
        ("position_after", np.float64),  # exchange-side position after the fill
        ("leaves_qty", np.float64),  # order leaves after the fill
        ("side", np.int8),  # Side.BID (buy) / Side.ASK (sell)
        ("maker", np.bool_),
    ],
    align=True,
)

#: One order lifecycle event (orders.parquet).
order_event_dtype = np.dtype(
    [
        ("ts_local", np.int64),  # SENT kinds: send time; exchange kinds: arrival of the report; ns
        ("ts_exch", np.int64),  # SENT kinds: arrival at the exchange; exchange kinds: event time; -1 if never reached
        ("order_id", np.int64),
        ("order_seq", np.int64),
        ("symbol_id", np.int64),
        ("price_ticks", np.int64),
        ("qty", np.float64),  # SENT/MODIFY_SENT: requested qty; FILLED: fill qty; others: leaves qty
        ("leaves_qty", np.float64),  # leaves after the event (exchange view)
        ("mid_ticks", np.float64),  # SENT kinds: local mid at send; exchange kinds: exchange mid; NaN if none
        ("queue_ahead_qty", np.float64),  # ACCEPTED / re-queueing MODIFIED: queue ahead on entry; else NaN
        ("kind", np.int8),  # OrderEventKind
        ("side", np.int8),
        ("reason", np.int8),  # RejectReason
        ("order_type", np.int8),
        ("tif", np.int8),
    ],
    align=True,
)

#: One decision tick of one symbol (state.parquet).
sim_state_row_dtype = np.dtype(
    [
        ("ts_local", np.int64),  # decision time, ns
        ("symbol_id", np.int64),
        ("best_bid_ticks", np.int64),  # local book
        ("best_ask_ticks", np.int64),
        ("mid_ticks", np.float64),  # NaN when a side is empty
        ("bid_qty", np.float64),  # local best bid / ask level quantity (0 if the side is empty)
        ("ask_qty", np.float64),
        ("quote_bid_ticks", np.int64),  # best desired bid, -1 if none
        ("quote_ask_ticks", np.int64),  # best desired ask, -1 if none
        ("n_quotes_bid", np.int64),
        ("n_quotes_ask", np.int64),
        ("n_actions", np.int64),
        ("n_working", np.int64),  # active orders before the decision
        ("position", np.float64),  # local position (fills reported so far)
        ("balance", np.float64),  # cash flow of reported fills (linear: quote; inverse: see ContractType)
        ("fees", np.float64),  # fees of reported fills; negative = rebates earned
        ("pnl", np.float64),  # mark-to-mid pnl net of fees (linear: quote; inverse: base)
        ("reason", np.int64),  # strategy reason code
    ],
    align=True,
)

#: Exchange best bid/ask after each change of either (for markouts and labels).
mid_row_dtype = np.dtype(
    [
        ("ts_exch", np.int64),
        ("symbol_id", np.int64),
        ("best_bid_ticks", np.int64),
        ("best_ask_ticks", np.int64),
    ],
    align=True,
)

class HookEvents(IntEnum):
    """Bit flags: which local market events a strategy's on_event hook receives (``StrategySpec.on_event_mask``)."""

    BOOK_ROWS = 1  # every DEPTH / SNAPSHOT / CLEAR row
    BOOK_MESSAGES = 2  # only the last row (batch_end) of each book message: the book is consistent there
    TRADES = 4  # every TRADE row
    ALL = 5  # every row (BOOK_ROWS | TRADES)


#: Stage timers a strategy may report per decision (``decision_row_dtype.stage_ns``).
STAGE_TIMERS_MAX = 8

#: One decision tick of one symbol (decisions.parquet): its desired quotes and emitted actions follow in the
#: decision quote / action buffers, ``n_quotes`` / ``n_actions`` rows each, in the order of these rows.
decision_row_dtype = np.dtype(
    [
        ("ts_local", np.int64),  # decision time, ns
        ("symbol_id", np.int64),
        ("n_quotes", np.int64),  # desired quotes of this decision (rows of the quote buffer)
        ("n_actions", np.int64),  # actions emitted (rows of the action buffer)
        ("reason", np.int64),  # strategy reason code (the pipeline packs its stage reasons: pack_reasons_nb)
        ("tick_ns", np.int64),  # wall time of the tick for this symbol (decide + actions), ns; -1 = not timed
        ("stage_ns", np.int64, (STAGE_TIMERS_MAX,)),  # the strategy's stage timers, ns; -1 = not timed
    ],
    align=True,
)

#: One desired quote of a decision (compact ``quote_dtype``).
decision_quote_dtype = np.dtype(
    [
        ("price_ticks", np.int64),
        ("qty", np.float64),  # base units
        ("level", np.int16),  # ladder index, 0 = nearest the touch
        ("side", np.int8),  # Side.BID / Side.ASK
    ],
    align=True,
)

#: Static simulator parameters (one record).
sim_params_dtype = np.dtype(
    [
        ("queue_model", np.int64),  # QueueModelId
        ("queue_power", np.float64),
        ("exchange_model", np.int64),  # ExchangeModelId
        ("latency_model", np.int64),  # LatencyModelId
        ("entry_latency_ns", np.int64),
        ("response_latency_ns", np.int64),
        ("cancel_latency_ns", np.int64),
        ("modify_latency_ns", np.int64),
        ("jitter_ns", np.float64),  # random: mean of the exponential jitter
        ("shock_prob", np.float64),
        ("shock_mult", np.float64),
        ("interval_ns", np.int64),  # decision tick period
        ("n_symbols", np.int64),
        ("max_sweep_ticks", np.int64),  # market orders sweep at most this many ticks from the best
        ("shock_duration_ns", np.float64),  # random: mean (exponential) length of a latency shock episode
        ("has_on_event", np.bool_),  # the strategy has an on_event hook (else the loop makes no call)
        ("has_on_fill", np.bool_),  # the strategy has an on_fill hook
        ("on_event_mask", np.int64),  # HookEvents bits: the events on_event receives
        ("n_stage_timers", np.int64),  # stage timers the strategy writes to its state row (0 = none)
        ("trace_fraction", np.float64),  # fraction of decision ticks timed (pipeline.sample_stage_tracing)
        ("ns_per_cycle", np.float64),  # calibration of the cycle counter (mmlab.sim.clock_nb)
    ],
    align=True,
)

#: Per-symbol static parameters.
symbol_params_dtype = np.dtype(
    [
        ("tick_size", np.float64),
        ("lot_size", np.float64),
        ("contract_size", np.float64),
        ("maker_fee", np.float64),  # fraction of notional; negative = rebate
        ("taker_fee", np.float64),
        ("contract_type", np.int64),  # ContractType
    ],
    align=True,
)


#: hftbacktest 2.x event record (its ``hftbacktest.types.event_dtype``), for exchanging data with hftbacktest
#: (``mmlab.data.ingest.hftbacktest_npz``). ``ev`` = event kind in the low byte | side and processor flags.
hftbacktest_event_dtype = np.dtype(
    [
        ("ev", np.uint64),  # kind (low byte) | BUY/SELL (bits 29/28) | LOCAL/EXCH (bits 30/31)
        ("exch_ts", np.int64),  # exchange time, ns
        ("local_ts", np.int64),  # local receive time, ns
        ("px", np.float64),  # price
        ("qty", np.float64),  # quantity
        ("order_id", np.uint64),  # L3 order id (0 for L2 data)
        ("ival", np.int64),  # free integer slot: mmlab writes update_id here
        ("fval", np.float64),  # free float slot (unused)
    ],
    align=True,
)

#: Mutable state of one simulator run (one record); carried between windows so the loop kernel can resume.
run_state_dtype = np.dtype(
    [
        ("i_local", np.int64),  # cursor into the window's events in ts_local order
        ("i_exch", np.int64),  # cursor into the window's events in ts_exch order
        ("t0", np.int64),  # first event time of the run (decision k is at t0 + k * interval_ns)
        ("next_decision_ts", np.int64),
        ("next_req_ts", np.int64),  # earliest request arrival over symbols (INT64 max if none)
        ("next_resp_ts", np.int64),  # earliest report arrival over symbols (INT64 max if none)
        ("now", np.int64),  # time of the last processed intent
        ("order_seq", np.int64),  # next order sequence number
        ("slot_hint", np.int64),  # where the next free-slot search starts
        ("n_slots_used", np.int64),
        ("rng_state", np.uint64),  # splitmix64 state (latency RANDOM model)
        ("lat_entry_row", np.int64),  # cursors of the empirical latency table
        ("lat_resp_row", np.int64),
        ("n_fill_rows", np.int64),  # rows written to the output buffers since the last flush
        ("n_order_event_rows", np.int64),
        ("n_state_rows", np.int64),
        ("n_mid_rows", np.int64),
        ("n_local_events", np.int64),  # totals of the run
        ("n_exch_events", np.int64),
        ("n_decisions", np.int64),
        ("n_orders", np.int64),  # new order requests sent
        ("n_requests", np.int64),  # requests of any kind sent
        ("n_local_rejects", np.int64),  # actions refused before leaving the strategy
        ("shock_until_ns", np.int64),  # latency RANDOM model: end of the current shock episode (0 = none yet)
        ("n_decision_rows", np.int64),  # rows written to the decision buffers since the last flush
        ("n_decision_quote_rows", np.int64),
        ("n_decision_action_rows", np.int64),
        ("n_timed_ticks", np.int64),  # decision ticks timed (run total)
    ],
    align=True,
)

#: Mutable per-symbol state: both accounts, message queue cursors and the exchange's resting-order summary.
sym_state_dtype = np.dtype(
    [
        ("exch_position", np.float64),  # exchange-side account (every fill, at its exchange time)
        ("exch_balance", np.float64),
        ("exch_fees", np.float64),
        ("exch_volume", np.float64),
        ("exch_n_fills", np.int64),
        ("position", np.float64),  # local account (fills as their reports arrive): what the strategy sees
        ("balance", np.float64),
        ("fees", np.float64),
        ("req_head", np.int64),  # request queue: next to pop / next free (counters; index = counter % capacity)
        ("req_tail", np.int64),
        ("resp_head", np.int64),
        ("resp_tail", np.int64),
        ("last_req_ts", np.int64),  # arrival of the last queued request (queues deliver in order)
        ("last_resp_ts", np.int64),
        ("n_exch", np.int64),  # resting orders at the exchange (entries of exch_list)
        ("n_buy", np.int64),
        ("n_sell", np.int64),
        ("min_buy_tick", np.int64),
        ("max_buy_tick", np.int64),
        ("min_sell_tick", np.int64),
        ("max_sell_tick", np.int64),
        ("n_local", np.int64),  # active orders in the local view (entries of local_list)
        ("n_consumed", np.int64),  # entries of the consumed-liquidity table
        # Parameter batches: a row is an instance (parameter set, symbol) sharing its symbol's book pair.
        ("book_id", np.int64),  # symbol (exchange book index) of the instance; local book = n_symbols + book_id
        ("group", np.int64),  # parameter set of the instance (index of its run_state record)
        ("last_msg_ts", np.int64),  # time of the instance's last processed request or report
        ("done", np.bool_),  # its parameter set has finished (no decisions after the end of the data)
    ],
    align=True,
)

#: Liquidity our taker fills consumed at a level; forgotten when the level's next depth update arrives.
consumed_dtype = np.dtype(
    [
        ("price_ticks", np.int64),
        ("qty", np.float64),
        ("side", np.int64),  # book side the liquidity was taken from
    ],
    align=True,
)

#: Parameters of the reference ``grid`` strategy (one record per symbol).
grid_params_dtype = np.dtype(
    [
        ("grid_num", np.int64),  # orders per side
        ("grid_interval_ticks", np.int64),  # spacing of the ladder
        ("half_spread_ticks", np.float64),  # distance of the first level from the reservation price
        ("skew_ticks", np.float64),  # reservation shift per order_qty of position
        ("order_qty", np.float64),  # base units (contracts if inverse)
        ("max_position", np.float64),  # no bids at or above it, no asks at or below its negative
    ],
    align=True,
)

#: Running state of ``mmlab.data.verify`` over one stream (carried across event chunks).
verify_state_dtype = np.dtype(
    [
        ("rows", np.int64),
        ("last_ts_local_ns", np.int64),  # ts_local of the previous row (any kind)
        ("last_depth_ts_exch_ns", np.int64),  # ts_exch of the previous DEPTH/SNAPSHOT row
        ("last_book_uid", np.int64),  # update_id of the previous complete book message, -1 if none
        ("seq_rule", np.int64),  # SeqCheck of the venue
        ("book_known", np.bool_),  # a snapshot was applied (or the stream has none): crossing is checkable
        ("in_book_msg", np.bool_),  # inside a book message (no batch_end yet)
        ("msg_is_snapshot", np.bool_),  # the open book message is a CLEAR/SNAPSHOT
        ("last_msg_was_snapshot", np.bool_),
        ("ts_local_back", np.int64),  # rows whose ts_local is below the previous row's
        ("ts_exch_back_depth", np.int64),  # DEPTH/SNAPSHOT rows whose ts_exch is below the previous one's
        ("bad_values", np.int64),  # rows with NaN/negative qty or NaN/non-positive price
        ("rewinds", np.int64),  # book messages whose update_id went backwards (or repeated)
        ("jumps", np.int64),  # book messages whose update_id skipped (contiguous venues)
        ("book_checks", np.int64),  # book messages checked for crossing
        ("crossed", np.int64),  # of those, best_bid >= best_ask
        ("first_rewind_row", np.int64),  # stream row index of the first of each finding, -1 if none
        ("first_jump_row", np.int64),
        ("first_crossed_row", np.int64),
        ("first_bad_row", np.int64),
        ("first_ts_back_row", np.int64),
        ("first_rewind_ts_ns", np.int64),  # ts_local of the first of each finding
        ("first_jump_ts_ns", np.int64),
        ("first_crossed_ts_ns", np.int64),
        ("first_bad_ts_ns", np.int64),
        ("first_ts_back_ts_ns", np.int64),
        ("first_seq_prev_uid", np.int64),  # update_id before the first rewind/jump
        ("first_seq_uid", np.int64),  # update_id at the first rewind/jump
    ],
    align=True,
)

#: One scripted action (the ``scripted`` strategy replays a table of these at the decision ticks they fall in).
script_row_dtype = np.dtype(
    [
        ("ts", np.int64),  # emit at the first decision tick at or after this local time, ns
        ("symbol_id", np.int64),
        ("order_id", np.int64),
        ("price_ticks", np.int64),
        ("qty", np.float64),
        ("kind", np.int8),  # ActionKind
        ("side", np.int8),  # Side.BID / Side.ASK
        ("tif", np.int8),  # TimeInForce
        ("order_type", np.int8),  # OrderType
    ],
    align=True,
)


# ---------------------------------------------------------------------------------------------------------------
# Multi-symbol scoreboard and dynamic allocator (mmlab.pipeline.allocator). The scoreboard keeps per-symbol EMAs
# of what fills earned; the allocator turns them into per-symbol weights (1.0 = neutral) used as the inventory
# stage's size multiplier (``decide_input_dtype.size_mult``).
# ---------------------------------------------------------------------------------------------------------------

#: Fills per symbol awaiting their mark-to-market horizon (when full, the oldest is marked early and counted).
SCOREBOARD_PENDING_MAX = 256
#: Rebalance rows kept per symbol (a ring: once full the oldest rows are overwritten and counted).
ALLOC_HIST_MAX = 8192


class ScoreMetric(IntEnum):
    """Scoreboard metrics, in the order of ``allocator_params_dtype.metric_weights``."""

    NET_BPS = 0  # markout at markout_ms net of fees, bps of the fill price (higher is better)
    FILL_RATE = 1  # fills / orders placed per rebalance period, in [0, 1] (higher is better)
    SLIPPAGE_BPS = 2  # side * (price - mid at send) / mid at send, bps (lower is better)
    QUEUE_EDGE = 3  # exp(-time in queue / queue_edge_ms) of maker fills, 0 for taker fills (higher is better)
    ADVERSE_PENALTY = 4  # mid move against the fill from the fill to markout_ms later, bps, >= 0 (lower is better)


class AllocListing(IntEnum):
    """Static listing of a symbol by the allocator's whitelist / blacklist."""

    ALLOWED = 0  # no list excludes it
    BLACKLISTED = 1  # named in blacklist
    NOT_WHITELISTED = 2  # a whitelist is set and does not name it


class AllocReason(IntEnum):
    """Reason code of one symbol's weight at a rebalance (highest precedence first)."""

    OK = 0  # weight = softmax of the composite score (mean 1.0 over eligible symbols)
    BLACKLISTED = 1  # named in blacklist: weight 0, no quotes
    NOT_WHITELISTED = 2  # a whitelist is set and does not name the symbol: weight 0, no quotes
    AUTO_BLACKLISTED = 3  # net_bps EMA below auto_blacklist_net_bps for auto_blacklist_window_min: weight 0
    HYSTERESIS = 4  # the new weight is within hysteresis_threshold of the current one: current weight kept
    WARMING = 5  # fewer than min_samples marked fills: neutral score 0 used
    MAX_WEIGHT = 6  # softmax weight capped at max_weight
    MIN_WEIGHT = 7  # softmax weight raised to min_weight


#: Allocator parameters (one record per run; ``mmlab.allocator_config`` builds it from ``[allocator]``).
allocator_params_dtype = np.dtype(
    [
        ("metric_weights", np.float64, (5,)),  # composite weights, indexed by ScoreMetric (sum 1)
        ("ema_alpha", np.float64),  # EMA weight of each new observation
        ("softmax_temperature", np.float64),  # scores are divided by this before the softmax
        ("min_weight", np.float64),  # eligible symbols' weights are clamped to [min_weight, max_weight]
        ("max_weight", np.float64),
        ("hysteresis_threshold", np.float64),  # weight changes smaller than this are not applied
        ("net_bps_scale", np.float64),  # net_bps / scale, clipped to [-1, 1], enters the score
        ("slippage_bps_scale", np.float64),
        ("adverse_bps_scale", np.float64),
        ("auto_blacklist_net_bps", np.float64),  # auto-blacklist bound on the net_bps EMA
        ("rebalance_period_ns", np.int64),
        ("markout_ns", np.int64),  # mark-to-market horizon of net_bps and adverse_penalty
        ("queue_edge_ns", np.int64),  # time in queue where queue_edge falls to 1/e
        ("auto_blacklist_window_ns", np.int64),  # net_bps must stay below the bound this long
        ("auto_blacklist_cooldown_ns", np.int64),  # then the symbol is out this long (0 = rest of the run)
        ("min_samples", np.int64),  # marked fills before a symbol's score is used (else WARMING)
        ("enabled", np.bool_),  # False: weights stay 1.0 (the scoreboard still learns)
    ],
    align=True,
)

#: Run-wide allocator state (one record).
allocator_state_dtype = np.dtype(
    [
        ("next_rebalance_ns", np.int64),  # -1 before the first decision
        ("last_rebalance_ns", np.int64),  # -1 before the first rebalance
        ("n_rebalances", np.int64),
        ("n_active", np.int64),  # symbols with weight > 0 after the last rebalance
        ("n_blacklisted", np.int64),  # symbols at weight 0 after the last rebalance (any listing)
        ("n_auto_blacklisted", np.int64),  # auto-blacklist trips (cumulative)
        ("n_hysteresis", np.int64),  # weights held by hysteresis (cumulative)
    ],
    align=True,
)

#: One fill awaiting its mark (scoreboard ring).
score_pending_dtype = np.dtype(
    [
        ("due_ns", np.int64),  # local time at which the fill is marked
        ("price_ticks", np.float64),  # fill price
        ("mid_ticks", np.float64),  # mid at the fill (the fill record's, else the local mid at the report)
        ("fee_bps", np.float64),  # fee / notional, bps (negative = rebate)
        ("side", np.int8),  # Side.BID (buy) / Side.ASK (sell)
    ],
    align=True,
)

#: Per-symbol scoreboard: EMAs of the ScoreMetric values and what feeds them.
scoreboard_dtype = np.dtype(
    [
        ("net_bps", np.float64),  # EMAs; 0.0 before the first observation
        ("fill_rate", np.float64),
        ("slippage_bps", np.float64),
        ("queue_edge_score", np.float64),
        ("adverse_penalty", np.float64),
        ("score", np.float64),  # last composite score (rebalance)
        ("mid_ticks", np.float64),  # last local mid seen, NaN before
        ("tick_size", np.float64),  # quote currency per tick (fee bps of fills)
        ("contract_size", np.float64),
        ("inverse", np.bool_),  # inverse contract: notional in base = qty * contract_size / price
        ("n_fills", np.int64),  # fills seen (cumulative)
        ("n_marked", np.int64),  # fills marked to market (samples of net_bps / adverse_penalty)
        ("n_forced_marks", np.int64),  # fills marked early because the pending ring was full
        ("n_slip", np.int64),  # samples of slippage_bps
        ("n_queue", np.int64),  # samples of queue_edge_score
        ("n_fill_rate", np.int64),  # samples of fill_rate (rebalance periods with placed orders)
        ("period_places", np.int64),  # orders placed since the last rebalance
        ("period_fills", np.int64),  # fills since the last rebalance
        ("below_since_ns", np.int64),  # first mark of the current run of net_bps below the bound; -1 = none
        ("last_mark_ns", np.int64),
        ("pend_head", np.int64),  # ring of pending fills: oldest at pend_head, pend_count entries
        ("pend_count", np.int64),
        ("pending", score_pending_dtype, (SCOREBOARD_PENDING_MAX,)),
    ],
    align=True,
)

#: One rebalance of one symbol (the allocation frame of a run).
alloc_hist_dtype = np.dtype(
    [
        ("ts_local_ns", np.int64),
        ("weight", np.float64),
        ("score", np.float64),
        ("net_bps", np.float64),
        ("fill_rate", np.float64),
        ("slippage_bps", np.float64),
        ("queue_edge_score", np.float64),
        ("adverse_penalty", np.float64),
        ("n_marked", np.int64),
        ("reason", np.int8),  # AllocReason
    ],
    align=True,
)

#: Per-symbol allocation: the current weight / size multiplier and the rebalance history.
alloc_symbol_dtype = np.dtype(
    [
        ("weight", np.float64),  # 1.0 = neutral; 0.0 = no quotes
        ("size_mult", np.float64),  # what the inventory stage receives (= weight)
        ("auto_until_ns", np.int64),  # auto-blacklisted until this local time; -1 = not; INT64 max = rest of run
        ("hist_head", np.int64),  # next row of the history ring
        ("hist_count", np.int64),  # rows written (cumulative; > ALLOC_HIST_MAX means overwritten)
        ("listing", np.int8),  # AllocListing
        ("reason", np.int8),  # AllocReason of the last rebalance
        ("hist", alloc_hist_dtype, (ALLOC_HIST_MAX,)),
    ],
    align=True,
)

#: Params of the allocated multi-symbol strategy (``mmlab.sim.allocated_strategy``), one record per symbol:
#: the symbol's pipeline record, scoreboard and allocation; run-wide allocator params/state live in record 0.
allocated_params_dtype = np.dtype(
    [
        ("pipe", pipeline_dtype),
        ("board", scoreboard_dtype),
        ("alloc", alloc_symbol_dtype),
        ("aparams", allocator_params_dtype),
        ("astate", allocator_state_dtype),
    ],
    align=True,
)


# ---------------------------------------------------------------------------------------------------------------
# Feature collectors (mmlab.features.collectors): per-symbol causal metrics shared by backtest, datasets and live.
# ---------------------------------------------------------------------------------------------------------------

#: Samples held by a collector's rolling windows (mid samples for returns/volatility, latency samples).
COLLECTOR_RING_MAX = 1024
#: Fills waiting for their adverse-move horizon to pass.
COLLECTOR_PENDING_MAX = 64
#: Book depths of the imbalance features (``depth_levels``).
COLLECTOR_DEPTHS = 3

#: Params of one symbol's feature collector.
collector_params_dtype = np.dtype(
    [
        ("alpha", np.float64),  # EMA weight of a new sample, (0, 1]
        ("window_n", np.int64),  # samples of the rolling latency window (<= COLLECTOR_RING_MAX)
        ("ret_short_ns", np.int64),  # mid return window, short (default 1 s)
        ("ret_long_ns", np.int64),  # mid return window, long (default 5 s)
        ("vol_window_ns", np.int64),  # window of the realized volatility of per-sample returns (default 5 s)
        ("flow_halflife_ns", np.int64),  # half-life of the per-side traded quantity rates (trade flow)
        ("absorb_halflife_ns", np.int64),  # half-life of the traded quantity rate (queue absorption)
        ("adverse_horizon_ns", np.int64),  # adverse move of a fill: worst mid within this time after it
        ("latency_quantile", np.float64),  # quantile of the latency window (0.95 = p95, nearest rank)
        ("pnl_target_bps", np.float64),  # pnl_dev = PnL per traded notional (bps) - this target
        ("depth_levels", np.int64, (COLLECTOR_DEPTHS,)),  # book levels of the imbalance features (1, 5, 10)
    ],
    align=True,
)

#: State of one symbol's feature collector. EMAs and last values are NaN until their first sample.
collector_state_dtype = np.dtype(
    [
        # The ten smoothed metrics of the seed (EMA with weight alpha per sample).
        ("vol_realized_bps", np.float64),  # EMA of vol_bps
        ("liq_top_depth_qty", np.float64),  # EMA of best bid qty + best ask qty (base units)
        ("latency_p95_ms", np.float64),  # EMA of the latency window's quantile, ms
        ("pnl_dev_bps", np.float64),  # EMA of (PnL per traded notional - target), bps
        ("fill_rate", np.float64),  # EMA of fills per decision / EMA of orders placed per decision
        ("taker_share", np.float64),  # EMA over fills of 1 (taker) / 0 (maker)
        ("queue_absorb_rate_qty_s", np.float64),  # decayed traded quantity rate, qty per second
        ("queue_eta_ms", np.float64),  # EMA of queue ahead / absorption rate at decisions, ms
        ("slippage_bps", np.float64),  # EMA over fills of side * (price - mid at send) / mid at send
        ("adverse_move_bps", np.float64),  # EMA over fills of the worst mid move against them within the horizon
        # Last (unsmoothed) values of the book and return features.
        ("mid", np.float64),  # last mid sample (caller's price unit; ticks from the book update)
        ("spread_ticks", np.float64),
        ("bid_qty", np.float64),  # quantity at the best bid
        ("ask_qty", np.float64),
        ("imbalance", np.float64, (COLLECTOR_DEPTHS,)),  # (bid - ask) / (bid + ask) over depth_levels[k] levels
        ("microprice_offset_ticks", np.float64),  # micro price - mid (level-1 imbalance weighting), ticks
        ("trade_flow_qty_s", np.float64),  # buyer minus seller aggressor quantity rate, qty per second
        ("trade_flow_imbalance", np.float64),  # (buy - sell) / (buy + sell) of the decayed rates
        ("ret_bps_short", np.float64),  # mid / mid at or before now - ret_short_ns - 1, bps
        ("ret_bps_long", np.float64),
        ("vol_bps", np.float64),  # std (ddof 1) of per-sample log returns (bps) within vol_window_ns
        ("latency_q_ms", np.float64),  # last quantile of the latency window, ms
        # Counters.
        ("fills_total", np.int64),
        ("fills_maker", np.int64),
        ("fills_taker", np.int64),
        ("quotes_total", np.int64),  # orders placed, summed over decisions
        ("decisions", np.int64),
        ("trades", np.int64),
        ("mid_samples", np.int64),
        ("window_overflows", np.int64),  # windows wider than the ring (value computed on the held samples)
        ("pending_dropped", np.int64),  # fills whose adverse move was finalized early (pending ring full)
        # Accumulators.
        ("fills_since_decision", np.int64),
        ("ema_fills", np.float64),
        ("ema_quotes", np.float64),
        ("equity0", np.float64),  # equity at the first decision with one
        ("buy_rate", np.float64),  # decayed buyer-aggressor quantity rate at rate_ts
        ("sell_rate", np.float64),
        ("absorb_rate", np.float64),  # decayed traded quantity rate at rate_ts
        ("rate_ts", np.int64),  # local time the rates are stated at; -1 before the first trade
        # Ring of mid samples: time, mid, log return from the previous sample (bps).
        ("mid_ts", np.int64, (COLLECTOR_RING_MAX,)),
        ("mid_val", np.float64, (COLLECTOR_RING_MAX,)),
        ("mid_ret", np.float64, (COLLECTOR_RING_MAX,)),
        ("mid_head", np.int64),
        ("mid_count", np.int64),
        ("evicted_ts", np.int64),  # the newest sample pushed out of the ring (-1 = none yet)
        ("evicted_mid", np.float64),
        ("last_ts", np.int64),  # time of the last mid sample, -1 before the first
        # Ring of latency samples (ms) and a scratch copy for the quantile.
        ("lat_ms", np.float64, (COLLECTOR_RING_MAX,)),
        ("lat_sorted", np.float64, (COLLECTOR_RING_MAX,)),
        ("lat_head", np.int64),
        ("lat_count", np.int64),
        # Fills waiting for their adverse-move horizon (FIFO ring).
        ("pend_due_ns", np.int64, (COLLECTOR_PENDING_MAX,)),
        ("pend_side", np.int64, (COLLECTOR_PENDING_MAX,)),
        ("pend_price", np.float64, (COLLECTOR_PENDING_MAX,)),
        ("pend_worst_bps", np.float64, (COLLECTOR_PENDING_MAX,)),
        ("pend_head", np.int64),
        ("pend_count", np.int64),
    ],
    align=True,
)


# ---------------------------------------------------------------------------------------------------------------
# Compiled scoring of exported tree ensembles (mmlab.ml.trees_nb).
# ---------------------------------------------------------------------------------------------------------------

class PostTransform(IntEnum):
    """What turns the float32 sum of leaf values (plus base value) into the score."""

    NONE = 0  # the raw sum
    LOGISTIC = 1  # 1 / (1 + exp(-s)) in float32, as onnxruntime's LOGISTIC post transform


# One node as the kernels read it: go to ``child_true`` when ``row[slot] <= threshold`` (an ordered float32
# comparison: false for NaN), else to ``child_false``. ``slot`` indexes the extended row [x, -x] (see
# :func:`mmlab.ml.trees_nb._uniform`); children are word offsets (4 x node index); a leaf points to itself.
tree_node_dtype = np.dtype([("threshold", np.float32), ("slot", np.uint32), ("child_false", np.uint32),
                            ("child_true", np.uint32)], align=True)

# Canonical form: x[feature] <= threshold -> lo, else hi; NaN -> lo if nan_lo else hi.
tree_canonical_node_dtype = np.dtype([("threshold", np.float32), ("feature", np.int64), ("nan_lo", np.int64),
                                      ("lo", np.int64), ("hi", np.int64)])
