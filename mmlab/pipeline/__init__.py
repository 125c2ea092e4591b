"""The shared pipeline: six pure compiled stages and ``decide_nb`` composing them.

Stages, in order, each ``stage_nb(now_ns, inputs..., params, state, out[, quotes, actions]) -> reason`` on
records (params, state, out: fields of one ``pipeline_dtype`` record) and arrays:

1. :func:`fetch_md_nb` — md-cache freshness/validity/depth semantics (``FetchReason``)
2. :func:`spread_nb` — fair price, half spread, model skew (``SpreadReason``)
3. :func:`guards_nb` — halts, side gates, the tick's ``QuoteAction`` (``GuardReason``)
4. :func:`inventory_nb` — reservation, limits, sizing, quote ladder (``InventoryReason``)
5. :func:`queue_aware_nb` — keep good queue spots, tau_entry/tau_hold (``QueueReason``)
6. :func:`emit_nb` — desired vs working orders -> place/cancel/modify (``EmitReason``)

Imports only ``mmlab.types``, ``mmlab.features``, numpy and numba; no I/O, no clock. The stage kernels allocate
nothing and are compiled without reference counting (``@njit(cache=True, _nrt=False)``): with it, every call
that LLVM does not inline counted its array arguments up and down with atomic instructions, which made the six
stages cost about three times their work. Python constructors of the
``pipeline_dtype`` records (defaults, range checks, presets) live in :mod:`mmlab.pipeline_config`.
"""

from mmlab.pipeline.decide import decide_nb, decision_reset_nb, on_book_update_nb, on_trade_nb, pack_reasons_nb
from mmlab.pipeline.emit import emit_nb
from mmlab.pipeline.fetch_md import (
    count_book_message_nb,
    fetch_md_nb,
    md_invalidate_nb,
    md_on_book_update_nb,
    md_sync_nb,
    sequence_break_nb,
)
from mmlab.pipeline.guards import guards_nb
from mmlab.pipeline.inventory import inventory_nb, lot_floor_nb
from mmlab.pipeline.queue_aware import fill_prob_nb, queue_aware_nb
from mmlab.pipeline.spread import spread_nb, spread_on_trade_nb

__all__ = [
    "count_book_message_nb",
    "decide_nb",
    "decision_reset_nb",
    "emit_nb",
    "fetch_md_nb",
    "fill_prob_nb",
    "guards_nb",
    "inventory_nb",
    "lot_floor_nb",
    "md_invalidate_nb",
    "md_on_book_update_nb",
    "md_sync_nb",
    "on_book_update_nb",
    "on_trade_nb",
    "pack_reasons_nb",
    "queue_aware_nb",
    "sequence_break_nb",
    "spread_nb",
    "spread_on_trade_nb",
]
