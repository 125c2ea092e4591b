"""A seeded synthetic market with the statistics of a real one, written into the normalized store.

The generator is an event-driven L2 book model whose parameters (:class:`SynthParams`) are measured from a real
store (:func:`fit_params`); the defaults were measured from the Binance USD-M BTCUSDT capture of 2024-08-08.

Model, per event type (independent Poisson processes):

* **depth message** (``depth_msg_rate_per_s`` minus the price moves, which emit their own message): the
  pending trade consumption of the touch is published, then random level updates (count ~ lognormal
  ``levels_per_msg``) redraw levels at a distance ``d`` (ticks from the own touch, bins ``update_bin_pmf``)
  from the stationary profile: occupied with probability ``occupancy[d]``, size ~ lognormal
  (``log_lots_mean[d]``, ``log_lots_sd[d]``) lots. The touch (``d = 0``) is always occupied.
* **price move** (``move_rate_per_s``; jumps at ``jump_rate_per_hour`` with their own size law): the mid moves
  by a lognormal number of ticks and a new spread is drawn from ``spread_pmf``. With probability
  ``move_trade_prob`` an aggressor sweeps the levels between the old and the new touch (lognormal volume, printed
  as trades of the trade-size law at each level, best price first); the levels that the move crosses are
  removed, the side the price moves toward is refilled from the profile and gets a new touch, and whatever
  volume the aggressor has left trades at that new touch right after the depth message shows it. In the real
  capture 94% of mid changes came with such same-side trades: price moves are how aggressors take liquidity,
  so a resting quote that gets filled by a sweep sees the price move against it (adverse selection).
* **small taker order** (``taker_order_rate_per_s``): a geometric number of trades of the trade-size law at the
  touch, never emptying it; the touch size falls and the next depth message publishes it.
* Every message's local time is ``max(exchange time + latency, previous local time)`` (one in-order feed),
  latency = ``latency_base_ns`` + lognormal, one draw per event; exchange times have millisecond resolution
  like Binance's ``E``. Trades print at prices the replayed book shows (best price first), and the book is
  never crossed after a ``batch_end``.
* A BBO pair (bid row, ask row) follows every depth message that changed the touch, and at least every
  ``bbo_max_interval_ms``; its ``update_id`` is that depth message's.

The book is kept ``depth_ticks`` deep on each side (about 100 occupied levels), with ``edge_slack_ticks`` of
hysteresis before levels left behind by the touch are deleted. Output is bit-identical for a seed, whatever
the chunking: the kernel stops only between events and keeps all its state (including its random generator)
in structured arrays.

>>> result = synth("data", hours=0.1, seed=7)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path

import numpy as np
from numba import njit

from mmlab.data import store
from mmlab.errors import ConfigError, DataError
from mmlab.types import Kind, Side

#: Version of the generator model; stored in ``_meta.json`` so a change of model is visible in the data.
GENERATOR_VERSION = 1
#: Largest spread (ticks) of ``spread_pmf``; its last entry holds the mass of wider spreads.
MAX_SPREAD_TICKS = 10
#: Distance-bin lower edges (ticks from the touch) used for the level profile and update distances.
BIN_EDGES_TICKS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
#: Occupied levels a side that ``fit_params`` aims the book depth at.
TARGET_LEVELS = 100
#: A mid move larger than this multiple of the median move counts as a jump.
JUMP_MEDIAN_MULTIPLE = 8.0

_NS = 1_000_000_000


@dataclass(frozen=True)
class SynthParams:
    """Parameters of the synthetic market; every size in lots, every price distance in ticks.

    The defaults are measured with :func:`fit_params` from the Binance USD-M BTCUSDT capture
    ``usdm_btcusdt_20240808.gz`` (../shared/data/real/binance_usdm), ingested with ``mmlab data ingest
    --source binance-usdm``: 344.6 s of synced book (2024-08-08 23:54:16.5 -> 2024-08-09 00:00:01.1 UTC),
    6,547 depth messages, 480 mid changes, 21,313 trades, 335 one-second book samples.

    * ``tick_size`` 0.1, ``lot_size`` 0.001: the store's increments; ``price0``: the first mid of the capture.
    * ``depth_ticks`` 212: distance at which the time-averaged book holds ``TARGET_LEVELS`` (100) occupied
      levels a side; ``edge_slack_ticks`` (half of it) is a model choice, not a measurement.
    * ``spread_pmf``: time-weighted spread distribution (ticks 1..10, the last entry = 10 or wider) of the book
      rebuilt after every depth message (99.24% one tick).
    * ``bin_lo_ticks``, ``occupancy``, ``log_lots_mean``, ``log_lots_sd``: level profile by distance from the
      own touch, sampled once a second on both sides: fraction of price ticks holding a level, and mean and
      standard deviation of log(size in lots) of the occupied ones. Bin 0 is the touch (median 2.1 BTC); the
      first 20 ticks behind it are sparse (14-27% occupied), the book fills up further out (68% at 200+).
    * ``depth_msg_rate_per_s`` 19.0: depth messages a second. ``levels_per_msg_log_mean/sd``: lognormal of the
      rows a message changes within ``depth_ticks`` of the touch (sd chosen to match the mean, 20.6 rows);
      ``update_bin_pmf``: the bins of distance (from the touch before the message) those rows fall in.
    * ``move_rate_per_s`` 1.375, ``move_ticks_median`` 21.75, ``move_ticks_log_sd``: mid changes between
      consecutive book states up to ``JUMP_MEDIAN_MULTIPLE`` (8) times the median change; the sd matches their
      second moment, so the variance is preserved. ``jump_*``: the larger changes (6 in the capture, so these
      three numbers are rough). ``move_up_prob``: share of upward changes. ``move_trade_prob`` 0.9375: share of
      changes with trades of the same side since the previous book state (or in the change's millisecond after
      it); ``sweep_lots_log_mean/sd``: lognormal of those trades' total size (sd chosen to match the mean).
    * ``taker_order_rate_per_s`` 11.13, ``trades_per_order_mean``, ``taker_buy_prob``: all other trades, grouped
      into orders by (exchange time, side). ``trade_lots_log_mean/sd``: log-size moments of every trade.
    * ``latency_base_ns``, ``latency_log_mean``, ``latency_log_sd``: ts_local - ts_exch of every row after the
      ingest's clock correction (the recorder clock ran 1.27 s behind the exchange, so the absolute latency is
      unknown: the base is the corrected minimum, 0, and the lognormal is fitted to the median, 2.9 ms, and the
      90th percentile of the rest).
    * ``bbo_max_interval_ms``: a model choice.

    The implied mid volatility is :attr:`sigma_bp_per_sqrt_s` (1.34 bp per sqrt(s) for the defaults; the
    capture's realized 1-second volatility is 1.22).
    """

    tick_size: float = 0.1
    lot_size: float = 0.001
    price0: float = 61800.25
    depth_ticks: int = 212
    edge_slack_ticks: int = 106
    spread_pmf: tuple = (0.9924, 0.0008909, 0.00074, 0.000444, 0.00074, 0.0, 0.000444, 0.0002989, 0.000296, 0.003772)
    bin_lo_ticks: tuple = (0, 1, 2, 5, 10, 20, 50, 100, 200)
    occupancy: tuple = (1.0, 0.2731, 0.1393, 0.16, 0.1985, 0.2568, 0.4106, 0.5976, 0.6809)
    log_lots_mean: tuple = (7.664, 3.935, 4.372, 3.4, 3.664, 3.567, 3.57, 3.881, 4.072)
    log_lots_sd: tuple = (1.295, 2.549, 2.273, 2.367, 2.447, 2.235, 2.169, 2.148, 1.992)
    depth_msg_rate_per_s: float = 19.0
    levels_per_msg_log_mean: float = 2.406
    levels_per_msg_log_sd: float = 1.112
    update_bin_pmf: tuple = (0.07691, 0.005296, 0.009052, 0.01495, 0.0347, 0.1118, 0.2291, 0.459, 0.05927)
    move_rate_per_s: float = 1.375
    move_ticks_median: float = 21.75
    move_ticks_log_sd: float = 0.8185
    jump_rate_per_hour: float = 62.68
    jump_ticks_median: float = 457.2
    jump_ticks_log_sd: float = 0.3077
    move_up_prob: float = 0.4854
    move_trade_prob: float = 0.9375
    sweep_lots_log_mean: float = 6.17
    sweep_lots_log_sd: float = 2.039
    taker_order_rate_per_s: float = 11.13
    trades_per_order_mean: float = 1.81
    taker_buy_prob: float = 0.4792
    trade_lots_log_mean: float = 2.911
    trade_lots_log_sd: float = 1.872
    latency_base_ns: float = 0.0
    latency_log_mean: float = 14.88
    latency_log_sd: float = 0.8409
    bbo_max_interval_ms: float = 1000.0

    def __post_init__(self):
        nb = len(self.bin_lo_ticks)
        for name in ("occupancy", "log_lots_mean", "log_lots_sd", "update_bin_pmf"):
            if len(getattr(self, name)) != nb:
                raise ConfigError(f"SynthParams.{name} has {len(getattr(self, name))} entries, expected {nb} (one per bin_lo_ticks)")
        if self.bin_lo_ticks[0] != 0 or list(self.bin_lo_ticks) != sorted(set(self.bin_lo_ticks)):
            raise ConfigError(f"SynthParams.bin_lo_ticks must start at 0 and increase, got {self.bin_lo_ticks}")
        if self.bin_lo_ticks[-1] > self.depth_ticks:
            raise ConfigError(f"SynthParams.depth_ticks={self.depth_ticks} is below the last bin edge {self.bin_lo_ticks[-1]}")
        for name in ("tick_size", "lot_size", "price0", "depth_msg_rate_per_s", "move_ticks_median", "jump_ticks_median", "trades_per_order_mean"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"SynthParams.{name} must be > 0, got {v!r}")
        for name in ("move_rate_per_s", "jump_rate_per_hour", "taker_order_rate_per_s", "latency_base_ns", "edge_slack_ticks",
                     "move_ticks_log_sd", "jump_ticks_log_sd", "levels_per_msg_log_sd", "sweep_lots_log_sd", "trade_lots_log_sd",
                     "latency_log_sd", "bbo_max_interval_ms"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ConfigError(f"SynthParams.{name} must be >= 0, got {v!r}")
        for name in ("move_up_prob", "move_trade_prob", "taker_buy_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"SynthParams.{name} must be in [0, 1], got {v!r}")
        for name in ("spread_pmf", "update_bin_pmf"):
            p = np.asarray(getattr(self, name), dtype=float)
            if (p < 0).any() or not abs(p.sum() - 1.0) < 1e-3:
                raise ConfigError(f"SynthParams.{name} must be non-negative and sum to 1, got sum {p.sum():.6g}")
        if len(self.spread_pmf) > MAX_SPREAD_TICKS:
            raise ConfigError(f"SynthParams.spread_pmf has {len(self.spread_pmf)} entries; at most {MAX_SPREAD_TICKS}")
        if self.depth_ticks < 2 or self.depth_ticks > 100_000:
            raise ConfigError(f"SynthParams.depth_ticks must be in [2, 100000], got {self.depth_ticks}")

    @property
    def sigma_bp_per_sqrt_s(self) -> float:
        """Volatility of the mid implied by the move and jump laws, in basis points per sqrt(second)."""
        e2_move = (self.move_ticks_median * math.exp(self.move_ticks_log_sd**2)) ** 2
        e2_jump = (self.jump_ticks_median * math.exp(self.jump_ticks_log_sd**2)) ** 2
        var_ticks = self.move_rate_per_s * e2_move + self.jump_rate_per_hour / 3600.0 * e2_jump
        return math.sqrt(var_ticks) * self.tick_size / self.price0 * 1e4

    @property
    def trade_rate_per_s(self) -> float:
        """Expected trades per second (small orders plus sweeps, before caps)."""
        per_sweep = math.exp(self.sweep_lots_log_mean + self.sweep_lots_log_sd**2 / 2) / math.exp(
            self.trade_lots_log_mean + self.trade_lots_log_sd**2 / 2
        )
        moves = self.move_rate_per_s + self.jump_rate_per_hour / 3600.0
        return self.taker_order_rate_per_s * self.trades_per_order_mean + moves * self.move_trade_prob * per_sweep

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "SynthParams":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown SynthParams keys {unknown}; valid keys: {sorted(names)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


DEFAULT_PARAMS = SynthParams()

# ----------------------------------------------------------------------------------------------- record layouts

#: One generated row, prices in ticks and sizes in lots (converted to the store's floats at the boundary).
_row_dtype = np.dtype(
    [
        ("ts_exch", np.int64),  # exchange time, ns (millisecond resolution)
        ("ts_local", np.int64),  # local receive time, ns
        ("price_ticks", np.int64),  # absolute price in ticks
        ("qty_lots", np.int64),  # size in lots
        ("update_id", np.int64),  # depth message id, trade id, or the depth id a BBO holds after
        ("kind", np.uint8),  # Kind
        ("side", np.int8),  # Side
        ("batch_end", np.bool_),  # last row of a message
    ],
    align=True,
)

#: Generator state; one record, carried from chunk to chunk.
_state_dtype = np.dtype(
    [
        ("rng", np.uint64),  # splitmix64 state
        ("t_ns", np.int64),  # time of the last event processed
        ("next_depth_ns", np.int64),
        ("next_move_ns", np.int64),
        ("next_jump_ns", np.int64),
        ("next_order_ns", np.int64),
        ("base_tick", np.int64),  # absolute tick of window index 0
        ("bb", np.int64),  # best bid, window index
        ("ba", np.int64),  # best ask, window index
        ("bid_edge", np.int64),  # farthest managed bid index
        ("ask_edge", np.int64),  # farthest managed ask index
        ("update_id", np.int64),  # last depth message id
        ("trade_id", np.int64),  # last trade id
        ("last_local_ns", np.int64),
        ("lat_event_ns", np.int64),  # event time of the current latency draw
        ("lat_ns", np.int64),  # latency of the current event's messages
        ("last_bbo_ns", np.int64),
        ("bbo_bb", np.int64),
        ("bbo_ba", np.int64),
        ("bbo_bq", np.int64),
        ("bbo_aq", np.int64),
        ("pend_bid", np.bool_),  # touch sizes consumed by trades and not yet published
        ("pend_ask", np.bool_),
        ("started", np.bool_),
    ],
    align=True,
)

#: Scalar parameters of the kernel (rates per second, lognormals as log-mean/log-sd).
_kparam_dtype = np.dtype(
    [
        ("depth_ticks", np.int64),
        ("edge_slack_ticks", np.int64),
        ("idx_min", np.int64),  # lowest window index a touch may take
        ("idx_max", np.int64),  # highest window index a touch may take
        ("bg_depth_rate", np.float64),
        ("lpm_mu", np.float64),
        ("lpm_sd", np.float64),
        ("k_max", np.int64),
        ("move_rate", np.float64),
        ("move_mu", np.float64),
        ("move_sd", np.float64),
        ("jump_rate", np.float64),
        ("jump_mu", np.float64),
        ("jump_sd", np.float64),
        ("up_prob", np.float64),
        ("move_trade_prob", np.float64),
        ("sweep_mu", np.float64),
        ("sweep_sd", np.float64),
        ("order_rate", np.float64),
        ("trades_per_order", np.float64),
        ("buy_prob", np.float64),
        ("trade_mu", np.float64),
        ("trade_sd", np.float64),
        ("lat_base_ns", np.float64),
        ("lat_mu", np.float64),
        ("lat_sd", np.float64),
        ("bbo_interval_ns", np.int64),
        ("exch_res_ns", np.int64),
        ("max_sweep_trades", np.int64),
        ("max_order_trades", np.int64),
    ],
    align=True,
)

_DEPTH = int(Kind.DEPTH)
_TRADE = int(Kind.TRADE)
_CLEAR = int(Kind.CLEAR)
_SNAPSHOT = int(Kind.SNAPSHOT)
_BBO = int(Kind.BBO)
_BID = int(Side.BID)
_ASK = int(Side.ASK)
_NEVER = np.int64(2**62)
_MAX_LOTS = 1e12

# --------------------------------------------------------------------------------------------- random numbers


@njit(cache=True)
def _u64_nb(st):
    """splitmix64: next 64-bit output of the state's generator."""
    s = st[0]
    z = s.rng + np.uint64(0x9E3779B97F4A7C15)
    s.rng = z
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _uniform_nb(st):
    """Uniform in [0, 1)."""
    return float(_u64_nb(st) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _normal_nb(st):
    """Standard normal (Box-Muller, one draw per call)."""
    u1 = 1.0 - _uniform_nb(st)
    u2 = _uniform_nb(st)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True)
def _wait_ns_nb(st, rate_per_s):
    """Exponential waiting time of a Poisson process, ns (at least 1)."""
    if rate_per_s <= 0.0:
        return _NEVER
    return np.int64(-math.log(1.0 - _uniform_nb(st)) / rate_per_s * 1e9) + 1


@njit(cache=True)
def _lots_nb(st, mu, sd):
    """Lognormal size in lots, at least 1."""
    v = math.exp(mu + sd * _normal_nb(st))
    if v > _MAX_LOTS:
        v = _MAX_LOTS
    q = np.int64(v + 0.5)
    return q if q > 0 else np.int64(1)


@njit(cache=True)
def _spread_nb(st, spread_cdf):
    """Spread in ticks (1-based index into the cdf)."""
    u = _uniform_nb(st)
    for i in range(spread_cdf.shape[0]):
        if u < spread_cdf[i]:
            return np.int64(i + 1)
    return np.int64(spread_cdf.shape[0])


@njit(cache=True)
def _level_nb(st, d, d_occ, d_mu, d_sd):
    """A level size drawn from the profile at distance d (0 = empty)."""
    if _uniform_nb(st) < d_occ[d]:
        return _lots_nb(st, d_mu[d], d_sd[d])
    return np.int64(0)


# ------------------------------------------------------------------------------------------------- emission


@njit(cache=True)
def _emit_nb(out, n, ts_exch, ts_local, kind, side, price_ticks, qty_lots, update_id):
    r = out[n]
    r.ts_exch = ts_exch
    r.ts_local = ts_local
    r.price_ticks = price_ticks
    r.qty_lots = qty_lots
    r.update_id = update_id
    r.kind = kind
    r.side = side
    r.batch_end = False
    return n + 1


@njit(cache=True)
def _local_ns_nb(st, kp, t_ns):
    """Local receive time of a message of the event at t_ns: one in-order feed with lognormal latency.

    Messages of one event (a sweep's trades, its depth message, the BBO) share one latency draw: they leave the
    venue together. The latency counts from the millisecond exchange timestamp, as a recorder measures it.
    """
    s = st[0]
    k = kp[0]
    if t_ns != s.lat_event_ns:
        s.lat_event_ns = t_ns
        s.lat_ns = np.int64(k.lat_base_ns + math.exp(k.lat_mu + k.lat_sd * _normal_nb(st)))
    loc = t_ns - t_ns % k.exch_res_ns + s.lat_ns
    if loc < s.last_local_ns:
        loc = s.last_local_ns
    s.last_local_ns = loc
    return loc


@njit(cache=True)
def _set_nb(book, idx, q, out, n, te, tl, side, base, uid):
    """Set a level and emit its DEPTH row."""
    book[idx] = q
    return _emit_nb(out, n, te, tl, _DEPTH, side, base + idx, q, uid)


# ------------------------------------------------------------------------------------------------ book moves


@njit(cache=True)
def _retouch_nb(st, kp, book, sg, old_t, new_t, extra, d_occ, d_mu, d_sd, out, n, te, tl, uid):
    """Move one side's touch from old_t to new_t (window indices): remove crossed levels or fill the gap.

    The new touch gets a size from the profile plus ``extra`` lots (liquidity an aggressor is about to take).
    """
    s = st[0]
    if new_t == old_t:
        if extra > 0:
            n = _set_nb(book, new_t, book[new_t] + extra, out, n, te, tl, sg, s.base_tick, uid)
        return n
    D = kp[0].depth_ticks
    base = s.base_tick
    if sg * (new_t - old_t) > 0:
        # The touch improves: levels between the old and the new touch are new, drawn from the profile.
        gap = abs(new_t - old_t) - 1
        m = gap if gap < D else D
        for d in range(1, m + 1):
            idx = new_t - sg * d
            q = _level_nb(st, d, d_occ, d_mu, d_sd)
            if q > 0 and q != book[idx]:
                n = _set_nb(book, idx, q, out, n, te, tl, sg, base, uid)
    else:
        # The touch recedes: every level better than the new touch goes.
        idx = old_t
        while idx != new_t:
            if book[idx] > 0:
                n = _set_nb(book, idx, 0, out, n, te, tl, sg, base, uid)
            idx -= sg
    q = _lots_nb(st, d_mu[0], d_sd[0]) + extra
    return _set_nb(book, new_t, q, out, n, te, tl, sg, base, uid)


@njit(cache=True)
def _edge_nb(st, kp, book, sg, t, edge, d_occ, d_mu, d_sd, out, n, te, tl, uid):
    """Keep one side managed out to depth_ticks: fill when the far edge comes closer, delete past the slack."""
    D = kp[0].depth_ticks
    M = kp[0].edge_slack_ticks
    base = st[0].base_tick
    depth_now = sg * (t - edge)
    if depth_now < D:
        d0 = depth_now + 1 if depth_now >= 0 else 1
        for d in range(d0, D + 1):
            idx = t - sg * d
            q = _level_nb(st, d, d_occ, d_mu, d_sd)
            if q > 0 and q != book[idx]:
                n = _set_nb(book, idx, q, out, n, te, tl, sg, base, uid)
        return n, t - sg * D
    if depth_now > D + M:
        for d in range(D + 1, depth_now + 1):
            idx = t - sg * d
            if book[idx] > 0:
                n = _set_nb(book, idx, 0, out, n, te, tl, sg, base, uid)
        return n, t - sg * D
    return n, edge


@njit(cache=True)
def _random_updates_nb(st, kp, bid, ask, k, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, out, n, start, te, tl, uid):
    """Redraw random levels from the profile until the message holds k rows (bounded attempts)."""
    s = st[0]
    base = s.base_tick
    tries = 0
    while n - start < k and tries < 4 * k:
        tries += 1
        sg = _BID if _uniform_nb(st) < 0.5 else _ASK
        u = _uniform_nb(st)
        b = 0
        while b < upd_cdf.shape[0] - 1 and u >= upd_cdf[b]:
            b += 1
        d = bin_lo[b] + np.int64(_uniform_nb(st) * (bin_hi[b] - bin_lo[b] + 1))
        if d > bin_hi[b]:
            d = bin_hi[b]
        if d == 0:
            q = _lots_nb(st, d_mu[0], d_sd[0])
        else:
            q = _level_nb(st, d, d_occ, d_mu, d_sd)
        if sg == _BID:
            idx = s.bb - d
            if q != bid[idx]:
                n = _set_nb(bid, idx, q, out, n, te, tl, sg, base, uid)
                if d == 0:
                    s.pend_bid = False
        else:
            idx = s.ba + d
            if q != ask[idx]:
                n = _set_nb(ask, idx, q, out, n, te, tl, sg, base, uid)
                if d == 0:
                    s.pend_ask = False
    return n


@njit(cache=True)
def _levels_per_msg_nb(st, kp):
    k = kp[0]
    v = math.exp(k.lpm_mu + k.lpm_sd * _normal_nb(st))
    m = np.int64(v + 0.5)
    if m < 1:
        m = 1
    if m > k.k_max:
        m = k.k_max
    return m


@njit(cache=True)
def _flush_pending_nb(st, bid, ask, old_bb, old_ba, out, n, te, tl, uid):
    """Publish touch sizes consumed by small trades since the last depth message."""
    s = st[0]
    if s.pend_bid and bid[old_bb] > 0:
        n = _emit_nb(out, n, te, tl, _DEPTH, _BID, s.base_tick + old_bb, bid[old_bb], uid)
    if s.pend_ask and ask[old_ba] > 0:
        n = _emit_nb(out, n, te, tl, _DEPTH, _ASK, s.base_tick + old_ba, ask[old_ba], uid)
    s.pend_bid = False
    s.pend_ask = False
    return n


@njit(cache=True)
def _bbo_nb(st, kp, bid, ask, out, n, t, te, uid, force):
    """Emit the BBO pair if the touch changed since the last one (or the interval elapsed)."""
    s = st[0]
    bq = bid[s.bb]
    aq = ask[s.ba]
    if not force and s.bb == s.bbo_bb and s.ba == s.bbo_ba and bq == s.bbo_bq and aq == s.bbo_aq and t - s.last_bbo_ns < kp[0].bbo_interval_ns:
        return n
    tl = _local_ns_nb(st, kp, t)
    n = _emit_nb(out, n, te, tl, _BBO, _BID, s.base_tick + s.bb, bq, uid)
    n = _emit_nb(out, n, te, tl, _BBO, _ASK, s.base_tick + s.ba, aq, uid)
    out[n - 1].batch_end = True
    s.bbo_bb = s.bb
    s.bbo_ba = s.ba
    s.bbo_bq = bq
    s.bbo_aq = aq
    s.last_bbo_ns = t
    return n


@njit(cache=True)
def _trade_nb(st, kp, out, n, t, te, sg, price_idx, q):
    s = st[0]
    s.trade_id += 1
    tl = _local_ns_nb(st, kp, t)
    n = _emit_nb(out, n, te, tl, _TRADE, sg, s.base_tick + price_idx, q, s.trade_id)
    out[n - 1].batch_end = True
    return n


# ------------------------------------------------------------------------------------------------- events


@njit(cache=True)
def _snapshot_nb(st, kp, bid, ask, d_occ, d_mu, d_sd, spread_cdf, out, n, mid_idx):
    """Initial book: CLEAR + SNAPSHOT rows (one message), then a BBO pair."""
    s = st[0]
    D = kp[0].depth_ticks
    t = s.t_ns
    te = t - t % kp[0].exch_res_ns
    sp = _spread_nb(st, spread_cdf)
    s.bb = (2 * mid_idx - sp) // 2
    s.ba = s.bb + sp
    bid[s.bb] = _lots_nb(st, d_mu[0], d_sd[0])
    ask[s.ba] = _lots_nb(st, d_mu[0], d_sd[0])
    for d in range(1, D + 1):
        bid[s.bb - d] = _level_nb(st, d, d_occ, d_mu, d_sd)
        ask[s.ba + d] = _level_nb(st, d, d_occ, d_mu, d_sd)
    s.bid_edge = s.bb - D
    s.ask_edge = s.ba + D
    tl = _local_ns_nb(st, kp, t)
    uid = s.update_id
    n = _emit_nb(out, n, te, tl, _CLEAR, 0, 0, 0, uid)
    for d in range(0, D + 1):
        if bid[s.bb - d] > 0:
            n = _emit_nb(out, n, te, tl, _SNAPSHOT, _BID, s.base_tick + s.bb - d, bid[s.bb - d], uid)
    for d in range(0, D + 1):
        if ask[s.ba + d] > 0:
            n = _emit_nb(out, n, te, tl, _SNAPSHOT, _ASK, s.base_tick + s.ba + d, ask[s.ba + d], uid)
    out[n - 1].batch_end = True
    return _bbo_nb(st, kp, bid, ask, out, n, t, te, uid, True)


@njit(cache=True)
def _small_order_nb(st, kp, bid, ask, out, n):
    """A small aggressor order: trades at the touch that never empty it."""
    s = st[0]
    k = kp[0]
    t = s.t_ns
    te = t - t % k.exch_res_ns
    buy = _uniform_nb(st) < k.buy_prob
    p = 1.0 / k.trades_per_order
    ntr = 1
    if p < 1.0:
        ntr = 1 + np.int64(math.log(1.0 - _uniform_nb(st)) / math.log(1.0 - p))
    if ntr > k.max_order_trades:
        ntr = k.max_order_trades
    traded = False
    for _ in range(ntr):
        q = _lots_nb(st, k.trade_mu, k.trade_sd)
        if buy:
            avail = ask[s.ba] - 1
        else:
            avail = bid[s.bb] - 1
        if q > avail:
            q = avail
        if q <= 0:
            break
        if buy:
            ask[s.ba] -= q
            n = _trade_nb(st, kp, out, n, t, te, _BID, s.ba, q)
        else:
            bid[s.bb] -= q
            n = _trade_nb(st, kp, out, n, t, te, _ASK, s.bb, q)
        traded = True
    if traded:
        if buy:
            s.pend_ask = True
        else:
            s.pend_bid = True
    return n


@njit(cache=True)
def _sweep_nb(st, kp, book, sg, from_idx, to_idx, vol, out, n, t, te):
    """Aggressor of side sg takes up to vol lots of the opposite book from from_idx toward to_idx (exclusive).

    Trades print best price first, split into trades of the trade-size law. The book is not changed here: the
    move's depth message removes every level crossed. Returns (rows, volume left).
    """
    k = kp[0]
    ntr = 0
    step = 1 if sg == _BID else -1
    idx = from_idx
    while idx != to_idx and vol > 0:
        if sg * (to_idx - idx) <= 0:
            break
        take = book[idx]
        if take > vol:
            take = vol
        while take > 0:
            q = _lots_nb(st, k.trade_mu, k.trade_sd)
            if q > take or ntr >= k.max_sweep_trades - 1:
                q = take
            n = _trade_nb(st, kp, out, n, t, te, sg, idx, q)
            ntr += 1
            take -= q
            vol -= q
        idx += step
    return n, vol


@njit(cache=True)
def _take_touch_nb(st, kp, bid, ask, buy, vol, out, n, t, te):
    """Trades of up to vol lots at the touch that never empty it (published by the next depth message)."""
    s = st[0]
    k = kp[0]
    ntr = 0
    while vol > 0 and ntr < k.max_sweep_trades:
        q = _lots_nb(st, k.trade_mu, k.trade_sd)
        if q > vol or ntr == k.max_sweep_trades - 1:
            q = vol
        avail = ask[s.ba] - 1 if buy else bid[s.bb] - 1
        if q > avail:
            q = avail
        if q <= 0:
            break
        if buy:
            ask[s.ba] -= q
            s.pend_ask = True
            n = _trade_nb(st, kp, out, n, t, te, _BID, s.ba, q)
        else:
            bid[s.bb] -= q
            s.pend_bid = True
            n = _trade_nb(st, kp, out, n, t, te, _ASK, s.bb, q)
        vol -= q
        ntr += 1
    return n


@njit(cache=True)
def _move_nb(st, kp, bid, ask, jump, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, spread_cdf, out, n):
    """A mid move (optionally a sweep by an aggressor) and the depth message that shows it."""
    s = st[0]
    k = kp[0]
    t = s.t_ns
    te = t - t % k.exch_res_ns
    up = _uniform_nb(st) < k.up_prob
    if jump:
        size = np.int64(math.exp(k.jump_mu + k.jump_sd * _normal_nb(st)) + 0.5)
    else:
        size = np.int64(math.exp(k.move_mu + k.move_sd * _normal_nb(st)) + 0.5)
    if size < 1:
        size = 1
    if size > 4 * k.depth_ticks + 1000:
        size = 4 * k.depth_ticks + 1000
    sp = _spread_nb(st, spread_cdf)
    dirn = 1 if up else -1
    new_bb = (s.bb + s.ba + 2 * dirn * size - sp) // 2
    if new_bb < k.idx_min or new_bb + sp > k.idx_max:
        # Reflect at the window bounds (far beyond any realistic excursion; keeps prices positive).
        dirn = -dirn
        new_bb = (s.bb + s.ba + 2 * dirn * size - sp) // 2
    new_ba = new_bb + sp
    rest = np.int64(0)
    if _uniform_nb(st) < k.move_trade_prob:
        vol = _lots_nb(st, k.sweep_mu, k.sweep_sd)
        if dirn > 0:
            n, rest = _sweep_nb(st, kp, ask, _BID, s.ba, new_ba, vol, out, n, t, te)
        else:
            n, rest = _sweep_nb(st, kp, bid, _ASK, s.bb, new_bb, vol, out, n, t, te)
    uid = s.update_id + 1
    tl = _local_ns_nb(st, kp, t)
    start = n
    old_bb = s.bb
    old_ba = s.ba
    # Bids and asks move in the order that never leaves a crossed level behind once the message ends.
    rest_bid = rest if dirn < 0 else 0
    rest_ask = rest if dirn > 0 else 0
    n = _retouch_nb(st, kp, bid, _BID, old_bb, new_bb, rest_bid, d_occ, d_mu, d_sd, out, n, te, tl, uid)
    n = _retouch_nb(st, kp, ask, _ASK, old_ba, new_ba, rest_ask, d_occ, d_mu, d_sd, out, n, te, tl, uid)
    s.bb = new_bb
    s.ba = new_ba
    n = _flush_pending_nb(st, bid, ask, old_bb, old_ba, out, n, te, tl, uid)
    kk = _levels_per_msg_nb(st, kp)
    n = _random_updates_nb(st, kp, bid, ask, kk, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, out, n, start, te, tl, uid)
    n, edge = _edge_nb(st, kp, bid, _BID, s.bb, s.bid_edge, d_occ, d_mu, d_sd, out, n, te, tl, uid)
    s.bid_edge = edge
    n, edge = _edge_nb(st, kp, ask, _ASK, s.ba, s.ask_edge, d_occ, d_mu, d_sd, out, n, te, tl, uid)
    s.ask_edge = edge
    if n > start:
        out[n - 1].batch_end = True
        s.update_id = uid
        n = _bbo_nb(st, kp, bid, ask, out, n, t, te, uid, False)
    if rest > 0:
        # The aggressor's remaining volume trades at the new touch once the book shows it (the touch was
        # published with that volume on top of its own size, so it keeps its profile size afterwards).
        n = _take_touch_nb(st, kp, bid, ask, dirn > 0, rest, out, n, t, te)
    return n


@njit(cache=True)
def _depth_msg_nb(st, kp, bid, ask, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, out, n):
    """A depth message without a price move: pending touch sizes and random level updates."""
    s = st[0]
    t = s.t_ns
    te = t - t % kp[0].exch_res_ns
    uid = s.update_id + 1
    tl = _local_ns_nb(st, kp, t)
    start = n
    n = _flush_pending_nb(st, bid, ask, s.bb, s.ba, out, n, te, tl, uid)
    kk = _levels_per_msg_nb(st, kp)
    n = _random_updates_nb(st, kp, bid, ask, kk, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, out, n, start, te, tl, uid)
    if n > start:
        out[n - 1].batch_end = True
        s.update_id = uid
        n = _bbo_nb(st, kp, bid, ask, out, n, t, te, uid, False)
    return n


@njit(cache=True)
def synth_run_nb(st, kp, bid, ask, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, spread_cdf, out, t_end_ns, mid_idx, max_event_rows):
    """Generate events with time < t_end_ns into out until it cannot hold another event; returns rows written."""
    s = st[0]
    k = kp[0]
    n = 0
    cap = out.shape[0]
    if not s.started:
        n = _snapshot_nb(st, kp, bid, ask, d_occ, d_mu, d_sd, spread_cdf, out, n, mid_idx)
        s.next_depth_ns = s.t_ns + _wait_ns_nb(st, k.bg_depth_rate)
        s.next_move_ns = s.t_ns + _wait_ns_nb(st, k.move_rate)
        s.next_jump_ns = s.t_ns + _wait_ns_nb(st, k.jump_rate)
        s.next_order_ns = s.t_ns + _wait_ns_nb(st, k.order_rate)
        s.started = True
    while n + max_event_rows <= cap:
        t = s.next_order_ns
        ev = 0
        if s.next_move_ns < t:
            t = s.next_move_ns
            ev = 1
        if s.next_jump_ns < t:
            t = s.next_jump_ns
            ev = 2
        if s.next_depth_ns < t:
            t = s.next_depth_ns
            ev = 3
        if t >= t_end_ns:
            break
        s.t_ns = t
        if ev == 0:
            n = _small_order_nb(st, kp, bid, ask, out, n)
            s.next_order_ns = t + _wait_ns_nb(st, k.order_rate)
        elif ev == 1:
            n = _move_nb(st, kp, bid, ask, False, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, spread_cdf, out, n)
            s.next_move_ns = t + _wait_ns_nb(st, k.move_rate)
        elif ev == 2:
            n = _move_nb(st, kp, bid, ask, True, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, spread_cdf, out, n)
            s.next_jump_ns = t + _wait_ns_nb(st, k.jump_rate)
        else:
            n = _depth_msg_nb(st, kp, bid, ask, d_occ, d_mu, d_sd, bin_lo, bin_hi, upd_cdf, out, n)
            s.next_depth_ns = t + _wait_ns_nb(st, k.bg_depth_rate)
    return n


# ------------------------------------------------------------------------------------------ generator driver


def _decimals(x: float) -> int:
    return max(0, -Decimal(repr(float(x))).normalize().as_tuple().exponent)


def _bin_hi(params: SynthParams) -> np.ndarray:
    lo = np.asarray(params.bin_lo_ticks, dtype=np.int64)
    return np.append(lo[1:] - 1, params.depth_ticks).astype(np.int64)


class _Generator:
    """Arrays and state of one synthetic stream (the boundary between SynthParams and the kernel)."""

    def __init__(self, params: SynthParams, seed: int, start_ns: int, hours: float):
        p = params
        D = int(p.depth_ticks)
        M = int(p.edge_slack_ticks)
        lo = np.asarray(p.bin_lo_ticks, dtype=np.int64)
        hi = _bin_hi(p)
        self.bin_lo, self.bin_hi = lo, hi
        # Per-distance profile arrays (index = distance in ticks).
        which = np.searchsorted(lo, np.arange(D + 1), side="right") - 1
        self.d_occ = np.asarray(p.occupancy, dtype=np.float64)[which].copy()
        self.d_occ[0] = 1.0
        self.d_mu = np.asarray(p.log_lots_mean, dtype=np.float64)[which].copy()
        self.d_sd = np.asarray(p.log_lots_sd, dtype=np.float64)[which].copy()
        self.upd_cdf = np.cumsum(np.asarray(p.update_bin_pmf, dtype=np.float64))
        self.upd_cdf /= self.upd_cdf[-1]
        self.spread_cdf = np.cumsum(np.asarray(p.spread_pmf, dtype=np.float64))
        self.spread_cdf /= self.spread_cdf[-1]
        # The window must hold the price path: 12 standard deviations of the whole span, plus the book depth.
        mid_ticks = int(round(p.price0 / p.tick_size))
        sd_ticks = p.sigma_bp_per_sqrt_s * 1e-4 * mid_ticks * math.sqrt(max(hours, 1e-3) * 3600.0)
        need = int(24 * sd_ticks) + 8 * (D + M) + 4096
        W = 1 << max(16, int(math.ceil(math.log2(need))))
        W = min(W, 1 << 24)
        self.W = W
        base = mid_ticks - W // 2
        self.mid_idx = W // 2
        self.bid = np.zeros(W, dtype=np.int64)
        self.ask = np.zeros(W, dtype=np.int64)
        margin = D + M + 8
        kp = np.zeros(1, dtype=_kparam_dtype)
        k = kp[0]
        k["depth_ticks"] = D
        k["edge_slack_ticks"] = M
        k["idx_min"] = max(margin, -base + margin)  # prices stay positive
        k["idx_max"] = W - margin
        moves = p.move_rate_per_s + p.jump_rate_per_hour / 3600.0
        k["bg_depth_rate"] = max(p.depth_msg_rate_per_s - moves, 0.0)
        k["lpm_mu"] = p.levels_per_msg_log_mean
        k["lpm_sd"] = p.levels_per_msg_log_sd
        k["k_max"] = 4 * D + 16
        k["move_rate"] = p.move_rate_per_s
        k["move_mu"] = math.log(p.move_ticks_median)
        k["move_sd"] = p.move_ticks_log_sd
        k["jump_rate"] = p.jump_rate_per_hour / 3600.0
        k["jump_mu"] = math.log(p.jump_ticks_median)
        k["jump_sd"] = p.jump_ticks_log_sd
        k["up_prob"] = p.move_up_prob
        k["move_trade_prob"] = p.move_trade_prob
        k["sweep_mu"] = p.sweep_lots_log_mean
        k["sweep_sd"] = p.sweep_lots_log_sd
        k["order_rate"] = p.taker_order_rate_per_s
        k["trades_per_order"] = max(p.trades_per_order_mean, 1.0)
        k["buy_prob"] = p.taker_buy_prob
        k["trade_mu"] = p.trade_lots_log_mean
        k["trade_sd"] = p.trade_lots_log_sd
        k["lat_base_ns"] = p.latency_base_ns
        k["lat_mu"] = p.latency_log_mean
        k["lat_sd"] = p.latency_log_sd
        k["bbo_interval_ns"] = int(p.bbo_max_interval_ms * 1e6) if p.bbo_max_interval_ms > 0 else int(_NEVER)
        k["exch_res_ns"] = 1_000_000
        k["max_sweep_trades"] = 2000
        k["max_order_trades"] = 64
        self.kp = kp
        st = np.zeros(1, dtype=_state_dtype)
        s = st[0]
        s["rng"] = np.uint64(seed & 0xFFFFFFFFFFFFFFFF) ^ np.uint64(0x5DEECE66D2545F49)
        s["t_ns"] = start_ns
        s["base_tick"] = base
        s["update_id"] = 1_000_000
        s["trade_id"] = 0
        s["last_bbo_ns"] = start_ns
        s["lat_event_ns"] = -1
        self.st = st
        self.max_event_rows = int(2 * k["max_sweep_trades"] + 4 * (D + M + 2) + k["k_max"] + 16 + 2 * (D + 1))
        self.price_dec = _decimals(p.tick_size)
        self.qty_dec = _decimals(p.lot_size)
        self.params = p

    def run(self, out: np.ndarray, t_end_ns: int) -> int:
        return int(
            synth_run_nb(self.st, self.kp, self.bid, self.ask, self.d_occ, self.d_mu, self.d_sd, self.bin_lo, self.bin_hi,
                         self.upd_cdf, self.spread_cdf, out, np.int64(t_end_ns), np.int64(self.mid_idx), np.int64(self.max_event_rows))
        )

    def next_event_ns(self) -> int:
        s = self.st[0]
        if not s["started"]:
            return int(s["t_ns"])
        return int(min(s["next_depth_ns"], s["next_move_ns"], s["next_jump_ns"], s["next_order_ns"]))

    def columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        p = self.params
        price = np.round(rows["price_ticks"] * p.tick_size, self.price_dec)
        price[rows["kind"] == _CLEAR] = 0.0
        return {
            "ts_exch": rows["ts_exch"].copy(),
            "ts_local": rows["ts_local"].copy(),
            "kind": rows["kind"].copy(),
            "side": rows["side"].copy(),
            "price": price,
            "qty": np.round(rows["qty_lots"] * p.lot_size, self.qty_dec),
            "update_id": rows["update_id"].copy(),
            "batch_end": rows["batch_end"].copy(),
        }


def _start_ns(date: str) -> int:
    try:
        d = dt.date.fromisoformat(str(date))
    except ValueError as exc:
        raise ConfigError(f"--date {date!r} is not a date; use YYYY-MM-DD (e.g. 2024-01-01)") from exc
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp()) * _NS


def _feed_latency_meta(p: SynthParams) -> dict:
    med = p.latency_base_ns + math.exp(p.latency_log_mean)
    p90 = p.latency_base_ns + math.exp(p.latency_log_mean + 1.2815516 * p.latency_log_sd)
    return {
        "kind": "synthetic",
        "model": "ts_local = max(ts_exch + base_ns + lognormal(log_mean, log_sd), previous ts_local); ts_exch has 1 ms resolution",
        "base_ns": float(p.latency_base_ns),
        "log_mean": float(p.latency_log_mean),
        "log_sd": float(p.latency_log_sd),
        "median_ns": float(med),
        "p90_ns": float(p90),
    }


def synth(
    out_root: str | os.PathLike,
    like: str | os.PathLike | None = None,
    hours: float = 1.0,
    seed: int = 7,
    symbol: str = "SYNTHUSDT",
    date: str = "2024-01-01",
    venue: str = "binance-usdm",
    *,
    params: SynthParams | None = None,
    chunk_s: float = 600.0,
) -> dict:
    """Generate ``hours`` of a seeded synthetic market from ``date`` 00:00 UTC into the store at ``out_root``.

    Parameters
    ----------
    out_root : store root; data lands in ``<out_root>/<venue>/<SYMBOL>/``.
    like : ``ROOT/venue/SYMBOL`` of a store to fit the statistics from (:func:`fit_params`); default: the
        measured BTCUSDT defaults (:data:`DEFAULT_PARAMS`).
    hours : span to generate, hours (> 0); days after the first get their own partitions.
    seed : the same seed gives identical parquet content, in any process and with any ``chunk_s``.
    params : explicit parameters (overrides ``like``).
    chunk_s : seconds generated per kernel call and part file (bounds memory).

    Returns
    -------
    dict : venue, symbol, rows, rows_by_kind, days, seconds, seed, params (and the implied volatility and trade
    rate), meta path, wall time.

    >>> synth("data", hours=0.05, seed=1)["rows"] > 0  # doctest: +SKIP
    True
    """
    t_wall = time.perf_counter()
    if not (hours > 0 and math.isfinite(hours)):
        raise ConfigError(f"--hours must be > 0, got {hours!r}")
    if not chunk_s > 0:
        raise ConfigError(f"chunk_s must be > 0, got {chunk_s!r}")
    venue = store.check_venue(venue)
    symbol = symbol.upper()
    like_path = None
    if params is None:
        if like is not None:
            like_path = Path(like)
            params = fit_params(like_path)
        else:
            params = DEFAULT_PARAMS
    start_ns = _start_ns(date)
    end_ns = start_ns + int(round(hours * 3600 * _NS))

    sdir = store.symbol_dir(out_root, venue, symbol)
    meta_path = sdir / store.META_FILE
    if meta_path.exists():
        meta = store.read_meta(out_root, venue, symbol)
        if "synthetic" not in meta:
            raise DataError(
                f"{sdir} already holds ingested (non-synthetic) data; choose another --symbol or --out for synthetic data"
            )
    elif sdir.exists() and any(sdir.iterdir()):
        raise DataError(f"{sdir} exists without {store.META_FILE}; remove it or choose another --symbol or --out")
    else:
        meta = store.empty_meta(venue, symbol)

    gen = _Generator(params, seed, start_ns, hours)
    chunk_ns = max(int(chunk_s * _NS), 1)
    expected = (params.depth_msg_rate_per_s * (math.exp(params.levels_per_msg_log_mean + params.levels_per_msg_log_sd**2 / 2) + 2)
                + params.trade_rate_per_s) * chunk_s
    cap = int(min(max(expected * 1.5, 65_536), 4_000_000)) + gen.max_event_rows
    out = np.empty(cap, dtype=_row_dtype)

    days: dict[str, dict] = {}
    kinds_total = np.zeros(256, dtype=np.int64)
    t = start_ns
    while t < end_ns:
        midnight = (t // store.NS_PER_DAY + 1) * store.NS_PER_DAY
        t_stop = min(t + chunk_ns, end_ns, midnight)
        day = store.day_of_ns(t)
        while True:
            n = gen.run(out, t_stop)
            if n:
                rows = out[:n]
                d = days.get(day)
                if d is None:
                    store.clear_day(out_root, venue, symbol, day)
                    d = days[day] = {"rows": 0, "files": [], "kinds": np.zeros(256, dtype=np.int64),
                                     "ts_local_min": int(rows["ts_local"][0]), "ts_local_max": 0}
                path = store.write_part(out_root, venue, symbol, day, len(d["files"]), gen.columns(rows))
                d["files"].append(path.name)
                d["rows"] += n
                d["kinds"] += np.bincount(rows["kind"], minlength=256)
                d["ts_local_max"] = int(rows["ts_local"][-1])
            if gen.next_event_ns() >= t_stop:
                break
        t = t_stop

    for day, d in days.items():
        kinds_total += d["kinds"]
        meta["days"][day] = {
            "rows": int(d["rows"]),
            "files": d["files"],
            "rows_by_kind": _kinds_dict(d["kinds"]),
            "ts_local_min": d["ts_local_min"],
            "ts_local_max": d["ts_local_max"],
            "source_sha256": [],
            "source_files": [],
            "synthetic_seed": int(seed),
        }
    rows_total = int(kinds_total.sum())
    synthetic = {
        "seed": int(seed),
        "generator_version": GENERATOR_VERSION,
        "start": dt.datetime.fromtimestamp(start_ns / _NS, tz=dt.timezone.utc).isoformat(),
        "hours": float(hours),
        "like": os.fspath(like_path) if like_path is not None else None,
        "params": params.to_dict(),
        "sigma_bp_per_sqrt_s": params.sigma_bp_per_sqrt_s,
        "trade_rate_per_s": params.trade_rate_per_s,
    }
    meta.update(
        {
            "tick_size": float(params.tick_size),
            "tick_size_source": "synthetic",
            "lot_size": float(params.lot_size),
            "lot_size_source": "synthetic",
            "contract": {"type": "linear", "contract_size": 1.0},
            "feed_latency": _feed_latency_meta(params),
            "clock_offset_ns": 0,
            "synthetic": synthetic,
            "crossed_books": 0,
            "ingest": {"rows_in": rows_total, "rows_written": rows_total, "rows_quarantined": 0,
                       "rows_by_kind": _kinds_dict(kinds_total)},
        }
    )
    meta["sources"] = []
    meta["time_span"] = store.time_span(meta)
    meta_file = store.write_meta(out_root, venue, symbol, meta)
    return {
        "venue": venue,
        "symbol": symbol,
        "rows": rows_total,
        "rows_by_kind": _kinds_dict(kinds_total),
        "days": sorted(days),
        "seconds": float(hours * 3600.0),
        "seed": int(seed),
        "like": synthetic["like"],
        "params": params.to_dict(),
        "sigma_bp_per_sqrt_s": params.sigma_bp_per_sqrt_s,
        "trade_rate_per_s": params.trade_rate_per_s,
        "meta": os.fspath(meta_file),
        "wall_s": round(time.perf_counter() - t_wall, 3),
    }


def _kinds_dict(counts: np.ndarray) -> dict[str, int]:
    return {store.kind_name(int(k)): int(counts[k]) for k in np.flatnonzero(counts)}


# ------------------------------------------------------------------------------------------------ fitting

#: Scalar results of the fit replay.
_fit_res_dtype = np.dtype(
    [
        ("n_depth_msgs", np.int64),
        ("n_moves", np.int64),
        ("n_states", np.int64),
        ("n_samples", np.int64),
        ("other_trades", np.int64),
        ("other_buy_trades", np.int64),
        ("other_orders", np.int64),
        ("t_first", np.int64),
        ("t_last", np.int64),
        ("first_mid2", np.int64),
    ],
    align=True,
)


@njit(cache=True)
def _fit_replay_nb(ts, kind, side, idx_arr, lots, batch_end, W, D, K, sample_ns,
                   prof_n, prof_s1, prof_s2, upd_hist, msg_near, spread_time,
                   move_size2, move_dir, move_vol, move_ntr, state_t, state_mid2, res):
    """Replay a store stream on a dense book and accumulate the statistics :func:`fit_params` needs."""
    bid = np.zeros(W, dtype=np.float64)
    ask = np.zeros(W, dtype=np.float64)
    bb = -1
    ba = W
    valid = False
    pb = -1
    pa = W
    prev_t = np.int64(0)
    prev_mid2 = np.int64(0)
    prev_sp = np.int64(0)
    near = 0
    next_sample = np.int64(-(2**62))
    wb_vol = 0.0
    ws_vol = 0.0
    wb_n = 0
    ws_n = 0
    wb_o = 0
    ws_o = 0
    last_tr_t = np.int64(-1)
    last_tr_s = 0
    mv_j = -1
    mv_t = np.int64(0)
    mv_dir = 0
    r = res[0]
    r.t_first = -1
    for i in range(ts.shape[0]):
        k = kind[i]
        s = side[i]
        if k == _TRADE:
            new_order = ts[i] != last_tr_t or s != last_tr_s
            last_tr_t = ts[i]
            last_tr_s = s
            if mv_j >= 0 and ts[i] == mv_t and s == mv_dir:
                # The aggressor of the last move, still trading in the same millisecond: part of its sweep.
                move_vol[mv_j] += lots[i]
                move_ntr[mv_j] += 1
                continue
            if s == _BID:
                wb_vol += lots[i]
                wb_n += 1
                wb_o += 1 if new_order else 0
            else:
                ws_vol += lots[i]
                ws_n += 1
                ws_o += 1 if new_order else 0
            continue
        if k == _CLEAR:
            if s >= 0:
                bid[:] = 0.0
                bb = -1
            if s <= 0:
                ask[:] = 0.0
                ba = W
            valid = False
            continue
        if k != _DEPTH and k != _SNAPSHOT:
            continue
        x = idx_arr[i]
        if 0 <= x < W:
            q = lots[i]
            if k == _DEPTH and valid:
                d = (pb - x) if s == _BID else (x - pa)
                if d <= D:
                    near += 1
                    if d >= 0:
                        upd_hist[d] += 1
            if s == _BID:
                bid[x] = q
                if q > 0 and x > bb:
                    bb = x
                elif q == 0 and x == bb:
                    while bb >= 0 and bid[bb] == 0:
                        bb -= 1
            else:
                ask[x] = q
                if q > 0 and x < ba:
                    ba = x
                elif q == 0 and x == ba:
                    while ba < W and ask[ba] == 0:
                        ba += 1
        if not batch_end[i]:
            continue
        if k == _DEPTH and valid:
            msg_near[r.n_depth_msgs] = near
            r.n_depth_msgs += 1
        near = 0
        ok = bb >= 0 and ba < W and bb < ba
        t = ts[i]
        if ok:
            mid2 = bb + ba
            sp = ba - bb
            if valid:
                spread_time[prev_sp if prev_sp < K else K] += t - prev_t
                if mid2 != prev_mid2:
                    dirn = 1 if mid2 > prev_mid2 else -1
                    j = r.n_moves
                    move_size2[j] = abs(mid2 - prev_mid2)
                    move_dir[j] = dirn
                    if dirn > 0:
                        move_vol[j] = wb_vol
                        move_ntr[j] = wb_n
                        r.other_trades += ws_n
                        r.other_orders += ws_o
                    else:
                        move_vol[j] = ws_vol
                        move_ntr[j] = ws_n
                        r.other_trades += wb_n
                        r.other_buy_trades += wb_n
                        r.other_orders += wb_o
                    r.n_moves += 1
                    mv_j = j
                    mv_t = t
                    mv_dir = dirn
                else:
                    mv_j = -1
                    r.other_trades += wb_n + ws_n
                    r.other_buy_trades += wb_n
                    r.other_orders += wb_o + ws_o
            else:
                r.first_mid2 = mid2 if r.t_first < 0 else r.first_mid2
            if r.t_first < 0:
                r.t_first = t
            r.t_last = t
            state_t[r.n_states] = t
            state_mid2[r.n_states] = mid2
            r.n_states += 1
            if t >= next_sample:
                next_sample = t + sample_ns
                r.n_samples += 1
                for d in range(D + 1):
                    if bb - d >= 0 and bid[bb - d] > 0:
                        prof_n[d] += 1
                        lq = math.log(bid[bb - d])
                        prof_s1[d] += lq
                        prof_s2[d] += lq * lq
                    if ba + d < W and ask[ba + d] > 0:
                        prof_n[d] += 1
                        lq = math.log(ask[ba + d])
                        prof_s1[d] += lq
                        prof_s2[d] += lq * lq
            prev_t = t
            prev_mid2 = mid2
            prev_sp = sp
            pb = bb
            pa = ba
        valid = ok
        wb_vol = 0.0
        ws_vol = 0.0
        wb_n = 0
        ws_n = 0
        wb_o = 0
        ws_o = 0
    return 0


def _parse_like(path: str | os.PathLike) -> tuple[Path, str, str]:
    p = Path(path)
    if not (p / store.META_FILE).exists():
        raise DataError(f"--like {p}: no {store.META_FILE} there; give ROOT/venue/SYMBOL of an ingested store (e.g. data/binance-usdm/BTCUSDT)")
    return p.parent.parent, p.parent.name, p.name


def _fit_pass(ev: np.ndarray, lots: np.ndarray, base: int, W: int, D: int) -> dict:
    """One replay of the stream at depth D; returns the kernel's accumulators."""
    K = MAX_SPREAD_TICKS
    is_end = ev["batch_end"]
    n_batches = int(is_end.sum()) + 1
    out = {
        "prof_n": np.zeros(D + 1), "prof_s1": np.zeros(D + 1), "prof_s2": np.zeros(D + 1),
        "upd_hist": np.zeros(D + 1, dtype=np.int64), "msg_near": np.zeros(n_batches, dtype=np.int64),
        "spread_time": np.zeros(K + 1, dtype=np.float64), "move_size2": np.zeros(n_batches, dtype=np.int64),
        "move_dir": np.zeros(n_batches, dtype=np.int64), "move_vol": np.zeros(n_batches), "move_ntr": np.zeros(n_batches, dtype=np.int64),
        "state_t": np.zeros(n_batches, dtype=np.int64), "state_mid2": np.zeros(n_batches, dtype=np.int64),
        "res": np.zeros(1, dtype=_fit_res_dtype),
    }
    idx = (ev["price_ticks"] - base).astype(np.int64)
    _fit_replay_nb(ev["ts_exch"], ev["kind"], ev["side"], idx, lots, is_end, np.int64(W), np.int64(D), np.int64(K), np.int64(_NS),
                   out["prof_n"], out["prof_s1"], out["prof_s2"], out["upd_hist"], out["msg_near"], out["spread_time"],
                   out["move_size2"], out["move_dir"], out["move_vol"], out["move_ntr"], out["state_t"], out["state_mid2"], out["res"])
    return out


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{float(x):.{digits}g}")


def _lognormal_log_moments(x: np.ndarray, default: tuple[float, float]) -> tuple[float, float]:
    """(mean, sd) of log(x) over x > 0."""
    x = x[x > 0]
    if len(x) < 2:
        return default
    lx = np.log(x)
    return float(lx.mean()), float(lx.std())


def _lognormal_mean_matched(x: np.ndarray, default: tuple[float, float]) -> tuple[float, float]:
    """Lognormal (mu, sd) with mu = mean(log x) and the sd that reproduces mean(x): for heavy-tailed counts and
    volumes whose totals (rows, traded volume) must come out right."""
    x = x[x > 0]
    if len(x) < 2:
        return default
    mu = float(np.log(x).mean())
    return mu, math.sqrt(max(2.0 * (math.log(float(x.mean())) - mu), 0.0))


def fit_params(path: str | os.PathLike, *, max_hours: float | None = 2.0) -> SynthParams:
    """Measure :class:`SynthParams` from a store stream ``ROOT/venue/SYMBOL`` (the ``--like`` of ``mmlab data synth``).

    Parameters
    ----------
    path : the symbol directory of a store (holding ``_meta.json``).
    max_hours : fit on at most this many hours from the start of the stream (bounds memory); None = all.

    >>> p = fit_params("data/binance-usdm/BTCUSDT")  # doctest: +SKIP
    >>> p.sigma_bp_per_sqrt_s  # doctest: +SKIP
    1.31
    """
    from mmlab.data.bridge import load_events, symbol_info

    root, venue, symbol = _parse_like(path)
    info = symbol_info(root, venue, symbol)
    tick, lot = info.tick_size, info.lot_size
    end = None
    t0 = (info.meta.get("time_span") or {}).get("ts_local_min")
    if max_hours is not None and t0 is not None:
        end = int(t0 + max_hours * 3600 * _NS)
    ev, _ = load_events(root, venue, [symbol], None, end)
    if len(ev) == 0:
        raise DataError(f"--like {path}: the store holds no events")
    lots = ev["qty"] / lot
    kind = ev["kind"]
    trades = kind == _TRADE
    book_rows = (kind == _DEPTH) | (kind == _SNAPSHOT)
    if not book_rows.any():
        raise DataError(f"--like {path}: no DEPTH/SNAPSHOT rows to rebuild a book from")
    ref = ev["price_ticks"][trades] if trades.sum() >= 10 else ev["price_ticks"][book_rows & (ev["qty"] > 0)]
    lo_t, hi_t = np.percentile(ref, [0, 100]) if trades.sum() >= 10 else np.percentile(ref, [5, 95])
    d_scan = 2000
    span = int(hi_t - lo_t) + 2 * d_scan + 64
    W = 1 << max(16, int(math.ceil(math.log2(span))))
    if W > 1 << 25:
        raise DataError(f"--like {path}: prices span {int(hi_t - lo_t)} ticks, too wide for the fit's dense book; fit a shorter span (max_hours)")
    base = int(lo_t) - d_scan - 32

    # Pass 1: the profile far out, to choose the depth that holds TARGET_LEVELS levels a side.
    p1 = _fit_pass(ev, lots, base, W, d_scan)
    r1 = p1["res"][0]
    if r1["n_samples"] == 0 or r1["n_states"] < 10:
        raise DataError(f"--like {path}: fewer than 10 uncrossed book states; the stream needs a snapshot and depth updates")
    occ_d = p1["prof_n"] / (2.0 * r1["n_samples"])
    cum = np.cumsum(occ_d[1:])
    D = int(np.searchsorted(cum, TARGET_LEVELS) + 1)
    D = int(min(max(D, 20), d_scan))
    # Pass 2: everything else at that depth.
    f = _fit_pass(ev, lots, base, W, D)
    r = f["res"][0]
    dur_s = max((int(r["t_last"]) - int(r["t_first"])) / _NS, 1e-9)

    lo = [b for b in BIN_EDGES_TICKS if b <= D]
    if lo[-1] == D and len(lo) > 1:
        lo = lo[:-1]
    hi = lo[1:] + [D + 1]
    occ, lmu, lsd, upd = [], [], [], []
    tot_upd = max(int(f["upd_hist"].sum()), 1)
    for a, b in zip(lo, hi):
        cnt = f["prof_n"][a:b].sum()
        occ.append(_sig(cnt / (2.0 * r["n_samples"] * (b - a))) if a > 0 else 1.0)
        m = f["prof_s1"][a:b].sum() / cnt if cnt else 0.0
        v = f["prof_s2"][a:b].sum() / cnt - m * m if cnt else 1.0
        lmu.append(_sig(m))
        lsd.append(_sig(math.sqrt(max(v, 1e-6))))
        upd.append(f["upd_hist"][a:b].sum() / tot_upd)
    upd = np.asarray(upd)
    upd = upd / upd.sum() if upd.sum() > 0 else np.full(len(lo), 1.0 / len(lo))
    st = f["spread_time"][1:]
    spread_pmf = st / st.sum() if st.sum() > 0 else np.eye(1, MAX_SPREAD_TICKS)[0]

    near = f["msg_near"][: r["n_depth_msgs"]].astype(float)
    lpm_mu, lpm_sd = _lognormal_mean_matched(near, (math.log(10.0), 1.0))

    nm = int(r["n_moves"])
    size = f["move_size2"][:nm] / 2.0
    dirn = f["move_dir"][:nm]
    vol = f["move_vol"][:nm]
    ntr = f["move_ntr"][:nm]
    if nm >= 2:
        med_all = float(np.median(size))
        thr = JUMP_MEDIAN_MULTIPLE * med_all
        body = size[size <= thr]
        jumps = size[size > thr]
        move_median = float(np.median(body))
        move_sd = math.sqrt(max(math.log(math.sqrt(float((body**2).mean())) / move_median), 1e-4))
        move_rate = len(body) / dur_s
        jump_rate_h = len(jumps) / dur_s * 3600.0
        if len(jumps) >= 3:
            jump_median, jump_sd = float(np.median(jumps)), float(np.log(jumps).std())
        elif len(jumps):
            jump_median, jump_sd = float(np.median(jumps)), 0.5
        else:
            jump_median, jump_sd = thr * 1.5, 0.5
        up_prob = float((dirn > 0).mean())
        trade_prob = float((ntr > 0).mean())
    else:
        move_median, move_sd, move_rate, jump_rate_h, jump_median, jump_sd, up_prob, trade_prob = 1.0, 0.0, 0.0, 0.0, 10.0, 0.5, 0.5, 0.0
    sweep_mu, sweep_sd = _lognormal_mean_matched(vol[ntr > 0], (math.log(10.0), 1.0))

    tl = lots[trades]
    trade_mu, trade_sd = _lognormal_log_moments(tl, (0.0, 0.5))
    other_trades = int(r["other_trades"])
    other_orders = int(r["other_orders"])
    order_rate = other_orders / dur_s
    per_order = other_trades / other_orders if other_orders else 1.0
    buy_prob = r["other_buy_trades"] / other_trades if other_trades else 0.5

    lat = (ev["ts_local"] - ev["ts_exch"]).astype(np.float64)
    lat_base = max(float(lat.min()), 0.0)
    x = lat - lat_base
    x = x[x > 0]
    if len(x) >= 10:
        med, p90 = np.percentile(x, [50, 90])
        lat_mu = math.log(med)
        lat_sd = max(math.log(p90 / med) / 1.2815516, 0.0)
    else:
        lat_mu, lat_sd = math.log(1e6), 0.5

    price0 = (r["first_mid2"] + 2 * base) / 2.0 * tick
    price0 = round(price0, _decimals(tick) + 1)
    return SynthParams(
        tick_size=float(tick),
        lot_size=float(lot),
        price0=float(price0),
        depth_ticks=D,
        edge_slack_ticks=max(20, D // 2),
        spread_pmf=tuple(_sig(v) for v in spread_pmf),
        bin_lo_ticks=tuple(int(v) for v in lo),
        occupancy=tuple(occ),
        log_lots_mean=tuple(lmu),
        log_lots_sd=tuple(lsd),
        depth_msg_rate_per_s=_sig(r["n_depth_msgs"] / dur_s),
        levels_per_msg_log_mean=_sig(lpm_mu),
        levels_per_msg_log_sd=_sig(lpm_sd),
        update_bin_pmf=tuple(_sig(v) for v in upd),
        move_rate_per_s=_sig(move_rate),
        move_ticks_median=_sig(max(move_median, 0.5)),
        move_ticks_log_sd=_sig(move_sd),
        jump_rate_per_hour=_sig(jump_rate_h),
        jump_ticks_median=_sig(max(jump_median, 1.0)),
        jump_ticks_log_sd=_sig(jump_sd),
        move_up_prob=_sig(up_prob),
        move_trade_prob=_sig(trade_prob),
        sweep_lots_log_mean=_sig(sweep_mu),
        sweep_lots_log_sd=_sig(sweep_sd),
        taker_order_rate_per_s=_sig(order_rate),
        trades_per_order_mean=_sig(max(per_order, 1.0)),
        taker_buy_prob=_sig(buy_prob),
        trade_lots_log_mean=_sig(trade_mu),
        trade_lots_log_sd=_sig(trade_sd),
        latency_base_ns=float(round(lat_base)),
        latency_log_mean=_sig(lat_mu),
        latency_log_sd=_sig(lat_sd),
        bbo_max_interval_ms=DEFAULT_PARAMS.bbo_max_interval_ms,
    )


__all__ = ["DEFAULT_PARAMS", "SynthParams", "fit_params", "synth", "synth_run_nb"]
