"""Python constructors of the scoreboard / allocator records from ``[allocator]`` (:class:`AllocatorConfig`).

Kept outside :mod:`mmlab.pipeline` (the compiled kernels of :mod:`mmlab.pipeline.allocator` import only
``mmlab.types``, numpy and numba). Config keys follow the seed's ``symbol_scoreboard`` / ``dynamic_allocator``
sections: ema_alpha, min_samples, weight_net_bps, weight_fill_rate, weight_slippage, weight_queue_edge,
weight_adverse_penalty, rebalance_period_s, min_weight, max_weight, hysteresis_threshold, whitelist, blacklist,
auto_blacklist_net_bps, auto_blacklist_window_min; plus softmax_temperature, markout_ms, queue_edge_ms, the
normalization scales and auto_blacklist_cooldown_min.

>>> from mmlab.config import AllocatorConfig
>>> al = make_allocator(AllocatorConfig(enabled=True, blacklist=("ETHUSDT",)), ["BTCUSDT", "ETHUSDT"])
>>> al.weights().tolist(), int(al.params["rebalance_period_ns"][0])
([1.0, 0.0], 30000000000)
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmlab.config import AllocatorConfig
from mmlab.errors import ConfigError
from mmlab.types import (
    AllocListing,
    AllocReason,
    ScoreMetric,
    alloc_symbol_dtype,
    allocator_params_dtype,
    allocator_state_dtype,
    scoreboard_dtype,
)

__all__ = ["Allocator", "allocation_rows", "make_allocator", "make_allocator_params"]

NS_PER_MS = 1_000_000
NS_PER_MIN = 60_000_000_000


def _ns(ms: float) -> int:
    return round(ms * NS_PER_MS)


def make_allocator_params(cfg: AllocatorConfig) -> np.ndarray:
    """``allocator_params_dtype`` array ``(1,)`` of a validated :class:`AllocatorConfig`."""
    cfg.validate()
    p = np.zeros(1, dtype=allocator_params_dtype)
    w = np.zeros(5)
    w[ScoreMetric.NET_BPS] = cfg.weight_net_bps
    w[ScoreMetric.FILL_RATE] = cfg.weight_fill_rate
    w[ScoreMetric.SLIPPAGE_BPS] = cfg.weight_slippage
    w[ScoreMetric.QUEUE_EDGE] = cfg.weight_queue_edge
    w[ScoreMetric.ADVERSE_PENALTY] = cfg.weight_adverse_penalty
    p["metric_weights"][0] = w
    p["ema_alpha"] = cfg.ema_alpha
    p["softmax_temperature"] = cfg.softmax_temperature
    p["min_weight"] = cfg.min_weight
    p["max_weight"] = cfg.max_weight
    p["hysteresis_threshold"] = cfg.hysteresis_threshold
    p["net_bps_scale"] = cfg.net_bps_scale
    p["slippage_bps_scale"] = cfg.slippage_bps_scale
    p["adverse_bps_scale"] = cfg.adverse_bps_scale
    p["auto_blacklist_net_bps"] = cfg.auto_blacklist_net_bps
    p["rebalance_period_ns"] = max(_ns(cfg.rebalance_period_s * 1000.0), 1)
    p["markout_ns"] = _ns(cfg.markout_ms)
    p["queue_edge_ns"] = max(_ns(cfg.queue_edge_ms), 1)
    p["auto_blacklist_window_ns"] = round(cfg.auto_blacklist_window_min * NS_PER_MIN)
    p["auto_blacklist_cooldown_ns"] = round(cfg.auto_blacklist_cooldown_min * NS_PER_MIN)
    p["min_samples"] = cfg.min_samples
    p["enabled"] = cfg.enabled
    return p


def _check_names(key: str, names: Sequence[str], symbols: Sequence[str]) -> None:
    for name in names:
        if name not in symbols:
            hint = difflib.get_close_matches(name, list(symbols), n=1, cutoff=0.5)
            tail = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"[allocator] {key} names {name!r}, which is not a symbol of the run "
                              f"(data.symbols = {list(symbols)}){tail}")


@dataclass(frozen=True)
class Allocator:
    """Scoreboard and allocator arrays of one run: ``params``/``state`` ``(1,)``, ``board``/``alloc`` per symbol."""

    symbols: tuple[str, ...]
    params: np.ndarray
    state: np.ndarray
    board: np.ndarray
    alloc: np.ndarray

    def weights(self) -> np.ndarray:
        """Current weight of each symbol (1.0 = neutral, 0.0 = not quoted)."""
        return self.alloc["weight"].copy()

    def rebalance(self, now_ns: int) -> int:
        """One ``allocator_rebalance_nb`` call (Python entry point for tests and the live runner)."""
        from mmlab.pipeline.allocator import allocator_rebalance_nb

        return int(allocator_rebalance_nb(self.params[0], self.state[0], self.board, self.alloc, np.int64(now_ns)))


def make_allocator(cfg: AllocatorConfig, symbols: Sequence[str], *, tick_sizes: Sequence[float] | None = None,
                   contract_sizes: Sequence[float] | None = None, inverse: Sequence[bool] | None = None) -> Allocator:
    """Fresh scoreboard and allocator arrays for ``symbols`` (weights 1.0, listings from white/blacklist).

    Raises :class:`ConfigError` when a white/blacklist entry names no symbol of the run.
    """
    symbols = tuple(symbols)
    n = len(symbols)
    if n < 1:
        raise ConfigError("make_allocator needs at least one symbol (data.symbols is empty)")
    _check_names("whitelist", cfg.whitelist, symbols)
    _check_names("blacklist", cfg.blacklist, symbols)
    params = make_allocator_params(cfg)
    state = np.zeros(1, dtype=allocator_state_dtype)
    state["next_rebalance_ns"] = -1
    state["last_rebalance_ns"] = -1
    board = np.zeros(n, dtype=scoreboard_dtype)
    board["mid_ticks"] = np.nan
    board["tick_size"] = 1.0 if tick_sizes is None else np.asarray(tick_sizes, dtype=np.float64)
    board["contract_size"] = 1.0 if contract_sizes is None else np.asarray(contract_sizes, dtype=np.float64)
    board["inverse"] = False if inverse is None else np.asarray(inverse, dtype=bool)
    board["below_since_ns"] = -1
    board["last_mark_ns"] = -1
    alloc = np.zeros(n, dtype=alloc_symbol_dtype)
    alloc["weight"] = 1.0
    alloc["size_mult"] = 1.0
    alloc["auto_until_ns"] = -1
    alloc["reason"] = AllocReason.OK
    for i, s in enumerate(symbols):
        if s in cfg.blacklist:
            listing = AllocListing.BLACKLISTED
        elif cfg.whitelist and s not in cfg.whitelist:
            listing = AllocListing.NOT_WHITELISTED
        else:
            listing = AllocListing.ALLOWED
        alloc[i]["listing"] = listing
        if listing != AllocListing.ALLOWED:
            # Listed symbols are out from the first decision, not only from the first rebalance.
            alloc[i]["weight"] = 0.0
            alloc[i]["size_mult"] = 0.0 if cfg.enabled else 1.0
            alloc[i]["reason"] = AllocReason.BLACKLISTED if listing == AllocListing.BLACKLISTED else AllocReason.NOT_WHITELISTED
    return Allocator(symbols=symbols, params=params, state=state, board=board, alloc=alloc)


def allocation_rows(alloc: np.ndarray, symbols: Sequence[str]) -> dict[str, list]:
    """The rebalance history of ``alloc`` (``alloc_symbol_dtype`` per symbol) as columns, rows in time order.

    Columns: ts_local, symbol, weight, score, net_bps, fill_rate, slippage_bps, queue_edge_score, adverse_penalty,
    n_marked, reason (the ``AllocReason`` name). A ring that wrapped keeps its last ``ALLOC_HIST_MAX`` rows.
    """
    cols: dict[str, list] = {k: [] for k in ("ts_local", "symbol", "weight", "score", "net_bps", "fill_rate",
                                              "slippage_bps", "queue_edge_score", "adverse_penalty", "n_marked",
                                              "reason")}
    for i, sym in enumerate(symbols):
        a = alloc[i]
        cap = len(a["hist"])
        count = int(a["hist_count"])
        if count <= cap:
            rows = a["hist"][:count]
        else:
            head = int(a["hist_head"])
            rows = np.concatenate([a["hist"][head:], a["hist"][:head]])
        cols["ts_local"].extend(rows["ts_local_ns"].tolist())
        cols["symbol"].extend([sym] * len(rows))
        for k in ("weight", "score", "net_bps", "fill_rate", "slippage_bps", "queue_edge_score", "adverse_penalty",
                  "n_marked"):
            cols[k].extend(rows[k].tolist())
        cols["reason"].extend(AllocReason(int(r)).name for r in rows["reason"])
    order = sorted(range(len(cols["ts_local"])), key=lambda j: (cols["ts_local"][j], symbols.index(cols["symbol"][j])))
    return {k: [v[j] for j in order] for k, v in cols.items()}
