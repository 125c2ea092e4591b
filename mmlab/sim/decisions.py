"""decisions.parquet: one row per decision tick and symbol, the same columns in backtests and live sessions.

The event loop records each decision in three compact buffers (``mmlab.types``): ``decision_row_dtype`` rows,
and after each the row's desired quotes (``decision_quote_dtype``, ``n_quotes`` rows) and emitted actions
(``sim_action_dtype``, ``n_actions`` rows), in row order. :func:`decisions_frame` turns them into the frame
(the live runner fills the same buffers and calls the same function), columns in this order:

- ``ts_local`` (Int64, ns), ``symbol`` (String);
- desired quotes, nearest the touch first: ``bid_price``, ``bid_qty``, ``ask_price``, ``ask_qty`` (List[Float64]);
- actions in emission order: ``n_place``, ``n_cancel``, ``n_modify`` (Int64), ``action_kind`` (List[String]:
  place/cancel/modify), ``action_side`` (List[Int8], +1 buy / -1 sell), ``action_order_id`` (List[Int64]),
  ``action_price``, ``action_qty`` (List[Float64]);
- reason codes (Int8): ``md_reason``, ``spread_reason``, ``guard_reason``, ``inventory_reason``,
  ``queue_reason``, ``emit_reason`` (``FetchReason`` ... ``EmitReason``) and ``quote_action`` (``QuoteAction``);
  all 0 for strategies that are not the pipeline;
- timings (Int64, ns; null on ticks not timed): ``stage_fetch_md_ns`` ... ``stage_emit_ns``, ``tick_total_ns``.

:func:`stage_latency_summary` gives the summary's ``stage_latency_ns = {stage: {p50, p95, p99}}`` (+
``tick_total``) from the timed rows, the input of ``mmlab perf-gate``.

>>> import numpy as np
>>> from mmlab.types import decision_quote_dtype, decision_row_dtype, sim_action_dtype
>>> df = decisions_frame(np.zeros(0, decision_row_dtype), np.zeros(0, decision_quote_dtype),
...                      np.zeros(0, sim_action_dtype), ["BTCUSDT"], [0.1])
>>> df.columns[:3]
['ts_local', 'symbol', 'bid_price']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmlab.errors import DataError
from mmlab.types import STAGE_TIMERS_MAX, ActionKind, Side

__all__ = ["DECISION_COLUMNS", "PIPELINE_STAGE_NAMES", "REASON_COLUMNS", "decisions_frame", "stage_latency_summary"]

#: Stage timers a decisions frame always has columns for (the pipeline's stages, in order).
PIPELINE_STAGE_NAMES = ("stage_fetch_md", "stage_spread", "stage_guards", "stage_inventory", "stage_queue_aware",
                        "stage_emit")
#: Reason columns, in the byte order of ``mmlab.pipeline.decide.pack_reasons_nb``.
REASON_COLUMNS = ("md_reason", "spread_reason", "guard_reason", "inventory_reason", "queue_reason", "emit_reason",
                  "quote_action")
#: Every column of decisions.parquet, in order.
DECISION_COLUMNS = (
    ("ts_local", "symbol", "bid_price", "bid_qty", "ask_price", "ask_qty", "n_place", "n_cancel", "n_modify",
     "action_kind", "action_side", "action_order_id", "action_price", "action_qty")
    + REASON_COLUMNS
    + tuple(f"{s}_ns" for s in PIPELINE_STAGE_NAMES)
    + ("tick_total_ns",)
)
PERCENTILES = (50, 95, 99)

_KIND_NAMES = np.array(["", "place", "cancel", "modify"], dtype=object)


def _lists(values: np.ndarray, counts: np.ndarray, pa_type):
    """A pyarrow list array of ``values`` split into consecutive runs of ``counts``."""
    import pyarrow as pa

    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    if not isinstance(values, pa.Array):
        values = pa.array(values, type=pa_type)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def decisions_frame(rows: np.ndarray, quotes: np.ndarray, actions: np.ndarray, symbols: Sequence[str],
                    tick_sizes: Sequence[float], *, reasons_packed: bool = False, stage_names: Sequence[str] = ()):
    """The decisions frame (columns: module docstring) of decision buffers.

    Parameters
    ----------
    rows : ``decision_row_dtype`` array, one per decision tick and symbol.
    quotes : ``decision_quote_dtype`` array: each row's ``n_quotes`` desired quotes, in row order.
    actions : ``sim_action_dtype`` (or ``action_dtype``) array: each row's ``n_actions`` actions, in row order.
    symbols, tick_sizes : name and tick size (quote currency) of each ``symbol_id``.
    reasons_packed : ``rows["reason"]`` packs the stage reasons (``pack_reasons_nb``); else reason columns are 0.
    stage_names : names of the ``stage_ns`` timers in order (e.g. ``PIPELINE_STAGE_NAMES``); timers named
        outside ``PIPELINE_STAGE_NAMES`` get their own ``<name>_ns`` columns after the fixed ones.
    """
    import polars as pl
    import pyarrow as pa

    n_q = rows["n_quotes"].astype(np.int64)
    n_a = rows["n_actions"].astype(np.int64)
    if int(n_q.sum()) != len(quotes) or int(n_a.sum()) != len(actions):
        raise DataError(f"decision buffers disagree: rows announce {int(n_q.sum())} quotes / {int(n_a.sum())} actions, "
                        f"buffers hold {len(quotes)} / {len(actions)} (pass the buffers of the same rows)")
    names = np.array(list(symbols), dtype=object)
    tick = np.asarray(tick_sizes, dtype=np.float64)
    sid = rows["symbol_id"].astype(np.int64)
    if len(sid) and (sid.min() < 0 or sid.max() >= len(names)):
        raise DataError(f"decision rows name symbol_id {int(sid.max())} but {len(names)} symbols were given")

    # Quotes: bids then asks of each row, each side in its emission order (nearest the touch first).
    q_row = np.repeat(np.arange(len(rows)), n_q)
    q_tick = tick[sid[q_row]] if len(quotes) else np.zeros(0)
    q_price = quotes["price_ticks"] * q_tick
    cols = {}
    for side, prefix in ((int(Side.BID), "bid"), (int(Side.ASK), "ask")):
        sel = quotes["side"] == side
        order = np.flatnonzero(sel)
        cnt = np.bincount(q_row[sel], minlength=len(rows)) if len(rows) else np.zeros(0, dtype=np.int64)
        cols[f"{prefix}_price"] = _lists(q_price[order], cnt, pa.float64())
        cols[f"{prefix}_qty"] = _lists(quotes["qty"][order].astype(np.float64), cnt, pa.float64())

    a_row = np.repeat(np.arange(len(rows)), n_a)
    kind = actions["kind"].astype(np.int64)
    a_tick = tick[sid[a_row]] if len(actions) else np.zeros(0)
    counts = {}
    for k, name in ((ActionKind.PLACE, "n_place"), (ActionKind.CANCEL, "n_cancel"), (ActionKind.MODIFY, "n_modify")):
        sel = kind == int(k)
        counts[name] = np.bincount(a_row[sel], minlength=len(rows)).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    if len(kind) and (kind.min() < 1 or kind.max() > 3):
        raise DataError(f"decision actions hold ActionKind {int(kind.min())}..{int(kind.max())}, expected 1..3")
    # Names gathered by arrow (a numpy object -> str round trip is several times slower).
    kind_names = pa.array(list(_KIND_NAMES), type=pa.string()).take(pa.array(kind)) if len(kind) else \
        pa.array([], type=pa.string())

    out = {
        "ts_local": pl.Series("ts_local", rows["ts_local"].astype(np.int64)),
        "symbol": pl.Series("symbol", list(names), dtype=pl.String).gather(sid),
        "bid_price": pl.from_arrow(cols["bid_price"]), "bid_qty": pl.from_arrow(cols["bid_qty"]),
        "ask_price": pl.from_arrow(cols["ask_price"]), "ask_qty": pl.from_arrow(cols["ask_qty"]),
        **{k: pl.Series(k, v) for k, v in counts.items()},
        "action_kind": pl.from_arrow(_lists(kind_names, n_a, pa.string())),
        "action_side": pl.from_arrow(_lists(actions["side"].astype(np.int8), n_a, pa.int8())),
        "action_order_id": pl.from_arrow(_lists(actions["order_id"].astype(np.int64), n_a, pa.int64())),
        "action_price": pl.from_arrow(_lists(actions["price_ticks"] * a_tick, n_a, pa.float64())),
        "action_qty": pl.from_arrow(_lists(actions["qty"].astype(np.float64), n_a, pa.float64())),
    }
    packed = rows["reason"].astype(np.int64)
    for j, name in enumerate(REASON_COLUMNS):
        v = ((packed >> (8 * j)) & 0xFF).astype(np.int8) if reasons_packed else np.zeros(len(rows), dtype=np.int8)
        out[name] = pl.Series(name, v)
    timers = list(stage_names)
    if len(timers) > STAGE_TIMERS_MAX:
        raise DataError(f"{len(timers)} stage names given, at most {STAGE_TIMERS_MAX} timers are recorded")
    extra = [s for s in timers if s not in PIPELINE_STAGE_NAMES]
    for name in list(PIPELINE_STAGE_NAMES) + extra:
        col = f"{name}_ns"
        if name in timers:
            v = rows["stage_ns"][:, timers.index(name)].astype(np.int64)
            out[col] = pl.Series(col, v).set(pl.Series(v < 0), None) if len(v) else pl.Series(col, v)
        else:
            out[col] = pl.Series(col, np.full(len(rows), None), dtype=pl.Int64)
    t = rows["tick_ns"].astype(np.int64)
    out["tick_total_ns"] = pl.Series("tick_total_ns", t).set(pl.Series(t < 0), None) if len(t) else pl.Series(
        "tick_total_ns", t)
    df = pl.DataFrame([s.alias(k) for k, s in out.items()])
    # Empty list columns come out as List(Null) from pyarrow on zero rows: pin the types.
    return df.cast({"bid_price": pl.List(pl.Float64), "bid_qty": pl.List(pl.Float64),
                    "ask_price": pl.List(pl.Float64), "ask_qty": pl.List(pl.Float64),
                    "action_kind": pl.List(pl.String), "action_side": pl.List(pl.Int8),
                    "action_order_id": pl.List(pl.Int64), "action_price": pl.List(pl.Float64),
                    "action_qty": pl.List(pl.Float64)})


def stage_latency_summary(rows: np.ndarray, stage_names: Sequence[str] = ()) -> dict | None:
    """``{stage: {"p50", "p95", "p99"}}`` in ns over the timed decision rows (+ ``tick_total``, + ``n`` ticks);
    None when no tick was timed (``pipeline.sample_stage_tracing = 0``)."""
    t = rows["tick_ns"].astype(np.int64)
    timed = t >= 0
    if not timed.any():
        return None
    out = {}
    series = [(name, rows["stage_ns"][timed, k].astype(np.int64)) for k, name in enumerate(stage_names)]
    series.append(("tick_total", t[timed]))
    for name, v in series:
        v = v[v >= 0]
        if len(v):
            p = np.percentile(v, PERCENTILES)
            out[name] = {f"p{q}": float(x) for q, x in zip(PERCENTILES, p)} | {"n": len(v)}
    return out
